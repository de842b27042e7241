//! Monitor tests: the tasks' lifecycle against real sockets.

use std::time::{Duration, Instant};

use hyper::Uri;

use super::*;
use crate::app::config::RawApp;
use crate::app::test_support::{self, body, TestServer};

/// Polls `monitor` until the summed figures satisfy `done`, or panics at the deadline.
async fn wait_for(monitor: &AppMonitor, done: impl Fn(&AppHealth) -> bool) -> AppHealth {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut total = AppHealth::default();
    loop {
        let health = monitor.take();
        total.scrape_enabled = health.scrape_enabled;
        total.probe_enabled = health.probe_enabled;
        total.requests += health.requests;
        total.errors += health.errors;
        total.scrapes += health.scrapes;
        total.scrape_errors += health.scrape_errors;
        total.probes += health.probes;
        total.probe_errors += health.probe_errors;
        total.gauges = health.gauges;
        if done(&total) {
            return total;
        }
        assert!(Instant::now() < deadline, "gave up waiting; got {total:?}");
        // Polling interval, not a wait for an event.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn fast_config(scrape_url: Uri, probe_url: Uri) -> AppConfig {
    let raw = RawApp {
        scrape_url: Some("http://placeholder/".to_owned()),
        probe_url: Some("http://placeholder/".to_owned()),
        ..RawApp::default()
    };
    let mut config = AppConfig::from_raw(raw, Duration::from_secs(1))
        .expect("valid")
        .expect("both configured");
    if let Some(scrape) = &mut config.scrape {
        scrape.url = scrape_url;
        scrape.interval = Duration::from_millis(20);
    }
    if let Some(probe) = &mut config.probe {
        probe.url = probe_url;
        probe.interval = Duration::from_millis(20);
    }
    config
}

#[tokio::test]
async fn monitor_scrapes_and_probes_until_stopped() {
    let metrics = TestServer::start(vec![
        body("http_requests_total{code=\"200\"} 1\nqueue_depth 2\n"),
        // Repeats from here on: no further requests.
        body("http_requests_total{code=\"200\"} 4\nhttp_requests_total{code=\"500\"} 1\nqueue_depth 3\n"),
    ])
    .await;
    let health = TestServer::start(vec![body("ok")]).await;
    let shutdown = CancellationToken::new();
    let monitor = AppMonitor::start(
        &fast_config(metrics.uri("/metrics"), health.uri("/healthz")),
        &shutdown,
        &TaskTracker::new(),
    );
    let total = wait_for(&monitor, |total| {
        total.requests == 4.0 && total.scrapes >= 3 && total.probes >= 2
    })
    .await;
    assert_eq!(total.errors, 1.0);
    assert_eq!((total.scrape_errors, total.probe_errors), (0, 0));
    assert_eq!(total.gauges, [("queue_depth".to_owned(), 3.0)]);
    assert!(total.scrape_enabled && total.probe_enabled);
    tokio::time::timeout(Duration::from_secs(5), monitor.stop())
        .await
        .expect("tasks stop promptly");
}

#[tokio::test]
async fn monitor_stops_on_shutdown_even_mid_request() {
    let hanging = TestServer::start(vec![test_support::Reply::Hang]).await;
    let shutdown = CancellationToken::new();
    let mut config = fast_config(hanging.uri("/metrics"), hanging.uri("/healthz"));
    if let Some(scrape) = &mut config.scrape {
        scrape.timeout = Duration::from_secs(60);
    }
    if let Some(probe) = &mut config.probe {
        probe.timeout = Duration::from_secs(60);
    }
    let monitor = AppMonitor::start(&config, &shutdown, &TaskTracker::new());
    // Both tasks are inside a request that will not end on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    while hanging.hits() < 2 {
        assert!(Instant::now() < deadline, "tasks never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    for task in monitor.tasks {
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("task ends on shutdown")
            .expect("task did not panic");
    }
}

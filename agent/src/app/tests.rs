//! Accumulator and monitor tests: what a sample takes, and the tasks'
//! lifecycle against real sockets.

use std::time::{Duration, Instant};

use hyper::Uri;

use super::config::RawApp;
use super::scrape::LatencyDelta;
use super::test_support::{body, render, TestServer};
use super::*;

fn bucket(upper_bound: f64, cumulative_count: f64) -> Bucket {
    Bucket {
        upper_bound,
        cumulative_count,
    }
}

fn latency(bounds: &[(f64, f64)], count: f64, sum_seconds: f64) -> Option<LatencyDelta> {
    Some(LatencyDelta {
        buckets: bounds.iter().map(|&(b, c)| bucket(b, c)).collect(),
        count,
        sum_seconds,
    })
}

fn delta(
    requests: f64,
    errors: f64,
    latency: Option<LatencyDelta>,
    gauges: &[(&str, f64)],
) -> ScrapeDelta {
    ScrapeDelta {
        requests,
        errors,
        latency,
        gauges: gauges.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect(),
    }
}

#[test]
fn take_starts_over_but_keeps_flags_and_gauges() {
    let mut accumulator = Accumulator::new(true, true);
    accumulator.record_scrape(Ok(delta(10.0, 1.0, None, &[("queue_depth", 4.0)])));
    accumulator.record_scrape(Err("line 3: invalid sample value".to_owned()));
    accumulator.record_probe(ProbeOutcome {
        latency_secs: None,
        error: Some("request failed".to_owned()),
    });
    assert_eq!(
        render(&accumulator.take()),
        "scrapes=2 scrape_errors=1 scrape_error=`line 3: invalid sample value` \
         requests=10 errors=1 gauges=[queue_depth=4] \
         probes=1 probe_errors=1 probe_error=`request failed` probe_observed=0 probe_over_10s=0"
    );
    let next = accumulator.take();
    assert_eq!(
        render(&next),
        "scrapes=0 requests=0 errors=0 gauges=[queue_depth=4] probes=0 probe_observed=0 probe_over_10s=0"
    );
    assert_eq!(next.probe_latency_buckets.len(), PROBE_BOUNDS.len());
    next.validate().expect("an empty interval is valid");

    let mut probe_only = Accumulator::new(false, true);
    let health = probe_only.take();
    assert!(!health.scrape_enabled && health.probe_enabled);
    assert!(health.latency_buckets.is_empty());
}

#[test]
fn latency_deltas_add_up_and_a_new_layout_replaces_them() {
    let mut accumulator = Accumulator::new(true, false);
    accumulator.record_scrape(Ok(delta(
        0.0,
        0.0,
        latency(&[(0.1, 1.0), (f64::INFINITY, 2.0)], 2.0, 0.5),
        &[],
    )));
    accumulator.record_scrape(Ok(delta(
        0.0,
        0.0,
        latency(&[(0.1, 3.0), (f64::INFINITY, 3.0)], 3.0, 0.25),
        &[],
    )));
    assert_eq!(
        render(&accumulator.take()),
        "scrapes=2 requests=0 errors=0 latency=[0.1:4 +Inf:5] count=5 sum=0.75"
    );
    accumulator.record_scrape(Ok(delta(
        0.0,
        0.0,
        latency(&[(0.1, 1.0), (f64::INFINITY, 2.0)], 2.0, 0.5),
        &[],
    )));
    accumulator.record_scrape(Ok(delta(
        0.0,
        0.0,
        latency(&[(0.2, 1.0), (f64::INFINITY, 1.0)], 1.0, 0.125),
        &[],
    )));
    assert_eq!(
        render(&accumulator.take()),
        "scrapes=2 requests=0 errors=0 latency=[0.2:1 +Inf:1] count=1 sum=0.125"
    );
}

#[test]
fn long_reasons_are_cut_at_a_char_boundary() {
    let mut accumulator = Accumulator::new(true, false);
    accumulator.record_scrape(Err("é".repeat(MAX_REASON_BYTES)));
    let health = accumulator.take();
    assert!(health.scrape_error.len() <= MAX_REASON_BYTES);
    assert!(health.scrape_error.chars().all(|c| c == 'é'));
}

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
    let hanging = TestServer::start(vec![super::test_support::Reply::Hang]).await;
    let shutdown = CancellationToken::new();
    let mut config = fast_config(hanging.uri("/metrics"), hanging.uri("/healthz"));
    if let Some(scrape) = &mut config.scrape {
        scrape.timeout = Duration::from_secs(60);
    }
    if let Some(probe) = &mut config.probe {
        probe.timeout = Duration::from_secs(60);
    }
    let monitor = AppMonitor::start(&config, &shutdown);
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

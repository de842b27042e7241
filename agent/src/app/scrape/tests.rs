//! Scraper tests over real sockets: a scripted server answers one scrape
//! per reply, and the rendered accumulator is compared with the expectation.

use std::time::Duration;

use super::*;
use crate::app::config::{AppConfig, RawApp};
use crate::app::test_support::{
    assert_glob, block_on, body, refused_uri, render, Reply, TestPki, TestServer,
};

/// Builds a scrape config the way validation does, after `edit`.
fn scrape_config(
    uri: hyper::Uri,
    timeout: Duration,
    edit: impl FnOnce(&mut RawApp),
) -> ScrapeConfig {
    let mut raw = RawApp {
        scrape_url: Some("http://placeholder/metrics".to_owned()),
        ..RawApp::default()
    };
    edit(&mut raw);
    let app = AppConfig::from_raw(raw, Duration::from_secs(10))
        .expect("valid [app] table")
        .expect("scrape configured");
    let mut scrape = app.scrape.expect("scrape configured");
    scrape.url = uri;
    scrape.timeout = timeout;
    scrape
}

/// Scrapes once per reply of `script` and compares the accumulated health.
#[track_caller]
fn check(edit: impl FnOnce(&mut RawApp), script: Vec<Reply>, expected: &str) {
    let n_scrapes = script.len();
    let health = block_on(async move {
        let server = TestServer::start(script).await;
        let config = scrape_config(server.uri("/metrics"), Duration::from_secs(5), edit);
        let mut scraper = Scraper::new(config, client::new(None));
        let mut accumulator = Accumulator::new(true, false);
        for _ in 0..n_scrapes {
            accumulator.record_scrape(scraper.scrape().await);
        }
        assert_eq!(server.hits(), n_scrapes, "one connection per scrape");
        accumulator.take()
    });
    health.validate().expect("what is sent passes validation");
    assert_glob(expected, &render(&health));
}

fn defaults(_: &mut RawApp) {}

#[test]
fn counts_requests_and_errors_between_two_scrapes() {
    check(
        defaults,
        vec![
            body(
                "# TYPE http_requests_total counter\n\
                 http_requests_total{code=\"200\",method=\"GET\"} 10\n\
                 http_requests_total{code=\"500\",method=\"GET\"} 1\n",
            ),
            body(
                "# TYPE http_requests_total counter\n\
                 http_requests_total{code=\"200\",method=\"GET\"} 25\n\
                 http_requests_total{code=\"500\",method=\"GET\"} 3\n",
            ),
        ],
        "scrapes=2 requests=17 errors=2",
    );
}

#[test]
fn first_scrape_is_only_a_baseline() {
    check(
        defaults,
        vec![body("http_requests_total{code=\"500\"} 1000\n")],
        "scrapes=1 requests=0 errors=0",
    );
}

#[test]
fn default_error_rule_reads_code_or_status() {
    // `status` labels, and a 5xx series that appears after the baseline
    // (instrumentation creates series on first use) counts from zero.
    check(
        defaults,
        vec![
            body(
                "http_requests_total{status=\"200\"} 10\n\
                 http_requests_total{status=\"404\"} 4\n",
            ),
            body(
                "http_requests_total{status=\"200\"} 20\n\
                 http_requests_total{status=\"404\"} 5\n\
                 http_requests_total{status=\"503\"} 2\n",
            ),
        ],
        "scrapes=2 requests=13 errors=2",
    );
    // A series counts if either label is 5xx, and only once if both are.
    check(
        defaults,
        vec![
            body(
                "http_requests_total{code=\"200\",status=\"200\"} 0\n\
                 http_requests_total{code=\"200\",status=\"502\"} 0\n\
                 http_requests_total{code=\"500\",status=\"500\"} 0\n\
                 http_requests_total{code=\"504\",status=\"200\"} 0\n",
            ),
            body(
                "http_requests_total{code=\"200\",status=\"200\"} 100\n\
                 http_requests_total{code=\"200\",status=\"502\"} 1\n\
                 http_requests_total{code=\"500\",status=\"500\"} 2\n\
                 http_requests_total{code=\"504\",status=\"200\"} 4\n",
            ),
        ],
        "scrapes=2 requests=107 errors=7",
    );
    // 4xx and a `code` that is not an HTTP status are not errors.
    check(
        defaults,
        vec![
            body("http_requests_total{code=\"429\"} 1\nhttp_requests_total{code=\"5000\"} 1\n"),
            body("http_requests_total{code=\"429\"} 6\nhttp_requests_total{code=\"5000\"} 2\n"),
        ],
        "scrapes=2 requests=6 errors=0",
    );
}

#[test]
fn custom_metrics_and_selectors() {
    check(
        |raw| {
            raw.requests_metric = "rpc_calls_total{service=\"cart\"}".to_owned();
            raw.errors_metric = Some("rpc_failures_total{service=\"cart\"}".to_owned());
        },
        vec![
            body(
                "rpc_calls_total{service=\"cart\"} 10\n\
                 rpc_calls_total{service=\"other\"} 99\n\
                 rpc_failures_total{service=\"cart\"} 1\n",
            ),
            body(
                "rpc_calls_total{service=\"cart\"} 30\n\
                 rpc_calls_total{service=\"other\"} 500\n\
                 rpc_failures_total{service=\"cart\"} 4\n",
            ),
        ],
        "scrapes=2 requests=20 errors=3",
    );
}

#[test]
fn counter_reset_restarts_from_the_new_value() {
    check(
        defaults,
        vec![
            body("http_requests_total{code=\"200\"} 90\nhttp_requests_total{code=\"500\"} 10\n"),
            body("http_requests_total{code=\"200\"} 6\nhttp_requests_total{code=\"500\"} 1\n"),
            body("http_requests_total{code=\"200\"} 8\nhttp_requests_total{code=\"500\"} 1\n"),
        ],
        "scrapes=3 requests=9 errors=1",
    );
    // Errors reset while the request total grew past its old value: one
    // restart resets both, so both restart from their new values.
    check(
        defaults,
        vec![
            body("http_requests_total{code=\"200\"} 90\nhttp_requests_total{code=\"500\"} 10\n"),
            body("http_requests_total{code=\"200\"} 120\nhttp_requests_total{code=\"500\"} 2\n"),
        ],
        "scrapes=2 requests=122 errors=2",
    );
}

#[test]
fn errors_never_exceed_requests() {
    check(
        |raw| raw.errors_metric = Some("app_errors_total".to_owned()),
        vec![
            body("http_requests_total 10\napp_errors_total 0\n"),
            body("http_requests_total 12\napp_errors_total 5\n"),
        ],
        "scrapes=2 requests=2 errors=2",
    );
}

const HISTOGRAM_1: &str = "# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.1\"} 5
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.5\"} 8
http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 9
http_request_duration_seconds_sum{route=\"/a\"} 2
http_request_duration_seconds_count{route=\"/a\"} 9
http_request_duration_seconds_bucket{route=\"/b\",le=\"0.1\"} 1
http_request_duration_seconds_bucket{route=\"/b\",le=\"0.5\"} 1
http_request_duration_seconds_bucket{route=\"/b\",le=\"+Inf\"} 1
http_request_duration_seconds_sum{route=\"/b\"} 0.25
http_request_duration_seconds_count{route=\"/b\"} 1
";

const HISTOGRAM_2: &str = "# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.1\"} 6
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.5\"} 10
http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 13
http_request_duration_seconds_sum{route=\"/a\"} 6.5
http_request_duration_seconds_count{route=\"/a\"} 13
http_request_duration_seconds_bucket{route=\"/b\",le=\"0.1\"} 2
http_request_duration_seconds_bucket{route=\"/b\",le=\"0.5\"} 2
http_request_duration_seconds_bucket{route=\"/b\",le=\"+Inf\"} 2
http_request_duration_seconds_sum{route=\"/b\"} 0.5
http_request_duration_seconds_count{route=\"/b\"} 2
";

#[test]
fn histogram_bucket_deltas_include_inf() {
    // Summed over routes: (6,9,10) -> (8,12,15).
    check(
        defaults,
        vec![body(HISTOGRAM_1), body(HISTOGRAM_2)],
        "scrapes=2 requests=0 errors=0 latency=[0.1:2 0.5:3 +Inf:5] count=5 sum=4.75",
    );
    check(
        |raw| raw.latency_histogram = "http_request_duration_seconds{route=\"/a\"}".to_owned(),
        vec![body(HISTOGRAM_1), body(HISTOGRAM_2)],
        "scrapes=2 requests=0 errors=0 latency=[0.1:1 0.5:2 +Inf:4] count=4 sum=4.5",
    );
    // A reset (the app restarted): the new values are the deltas.
    check(
        |raw| raw.latency_histogram = "http_request_duration_seconds{route=\"/a\"}".to_owned(),
        vec![body(HISTOGRAM_2), body(HISTOGRAM_1)],
        "scrapes=2 requests=0 errors=0 latency=[0.1:5 0.5:8 +Inf:9] count=9 sum=2",
    );
    // Three scrapes add up within one interval.
    check(
        |raw| raw.latency_histogram = "http_request_duration_seconds{route=\"/b\"}".to_owned(),
        vec![body(HISTOGRAM_1), body(HISTOGRAM_2), body(HISTOGRAM_2)],
        "scrapes=3 requests=0 errors=0 latency=[0.1:1 0.5:1 +Inf:1] count=1 sum=0.25",
    );
    check(
        |raw| raw.latency_histogram = String::new(),
        vec![body(HISTOGRAM_1), body(HISTOGRAM_2)],
        "scrapes=2 requests=0 errors=0",
    );
}

#[test]
fn histogram_with_too_many_buckets_is_thinned() {
    let scrape = |scale: f64| {
        let mut text = String::new();
        for idx in 1..=100 {
            let count = f64::from(idx) * scale;
            text.push_str(&format!("h_bucket{{le=\"{idx}\"}} {count}\n"));
        }
        text.push_str(&format!(
            "h_bucket{{le=\"+Inf\"}} {}\nh_count {}\n",
            100.0 * scale,
            100.0 * scale
        ));
        text
    };
    let health = block_on(async {
        let server =
            TestServer::start(vec![Reply::Body(scrape(1.0)), Reply::Body(scrape(2.0))]).await;
        let config = scrape_config(server.uri("/"), Duration::from_secs(5), |raw| {
            raw.latency_histogram = "h".to_owned();
        });
        let mut scraper = Scraper::new(config, client::new(None));
        let mut accumulator = Accumulator::new(true, false);
        accumulator.record_scrape(scraper.scrape().await);
        accumulator.record_scrape(scraper.scrape().await);
        accumulator.take()
    });
    health.validate().expect("at most MAX_BUCKETS buckets");
    assert_eq!(health.latency_buckets.len(), MAX_BUCKETS);
    assert_eq!(health.latency_buckets[0].upper_bound, 1.0);
    let last = health.latency_buckets[MAX_BUCKETS - 1];
    assert_eq!(
        (last.upper_bound, last.cumulative_count),
        (f64::INFINITY, 100.0)
    );
}

#[test]
fn gauges_are_copied_sorted() {
    check(
        defaults,
        vec![body(
            "# TYPE worker_health gauge\nworker_health 1\nqueue_depth{shard=\"a\"} 3\n\
             queue_depth{shard=\"b\"} 4\nunrelated 5\n",
        )],
        "scrapes=1 requests=0 errors=0 gauges=[queue_depth=7 worker_health=1]",
    );
    check(
        |raw| raw.gauges = vec!["zeta".to_owned(), "alpha".to_owned()],
        vec![
            body("alpha 0.5\nzeta NaN\nqueue_depth 1\n"),
            body("alpha 0.25\n"),
        ],
        "scrapes=2 requests=0 errors=0 gauges=[alpha=0.25]",
    );
}

/// Regression (issue 10): a gauge the app exports as NaN or an infinity
/// is left out and counted; before, `+Inf` reached the coordinator, which
/// rejected the sample and ended the agent's stream.
#[test]
fn non_finite_gauges_are_dropped_and_counted() {
    let body_text = "# TYPE app_queue_depth gauge\napp_queue_depth NaN\n\
                     app_cache_ratio +Inf\napp_backlog -Inf\napp_workers 4\n\
                     app_split{a=\"1\"} 1e308\napp_split{a=\"2\"} 1e308\n";
    let gauges = |raw: &mut RawApp| {
        raw.gauges = [
            "app_queue_depth",
            "app_cache_ratio",
            "app_backlog",
            "app_workers",
            "app_split",
        ]
        .map(str::to_owned)
        .to_vec();
    };
    let config = scrape_config(
        "http://127.0.0.1:1/metrics".parse().expect("uri"),
        Duration::from_secs(5),
        gauges,
    );
    let reading = read(body_text, &config.queries).expect("a good body");
    assert_eq!(reading.gauges, vec![("app_workers".to_owned(), 4.0)]);
    assert_eq!(
        reading.non_finite_gauges, 4,
        "NaN, +Inf, -Inf and a sum that overflows"
    );

    let health = block_on(async move {
        let mut scraper = Scraper::new(config, client::new(None));
        let mut accumulator = Accumulator::new(true, false);
        accumulator.record_scrape(Ok(scraper.advance(reading)));
        let health = accumulator.take();
        assert_eq!(accumulator.dropped.total(), 4);
        health
    });
    health.validate().expect("what is sent passes validation");
    assert_eq!(
        render(&health),
        "scrapes=1 requests=0 errors=0 gauges=[app_workers=4]"
    );

    // The same through a real scrape, which `check` validates.
    check(
        gauges,
        vec![body(body_text)],
        "scrapes=1 requests=0 errors=0 gauges=[app_workers=4]",
    );
}

#[test]
fn malformed_body_is_a_failed_scrape_that_keeps_the_baseline() {
    check(
        defaults,
        vec![
            body("http_requests_total{code=\"200\"} 10\n"),
            body("http_requests_total{code=\"200\"} 1000\nhttp_requests_total{code=\"200\" 11\n"),
            body("http_requests_total{code=\"200\"} 15\n"),
        ],
        "scrapes=3 scrape_errors=1 scrape_error=`line 2: *` requests=5 errors=0",
    );
}

#[test]
fn bad_status_is_a_failed_scrape() {
    check(
        defaults,
        vec![
            body("http_requests_total 1\n"),
            Reply::Status(503, "overloaded"),
            body("http_requests_total 3\n"),
        ],
        "scrapes=3 scrape_errors=1 scrape_error=`HTTP 503 Service Unavailable` requests=2 errors=0",
    );
}

#[test]
fn refused_connection_is_a_failed_scrape() {
    let health = block_on(async {
        let config = scrape_config(refused_uri().await, Duration::from_secs(5), defaults);
        let mut scraper = Scraper::new(config, client::new(None));
        let mut accumulator = Accumulator::new(true, false);
        accumulator.record_scrape(scraper.scrape().await);
        accumulator.take()
    });
    assert_glob(
        "scrapes=1 scrape_errors=1 scrape_error=`request failed: *onnect*refused*` requests=0 errors=0",
        &render(&health),
    );
}

#[test]
fn slow_and_oversized_scrapes_fail() {
    let health = block_on(async {
        let server = TestServer::start(vec![Reply::Hang]).await;
        let config = scrape_config(server.uri("/"), Duration::from_millis(100), defaults);
        let mut scraper = Scraper::new(config, client::new(None));
        let mut accumulator = Accumulator::new(true, false);
        accumulator.record_scrape(scraper.scrape().await);
        accumulator.take()
    });
    assert_glob(
        "scrapes=1 scrape_errors=1 scrape_error=`timed out after 100ms` requests=0 errors=0",
        &render(&health),
    );
    let health = block_on(async {
        let server = TestServer::start(vec![body(&"# padding\n".repeat(200))]).await;
        let config = scrape_config(server.uri("/"), Duration::from_secs(5), defaults);
        let mut scraper = Scraper::new(config, client::new(None));
        scraper.max_body_bytes = 1000;
        let mut accumulator = Accumulator::new(true, false);
        accumulator.record_scrape(scraper.scrape().await);
        accumulator.take()
    });
    assert_glob(
        "scrapes=1 scrape_errors=1 scrape_error=`body too large (over 1000 bytes)` requests=0 errors=0",
        &render(&health),
    );
}

#[test]
fn large_bodies_are_parsed_off_the_runtime() {
    let padding =
        "# a comment line, only there to make the body big\n".repeat(INLINE_PARSE_BYTES / 40);
    assert!(padding.len() > INLINE_PARSE_BYTES);
    check(
        defaults,
        vec![
            Reply::Body(format!("{padding}http_requests_total 1\n")),
            Reply::Body(format!("{padding}http_requests_total 4\n")),
        ],
        "scrapes=2 requests=3 errors=0",
    );
}

/// Scrapes `server` once per reply through an `[app]` table read like the
/// agent's (`scrape_url` the server, `ca` as given), client and all.
async fn scrape_over_https(
    server: &TestServer,
    ca_opt: Option<&std::path::Path>,
    n: usize,
) -> String {
    let raw = RawApp {
        scrape_url: Some(server.uri("/metrics").to_string()),
        ca: ca_opt.map(ToOwned::to_owned),
        ..RawApp::default()
    };
    let app = AppConfig::from_raw(raw, Duration::from_secs(10))
        .expect("valid [app] table")
        .expect("scrape configured");
    let client = client::new(app.roots_opt.as_ref());
    let mut scraper = Scraper::new(app.scrape.expect("scrape configured"), client);
    let mut accumulator = Accumulator::new(true, false);
    for _ in 0..n {
        accumulator.record_scrape(scraper.scrape().await);
    }
    let health = accumulator.take();
    health.validate().expect("what is sent passes validation");
    render(&health)
}

#[test]
fn https_scrape_is_verified_against_app_ca() {
    let pki = TestPki::new();
    let rendered = block_on(async {
        let server = TestServer::start_tls(
            vec![
                body("http_requests_total{code=\"200\"} 10\nqueue_depth 3\n"),
                body("http_requests_total{code=\"200\"} 16\nhttp_requests_total{code=\"500\"} 2\nqueue_depth 4\n"),
            ],
            &pki,
        )
        .await;
        let rendered = scrape_over_https(&server, Some(&pki.ca_file), 2).await;
        assert_eq!(server.hits(), 2, "one connection per scrape");
        rendered
    });
    assert_glob(
        "scrapes=2 requests=8 errors=2 gauges=[queue_depth=4]",
        &rendered,
    );
}

#[test]
fn https_scrape_without_app_ca_fails_on_the_certificate() {
    // Without `app.ca` the system's roots are used, and no public CA signed
    // the test server's certificate: a failed scrape naming the certificate.
    let pki = TestPki::new();
    let rendered = block_on(async {
        let server = TestServer::start_tls(vec![body("http_requests_total 1\n")], &pki).await;
        scrape_over_https(&server, None, 1).await
    });
    assert_glob(
        "scrapes=1 scrape_errors=1 \
         scrape_error=`request failed: *invalid peer certificate: UnknownIssuer` \
         requests=0 errors=0",
        &rendered,
    );
}

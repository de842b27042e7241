//! Prober tests over real sockets: one probe per scripted reply.

use std::time::Duration;

use super::*;
use crate::app::config::{AppConfig, RawApp};
use crate::app::test_support::{
    assert_glob, block_on, body, refused_uri, render, Reply, TestPki, TestServer,
};

/// Where the probes go.
enum Target {
    /// A scripted server; one probe per reply.
    Server(Vec<Reply>),
    /// A port nothing listens on; one probe.
    Refused,
}

/// Probes `target` with `timeout` and compares the accumulated health.
#[track_caller]
fn check(target: Target, timeout: Duration, expected: &str) {
    let health = block_on(async move {
        let (uri, n_probes, server_opt) = match target {
            Target::Server(script) => {
                let n_probes = script.len();
                let server = TestServer::start(script).await;
                (server.uri("/healthz"), n_probes, Some(server))
            }
            Target::Refused => (refused_uri().await, 1, None),
        };
        let config = ProbeConfig {
            url: uri,
            interval: Duration::from_secs(10),
            timeout,
        };
        let client = client::new(None);
        let mut accumulator = Accumulator::new(false, true);
        for _ in 0..n_probes {
            accumulator.record_probe(probe(&client, &config).await);
        }
        if let Some(server) = server_opt {
            assert_eq!(server.hits(), n_probes, "one connection per probe");
        }
        accumulator.take()
    });
    health.validate().expect("what is sent passes validation");
    assert_glob(expected, &render(&health));
}

/// Long enough for any loopback answer.
const TIMEOUT: Duration = Duration::from_secs(5);

#[test]
fn ok_responses_are_timed() {
    check(
        Target::Server(vec![body("ok"), Reply::Status(204, "")]),
        TIMEOUT,
        "probes=2 probe_observed=2 probe_over_10s=0",
    );
}

#[test]
fn non_2xx_is_an_error_with_a_latency() {
    check(
        Target::Server(vec![body("ok"), Reply::Status(503, "draining")]),
        TIMEOUT,
        "probes=2 probe_errors=1 probe_error=`HTTP 503 Service Unavailable` \
         probe_observed=2 probe_over_10s=0",
    );
    check(
        Target::Server(vec![Reply::Status(301, "")]),
        TIMEOUT,
        "probes=1 probe_errors=1 probe_error=`HTTP 301 Moved Permanently` \
         probe_observed=1 probe_over_10s=0",
    );
}

#[test]
fn timeout_is_an_error_in_the_inf_bucket() {
    check(
        Target::Server(vec![Reply::Hang, body("ok")]),
        Duration::from_millis(100),
        "probes=2 probe_errors=1 probe_error=`timed out after 100ms` \
         probe_observed=2 probe_over_10s=1",
    );
}

#[test]
fn refused_is_an_error_without_a_latency() {
    check(
        Target::Refused,
        TIMEOUT,
        "probes=1 probe_errors=1 probe_error=`request failed: *onnect*refused*` \
         probe_observed=0 probe_over_10s=0",
    );
}

#[test]
fn latency_lands_in_the_fixed_buckets() {
    let mut accumulator = Accumulator::new(false, true);
    for latency_secs in [Some(0.003), Some(0.3), Some(7.0), Some(f64::INFINITY), None] {
        accumulator.record_probe(ProbeOutcome {
            latency_secs,
            error: None,
        });
    }
    let health = accumulator.take();
    let counts: Vec<(f64, f64)> = health
        .probe_latency_buckets
        .iter()
        .map(|b| (b.upper_bound, b.cumulative_count))
        .collect();
    assert_eq!(
        counts,
        [
            (0.005, 1.0),
            (0.01, 1.0),
            (0.025, 1.0),
            (0.05, 1.0),
            (0.1, 1.0),
            (0.25, 1.0),
            (0.5, 2.0),
            (1.0, 2.0),
            (2.5, 2.0),
            (5.0, 2.0),
            (10.0, 3.0),
            (f64::INFINITY, 4.0),
        ]
    );
    assert_eq!(health.probes, 5);
}

#[test]
fn https_probe_is_verified_against_app_ca() {
    let pki = TestPki::new();
    let health = block_on(async {
        let server =
            TestServer::start_tls(vec![body("ok"), Reply::Status(503, "draining")], &pki).await;
        // Through the `[app]` table, as the agent reads it.
        let raw = RawApp {
            probe_url: Some(server.uri("/healthz").to_string()),
            ca: Some(pki.ca_file.clone()),
            ..RawApp::default()
        };
        let app = AppConfig::from_raw(raw, Duration::from_secs(10))
            .expect("valid [app] table")
            .expect("probe configured");
        let client = client::new(app.roots_opt.as_ref());
        let config = app.probe.expect("probe configured");
        let mut accumulator = Accumulator::new(false, true);
        for _ in 0..2 {
            accumulator.record_probe(probe(&client, &config).await);
        }
        assert_eq!(server.hits(), 2, "one connection per probe");
        accumulator.take()
    });
    health.validate().expect("what is sent passes validation");
    assert_glob(
        "probes=2 probe_errors=1 probe_error=`HTTP 503 Service Unavailable` \
         probe_observed=2 probe_over_10s=0",
        &render(&health),
    );
}

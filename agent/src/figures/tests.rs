//! Guard tests: what is dropped, what is kept, how often it is logged, and
//! that the coordinator's decoding takes what the guard lets through (and
//! rejects what it would have let through before, issue 10).

use std::time::{Duration, Instant, SystemTime};

use rollguard_common::sample::{AppHealth, Bucket, DiskIo, Pressure};
use rollguard_common::HostSample;
use rollguard_proto::compact::{Compactor, Expander};

use super::*;

fn bucket(upper_bound: f64, cumulative_count: f64) -> Bucket {
    Bucket {
        upper_bound,
        cumulative_count,
    }
}

fn gauges(pairs: &[(&str, f64)]) -> Vec<(String, f64)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), *v)).collect()
}

/// An app interval with a `+Inf`-bounded latency histogram and `gauges`.
fn app(gauge_pairs: &[(&str, f64)]) -> AppHealth {
    AppHealth {
        requests: 10.0,
        errors: 1.0,
        latency_buckets: vec![bucket(0.1, 6.0), bucket(f64::INFINITY, 10.0)],
        latency_count: 10.0,
        latency_sum_seconds: 1.5,
        gauges: gauges(gauge_pairs),
        scrape_enabled: true,
        scrapes: 1,
        ..AppHealth::default()
    }
}

fn sample_with(app: AppHealth) -> HostSample {
    let mut sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    sample.app = Some(app);
    sample
}

/// Sends `sample` through the wire encoding and the coordinator's decoding.
fn coordinator_takes(sample: &HostSample) -> Result<HostSample, String> {
    let wire = Compactor::new().encode(sample);
    Expander::new().decode(&wire).map_err(|err| err.to_string())
}

#[test]
fn non_finite_gauges_are_dropped_and_the_coordinator_takes_the_rest() {
    let before = app(&[
        ("app_cache_ratio", f64::INFINITY),
        ("app_queue_depth", f64::NAN),
        ("app_workers", 4.0),
    ]);
    // What the agent sent before the guard: the stream would have ended.
    let err = coordinator_takes(&sample_with(before.clone())).expect_err("rejected");
    assert!(err.contains("not finite"), "{err}");

    let mut guarded = before;
    assert_eq!(guard_app(&mut guarded), 2);
    assert_eq!(guarded.gauges, gauges(&[("app_workers", 4.0)]));
    let decoded = coordinator_takes(&sample_with(guarded.clone())).expect("taken");
    assert_eq!(decoded.app, Some(guarded));
}

#[test]
fn an_inf_bucket_bound_is_kept() {
    let mut health = app(&[]);
    assert_eq!(guard_app(&mut health), 0);
    assert_eq!(health, app(&[]));
    coordinator_takes(&sample_with(health)).expect("taken");
}

#[track_caller]
fn check_app(
    edit: impl FnOnce(&mut AppHealth),
    n_dropped: u64,
    expected: impl FnOnce(&mut AppHealth),
) {
    let mut health = app(&[("ok", 1.0)]);
    edit(&mut health);
    assert_eq!(guard_app(&mut health), n_dropped);
    let mut want = app(&[("ok", 1.0)]);
    expected(&mut want);
    assert_eq!(health, want);
    health.validate().expect("what is sent passes validation");
}

fn no_latency(health: &mut AppHealth) {
    health.latency_buckets.clear();
    health.latency_count = 0.0;
    health.latency_sum_seconds = 0.0;
}

#[test]
fn bad_counts_and_histograms_are_dropped() {
    let no_counts = |h: &mut AppHealth| {
        h.requests = 0.0;
        h.errors = 0.0;
    };
    check_app(|h| h.requests = f64::INFINITY, 1, no_counts);
    check_app(|h| h.errors = f64::NAN, 1, no_counts);
    check_app(|h| h.requests = -1.0, 1, no_counts);
    check_app(|h| h.requests = 2e12, 1, no_counts);
    check_app(|h| h.latency_count = f64::NAN, 1, no_latency);
    check_app(
        |h| h.latency_buckets[1].cumulative_count = f64::INFINITY,
        1,
        no_latency,
    );
    check_app(
        |h| h.latency_buckets[0].upper_bound = f64::NAN,
        1,
        no_latency,
    );
    check_app(
        |h| h.latency_buckets[0].upper_bound = f64::NEG_INFINITY,
        1,
        no_latency,
    );
    check_app(
        |h| h.latency_sum_seconds = f64::INFINITY,
        1,
        |h| h.latency_sum_seconds = 0.0,
    );
    check_app(
        |h| h.probe_latency_buckets = vec![bucket(0.1, f64::NAN), bucket(f64::INFINITY, 1.0)],
        1,
        |_| {},
    );
}

#[test]
fn bad_host_figures_are_sent_as_zero() {
    let mut sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    sample.cpu_percent = f64::NAN;
    sample.load1 = 0.5;
    sample.net_rx_bytes_per_sec = f64::INFINITY;
    sample.cpu_core_percent = vec![10.0, f64::NAN];
    sample.disks = vec![DiskIo {
        device: "sda".to_owned(),
        read_bytes_per_sec: -1.0,
        ..DiskIo::default()
    }];
    sample.pressure = Some(Pressure {
        io_some_avg10: f64::INFINITY,
        ..Pressure::default()
    });
    assert_eq!(guard_host(&mut sample), 5);
    assert_eq!(sample.cpu_percent, 0.0);
    assert_eq!(sample.load1, 0.5);
    assert_eq!(sample.net_rx_bytes_per_sec, 0.0);
    assert_eq!(sample.cpu_core_percent, vec![10.0, 0.0]);
    assert_eq!(sample.disks[0].read_bytes_per_sec, 0.0);
    assert_eq!(sample.pressure.map(|p| p.io_some_avg10), Some(0.0));
    coordinator_takes(&sample).expect("taken");
}

#[test]
fn drops_are_logged_at_once_then_at_most_once_a_minute() {
    let start = Instant::now();
    let mut dropped = Dropped::default();
    assert_eq!(dropped.due(start), None, "nothing dropped, nothing to say");
    dropped.add(2);
    assert_eq!(
        dropped.due(start),
        Some(DueWarning {
            since_last: 2,
            total: 2
        })
    );
    dropped.add(3);
    assert_eq!(dropped.due(start + Duration::from_secs(59)), None);
    dropped.add(1);
    assert_eq!(
        dropped.due(start + WARN_EVERY),
        Some(DueWarning {
            since_last: 4,
            total: 6
        })
    );
    assert_eq!(dropped.due(start + 3 * WARN_EVERY), None, "quiet since");
    assert_eq!(dropped.total(), 6);
}

//! Accumulator tests: what a sample takes.

use super::*;
use crate::app::scrape::LatencyDelta;
use crate::app::test_support::render;

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
        non_finite_gauges: 0,
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

/// Regression (issue 10): sums over scrapes that overflow to infinity are
/// dropped at take, counted, and the next interval starts clean.
#[test]
fn figures_that_overflow_are_dropped_at_take() {
    let mut accumulator = Accumulator::new(true, false);
    accumulator.record_scrape(Ok(delta(f64::MAX, 0.0, None, &[("ok", 1.0)])));
    accumulator.record_scrape(Ok(delta(f64::MAX, 1.0, None, &[("ok", 2.0)])));
    let health = accumulator.take();
    health.validate().expect("what is taken passes validation");
    assert_eq!(
        render(&health),
        "scrapes=2 requests=0 errors=0 gauges=[ok=2]"
    );
    assert_eq!(accumulator.dropped.total(), 1, "requests was +Inf");

    accumulator.health.gauges.push(("bad".to_owned(), f64::NAN));
    let health = accumulator.take();
    assert_eq!(
        render(&health),
        "scrapes=0 requests=0 errors=0 gauges=[ok=2]"
    );
    assert_eq!(accumulator.dropped.total(), 2);
    assert_eq!(
        render(&accumulator.take()),
        "scrapes=0 requests=0 errors=0 gauges=[ok=2]",
        "a dropped gauge is not kept for the next interval"
    );
    assert_eq!(accumulator.dropped.total(), 2, "nor counted twice");
}

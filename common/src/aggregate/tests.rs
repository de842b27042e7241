use std::time::{Duration, SystemTime};

use super::*;

/// Builds a sample from "cpu mem_used/mem_total load1 [psi]" shorthand.
fn sample(spec: &str) -> HostSample {
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let mut s = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    s.cpu_percent = parts[0].parse().expect("cpu");
    let (used, total) = parts[1].split_once('/').expect("mem");
    s.memory_used_bytes = used.parse().expect("used");
    s.memory_total_bytes = total.parse().expect("total");
    s.load1 = parts[2].parse().expect("load");
    if let Some(psi) = parts.get(3) {
        let v: f64 = psi.parse().expect("psi");
        s.pressure = Some(Pressure {
            cpu_some_avg10: v,
            memory_some_avg10: v,
            io_some_avg10: v,
        });
    }
    s
}

#[track_caller]
fn check(hosts: &[&str], expected: (u32, f64, f64, f64, f64, Option<f64>)) {
    let samples: Vec<HostSample> = hosts.iter().map(|h| sample(h)).collect();
    let agg = CohortAggregate::from_samples(&samples);
    let got = (
        agg.hosts,
        agg.cpu_percent_mean,
        agg.cpu_percent_max,
        agg.memory_percent_mean,
        agg.memory_percent_max,
        agg.pressure_mean.map(|p| p.io_some_avg10),
    );
    assert_eq!(got, expected);
}

#[test]
fn empty_cohort_is_all_zero() {
    check(&[], (0, 0.0, 0.0, 0.0, 0.0, None));
}

#[test]
fn one_host() {
    check(&["40 50/100 1.0"], (1, 40.0, 40.0, 50.0, 50.0, None));
}

#[test]
fn mean_and_max_over_hosts() {
    check(
        &["20 25/100 1.0", "60 75/100 3.0"],
        (2, 40.0, 60.0, 50.0, 75.0, None),
    );
}

#[test]
fn pressure_mean_covers_only_hosts_that_report_it() {
    check(
        &["10 10/100 0 4.0", "10 10/100 0", "10 10/100 0 2.0"],
        (3, 10.0, 10.0, 10.0, 10.0, Some(3.0)),
    );
}

#[test]
fn unknown_memory_total_counts_as_zero_percent() {
    check(&["10 0/0 0"], (1, 10.0, 10.0, 0.0, 0.0, None));
}

#[test]
fn versions_are_counted() {
    assert_eq!(
        version_counts(["2.0", "1.9", "2.0"]),
        vec!["1.9=1".to_owned(), "2.0=2".to_owned()]
    );
}

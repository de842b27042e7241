//! Data-driven policy tests: a fleet is written as one line per host,
//! `beta|baseline key=value...`, and every case goes through `check`.

use std::time::{Duration, SystemTime};

use super::*;
use crate::sample::{AppHealth, Bucket, HostSample, Pressure};
use crate::{Cohort, HostId};

/// Latency bucket bounds (seconds) of the synthetic histograms.
const BOUNDS: [f64; 12] = [
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    f64::INFINITY,
];

/// Builds one sample from `key=value` pairs: req, err, lat (seconds every request took),
/// cpu, mem (percent), psi, probes, probe_err, scrape_err (failed scrapes of 1), gauge.NAME.
fn sample(spec: &str) -> HostSample {
    let mut s = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    s.memory_total_bytes = 100;
    let mut app = AppHealth::default();
    let mut has_app = false;
    let mut latency = None;
    let mut probe_latency = None;
    for pair in spec.split_whitespace() {
        let (key, value) = pair.split_once('=').expect("key=value");
        let v: f64 = value.parse().expect("number");
        match key {
            "cpu" => s.cpu_percent = v,
            "mem" => s.memory_used_bytes = v as u64,
            "psi" => {
                s.pressure = Some(Pressure {
                    cpu_some_avg10: v,
                    memory_some_avg10: v,
                    io_some_avg10: v,
                })
            }
            "req" => {
                has_app = true;
                app.scrape_enabled = true;
                app.scrapes = 1;
                app.requests = v;
            }
            "err" => app.errors = v,
            "lat" => latency = Some(v),
            "scrape_err" => {
                has_app = true;
                app.scrape_enabled = true;
                app.scrapes = 1;
                app.scrape_errors = 1;
                app.scrape_error = "connection refused".to_owned();
            }
            "probes" => {
                has_app = true;
                app.probe_enabled = true;
                app.probes = v as u32;
            }
            "probe_err" => app.probe_errors = v as u32,
            "probe_lat" => probe_latency = Some(v),
            gauge if gauge.starts_with("gauge.") => {
                has_app = true;
                app.scrape_enabled = true;
                app.gauges.push((gauge["gauge.".len()..].to_owned(), v));
            }
            other => panic!("unknown key {other}"),
        }
    }
    if let Some(lat) = latency {
        app.latency_count = app.requests;
        app.latency_buckets = BOUNDS
            .iter()
            .map(|&b| Bucket {
                upper_bound: b,
                cumulative_count: if b >= lat { app.requests } else { 0.0 },
            })
            .collect();
    }
    if let Some(lat) = probe_latency {
        // Every successful probe took `lat` seconds.
        let ok = f64::from(app.probes - app.probe_errors);
        app.probe_latency_buckets = BOUNDS
            .iter()
            .map(|&b| Bucket {
                upper_bound: b,
                cumulative_count: if b >= lat { ok } else { 0.0 },
            })
            .collect();
    }
    if has_app {
        s.app = Some(app);
    }
    s
}

/// One host per line: `beta|baseline key=value...`; a line may repeat a host
/// name with `+` to add a second sample to it (`beta+ req=...`).
fn fleet(spec: &str) -> Vec<HostRound> {
    let mut hosts: Vec<HostRound> = Vec::new();
    for (idx, line) in spec
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        if let Some(cohort) = head.strip_suffix('+') {
            let host = hosts
                .iter_mut()
                .rev()
                .find(|h| h.cohort.as_str() == cohort)
                .expect("a host to add to");
            host.add(&sample(rest));
            continue;
        }
        let cohort: Cohort = head.parse().expect("cohort");
        let mut host = HostRound::new(HostId::new(format!("{head}-{idx}")), cohort);
        host.add(&sample(rest));
        hosts.push(host);
    }
    hosts
}

fn rule(metric: &str) -> RawRule {
    RawRule {
        metric: metric.to_owned(),
        ..RawRule::default()
    }
}

fn max(metric: &str, limit: f64) -> RawRule {
    RawRule {
        max: Some(limit),
        ..rule(metric)
    }
}

fn ratio(metric: &str, ratio: f64, floor: f64) -> RawRule {
    RawRule {
        max_ratio_to_baseline: Some(ratio),
        min_baseline: Some(floor),
        ..rule(metric)
    }
}

fn policy(rules: Vec<RawRule>) -> RawPolicy {
    RawPolicy {
        rules,
        ..RawPolicy::default()
    }
}

#[track_caller]
fn check(policy: RawPolicy, hosts: &str, expected: Verdict, reason_has: &str) -> Evaluation {
    let policy = policy.validate("deployments.test").expect("valid policy");
    let rounds = fleet(hosts);
    let beta_seen = rounds.iter().filter(|h| h.cohort == Cohort::Beta).count() as u32;
    let evaluation = evaluate(
        &policy,
        &RoundInput {
            hosts: &rounds,
            round_secs: 5.0,
            beta_seen,
            hosts_seen: rounds.len() as u32,
        },
    );
    assert_eq!(evaluation.verdict, expected, "{evaluation:#?}");
    assert!(
        evaluation.reason.contains(reason_has),
        "reason `{}` lacks `{reason_has}`",
        evaluation.reason
    );
    evaluation
}

// === absolute rules ===

#[test]
fn error_rate_over_max_fails() {
    check(
        policy(vec![max("error_rate", 0.05)]),
        "beta req=1000 err=60",
        Verdict::Fail,
        "error_rate 0.06 > max 0.05",
    );
}

#[test]
fn error_rate_at_max_passes_strictly_greater_breaks() {
    check(
        policy(vec![max("error_rate", 0.05)]),
        "beta req=1000 err=50",
        Verdict::Pass,
        "every rule holds",
    );
}

#[test]
fn error_rate_pools_counts_over_hosts_not_rates() {
    // 100/1000 and 0/9000: the mean of rates would be 0.05; Σerr/Σreq is 0.01.
    check(
        policy(vec![max("error_rate", 0.02)]),
        "beta req=1000 err=100\nbeta req=9000 err=0",
        Verdict::Pass,
        "",
    );
    check(
        policy(vec![max("max_error_rate", 0.02)]),
        "beta req=1000 err=100\nbeta req=9000 err=0",
        Verdict::Fail,
        "max_error_rate 0.1 > max 0.02",
    );
}

#[test]
fn host_metric_is_a_mean_and_max_form_is_the_worst_host() {
    check(
        policy(vec![max("cpu_percent", 85.0)]),
        "beta cpu=95\nbeta cpu=55",
        Verdict::Pass,
        "",
    );
    check(
        policy(vec![max("max_cpu_percent", 85.0)]),
        "beta cpu=95\nbeta cpu=55",
        Verdict::Fail,
        "max_cpu_percent 95 > max 85",
    );
    check(
        policy(vec![max("memory_percent", 90.0)]),
        "beta mem=91",
        Verdict::Fail,
        "memory_percent 91 > max 90",
    );
}

#[test]
fn samples_of_one_host_in_a_round_are_averaged_and_counted_once() {
    let evaluation = check(
        policy(vec![max("cpu_percent", 85.0), max("error_rate", 0.05)]),
        "beta cpu=100 req=500 err=0\nbeta+ cpu=60 req=500 err=100",
        Verdict::Fail,
        "error_rate 0.1 > max 0.05",
    );
    assert_eq!(evaluation.rules[0].value, Some(80.0));
    assert_eq!(evaluation.beta.hosts, 1);
    assert_eq!(evaluation.beta.requests, 1000.0);
}

#[test]
fn latency_percentile_from_merged_buckets() {
    // Every request at 0.2 s lands in (0.1, 0.25]: p99 interpolates to 248.5 ms.
    let evaluation = check(
        policy(vec![max("latency_p99_ms", 250.0)]),
        "beta req=1000 lat=0.2",
        Verdict::Pass,
        "",
    );
    let p99 = evaluation.rules[0].value.expect("p99");
    assert!((p99 - 248.5).abs() < 1e-9, "{p99}");
    check(
        policy(vec![max("latency_p99_ms", 200.0)]),
        "beta req=1000 lat=0.2",
        Verdict::Fail,
        "latency_p99_ms 248.5 > max 200",
    );
}

#[test]
fn min_rule_on_a_gauge() {
    let rule = RawRule {
        min: Some(0.8),
        ..rule("cache_hit_ratio")
    };
    check(
        policy(vec![rule.clone()]),
        "beta gauge.cache_hit_ratio=0.5",
        Verdict::Fail,
        "cache_hit_ratio 0.5 < min 0.8",
    );
    check(
        policy(vec![rule]),
        "beta gauge.cache_hit_ratio=0.95",
        Verdict::Pass,
        "",
    );
}

#[test]
fn psi_only_counts_hosts_that_report_it() {
    check(
        policy(vec![max("psi_io_some_avg10", 10.0)]),
        "beta psi=20\nbeta cpu=1",
        Verdict::Fail,
        "psi_io_some_avg10 20 > max 10",
    );
    check(
        policy(vec![max("psi_io_some_avg10", 10.0)]),
        "beta cpu=1",
        Verdict::Error,
        "no beta host reports it",
    );
}

#[test]
fn probe_latency_percentiles() {
    for metric in [
        "probe_latency_p50_ms",
        "probe_latency_p95_ms",
        "probe_latency_p99_ms",
        "probe_latency_p999_ms",
    ] {
        let evaluation = check(
            policy(vec![max(metric, 100.0)]),
            "beta probes=4 probe_lat=0.3",
            Verdict::Fail,
            &format!("{metric} "),
        );
        let value = evaluation.rules[0].value.expect("a value");
        // 0.3 s falls in the (0.25, 0.5] bucket; quantiles interpolate in it.
        assert!((250.0..=500.0).contains(&value), "{metric}: {value}");
    }
    for metric in [
        "probe_latency_p50_ms",
        "probe_latency_p95_ms",
        "probe_latency_p99_ms",
        "probe_latency_p999_ms",
    ] {
        check(
            policy(vec![max(metric, 100.0)]),
            "beta probes=4 probe_err=4",
            Verdict::Error,
            &format!("{metric}: every beta probe failed"),
        );
    }
}

#[test]
fn probe_error_rate() {
    check(
        policy(vec![max("probe_error_rate", 0.2)]),
        "beta probes=5 probe_err=2",
        Verdict::Fail,
        "probe_error_rate 0.4 > max 0.2",
    );
    check(
        policy(vec![max("probe_error_rate", 0.2)]),
        "beta req=10",
        Verdict::Error,
        "no beta host probes the app",
    );
}

// === relative rules and the baseline ===

#[test]
fn relative_rule_compares_with_the_baseline() {
    check(
        policy(vec![ratio("error_rate", 5.0, 0.0)]),
        "beta req=1000 err=60\nbaseline req=1000 err=10",
        Verdict::Fail,
        "error_rate 0.06 > 5 × baseline 0.01 = 0.05",
    );
    check(
        policy(vec![ratio("error_rate", 5.0, 0.0)]),
        "beta req=1000 err=40\nbaseline req=1000 err=10",
        Verdict::Pass,
        "",
    );
}

#[test]
fn baseline_floor_keeps_noise_from_being_a_breach() {
    // Baseline p99 is 4.95 ms; floored to 10, the beta's 9.9 ms is within 2 × 10.
    check(
        policy(vec![ratio("latency_p99_ms", 2.0, 10.0)]),
        "beta req=1000 lat=0.008\nbaseline req=1000 lat=0.003",
        Verdict::Pass,
        "",
    );
    // Without the floor, the same fleet breaks the rule.
    check(
        policy(vec![ratio("latency_p99_ms", 2.0, 0.0)]),
        "beta req=1000 lat=0.008\nbaseline req=1000 lat=0.003",
        Verdict::Fail,
        "× baseline",
    );
}

#[test]
fn fleet_wide_incident_does_not_fail_relative_rules() {
    check(
        policy(vec![
            ratio("error_rate", 3.0, 0.01),
            ratio("latency_p99_ms", 2.0, 10.0),
        ]),
        "beta req=1000 err=300 lat=0.8\nbaseline req=1000 err=280 lat=0.9",
        Verdict::Pass,
        "",
    );
}

#[test]
fn relative_rule_needs_baseline_hosts_but_absolute_rules_do_not() {
    check(
        policy(vec![ratio("error_rate", 2.0, 0.0)]),
        "beta req=1000 err=60",
        Verdict::Inconclusive,
        "0 baseline host(s) reporting < min_hosts 1",
    );
    check(
        policy(vec![max("error_rate", 0.05)]),
        "beta req=1000 err=10",
        Verdict::Pass,
        "",
    );
}

#[test]
fn absolute_breach_fails_even_when_the_baseline_is_missing() {
    let both = RawRule {
        max: Some(0.05),
        ..ratio("error_rate", 2.0, 0.0)
    };
    check(
        policy(vec![both]),
        "beta req=1000 err=100",
        Verdict::Fail,
        "error_rate 0.1 > max 0.05",
    );
}

// === too little data, bad data ===

#[test]
fn too_few_requests_is_inconclusive() {
    check(
        policy(vec![max("error_rate", 0.05)]),
        "beta req=50 err=50",
        Verdict::Inconclusive,
        "50 beta requests < min_requests 100",
    );
    check(
        policy(vec![ratio("error_rate", 2.0, 0.0)]),
        "beta req=1000 err=60\nbaseline req=10 err=0",
        Verdict::Inconclusive,
        "10 baseline requests < min_requests 100",
    );
}

#[test]
fn too_few_beta_hosts_is_inconclusive() {
    let mut p = policy(vec![max("cpu_percent", 50.0)]);
    p.min_hosts = 2;
    check(
        p,
        "beta cpu=99\nbaseline cpu=1\nbaseline cpu=1",
        Verdict::Inconclusive,
        "1 beta host(s) reporting < min_hosts 2",
    );
}

#[test]
fn no_host_at_all_is_blind_not_failing() {
    let evaluation = check(
        policy(vec![max("error_rate", 0.05)]),
        "",
        Verdict::Inconclusive,
        "monitor is blind",
    );
    assert!(evaluation.blind);
}

#[test]
fn every_scrape_failing_is_an_error() {
    check(
        policy(vec![max("error_rate", 0.05)]),
        "beta scrape_err=1",
        Verdict::Inconclusive,
        "min_requests",
    );
    let mut p = policy(vec![max("error_rate", 0.05)]);
    p.min_requests = 0.0;
    check(
        p,
        "beta scrape_err=1",
        Verdict::Error,
        "every beta scrape failed (connection refused)",
    );
}

#[test]
fn unknown_gauge_is_an_error_that_names_it() {
    check(
        policy(vec![max("queue_depht", 10.0)]),
        "beta req=10 gauge.queue_depth=1",
        Verdict::Error,
        "queue_depht: no beta scrape has this gauge",
    );
}

#[test]
fn latency_rule_without_a_histogram_is_an_error() {
    check(
        policy(vec![max("latency_p99_ms", 100.0)]),
        "beta req=1000",
        Verdict::Error,
        "no latency histogram",
    );
}

#[test]
fn fail_outranks_error_outranks_inconclusive() {
    check(
        policy(vec![
            max("psi_io_some_avg10", 1.0),
            max("cpu_percent", 50.0),
            max("error_rate", 0.1),
        ]),
        "beta cpu=90 req=10",
        Verdict::Fail,
        "cpu_percent 90 > max 50",
    );
    check(
        policy(vec![max("psi_io_some_avg10", 1.0), max("error_rate", 0.1)]),
        "beta cpu=90 req=10",
        Verdict::Error,
        "psi_io_some_avg10",
    );
}

#[test]
fn blast_radius_is_an_error_naming_the_share() {
    let mut p = policy(vec![max("cpu_percent", 50.0)]);
    p.max_beta_share = 0.25;
    let evaluation = check(
        p,
        "beta cpu=1\nbeta cpu=1\nbaseline cpu=1\nbaseline cpu=1",
        Verdict::Error,
        "blast radius exceeded (2 of 4 beta > max_beta_share 0.25)",
    );
    assert!(evaluation.blast_radius_exceeded);
}

#[test]
fn a_beta_host_outside_beta_hosts_is_over_the_blast_radius() {
    let mut p = policy(vec![max("cpu_percent", 50.0)]);
    p.beta_hosts = vec!["beta-0".to_owned(), "canary-*".to_owned()];
    let hosts = "beta cpu=1\nbeta cpu=1\nbaseline cpu=1";
    let evaluation = check(
        p.clone(),
        hosts,
        Verdict::Error,
        "blast radius exceeded (beta on 1 host(s) outside beta_hosts: beta-1)",
    );
    assert!(evaluation.blast_radius_exceeded);
    // Many outside: a few are named, the rest counted.
    let many: String = (0..8).map(|_| "beta cpu=1\n").collect();
    check(
        p.clone(),
        &many,
        Verdict::Error,
        "beta on 7 host(s) outside beta_hosts: beta-1, beta-2, beta-3, beta-4, beta-5 and 2 more)",
    );
    p.beta_hosts = vec!["beta-*".to_owned()];
    check(p, hosts, Verdict::Pass, "every rule holds");
}

#[test]
fn host_patterns_match_whole_ids() {
    for (pattern, host, expected) in [
        ("web-1", "web-1", true),
        ("web-1", "web-10", false),
        ("web-*", "web-10", true),
        ("web-*", "web-", true),
        ("web-*", "db-1", false),
        ("*-eu", "web-eu", true),
        ("*-eu", "web-eu-2", false),
        ("w*b*-1", "web-1", true),
        ("ab*ba", "aba", false),
        ("ab*ba", "abba", true),
        ("a*b*c", "acb", false),
        ("a**c", "ac", true),
        ("*", "anything", true),
    ] {
        let matched = HostPattern::parse(pattern).expect("pattern").matches(host);
        assert_eq!(matched, expected, "{pattern} against {host}");
    }
}

// === counting rounds ===

fn run_rounds(policy: &Policy, verdicts: &str) -> (Vec<Decision>, JudgeState) {
    let mut state = JudgeState::default();
    let decisions = verdicts
        .split_whitespace()
        .map(|v| {
            let (verdict, blind) = match v {
                "P" => (Verdict::Pass, false),
                "F" => (Verdict::Fail, false),
                "I" => (Verdict::Inconclusive, false),
                "E" => (Verdict::Error, false),
                "B" => (Verdict::Inconclusive, true),
                other => panic!("unknown verdict {other}"),
            };
            let evaluation = Evaluation {
                verdict,
                reason: String::new(),
                rules: Vec::new(),
                beta: CohortFigures::default(),
                baseline: CohortFigures::default(),
                blind,
                blast_radius_exceeded: false,
            };
            advance(policy, &mut state, &evaluation)
        })
        .collect();
    (decisions, state)
}

#[track_caller]
fn check_rounds(policy: RawPolicy, verdicts: &str, expected: &str) {
    let policy = policy.validate("deployments.test").expect("valid");
    let (decisions, _) = run_rounds(&policy, verdicts);
    let got: Vec<&str> = decisions
        .iter()
        .map(|d| match d {
            Decision::None => ".",
            Decision::RollBack => "R",
            Decision::WouldRollBack => "W",
        })
        .collect();
    assert_eq!(got.join(" "), expected, "verdicts {verdicts}");
}

#[test]
fn rollback_after_exactly_consecutive_failures_then_disarmed() {
    check_rounds(policy(vec![]), "F F F F F", ". . R . .");
}

#[test]
fn pass_resets_the_count() {
    check_rounds(policy(vec![]), "F F P F F F", ". . . . . R");
}

#[test]
fn inconclusive_and_error_hold_never_pass_never_roll_back() {
    check_rounds(policy(vec![]), "F F I E I F", ". . . . . R");
    check_rounds(policy(vec![]), "I I I E E E I", ". . . . . . .");
}

#[test]
fn verdict_actions_can_count_inconclusive_but_never_blindness() {
    let mut p = policy(vec![]);
    p.on_inconclusive = VerdictAction::Fail;
    check_rounds(p.clone(), "F I I", ". . R");
    check_rounds(p, "B B B B F", ". . . . .");
}

#[test]
fn dry_run_records_would_roll_back_every_streak_and_stays_armed() {
    let mut p = policy(vec![]);
    p.dry_run = true;
    check_rounds(p.clone(), "F F F F F F F", ". . W . . W .");
    check_rounds(p.clone(), "F F F P F F F", ". . W . . . W");
    let policy = p.validate("d").expect("valid");
    let (_, state) = run_rounds(&policy, "F F F");
    assert!(state.armed, "a dry run never disarms: {state:?}");
    assert_eq!(state.consecutive, 0, "its streak is used up: {state:?}");
    let (_, state) = run_rounds(&policy, "F F F F");
    assert_eq!(state.consecutive, 1, "then a new count: {state:?}");
}

#[test]
fn rearm_allows_a_new_decision() {
    let policy = policy(vec![]).validate("d").expect("valid");
    let (_, mut state) = run_rounds(&policy, "F F F");
    assert!(!state.armed);
    state = JudgeState {
        consecutive: 0,
        ..JudgeState::default()
    };
    let evaluation = Evaluation {
        verdict: Verdict::Fail,
        reason: String::new(),
        rules: Vec::new(),
        beta: CohortFigures::default(),
        baseline: CohortFigures::default(),
        blind: false,
        blast_radius_exceeded: false,
    };
    let mut decisions = Vec::new();
    for _ in 0..3 {
        decisions.push(advance(&policy, &mut state, &evaluation));
    }
    assert_eq!(
        decisions,
        [Decision::None, Decision::None, Decision::RollBack]
    );
}

// === config ===

#[track_caller]
fn check_config_error(raw: RawPolicy, key: &str) {
    let err = raw.validate("deployments.web").expect_err("invalid");
    assert!(err.to_string().contains(key), "`{err}` lacks `{key}`");
}

#[test]
fn bad_policy_config_names_the_key() {
    check_config_error(policy(vec![rule("error_rate")]), "deployments.web.rules[0]");
    check_config_error(
        policy(vec![max("error rate", 1.0)]),
        "deployments.web.rules[0].metric",
    );
    check_config_error(
        policy(vec![max("cpu_percent", f64::NAN)]),
        "deployments.web.rules[0].max",
    );
    check_config_error(
        RawPolicy {
            beta_hosts: vec!["web-*".to_owned(), "bad name".to_owned()],
            ..RawPolicy::default()
        },
        "deployments.web.beta_hosts[1]",
    );
    check_config_error(
        policy(vec![RawRule {
            min_baseline: None,
            ..ratio("error_rate", 5.0, 0.0)
        }]),
        "deployments.web.rules[0].min_baseline",
    );
    check_config_error(
        policy(vec![ratio("error_rate", 5.0, -0.1)]),
        "deployments.web.rules[0].min_baseline",
    );
    check_config_error(
        RawPolicy {
            consecutive_failures: 0,
            ..RawPolicy::default()
        },
        "deployments.web.consecutive_failures",
    );
    check_config_error(
        RawPolicy {
            max_beta_share: 1.5,
            ..RawPolicy::default()
        },
        "deployments.web.max_beta_share",
    );
    check_config_error(
        RawPolicy {
            check_interval: "often".to_owned(),
            ..RawPolicy::default()
        },
        "deployments.web.check_interval",
    );
}

#[test]
fn metric_names_parse_into_kinds() {
    let m = Metric::parse("max_latency_p99_ms").expect("ok");
    assert_eq!(
        (m.kind, m.worst_host, m.base.as_str()),
        (MetricKind::App, true, "latency_p99_ms")
    );
    let m = Metric::parse("queue_depth").expect("ok");
    assert_eq!((m.kind, m.worst_host), (MetricKind::Gauge, false));
    let m = Metric::parse("max_queue_depth").expect("ok");
    assert_eq!(
        (m.kind, m.worst_host, m.base.as_str()),
        (MetricKind::Gauge, true, "queue_depth")
    );
}

#[test]
fn bucket_merge_with_different_bounds_is_a_lower_bound() {
    let a = [
        Bucket {
            upper_bound: 0.1,
            cumulative_count: 5.0,
        },
        Bucket {
            upper_bound: f64::INFINITY,
            cumulative_count: 10.0,
        },
    ];
    let b = [
        Bucket {
            upper_bound: 0.05,
            cumulative_count: 1.0,
        },
        Bucket {
            upper_bound: f64::INFINITY,
            cumulative_count: 2.0,
        },
    ];
    let merged = merge_buckets(&a, &b);
    let got: Vec<(f64, f64)> = merged
        .iter()
        .map(|x| (x.upper_bound, x.cumulative_count))
        .collect();
    assert_eq!(got, [(0.05, 1.0), (0.1, 6.0), (f64::INFINITY, 12.0)]);
}

#[test]
fn cohort_figures_survive_json_with_an_infinite_bound() {
    let figures = CohortFigures {
        latency_buckets: vec![(0.1, 5.0), (f64::INFINITY, 9.0)],
        ..CohortFigures::default()
    };
    let text = serde_json::to_string(&figures).expect("serializes");
    let back: CohortFigures = serde_json::from_str(&text).expect("deserializes");
    assert_eq!(back, figures);
}

#[test]
fn a_broken_rule_over_the_blast_radius_is_named_and_still_counts() {
    let mut p = policy(vec![max("cpu_percent", 50.0)]);
    p.max_beta_share = 0.25;
    let evaluation = check(
        p.clone(),
        "beta cpu=99\nbeta cpu=99\nbaseline cpu=1\nbaseline cpu=1",
        Verdict::Error,
        "blast radius exceeded (2 of 4 beta > max_beta_share 0.25); cpu_percent 99 > max 50",
    );
    let policy = p.clone().validate("d").expect("valid");
    let mut state = JudgeState::default();
    let decisions: Vec<Decision> = (0..3)
        .map(|_| advance(&policy, &mut state, &evaluation))
        .collect();
    assert_eq!(
        decisions,
        [Decision::None, Decision::None, Decision::RollBack]
    );
    // Over the radius with every rule holding: held, never counted.
    let healthy = check(
        p,
        "beta cpu=1\nbeta cpu=1\nbaseline cpu=1\nbaseline cpu=1",
        Verdict::Error,
        "blast radius exceeded",
    );
    let mut state = JudgeState::default();
    for _ in 0..5 {
        assert_eq!(advance(&policy, &mut state, &healthy), Decision::None);
    }
    assert_eq!(state.consecutive, 0);
}

#[test]
fn unreadable_or_missing_data_is_never_a_pass() {
    // A figure that is not a number is missing (the coordinator refuses
    // non-finite samples at the wire; the engine does not trust that).
    check(
        policy(vec![max("cpu_percent", 50.0)]),
        "beta cpu=NaN\nbaseline cpu=1",
        Verdict::Error,
        "cpu_percent: no beta host reports it",
    );
    // A round with no host at all: blind, never a failure of the beta.
    let evaluation = check(
        policy(vec![max("cpu_percent", 50.0)]),
        "",
        Verdict::Inconclusive,
        "no data from any host",
    );
    assert!(evaluation.blind);
    // Stale hosts send nothing, so they are not in the round: the beta
    // side is then short of min_hosts.
    let mut p = policy(vec![max("cpu_percent", 50.0)]);
    p.min_hosts = 2;
    check(
        p,
        "beta cpu=10\nbaseline cpu=1\nbaseline cpu=1",
        Verdict::Inconclusive,
        "1 beta host(s) reporting < min_hosts 2",
    );
}

/// Issue 9: host figures are named slots, not bare indices into a table.
#[test]
fn every_host_figure_has_its_own_name_and_slot() {
    use super::host_figure::HostFigure;
    assert_eq!(HOST_METRICS.len(), HostFigure::COUNT);
    for (idx, figure) in HostFigure::ALL.into_iter().enumerate() {
        assert_eq!(figure as usize, idx, "{figure:?} is out of ALL's order");
        assert_eq!(HOST_METRICS[idx], figure.name());
        assert_eq!(HostFigure::from_name(figure.name()), Some(figure));
    }
}

/// Issue 9: each host metric reads its own field, averaged over the
/// samples (PSI over the samples that had it).
#[test]
fn every_host_metric_is_the_mean_of_its_own_field() {
    let with = |scale: f64, psi: bool| {
        let mut s = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
        s.cpu_percent = 1.0 * scale;
        s.memory_total_bytes = 1000;
        s.memory_used_bytes = (20.0 * scale) as u64;
        s.load1 = 3.0 * scale;
        s.load5 = 4.0 * scale;
        s.load15 = 5.0 * scale;
        s.swap_used_bytes = (6.0 * scale) as u64;
        s.disk_read_bytes_per_sec = 7.0 * scale;
        s.disk_write_bytes_per_sec = 8.0 * scale;
        s.disk_read_ops_per_sec = 9.0 * scale;
        s.disk_write_ops_per_sec = 10.0 * scale;
        s.net_rx_bytes_per_sec = 11.0 * scale;
        s.net_tx_bytes_per_sec = 12.0 * scale;
        s.pressure = psi.then_some(Pressure {
            cpu_some_avg10: 13.0 * scale,
            memory_some_avg10: 14.0 * scale,
            io_some_avg10: 15.0 * scale,
        });
        s
    };
    let mut host = HostRound::new(HostId::new("web-1".to_owned()), Cohort::Beta);
    assert_eq!(host.host_figure("cpu_percent"), None);
    host.add(&with(1.0, true));
    host.add(&with(3.0, false));
    // Every field but PSI is the mean of scale 1 and 3; PSI only saw scale 1.
    let expected = [
        2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0, 22.0, 24.0, 13.0, 14.0, 15.0,
    ];
    assert_eq!(HOST_METRICS.len(), expected.len());
    for (name, want) in HOST_METRICS.iter().zip(expected) {
        assert_eq!(host.host_figure(name), Some(want), "{name}");
    }
    assert_eq!(host.host_figure("no_such_metric"), None);
}

/// `merge_buckets` as it was, looking each bound of the union up in both
/// (quadratic): the definition the linear merge must keep.
fn merge_by_lookup(a: &[Bucket], b: &[Bucket]) -> Vec<Bucket> {
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    if a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.upper_bound == y.upper_bound) {
        return a
            .iter()
            .zip(b)
            .map(|(x, y)| Bucket {
                upper_bound: x.upper_bound,
                cumulative_count: x.cumulative_count + y.cumulative_count,
            })
            .collect();
    }
    let mut bounds: Vec<f64> = a.iter().chain(b).map(|x| x.upper_bound).collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let at = |h: &[Bucket], bound: f64| {
        h.iter()
            .take_while(|x| x.upper_bound <= bound)
            .last()
            .map_or(0.0, |x| x.cumulative_count)
    };
    bounds
        .into_iter()
        .map(|bound| Bucket {
            upper_bound: bound,
            cumulative_count: at(a, bound) + at(b, bound),
        })
        .collect()
}

/// A histogram over a few shared bounds (so two often overlap).
fn histogram() -> impl proptest::strategy::Strategy<Value = Vec<Bucket>> {
    use proptest::prelude::*;
    const BOUNDS: [f64; 7] = [-0.0, 0.0, 0.005, 0.1, 1.0, 2.5, f64::INFINITY];
    (
        proptest::sample::subsequence(BOUNDS.to_vec(), 0..=BOUNDS.len()),
        proptest::collection::vec(0u32..100, BOUNDS.len()),
    )
        .prop_map(|(bounds, steps)| {
            let mut count = 0.0;
            bounds
                .into_iter()
                .zip(steps)
                .map(|(upper_bound, step)| {
                    count += f64::from(step);
                    Bucket {
                        upper_bound,
                        cumulative_count: count,
                    }
                })
                .collect()
        })
}

proptest::proptest! {
    #[test]
    fn the_linear_merge_keeps_the_merge_by_lookup(a in histogram(), b in histogram()) {
        let expected = merge_by_lookup(&a, &b);
        let merged = merge_buckets(&a, &b);
        let bits = |h: &[Bucket]| -> Vec<(u64, u64)> {
            h.iter().map(|x| (x.upper_bound.to_bits(), x.cumulative_count.to_bits())).collect()
        };
        proptest::prop_assert_eq!(bits(&merged), bits(&expected));
    }
}

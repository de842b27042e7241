//! The tripwire's state machine and its config checks, data-driven: a run
//! is one letter per interval and `check` says which ones fire.

use std::time::{Duration, SystemTime};

use rollguard_common::sample::AppHealth;

use super::*;

/// `after` 2s, 3 rounds in a row, `error_rate` max 0.2, action `rollback`.
fn config() -> TripwireConfig {
    raw("after = \"2s\"\nconsecutive_failures = 3\n\
         [[rules]]\nmetric = \"error_rate\"\nmax = 0.2\n")
    .validate(actions().iter())
    .expect("valid")
}

fn actions() -> Vec<String> {
    vec!["rollback".to_owned(), "promote".to_owned()]
}

fn raw(toml_text: &str) -> RawTripwire {
    // The agent's config loader reads the same serde type.
    serde_json::from_value(toml_to_json(toml_text)).expect("a [tripwire] table")
}

/// A tiny TOML subset (what the cases use): `key = value` lines and
/// `[[rules]]` headers, values as JSON.
fn toml_to_json(text: &str) -> serde_json::Value {
    let mut table = serde_json::Map::new();
    let mut rules: Vec<serde_json::Value> = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line == "[[rules]]" {
            rules.push(serde_json::json!({}));
            continue;
        }
        let (key, value) = line.split_once(" = ").expect("key = value");
        let value: serde_json::Value = serde_json::from_str(value).expect("a JSON value");
        match rules.last_mut() {
            Some(rule) => {
                rule[key] = value;
            }
            None => {
                table.insert(key.to_owned(), value);
            }
        }
    }
    if !rules.is_empty() {
        table.insert("rules".to_owned(), serde_json::Value::Array(rules));
    }
    serde_json::Value::Object(table)
}

/// One interval's sample: `f` 100 requests at 50% errors, `p` 100 at 0%,
/// `i` 2 requests (under min_requests: inconclusive).
fn sample(kind: char) -> HostSample {
    let mut sample = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_millis(500));
    let (requests, errors) = match kind {
        'f' => (100.0, 50.0),
        'p' => (100.0, 0.0),
        'i' => (2.0, 2.0),
        other => panic!("unknown round {other}"),
    };
    sample.app = Some(AppHealth {
        requests,
        errors,
        scrape_enabled: true,
        scrapes: 1,
        ..AppHealth::default()
    });
    sample
}

/// Runs `steps` (space-separated `REACH:ROUND`, REACH `up` or the seconds
/// unreachable, ROUND one of `f`, `p`, `i`; `up` alone for a reachable
/// tick) and returns the indexes of the steps that fired.
#[track_caller]
fn check(steps: &str, fired_before: bool, expected: &[usize]) {
    let mut tripwire = Tripwire::new(config(), HostId::new("web-1"), fired_before);
    let mut fired = Vec::new();
    for (idx, step) in steps.split_whitespace().enumerate() {
        let (reach, round) = step.split_once(':').unwrap_or((step, "f"));
        let reach = match reach {
            "up" => Reach::Reachable,
            secs => Reach::Unreachable(Duration::from_secs_f64(secs.parse().expect("seconds"))),
        };
        if let Some(trip) = tripwire.round(reach, &sample(round.chars().next().expect("round"))) {
            assert_eq!(trip.action, "rollback");
            assert_eq!(trip.consecutive, 3);
            assert_eq!(trip.figures.len(), 1, "{trip:?}");
            assert_eq!(trip.figures[0].metric, "error_rate");
            assert_eq!(trip.figures[0].value, Some(0.5));
            assert_eq!(trip.figures[0].limit, Some(0.2));
            assert!(trip.reason.contains("error_rate 0.5 > max 0.2"), "{trip:?}");
            fired.push(idx);
        }
    }
    assert_eq!(fired, expected, "steps `{steps}`");
}

#[test]
fn never_fires_while_reachable() {
    check("up up up up up up up up", false, &[]);
}

#[test]
fn fires_after_after_and_n_failing_rounds() {
    // Rounds before `after` do not count: the third counted round fires.
    check("0.5 1 1.5 2 2.5 3", false, &[5]);
    check("2 2.5 3", false, &[2]);
}

#[test]
fn a_passing_round_resets_the_count() {
    check("2:f 2.5:f 3:p 3.5:f 4:f 4.5:f", false, &[5]);
}

#[test]
fn inconclusive_rounds_hold_the_count() {
    // Too few requests is no evidence either way.
    check("2:f 2.5:i 3:f 3.5:i 4:f", false, &[4]);
}

#[test]
fn fires_once_per_outage() {
    check("2 2.5 3 3.5 4 4.5 5 5.5 6 6.5", false, &[2]);
}

#[test]
fn rearms_after_the_link_returns() {
    check("2 2.5 3 3.5 up 0.5 2 2.5 3", false, &[2, 8]);
}

#[test]
fn a_reconnect_before_firing_resets_the_count() {
    check("2 2.5 up 2 2.5 3", false, &[5]);
}

#[test]
fn a_restart_in_the_outage_it_fired_in_never_fires_again() {
    // The journal holds an unreported local run: disarmed until the link returns.
    check("2 2.5 3 3.5 4", true, &[]);
    check("2 2.5 3 up 2 2.5 3", true, &[6]);
}

#[test]
fn no_app_figures_never_fire() {
    let mut tripwire = Tripwire::new(config(), HostId::new("web-1"), false);
    let bare = HostSample::empty(SystemTime::UNIX_EPOCH, Duration::from_secs(1));
    for secs in 2..20 {
        let reach = Reach::Unreachable(Duration::from_secs(secs));
        assert_eq!(tripwire.round(reach, &bare), None);
    }
    assert!(tripwire.armed());
}

// === config ===

#[track_caller]
fn check_error(toml_text: &str, key: &str, message_has: &str) {
    match raw(toml_text).validate(actions().iter()) {
        Ok(config) => panic!("expected an error at `{key}`, got {config:?}"),
        Err(err) => {
            let text = err.to_string();
            assert!(text.contains(&format!("`{key}`")), "`{text}` lacks `{key}`");
            assert!(text.contains(message_has), "`{text}` lacks `{message_has}`");
        }
    }
}

const RULE: &str = "[[rules]]\nmetric = \"error_rate\"\nmax = 0.2\n";

#[test]
fn defaults() {
    let config = raw(RULE).validate(actions().iter()).expect("valid");
    assert_eq!(config.after, Duration::from_secs(60));
    assert_eq!(config.action, "rollback");
    assert_eq!(config.policy.consecutive_failures, 5);
    assert_eq!(config.policy.rules.len(), 1);
}

#[test]
fn bad_values_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("after = \"soon\"\n", "tripwire.after", "not a duration"),
        ("after = \"0s\"\n", "tripwire.after", "greater than zero"),
        ("action = \"reboot\"\n", "tripwire.action", "not an action"),
        ("consecutive_failures = 0\n", "tripwire.consecutive_failures", "at least 1"),
        ("min_requests = -1\n", "tripwire.min_requests", "non-negative"),
        ("", "tripwire.rules", "at least one rule"),
        (
            "[[rules]]\nmetric = \"cpu_percent\"\nmax = 90\n",
            "tripwire.rules[0].metric",
            "not an app figure",
        ),
        (
            "[[rules]]\nmetric = \"queue_depth\"\nmax = 9\n",
            "tripwire.rules[0].metric",
            "error_rate, request_rate",
        ),
        (
            "[[rules]]\nmetric = \"max_error_rate\"\nmax = 0.2\n",
            "tripwire.rules[0].metric",
            "use `error_rate`",
        ),
        (
            "[[rules]]\nmetric = \"error rate\"\nmax = 0.2\n",
            "tripwire.rules[0].metric",
            "not a metric name",
        ),
        (
            "[[rules]]\nmetric = \"error_rate\"\nmax = 0.2\n\
             [[rules]]\nmetric = \"latency_p99_ms\"\nmax_ratio_to_baseline = 2.0\nmin_baseline = 10\n",
            "tripwire.rules[1].max_ratio_to_baseline",
            "no baseline",
        ),
        (
            "[[rules]]\nmetric = \"error_rate\"\n",
            "tripwire.rules[0]",
            "needs `max`",
        ),
    ];
    for (table, key, message) in cases {
        let text = if table.contains("[[rules]]") || table.is_empty() {
            (*table).to_owned()
        } else {
            format!("{table}{RULE}")
        };
        check_error(&text, key, message);
    }
}

//! Judging one rule in one round: its limits, its baseline, and why a value
//! is missing.

use super::cohort::CohortRound;
use super::config::{Metric, MetricKind, Policy, Rule};
use super::display::format_value;
use super::round::{AppTotals, HostRound};
use super::verdict::{RuleOutcome, Verdict};

/// Why a cohort's value is missing, and whether that is `error` (unreadable) or `inconclusive` (too little).
fn missing(
    metric: &Metric,
    cohort: &str,
    hosts: &[&HostRound],
    app: &AppTotals,
) -> (Verdict, String) {
    match metric.kind {
        MetricKind::App if metric.is_probe() => {
            if !app.probe_enabled {
                (
                    Verdict::Error,
                    format!("{}: no {cohort} host probes the app", metric.name),
                )
            } else if app.probes > 0
                && app.probe_errors >= app.probes
                && metric.base.starts_with("probe_latency_")
            {
                (
                    Verdict::Error,
                    format!(
                        "{}: every {cohort} probe failed ({})",
                        metric.name, app.last_probe_error
                    ),
                )
            } else {
                (
                    Verdict::Inconclusive,
                    format!("{}: no {cohort} probes in the round", metric.name),
                )
            }
        }
        MetricKind::App => {
            if !app.scrape_enabled {
                (
                    Verdict::Error,
                    format!("{}: no {cohort} host scrapes the app", metric.name),
                )
            } else if app.scrape_blind() {
                (
                    Verdict::Error,
                    format!(
                        "{}: every {cohort} scrape failed ({})",
                        metric.name, app.last_scrape_error
                    ),
                )
            } else if metric.base.starts_with("latency_") && app.requests > 0.0 {
                (
                    Verdict::Error,
                    format!(
                        "{}: the {cohort} scrape has no latency histogram",
                        metric.name
                    ),
                )
            } else {
                (
                    Verdict::Inconclusive,
                    format!("{}: no {cohort} requests in the round", metric.name),
                )
            }
        }
        MetricKind::Host => (
            Verdict::Error,
            format!("{}: no {cohort} host reports it", metric.name),
        ),
        MetricKind::Gauge => {
            let scraped = hosts.iter().any(|h| h.app.scrape_enabled);
            (
                Verdict::Error,
                if scraped {
                    format!("{}: no {cohort} scrape has this gauge", metric.name)
                } else {
                    format!("{}: no {cohort} host scrapes the app", metric.name)
                },
            )
        }
    }
}

/// A rule's verdict other than pass, and why.
type NotPass = (Verdict, String);

/// Judges `rule` on the beta cohort (and the baseline, for a relative rule).
pub(super) fn judge_rule(
    policy: &Policy,
    rule: &Rule,
    round_secs: f64,
    beta: &CohortRound<'_>,
    baseline: &CohortRound<'_>,
) -> RuleOutcome {
    let metric = &rule.metric;
    let value = beta.value(metric, round_secs).filter(|v| !v.is_nan());
    let baseline_value = baseline.value(metric, round_secs).filter(|v| !v.is_nan());
    let mut outcome = RuleOutcome {
        metric: metric.name.clone(),
        value,
        baseline: baseline_value,
        limit: None,
        limit_text: rule.limit_text(),
        verdict: Verdict::Pass,
        note: String::new(),
    };
    // Each step either passes the value on or decides the rule; `limit`
    // keeps the last threshold set, even when a later step decides.
    let limit = &mut outcome.limit;
    let judged = evidence(policy, metric, value, beta, "beta").and_then(|value| {
        within_bounds(rule, value, limit)?;
        match rule.max_ratio_to_baseline {
            Some(ratio) => {
                within_ratio(policy, rule, ratio, value, baseline_value, baseline, limit)
            }
            None => Ok(()),
        }
    });
    if let Err((verdict, note)) = judged {
        outcome.verdict = verdict;
        outcome.note = note;
    }
    outcome
}

/// Returns a cohort's value when there is enough data to judge it.
fn evidence(
    policy: &Policy,
    metric: &Metric,
    value: Option<f64>,
    cohort: &CohortRound<'_>,
    cohort_name: &str,
) -> Result<f64, NotPass> {
    // Too few requests makes rates and latencies noise, not evidence.
    if metric.needs_requests() && cohort.app.requests < policy.min_requests {
        return Err((
            Verdict::Inconclusive,
            format!(
                "{}: {} {cohort_name} requests < min_requests {}",
                metric.name,
                format_value(cohort.app.requests),
                format_value(policy.min_requests)
            ),
        ));
    }
    value.ok_or_else(|| missing(metric, cohort_name, &cohort.hosts, &cohort.app))
}

/// Checks `max` and `min`.
fn within_bounds(rule: &Rule, value: f64, limit: &mut Option<f64>) -> Result<(), NotPass> {
    let name = &rule.metric.name;
    let fmt = format_value;
    if let Some(max) = rule.max {
        *limit = Some(max);
        if value > max {
            let note = format!("{name} {} > max {}", fmt(value), fmt(max));
            return Err((Verdict::Fail, note));
        }
    }
    if let Some(min) = rule.min {
        limit.get_or_insert(min);
        if value < min {
            let note = format!("{name} {} < min {}", fmt(value), fmt(min));
            return Err((Verdict::Fail, note));
        }
    }
    Ok(())
}

/// Checks `max_ratio_to_baseline`: beta > ratio × max(baseline, min_baseline) breaks it.
fn within_ratio(
    policy: &Policy,
    rule: &Rule,
    ratio: f64,
    value: f64,
    baseline_value: Option<f64>,
    baseline: &CohortRound<'_>,
    limit: &mut Option<f64>,
) -> Result<(), NotPass> {
    let metric = &rule.metric;
    let fmt = format_value;
    if (baseline.n_hosts() as u32) < policy.min_hosts {
        return Err((
            Verdict::Inconclusive,
            format!(
                "{}: {} baseline host(s) reporting < min_hosts {}",
                metric.name,
                baseline.n_hosts(),
                policy.min_hosts
            ),
        ));
    }
    let base = evidence(policy, metric, baseline_value, baseline, "baseline")?;
    let floored = base.max(rule.min_baseline);
    let threshold = ratio * floored;
    *limit = Some(threshold);
    if value > threshold {
        let floor_note = if floored > base {
            format!(" (floored to {})", fmt(floored))
        } else {
            String::new()
        };
        let note = format!(
            "{} {} > {} × baseline {}{floor_note} = {}",
            metric.name,
            fmt(value),
            fmt(ratio),
            fmt(base),
            fmt(threshold)
        );
        return Err((Verdict::Fail, note));
    }
    Ok(())
}

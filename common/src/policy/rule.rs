//! Judging one rule in one round: its limits, its baseline, and why a value
//! is missing.

use super::cohort::cohort_value;
use super::config::{Metric, MetricKind, Policy, Rule};
use super::display::format_value;
use super::round::{AppTotals, HostRound, RoundInput};
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

pub(super) fn judge_rule(
    policy: &Policy,
    rule: &Rule,
    input: &RoundInput<'_>,
    (beta, beta_app): (&[&HostRound], &AppTotals),
    (baseline, baseline_app): (&[&HostRound], &AppTotals),
) -> RuleOutcome {
    let metric = &rule.metric;
    let value = cohort_value(metric, beta, beta_app, input.round_secs).filter(|v| !v.is_nan());
    let baseline_value =
        cohort_value(metric, baseline, baseline_app, input.round_secs).filter(|v| !v.is_nan());
    let mut outcome = RuleOutcome {
        metric: metric.name.clone(),
        value,
        baseline: baseline_value,
        limit: None,
        limit_text: rule.limit_text(),
        verdict: Verdict::Pass,
        note: String::new(),
    };
    let fmt = |v: f64| format_value(v);
    // Too few requests makes rates and latencies noise, not evidence.
    if metric.needs_requests() && beta_app.requests < policy.min_requests {
        outcome.verdict = Verdict::Inconclusive;
        outcome.note = format!(
            "{}: {} beta requests < min_requests {}",
            metric.name,
            fmt(beta_app.requests),
            fmt(policy.min_requests)
        );
        return outcome;
    }
    let Some(value) = value else {
        let (verdict, note) = missing(metric, "beta", beta, beta_app);
        outcome.verdict = verdict;
        outcome.note = note;
        return outcome;
    };
    if let Some(max) = rule.max {
        outcome.limit = Some(max);
        if value > max {
            outcome.verdict = Verdict::Fail;
            outcome.note = format!("{} {} > max {}", metric.name, fmt(value), fmt(max));
            return outcome;
        }
    }
    if let Some(min) = rule.min {
        outcome.limit.get_or_insert(min);
        if value < min {
            outcome.verdict = Verdict::Fail;
            outcome.note = format!("{} {} < min {}", metric.name, fmt(value), fmt(min));
            return outcome;
        }
    }
    if let Some(ratio) = rule.max_ratio_to_baseline {
        if (baseline.len() as u32) < policy.min_hosts {
            outcome.verdict = Verdict::Inconclusive;
            outcome.note = format!(
                "{}: {} baseline host(s) reporting < min_hosts {}",
                metric.name,
                baseline.len(),
                policy.min_hosts
            );
            return outcome;
        }
        if metric.needs_requests() && baseline_app.requests < policy.min_requests {
            outcome.verdict = Verdict::Inconclusive;
            outcome.note = format!(
                "{}: {} baseline requests < min_requests {}",
                metric.name,
                fmt(baseline_app.requests),
                fmt(policy.min_requests)
            );
            return outcome;
        }
        let Some(base) = baseline_value else {
            let (verdict, note) = missing(metric, "baseline", baseline, baseline_app);
            outcome.verdict = verdict;
            outcome.note = note;
            return outcome;
        };
        let floored = base.max(rule.min_baseline);
        let limit = ratio * floored;
        outcome.limit = Some(limit);
        if value > limit {
            outcome.verdict = Verdict::Fail;
            outcome.note = format!(
                "{} {} > {} × baseline {}{} = {}",
                metric.name,
                fmt(value),
                fmt(ratio),
                fmt(base),
                if floored > base {
                    format!(" (floored to {})", fmt(floored))
                } else {
                    String::new()
                },
                fmt(limit)
            );
            return outcome;
        }
    }
    outcome
}

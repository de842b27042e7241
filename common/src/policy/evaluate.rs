//! One round's verdict, and what a verdict does to a deployment's count.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::{Metric, MetricKind, Policy, Rule, VerdictAction};
use super::round::{quantile_ms, AppTotals, HostRound};
use crate::Cohort;

/// The verdict of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
    /// Too few hosts, samples or requests to judge.
    Inconclusive,
    /// The data could not be read (or a gate such as the blast radius is broken).
    Error,
}

impl Verdict {
    /// Returns the lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Error => "error",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The data of one round of one deployment.
#[derive(Debug, Clone, Copy)]
pub struct RoundInput<'a> {
    /// Hosts that sent at least one sample during the round.
    pub hosts: &'a [HostRound],
    /// Length of the round, for `request_rate`.
    pub round_secs: f64,
    /// Beta hosts of the deployment seen in the last 24 h (blast radius).
    pub beta_seen: u32,
    /// All hosts of the deployment seen in the last 24 h.
    pub hosts_seen: u32,
}

/// One rule's result in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleOutcome {
    pub metric: String,
    /// The beta cohort's value.
    pub value: Option<f64>,
    /// The baseline cohort's value (always computed when there is one).
    pub baseline: Option<f64>,
    /// The threshold the value was held to (for relative rules: ratio × floored baseline).
    pub limit: Option<f64>,
    /// How the limit reads, e.g. `max 0.05` or `2 × baseline (floor 10)`.
    pub limit_text: String,
    pub verdict: Verdict,
    /// Why, when not a plain pass.
    pub note: String,
}

/// Figures of one cohort in one round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CohortFigures {
    pub hosts: u32,
    pub requests: f64,
    pub errors: f64,
    pub error_rate: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub cpu_percent: Option<f64>,
    pub memory_percent: Option<f64>,
    /// Latency bucket deltas of the round, merged over hosts (for reports over many rounds).
    #[serde(with = "bounds_serde")]
    pub latency_buckets: Vec<(f64, f64)>,
}

/// The verdict of one round with everything it used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub verdict: Verdict,
    pub reason: String,
    pub rules: Vec<RuleOutcome>,
    pub beta: CohortFigures,
    pub baseline: CohortFigures,
    /// The monitor heard from no host: never counts toward a rollback.
    pub blind: bool,
    pub blast_radius_exceeded: bool,
}

/// Judges one round.
pub fn evaluate(policy: &Policy, input: &RoundInput<'_>) -> Evaluation {
    let beta: Vec<&HostRound> = cohort_hosts(input.hosts, Cohort::Beta);
    let baseline: Vec<&HostRound> = cohort_hosts(input.hosts, Cohort::Baseline);
    let beta_app = pooled(&beta);
    let baseline_app = pooled(&baseline);
    let rules: Vec<RuleOutcome> = policy
        .rules
        .iter()
        .map(|rule| {
            judge_rule(
                policy,
                rule,
                input,
                (&beta, &beta_app),
                (&baseline, &baseline_app),
            )
        })
        .collect();
    let mut evaluation = Evaluation {
        verdict: Verdict::Pass,
        reason: String::new(),
        rules,
        beta: figures(&beta, &beta_app),
        baseline: figures(&baseline, &baseline_app),
        blind: false,
        blast_radius_exceeded: false,
    };
    let share = if input.hosts_seen == 0 {
        0.0
    } else {
        f64::from(input.beta_seen) / f64::from(input.hosts_seen)
    };
    let outside: Vec<&str> = beta
        .iter()
        .map(|h| h.host_id.as_str())
        .filter(|h| !policy.allows_beta(h))
        .collect();
    if share > policy.max_beta_share || !outside.is_empty() {
        // Every host stays watched: the rules are judged as usual, and a
        // broken rule is named (and still counts, see `advance`), because an
        // over-wide beta must not become harder to roll back.
        evaluation.blast_radius_exceeded = true;
        evaluation.verdict = Verdict::Error;
        let broken: Vec<&str> = evaluation
            .rules
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .map(|r| r.note.as_str())
            .collect();
        let over = if outside.is_empty() {
            format!(
                "{} of {} beta > max_beta_share {}",
                input.beta_seen, input.hosts_seen, policy.max_beta_share
            )
        } else {
            // Named, but a bounded few: the reason is stored with every round.
            const NAMED: usize = 5;
            let more = outside.len().saturating_sub(NAMED);
            format!(
                "beta on {} host(s) outside beta_hosts: {}{}",
                outside.len(),
                outside[..outside.len().min(NAMED)].join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            )
        };
        evaluation.reason = format!(
            "blast radius exceeded ({over}){}",
            if broken.is_empty() {
                String::new()
            } else {
                format!("; {}", broken.join("; "))
            }
        );
        return evaluation;
    }
    if beta.is_empty() && baseline.is_empty() {
        evaluation.blind = true;
        evaluation.verdict = Verdict::Inconclusive;
        evaluation.reason =
            "no data from any host: the monitor is blind, not the beta failing".to_owned();
        return evaluation;
    }
    if (beta.len() as u32) < policy.min_hosts {
        evaluation.verdict = Verdict::Inconclusive;
        evaluation.reason = format!(
            "{} beta host(s) reporting < min_hosts {}",
            beta.len(),
            policy.min_hosts
        );
        return evaluation;
    }
    let by = |v: Verdict| evaluation.rules.iter().filter(move |r| r.verdict == v);
    let (verdict, picked): (Verdict, Vec<&RuleOutcome>) = if by(Verdict::Fail).next().is_some() {
        (Verdict::Fail, by(Verdict::Fail).collect())
    } else if by(Verdict::Error).next().is_some() {
        (Verdict::Error, by(Verdict::Error).collect())
    } else if by(Verdict::Inconclusive).next().is_some() {
        (Verdict::Inconclusive, by(Verdict::Inconclusive).collect())
    } else {
        (Verdict::Pass, Vec::new())
    };
    let reason = if verdict == Verdict::Pass {
        if policy.rules.is_empty() {
            "no rules".to_owned()
        } else {
            "every rule holds".to_owned()
        }
    } else {
        picked
            .iter()
            .map(|r| r.note.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    evaluation.verdict = verdict;
    evaluation.reason = reason;
    evaluation
}

fn cohort_hosts(hosts: &[HostRound], cohort: Cohort) -> Vec<&HostRound> {
    hosts
        .iter()
        .filter(|h| h.cohort == cohort && h.samples > 0)
        .collect()
}

fn pooled(hosts: &[&HostRound]) -> AppTotals {
    let mut totals = AppTotals::default();
    for host in hosts {
        totals.add(&host.app);
    }
    totals
}

fn figures(hosts: &[&HostRound], app: &AppTotals) -> CohortFigures {
    CohortFigures {
        hosts: hosts.len() as u32,
        requests: app.requests,
        errors: app.errors,
        error_rate: app.error_rate(),
        latency_p99_ms: quantile_ms(0.99, &app.latency_buckets),
        cpu_percent: mean(hosts.iter().filter_map(|h| h.host_figure("cpu_percent"))),
        memory_percent: mean(hosts.iter().filter_map(|h| h.host_figure("memory_percent"))),
        latency_buckets: app
            .latency_buckets
            .iter()
            .map(|b| (b.upper_bound, b.cumulative_count))
            .collect(),
    }
}

fn mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / f64::from(n))
}

fn max(values: impl Iterator<Item = f64>) -> Option<f64> {
    values.fold(None, |acc: Option<f64>, v| {
        Some(acc.map_or(v, |a| a.max(v)))
    })
}

/// The pooled value of an app metric over `app` (one host's or a cohort's totals).
fn app_value(metric: &str, app: &AppTotals, round_secs: f64) -> Option<f64> {
    match metric {
        "error_rate" => app.error_rate(),
        "request_rate" => {
            (round_secs > 0.0 && app.reporting > 0).then(|| app.requests / round_secs)
        }
        "latency_p50_ms" => quantile_ms(0.5, &app.latency_buckets),
        "latency_p95_ms" => quantile_ms(0.95, &app.latency_buckets),
        "latency_p99_ms" => quantile_ms(0.99, &app.latency_buckets),
        "latency_p999_ms" => quantile_ms(0.999, &app.latency_buckets),
        "probe_error_rate" => app.probe_error_rate(),
        "probe_latency_p50_ms" => quantile_ms(0.5, &app.probe_latency_buckets),
        "probe_latency_p95_ms" => quantile_ms(0.95, &app.probe_latency_buckets),
        "probe_latency_p99_ms" => quantile_ms(0.99, &app.probe_latency_buckets),
        "probe_latency_p999_ms" => quantile_ms(0.999, &app.probe_latency_buckets),
        _ => None,
    }
}

/// A cohort's value of `metric`.
fn cohort_value(
    metric: &Metric,
    hosts: &[&HostRound],
    app: &AppTotals,
    round_secs: f64,
) -> Option<f64> {
    match (metric.kind, metric.worst_host) {
        (MetricKind::App, false) => app_value(&metric.base, app, round_secs),
        (MetricKind::App, true) => max(hosts
            .iter()
            .filter_map(|h| app_value(&metric.base, &h.app, round_secs))),
        (MetricKind::Host, false) => mean(hosts.iter().filter_map(|h| h.host_figure(&metric.base))),
        (MetricKind::Host, true) => max(hosts.iter().filter_map(|h| h.host_figure(&metric.base))),
        (MetricKind::Gauge, false) => mean(hosts.iter().filter_map(|h| h.gauge(&metric.base))),
        (MetricKind::Gauge, true) => max(hosts.iter().filter_map(|h| h.gauge(&metric.base))),
    }
}

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

fn judge_rule(
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

impl Rule {
    /// How the limit reads, e.g. "max 0.05" or "2 × baseline (floor 10)".
    pub fn limit_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(max) = self.max {
            parts.push(format!("max {}", format_value(max)));
        }
        if let Some(min) = self.min {
            parts.push(format!("min {}", format_value(min)));
        }
        if let Some(ratio) = self.max_ratio_to_baseline {
            if self.min_baseline > 0.0 {
                parts.push(format!(
                    "{} × baseline (floor {})",
                    format_value(ratio),
                    format_value(self.min_baseline)
                ));
            } else {
                parts.push(format!("{} × baseline", format_value(ratio)));
            }
        }
        parts.join(", ")
    }
}

/// Formats a figure with up to four significant decimals.
pub fn format_value(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A deployment's judging state between rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeState {
    /// Failing rounds in a row (as counted by the verdict actions).
    pub consecutive: u32,
    /// Whether a rollback may still be decided; cleared by a decision, set by `rearm`.
    pub armed: bool,
}

impl Default for JudgeState {
    fn default() -> Self {
        JudgeState {
            consecutive: 0,
            armed: true,
        }
    }
}

/// What a round decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Nothing to do.
    None,
    /// Roll the beta hosts back now.
    RollBack,
    /// Dry run: record that it would roll back, act on nothing.
    WouldRollBack,
}

/// Applies a round's verdict to the count and returns the decision.
pub fn advance(policy: &Policy, state: &mut JudgeState, evaluation: &Evaluation) -> Decision {
    let counts = match evaluation.verdict {
        Verdict::Pass => {
            state.consecutive = 0;
            false
        }
        Verdict::Fail => true,
        // Being blind, or over the blast radius, is never evidence against
        // the beta by itself; a rule broken while over the radius is.
        _ if evaluation.blind => false,
        _ if evaluation.blast_radius_exceeded => {
            evaluation.rules.iter().any(|r| r.verdict == Verdict::Fail)
        }
        Verdict::Inconclusive => policy.on_inconclusive == VerdictAction::Fail,
        Verdict::Error => policy.on_error == VerdictAction::Fail,
    };
    if counts {
        state.consecutive = state.consecutive.saturating_add(1);
    }
    if !(counts && state.armed && state.consecutive >= policy.consecutive_failures) {
        return Decision::None;
    }
    if policy.dry_run {
        // A dry run acts on nothing, so nothing disarms it, and its streak
        // is used up: the count starts afresh, and turning dry_run off hands
        // over an armed deployment with nothing counted.
        state.consecutive = 0;
        return Decision::WouldRollBack;
    }
    state.armed = false;
    Decision::RollBack
}

/// JSON has no +Inf: the last bucket bound is stored as the string "+Inf".
mod bounds_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Bound {
        Finite(f64),
        Text(String),
    }

    pub(super) fn serialize<S: Serializer>(pairs: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let wire: Vec<(Bound, f64)> = pairs
            .iter()
            .map(|&(bound, count)| {
                if bound.is_finite() {
                    (Bound::Finite(bound), count)
                } else {
                    (Bound::Text("+Inf".to_owned()), count)
                }
            })
            .collect();
        wire.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(f64, f64)>, D::Error> {
        let wire: Vec<(Bound, f64)> = Vec::deserialize(d)?;
        Ok(wire
            .into_iter()
            .map(|(bound, count)| match bound {
                Bound::Finite(v) => (v, count),
                Bound::Text(_) => (f64::INFINITY, count),
            })
            .collect())
    }
}

//! The local tripwire (issue 11): while the coordinator has been unreachable
//! for `tripwire.after`, this host judges its own app figures against
//! absolute rules, once per interval, and after `consecutive_failures`
//! failing local rounds in a row runs one named action of its own.
//!
//! Main types: [`RawTripwire`] (the `[tripwire]` table as written),
//! [`TripwireConfig`] (checked, with the rules as a common
//! [`Policy`]), and [`Tripwire`], the state machine the link feeds once
//! per interval with the link's reachability and the interval's sample.
//!
//! Judging is the coordinator's own pure code (`rollguard_common::policy`):
//! the sample becomes a one-host round, `evaluate` gives its verdict and
//! `advance` counts it, so a rule reads and breaks here exactly as it
//! does there (strictly greater than `max`; inconclusive and error hold).
//!
//! Deliberately NOT done here: relative rules (no baseline is reachable
//! from one host), host figures and gauges (only the app's own figures,
//! whose names are fixed), journalling, running and reporting (the link's
//! `command` module does those, with the journal that makes the run
//! at-most-once), and any clock: durations come in as arguments.

use std::time::Duration;

use rollguard_common::config::{parse_positive_duration, ConfigError};
use rollguard_common::policy::{
    advance, evaluate, Decision, HostRound, JudgeState, Metric, MetricKind, Policy, RawPolicy,
    RawRule, RoundInput, RuleOutcome, Verdict, APP_METRICS,
};
use rollguard_common::{Cohort, HostId, HostSample};
use serde::{Deserialize, Serialize};

/// The key of the table, for error messages.
const KEY: &str = "tripwire";

/// The `[tripwire]` table as written. Present means on.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTripwire {
    /// Judges only while the coordinator has been unreachable this long.
    pub after: String,
    /// The action of this agent's `[actions]` to run when it fires.
    pub action: String,
    /// Failing local rounds in a row (one per interval) before it fires.
    pub consecutive_failures: u32,
    /// Requests a local round needs before rate and latency rules count
    /// (fewer is inconclusive, which holds the count).
    pub min_requests: f64,
    /// Absolute rules on this host's app figures (`max` / `min` only).
    pub rules: Vec<RawRule>,
}

impl Default for RawTripwire {
    fn default() -> Self {
        RawTripwire {
            after: "60s".to_owned(),
            action: "rollback".to_owned(),
            consecutive_failures: 5,
            min_requests: 10.0,
            rules: Vec::new(),
        }
    }
}

/// The checked `[tripwire]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct TripwireConfig {
    /// How long the coordinator must have been unreachable.
    pub after: Duration,
    /// A name of `[actions]`.
    pub action: String,
    /// The rules, `consecutive_failures` and `min_requests` as a policy of
    /// the common engine (one beta host, no baseline).
    pub policy: Policy,
}

impl RawTripwire {
    /// Checks every key; `action_names` are the names `[actions]` defines.
    pub fn validate<'a>(
        self,
        mut action_names: impl Iterator<Item = &'a String>,
    ) -> Result<TripwireConfig, ConfigError> {
        let after = parse_positive_duration(&format!("{KEY}.after"), &self.after)?;
        if !action_names.any(|name| *name == self.action) {
            return Err(ConfigError::invalid(
                format!("{KEY}.action"),
                format!(
                    "`{}` is not an action of this agent: define it in [actions.{}]",
                    self.action, self.action
                ),
            ));
        }
        if self.rules.is_empty() {
            return Err(ConfigError::invalid(
                format!("{KEY}.rules"),
                "a tripwire needs at least one rule ([[tripwire.rules]] metric = \"error_rate\", max = 0.2)",
            ));
        }
        for (idx, rule) in self.rules.iter().enumerate() {
            check_rule(&format!("{KEY}.rules[{idx}]"), rule)?;
        }
        // The rest (max/min present and finite, the count, min_requests)
        // is the coordinator's own check of a deployment's rules.
        let policy = RawPolicy {
            rollback_action: self.action.clone(),
            consecutive_failures: self.consecutive_failures,
            min_requests: self.min_requests,
            rules: self.rules,
            ..RawPolicy::default()
        }
        .validate(KEY)?;
        Ok(TripwireConfig {
            after,
            action: self.action,
            policy,
        })
    }
}

/// Checks that a rule is absolute and names an app figure of one host.
fn check_rule(rule_key: &str, rule: &RawRule) -> Result<(), ConfigError> {
    let metric = Metric::parse(&rule.metric)
        .map_err(|m| ConfigError::invalid(format!("{rule_key}.metric"), m))?;
    let known = APP_METRICS.join(", ");
    if metric.kind != MetricKind::App {
        return Err(ConfigError::invalid(
            format!("{rule_key}.metric"),
            format!(
                "`{}` is not an app figure; a tripwire judges only this host's app: one of {known}",
                rule.metric
            ),
        ));
    }
    if metric.worst_host {
        return Err(ConfigError::invalid(
            format!("{rule_key}.metric"),
            format!(
                "`{}`: a tripwire judges one host, so use `{}`",
                rule.metric, metric.base
            ),
        ));
    }
    for (name, set) in [
        (
            "max_ratio_to_baseline",
            rule.max_ratio_to_baseline.is_some(),
        ),
        ("min_baseline", rule.min_baseline.is_some()),
    ] {
        if set {
            return Err(ConfigError::invalid(
                format!("{rule_key}.{name}"),
                "no baseline is reachable from one host: a tripwire takes only `max` and `min`",
            ));
        }
    }
    Ok(())
}

/// What the link knows of the coordinator at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    /// A stream is open (its Welcome came).
    Reachable,
    /// No stream for this long.
    Unreachable(Duration),
}

/// Why the tripwire fired: what the link journals and reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    /// The action to run.
    pub action: String,
    /// The broken rules' notes, e.g. `error_rate 0.5 > max 0.2`.
    pub reason: String,
    /// The rules that broke in the round that fired, with their figures.
    pub figures: Vec<RuleOutcome>,
    /// Failing local rounds in a row when it fired.
    pub consecutive: u32,
    /// How long the coordinator had been unreachable.
    pub unreachable_ms: u64,
}

/// The tripwire's state between ticks.
#[derive(Debug)]
pub(crate) struct Tripwire {
    config: TripwireConfig,
    host_id: HostId,
    /// The count of failing local rounds, and whether it may still fire in
    /// this outage (cleared when it fires, set when the link returns).
    state: JudgeState,
}

impl Tripwire {
    /// Returns an armed tripwire; `fired_this_outage` (a local run the
    /// journal holds unreported) starts it disarmed until the link returns,
    /// so that an agent restarted in the outage it fired in never fires again.
    pub(crate) fn new(config: TripwireConfig, host_id: HostId, fired_this_outage: bool) -> Self {
        Tripwire {
            config,
            host_id,
            state: JudgeState {
                consecutive: 0,
                armed: !fired_this_outage,
            },
        }
    }

    /// The link is back: the outage is over, so it re-arms with a fresh count.
    pub(crate) fn reconnected(&mut self) {
        self.state = JudgeState::default();
    }

    /// Returns whether it may still fire in this outage.
    #[cfg(test)]
    pub(crate) fn armed(&self) -> bool {
        self.state.armed
    }

    /// Judges one interval; returns the trip when this round fires it.
    pub(crate) fn round(&mut self, reach: Reach, sample: &HostSample) -> Option<Trip> {
        let unreachable = match reach {
            Reach::Reachable => {
                self.reconnected();
                return None;
            }
            // Too soon: rounds count only from `after` on, so a short
            // outage never adds to a streak.
            Reach::Unreachable(away) if away < self.config.after => {
                self.state.consecutive = 0;
                return None;
            }
            Reach::Unreachable(away) => away,
        };
        if !self.state.armed {
            return None;
        }
        let mut round = HostRound::new(self.host_id.clone(), Cohort::Beta);
        round.add(sample);
        let hosts = [round];
        let evaluation = evaluate(
            &self.config.policy,
            &RoundInput {
                hosts: &hosts,
                round_secs: sample.interval.as_secs_f64(),
                beta_seen: 1,
                hosts_seen: 1,
            },
        );
        tracing::debug!(verdict = %evaluation.verdict, reason = %evaluation.reason, "local tripwire round");
        if advance(&self.config.policy, &mut self.state, &evaluation) != Decision::RollBack {
            return None;
        }
        Some(Trip {
            action: self.config.action.clone(),
            reason: evaluation.reason,
            figures: evaluation
                .rules
                .into_iter()
                .filter(|r| r.verdict == Verdict::Fail)
                .collect(),
            consecutive: self.state.consecutive,
            unreachable_ms: u64::try_from(unreachable.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests;

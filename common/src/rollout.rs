//! Rollouts (issue 12): the `[deployments.NAME.blast_radius]` and
//! `[deployments.NAME.rollout]` tables, raw and checked, and the pure parts
//! of running one: which hosts a phase puts on the new version, and how a
//! beta figure compares with the baseline's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{parse_duration, parse_positive_duration, ConfigError};
use crate::ids::validate_name;

/// The phases when none are configured: cumulative percent of the hosts.
pub const DEFAULT_PHASES: [u32; 4] = [5, 25, 90, 100];

/// The essay's step 1, as written: every field must be set to start a
/// rollout, so each is optional here and checked by the preflight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlastRadius {
    /// `non-critical` or `critical`.
    pub impact_level: Option<String>,
    pub affected_users: Option<String>,
    /// `automatic-rollback` or `manual`.
    pub fallback_strategy: Option<String>,
    pub data_at_risk: Option<String>,
    pub financial_impact: Option<String>,
    pub reputation_risk: Option<String>,
}

impl BlastRadius {
    /// Every field with its name, in the order the essay lists them.
    pub fn fields(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("impact_level", self.impact_level.as_deref()),
            ("affected_users", self.affected_users.as_deref()),
            ("fallback_strategy", self.fallback_strategy.as_deref()),
            ("data_at_risk", self.data_at_risk.as_deref()),
            ("financial_impact", self.financial_impact.as_deref()),
            ("reputation_risk", self.reputation_risk.as_deref()),
        ]
    }

    /// The fields not set (or blank).
    pub fn missing(&self) -> Vec<&'static str> {
        self.fields()
            .into_iter()
            .filter(|(_, v)| v.is_none_or(|v| v.trim().is_empty()))
            .map(|(name, _)| name)
            .collect()
    }

    /// What makes this rollout risky enough to need `--accept-risk`: a
    /// critical impact, data at risk, or a manual fallback.
    pub fn risks(&self) -> Vec<String> {
        let mut risks = Vec::new();
        if self.impact_level.as_deref() == Some("critical") {
            risks.push("impact_level is critical".to_owned());
        }
        if let Some(data) = self
            .data_at_risk
            .as_deref()
            .filter(|d| !d.trim().is_empty() && *d != "none")
        {
            risks.push(format!("data_at_risk is `{data}`"));
        }
        if self.fallback_strategy.as_deref() == Some("manual") {
            risks.push("fallback_strategy is manual".to_owned());
        }
        risks
    }

    /// Checks the two fields with a fixed set of values.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let check = |field: &str, value: Option<&str>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v) => Err(ConfigError::invalid(
                format!("{key}.{field}"),
                format!("`{v}` is not one of {}", allowed.join(", ")),
            )),
            _ => Ok(()),
        };
        check(
            "impact_level",
            self.impact_level.as_deref(),
            &["non-critical", "critical"],
        )?;
        check(
            "fallback_strategy",
            self.fallback_strategy.as_deref(),
            &["automatic-rollback", "manual"],
        )
    }
}

/// Whether every phase after the first waits for an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    Auto,
    Manual,
}

/// The `[deployments.NAME.rollout]` table as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRollout {
    pub phases: Vec<u32>,
    pub min_phase_duration: String,
    pub min_passing_rounds: u32,
    pub approval: Approval,
    /// The agents' action that installs a version; required to start a rollout.
    pub promote_action: String,
    pub status_every: String,
    pub status_for: String,
    pub briefing: String,
    pub retrospective_after: String,
}

impl Default for RawRollout {
    fn default() -> Self {
        RawRollout {
            phases: DEFAULT_PHASES.to_vec(),
            min_phase_duration: "1h".to_owned(),
            min_passing_rounds: 10,
            approval: Approval::Auto,
            promote_action: String::new(),
            status_every: "5m".to_owned(),
            status_for: "1h".to_owned(),
            briefing: "30m".to_owned(),
            retrospective_after: "24h".to_owned(),
        }
    }
}

/// The checked rollout settings of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutConfig {
    pub phases: Vec<u32>,
    pub min_phase_duration: Duration,
    pub min_passing_rounds: u32,
    pub approval: Approval,
    /// `None` when not configured: no rollout can start.
    pub promote_action: Option<String>,
    pub status_every: Duration,
    pub status_for: Duration,
    pub briefing: Duration,
    pub retrospective_after: Duration,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        RawRollout::default()
            .validate("rollout")
            .expect("the default rollout is valid")
    }
}

impl RawRollout {
    /// Checks every value; `key` is the table's path, e.g. `deployments.web.rollout`.
    pub fn validate(self, key: &str) -> Result<RolloutConfig, ConfigError> {
        let phases = validate_phases(&self.phases)
            .map_err(|m| ConfigError::invalid(format!("{key}.phases"), m))?;
        let promote_action = match self.promote_action.as_str() {
            "" => None,
            name => {
                validate_name("promote_action", name)
                    .map_err(|m| ConfigError::invalid(format!("{key}.promote_action"), m))?;
                Some(name.to_owned())
            }
        };
        let duration = |name: &str, value: &str| parse_duration(&format!("{key}.{name}"), value);
        Ok(RolloutConfig {
            phases,
            min_phase_duration: duration("min_phase_duration", &self.min_phase_duration)?,
            min_passing_rounds: self.min_passing_rounds,
            approval: self.approval,
            promote_action,
            status_every: parse_positive_duration(
                &format!("{key}.status_every"),
                &self.status_every,
            )?,
            status_for: duration("status_for", &self.status_for)?,
            briefing: duration("briefing", &self.briefing)?,
            retrospective_after: duration("retrospective_after", &self.retrospective_after)?,
        })
    }
}

/// Phases must rise strictly, lie in 1..=100 and end at 100 (the last
/// phase puts every host on the new version).
pub fn validate_phases(phases: &[u32]) -> Result<Vec<u32>, String> {
    if phases.is_empty() || phases.len() > 20 {
        return Err("needs 1 to 20 phases".to_owned());
    }
    if phases.iter().any(|p| !(1..=100).contains(p)) {
        return Err(format!("{phases:?}: each phase is a percent in 1..=100"));
    }
    if phases.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("{phases:?}: phases must rise strictly"));
    }
    if phases.last() != Some(&100) {
        return Err(format!("{phases:?}: the last phase must be 100"));
    }
    Ok(phases.to_vec())
}

/// How many of `hosts` hosts phase `percent` puts on the new version:
/// ⌈hosts × percent / 100⌉, and at least one.
pub fn phase_hosts(hosts: usize, percent: u32) -> usize {
    if hosts == 0 {
        return 0;
    }
    let wanted = (hosts * percent as usize).div_ceil(100);
    wanted.clamp(1, hosts)
}

/// The order in which a deployment's hosts join a rollout: by a hash of
/// (deployment, host id) that is the same on every coordinator and in
/// every release (FNV-1a, 64 bits), ties by id. A host keeps its place
/// whoever else joins, so each phase's set contains the one before.
pub fn host_order<'a>(deployment: &str, hosts: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keyed: Vec<(u64, &str)> = hosts
        .into_iter()
        .map(|host| {
            (
                fnv1a(&[deployment.as_bytes(), b"\0", host.as_bytes()]),
                host,
            )
        })
        .collect();
    keyed.sort_unstable();
    keyed.dedup();
    keyed.into_iter().map(|(_, host)| host).collect()
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// How a beta figure compares with the baseline's (the essay's expansion
/// review). Every figure compared is better lower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assessment {
    Acceptable,
    Improvement,
    Regression,
    /// One side had no value.
    Unknown,
}

impl Assessment {
    pub fn as_str(self) -> &'static str {
        match self {
            Assessment::Acceptable => "acceptable",
            Assessment::Improvement => "improvement",
            Assessment::Regression => "regression",
            Assessment::Unknown => "unknown",
        }
    }

    /// Beta against baseline for `metric`: a change counts when it is both
    /// more than 10 % of the baseline and more than the metric's noise
    /// floor (0.1 points of error rate, 5 ms of p99, 2 points of CPU or
    /// memory), so that 0.02 % against 0.01 % errors is no regression.
    pub fn of(metric: &str, beta: Option<f64>, baseline: Option<f64>) -> Assessment {
        let (Some(beta), Some(baseline)) = (beta, baseline) else {
            return Assessment::Unknown;
        };
        let floor = match metric {
            "error_rate" => 0.001,
            "latency_p99_ms" => 5.0,
            _ => 2.0,
        };
        let change = beta - baseline;
        let counts = change.abs() > floor && change.abs() > baseline.abs() * 0.1;
        match (counts, change > 0.0) {
            (false, _) => Assessment::Acceptable,
            (true, true) => Assessment::Regression,
            (true, false) => Assessment::Improvement,
        }
    }
}

#[cfg(test)]
mod tests;

//! Policy config: the `[deployments.NAME]` table and its rules, raw and checked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::host_figure::HostFigure;
use crate::config::{parse_positive_duration, ConfigError};
use crate::ids::validate_name;
use crate::rollout::{BlastRadius, RawRollout, RolloutConfig};

/// App metrics pooled over a cohort's hosts (Σ over hosts, then the ratio or quantile).
pub const APP_METRICS: &[&str] = &[
    "error_rate",
    "request_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "latency_p999_ms",
    "probe_error_rate",
    "probe_latency_p50_ms",
    "probe_latency_p95_ms",
    "probe_latency_p99_ms",
    "probe_latency_p999_ms",
];

/// Host metrics, averaged over a cohort's hosts.
pub const HOST_METRICS: &[&str] = &HostFigure::NAMES;

/// What a verdict other than pass/fail does to the consecutive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictAction {
    /// Neither reset nor advance the count (the default).
    Hold,
    /// Count as a failure.
    Fail,
}

impl VerdictAction {
    /// The name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictAction::Hold => "hold",
            VerdictAction::Fail => "fail",
        }
    }
}

/// One `[[deployments.NAME.rules]]` entry as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Metric name, e.g. `error_rate`, `max_cpu_percent`, or a gauge name.
    pub metric: String,
    /// Broken when the beta value is strictly greater.
    pub max: Option<f64>,
    /// Broken when the beta value is strictly less (for gauges such as cache_hit_ratio).
    pub min: Option<f64>,
    /// Broken when beta > ratio × max(baseline, min_baseline).
    pub max_ratio_to_baseline: Option<f64>,
    /// Floor of the baseline in relative rules; required with `max_ratio_to_baseline`.
    pub min_baseline: Option<f64>,
}

/// A `[deployments.NAME]` table as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawPolicy {
    /// Agent-side action a rollback names.
    pub rollback_action: String,
    /// Length of one evaluation round.
    pub check_interval: String,
    /// Failing rounds in a row before acting.
    pub consecutive_failures: u32,
    /// Hosts needed per cohort (baseline: only for relative rules).
    pub min_hosts: u32,
    /// Requests needed per cohort per round for rate and latency rules.
    pub min_requests: f64,
    /// Record "would roll back" and act on nothing.
    pub dry_run: bool,
    /// Largest share of the deployment's hosts (seen in 24 h) that may be beta.
    pub max_beta_share: f64,
    /// Host id patterns (`*` matches any run of characters) of the hosts
    /// that may be beta; empty means any host.
    pub beta_hosts: Vec<String>,
    /// What `inconclusive` does to the count.
    pub on_inconclusive: VerdictAction,
    /// What `error` does to the count.
    pub on_error: VerdictAction,
    /// The rules; none means status only.
    pub rules: Vec<RawRule>,
    /// The essay's step 1, required to start a rollout (issue 12).
    pub blast_radius: BlastRadius,
    /// How a rollout of this deployment runs.
    pub rollout: RawRollout,
}

impl Default for RawPolicy {
    fn default() -> Self {
        RawPolicy {
            rollback_action: "rollback".to_owned(),
            check_interval: "5s".to_owned(),
            consecutive_failures: 3,
            min_hosts: 1,
            min_requests: 100.0,
            dry_run: false,
            max_beta_share: 1.0,
            beta_hosts: Vec::new(),
            on_inconclusive: VerdictAction::Hold,
            on_error: VerdictAction::Hold,
            rules: Vec::new(),
            blast_radius: BlastRadius::default(),
            rollout: RawRollout::default(),
        }
    }
}

/// How a metric is aggregated over a cohort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Pooled app metric (one of [`APP_METRICS`]).
    App,
    /// Host figure, mean over hosts (one of [`HOST_METRICS`]).
    Host,
    /// A named app gauge, mean over hosts.
    Gauge,
}

/// A checked metric reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    /// The name as configured (with `max_` when `worst_host`).
    pub name: String,
    /// The name without the `max_` prefix.
    pub base: String,
    pub kind: MetricKind,
    /// `max_` form: the worst host's value instead of the cohort's.
    pub worst_host: bool,
}

impl Metric {
    /// Parses a metric name; anything that is not a known app or host metric is a gauge name.
    pub fn parse(name: &str) -> Result<Metric, String> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.chars().enumerate().all(|(i, c)| {
                c == '_' || c == ':' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
            });
        if !valid {
            return Err(format!("`{name}` is not a metric name"));
        }
        let known = |n: &str| {
            if APP_METRICS.contains(&n) {
                Some(MetricKind::App)
            } else if HOST_METRICS.contains(&n) {
                Some(MetricKind::Host)
            } else {
                None
            }
        };
        if let Some(kind) = known(name) {
            return Ok(Metric {
                name: name.to_owned(),
                base: name.to_owned(),
                kind,
                worst_host: false,
            });
        }
        if let Some(base) = name.strip_prefix("max_") {
            let kind = known(base).unwrap_or(MetricKind::Gauge);
            return Ok(Metric {
                name: name.to_owned(),
                base: base.to_owned(),
                kind,
                worst_host: true,
            });
        }
        Ok(Metric {
            name: name.to_owned(),
            base: name.to_owned(),
            kind: MetricKind::Gauge,
            worst_host: false,
        })
    }

    /// Returns true for metrics that need `min_requests` (scrape-derived rates and latencies).
    pub fn needs_requests(&self) -> bool {
        self.kind == MetricKind::App
            && (self.base == "error_rate" || self.base.starts_with("latency_"))
    }

    /// Returns true for probe-derived metrics.
    pub fn is_probe(&self) -> bool {
        self.kind == MetricKind::App && self.base.starts_with("probe_")
    }
}

/// A checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub metric: Metric,
    pub max: Option<f64>,
    pub min: Option<f64>,
    pub max_ratio_to_baseline: Option<f64>,
    pub min_baseline: f64,
}

impl Rule {
    /// Returns true when the rule compares against the baseline cohort.
    pub fn is_relative(&self) -> bool {
        self.max_ratio_to_baseline.is_some()
    }
}

/// The checked policy of one deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub rollback_action: String,
    pub check_interval: Duration,
    pub consecutive_failures: u32,
    pub min_hosts: u32,
    pub min_requests: f64,
    pub dry_run: bool,
    pub max_beta_share: f64,
    /// Hosts that may be beta; empty means any.
    pub beta_hosts: Vec<HostPattern>,
    pub on_inconclusive: VerdictAction,
    pub on_error: VerdictAction,
    pub rules: Vec<Rule>,
    pub blast_radius: BlastRadius,
    pub rollout: RolloutConfig,
}

impl Policy {
    /// Returns true when `host_id` may be a beta host of this deployment.
    pub fn allows_beta(&self, host_id: &str) -> bool {
        self.beta_hosts.is_empty() || self.beta_hosts.iter().any(|p| p.matches(host_id))
    }
}

/// A host id pattern: `*` matches any run of characters, everything else
/// itself (`web-1*`, `canary-*-eu`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// Checks a pattern as written.
    pub fn parse(pattern: &str) -> Result<HostPattern, String> {
        validate_name("a host pattern", pattern)?;
        Ok(HostPattern(pattern.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns true when the whole of `host_id` matches.
    pub fn matches(&self, host_id: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or_default();
        let Some(mut rest) = host_id.strip_prefix(first) else {
            return false;
        };
        let mut middle: Vec<&str> = parts.collect();
        let Some(last) = middle.pop() else {
            // No `*`: the whole id.
            return rest.is_empty();
        };
        let Some(inner) = rest.strip_suffix(last) else {
            return false;
        };
        rest = inner;
        // Leftmost matches of the middle parts, in order, are enough.
        for part in middle {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

impl Default for Policy {
    fn default() -> Self {
        RawPolicy::default()
            .validate("deployments.default")
            .expect("the default policy is valid")
    }
}

impl RawPolicy {
    /// Checks every value; `key` is the table's path for error messages, e.g. `deployments.web`.
    pub fn validate(self, key: &str) -> Result<Policy, ConfigError> {
        validate_name("rollback_action", &self.rollback_action)
            .map_err(|m| ConfigError::invalid(format!("{key}.rollback_action"), m))?;
        let check_interval =
            parse_positive_duration(&format!("{key}.check_interval"), &self.check_interval)?;
        if check_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                format!("{key}.check_interval"),
                "must be at least 100ms",
            ));
        }
        let beta_hosts = self
            .beta_hosts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                HostPattern::parse(p)
                    .map_err(|m| ConfigError::invalid(format!("{key}.beta_hosts[{i}]"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.consecutive_failures == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.consecutive_failures"),
                "must be at least 1",
            ));
        }
        if self.min_hosts == 0 {
            return Err(ConfigError::invalid(
                format!("{key}.min_hosts"),
                "must be at least 1",
            ));
        }
        if !self.min_requests.is_finite() || self.min_requests < 0.0 {
            return Err(ConfigError::invalid(
                format!("{key}.min_requests"),
                "must be a non-negative number",
            ));
        }
        if !(self.max_beta_share > 0.0 && self.max_beta_share <= 1.0) {
            return Err(ConfigError::invalid(
                format!("{key}.max_beta_share"),
                "must be in (0, 1]",
            ));
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for (idx, raw) in self.rules.into_iter().enumerate() {
            rules.push(raw.validate(&format!("{key}.rules[{idx}]"))?);
        }
        self.blast_radius.validate(&format!("{key}.blast_radius"))?;
        let rollout = self.rollout.validate(&format!("{key}.rollout"))?;
        Ok(Policy {
            rollback_action: self.rollback_action,
            check_interval,
            consecutive_failures: self.consecutive_failures,
            min_hosts: self.min_hosts,
            min_requests: self.min_requests,
            dry_run: self.dry_run,
            max_beta_share: self.max_beta_share,
            beta_hosts,
            on_inconclusive: self.on_inconclusive,
            on_error: self.on_error,
            rules,
            blast_radius: self.blast_radius,
            rollout,
        })
    }
}

impl RawRule {
    /// Checks one rule; `rule_key` is its path for error messages, e.g.
    /// `deployments.web.rules[0]`.
    fn validate(self, rule_key: &str) -> Result<Rule, ConfigError> {
        let metric = Metric::parse(&self.metric)
            .map_err(|m| ConfigError::invalid(format!("{rule_key}.metric"), m))?;
        if self.max.is_none() && self.min.is_none() && self.max_ratio_to_baseline.is_none() {
            return Err(ConfigError::invalid(
                rule_key,
                "a rule needs `max`, `min` or `max_ratio_to_baseline`",
            ));
        }
        for (name, value) in [
            ("max", self.max),
            ("min", self.min),
            ("max_ratio_to_baseline", self.max_ratio_to_baseline),
            ("min_baseline", self.min_baseline),
        ] {
            if value.is_some_and(|v| !v.is_finite()) {
                return Err(ConfigError::invalid(
                    format!("{rule_key}.{name}"),
                    "must be a finite number",
                ));
            }
        }
        if self.max_ratio_to_baseline.is_some_and(|r| r <= 0.0) {
            return Err(ConfigError::invalid(
                format!("{rule_key}.max_ratio_to_baseline"),
                "must be greater than 0",
            ));
        }
        match (self.max_ratio_to_baseline, self.min_baseline) {
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    format!("{rule_key}.min_baseline"),
                    "only applies with max_ratio_to_baseline",
                ))
            }
            // A ratio to a baseline near zero turns noise into a breach
            // (5 x 0 errors is 0): the floor is asked for, not guessed.
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    format!("{rule_key}.min_baseline"),
                    "is required with max_ratio_to_baseline: the floor the baseline \
                     counts as when it is lower (e.g. 0.01 for error_rate, 10 for a \
                     latency in ms; 0 for none)",
                ))
            }
            (_, Some(floor)) if floor < 0.0 => {
                return Err(ConfigError::invalid(
                    format!("{rule_key}.min_baseline"),
                    "must not be negative",
                ))
            }
            _ => {}
        }
        Ok(Rule {
            metric,
            max: self.max,
            min: self.min,
            max_ratio_to_baseline: self.max_ratio_to_baseline,
            min_baseline: self.min_baseline.unwrap_or(0.0),
        })
    }
}

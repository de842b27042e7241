//! What one round concludes: the [`Verdict`], each rule's [`RuleOutcome`],
//! the cohorts' [`CohortFigures`], and the [`Evaluation`] that holds them all.
//! Types only: judging lives in `evaluate`, `gate` and `rule`.

use std::fmt;

use serde::{Deserialize, Serialize};

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

//! The gates of a round: conditions that decide its verdict whatever its
//! rules say. Checked in order: the blast radius (an error), then a blind
//! monitor (hears from no host), then too few beta hosts (inconclusive).

use super::cohort::CohortRound;
use super::config::Policy;
use super::round::RoundInput;
use super::verdict::{Evaluation, RuleOutcome, Verdict};

/// A gate that decided a round.
#[derive(Debug)]
pub(super) enum Gate {
    /// Too large a share of the deployment is beta, or beta runs on a host
    /// outside `beta_hosts`; holds the reason.
    BlastRadius(String),
    /// No host of either cohort reported.
    Blind,
    /// Fewer beta hosts reported than `min_hosts`; holds the reason.
    TooFewBetaHosts(String),
}

impl Gate {
    /// Returns the first gate that decides the round, if any. `rules` are
    /// the round's judged rules: a broken one is named over the blast radius.
    pub(super) fn check(
        policy: &Policy,
        input: &RoundInput<'_>,
        beta: &CohortRound<'_>,
        baseline: &CohortRound<'_>,
        rules: &[RuleOutcome],
    ) -> Option<Gate> {
        if let Some(reason) = blast_radius(policy, input, beta, rules) {
            return Some(Gate::BlastRadius(reason));
        }
        if beta.n_hosts() == 0 && baseline.n_hosts() == 0 {
            return Some(Gate::Blind);
        }
        if (beta.n_hosts() as u32) < policy.min_hosts {
            return Some(Gate::TooFewBetaHosts(format!(
                "{} beta host(s) reporting < min_hosts {}",
                beta.n_hosts(),
                policy.min_hosts
            )));
        }
        None
    }

    /// Writes the gate's verdict and reason into `evaluation`.
    pub(super) fn apply(self, evaluation: &mut Evaluation) {
        match self {
            Gate::BlastRadius(reason) => {
                evaluation.blast_radius_exceeded = true;
                evaluation.verdict = Verdict::Error;
                evaluation.reason = reason;
            }
            Gate::Blind => {
                evaluation.blind = true;
                evaluation.verdict = Verdict::Inconclusive;
                evaluation.reason =
                    "no data from any host: the monitor is blind, not the beta failing".to_owned();
            }
            Gate::TooFewBetaHosts(reason) => {
                evaluation.verdict = Verdict::Inconclusive;
                evaluation.reason = reason;
            }
        }
    }
}

/// Returns why the beta is wider than the policy allows, if it is.
fn blast_radius(
    policy: &Policy,
    input: &RoundInput<'_>,
    beta: &CohortRound<'_>,
    rules: &[RuleOutcome],
) -> Option<String> {
    let share = if input.hosts_seen == 0 {
        0.0
    } else {
        f64::from(input.beta_seen) / f64::from(input.hosts_seen)
    };
    let outside: Vec<&str> = beta
        .hosts
        .iter()
        .map(|h| h.host_id.as_str())
        .filter(|h| !policy.allows_beta(h))
        .collect();
    let over_share = share > policy.max_beta_share;
    if !over_share && outside.is_empty() {
        return None;
    }
    // Every host stays watched: the rules are judged as usual, and a
    // broken rule is named (and still counts, see `advance`), because an
    // over-wide beta must not become harder to roll back.
    let broken: Vec<&str> = rules
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
    let broken = if broken.is_empty() {
        String::new()
    } else {
        format!("; {}", broken.join("; "))
    };
    Some(format!("blast radius exceeded ({over}){broken}"))
}

//! The consecutive-failure state machine: what a round's verdict does to a
//! deployment's count, and when that count decides a rollback.

use serde::{Deserialize, Serialize};

use super::config::{Policy, VerdictAction};
use super::verdict::{Evaluation, Verdict};

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

//! A rollout as stored (issue 12): one record per rollout, rewritten on
//! every change of its state, keyed by (deployment, number).

use rollguard_common::DeploymentName;
use serde::{Deserialize, Serialize};

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RolloutState {
    /// Stored with a start time still to come.
    Scheduled,
    Running,
    /// A phase's gate holds except for `rollguardctl rollout approve`.
    WaitingApproval,
    /// An operator paused it: no new phase starts; failures still roll back.
    Paused,
    Completed,
    RolledBack,
    Aborted,
}

impl RolloutState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RolloutState::Scheduled => "scheduled",
            RolloutState::Running => "running",
            RolloutState::WaitingApproval => "waiting_approval",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Aborted => "aborted",
        }
    }

    /// Whether it has started and not ended: hosts may be promoted.
    pub(crate) fn is_active(self) -> bool {
        matches!(
            self,
            RolloutState::Running | RolloutState::WaitingApproval | RolloutState::Paused
        )
    }

    /// Whether it is over (its promoted hosts are no longer beta).
    pub(crate) fn is_ended(self) -> bool {
        matches!(
            self,
            RolloutState::Completed | RolloutState::RolledBack | RolloutState::Aborted
        )
    }
}

/// One phase as it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PhaseRecord {
    pub(crate) percent: u32,
    pub(crate) started_at_unix_ms: u64,
    /// When every promote of the phase had succeeded: rounds count from here.
    #[serde(default)]
    pub(crate) settled_at_unix_ms: Option<u64>,
    #[serde(default)]
    pub(crate) ended_at_unix_ms: Option<u64>,
    /// The deployment's hosts the phase's share was taken of.
    pub(crate) hosts_total: u32,
    /// The hosts this phase promoted (the earlier phases' stay promoted).
    pub(crate) hosts: Vec<String>,
    /// Its promote command; empty when the phase needed no new host.
    pub(crate) promote_command: String,
    /// Who approved the step past it (manual approval); empty for none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) approved_by: String,
}

/// A rollout, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RolloutRecord {
    pub(crate) deployment: String,
    /// Numbers the deployment's rollouts from 1.
    pub(crate) number: u64,
    pub(crate) version: String,
    pub(crate) phases: Vec<u32>,
    pub(crate) state: RolloutState,
    pub(crate) created_by: String,
    pub(crate) created_at_unix_ms: u64,
    /// When it starts (or started, or was scheduled to).
    pub(crate) start_at_unix_ms: u64,
    /// The reason an operator accepted a risky blast radius; empty for none.
    #[serde(default)]
    pub(crate) accept_risk: String,
    /// The `rollout.scheduled` announcement went out.
    #[serde(default)]
    pub(crate) briefed: bool,
    /// The phases started so far; the last is the current one.
    pub(crate) phase_log: Vec<PhaseRecord>,
    /// Every host promoted so far, in the order they were.
    pub(crate) promoted: Vec<String>,
    /// The state `resume` returns to.
    #[serde(default)]
    pub(crate) paused_from: Option<RolloutState>,
    /// The first failing round was announced (`rollout.incident`).
    #[serde(default)]
    pub(crate) incident_sent: bool,
    #[serde(default)]
    pub(crate) ended_at_unix_ms: Option<u64>,
    /// Why it ended, and by whom.
    #[serde(default)]
    pub(crate) end_reason: String,
    #[serde(default)]
    pub(crate) ended_by: String,
    /// The rollback that ended it, if one did.
    #[serde(default)]
    pub(crate) rollback_command: String,
    /// The retrospective, once made (`retrospective_after` the end).
    #[serde(default)]
    pub(crate) retrospective: Option<serde_json::Value>,
    /// Passing rounds in a row since the current phase settled. Not
    /// stored: after a restart the count starts again, which only makes
    /// the gate wait longer.
    #[serde(skip)]
    pub(crate) passing_rounds: u32,
    /// When the last `rollout.status` went out (not stored).
    #[serde(skip)]
    pub(crate) last_status_unix_ms: u64,
}

impl RolloutRecord {
    pub(crate) fn deployment_name(&self) -> DeploymentName {
        DeploymentName::new(self.deployment.clone())
    }

    /// The current phase, once started.
    pub(crate) fn current(&self) -> Option<&PhaseRecord> {
        self.phase_log.last()
    }

    pub(crate) fn current_mut(&mut self) -> Option<&mut PhaseRecord> {
        self.phase_log.last_mut()
    }

    /// The 1-based number of the current phase (0 before the first).
    pub(crate) fn phase_number(&self) -> u32 {
        u32::try_from(self.phase_log.len()).unwrap_or(u32::MAX)
    }

    /// The hosts beta by this rollout: its promoted hosts while it is active.
    pub(crate) fn beta_hosts(&self) -> &[String] {
        if self.state.is_active() {
            &self.promoted
        } else {
            &[]
        }
    }
}

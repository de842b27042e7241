//! Rollouts (issue 12): a blast-radius preflight, then phases of a
//! deployment's `auto` hosts on a new version (5 → 25 → 90 → 100 % by
//! default), each gated on time, passing rounds and (optionally) an
//! operator's approval, with the team told at every step.
//!
//! `Rollouts` owns every deployment's newest rollout under one async lock
//! (off every hot path: a tick twice a second, each judged round, and
//! operators' calls). It acts only through `Decisions`, whose lock
//! serializes a promote against a rollback decision, so a host is never
//! promoted past a decision that should have covered it. Lock order:
//! rollouts, then decisions; `Decisions` never calls in here.
//!
//! Every change of a rollout is stored before it takes effect, a promote
//! in the same commit as the record that names it, so after a restart the
//! rollout resumes where it was and nothing is sent twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_common::rollout::{validate_phases, Approval};
use rollguard_common::DeploymentName;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decisions::Decisions;
use crate::error::{chain, Error, Result};
use crate::fleet::Fleet;
use crate::notify::Notifier;
use crate::outbound::AgentTx;
use crate::review::{compare, Comparison};
use crate::store::{
    from_unix_ms, unix_ms, AuditRecord, RolloutRecord, RolloutState, RoundRecord, Store, Write,
};

mod drive;
pub(crate) mod preflight;
pub(crate) mod view;

pub(crate) use preflight::Check;
pub(crate) use view::RolloutView;

/// How often rollouts look at their promotes, gates and clocks.
const TICK: Duration = Duration::from_millis(500);

/// What an operator may do to a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Approve,
    Pause,
    Resume,
    Abort,
}

impl Change {
    fn as_str(self) -> &'static str {
        match self {
            Change::Approve => "approve",
            Change::Pause => "pause",
            Change::Resume => "resume",
            Change::Abort => "abort",
        }
    }
}

/// A start the operator asked for.
#[derive(Debug, Clone)]
pub(crate) struct StartRequest {
    pub(crate) deployment: DeploymentName,
    pub(crate) version: String,
    /// `None`: the deployment's configured phases.
    pub(crate) phases: Option<Vec<u32>>,
    /// `None`: now.
    pub(crate) at: Option<SystemTime>,
    pub(crate) accept_risk: String,
    pub(crate) actor: String,
}

/// What a start did: refused (the failing checks) or stored.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) checks: Vec<Check>,
    pub(crate) rollout: Option<RolloutView>,
}

/// Every deployment's newest rollout; see the module docs.
#[derive(Debug)]
pub(crate) struct Rollouts {
    config: Arc<Config>,
    fleet: Arc<Fleet<AgentTx>>,
    store: Store,
    decisions: Arc<Decisions>,
    notifier: Notifier,
    current: tokio::sync::Mutex<BTreeMap<DeploymentName, RolloutRecord>>,
}

impl Rollouts {
    /// Takes back the newest rollout of each deployment from the store and
    /// puts the hosts an active one promoted back in the beta.
    pub(crate) fn restore(
        records: Vec<RolloutRecord>,
        config: Arc<Config>,
        fleet: Arc<Fleet<AgentTx>>,
        store: Store,
        decisions: Arc<Decisions>,
        notifier: Notifier,
    ) -> Self {
        let mut current = BTreeMap::new();
        for record in records {
            let deployment = record.deployment_name();
            fleet.set_promoted(&deployment, record.beta_hosts());
            if record.state.is_active() {
                tracing::info!(%deployment, number = record.number, state = record.state.as_str(), phase = record.phase_number(), "resuming the rollout");
            }
            current.insert(deployment, record);
        }
        Rollouts {
            config,
            fleet,
            store,
            decisions,
            notifier,
            current: tokio::sync::Mutex::new(current),
        }
    }

    /// Drives every rollout: each judged round, and a tick for promotes,
    /// gates and clocks, until `shutdown`.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut rounds = self.decisions.subscribe_rounds();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                round = rounds.recv() => match round {
                    Ok(round) => self.on_round(&round).await,
                    Err(RecvError::Lagged(missed)) => {
                        // Only the passing count suffers: a missed round
                        // counts as not passing.
                        tracing::warn!(missed, "rollouts fell behind the rounds");
                        self.reset_passing().await;
                    }
                    Err(RecvError::Closed) => break,
                },
                _ = tick.tick() => self.tick(SystemTime::now()).await,
            }
        }
    }

    /// The checklist for a rollout of `version`, as `start` would run it.
    pub(crate) async fn preflight(
        &self,
        deployment: &DeploymentName,
        version: &str,
        phases: Option<Vec<u32>>,
        accept_risk: &str,
    ) -> Result<Vec<Check>> {
        let current = self.current.lock().await;
        let phases = self.phases(deployment, phases)?;
        Ok(self.checks(&current, deployment, version, &phases, accept_risk))
    }

    /// Runs the preflight and, if every check passes, stores the rollout
    /// and starts it (or schedules it), under one lock: two starts cannot
    /// both pass.
    pub(crate) async fn start(&self, request: StartRequest) -> Result<Started> {
        let mut current = self.current.lock().await;
        let deployment = &request.deployment;
        let phases = self.phases(deployment, request.phases.clone())?;
        let checks = self.checks(
            &current,
            deployment,
            &request.version,
            &phases,
            &request.accept_risk,
        );
        if checks.iter().any(|c| !c.ok) {
            return Ok(Started {
                checks,
                rollout: None,
            });
        }
        let now = SystemTime::now();
        let start_at = request.at.filter(|at| *at > now).unwrap_or(now);
        let number = current.get(deployment).map_or(1, |r| r.number + 1);
        let record = RolloutRecord {
            deployment: deployment.to_string(),
            number,
            version: request.version.clone(),
            phases,
            state: RolloutState::Scheduled,
            created_by: request.actor.clone(),
            created_at_unix_ms: unix_ms(now),
            start_at_unix_ms: unix_ms(start_at),
            accept_risk: request.accept_risk.trim().to_owned(),
            briefed: false,
            phase_log: Vec::new(),
            promoted: Vec::new(),
            paused_from: None,
            incident_sent: false,
            ended_at_unix_ms: None,
            end_reason: String::new(),
            ended_by: String::new(),
            rollback_command: String::new(),
            retrospective: None,
            passing_rounds: 0,
            last_status_unix_ms: 0,
        };
        let audit = audit(
            &record,
            "rollout_start",
            &request.accept_risk,
            &request.actor,
            format!(
                "rollout #{number} of version {} in phases {:?}, starting {}",
                record.version,
                record.phases,
                if start_at > now {
                    "at the scheduled time"
                } else {
                    "now"
                }
            ),
            now,
        );
        self.store
            .commit(vec![
                Write::Rollout(Box::new(record.clone())),
                Write::Audit(audit),
            ])
            .await?;
        current.insert(deployment.clone(), record);
        let record = current.get_mut(deployment).expect("just inserted");
        self.advance(record, now).await;
        let view = self.view_of(record, now, None);
        Ok(Started {
            checks,
            rollout: Some(view),
        })
    }

    /// An operator's approve, pause, resume or abort, audited with its actor.
    pub(crate) async fn change(
        &self,
        deployment: &DeploymentName,
        change: Change,
        reason: &str,
        actor: &str,
    ) -> Result<RolloutView> {
        let mut current = self.current.lock().await;
        let record = current
            .get_mut(deployment)
            .ok_or_else(|| Error::NotFound(format!("`{deployment}` has no rollout")))?;
        let now = SystemTime::now();
        let policy = self.config.deployment(deployment);
        let mut changed = record.clone();
        match (change, record.state) {
            (Change::Approve, RolloutState::Running | RolloutState::WaitingApproval) => {
                if policy.rollout.approval != Approval::Manual {
                    return Err(Error::FailedPrecondition(
                        "the rollout's approval is auto: nothing to approve".to_owned(),
                    ));
                }
                if let Some(phase) = changed.current_mut() {
                    phase.approved_by = actor.to_owned();
                }
                changed.state = RolloutState::Running;
            }
            (Change::Pause, RolloutState::Running | RolloutState::WaitingApproval) => {
                changed.paused_from = Some(record.state);
                changed.state = RolloutState::Paused;
            }
            (Change::Resume, RolloutState::Paused) => {
                changed.state = changed.paused_from.take().unwrap_or(RolloutState::Running);
            }
            (Change::Abort, RolloutState::Scheduled) => {
                self.end(record, RolloutState::Aborted, reason, actor, now)
                    .await?;
                return Ok(self.view_of(record, now, None));
            }
            (Change::Abort, state) if state.is_active() => {
                let reason = format!("aborted by {actor}: {reason}");
                self.roll_back(record, RolloutState::Aborted, &reason, actor, now)
                    .await?;
                return Ok(self.view_of(record, now, None));
            }
            (change, state) => {
                return Err(Error::FailedPrecondition(format!(
                    "cannot {} a rollout that is {}",
                    change.as_str(),
                    state.as_str()
                )))
            }
        }
        let audit = audit(
            record,
            &format!("rollout_{}", change.as_str()),
            reason,
            actor,
            format!(
                "rollout #{} at phase {}: {} -> {}",
                record.number,
                record.phase_number(),
                record.state.as_str(),
                changed.state.as_str()
            ),
            now,
        );
        self.store
            .commit(vec![
                Write::Rollout(Box::new(changed.clone())),
                Write::Audit(audit),
            ])
            .await?;
        *record = changed;
        tracing::info!(%deployment, change = change.as_str(), actor, "rollout changed");
        self.advance(record, now).await;
        Ok(self.view_of(record, now, None))
    }

    /// The newest rollout of `deployment` with the current phase's table.
    pub(crate) async fn status(&self, deployment: &DeploymentName) -> Result<RolloutView> {
        let record = self.record(deployment).await?;
        let now = SystemTime::now();
        let comparison = match record.current() {
            Some(phase) => {
                let until = phase.ended_at_unix_ms.or(record.ended_at_unix_ms);
                Some(
                    self.compare(&record.deployment, phase.started_at_unix_ms, until)
                        .await?,
                )
            }
            None => None,
        };
        Ok(self.view_of(&record, now, comparison))
    }

    /// The retrospective of the newest rollout: every phase with its
    /// table, every audited change from its start to its end, and whether
    /// the retrospective went out (it is made now if it is not due yet).
    pub(crate) async fn retrospective(
        &self,
        deployment: &DeploymentName,
    ) -> Result<(RolloutView, Vec<AuditRecord>, bool)> {
        let record = self.record(deployment).await?;
        let (view, decisions) = self.review(&record).await?;
        Ok((view, decisions, record.retrospective.is_some()))
    }

    /// The newest rollout of `deployment` in a few fields (for the
    /// dashboard), without its table.
    pub(crate) async fn summary(&self, deployment: &DeploymentName) -> Option<serde_json::Value> {
        let current = self.current.lock().await;
        let record = current.get(deployment)?;
        Some(serde_json::json!({
            "number": record.number,
            "version": record.version,
            "state": record.state.as_str(),
            "phase": record.phase_number(),
            "phases": record.phases,
            "percent": record.current().map_or(0, |p| p.percent),
            "hosts_promoted": record.promoted.len(),
        }))
    }

    /// Every rollout of `deployment`, oldest first.
    pub(crate) async fn history(&self, deployment: &DeploymentName) -> Result<Vec<RolloutView>> {
        let store = self.store.clone();
        let name = deployment.to_string();
        let records = tokio::task::spawn_blocking(move || store.rollouts(&name))
            .await
            .map_err(|err| Error::store("reading rollouts", err))??;
        Ok(records.iter().map(|r| view::view(r, None, &[])).collect())
    }

    async fn record(&self, deployment: &DeploymentName) -> Result<RolloutRecord> {
        self.current
            .lock()
            .await
            .get(deployment)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("`{deployment}` has no rollout")))
    }

    fn phases(&self, deployment: &DeploymentName, phases: Option<Vec<u32>>) -> Result<Vec<u32>> {
        match phases {
            None => Ok(self.config.deployment(deployment).rollout.phases),
            Some(phases) => {
                validate_phases(&phases).map_err(|m| Error::InvalidArgument(format!("phases: {m}")))
            }
        }
    }

    /// The preflight of `deployment`, against the rollouts in `current`.
    fn checks(
        &self,
        current: &BTreeMap<DeploymentName, RolloutRecord>,
        deployment: &DeploymentName,
        version: &str,
        phases: &[u32],
        accept_risk: &str,
    ) -> Vec<Check> {
        let policy = self.config.deployment(deployment);
        let hosts = self.fleet.agents(Some(deployment));
        let active = current
            .get(deployment)
            .filter(|r| !r.state.is_ended())
            .map(|r| (r.number, r.state.as_str()));
        preflight::run(&preflight::Input {
            version,
            phases,
            accept_risk,
            policy: &policy,
            state: self.decisions.state(deployment),
            hosts: &hosts,
            notify_configured: self.notifier.is_configured(),
            active,
        })
    }

    /// Beta against baseline over the rounds from `from` (until `until`).
    async fn compare(
        &self,
        deployment: &str,
        from_unix_ms: u64,
        until: Option<u64>,
    ) -> Result<Comparison> {
        let store = self.store.clone();
        let name = deployment.to_owned();
        let rounds: Vec<RoundRecord> =
            tokio::task::spawn_blocking(move || store.rounds(&name, from_unix_ms, usize::MAX))
                .await
                .map_err(|err| Error::store("reading rounds", err))??;
        Ok(compare(
            rounds
                .iter()
                .filter(|r| until.is_none_or(|u| r.at_unix_ms <= u)),
        ))
    }

    fn view_of(
        &self,
        record: &RolloutRecord,
        now: SystemTime,
        comparison: Option<Comparison>,
    ) -> RolloutView {
        let policy = self.config.deployment(&record.deployment_name());
        let promote = record
            .current()
            .filter(|p| !p.promote_command.is_empty())
            .and_then(|p| self.fleet.command(&p.promote_command));
        let gate = view::gate(record, &policy.rollout, promote.as_ref(), now);
        let mut comparisons = vec![None; record.phase_log.len()];
        if let Some(last) = comparisons.last_mut() {
            *last = comparison;
        }
        view::view(record, gate, &comparisons)
    }

    async fn make_retrospective(&self, record: &RolloutRecord) -> Result<serde_json::Value> {
        let (view, decisions) = self.review(record).await?;
        Ok(view::retrospective(&view, &decisions))
    }

    /// The view with every phase's table, and the audit of the rollout.
    async fn review(&self, record: &RolloutRecord) -> Result<(RolloutView, Vec<AuditRecord>)> {
        let mut comparisons = Vec::new();
        for phase in &record.phase_log {
            let until = phase.ended_at_unix_ms.or(record.ended_at_unix_ms);
            comparisons.push(Some(
                self.compare(&record.deployment, phase.started_at_unix_ms, until)
                    .await?,
            ));
        }
        let view = view::view(record, None, &comparisons);
        let store = self.store.clone();
        let name = record.deployment.clone();
        let since = record.created_at_unix_ms;
        let decisions: Vec<AuditRecord> =
            tokio::task::spawn_blocking(move || store.audit(Some(&name), 10_000))
                .await
                .map_err(|err| Error::store("reading the audit", err))??
                .into_iter()
                .filter(|a| a.time_unix_ms >= since)
                .filter(|a| {
                    record
                        .ended_at_unix_ms
                        .is_none_or(|end| a.time_unix_ms <= end)
                })
                .collect();
        Ok((view, decisions))
    }

    /// Stores `record` as it is now (a write nobody waits for).
    async fn save(&self, record: &RolloutRecord) {
        if let Err(err) = self
            .store
            .queue(Write::Rollout(Box::new(record.clone())))
            .await
        {
            tracing::error!(deployment = %record.deployment, error = %chain(&err), "cannot store the rollout");
        }
    }
}

/// An audit entry about `record`.
fn audit(
    record: &RolloutRecord,
    action: &str,
    reason: &str,
    actor: &str,
    detail: String,
    now: SystemTime,
) -> AuditRecord {
    AuditRecord {
        time_unix_ms: unix_ms(now),
        deployment: record.deployment.clone(),
        action: action.to_owned(),
        reason: reason.to_owned(),
        command_id: String::new(),
        actor: actor.to_owned(),
        detail,
    }
}

/// When `at_unix_ms` plus `after` is.
fn after(at_unix_ms: u64, after: Duration) -> SystemTime {
    from_unix_ms(at_unix_ms) + after
}

#[cfg(test)]
mod tests;

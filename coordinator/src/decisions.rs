//! Rollback decisions: every deployment's judge state (the arming and the
//! count of failing rounds) and the one lock that serializes everything that
//! reads the arming and acts on it.
//!
//! The policy's rounds, manual rollbacks, rearms and catch-ups each hold the
//! lock from reading the state they act on until their command is in the
//! fleet (a round: until its writes are queued; a rearm: until it is
//! stored). So a catch-up never repeats a decision that a newer one, still
//! being stored, is about to replace; two quick connects of one host cannot
//! both issue one; and a rearm's write of the state comes wholly before or
//! after a round's. Sample ingest never takes it.
//!
//! Readers that must never wait on a decision (status, `/metrics`) read a
//! copy published under a short std lock each time the state changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rollguard_common::policy::{advance, Decision, Evaluation, JudgeState, Policy, Verdict};
use rollguard_common::{Cohort, DeploymentName};
use serde_json::json;
use tracing::Instrument;

use crate::broadcast::{Issuer, Missed, Origin, Promote};
use crate::error::{chain, Error, Result};
use crate::fleet::HostIdentity;
use crate::store::{unix_ms, AuditRecord, CommandRecord, RoundRecord, Write};

/// Rounds kept in the store per deployment.
const ROUNDS_KEPT: u64 = 20_000;

/// The first retry of a failed rollback on a host comes this long after
/// its result; each later one waits twice as long as the one before.
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(5);

/// One deployment's state under the decisions lock.
#[derive(Debug, Default, Clone, Copy)]
struct Judged {
    state: JudgeState,
    next_seq: u64,
}

/// What readers see of one deployment.
#[derive(Debug, Default, Clone)]
struct Published {
    state: JudgeState,
    latest: Option<RoundRecord>,
}

/// A round as [`Decisions::record_round`] stored it.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// The round, with the state after it and the command it decided, if any.
    pub(crate) record: RoundRecord,
    /// The previous round's verdict.
    pub(crate) previous: Option<Verdict>,
}

/// Rounds a slow subscriber may fall behind by before it misses some.
const ROUNDS_CHANNEL: usize = 1024;

/// The judge states and the lock that decides; see the module docs.
#[derive(Debug)]
pub(crate) struct Decisions {
    judged: tokio::sync::Mutex<HashMap<DeploymentName, Judged>>,
    published: Mutex<HashMap<DeploymentName, Published>>,
    issuer: Issuer,
    /// Every recorded round, for the rollouts (a lagging receiver misses
    /// rounds and is told so; sending never waits).
    rounds: tokio::sync::broadcast::Sender<Arc<RoundRecord>>,
}

impl Decisions {
    /// Restores the states and latest rounds read from the store.
    pub(crate) fn restore(
        judge_states: Vec<(String, JudgeState)>,
        latest_rounds: Vec<RoundRecord>,
        issuer: Issuer,
    ) -> Self {
        let mut judged: HashMap<DeploymentName, Judged> = HashMap::new();
        let mut published: HashMap<DeploymentName, Published> = HashMap::new();
        for (deployment, state) in judge_states {
            let deployment = DeploymentName::new(deployment);
            judged.entry(deployment.clone()).or_default().state = state;
            published.entry(deployment).or_default().state = state;
        }
        for round in latest_rounds {
            let deployment = DeploymentName::new(round.deployment.clone());
            judged.entry(deployment.clone()).or_default().next_seq = round.seq + 1;
            published.entry(deployment).or_default().latest = Some(round);
        }
        Decisions {
            judged: tokio::sync::Mutex::new(judged),
            published: Mutex::new(published),
            issuer,
            rounds: tokio::sync::broadcast::channel(ROUNDS_CHANNEL).0,
        }
    }

    /// Every round recorded from now on.
    pub(crate) fn subscribe_rounds(&self) -> tokio::sync::broadcast::Receiver<Arc<RoundRecord>> {
        self.rounds.subscribe()
    }

    fn published(&self) -> std::sync::MutexGuard<'_, HashMap<DeploymentName, Published>> {
        self.published.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, deployment: &DeploymentName, state: JudgeState, latest: Option<RoundRecord>) {
        let mut published = self.published();
        let entry = published.entry(deployment.clone()).or_default();
        entry.state = state;
        if latest.is_some() {
            entry.latest = latest;
        }
    }

    /// Returns the latest round of a deployment, if any.
    pub(crate) fn latest(&self, deployment: &DeploymentName) -> Option<RoundRecord> {
        self.published()
            .get(deployment)
            .and_then(|p| p.latest.clone())
    }

    /// Returns the current state of a deployment.
    pub(crate) fn state(&self, deployment: &DeploymentName) -> JudgeState {
        self.published()
            .get(deployment)
            .map(|p| p.state)
            .unwrap_or_default()
    }

    /// Advances `deployment`'s state by one judged round and acts on it: a
    /// rollback is decided and sent (the round committed with it), a dry run
    /// audited. The round is stored either way.
    pub(crate) async fn record_round(
        &self,
        deployment: &DeploymentName,
        policy: &Policy,
        evaluation: Evaluation,
        now: SystemTime,
        span: &tracing::Span,
    ) -> Recorded {
        let mut judged_map = self.judged.lock().await;
        let judged = judged_map.entry(deployment.clone()).or_default();
        let decision = advance(policy, &mut judged.state, &evaluation);
        let seq = judged.next_seq;
        judged.next_seq += 1;
        let mut state = judged.state;
        if decision == Decision::WouldRollBack {
            // A dry run's count starts afresh once recorded; its round shows
            // the streak it used up.
            state.consecutive = policy.consecutive_failures;
        }
        span.record("consecutive", state.consecutive);
        span.record("decision", decision_name(decision));
        let previous = self
            .published()
            .get(deployment)
            .and_then(|p| p.latest.as_ref().map(|r| r.evaluation.verdict));
        let mut record = RoundRecord {
            deployment: deployment.to_string(),
            seq,
            at_unix_ms: unix_ms(now),
            evaluation,
            state,
            consecutive_failures: policy.consecutive_failures,
            dry_run: policy.dry_run,
            decision,
            command_id: String::new(),
        };
        let reason = format!(
            "policy: {} failing round(s) in a row: {}",
            state.consecutive, record.evaluation.reason
        );
        let round_stored = match decision {
            Decision::None => false,
            Decision::RollBack => {
                match self
                    .policy_rollback(deployment, &reason, &record, span)
                    .await
                {
                    Ok(command) => {
                        record.command_id = command.command_id;
                        true
                    }
                    Err(err) => {
                        // Not decided: stay armed so the next failing round tries again.
                        tracing::error!(%deployment, error = %chain(&err), "cannot store the rollback decision; staying armed");
                        judged.state.armed = true;
                        record.state = judged.state;
                        false
                    }
                }
            }
            Decision::WouldRollBack => self.dry_run(deployment, &reason, &record, now).await,
        };
        let current = judged.state;
        let mut writes = vec![Write::Judge(deployment.to_string(), current)];
        if !round_stored {
            writes.push(Write::Round(Box::new(record.clone())));
        }
        if seq > ROUNDS_KEPT && seq % 1000 == 0 {
            writes.push(Write::PruneRounds(
                deployment.to_string(),
                seq - ROUNDS_KEPT,
            ));
        }
        for write in writes {
            if let Err(err) = self.issuer.store.queue(write).await {
                tracing::warn!(%deployment, error = %chain(&err), "cannot store the round");
            }
        }
        self.publish(deployment, current, Some(record.clone()));
        // Sent under the lock, so subscribers see rounds in order.
        let _no_subscriber = self.rounds.send(Arc::new(record.clone()));
        Recorded { record, previous }
    }

    /// The policy's decision: the disarmed state and the deciding round are
    /// committed with the command itself, so a crash cannot re-arm, and
    /// whoever sees the rollback in the history also finds the round.
    async fn policy_rollback(
        &self,
        deployment: &DeploymentName,
        reason: &str,
        record: &RoundRecord,
        span: &tracing::Span,
    ) -> Result<CommandRecord> {
        self.issuer
            .decide(
                deployment,
                reason,
                "rollguard policy",
                Origin::Policy,
                |command| {
                    let mut deciding = record.clone();
                    deciding.command_id = command.command_id.clone();
                    vec![
                        Write::Judge(deployment.to_string(), record.state),
                        Write::Round(Box::new(deciding)),
                    ]
                },
            )
            .instrument(span.clone())
            .await
    }

    /// A dry run's decision: audited with its round, nothing sent. Returns
    /// whether the round is stored.
    async fn dry_run(
        &self,
        deployment: &DeploymentName,
        reason: &str,
        record: &RoundRecord,
        now: SystemTime,
    ) -> bool {
        tracing::warn!(%deployment, %reason, "dry run: would roll back");
        let audit = AuditRecord {
            time_unix_ms: unix_ms(now),
            deployment: deployment.to_string(),
            action: "would_roll_back".to_owned(),
            reason: reason.to_owned(),
            command_id: String::new(),
            actor: "rollguard policy".to_owned(),
            detail: "dry run: nothing was sent".to_owned(),
        };
        // The round is committed with its entry, as for a real decision.
        let writes = vec![Write::Audit(audit), Write::Round(Box::new(record.clone()))];
        let stored = match self.issuer.store.commit(writes).await {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(%deployment, error = %chain(&err), "cannot store the dry-run decision");
                false
            }
        };
        self.issuer.notifier.send(json!({
            "event": "would_roll_back",
            "deployment": deployment.as_str(),
            "reason": reason,
        }));
        stored
    }

    /// An operator's rollback; the policy's arming is left as it is.
    ///
    /// With a non-empty `request_id` (an idempotency key) that a kept
    /// command was made with, nothing is decided: that command is returned,
    /// so a retried call cannot roll back twice. The key is looked up under
    /// the decisions lock, which is held until the new command is in the
    /// fleet: of two calls with one key, the second finds the first's.
    pub(crate) async fn rollback(
        &self,
        deployment: &DeploymentName,
        reason: &str,
        actor: &str,
        request_id: &str,
    ) -> Result<CommandRecord> {
        let _judged = self.judged.lock().await;
        if !request_id.is_empty() {
            if let Some(record) = self.issuer.fleet.command_for_request(request_id) {
                if record.deployment != deployment.as_str() {
                    return Err(Error::FailedPrecondition(format!(
                        "request_id `{request_id}` was used for a rollback of `{}`",
                        record.deployment
                    )));
                }
                tracing::info!(%deployment, command_id = %record.command_id, request_id, "rollback request repeated; returning its command");
                return Ok(record);
            }
        }
        let origin = Origin::Manual { request_id };
        self.issuer
            .decide(deployment, reason, actor, origin, |_| Vec::new())
            .await
    }

    /// A rollout's promote, under the lock that decides: refused while the
    /// policy holds the deployment disarmed or a rollback of it was decided
    /// at or after `since_unix_ms` (the rollout's start), so a promote and
    /// a decision never cross. The hosts are beta from the moment it is
    /// stored, so any later decision targets them.
    pub(crate) async fn promote(
        &self,
        promote: Promote<'_>,
        since_unix_ms: u64,
        with: impl FnOnce(&CommandRecord) -> Vec<Write>,
    ) -> Result<CommandRecord> {
        let judged = self.judged.lock().await;
        let deployment = promote.deployment;
        if !is_armed(&judged, deployment) {
            return Err(Error::FailedPrecondition(format!(
                "the policy holds `{deployment}` disarmed: no promote is sent"
            )));
        }
        if let Some(rollback) = self.issuer.fleet.rollback_since(deployment, since_unix_ms) {
            return Err(Error::FailedPrecondition(format!(
                "`{deployment}` was rolled back by {} since the rollout started",
                rollback.command_id
            )));
        }
        self.issuer.promote(promote, with).await
    }

    /// A rollout's rollback (a failed promote, or an abort): one command
    /// closed to the `promoted` hosts, committed with `with` (the
    /// rollout's ended record).
    /// If a rollback of the deployment was decided at or after
    /// `since_unix_ms` already (the policy's, say), that one is returned
    /// and nothing new is decided: a rollout is rolled back once.
    pub(crate) async fn rollout_rollback(
        &self,
        deployment: &DeploymentName,
        reason: &str,
        actor: &str,
        since_unix_ms: u64,
        promoted: &[String],
        with: impl FnOnce(&CommandRecord) -> Vec<Write>,
    ) -> Result<(CommandRecord, bool)> {
        let _judged = self.judged.lock().await;
        if let Some(rollback) = self.issuer.fleet.rollback_since(deployment, since_unix_ms) {
            return Ok((rollback, false));
        }
        let origin = Origin::Rollout { targets: promoted };
        let record = self
            .issuer
            .decide(deployment, reason, actor, origin, with)
            .await?;
        Ok((record, true))
    }

    /// Re-arms `deployment` and resets its count, stored with an audit
    /// entry; returns whether it was armed already.
    pub(crate) async fn rearm(
        &self,
        deployment: &DeploymentName,
        reason: String,
        actor: String,
    ) -> Result<bool> {
        let mut judged_map = self.judged.lock().await;
        let judged = judged_map.entry(deployment.clone()).or_default();
        let was_armed = judged.state.armed;
        let state = JudgeState {
            consecutive: 0,
            armed: true,
        };
        let audit = AuditRecord {
            time_unix_ms: unix_ms(SystemTime::now()),
            deployment: deployment.to_string(),
            action: "rearm".to_owned(),
            reason,
            command_id: String::new(),
            actor,
            detail: if was_armed {
                "was already armed; count reset".to_owned()
            } else {
                "re-armed; count reset".to_owned()
            },
        };
        // Stored before it takes effect: a rearm the store refused is no rearm.
        self.issuer
            .store
            .commit(vec![
                Write::Judge(deployment.to_string(), state),
                Write::Audit(audit),
            ])
            .await?;
        judged.state = state;
        self.publish(deployment, state, None);
        Ok(was_armed)
    }

    /// The host rejected `command_id` as expired, so it never ran it: it was
    /// away past the deadline. If that is its deployment's newest decision,
    /// the host had no catch-up of it yet, and the policy still holds the
    /// deployment disarmed (no `rearm` since), the decision is still in
    /// force and the host gets a catch-up of its own. A rejected catch-up
    /// gets none: a host whose clock runs past every deadline would
    /// otherwise loop.
    pub(crate) async fn catch_up_expired(&self, identity: &HostIdentity, command_id: &str) {
        let judged = self.judged.lock().await;
        if identity.cohort != Cohort::Beta || is_armed(&judged, &identity.deployment) {
            return;
        }
        let host_id = &identity.host_id;
        let Some(original) = self.issuer.fleet.newest_command_for(host_id, command_id) else {
            return;
        };
        if let Err(err) = self
            .issuer
            .catch_up(&original, host_id.as_str(), Missed::Expired)
            .await
        {
            // The store refused it; an operator's rollback still reaches the host.
            tracing::error!(%host_id, command_id, error = %chain(&err), "cannot issue the catch-up rollback");
        }
    }

    /// A beta host connected to a deployment the policy holds disarmed: if
    /// it was never sent the decision and its deadline has passed, the
    /// decision is still in force for it and it gets a catch-up of its own.
    pub(crate) async fn catch_up_missed(&self, identity: &HostIdentity, now: SystemTime) {
        let judged = self.judged.lock().await;
        // Read under the lock: a rearm may have come first.
        if identity.cohort != Cohort::Beta || is_armed(&judged, &identity.deployment) {
            return;
        }
        let host_id = &identity.host_id;
        let Some(original) = self.issuer.fleet.missed_decision(host_id, now) else {
            return;
        };
        if let Err(err) = self
            .issuer
            .catch_up(&original, host_id.as_str(), Missed::NotTargeted)
            .await
        {
            tracing::error!(%host_id, command_id = %original.command_id, error = %chain(&err), "cannot issue the catch-up rollback");
        }
    }
}

/// Retries of rollbacks that failed on a host.
impl Decisions {
    /// A rollback failed (or was interrupted) on `host_id`: unless it was
    /// the last allowed attempt, a retry closed to that host follows after
    /// [`RETRY_FIRST`] (doubling with each attempt), whatever the arming; a
    /// manual rollback is retried like the policy's. After the last one the
    /// host needs a person: logged, and a `needs_attention` webhook event.
    pub(crate) fn retry_failed(self: &Arc<Self>, host_id: &str, command_id: &str) {
        let Some(failed) = self.issuer.fleet.command_record(command_id) else {
            return;
        };
        // A failed promote is the rollout's to act on (it rolls back).
        if !failed.kind.is_rollback() {
            return;
        }
        let retries = self.issuer.config.action_retries;
        if failed.attempt >= retries {
            tracing::error!(%host_id, command_id, deployment = %failed.deployment, retries, "rollback failed on its last retry: the host needs attention");
            self.issuer.notifier.send(json!({
                "event": "needs_attention",
                "deployment": failed.deployment,
                "host_id": host_id,
                "command_id": command_id,
                "retry_of": failed.retry_of,
                "attempts": failed.attempt + 1,
                "reason": "the rollback failed on every attempt; the host may still run the beta",
            }));
            return;
        }
        let delay = RETRY_FIRST * 2u32.pow(failed.attempt);
        let decisions = Arc::clone(self);
        let host_id = host_id.to_owned();
        self.issuer.tracker.spawn(async move {
            tokio::time::sleep(delay).await;
            decisions.retry_now(&failed, &host_id).await;
        });
    }

    /// Issues the retry of `failed` on `host_id` unless one exists (a
    /// repeated result, or a restart that scheduled it again).
    async fn retry_now(&self, failed: &CommandRecord, host_id: &str) {
        let _judged = self.judged.lock().await;
        if self
            .issuer
            .fleet
            .retried_by(&failed.command_id, host_id)
            .is_some()
        {
            return;
        }
        let missed = Missed::Failed {
            attempt: failed.attempt + 1,
        };
        if let Err(err) = self.issuer.catch_up(failed, host_id, missed).await {
            tracing::error!(%host_id, command_id = %failed.command_id, error = %chain(&err), "cannot issue the retry of a failed rollback");
        }
    }

    /// After a restart: schedules the retries that were waiting.
    pub(crate) fn resume_retries(self: &Arc<Self>) {
        let waiting = self
            .issuer
            .fleet
            .failed_unretried(self.issuer.config.action_retries);
        for (failed, host_id) in waiting {
            self.retry_failed(&host_id, &failed.command_id);
        }
    }
}

fn is_armed(judged: &HashMap<DeploymentName, Judged>, deployment: &DeploymentName) -> bool {
    judged
        .get(deployment)
        .map_or(JudgeState::default().armed, |j| j.state.armed)
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::None => "none",
        Decision::RollBack => "roll_back",
        Decision::WouldRollBack => "would_roll_back",
    }
}

#[cfg(test)]
mod tests;

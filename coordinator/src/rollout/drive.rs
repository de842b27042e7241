//! How a rollout moves: rounds feed its gate and announce an incident;
//! the tick starts a scheduled one, watches the current phase's promote,
//! opens the gate to the next phase, ends it, and keeps the team told.

use std::time::SystemTime;

use rollguard_common::policy::{Decision, Verdict};
use rollguard_common::rollout::{host_order, phase_hosts};
use rollguard_common::CommandStatus;

use super::{after, audit, preflight, view, Rollouts};
use crate::broadcast::Promote;
use crate::error::{chain, Result};
use crate::store::{
    from_unix_ms, unix_ms, AuditRecord, PhaseRecord, RolloutRecord, RolloutState, RoundRecord,
    Write,
};

/// A promote with no final result this long after its deadline has timed
/// out (the agent rejects it as expired if it comes back later).
const PROMOTE_GRACE_MS: u64 = 60_000;

impl Rollouts {
    /// A judged round of some deployment: the first failing one during a
    /// rollout is announced, the policy's decision ends it as rolled back
    /// (the decision is the rollout's rollback: nothing more is sent), and
    /// a settled phase counts its passing rounds in a row.
    pub(super) async fn on_round(&self, round: &RoundRecord) {
        let mut current = self.current.lock().await;
        let deployment = rollguard_common::DeploymentName::new(round.deployment.clone());
        let Some(record) = current.get_mut(&deployment) else {
            return;
        };
        if !record.state.is_active() {
            return;
        }
        let now = SystemTime::now();
        if round.evaluation.verdict == Verdict::Fail && !record.incident_sent {
            record.incident_sent = true;
            self.save(record).await;
            let view = self.view_of(record, now, None);
            let text = format!(
                "INCIDENT {} {}: a failing round at phase {} ({} %): {}",
                record.deployment,
                record.version,
                record.phase_number(),
                view.percent,
                round.evaluation.reason
            );
            let mut event = view::event("rollout.incident", &view, text);
            event["reason"] = round.evaluation.reason.clone().into();
            self.notifier.send(event);
        }
        if round.decision == Decision::RollBack && !round.command_id.is_empty() {
            let reason = format!("the policy rolled back ({})", round.command_id);
            record.rollback_command = round.command_id.clone();
            if let Err(err) = self
                .end(
                    record,
                    RolloutState::RolledBack,
                    &reason,
                    "rollguard policy",
                    now,
                )
                .await
            {
                tracing::error!(%deployment, error = %chain(&err), "cannot store the rolled-back rollout");
            }
            return;
        }
        let settled = record.current().and_then(|p| p.settled_at_unix_ms);
        if settled.is_some_and(|at| round.at_unix_ms >= at) {
            if round.evaluation.verdict == Verdict::Pass {
                record.passing_rounds += 1;
            } else {
                // Inconclusive rounds hold the gate: never a pass.
                record.passing_rounds = 0;
            }
            self.advance(record, now).await;
        }
    }

    pub(super) async fn reset_passing(&self) {
        for record in self.current.lock().await.values_mut() {
            record.passing_rounds = 0;
        }
    }

    /// Moves every rollout as far as it can go at `now`.
    pub(super) async fn tick(&self, now: SystemTime) {
        let mut current = self.current.lock().await;
        for record in current.values_mut() {
            self.advance(record, now).await;
            self.announce(record, now).await;
        }
    }

    /// One rollout's step at `now`: start when due, end on a rollback or a
    /// failed promote, settle a phase, open its gate, complete.
    pub(super) async fn advance(&self, record: &mut RolloutRecord, now: SystemTime) {
        let deployment = record.deployment_name();
        let result = match record.state {
            RolloutState::Scheduled => self.start_when_due(record, now).await,
            state if state.is_active() => self.step(record, now).await,
            _ => Ok(()),
        };
        if let Err(err) = result {
            tracing::error!(%deployment, error = %chain(&err), "rollout step failed; trying again on the next tick");
        }
    }

    async fn start_when_due(&self, record: &mut RolloutRecord, now: SystemTime) -> Result<()> {
        let policy = self.config.deployment(&record.deployment_name());
        if !record.briefed
            && now + policy.rollout.briefing >= from_unix_ms(record.start_at_unix_ms)
            && unix_ms(now) < record.start_at_unix_ms
        {
            record.briefed = true;
            self.save(record).await;
            let view = self.view_of(record, now, None);
            let text = format!(
                "{} {}: rollout #{} starts at {} (phases {:?})",
                record.deployment,
                record.version,
                record.number,
                humantime::format_rfc3339_seconds(from_unix_ms(record.start_at_unix_ms)),
                record.phases
            );
            let mut event = view::event("rollout.scheduled", &view, text);
            event["start_at_unix_ms"] = record.start_at_unix_ms.into();
            event["blast_radius"] = serde_json::to_value(&policy.blast_radius).unwrap_or_default();
            self.notifier.send(event);
        }
        if unix_ms(now) < record.start_at_unix_ms {
            return Ok(());
        }
        // Checked again: a day may have changed the fleet. Against no other
        // rollout: this one is the deployment's only record.
        let checks = self.checks(
            &std::collections::BTreeMap::new(),
            &record.deployment_name(),
            &record.version,
            &record.phases,
            &record.accept_risk,
        );
        let failing: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        if !failing.is_empty() {
            let reason = format!("the preflight failed at the start: {}", failing.join("; "));
            return self
                .end(
                    record,
                    RolloutState::Aborted,
                    &reason,
                    "rollguard rollout",
                    now,
                )
                .await;
        }
        record.state = RolloutState::Running;
        let view = self.view_of(record, now, None);
        let text = format!(
            "{} {}: rollout #{} started by {} (phases {:?})",
            record.deployment, record.version, record.number, record.created_by, record.phases
        );
        self.notifier
            .send(view::event("rollout.started", &view, text));
        self.start_phase(record, now).await
    }

    /// An active rollout's step.
    async fn step(&self, record: &mut RolloutRecord, now: SystemTime) -> Result<()> {
        let deployment = record.deployment_name();
        // Any rollback of the deployment since the start ends it: the
        // policy's (also one decided just before a crash), an operator's.
        if let Some(rollback) = self
            .fleet
            .rollback_since(&deployment, record.start_at_unix_ms)
        {
            let reason = format!(
                "rolled back by {} ({})",
                rollback.actor, rollback.command_id
            );
            record.rollback_command = rollback.command_id;
            return self
                .end(
                    record,
                    RolloutState::RolledBack,
                    &reason,
                    &rollback.actor,
                    now,
                )
                .await;
        }
        if record.phase_log.is_empty() {
            // Stored as running, but its first phase was never started.
            return self.start_phase(record, now).await;
        }
        if let Some(failure) = self.promote_failure(record, now) {
            return self
                .roll_back(
                    record,
                    RolloutState::RolledBack,
                    &failure,
                    "rollguard rollout",
                    now,
                )
                .await;
        }
        self.settle(record, now).await;
        if record.state != RolloutState::Running {
            return Ok(());
        }
        let policy = self.config.deployment(&deployment);
        let promote = record
            .current()
            .filter(|p| !p.promote_command.is_empty())
            .and_then(|p| self.fleet.command(&p.promote_command));
        let Some(gate) = view::gate(record, &policy.rollout, promote.as_ref(), now) else {
            return Ok(());
        };
        let settled = record
            .current()
            .is_some_and(|p| p.settled_at_unix_ms.is_some());
        if !settled {
            return Ok(());
        }
        if record.phase_log.len() == record.phases.len() {
            return self.complete(record, now).await;
        }
        let only_approval = gate.manual_approval && !gate.approved && gate.waiting_for.len() == 1;
        if only_approval {
            record.state = RolloutState::WaitingApproval;
            self.save(record).await;
            return Ok(());
        }
        if !gate.waiting_for.is_empty() {
            return Ok(());
        }
        if let Some(phase) = record.current_mut() {
            phase.ended_at_unix_ms = Some(unix_ms(now));
        }
        record.passing_rounds = 0;
        self.start_phase(record, now).await
    }

    /// Why the current phase's promote failed, if it did: a host reported
    /// it failed or rejected it, or gave no final answer by its deadline.
    fn promote_failure(&self, record: &RolloutRecord, now: SystemTime) -> Option<String> {
        let phase = record.current()?;
        if phase.promote_command.is_empty() || phase.settled_at_unix_ms.is_some() {
            return None;
        }
        let Some(command) = self.fleet.command(&phase.promote_command) else {
            return Some(format!(
                "the promote {} is gone from the fleet",
                phase.promote_command
            ));
        };
        for result in &command.results {
            if matches!(
                result.status,
                CommandStatus::Failed | CommandStatus::Rejected
            ) {
                return Some(format!(
                    "the promote of {} {} on {}: {}",
                    record.version,
                    result.status,
                    result.host_id,
                    if result.reason.is_empty() {
                        "no reason given"
                    } else {
                        &result.reason
                    }
                ));
            }
        }
        let deadline = command.record.not_after_unix_ms + PROMOTE_GRACE_MS;
        if unix_ms(now) > deadline {
            let waiting: Vec<&str> = command
                .results
                .iter()
                .filter(|r| !r.status.is_final())
                .map(|r| r.host_id.as_str())
                .collect();
            return Some(format!(
                "the promote of {} timed out on {}",
                record.version,
                waiting.join(", ")
            ));
        }
        None
    }

    /// Marks the current phase settled once every promote has succeeded.
    async fn settle(&self, record: &mut RolloutRecord, now: SystemTime) {
        let Some(phase) = record.current() else {
            return;
        };
        if phase.settled_at_unix_ms.is_some() {
            return;
        }
        let done = self.fleet.command(&phase.promote_command).is_some_and(|c| {
            c.results
                .iter()
                .all(|r| r.status == CommandStatus::Succeeded)
        });
        if done {
            if let Some(phase) = record.current_mut() {
                phase.settled_at_unix_ms = Some(unix_ms(now));
            }
            record.passing_rounds = 0;
            self.save(record).await;
        }
    }

    /// Starts the next phase: the first ⌈N × p / 100⌉ of the connected
    /// `auto` hosts in hash order, those not promoted yet getting one
    /// promote, stored with the record that names it.
    async fn start_phase(&self, record: &mut RolloutRecord, now: SystemTime) -> Result<()> {
        let deployment = record.deployment_name();
        let policy = self.config.deployment(&deployment);
        let idx = record.phase_log.len();
        let Some(&percent) = record.phases.get(idx) else {
            return self.complete(record, now).await;
        };
        let (new, hosts_total) = self.next_hosts(record, percent);
        let mut next = record.clone();
        next.phase_log.push(PhaseRecord {
            percent,
            started_at_unix_ms: unix_ms(now),
            settled_at_unix_ms: new.is_empty().then_some(unix_ms(now)),
            ended_at_unix_ms: None,
            hosts_total,
            hosts: new.clone(),
            promote_command: String::new(),
            approved_by: String::new(),
        });
        next.promoted.extend(new.iter().cloned());
        next.passing_rounds = 0;
        next.last_status_unix_ms = unix_ms(now);
        if new.is_empty() {
            self.store
                .commit(vec![Write::Rollout(Box::new(next.clone()))])
                .await?;
        } else {
            let Some(action) = policy.rollout.promote_action.as_deref() else {
                return self
                    .roll_back(
                        record,
                        RolloutState::RolledBack,
                        "no promote_action is configured",
                        "rollguard rollout",
                        now,
                    )
                    .await;
            };
            let reason = format!(
                "rollout #{} of {}: phase {} ({percent} %)",
                record.number,
                record.version,
                idx + 1
            );
            let promote = Promote {
                deployment: &deployment,
                hosts: &new,
                promoted: &next.promoted,
                action,
                version: &record.version,
                reason: &reason,
                actor: "rollguard rollout",
            };
            let mut stored = next.clone();
            let result = self
                .decisions
                .promote(promote, record.start_at_unix_ms, |command| {
                    if let Some(phase) = stored.current_mut() {
                        phase.promote_command = command.command_id.clone();
                    }
                    vec![Write::Rollout(Box::new(stored.clone()))]
                })
                .await;
            match result {
                Ok(command) => {
                    if let Some(phase) = next.current_mut() {
                        phase.promote_command = command.command_id;
                    }
                }
                Err(err) => {
                    // Disarmed, or rolled back since the start: no promote
                    // is sent; whatever was promoted goes back.
                    let reason = format!("phase {} could not start: {err}", idx + 1);
                    return self
                        .roll_back(
                            record,
                            RolloutState::RolledBack,
                            &reason,
                            "rollguard rollout",
                            now,
                        )
                        .await;
                }
            }
        }
        *record = next;
        tracing::info!(%deployment, phase = idx + 1, percent, new = new.len(), promoted = record.promoted.len(), "rollout phase started");
        let view = self.view_of(record, now, None);
        let text = format!(
            "{} {}: phase {}/{} ({percent} %) started: {} new host(s), {} of {} on the new version",
            record.deployment,
            record.version,
            idx + 1,
            record.phases.len(),
            new.len(),
            record.promoted.len(),
            view.hosts_total
        );
        let mut event = view::event("rollout.phase_started", &view, text);
        event["new_hosts"] = new.into();
        self.notifier.send(event);
        Ok(())
    }

    /// The hosts phase `percent` adds (the first ⌈N × p / 100⌉ of the N
    /// connected `auto` hosts in hash order, less those promoted already),
    /// and N.
    fn next_hosts(&self, record: &RolloutRecord, percent: u32) -> (Vec<String>, u32) {
        let deployment = record.deployment_name();
        let hosts = self.fleet.agents(Some(&deployment));
        let connected: Vec<&str> = preflight::candidates(&hosts)
            .map(|h| h.identity.host_id.as_str())
            .collect();
        let order = host_order(deployment.as_str(), connected.iter().copied());
        let wanted = phase_hosts(order.len(), percent);
        let new = order
            .iter()
            .take(wanted)
            .filter(|h| !record.promoted.iter().any(|p| p == *h))
            .map(|h| (*h).to_owned())
            .collect();
        (new, u32::try_from(order.len()).unwrap_or(u32::MAX))
    }

    /// The last phase's promotes all succeeded: the new version is the
    /// deployment's baseline, and its `auto` hosts go back to the baseline cohort.
    async fn complete(&self, record: &mut RolloutRecord, now: SystemTime) -> Result<()> {
        let reason = format!(
            "every phase passed; {} is the baseline version",
            record.version
        );
        self.end(
            record,
            RolloutState::Completed,
            &reason,
            "rollguard rollout",
            now,
        )
        .await
    }

    /// Rolls back every host the rollout promoted and ends it as `state`.
    /// The rollback is one command closed to the promoted hosts (not the
    /// deployment's other beta hosts), committed with the ended record, so
    /// a crash cannot leave a rollout active that was rolled back. If a
    /// rollback was decided since the start (the policy's), that one is
    /// the rollout's and nothing more is sent. With nothing promoted,
    /// nothing is rolled back.
    pub(super) async fn roll_back(
        &self,
        record: &mut RolloutRecord,
        state: RolloutState,
        reason: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<()> {
        if record.promoted.is_empty() {
            return self.end(record, state, reason, actor, now).await;
        }
        let deployment = record.deployment_name();
        let template = record.clone();
        let (command, decided) = self
            .decisions
            .rollout_rollback(
                &deployment,
                reason,
                actor,
                record.start_at_unix_ms,
                &record.promoted,
                |command| {
                    let mut rolled_back = template;
                    rolled_back.rollback_command = command.command_id.clone();
                    let (ended, audit) = ended(&rolled_back, state, reason, actor, now);
                    vec![Write::Rollout(Box::new(ended)), Write::Audit(audit)]
                },
            )
            .await?;
        tracing::warn!(%deployment, command_id = %command.command_id, decided, reason, "rolling the rollout back");
        record.rollback_command = command.command_id;
        if decided {
            let (done, _) = ended(record, state, reason, actor, now);
            self.finish(record, done, now);
            return Ok(());
        }
        self.end(record, state, reason, actor, now).await
    }

    /// Ends the rollout as `state`: stored and audited, then `finish`.
    pub(super) async fn end(
        &self,
        record: &mut RolloutRecord,
        state: RolloutState,
        reason: &str,
        actor: &str,
        now: SystemTime,
    ) -> Result<()> {
        let (done, audit) = ended(record, state, reason, actor, now);
        self.store
            .commit(vec![
                Write::Rollout(Box::new(done.clone())),
                Write::Audit(audit),
            ])
            .await?;
        self.finish(record, done, now);
        Ok(())
    }

    /// An ended rollout, stored: its promoted hosts out of the beta, the
    /// team told.
    fn finish(&self, record: &mut RolloutRecord, done: RolloutRecord, now: SystemTime) {
        *record = done;
        let deployment = record.deployment_name();
        self.fleet.set_promoted(&deployment, &[]);
        let state = record.state;
        let reason = record.end_reason.clone();
        tracing::info!(%deployment, state = state.as_str(), reason, "rollout ended");
        let view = self.view_of(record, now, None);
        let name = match state {
            RolloutState::Completed => "rollout.completed",
            _ => "rollout.rolled_back",
        };
        let text = format!(
            "{} {}: rollout #{} {} at phase {}/{}: {reason}",
            record.deployment,
            record.version,
            record.number,
            state.as_str().replace('_', " "),
            record.phase_number(),
            record.phases.len()
        );
        self.notifier.send(view::event(name, &view, text));
    }

    /// Status updates during the first `status_for` of the rollout and of
    /// each phase, and the retrospective `retrospective_after` its end.
    async fn announce(&self, record: &mut RolloutRecord, now: SystemTime) {
        let policy = self.config.deployment(&record.deployment_name());
        let config = &policy.rollout;
        if record.state.is_ended() {
            let due = record
                .ended_at_unix_ms
                .is_some_and(|end| now >= after(end, config.retrospective_after));
            if due && record.retrospective.is_none() {
                self.send_retrospective(record).await;
            }
            return;
        }
        let Some(phase_start) = record.current().map(|p| p.started_at_unix_ms) else {
            return;
        };
        let in_window = now < after(record.start_at_unix_ms, config.status_for)
            || now < after(phase_start, config.status_for);
        let due = now >= after(record.last_status_unix_ms, config.status_every);
        if !(in_window && due) {
            return;
        }
        record.last_status_unix_ms = unix_ms(now);
        let comparison = self
            .compare(&record.deployment, phase_start, None)
            .await
            .ok();
        let view = self.view_of(record, now, comparison);
        let mut text = view::summary(&view);
        if let Some(gate) = &view.gate {
            if !gate.waiting_for.is_empty() {
                text.push_str(&format!("; waiting for {}", gate.waiting_for.join(", ")));
            }
        }
        let mut event = view::event("rollout.status", &view, text);
        if let Some(round) = self.decisions.latest(&record.deployment_name()) {
            event["verdict"] = round.evaluation.verdict.as_str().into();
        }
        self.notifier.send(event);
    }

    async fn send_retrospective(&self, record: &mut RolloutRecord) {
        let retro = match self.make_retrospective(record).await {
            Ok(retro) => retro,
            Err(err) => {
                tracing::warn!(deployment = %record.deployment, error = %chain(&err), "cannot make the retrospective yet");
                return;
            }
        };
        record.retrospective = Some(retro.clone());
        self.save(record).await;
        let phases = retro["phases"].as_array().map_or(0, Vec::len);
        let text = format!(
            "{} {}: retrospective of rollout #{} ({}, {phases} phase(s)): `rollguardctl rollout retro {}`",
            record.deployment,
            record.version,
            record.number,
            record.state.as_str().replace('_', " "),
            record.deployment
        );
        let mut event = serde_json::json!({
            "event": "rollout.retrospective",
            "deployment": record.deployment,
            "version": record.version,
            "rollout": record.number,
            "state": record.state.as_str(),
            "text": text,
        });
        event["retrospective"] = retro;
        self.notifier.send(event);
    }
}

/// `record` ended as `state` at `now`, and its audit entry.
fn ended(
    record: &RolloutRecord,
    state: RolloutState,
    reason: &str,
    actor: &str,
    now: SystemTime,
) -> (RolloutRecord, AuditRecord) {
    let mut done = record.clone();
    done.state = state;
    done.ended_at_unix_ms = Some(unix_ms(now));
    done.end_reason = reason.to_owned();
    done.ended_by = actor.to_owned();
    if let Some(phase) = done.current_mut() {
        phase.ended_at_unix_ms.get_or_insert(unix_ms(now));
    }
    let audit = audit(
        &done,
        &format!("rollout_{}", state.as_str()),
        reason,
        actor,
        format!(
            "rollout #{} of {} at phase {}, {} host(s) promoted{}",
            done.number,
            done.version,
            done.phase_number(),
            done.promoted.len(),
            if done.rollback_command.is_empty() {
                String::new()
            } else {
                format!("; rollback {}", done.rollback_command)
            }
        ),
        now,
    );
    (done, audit)
}

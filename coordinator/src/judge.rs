//! The policy loop: every deployment's rounds at its `check_interval`, each
//! judged by the pure engine in `rollguard_common::policy`, stored with the
//! figures it used, and acted on.
//!
//! Rounds are windowed by the coordinator's receive time: a round holds what
//! arrived since the previous round of that deployment (less a resent
//! backlog's older part, see `Fleet::record_samples`). Configured
//! deployments are judged always (hearing from no host is a blind round,
//! never a rollback); others only while they have connected hosts, with no
//! rules.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use rollguard_common::policy::{advance, evaluate, Decision, JudgeState, RoundInput, Verdict};
use rollguard_common::DeploymentName;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::broadcast::{self, Origin};
use crate::service::Shared;
use crate::store::{unix_ms, AuditRecord, RoundRecord, Snapshot, Write};

/// How often the loop looks for due rounds.
const TICK: Duration = Duration::from_millis(100);
/// Rounds kept in the store per deployment.
const ROUNDS_KEPT: u64 = 20_000;

#[derive(Debug, Default)]
struct DeploymentJudge {
    state: JudgeState,
    latest: Option<RoundRecord>,
    next_seq: u64,
}

/// Judging state of every deployment, shared with the control API.
#[derive(Debug, Default)]
pub(crate) struct Judge {
    inner: Mutex<HashMap<DeploymentName, DeploymentJudge>>,
}

impl Judge {
    /// Restores states and latest rounds from the store.
    pub(crate) fn from_snapshot(snapshot: &Snapshot) -> Self {
        let mut map: HashMap<DeploymentName, DeploymentJudge> = HashMap::new();
        for (deployment, state) in &snapshot.judge_states {
            map.entry(DeploymentName::new(deployment.clone()))
                .or_default()
                .state = *state;
        }
        for round in &snapshot.latest_rounds {
            let entry = map
                .entry(DeploymentName::new(round.deployment.clone()))
                .or_default();
            entry.next_seq = round.seq + 1;
            entry.latest = Some(round.clone());
        }
        Judge {
            inner: Mutex::new(map),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<DeploymentName, DeploymentJudge>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns the latest round of a deployment, if any.
    pub(crate) fn latest(&self, deployment: &DeploymentName) -> Option<RoundRecord> {
        self.lock().get(deployment).and_then(|j| j.latest.clone())
    }

    /// Returns the current state of a deployment.
    pub(crate) fn state(&self, deployment: &DeploymentName) -> JudgeState {
        self.lock()
            .get(deployment)
            .map(|j| j.state)
            .unwrap_or_default()
    }

    /// Re-arms a deployment and resets its count; returns whether it was armed, and the new state.
    pub(crate) fn rearm(&self, deployment: &DeploymentName) -> (bool, JudgeState) {
        let mut map = self.lock();
        let entry = map.entry(deployment.clone()).or_default();
        let was_armed = entry.state.armed;
        entry.state = JudgeState {
            consecutive: 0,
            armed: true,
        };
        (was_armed, entry.state)
    }
}

/// Runs rounds until `shutdown`.
pub(crate) async fn run(shared: Shared, shutdown: CancellationToken) {
    let mut next_due: HashMap<DeploymentName, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        let mut deployments: Vec<DeploymentName> =
            shared.config.deployments.keys().cloned().collect();
        deployments.extend(shared.fleet.connected_deployments());
        deployments.sort();
        deployments.dedup();
        for deployment in deployments {
            let policy = shared.config.deployment(&deployment);
            let due = next_due
                .entry(deployment.clone())
                .or_insert(now + policy.check_interval);
            if now < *due {
                continue;
            }
            // Keep the cadence; after a stall, start afresh rather than burst.
            *due += policy.check_interval;
            if *due <= now {
                *due = now + policy.check_interval;
            }
            round(&shared, &deployment, policy.check_interval).await;
        }
    }
}

async fn round(shared: &Shared, deployment: &DeploymentName, round_len: Duration) {
    let policy = shared.config.deployment(deployment);
    let now = SystemTime::now();
    let (hosts, beta_seen, hosts_seen) = shared.fleet.take_round(deployment, now);
    let evaluation = evaluate(
        &policy,
        &RoundInput {
            hosts: &hosts,
            round_secs: round_len.as_secs_f64(),
            beta_seen,
            hosts_seen,
        },
    );
    // Rounds that pass are not traced; a round that fails (or errs) starts a
    // trace, and a decision's broadcast and every agent's action join it.
    let span = if evaluation.verdict == Verdict::Pass {
        tracing::Span::none()
    } else {
        let span = tracing::info_span!(
            "policy.evaluate",
            deployment = %deployment,
            verdict = evaluation.verdict.as_str(),
            reason = %evaluation.reason,
            consecutive = tracing::field::Empty,
            decision = tracing::field::Empty,
        );
        for rule in &evaluation.rules {
            let prefix = format!("rule.{}", rule.metric);
            if let Some(v) = rule.value {
                rollguard_proto::otel::set_attribute(&span, format!("{prefix}.value"), v);
            }
            if let Some(v) = rule.baseline {
                rollguard_proto::otel::set_attribute(&span, format!("{prefix}.baseline"), v);
            }
            if let Some(v) = rule.limit {
                rollguard_proto::otel::set_attribute(&span, format!("{prefix}.limit"), v);
            }
            rollguard_proto::otel::set_attribute(
                &span,
                format!("{prefix}.outcome"),
                rule.verdict.as_str(),
            );
        }
        span
    };
    // From the count until this round's state is queued: no catch-up may
    // look at the arming or the newest decision in between, and a rearm's
    // write of the state comes wholly before or after this round's.
    let _decisions = shared.decisions.lock().await;
    let (decision, mut state, seq, previous) = {
        let mut map = shared.judge.lock();
        let entry = map.entry(deployment.clone()).or_default();
        let decision = advance(&policy, &mut entry.state, &evaluation);
        let seq = entry.next_seq;
        entry.next_seq += 1;
        (
            decision,
            entry.state,
            seq,
            entry.latest.as_ref().map(|r| r.evaluation.verdict),
        )
    };
    if decision == Decision::WouldRollBack {
        // A dry run's count starts afresh once recorded; its round shows the
        // streak it used up.
        state.consecutive = policy.consecutive_failures;
    }
    span.record("consecutive", state.consecutive);
    span.record(
        "decision",
        match decision {
            Decision::None => "none",
            Decision::RollBack => "roll_back",
            Decision::WouldRollBack => "would_roll_back",
        },
    );
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
    let mut round_stored = false;
    match decision {
        Decision::None => {}
        Decision::RollBack => {
            // The disarmed state and this round are committed with the
            // decision itself: a crash cannot re-arm, and whoever sees the
            // rollback in the history also finds the round that decided it.
            let decided = broadcast::decide(
                shared,
                deployment,
                &reason,
                "rollguard policy",
                Origin::Policy,
                |command| {
                    let mut deciding = record.clone();
                    deciding.command_id = command.command_id.clone();
                    vec![
                        Write::Judge(deployment.to_string(), state),
                        Write::Round(Box::new(deciding)),
                    ]
                },
            )
            .instrument(span.clone())
            .await;
            match decided {
                Ok(command) => {
                    record.command_id = command.command_id;
                    round_stored = true;
                }
                Err(err) => {
                    // Not decided: stay armed so the next failing round tries again.
                    tracing::error!(%deployment, error = %err, "cannot store the rollback decision; staying armed");
                    if let Some(entry) = shared.judge.lock().get_mut(deployment) {
                        entry.state.armed = true;
                        record.state = entry.state;
                    }
                }
            }
        }
        Decision::WouldRollBack => {
            tracing::warn!(%deployment, %reason, "dry run: would roll back");
            let audit = AuditRecord {
                time_unix_ms: unix_ms(now),
                deployment: deployment.to_string(),
                action: "would_roll_back".to_owned(),
                reason: reason.clone(),
                command_id: String::new(),
                actor: "rollguard policy".to_owned(),
                detail: "dry run: nothing was sent".to_owned(),
            };
            // The round is committed with its entry, as for a real decision.
            let writes = vec![Write::Audit(audit), Write::Round(Box::new(record.clone()))];
            match shared.store.commit(writes).await {
                Ok(()) => round_stored = true,
                Err(err) => {
                    tracing::error!(%deployment, error = %err, "cannot store the dry-run decision")
                }
            }
            shared.notifier.send(json!({
                "event": "would_roll_back",
                "deployment": deployment.as_str(),
                "reason": reason,
            }));
        }
    }
    let verdict = record.evaluation.verdict;
    shared
        .metrics
        .verdict(deployment.as_str(), verdict.as_str());
    if previous != Some(verdict) {
        tracing::info!(%deployment, %verdict, reason = %record.evaluation.reason, "verdict changed");
        shared.notifier.send(json!({
            "event": "verdict_changed",
            "deployment": deployment.as_str(),
            "from": previous.map(|v| v.as_str()),
            "to": verdict.as_str(),
            "reason": record.evaluation.reason,
            "consecutive": record.state.consecutive,
            "blast_radius_exceeded": record.evaluation.blast_radius_exceeded,
        }));
    }
    // The state is read again now: a rearm may have run since this round began.
    let current = shared.judge.state(deployment);
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
        if let Err(err) = shared.store.queue(write).await {
            tracing::warn!(%deployment, error = %err, "cannot store the round");
        }
    }
    if let Some(entry) = shared.judge.lock().get_mut(deployment) {
        entry.latest = Some(record);
    }
}

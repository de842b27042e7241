//! Issuing a rollback: the decision (command and audit entry) is committed
//! to the store first, then sent to every beta host of the deployment; a
//! host that was away past a command's deadline gets a catch-up of its own.
//! Whether to decide is not this module's business: `decisions` owns the
//! arming and calls in here under its lock.

use std::sync::Arc;
use std::time::SystemTime;

use rollguard_common::DeploymentName;
use serde_json::json;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use crate::error::{chain, Error, Result};
use crate::fleet::Fleet;
use crate::notify::Notifier;
use crate::outbound::{command_message, AgentTx};
use crate::store::{unix_ms, AuditRecord, CommandKind, CommandRecord, Store, Write};

/// Longest reason a command (and its audit entry and webhook) carries, in
/// bytes. An operator's or the policy's reason fits easily; a catch-up
/// quotes the decision's reason, and a longer one is cut (on a char
/// boundary) so that no chain of commands can grow it (issue 10).
const MAX_REASON_LEN: usize = 512;

/// What issuing a command needs: where it is stored, who it goes to.
#[derive(Debug, Clone)]
pub(crate) struct Issuer {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet<AgentTx>>,
    pub(crate) store: Store,
    pub(crate) notifier: Notifier,
    /// Sends that wait for room in a full stream queue run here.
    pub(crate) tracker: TaskTracker,
}

/// Who asked for a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin<'a> {
    /// An operator, with the call's idempotency key (empty for none).
    Manual {
        request_id: &'a str,
    },
    Policy,
    /// A rollout's own rollback (a failed promote, an abort): closed to
    /// the hosts it promoted.
    Rollout {
        targets: &'a [String],
    },
}

impl<'a> Origin<'a> {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Manual { .. } => "manual",
            Origin::Policy => "policy",
            Origin::Rollout { .. } => "rollout",
        }
    }

    fn request_id(self) -> &'a str {
        match self {
            Origin::Manual { request_id } => request_id,
            Origin::Policy | Origin::Rollout { .. } => "",
        }
    }
}

/// Stores the decision to roll `deployment` back, then sends it. Returns the command.
///
/// Runs in a `rollback.broadcast` span, a child of the caller's (the
/// evaluation round, or the control call that carries the CLI's trace); its
/// W3C context travels in the command so each agent's action joins the trace.
///
/// `with` gives writes committed in the same transaction as the decision,
/// from the command about to be stored: the policy's disarmed state, so that
/// a crash cannot re-arm and decide twice, and the round that decided, so
/// that whoever sees the decision also sees why.
impl Issuer {
    pub(crate) async fn decide(
        &self,
        deployment: &DeploymentName,
        reason: &str,
        actor: &str,
        origin: Origin<'_>,
        with: impl FnOnce(&CommandRecord) -> Vec<Write>,
    ) -> Result<CommandRecord> {
        let span = tracing::info_span!(
            "rollback.broadcast",
            deployment = %deployment,
            origin = origin.as_str(),
            command_id = tracing::field::Empty,
            targets = tracing::field::Empty,
        );
        self.decide_in(deployment, reason, actor, origin, with, &span)
            .instrument(span.clone())
            .await
    }

    async fn decide_in(
        &self,
        deployment: &DeploymentName,
        reason: &str,
        actor: &str,
        origin: Origin<'_>,
        with: impl FnOnce(&CommandRecord) -> Vec<Write>,
        span: &tracing::Span,
    ) -> Result<CommandRecord> {
        let reason = &bounded_reason(reason.to_owned());
        let now = SystemTime::now();
        let (mut targets, known) = self.fleet.beta_targets(deployment, now);
        let closed = if let Origin::Rollout { targets: promoted } = origin {
            targets = promoted.to_vec();
            targets.sort();
            true
        } else {
            false
        };
        if !known && !self.config.deployments.contains_key(deployment) {
            return Err(Error::NotFound(format!(
                "deployment `{deployment}` is not configured and no host of it was ever seen"
            )));
        }
        let action = self.config.deployment(deployment).rollback_action;
        let not_after = now + self.config.command_ttl;
        let record = CommandRecord {
            command_id: new_command_id(now),
            deployment: deployment.to_string(),
            action: action.clone(),
            reason: reason.to_owned(),
            actor: actor.to_owned(),
            issued_at_unix_ms: unix_ms(now),
            not_after_unix_ms: unix_ms(not_after),
            targets: targets.clone(),
            trace_context: rollguard_proto::otel::inject(span).into_iter().collect(),
            closed,
            request_id: origin.request_id().to_owned(),
            retry_of: String::new(),
            attempt: 0,
            local: false,
            kind: CommandKind::Rollback,
            version: String::new(),
        };
        span.record("command_id", record.command_id.as_str());
        span.record("targets", targets.len());
        let audit = AuditRecord {
            time_unix_ms: unix_ms(now),
            deployment: deployment.to_string(),
            action: "rollback".to_owned(),
            reason: reason.to_owned(),
            command_id: record.command_id.clone(),
            actor: actor.to_owned(),
            detail: format!(
                "{}; action `{action}` to {} beta host(s)",
                origin.as_str(),
                targets.len()
            ),
        };
        let with = with(&record);
        self.issue(record.clone(), audit, with).await?;
        tracing::info!(
            %deployment,
            command_id = %record.command_id,
            action = %action,
            origin = origin.as_str(),
            n_targets = targets.len(),
            "rollback decided"
        );
        // Built only for a webhook that takes it: it names every target.
        if self.notifier.wants("rollback_decided") {
            self.notifier.send(json!({
                "event": "rollback_decided",
                "deployment": deployment.as_str(),
                "command_id": record.command_id,
                "origin": origin.as_str(),
                "actor": actor,
                "reason": reason,
                "action": action,
                "targets": targets,
            }));
        }
        Ok(record)
    }

    /// Commits `record` with its audit entry (and `with`), then sends it: the
    /// decision is durable before any agent hears of it.
    async fn issue(
        &self,
        record: CommandRecord,
        audit: AuditRecord,
        with: Vec<Write>,
    ) -> Result<()> {
        let mut writes = vec![Write::Command(record.clone()), Write::Audit(audit)];
        writes.extend(with);
        self.store.commit(writes).await?;
        let deployment = record.deployment.clone();
        // One wire message for every target, built outside the fleet's lock.
        let message = command_message(&record, SystemTime::now());
        let dispatched = self.fleet.dispatch(record);
        for tx in &dispatched.senders {
            tx.send_command(&message, &self.tracker);
        }
        if let Some(updated) = dispatched.updated {
            // The decision is already durable and sent; a failure here only
            // loses the late-target list, which hosts' reconnects rebuild.
            if let Err(err) = self.store.queue(Write::Command(updated)).await {
                tracing::warn!(%deployment, error = %chain(&err), "cannot store the updated targets");
            }
        }
        Ok(())
    }
}

/// Why a host gets a repeat of a command: it never ran it (a catch-up), or
/// its run failed (a retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missed {
    /// It was a target, away past `not_after`, and rejected it as expired.
    Expired,
    /// It was not a target (away longer than the target window, or new) and
    /// connected after `not_after`.
    NotTargeted,
    /// Its run failed or was interrupted; this is retry number `attempt`.
    Failed { attempt: u32 },
}

impl Missed {
    /// What happened on the host, for the reason and the audit.
    fn what(self) -> &'static str {
        match self {
            Missed::Expired => "was away past its deadline",
            Missed::NotTargeted => "was not a target and came after its deadline",
            Missed::Failed { .. } => "failed to run it (or was interrupted)",
        }
    }
}

/// Repeats `original` for one host (see [`Missed`]): a catch-up while its
/// deployment is still disarmed by that decision, or a retry of a failed
/// run. The repeat is a new command (new id, new deadline) closed to that
/// host alone, stored and audited like any rollback, in a
/// `rollback.catch_up` span under the original decision's trace.
impl Issuer {
    pub(crate) async fn catch_up(
        &self,
        original: &CommandRecord,
        host_id: &str,
        missed: Missed,
    ) -> Result<CommandRecord> {
        let span = tracing::info_span!(
            "rollback.catch_up",
            deployment = %original.deployment,
            original = %original.command_id,
            host.id = %host_id,
        );
        rollguard_proto::otel::set_parent(&span, &original.trace_context.iter().cloned().collect());
        let now = SystemTime::now();
        let (kind, retry_of, attempt) = match missed {
            Missed::Failed { attempt } => {
                let first = if original.retry_of.is_empty() {
                    &original.command_id
                } else {
                    &original.retry_of
                };
                (format!("retry {attempt}"), first.clone(), attempt)
            }
            Missed::Expired | Missed::NotTargeted => ("catch-up".to_owned(), String::new(), 0),
        };
        let record = CommandRecord {
            command_id: new_command_id(now),
            deployment: original.deployment.clone(),
            action: original.action.clone(),
            reason: bounded_reason(format!(
                "{kind} of {}: the host {} ({})",
                original.command_id,
                missed.what(),
                original.reason
            )),
            actor: "rollguard".to_owned(),
            issued_at_unix_ms: unix_ms(now),
            not_after_unix_ms: unix_ms(now + self.config.command_ttl),
            targets: vec![host_id.to_owned()],
            trace_context: rollguard_proto::otel::inject(&span).into_iter().collect(),
            closed: true,
            request_id: String::new(),
            retry_of,
            attempt,
            local: false,
            kind: CommandKind::Rollback,
            version: String::new(),
        };
        let audit = AuditRecord {
            time_unix_ms: unix_ms(now),
            deployment: original.deployment.clone(),
            action: "rollback".to_owned(),
            reason: record.reason.clone(),
            command_id: record.command_id.clone(),
            actor: "rollguard".to_owned(),
            detail: format!(
                "{kind}; action `{}` to {host_id}, which {} {}",
                record.action,
                match missed {
                    Missed::Expired => "rejected as expired",
                    Missed::NotTargeted => "connected after the deadline of",
                    Missed::Failed { .. } => "failed",
                },
                original.command_id
            ),
        };
        self.issue(record.clone(), audit, Vec::new())
            .instrument(span)
            .await?;
        tracing::info!(
            deployment = %record.deployment,
            command_id = %record.command_id,
            original = %original.command_id,
            %host_id,
            ?missed,
            "rollback repeated for one host"
        );
        Ok(record)
    }
}

/// What a promote installs, where, and why (issue 12).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Promote<'a> {
    pub(crate) deployment: &'a DeploymentName,
    /// The hosts this promote adds.
    pub(crate) hosts: &'a [String],
    /// Every host the rollout has promoted, these included: beta from now.
    pub(crate) promoted: &'a [String],
    pub(crate) action: &'a str,
    /// Checked with `ids::validate_version` by the caller.
    pub(crate) version: &'a str,
    pub(crate) reason: &'a str,
    pub(crate) actor: &'a str,
}

/// A rollout's promote: a command closed to the hosts a phase adds,
/// naming the agents' promote action and the version, stored (with
/// `with`, the rollout's record) before it is sent, like a rollback. It
/// is never retried or caught up: a failed promote ends the rollout.
impl Issuer {
    pub(crate) async fn promote(
        &self,
        promote: Promote<'_>,
        with: impl FnOnce(&CommandRecord) -> Vec<Write>,
    ) -> Result<CommandRecord> {
        let span = tracing::info_span!(
            "rollout.promote",
            deployment = %promote.deployment,
            version = promote.version,
            targets = promote.hosts.len(),
        );
        let now = SystemTime::now();
        let record = CommandRecord {
            command_id: new_command_id(now),
            deployment: promote.deployment.to_string(),
            action: promote.action.to_owned(),
            reason: bounded_reason(promote.reason.to_owned()),
            actor: promote.actor.to_owned(),
            issued_at_unix_ms: unix_ms(now),
            not_after_unix_ms: unix_ms(now + self.config.command_ttl),
            targets: promote.hosts.to_vec(),
            trace_context: rollguard_proto::otel::inject(&span).into_iter().collect(),
            closed: true,
            request_id: String::new(),
            retry_of: String::new(),
            attempt: 0,
            local: false,
            kind: CommandKind::Promote,
            version: promote.version.to_owned(),
        };
        let audit = AuditRecord {
            time_unix_ms: unix_ms(now),
            deployment: record.deployment.clone(),
            action: "promote".to_owned(),
            reason: record.reason.clone(),
            command_id: record.command_id.clone(),
            actor: promote.actor.to_owned(),
            detail: format!(
                "action `{}` with version {} to {} host(s)",
                record.action,
                record.version,
                record.targets.len()
            ),
        };
        let with = with(&record);
        self.issue(record.clone(), audit, with)
            .instrument(span)
            .await?;
        self.fleet
            .set_promoted(promote.deployment, promote.promoted);
        tracing::info!(
            deployment = %record.deployment,
            command_id = %record.command_id,
            version = %record.version,
            n_targets = record.targets.len(),
            "promote sent"
        );
        Ok(record)
    }
}

/// `reason` cut to at most [`MAX_REASON_LEN`] bytes, on a char boundary.
fn bounded_reason(mut reason: String) -> String {
    reason.truncate(reason.floor_char_boundary(MAX_REASON_LEN));
    reason
}

/// A command id that is unique across restarts: time plus randomness.
fn new_command_id(now: SystemTime) -> String {
    format!("cmd-{:x}-{:016x}", unix_ms(now), fastrand::u64(..))
}

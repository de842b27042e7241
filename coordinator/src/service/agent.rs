//! `AgentService.Connect`: one task per agent stream.
//!
//! The first message must be a `Hello`; anything else, or a second `Hello`,
//! ends that stream with INVALID_ARGUMENT and leaves every other stream alone.
//! Downstream messages go through a bounded channel per agent. Full policy:
//! a sample ack is dropped (acks are cumulative, the next one covers it); a
//! command waits for room in its own task and is never dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_common::ids::{validate_name, REASON_EXPIRED};
use rollguard_common::{Cohort, CommandStatus, DeploymentName, HostId};
use rollguard_proto::compact::Expander;
use rollguard_proto::v1 as pb;
use rollguard_proto::{duration_from_pb, time_from_pb, WireError};
use tokio::sync::{mpsc, Notify};
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Caller;
use crate::config::Config;
use crate::counters::Counters;
use crate::decisions::Decisions;
use crate::error::chain;
use crate::fleet::{Fleet, HostIdentity};
use crate::notify::Notifier;
use crate::outbound::{command_message, goodbye_message, AgentTx, Outbound, WireTx};
use crate::store::{unix_ms, ResultRecord, Store, Write};

/// Time an agent has to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Downstream queue per agent.
const OUTBOUND_CAPACITY: usize = 64;
/// Most samples accepted in one batch.
pub(crate) const MAX_BATCH_SAMPLES: u32 = 256;
/// Most action names in a Hello.
const MAX_ACTIONS: usize = 64;
/// Longest app version string.
const MAX_VERSION_LEN: usize = 256;
/// The most labels a Hello may carry.
const MAX_LABELS: usize = 32;
/// Longest output tail kept per result.
const MAX_OUTPUT_TAIL: usize = 8192;

/// The agent link service: what every agent stream needs.
#[derive(Debug, Clone)]
pub(crate) struct AgentLink {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet<AgentTx>>,
    pub(crate) store: Store,
    pub(crate) decisions: Arc<Decisions>,
    pub(crate) notifier: Notifier,
    pub(crate) counters: Arc<Counters>,
    /// Cancelled first at shutdown: every agent stream ends on it.
    pub(crate) streams_shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

type ConnectStream = Pin<Box<dyn Stream<Item = Result<Outbound, Status>> + Send>>;

impl AgentLink {
    /// `AgentService.Connect` (served by [`server::AgentServer`]).
    async fn connect(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<ConnectStream>, Status> {
        if self.streams_shutdown.is_cancelled() {
            return Err(Status::unavailable("the coordinator is shutting down"));
        }
        let caller = Caller::of(&request);
        let mut inbound = request.into_inner();
        let identity = self.hello(&mut inbound).await?;
        // Identity comes from the certificate: an agent may speak only for
        // its own host, and nothing about another host changes.
        caller.check_host(identity.host_id.as_str()).inspect_err(|status| {
            tracing::warn!(host_id = %identity.host_id, reason = status.message(), "agent stream refused");
        })?;
        let (wire_tx, wire_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let welcome = Outbound::message(pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Welcome(pb::Welcome {
                host_id: identity.host_id.to_string(),
                max_batch_samples: MAX_BATCH_SAMPLES,
                coordinator_version: env!("CARGO_PKG_VERSION").to_owned(),
                compact_samples: true,
                local_rollbacks: true,
            })),
        });
        // The channel is new and empty: the Welcome always fits, and it goes
        // first, before the fleet can send a command on this stream.
        let _ = wire_tx.try_send(welcome);
        let tx = AgentTx::new(wire_tx.clone());
        let replaced = Arc::clone(&tx.end);
        let conn_id = self.join(&identity, tx).await;
        let session = Session {
            link: self.clone(),
            round_window: self.config.deployment(&identity.deployment).check_interval,
            identity,
            conn_id,
            expander: Expander::new(),
            wire_tx,
            caller,
        };
        self.tracker.spawn(session.run(inbound, replaced));
        // `End` is the stream's last item: the status it ends with.
        let stream = tokio_stream::wrappers::ReceiverStream::new(wire_rx).map(|item| match item {
            Outbound::End(status) => Err(*status),
            item => Ok(item),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

impl AgentLink {
    /// Waits for the stream's Hello and checks it.
    async fn hello(
        &self,
        inbound: &mut Streaming<pb::AgentMessage>,
    ) -> Result<HostIdentity, Status> {
        let first = tokio::select! {
            first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message()) => first,
            () = self.streams_shutdown.cancelled() => {
                return Err(Status::unavailable("the coordinator is shutting down"));
            }
        }
        .map_err(|_| Status::deadline_exceeded("no Hello within 10s"))??
        .ok_or_else(|| Status::invalid_argument("stream ended before Hello"))?;
        let hello = match first.kind {
            Some(pb::agent_message::Kind::Hello(hello)) => hello,
            _ => {
                tracing::warn!("agent stream rejected: first message is not Hello");
                return Err(Status::invalid_argument("the first message must be Hello"));
            }
        };
        check_hello(&hello).map_err(|err| {
            tracing::warn!(error = %err, "agent stream rejected: bad Hello");
            Status::invalid_argument(format!("bad Hello: {err}"))
        })
    }

    /// Puts the host in the fleet, sends what it must get now, and starts
    /// its catch-up if it missed a decision; returns the connection id.
    async fn join(&self, identity: &HostIdentity, tx: AgentTx) -> u64 {
        let now = SystemTime::now();
        let connected = self.fleet.connect(identity.clone(), tx.clone(), now);
        if let Some(old) = &connected.replaced {
            old.goodbye("replaced by a newer connection");
        }
        tracing::info!(
            host_id = %identity.host_id,
            deployment = %identity.deployment,
            cohort = %identity.cohort,
            app_version = %identity.app_version,
            n_pending = connected.pending.len(),
            "agent connected"
        );
        self.store.queue_lossy(Write::Agent(connected.record));
        for record in connected.updated {
            // Late targets are stored so GetCommand and restarts see them; if
            // the store is closing, the host still gets the command now.
            if let Err(err) = self.store.queue(Write::Command(record)).await {
                tracing::warn!(host_id = %identity.host_id, error = %chain(&err), "cannot store a late target");
            }
        }
        for record in &connected.pending {
            tx.send_command(&command_message(record, SystemTime::now()), &self.tracker);
        }
        if identity.cohort == Cohort::Beta && !self.decisions.state(&identity.deployment).armed {
            let decisions = Arc::clone(&self.decisions);
            let identity = identity.clone();
            self.tracker.spawn(async move {
                decisions.catch_up_missed(&identity, now).await;
            });
        }
        connected.conn_id
    }
}

/// One agent's stream after its Hello.
struct Session {
    link: AgentLink,
    identity: HostIdentity,
    conn_id: u64,
    /// The stream's sample layout, for its compact samples.
    expander: Expander,
    /// How far back a sample may go and still count to the current round.
    round_window: Duration,
    wire_tx: WireTx,
    /// The certificate's caller: its revocation ends the stream.
    caller: Caller,
}

impl Session {
    /// Reads the agent's messages and forwards the fleet's until either side ends.
    async fn run(mut self, mut inbound: Streaming<pb::AgentMessage>, replaced: Arc<Notify>) {
        let shutdown = self.link.streams_shutdown.clone();
        let caller = self.caller.clone();
        let end: Option<Status> = loop {
            tokio::select! {
                () = caller.revoked() => {
                    tracing::warn!(host_id = %self.identity.host_id, "agent stream ended: its certificate is revoked");
                    break Some(Status::permission_denied("this agent's identity is revoked"));
                }
                () = shutdown.cancelled() => {
                    // Never wait on an agent that stopped reading: the end of the
                    // stream tells it as much as the Goodbye would.
                    let _ = self.wire_tx.try_send(goodbye_message("the coordinator is stopping"));
                    break None;
                }
                // A newer connection replaced this one; its Goodbye is queued.
                () = replaced.notified() => break None,
                message = inbound.next() => match message {
                    None => break None,
                    Some(Err(status)) => {
                        tracing::debug!(host_id = %self.identity.host_id, error = %status, "agent stream error");
                        break None;
                    }
                    Some(Ok(message)) => {
                        if let Err(status) = self.handle(message).await {
                            tracing::warn!(host_id = %self.identity.host_id, error = %status.message(), "agent stream ended on a protocol error");
                            break Some(status);
                        }
                    }
                },
            }
        };
        self.end(end).await;
    }

    async fn end(self, end: Option<Status>) {
        if let Some(status) = end {
            // The agent learns why; bounded so a stalled peer cannot hold the task.
            let end = Outbound::End(Box::new(status));
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wire_tx.send(end)).await;
        }
        let host_id = &self.identity.host_id;
        if let Some(record) = self
            .link
            .fleet
            .disconnect(host_id, self.conn_id, SystemTime::now())
        {
            tracing::info!(%host_id, "agent disconnected");
            self.link.store.queue_lossy(Write::Agent(record));
        }
    }

    async fn handle(&mut self, message: pb::AgentMessage) -> Result<(), Status> {
        match message.kind {
            None => Err(Status::invalid_argument("empty AgentMessage")),
            Some(pb::agent_message::Kind::Hello(_)) => {
                Err(Status::invalid_argument("a second Hello on one stream"))
            }
            Some(pb::agent_message::Kind::Samples(batch)) => self.on_samples(batch),
            Some(pb::agent_message::Kind::Labels(labels)) => self.on_labels(labels),
            // Boxed: their futures (a store commit, a catch-up's whole
            // decision) would otherwise size every stream's task for its
            // life, for a message a host sends a few times a year (issue 15).
            Some(pb::agent_message::Kind::CommandUpdate(update)) => {
                Box::pin(self.on_command_update(&update)).await
            }
            Some(pb::agent_message::Kind::LocalRollback(report)) => {
                Box::pin(self.on_local_rollback(&report)).await
            }
        }
    }

    /// Records a host's local rollback once per command id (durably, with
    /// its audit entry and result), tells the webhook, and acknowledges it;
    /// a repeat is only acknowledged again. Nothing is sent to any host.
    #[tracing::instrument(skip_all, fields(host_id = %self.identity.host_id))]
    async fn on_local_rollback(&self, report: &pb::LocalRollback) -> Result<(), Status> {
        let run = local::check_local(report, MAX_OUTPUT_TAIL).map_err(wire_status)?;
        let host_id = &self.identity.host_id;
        let (record, result, audit) = run.records(&self.identity, SystemTime::now());
        if self.link.fleet.record_local(record.clone(), result.clone()) {
            let writes = vec![
                Write::Command(record),
                Write::Result(result),
                Write::Audit(audit),
            ];
            if let Err(err) = self.link.store.commit(writes).await {
                // Unacknowledged: the agent reports it again on its next stream.
                self.link.fleet.forget_local(&run.command_id);
                tracing::error!(command_id = %run.command_id, error = %chain(&err), "cannot store the local rollback");
                return Ok(());
            }
            tracing::warn!(
                %host_id,
                deployment = %self.identity.deployment,
                command_id = %run.command_id,
                action = %run.action,
                status = %run.status,
                reason = %run.reason,
                "local rollback by the host's tripwire while the coordinator was unreachable"
            );
            self.link.notifier.send(run.event(&self.identity));
        } else {
            tracing::debug!(command_id = %run.command_id, "local rollback reported again");
        }
        let ack = Outbound::message(pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::LocalRollbackAck(
                pb::LocalRollbackAck {
                    command_id: run.command_id,
                },
            )),
        });
        // Dropped when the queue is full: the agent reports it again on its
        // next stream, and a repeat is acknowledged then.
        let _ = self.wire_tx.try_send(ack);
        Ok(())
    }

    fn on_samples(&mut self, batch: pb::SampleBatch) -> Result<(), Status> {
        if batch.samples.len() > MAX_BATCH_SAMPLES as usize {
            return Err(Status::invalid_argument(format!(
                "a batch holds at most {MAX_BATCH_SAMPLES} samples"
            )));
        }
        if batch.samples.is_empty() {
            return Ok(());
        }
        let n_samples = batch.samples.len();
        let last_seq = batch.first_seq.saturating_add(n_samples as u64 - 1);
        let counters = &self.link.counters;
        // Every sample is checked before any is applied: a batch is all or
        // nothing. Compact samples are decoded in stream order, in one step
        // from the wire to the domain. (From a reference: the copies are
        // allocated to size, where moving the decoder's buffers into each
        // host's long-lived latest sample cost 10-13 KiB of RSS per host.)
        let expander = &mut self.expander;
        let samples = batch
            .samples
            .iter()
            .map(|sample| expander.decode(sample))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                Counters::add(&counters.samples_rejected, n_samples);
                wire_status(err)
            })?;
        let host_id = &self.identity.host_id;
        let Some(applied) = self.link.fleet.record_samples(
            host_id,
            self.conn_id,
            batch.first_seq,
            samples,
            self.round_window,
            SystemTime::now(),
        ) else {
            return Ok(());
        };
        Counters::add(&counters.samples_ingested, applied.applied);
        Counters::add(&counters.samples_late, applied.late);
        Counters::add(&counters.samples_deduplicated, applied.duplicates);
        if applied.duplicates > 0 || applied.late > 0 {
            tracing::debug!(%host_id, duplicates = applied.duplicates, late = applied.late, "resent samples");
        }
        // Acks are cumulative: dropping one when the queue is full is safe.
        let _ = self.wire_tx.try_send(Outbound::SampleAck(last_seq));
        Ok(())
    }

    fn on_labels(&self, labels: pb::LabelsUpdate) -> Result<(), Status> {
        if labels.app_version.len() > MAX_VERSION_LEN {
            return Err(Status::invalid_argument("app_version is too long"));
        }
        let host_id = &self.identity.host_id;
        tracing::info!(%host_id, app_version = %labels.app_version, "app version changed");
        if let Some(record) = self.link.fleet.update_version(
            host_id,
            self.conn_id,
            labels.app_version,
            SystemTime::now(),
        ) {
            self.link.store.queue_lossy(Write::Agent(record));
        }
        Ok(())
    }

    async fn on_command_update(&self, update: &pb::CommandUpdate) -> Result<(), Status> {
        let result = check_update(update).map_err(wire_status)?;
        let host_id = &self.identity.host_id;
        if result.status.is_final() && result.status != CommandStatus::Succeeded {
            tracing::warn!(
                %host_id,
                command_id = %result.command_id,
                status = %result.status,
                exit_code = ?result.exit_code,
                reason = %result.reason,
                "command result"
            );
        } else if result.status.is_final() {
            // One line per host of a fan-out to 100,000 is a log nobody
            // reads, written under load (issue 15): successes are counted
            // on /metrics and kept in the store (`rollguardctl results`).
            tracing::debug!(%host_id, command_id = %result.command_id, "command succeeded");
        } else {
            tracing::debug!(%host_id, command_id = %result.command_id, status = %result.status, "command update");
        }
        let stored = match self.link.fleet.command_update(host_id, result) {
            // accepted/running live in memory only: a restart resends the
            // command and the agent answers again.
            Ok(Some(stored)) if stored.status.is_final() => stored,
            Ok(_) => return Ok(()),
            Err(err) => {
                // Not fatal to the stream: the agent may report a command
                // from before a data dir was wiped.
                tracing::warn!(%host_id, error = %err, "command update ignored");
                return Ok(());
            }
        };
        if self.link.notifier.wants("command_result") {
            self.link.notifier.send(serde_json::json!({
                "event": "command_result",
                "deployment": self.identity.deployment.as_str(),
                "command_id": stored.command_id,
                "host_id": host_id.as_str(),
                "status": stored.status.as_str(),
                "exit_code": stored.exit_code,
                "reason": stored.reason,
            }));
        }
        let expired = stored.status == CommandStatus::Rejected && stored.reason == REASON_EXPIRED;
        let failed = stored.status == CommandStatus::Failed;
        let command_id = stored.command_id.clone();
        self.link
            .store
            .queue(Write::Result(stored))
            .await
            .map_err(Status::from)?;
        if expired {
            self.link
                .decisions
                .catch_up_expired(&self.identity, &command_id)
                .await;
        }
        if failed {
            self.link
                .decisions
                .retry_failed(host_id.as_str(), &command_id);
        }
        Ok(())
    }
}

fn wire_status(err: WireError) -> Status {
    Status::invalid_argument(err.to_string())
}

fn check_hello(hello: &pb::Hello) -> Result<HostIdentity, WireError> {
    validate_name("host_id", &hello.host_id).map_err(|m| WireError::Invalid {
        field: "host_id",
        message: m,
    })?;
    validate_name("deployment", &hello.deployment).map_err(|m| WireError::Invalid {
        field: "deployment",
        message: m,
    })?;
    // COHORT_UNSPECIFIED is `auto`: the coordinator decides (the fleet
    // puts the host in the beta while a rollout has it promoted).
    let auto = hello.cohort == pb::Cohort::Unspecified as i32;
    let cohort = if auto {
        Cohort::Baseline
    } else {
        hello.checked_cohort()?
    };
    if hello.action_names.len() > MAX_ACTIONS {
        return Err(WireError::Invalid {
            field: "action_names",
            message: format!("at most {MAX_ACTIONS} actions"),
        });
    }
    for name in &hello.action_names {
        validate_name("action name", name).map_err(|m| WireError::Invalid {
            field: "action_names",
            message: m,
        })?;
    }
    if hello.app_version.len() > MAX_VERSION_LEN || hello.agent_version.len() > MAX_VERSION_LEN {
        return Err(WireError::Invalid {
            field: "app_version",
            message: "too long".to_owned(),
        });
    }
    if hello.labels.len() > MAX_LABELS {
        return Err(WireError::Invalid {
            field: "labels",
            message: format!("at most {MAX_LABELS} labels"),
        });
    }
    for (key, value) in &hello.labels {
        validate_name("label name", key).map_err(|m| WireError::Invalid {
            field: "labels",
            message: m,
        })?;
        if value.len() > MAX_VERSION_LEN {
            return Err(WireError::Invalid {
                field: "labels",
                message: format!("the value of `{key}` is longer than {MAX_VERSION_LEN} bytes"),
            });
        }
    }
    let interval = match &hello.interval {
        Some(d) => duration_from_pb("interval", d)?,
        None => Duration::from_secs(1),
    };
    if interval < Duration::from_millis(100) || interval > Duration::from_secs(3600) {
        return Err(WireError::Invalid {
            field: "interval",
            message: "must be between 100ms and 1h".to_owned(),
        });
    }
    Ok(HostIdentity {
        host_id: HostId::new(hello.host_id.clone()),
        deployment: DeploymentName::new(hello.deployment.clone()),
        cohort,
        auto,
        app_version: hello.app_version.clone(),
        agent_version: hello.agent_version.clone(),
        action_names: hello.action_names.clone(),
        interval,
        session_id: hello.session_id,
        labels: hello
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
}

fn check_update(update: &pb::CommandUpdate) -> Result<ResultRecord, WireError> {
    validate_name("command_id", &update.command_id).map_err(|m| WireError::Invalid {
        field: "command_id",
        message: m,
    })?;
    let status: CommandStatus = update.checked_status()?;
    let mut output_tail = update.output_tail.clone();
    if output_tail.len() > MAX_OUTPUT_TAIL {
        let mut cut = output_tail.len() - MAX_OUTPUT_TAIL;
        while !output_tail.is_char_boundary(cut) {
            cut += 1;
        }
        output_tail.drain(..cut);
    }
    let started_at = update
        .started_at
        .as_ref()
        .map(|t| time_from_pb("started_at", t))
        .transpose()?;
    let duration = update
        .duration
        .as_ref()
        .map(|d| duration_from_pb("duration", d))
        .transpose()?;
    let mut reason = update.reason.clone();
    reason.truncate(reason.floor_char_boundary(1024));
    Ok(ResultRecord {
        command_id: update.command_id.clone(),
        host_id: String::new(),
        status,
        exit_code: update.exit_code,
        reason,
        output_tail,
        updated_at_unix_ms: unix_ms(SystemTime::now()),
        started_at_unix_ms: started_at.map(unix_ms),
        duration_ms: duration.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    })
}

mod local;
mod server;

pub(crate) use server::AgentServer;

#[cfg(test)]
mod tests;

//! `AgentService.Connect`: one task per agent stream.
//!
//! The first message must be a `Hello`; anything else, or a second `Hello`,
//! ends that stream with INVALID_ARGUMENT and leaves every other stream alone.
//! Downstream messages go through a bounded channel per agent. Full policy:
//! a sample ack is dropped (acks are cumulative, the next one covers it); a
//! command waits for room in its own task and is never dropped.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rollguard_common::ids::{validate_name, REASON_EXPIRED};
use rollguard_common::{Cohort, CommandStatus, DeploymentName, HostId, HostSample};
use rollguard_proto::compact::Expander;
use rollguard_proto::v1 as pb;
use rollguard_proto::{duration_from_pb, time_from_pb, WireError};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use crate::broadcast::Missed;
use crate::fleet::{HostIdentity, Outbound};
use crate::store::{unix_ms, ResultRecord, Write};

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

/// The agent link service.
#[derive(Debug, Clone)]
pub(crate) struct AgentLink {
    shared: Shared,
}

impl AgentLink {
    pub(crate) fn new(shared: Shared) -> Self {
        AgentLink { shared }
    }
}

type ConnectStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_service_server::AgentService for AgentLink {
    type ConnectStream = ConnectStream;

    async fn connect(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        if self.shared.streams_shutdown.is_cancelled() {
            return Err(Status::unavailable("the coordinator is shutting down"));
        }
        let mut inbound = request.into_inner();
        let first = tokio::select! {
            first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message()) => first,
            () = self.shared.streams_shutdown.cancelled() => {
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
        let identity = check_hello(&hello).map_err(|err| {
            tracing::warn!(error = %err, "agent stream rejected: bad Hello");
            Status::invalid_argument(format!("bad Hello: {err}"))
        })?;

        let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let (wire_tx, wire_rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let welcome = pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Welcome(pb::Welcome {
                host_id: identity.host_id.to_string(),
                max_batch_samples: MAX_BATCH_SAMPLES,
                coordinator_version: env!("CARGO_PKG_VERSION").to_owned(),
                compact_samples: true,
            })),
        };
        // The channel is new and empty: the Welcome always fits, and it goes
        // first, before the fleet can send a command on this stream.
        let _ = wire_tx.try_send(Ok(welcome));
        let now = SystemTime::now();
        let stream_tx = crate::fleet::OutboundTx {
            control: outbound_tx,
            wire: wire_tx.clone(),
        };
        let (conn_id, record, pending, updated) =
            self.shared.fleet.connect(identity.clone(), stream_tx, now);
        tracing::info!(
            host_id = %identity.host_id,
            deployment = %identity.deployment,
            cohort = %identity.cohort,
            app_version = %identity.app_version,
            n_pending = pending.len(),
            "agent connected"
        );
        self.shared.store.queue_lossy(Write::Agent(record));
        for record in updated {
            // Late targets are stored so GetCommand and restarts see them; if
            // the store is closing, the host still gets the command now.
            if let Err(err) = self.shared.store.queue(Write::Command(record)).await {
                tracing::warn!(host_id = %identity.host_id, error = %err, "cannot store a late target");
            }
        }

        for record in &pending {
            crate::fleet::send_command(&wire_tx, &crate::fleet::command_message(record));
        }
        if identity.cohort == Cohort::Beta && !self.shared.judge.state(&identity.deployment).armed {
            let shared = self.shared.clone();
            let identity = identity.clone();
            self.shared.tracker.spawn(async move {
                catch_up_missed(&shared, &identity, now).await;
            });
        }

        let shared = self.shared.clone();
        self.shared.tracker.spawn(async move {
            run_stream(shared, identity, conn_id, inbound, outbound_rx, wire_tx).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(wire_rx),
        )))
    }
}

/// Reads the agent's messages and forwards the fleet's messages until either side ends.
async fn run_stream(
    shared: Shared,
    identity: HostIdentity,
    conn_id: u64,
    mut inbound: Streaming<pb::AgentMessage>,
    mut outbound_rx: mpsc::Receiver<Outbound>,
    wire_tx: mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
) {
    let host_id = identity.host_id.clone();
    // The stream's sample layout, for its compact samples.
    let mut expander = Expander::new();
    // How far back a sample may go and still count to the current round.
    let round_window = shared
        .config
        .deployment(&identity.deployment)
        .check_interval;
    let end: Option<Status> = loop {
        tokio::select! {
                        () = shared.streams_shutdown.cancelled() => {
                // Never wait on an agent that stopped reading: the end of the
                // stream tells it as much as the Goodbye would.
                let _ = wire_tx.try_send(Ok(goodbye("the coordinator is stopping")));
                break None;
            }
            outbound = outbound_rx.recv() => {
                let Some(outbound) = outbound else { break None };
                let stop = matches!(outbound, Outbound::Goodbye(_));
                let sent = tokio::select! {
                    sent = wire_tx.send(Ok(to_wire(outbound))) => sent.is_ok(),
                    () = shared.streams_shutdown.cancelled() => false,
                };
                if !sent || stop {
                    break None;
                }
            }
            message = inbound.next() => {
                match message {
                    None => break None,
                    Some(Err(status)) => {
                        tracing::debug!(%host_id, error = %status, "agent stream error");
                        break None;
                    }
                    Some(Ok(message)) => {
                        if let Err(status) = handle(&shared, &identity, conn_id, &mut expander, round_window, message, &wire_tx).await {
                            tracing::warn!(%host_id, error = %status.message(), "agent stream ended on a protocol error");
                            break Some(status);
                        }
                    }
                }
            }
        }
    };
    if let Some(status) = end {
        // The agent learns why; bounded so a stalled peer cannot hold the task.
        let _ = tokio::time::timeout(Duration::from_secs(1), wire_tx.send(Err(status))).await;
    }
    if let Some(record) = shared
        .fleet
        .disconnect(&host_id, conn_id, SystemTime::now())
    {
        tracing::info!(%host_id, "agent disconnected");
        shared.store.queue_lossy(Write::Agent(record));
    }
}

async fn handle(
    shared: &Shared,
    identity: &HostIdentity,
    conn_id: u64,
    expander: &mut Expander,
    round_window: Duration,
    message: pb::AgentMessage,
    wire_tx: &mpsc::Sender<Result<pb::CoordinatorMessage, Status>>,
) -> Result<(), Status> {
    let host_id = &identity.host_id;
    match message.kind {
        None => Err(Status::invalid_argument("empty AgentMessage")),
        Some(pb::agent_message::Kind::Hello(_)) => {
            Err(Status::invalid_argument("a second Hello on one stream"))
        }
        Some(pb::agent_message::Kind::Samples(batch)) => {
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
            // Every sample is checked before any is applied: a batch is all or
            // nothing. Compact samples are made whole in stream order first.
            let samples = batch
                .samples
                .into_iter()
                .map(|mut sample| {
                    expander.expand(&mut sample)?;
                    // From a reference: the copies are allocated to size, where
                    // moving the decoder's buffers into each host's long-lived
                    // latest sample cost 10-13 KiB of RSS per host (10,000
                    // loadgen agents: 661 MiB against 527).
                    HostSample::try_from(&sample)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| {
                    shared
                        .metrics
                        .samples_rejected
                        .fetch_add(n_samples as u64, Ordering::Relaxed);
                    wire_status(err)
                })?;
            if let Some(applied) = shared.fleet.record_samples(
                host_id,
                conn_id,
                batch.first_seq,
                samples,
                round_window,
                SystemTime::now(),
            ) {
                let metrics = &shared.metrics;
                let count = |counter: &std::sync::atomic::AtomicU64, n: usize| {
                    if n > 0 {
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                    }
                };
                count(&metrics.samples_ingested, applied.applied);
                count(&metrics.samples_late, applied.late);
                count(&metrics.samples_deduplicated, applied.duplicates);
                if applied.duplicates > 0 || applied.late > 0 {
                    tracing::debug!(%host_id, duplicates = applied.duplicates, late = applied.late, "resent samples");
                }
                let ack = pb::CoordinatorMessage {
                    kind: Some(pb::coordinator_message::Kind::SampleAck(pb::SampleAck {
                        seq: last_seq,
                    })),
                };
                // Acks are cumulative: dropping one when the queue is full is safe.
                let _ = wire_tx.try_send(Ok(ack));
            }
            Ok(())
        }
        Some(pb::agent_message::Kind::Labels(labels)) => {
            if labels.app_version.len() > MAX_VERSION_LEN {
                return Err(Status::invalid_argument("app_version is too long"));
            }
            tracing::info!(%host_id, app_version = %labels.app_version, "app version changed");
            if let Some(record) =
                shared
                    .fleet
                    .update_version(host_id, conn_id, labels.app_version, SystemTime::now())
            {
                shared.store.queue_lossy(Write::Agent(record));
            }
            Ok(())
        }
        Some(pb::agent_message::Kind::CommandUpdate(update)) => {
            let result = check_update(&update).map_err(wire_status)?;
            if result.status.is_final() {
                tracing::info!(
                    %host_id,
                    command_id = %result.command_id,
                    status = %result.status,
                    exit_code = ?result.exit_code,
                    reason = %result.reason,
                    "command result"
                );
            } else {
                tracing::debug!(%host_id, command_id = %result.command_id, status = %result.status, "command update");
            }
            match shared.fleet.command_update(host_id, result) {
                Ok(Some(stored)) => {
                    if !stored.status.is_final() {
                        // accepted/running live in memory only: a restart
                        // resends the command and the agent answers again.
                        return Ok(());
                    }
                    shared.notifier.send(serde_json::json!({
                        "event": "command_result",
                        "deployment": identity.deployment.as_str(),
                        "command_id": stored.command_id,
                        "host_id": host_id.as_str(),
                        "status": stored.status.as_str(),
                        "exit_code": stored.exit_code,
                        "reason": stored.reason,
                    }));
                    let expired =
                        stored.status == CommandStatus::Rejected && stored.reason == REASON_EXPIRED;
                    let command_id = stored.command_id.clone();
                    shared
                        .store
                        .queue(Write::Result(stored))
                        .await
                        .map_err(Status::from)?;
                    if expired {
                        catch_up_if_in_force(shared, identity, &command_id).await;
                    }
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(err) => {
                    // Not fatal to the stream: the agent may report a command
                    // from before a data dir was wiped.
                    tracing::warn!(%host_id, error = %err, "command update ignored");
                    Ok(())
                }
            }
        }
    }
}

/// The host rejected `command_id` as expired, so it never ran it: it was
/// away past the deadline. If that is its deployment's newest command and
/// the policy still holds the deployment disarmed (no `rearm` since), the
/// decision is still in force and the host gets a catch-up of its own.
async fn catch_up_if_in_force(shared: &Shared, identity: &HostIdentity, command_id: &str) {
    let host_id = &identity.host_id;
    let _decisions = shared.decisions.lock().await;
    if identity.cohort != Cohort::Beta || shared.judge.state(&identity.deployment).armed {
        return;
    }
    let Some(original) = shared.fleet.newest_command_for(host_id, command_id) else {
        return;
    };
    if let Err(err) =
        crate::broadcast::catch_up(shared, &original, host_id.as_str(), Missed::Expired).await
    {
        // The store refused it; an operator's rollback still reaches the host.
        tracing::error!(%host_id, command_id, error = %err, "cannot issue the catch-up rollback");
    }
}

/// A beta host connected to a deployment the policy holds disarmed: if it
/// was never sent the decision and its deadline has passed, the decision
/// is still in force for it and it gets a catch-up of its own.
async fn catch_up_missed(shared: &Shared, identity: &HostIdentity, now: SystemTime) {
    let _decisions = shared.decisions.lock().await;
    let host_id = &identity.host_id;
    // Read again under the lock: a rearm may have come first.
    if shared.judge.state(&identity.deployment).armed {
        return;
    }
    let Some(original) = shared.fleet.missed_decision(host_id, now) else {
        return;
    };
    if let Err(err) =
        crate::broadcast::catch_up(shared, &original, host_id.as_str(), Missed::NotTargeted).await
    {
        tracing::error!(%host_id, command_id = %original.command_id, error = %err, "cannot issue the catch-up rollback");
    }
}

fn wire_status(err: WireError) -> Status {
    Status::invalid_argument(err.to_string())
}

fn goodbye(reason: &str) -> pb::CoordinatorMessage {
    pb::CoordinatorMessage {
        kind: Some(pb::coordinator_message::Kind::Goodbye(pb::Goodbye {
            reason: reason.to_owned(),
        })),
    }
}

fn to_wire(outbound: Outbound) -> pb::CoordinatorMessage {
    match outbound {
        Outbound::Goodbye(reason) => goodbye(&reason),
    }
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
    let cohort = hello.checked_cohort()?;
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

//! The agent's link to the coordinator, and the loop that drives everything:
//! collect on every tick (host figures, plus app health when configured),
//! stream samples, run commands, report results, reconnect with exponential
//! backoff and jitter.
//!
//! One task on a current-thread runtime: /proc reads take microseconds. App
//! scrapes and probes run in their own tasks (see `app`); a tick only takes
//! what they counted.
//! Samples that the coordinator has not acked are buffered (bounded; the
//! oldest are dropped first) and resent after a reconnect. Command updates
//! are never dropped: they wait for the next session, and the journal can
//! answer any repeat of a finished command.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use rollguard_common::ids::REASON_EXPIRED;
use rollguard_common::time::unix_ms;
use rollguard_common::{CommandStatus, HostSample};
use rollguard_proto::compact::Compactor;
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::agent_service_client::AgentServiceClient;
use rollguard_proto::{duration_to_pb, time_from_pb, time_to_pb};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::Instrument;

use crate::app::AppMonitor;
use crate::collect::Collector;
use crate::config::Config;
use crate::journal::{Entry, Journal, Outcome};
use crate::{action, version};

/// Samples kept while unacked (at 1 s, two minutes).
const SAMPLE_BUFFER: usize = 120;
/// Upstream queue of one session.
const UPSTREAM_CAPACITY: usize = 64;
/// First and largest reconnect delay.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Session {
    up_tx: mpsc::Sender<pb::AgentMessage>,
    inbound: tonic::Streaming<pb::CoordinatorMessage>,
    started: Instant,
    max_batch: usize,
    /// Present when the coordinator takes compact samples.
    compactor: Option<Compactor>,
}

impl Session {
    /// A batch of `samples` (whole, from the buffer) in this stream's encoding.
    fn batch<'a>(
        &mut self,
        first_seq: u64,
        samples: impl Iterator<Item = &'a pb::HostSample>,
    ) -> pb::AgentMessage {
        let samples = match &mut self.compactor {
            Some(compactor) => samples.map(|s| compactor.compact(s)).collect(),
            None => samples.cloned().collect(),
        };
        pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Samples(pb::SampleBatch {
                first_seq,
                samples,
            })),
        }
    }
}

/// An update from a running action task.
#[derive(Debug)]
struct Update {
    command_id: String,
    outcome: Option<Outcome>,
    status: CommandStatus,
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let now_ms = unix_ms(SystemTime::now());
    let mut journal = Journal::open(&config.state_dir, now_ms).map_err(|err| {
        anyhow::anyhow!(
            "cannot open the command journal in {}: {err}",
            config.state_dir.display()
        )
    })?;
    tracing::info!(path = %journal.path().display(), "command journal open");
    let endpoint = Endpoint::from_shared(config.coordinator.clone())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));

    let mut collector = Collector::new(config.collect.clone());
    // Scrapes and probes run on their own intervals; every sample takes
    // what they counted since the previous one.
    let mut app_monitor_opt = config
        .app
        .as_ref()
        .map(|app| AppMonitor::start(app, &shutdown));
    // The first tick is one interval after the collector's baseline, so the
    // first rates cover a whole interval rather than a few microseconds.
    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::now() + config.interval,
        config.interval,
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buffer: VecDeque<(u64, pb::HostSample)> = VecDeque::with_capacity(SAMPLE_BUFFER);
    let mut next_seq: u64 = 0;
    // Identifies this process's sequence numbers to the coordinator.
    let session_id = fastrand::u64(1..);
    let mut session: Option<Session> = None;
    let mut backoff = BACKOFF_MIN;
    let mut reconnect_at = tokio::time::Instant::now();
    let mut app_version = version::read(&config.version).await.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "cannot read the app version");
        String::new()
    });
    // Updates from action tasks; unbounded in count only in theory: one
    // command yields at most three updates and commands are rare.
    let (update_tx, mut update_rx) = mpsc::channel::<Update>(256);
    let mut pending_updates: VecDeque<pb::CommandUpdate> = VecDeque::new();
    let mut running: usize = 0;

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                let mut collected = collector.collect(Instant::now(), SystemTime::now());
                collected.sample.app = app_monitor_opt.as_ref().map(AppMonitor::take);
                for err in &collected.errors {
                    tracing::debug!(error = %err, "collector error");
                }
                push_sample(&mut buffer, next_seq, &collected.sample);
                next_seq += 1;
                match version::read(&config.version).await {
                    Ok(current) if current != app_version => {
                        tracing::info!(from = %app_version, to = %current, "app version changed");
                        app_version = current;
                        if let Some(s) = &session {
                            // A lost label update is repeated in the next Hello.
                            let _ = s.up_tx.try_send(labels(&app_version));
                        }
                    }
                    Ok(_) => {}
                    Err(err) => tracing::debug!(error = %err, "cannot read the app version"),
                }
                if let Some(s) = &mut session {
                    if let Some((seq, sample)) = buffer.back() {
                        let batch = s.batch(*seq, std::iter::once(sample));
                        if s.up_tx.try_send(batch).is_err() {
                            tracing::debug!("upstream full; the sample stays buffered");
                            // The coordinator never saw this sample's layout.
                            if let Some(compactor) = &mut s.compactor {
                                compactor.reset();
                            }
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(reconnect_at), if session.is_none() => {
                match open_session(&endpoint, &config, &app_version, session_id).await {
                    Ok(mut s) => {
                        tracing::info!(coordinator = %config.coordinator, "connected");
                        // Resend what was not acked, then whatever updates waited.
                        for chunk in buffer.make_contiguous().chunks(s.max_batch.max(1)) {
                            let batch = s.batch(chunk[0].0, chunk.iter().map(|(_, sample)| sample));
                            let _ = s.up_tx.send(batch).await;
                        }
                        while let Some(update) = pending_updates.pop_front() {
                            let _ = s.up_tx.send(command_update_msg(update)).await;
                        }
                        session = Some(s);
                    }
                    Err(err) => {
                        tracing::warn!(coordinator = %config.coordinator, error = %err, retry_in_ms = backoff.as_millis() as u64, "cannot connect; retrying");
                        reconnect_at = tokio::time::Instant::now() + jitter(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                }
            }
            message = next_message(&mut session) => {
                match message {
                    Ok(Some(message)) => {
                        if let Some(kind) = message.kind {
                            let keep = handle(kind, &config, &mut journal, &mut buffer, &update_tx, &mut running, &mut pending_updates, session.as_ref());
                            if !keep {
                                end_session(&mut session, &mut backoff, &mut reconnect_at);
                            }
                        }
                    }
                    Ok(None) => {
                        tracing::warn!("coordinator closed the stream; reconnecting");
                        end_session(&mut session, &mut backoff, &mut reconnect_at);
                    }
                    Err(status) => {
                        tracing::warn!(error = %status.message(), code = ?status.code(), "stream failed; reconnecting");
                        end_session(&mut session, &mut backoff, &mut reconnect_at);
                    }
                }
            }
            Some(update) = update_rx.recv() => {
                if update.outcome.is_some() {
                    running = running.saturating_sub(1);
                }
                let wire = update_to_wire(&update);
                if let Some(outcome) = update.outcome {
                    if let Err(err) = journal.finish(&update.command_id, outcome) {
                        tracing::error!(command_id = %update.command_id, error = %err, "cannot record the command result");
                    }
                }
                deliver(session.as_ref(), &mut pending_updates, wire);
            }
        }
    }

    // Stop order: collectors are done (the loop ended); let a running action
    // finish within the grace period and report it; then close the stream.
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    while running > 0 {
        match tokio::time::timeout_at(deadline, update_rx.recv()).await {
            Ok(Some(update)) => {
                if update.outcome.is_some() {
                    running -= 1;
                }
                let wire = update_to_wire(&update);
                if let Some(outcome) = update.outcome {
                    let _ = journal.finish(&update.command_id, outcome);
                }
                deliver(session.as_ref(), &mut pending_updates, wire);
            }
            _ => {
                tracing::warn!(
                    running,
                    "stopping with an action still running; it will be reported as interrupted"
                );
                break;
            }
        }
    }
    // Stop order: collectors first, then the link.
    if let Some(app_monitor) = app_monitor_opt.take() {
        app_monitor.stop().await;
    }
    if let Some(s) = session.take() {
        drop(s.up_tx);
        // Give the last messages a moment to leave.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            let mut inbound = s.inbound;
            while let Ok(Some(_)) = inbound.message().await {}
        })
        .await;
    }
    tracing::info!("agent stopped");
    Ok(())
}

fn deliver(
    session: Option<&Session>,
    pending: &mut VecDeque<pb::CommandUpdate>,
    update: pb::CommandUpdate,
) {
    match session {
        Some(s) => {
            if let Err(err) = s.up_tx.try_send(command_update_msg(update)) {
                // Keep it for the next session rather than lose it.
                if let pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::CommandUpdate(update)),
                } = err.into_inner()
                {
                    pending.push_back(update);
                }
            }
        }
        None => pending.push_back(update),
    }
}

fn end_session(
    session: &mut Option<Session>,
    backoff: &mut Duration,
    reconnect_at: &mut tokio::time::Instant,
) {
    if let Some(s) = session.take() {
        if s.started.elapsed() >= HEALTHY_SESSION {
            *backoff = BACKOFF_MIN;
        }
    }
    *reconnect_at = tokio::time::Instant::now() + jitter(*backoff);
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
}

async fn next_message(
    session: &mut Option<Session>,
) -> Result<Option<pb::CoordinatorMessage>, tonic::Status> {
    match session {
        Some(s) => s.inbound.message().await,
        None => std::future::pending().await,
    }
}

async fn open_session(
    endpoint: &Endpoint,
    config: &Config,
    app_version: &str,
    session_id: u64,
) -> anyhow::Result<Session> {
    let channel = endpoint.connect().await?;
    // Messages are gzip-compressed: with compact samples, 481 rather than 523
    // bytes per agent per second on the socket (README, Figures).
    let mut client = AgentServiceClient::new(channel)
        .send_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    let (up_tx, up_rx) = mpsc::channel(UPSTREAM_CAPACITY);
    let hello = pb::Hello {
        host_id: config.host_id.to_string(),
        deployment: config.deployment.to_string(),
        cohort: pb::Cohort::from(config.cohort) as i32,
        app_version: app_version.to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        action_names: config.actions.keys().cloned().collect(),
        interval: Some(duration_to_pb(config.interval)),
        labels: config.labels.clone().into_iter().collect(),
        session_id,
    };
    up_tx
        .send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(hello)),
        })
        .await?;
    let response =
        tokio::time::timeout(CONNECT_TIMEOUT, client.connect(ReceiverStream::new(up_rx)))
            .await
            .map_err(|_| anyhow::anyhow!("no answer to Hello within {CONNECT_TIMEOUT:?}"))??;
    let mut inbound = response.into_inner();
    let welcome = match inbound.message().await? {
        Some(pb::CoordinatorMessage {
            kind: Some(pb::coordinator_message::Kind::Welcome(welcome)),
        }) => welcome,
        other => anyhow::bail!("expected Welcome, got {other:?}"),
    };
    Ok(Session {
        up_tx,
        inbound,
        started: Instant::now(),
        max_batch: welcome.max_batch_samples as usize,
        compactor: welcome.compact_samples.then(Compactor::new),
    })
}

/// Handles one coordinator message; returns false when the session must end.
#[allow(clippy::too_many_arguments)]
fn handle(
    kind: pb::coordinator_message::Kind,
    config: &Config,
    journal: &mut Journal,
    buffer: &mut VecDeque<(u64, pb::HostSample)>,
    update_tx: &mpsc::Sender<Update>,
    running: &mut usize,
    pending: &mut VecDeque<pb::CommandUpdate>,
    session: Option<&Session>,
) -> bool {
    match kind {
        pb::coordinator_message::Kind::Welcome(_) => true,
        pb::coordinator_message::Kind::SampleAck(ack) => {
            while buffer.front().is_some_and(|(seq, _)| *seq <= ack.seq) {
                buffer.pop_front();
            }
            true
        }
        pb::coordinator_message::Kind::Goodbye(goodbye) => {
            tracing::info!(reason = %goodbye.reason, "coordinator said goodbye; reconnecting");
            false
        }
        pb::coordinator_message::Kind::Command(command) => {
            for update in on_command(command, config, journal, update_tx, running) {
                deliver(session, pending, update);
            }
            true
        }
    }
}

/// Decides what to do with a command; returns the updates to send now.
fn on_command(
    command: pb::Command,
    config: &Config,
    journal: &mut Journal,
    update_tx: &mpsc::Sender<Update>,
    running: &mut usize,
) -> Vec<pb::CommandUpdate> {
    let id = command.command_id.clone();
    if id.is_empty() {
        tracing::warn!("command without an id ignored");
        return Vec::new();
    }
    match journal.get(&id) {
        Some(Entry::Finished(outcome)) => {
            // Already done here: answer again, never run again.
            tracing::info!(command_id = %id, status = %outcome.status, "repeat of a finished command; reporting its result");
            return vec![outcome_to_wire(&id, outcome)];
        }
        Some(Entry::Running) => {
            return vec![simple_update(&id, CommandStatus::Running, "")];
        }
        None => {}
    }
    let now = SystemTime::now();
    let expired = match command
        .not_after
        .as_ref()
        .map(|t| time_from_pb("not_after", t))
    {
        Some(Ok(not_after)) => now > not_after,
        // A command without a valid deadline is treated as expired: never run what cannot be bounded.
        _ => true,
    };
    let reject = |journal: &mut Journal, reason: String| {
        tracing::warn!(command_id = %id, action = %command.action, %reason, "command rejected");
        let outcome = Outcome {
            status: CommandStatus::Rejected,
            exit_code: None,
            reason,
            output_tail: String::new(),
            duration_ms: 0,
            started_at_unix_ms: unix_ms(now),
        };
        if let Err(err) = journal.finish(&id, outcome.clone()) {
            tracing::error!(command_id = %id, error = %err, "cannot record the rejection");
        }
        vec![outcome_to_wire(&id, &outcome)]
    };
    if expired {
        return reject(journal, REASON_EXPIRED.to_owned());
    }
    let Some(action) = config.actions.get(&command.action) else {
        return reject(
            journal,
            format!(
                "unknown action `{}`: this host does not define it",
                command.action
            ),
        );
    };
    // Durably record the start before anything runs: at most once, also across restarts.
    if let Err(err) = journal.start(&id) {
        return reject(
            journal,
            format!("cannot record the command before running it: {err}"),
        );
    }
    tracing::info!(command_id = %id, action = %command.action, reason = %command.reason, "running action");
    // The action's span is a child of the decision's trace (W3C context in the command).
    let span = tracing::info_span!(
        "agent.action",
        host.id = %config.host_id,
        action = %command.action,
        command_id = %id,
        exit_code = tracing::field::Empty,
        status = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    rollguard_proto::otel::set_parent(&span, &command.trace_context);
    *running += 1;
    let action = action.clone();
    let state_dir = config.state_dir.clone();
    let update_tx = update_tx.clone();
    let started_at_unix_ms = unix_ms(now);
    let task_id = id.clone();
    tokio::spawn(async move {
        let _ = update_tx
            .send(Update {
                command_id: task_id.clone(),
                outcome: None,
                status: CommandStatus::Running,
            })
            .await;
        let result = action::run(&action, &state_dir)
            .instrument(span.clone())
            .await;
        span.record("status", result.status.as_str());
        span.record(
            "duration_ms",
            u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
        );
        if let Some(code) = result.exit_code {
            span.record("exit_code", code);
        }
        drop(span);
        tracing::info!(command_id = %task_id, status = %result.status, exit_code = ?result.exit_code, "action finished");
        let status = result.status;
        let _ = update_tx
            .send(Update {
                command_id: task_id,
                outcome: Some(Outcome {
                    status,
                    exit_code: result.exit_code,
                    reason: result.reason,
                    output_tail: result.output_tail,
                    duration_ms: u64::try_from(result.duration.as_millis()).unwrap_or(u64::MAX),
                    started_at_unix_ms,
                }),
                status,
            })
            .await;
    });
    vec![simple_update(&id, CommandStatus::Accepted, "")]
}

fn simple_update(id: &str, status: CommandStatus, reason: &str) -> pb::CommandUpdate {
    pb::CommandUpdate {
        command_id: id.to_owned(),
        status: pb::CommandStatus::from(status) as i32,
        reason: reason.to_owned(),
        ..Default::default()
    }
}

fn outcome_to_wire(id: &str, outcome: &Outcome) -> pb::CommandUpdate {
    pb::CommandUpdate {
        command_id: id.to_owned(),
        status: pb::CommandStatus::from(outcome.status) as i32,
        exit_code: outcome.exit_code,
        reason: outcome.reason.clone(),
        output_tail: outcome.output_tail.clone(),
        started_at: Some(time_to_pb(
            SystemTime::UNIX_EPOCH + Duration::from_millis(outcome.started_at_unix_ms),
        )),
        duration: Some(duration_to_pb(Duration::from_millis(outcome.duration_ms))),
    }
}

fn update_to_wire(update: &Update) -> pb::CommandUpdate {
    match &update.outcome {
        Some(outcome) => outcome_to_wire(&update.command_id, outcome),
        None => simple_update(&update.command_id, update.status, ""),
    }
}

fn command_update_msg(update: pb::CommandUpdate) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::CommandUpdate(update)),
    }
}

fn labels(app_version: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        kind: Some(pb::agent_message::Kind::Labels(pb::LabelsUpdate {
            app_version: app_version.to_owned(),
        })),
    }
}

fn push_sample(buffer: &mut VecDeque<(u64, pb::HostSample)>, seq: u64, sample: &HostSample) {
    if buffer.len() == SAMPLE_BUFFER {
        buffer.pop_front();
    }
    buffer.push_back((seq, pb::HostSample::from(sample)));
}

/// Adds up to 50 % random jitter so that a fleet does not reconnect in lockstep.
fn jitter(base: Duration) -> Duration {
    // fastrand's thread-local generator gets a random seed (std's randomly
    // keyed hasher) per thread, so agents started together draw different delays.
    let fraction = f64::from(fastrand::u32(0..1000)) / 2000.0;
    base + base.mul_f64(fraction)
}

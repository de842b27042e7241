//! One simulated agent: its own gRPC stream (`AgentService.Connect`), a
//! Hello, then one `SampleBatch` of one sample per interval, numbered by
//! sequence. It records when each batch went out and when the `SampleAck`
//! covering it came back (acks are cumulative), and answers every `Command`
//! with `accepted` then `succeeded` at once, as an agent whose action takes
//! no time. It does not resend unacked samples after a reconnect, nor
//! reconnect at all: a stream that ends is counted, not repaired.
//!
//! Time is split by the step (see `step.rs`): samples sent inside the
//! measurement window count for ingest; acks are awaited until the drain
//! deadline, and a batch still unacked then counts with lag = deadline - send.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use prost::Message;
use rollguard_proto::compact::Compactor;
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::agent_service_client::AgentServiceClient;
use rollguard_proto::{duration_to_pb, time_to_pb};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::sample::SampleGen;

/// gRPC framing per message: a compressed flag and a 4-byte length.
pub(crate) const GRPC_FRAME_BYTES: u64 = 5;
/// Upstream queue; a sample that finds it full is counted and skipped.
const UPSTREAM_CAPACITY: usize = 64;
/// Time for the Hello/Welcome exchange once connected.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Where one simulated agent connects to.
#[derive(Debug, Clone)]
pub(crate) enum Link {
    /// Open a connection of its own; with `tls`, presenting this agent's
    /// certificate (the coordinator admits only the host id it names).
    Own {
        endpoint: Arc<Endpoint>,
        tls: Option<ClientTlsConfig>,
    },
    /// Open a stream on this shared connection (never with TLS: see `config.rs`).
    Shared(Channel),
}

/// Who one simulated agent is.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) idx: usize,
    pub(crate) host_id: String,
    pub(crate) deployment: String,
    pub(crate) beta: bool,
    pub(crate) action: String,
    pub(crate) interval: Duration,
}

/// Where each of N simulated agents connects: its own connection from
/// `endpoint` (with its certificate under TLS), or one of `--connections`
/// shared ones. Used by a step and by `--hold`.
#[derive(Debug)]
pub(crate) struct Slots<'a> {
    config: &'a crate::config::Config,
    own: Arc<Endpoint>,
    certs: Option<&'a crate::certs::Certs>,
    shared: Vec<Channel>,
}

impl<'a> Slots<'a> {
    /// Opens the shared connections, if `--connections` asks for them.
    pub(crate) async fn open(
        config: &'a crate::config::Config,
        n_agents: usize,
        endpoint: &Endpoint,
        certs: Option<&'a crate::certs::Certs>,
    ) -> anyhow::Result<Slots<'a>> {
        let mut shared = Vec::new();
        for _ in 0..config.connections.map_or(0, |k| k.get().min(n_agents)) {
            shared.push(anyhow::Context::context(
                endpoint.connect().await,
                "opening a shared connection",
            )?);
        }
        Ok(Slots {
            config,
            own: Arc::new(endpoint.clone()),
            certs,
            shared,
        })
    }

    /// Who simulated agent `idx` is and where it connects.
    pub(crate) fn agent(&self, idx: usize) -> (Identity, Link) {
        let config = self.config;
        let identity = Identity {
            idx,
            host_id: config.host_id(idx),
            deployment: config.deployment.clone(),
            beta: config.is_beta(idx),
            action: config.action.clone(),
            interval: config.interval,
        };
        let link = if self.shared.is_empty() {
            Link::Own {
                endpoint: Arc::clone(&self.own),
                tls: self.certs.map(|certs| {
                    certs
                        .agent(idx)
                        .expect("the run made certificates for every agent")
                }),
            }
        } else {
            Link::Shared(self.shared[idx % self.shared.len()].clone())
        };
        (identity, link)
    }
}

/// The step's timeline, set once every agent is connected.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// The first ticks are spread evenly over `[first_tick, first_tick + interval)`.
    pub(crate) first_tick: Instant,
    pub(crate) window_start: Instant,
    pub(crate) window_end: Instant,
    /// Acks of window samples arriving later count as unacked.
    pub(crate) drain_end: Instant,
    /// The offset of this agent's ticks is `interval * idx / n_agents`.
    pub(crate) n_agents: usize,
}

impl Clock {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.window_start && at < self.window_end
    }
}

/// Counters the step watches while agents run.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Agents whose connect attempt ended, either way.
    pub(crate) connect_done: AtomicUsize,
    pub(crate) connected: AtomicUsize,
    /// Connected agents of the beta cohort: the ones a rollback reaches.
    pub(crate) beta_connected: AtomicUsize,
    /// Commands answered with `succeeded` (only beta agents get any).
    pub(crate) commands_answered: AtomicUsize,
}

/// What one simulated agent saw.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) connected: bool,
    /// Why it could not connect, or why its stream ended early.
    pub(crate) error: Option<String>,
    /// Lag of every batch sent in the window (unacked ones at the drain deadline).
    pub(crate) lags: Vec<Duration>,
    pub(crate) sent_in_window: u64,
    /// Samples whose ack arrived within the window.
    pub(crate) acked_in_window: u64,
    /// Batches sent in the window without an ack by the drain deadline.
    pub(crate) unacked: u64,
    /// Samples skipped because the upstream queue was full.
    pub(crate) queue_full: u64,
    /// Encoded upstream bytes in the window, plus the gRPC framing.
    pub(crate) bytes_up: u64,
    /// Encoded downstream bytes in the window, plus the gRPC framing.
    pub(crate) bytes_down: u64,
    /// Every command received: its id and when.
    pub(crate) commands: Vec<(String, Instant)>,
    /// The stream ended before the step did.
    pub(crate) dropped: bool,
}

/// Runs one simulated agent until `stop`.
pub(crate) async fn run(
    identity: Identity,
    link: Link,
    connect_permits: Arc<Semaphore>,
    progress: Arc<Progress>,
    mut clock_rx: watch::Receiver<Option<Clock>>,
    stop: CancellationToken,
) -> Outcome {
    let mut outcome = Outcome::default();
    let session = {
        // A closed semaphore never happens: the step owns it for the whole run.
        let _permit = connect_permits.acquire().await;
        tokio::select! {
            () = stop.cancelled() => Err(anyhow::anyhow!("stopped before connecting")),
            session = connect(&identity, link) => session,
        }
    };
    progress.connect_done.fetch_add(1, Ordering::Relaxed);
    let (up_tx, mut inbound, mut compactor) = match session {
        Ok(session) => session,
        Err(err) => {
            outcome.error = Some(format!("{err:#}"));
            return outcome;
        }
    };
    outcome.connected = true;
    progress.connected.fetch_add(1, Ordering::Relaxed);
    if identity.beta {
        progress.beta_connected.fetch_add(1, Ordering::Relaxed);
    }

    // Wait for the step to set the clock (every agent connected).
    let clock = tokio::select! {
        () = stop.cancelled() => return outcome,
        clock = clock_rx.wait_for(Option::is_some) => match clock {
            Ok(clock) => clock.expect("wait_for returned a clock that is set"),
            Err(_) => return outcome,
        },
    };
    let offset = identity
        .interval
        .mul_f64(identity.idx as f64 / clock.n_agents.max(1) as f64);
    let mut ticker =
        tokio::time::interval_at((clock.first_tick + offset).into(), identity.interval);
    // A late tick is sent late rather than in a burst: a real agent samples on its own clock.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut samples = SampleGen::new(identity.idx, identity.interval);
    let mut seq: u64 = 0;
    let mut inflight: VecDeque<(u64, Instant)> = VecDeque::new();

    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {
                let now = Instant::now();
                let sample = samples.next(SystemTime::now());
                let batch = pb::AgentMessage {
                    kind: Some(pb::agent_message::Kind::Samples(pb::SampleBatch {
                        first_seq: seq + 1,
                        samples: vec![match &mut compactor {
                            Some(compactor) => compactor.encode(&sample),
                            None => pb::HostSample::from(&sample),
                        }],
                    })),
                };
                let size = batch.encoded_len() as u64 + GRPC_FRAME_BYTES;
                match up_tx.try_send(batch) {
                    Ok(()) => {
                        seq += 1;
                        inflight.push_back((seq, now));
                        if clock.in_window(now) {
                            outcome.sent_in_window += 1;
                            outcome.bytes_up += size;
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        outcome.queue_full += 1;
                        // As the agent: the next sample carries the layout again.
                        if let Some(compactor) = &mut compactor {
                            compactor.reset();
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        outcome.dropped = true;
                        outcome.error.get_or_insert_with(|| "upstream closed".to_owned());
                        break;
                    }
                }
            }
            message = inbound.message() => {
                let now = Instant::now();
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => {
                        outcome.dropped = true;
                        outcome.error.get_or_insert_with(|| "the coordinator ended the stream".to_owned());
                        break;
                    }
                    Err(status) => {
                        outcome.dropped = true;
                        outcome.error.get_or_insert_with(|| format!("stream error: {}", status.message()));
                        break;
                    }
                };
                if clock.in_window(now) {
                    outcome.bytes_down += message.encoded_len() as u64 + GRPC_FRAME_BYTES;
                }
                match message.kind {
                    Some(pb::coordinator_message::Kind::SampleAck(ack)) => {
                        while let Some(&(sent_seq, sent_at)) = inflight.front() {
                            if sent_seq > ack.seq {
                                break;
                            }
                            inflight.pop_front();
                            if clock.in_window(now) {
                                outcome.acked_in_window += 1;
                            }
                            if clock.in_window(sent_at) {
                                if now < clock.drain_end {
                                    outcome.lags.push(now - sent_at);
                                } else {
                                    outcome.unacked += 1;
                                    outcome.lags.push(clock.drain_end - sent_at);
                                }
                            }
                        }
                    }
                    Some(pb::coordinator_message::Kind::Command(command)) => {
                        outcome.commands.push((command.command_id.clone(), now));
                        if answer(&identity, &command, &up_tx).await.is_err() {
                            outcome.dropped = true;
                            break;
                        }
                        if command.action == identity.action {
                            progress.commands_answered.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Some(pb::coordinator_message::Kind::Goodbye(goodbye)) => {
                        outcome.dropped = true;
                        outcome.error.get_or_insert(format!("goodbye: {}", goodbye.reason));
                        break;
                    }
                    Some(
                        pb::coordinator_message::Kind::Welcome(_)
                        | pb::coordinator_message::Kind::LocalRollbackAck(_),
                    )
                    | None => {}
                }
            }
        }
    }
    // Whatever is still in flight was never acked in time.
    for (_, sent_at) in inflight {
        if clock.in_window(sent_at) {
            outcome.unacked += 1;
            outcome
                .lags
                .push(clock.drain_end.saturating_duration_since(sent_at));
        }
    }
    outcome
}

/// Whether samples are gzip-compressed (`--gzip`), set once at start.
pub(crate) static GZIP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Whether compact samples are never sent (`--whole-samples`), set once at start.
pub(crate) static WHOLE_SAMPLES: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Opens the stream, sends the Hello and waits for the Welcome; the
/// compactor is there when the coordinator takes compact samples.
pub(crate) async fn connect(
    identity: &Identity,
    link: Link,
) -> anyhow::Result<(
    mpsc::Sender<pb::AgentMessage>,
    tonic::Streaming<pb::CoordinatorMessage>,
    Option<Compactor>,
)> {
    let channel = match link {
        Link::Own {
            endpoint,
            tls: None,
        } => endpoint.connect().await?,
        // The TLS settings are applied here, in the agent's own connect, so
        // that building 10,000 of them is spread over the connect phase as
        // each real agent does it at its start.
        Link::Own {
            endpoint,
            tls: Some(tls),
        } => {
            Endpoint::clone(&endpoint)
                .tls_config(tls)?
                .connect()
                .await?
        }
        Link::Shared(channel) => channel,
    };
    let mut client =
        AgentServiceClient::new(channel).accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    if GZIP.load(std::sync::atomic::Ordering::Relaxed) {
        client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    let (up_tx, up_rx) = mpsc::channel(UPSTREAM_CAPACITY);
    let cohort = if identity.beta {
        pb::Cohort::Beta
    } else {
        pb::Cohort::Baseline
    };
    let hello = pb::Hello {
        host_id: identity.host_id.clone(),
        deployment: identity.deployment.clone(),
        cohort: cohort as i32,
        app_version: if identity.beta {
            "2.0.0-beta.3"
        } else {
            "1.9.4"
        }
        .to_owned(),
        agent_version: format!("loadgen-{}", env!("CARGO_PKG_VERSION")),
        // One session per simulated agent process (sequence numbers start at 0).
        session_id: identity.idx as u64 + 1,
        action_names: vec![identity.action.clone()],
        interval: Some(duration_to_pb(identity.interval)),
        labels: [
            ("region".to_owned(), format!("r{}", identity.idx % 3)),
            ("rack".to_owned(), format!("rack-{}", identity.idx % 40)),
        ]
        .into_iter()
        .collect(),
    };
    up_tx
        .send(pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Hello(hello)),
        })
        .await?;
    let welcome = async {
        let mut inbound = client
            .connect(ReceiverStream::new(up_rx))
            .await?
            .into_inner();
        match inbound.message().await? {
            Some(pb::CoordinatorMessage {
                kind: Some(pb::coordinator_message::Kind::Welcome(welcome)),
            }) => Ok((inbound, welcome.compact_samples)),
            other => anyhow::bail!("expected Welcome, got {other:?}"),
        }
    };
    let (inbound, compact) = tokio::time::timeout(HELLO_TIMEOUT, welcome)
        .await
        .map_err(|_| anyhow::anyhow!("no Welcome within {HELLO_TIMEOUT:?}"))??;
    let compact = compact && !WHOLE_SAMPLES.load(std::sync::atomic::Ordering::Relaxed);
    Ok((up_tx, inbound, compact.then(Compactor::new)))
}

/// Answers a command as an agent whose action succeeds at once: `accepted`,
/// then `succeeded` (exit 0); a command naming another action is rejected,
/// as the real agent does. Errs only when the stream is gone.
pub(crate) async fn answer(
    identity: &Identity,
    command: &pb::Command,
    up_tx: &mpsc::Sender<pb::AgentMessage>,
) -> Result<(), mpsc::error::SendError<pb::AgentMessage>> {
    let update =
        |status: pb::CommandStatus, exit_code: Option<i32>, reason: &str| pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::CommandUpdate(pb::CommandUpdate {
                command_id: command.command_id.clone(),
                status: status as i32,
                exit_code,
                reason: reason.to_owned(),
                output_tail: String::new(),
                started_at: Some(time_to_pb(SystemTime::now())),
                duration: Some(duration_to_pb(Duration::ZERO)),
            })),
        };
    if command.action != identity.action {
        let reason = format!(
            "unknown action `{}`: this host does not define it",
            command.action
        );
        return up_tx
            .send(update(pb::CommandStatus::Rejected, None, &reason))
            .await;
    }
    // Commands are never dropped: wait for room, as the real agent does.
    up_tx
        .send(update(pb::CommandStatus::Accepted, None, ""))
        .await?;
    up_tx
        .send(update(pb::CommandStatus::Succeeded, Some(0), ""))
        .await
}

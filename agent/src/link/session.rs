//! [`Session`]: one open stream to the coordinator, and the [`Connector`]
//! that opens it.
//!
//! [`GrpcConnector`] opens the real `Connect` stream; tests give the link a
//! connector over channels instead, so everything past the transport runs
//! the same code either way. A session always begins with Hello (sent) and
//! Welcome (received); what the Welcome says (batch size, compact samples)
//! holds for the session's life.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use rollguard_common::HostSample;
use rollguard_proto::compact::Compactor;
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::agent_service_client::AgentServiceClient;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{ClientTlsConfig, Endpoint};

/// Upstream queue of one session.
pub(crate) const UPSTREAM_CAPACITY: usize = 64;
/// Deadline of a TCP connect and of the answer to Hello.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An HTTP/2 ping goes out after this long without a frame from the
/// coordinator. A healthy stream brings an ack every sampling interval, so
/// pings flow only on a quiet link or a dead one.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// An unanswered ping ends the session after this long. A link that drops
/// every packet (a partition, a silent NAT or firewall timeout) raises no
/// error: only the ping notices it, and then the agent reconnects and
/// resends its unacked samples rather than queue them in a dead TCP
/// connection (issue 11; the keepalive was 30 s + 10 s).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a closing session waits for its last messages to leave.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The coordinator's side of a session, as the link reads it.
pub(crate) type Inbound =
    Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, tonic::Status>> + Send>>;

/// Opens sessions with the coordinator.
pub(crate) trait Connector {
    /// Sends `hello` and returns the session once the coordinator welcomed it.
    fn open(&mut self, hello: pb::Hello) -> impl Future<Output = anyhow::Result<Session>>;
}

/// One open stream.
pub(crate) struct Session {
    /// Messages to the coordinator.
    pub(crate) up_tx: mpsc::Sender<pb::AgentMessage>,
    inbound: Inbound,
    started: Instant,
    /// Largest sample batch the coordinator takes.
    pub(crate) max_batch: usize,
    /// Present when the coordinator takes compact samples.
    compactor: Option<Compactor>,
    /// The coordinator records local rollback reports.
    pub(crate) local_rollbacks: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("started", &self.started)
            .field("max_batch", &self.max_batch)
            .field("compact", &self.compactor.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Reads the Welcome that must open `inbound` and starts the session.
    pub(crate) async fn welcomed(
        up_tx: mpsc::Sender<pb::AgentMessage>,
        mut inbound: Inbound,
    ) -> anyhow::Result<Session> {
        // A coordinator that accepts the stream but never welcomes must not
        // hold the agent: it reconnects instead.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, inbound.next())
            .await
            .map_err(|_| anyhow::anyhow!("no Welcome within {CONNECT_TIMEOUT:?}"))?;
        let welcome = match first.transpose()? {
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
            local_rollbacks: welcome.local_rollbacks,
        })
    }

    /// Returns how long the session has been up.
    pub(crate) fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// Returns the next message; `Ok(None)` when the coordinator closed the stream.
    pub(crate) async fn next_message(
        &mut self,
    ) -> Result<Option<pb::CoordinatorMessage>, tonic::Status> {
        self.inbound.next().await.transpose()
    }

    /// A batch of `samples` (whole, from the buffer) in this stream's encoding.
    pub(crate) fn batch<'a>(
        &mut self,
        first_seq: u64,
        samples: impl Iterator<Item = &'a HostSample>,
    ) -> pb::AgentMessage {
        let samples = match &mut self.compactor {
            Some(compactor) => samples.map(|s| compactor.encode(s)).collect(),
            None => samples.map(pb::HostSample::from).collect(),
        };
        pb::AgentMessage {
            kind: Some(pb::agent_message::Kind::Samples(pb::SampleBatch {
                first_seq,
                samples,
            })),
        }
    }

    /// Forgets the compaction state after a batch was not sent: the
    /// coordinator never saw that sample's layout.
    pub(crate) fn reset_compaction(&mut self) {
        if let Some(compactor) = &mut self.compactor {
            compactor.reset();
        }
    }

    /// Closes the upstream and gives the last messages a moment to leave.
    pub(crate) async fn close(self) {
        let Session {
            up_tx, mut inbound, ..
        } = self;
        drop(up_tx);
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(_)) = inbound.next().await {}
        })
        .await;
    }
}

/// Opens the real gRPC `Connect` stream.
#[derive(Debug)]
pub(crate) struct GrpcConnector {
    endpoint: Endpoint,
}

impl GrpcConnector {
    /// Checks the coordinator URL; nothing connects until [`Connector::open`].
    /// With `tls`, the coordinator's certificate is verified against the
    /// CA and its SAN against the URL's host, and this agent presents its own.
    pub(crate) fn new(
        coordinator: &str,
        tls: Option<ClientTlsConfig>,
    ) -> anyhow::Result<GrpcConnector> {
        let mut endpoint = Endpoint::from_shared(coordinator.to_owned())?;
        if let Some(tls) = tls {
            endpoint = endpoint.tls_config(tls)?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        Ok(GrpcConnector { endpoint })
    }
}

impl Connector for GrpcConnector {
    async fn open(&mut self, hello: pb::Hello) -> anyhow::Result<Session> {
        let channel = self.endpoint.connect().await?;
        // Messages are gzip-compressed: with compact samples, 481 rather than 523
        // bytes per agent per second on the socket (README, Figures).
        let mut client = AgentServiceClient::new(channel)
            .send_compressed(tonic::codec::CompressionEncoding::Gzip)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let (up_tx, up_rx) = mpsc::channel(UPSTREAM_CAPACITY);
        up_tx
            .send(pb::AgentMessage {
                kind: Some(pb::agent_message::Kind::Hello(hello)),
            })
            .await?;
        let response =
            tokio::time::timeout(CONNECT_TIMEOUT, client.connect(ReceiverStream::new(up_rx)))
                .await
                .map_err(|_| anyhow::anyhow!("no answer to Hello within {CONNECT_TIMEOUT:?}"))??;
        Session::welcomed(up_tx, Box::pin(response.into_inner())).await
    }
}

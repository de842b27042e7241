//! Starting and stopping the coordinator: store, fleet, gRPC services, and the
//! ordered shutdown. This is the one place that wires the parts: each is
//! given only the handles it uses.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use rollguard_common::config::ConfigError;

use crate::auth::{AuthLayer, Authority};
use crate::broadcast::Issuer;
use crate::config::{AuthPolicy, Config};
use crate::counters::Counters;
use crate::dashboard::Dashboard;
use crate::decisions::Decisions;
use crate::error::{chain, Error, Result};
use crate::fleet::Fleet;
use crate::judge::Judge;
use crate::listener::{limited_incoming, server_tls};
use crate::metrics::{Https, Scrape, Site};
use crate::notify::Notifier;
use crate::outbound::AgentTx;
use crate::rollout::Rollouts;
use crate::service::agent::{AgentLink, AgentServer};
use crate::service::control::Control;
use crate::store::{Snapshot, Store, Write};

/// An HTTP/2 ping goes out on a connection after this long without a frame
/// from its peer. Agents send a sample every interval, so their connections
/// see pings only when quiet or dead.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// An unanswered ping closes the connection after this long: a partitioned
/// agent's half-open stream ends (it is shown disconnected, its command
/// waits for its reconnect) within seconds instead of 40 (issue 11).
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Name of the file in the data dir that holds the bound gRPC address, so
/// that scripts (and the demo) can find a coordinator started on port 0.
pub const ADDR_FILE: &str = "coordinator.addr";

/// Name of the file in the data dir that holds the bound HTTP (metrics) address.
pub const HTTP_ADDR_FILE: &str = "http.addr";

/// The coordinator's parts, wired.
struct Parts {
    config: Arc<Config>,
    fleet: Arc<Fleet<AgentTx>>,
    store: Store,
    decisions: Arc<Decisions>,
    rollouts: Arc<Rollouts>,
    notifier: Notifier,
    counters: Arc<Counters>,
    /// Cancelled first at shutdown: every agent and watch stream ends on it.
    streams_shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Parts {
    fn new(config: Config, store: Store, mut snapshot: Snapshot, counters: Arc<Counters>) -> Self {
        let config = Arc::new(config);
        let streams_shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let notifier = Notifier::start(&config.webhooks, &tracker, streams_shutdown.clone());
        let judge_states = std::mem::take(&mut snapshot.judge_states);
        let latest_rounds = std::mem::take(&mut snapshot.latest_rounds);
        let rollouts = std::mem::take(&mut snapshot.rollouts);
        let fleet = Arc::new(Fleet::from_snapshot(snapshot));
        let issuer = Issuer {
            config: Arc::clone(&config),
            fleet: Arc::clone(&fleet),
            store: store.clone(),
            notifier: notifier.clone(),
            tracker: tracker.clone(),
        };
        let decisions = Arc::new(Decisions::restore(judge_states, latest_rounds, issuer));
        let rollouts = Arc::new(Rollouts::restore(
            rollouts,
            Arc::clone(&config),
            Arc::clone(&fleet),
            store.clone(),
            Arc::clone(&decisions),
            notifier.clone(),
        ));
        Parts {
            config,
            fleet,
            store,
            decisions,
            rollouts,
            notifier,
            counters,
            streams_shutdown,
            tracker,
        }
    }

    fn agent_link(&self) -> AgentLink {
        AgentLink {
            config: Arc::clone(&self.config),
            fleet: Arc::clone(&self.fleet),
            store: self.store.clone(),
            decisions: Arc::clone(&self.decisions),
            notifier: self.notifier.clone(),
            counters: Arc::clone(&self.counters),
            streams_shutdown: self.streams_shutdown.clone(),
            tracker: self.tracker.clone(),
        }
    }

    fn control(&self) -> Control {
        Control {
            config: Arc::clone(&self.config),
            fleet: Arc::clone(&self.fleet),
            store: self.store.clone(),
            decisions: Arc::clone(&self.decisions),
            rollouts: Arc::clone(&self.rollouts),
            streams_shutdown: self.streams_shutdown.clone(),
            tracker: self.tracker.clone(),
        }
    }

    fn judge(&self) -> Judge {
        Judge {
            config: Arc::clone(&self.config),
            fleet: Arc::clone(&self.fleet),
            decisions: Arc::clone(&self.decisions),
            counters: Arc::clone(&self.counters),
            notifier: self.notifier.clone(),
        }
    }

    fn site(&self, tls: Option<Https>) -> Site {
        Site {
            tls,
            scrape: self.scrape(),
            dashboard: Some(Dashboard {
                config: Arc::clone(&self.config),
                fleet: Arc::clone(&self.fleet),
                decisions: Arc::clone(&self.decisions),
                rollouts: Arc::clone(&self.rollouts),
                store: self.store.clone(),
                tracker: self.tracker.clone(),
            }),
        }
    }

    fn scrape(&self) -> Scrape {
        Scrape {
            config: Arc::clone(&self.config),
            fleet: Arc::clone(&self.fleet),
            decisions: Arc::clone(&self.decisions),
            counters: Arc::clone(&self.counters),
        }
    }

    fn sweep(&self) -> Sweep {
        Sweep {
            config: Arc::clone(&self.config),
            fleet: Arc::clone(&self.fleet),
            store: self.store.clone(),
        }
    }
}

/// Reads `[auth]` again (on SIGHUP): the config's sources as at start.
pub type ReloadAuth = Box<dyn Fn() -> std::result::Result<AuthPolicy, ConfigError> + Send + Sync>;

/// Serves on `listener` until `shutdown` completes, then stops in order:
/// health NOT_SERVING, Goodbye to and end of every agent and watch stream,
/// the server, the remaining tasks, and the store. On SIGHUP `reload_auth`
/// puts a newly read `[auth]` in force.
pub async fn run(
    config: Config,
    listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    reload_auth: ReloadAuth,
) -> Result<()> {
    let http_addr = http_listener
        .local_addr()
        .map_err(|err| Error::server("reading the metrics listener's address", err))?;
    let local_addr = listener
        .local_addr()
        .map_err(|err| Error::server("reading the listener's address", err))?;
    let counters = Arc::new(Counters::default());
    let (store, writer, snapshot) = open_store(&config, Arc::clone(&counters)).await?;
    let grace = config.shutdown_grace;
    let parts = Parts::new(config, store, snapshot, counters);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, true).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rollguard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| Error::server("building the reflection service", err))?;

    let server_shutdown = CancellationToken::new();
    let authority = Arc::new(Authority::new(
        parts.config.tls.is_some(),
        parts.config.auth.clone(),
    ));
    let builder = server_builder(&parts.config, local_addr)?;
    let incoming = limited_incoming(
        listener,
        parts.config.max_connections,
        server_shutdown.clone(),
    );
    let server = builder
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(parts.config.max_streams_per_connection))
        .layer(AuthLayer {
            authority: Arc::clone(&authority),
        })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AgentServer::new(parts.agent_link()))
        .add_service(pb::control_service_server::ControlServiceServer::new(
            parts.control(),
        ))
        .serve_with_incoming_shutdown(incoming, server_shutdown.clone().cancelled_owned());
    let mut server = tokio::spawn(server);
    let tracker = &parts.tracker;
    parts.decisions.resume_retries();
    tracker.spawn(parts.judge().run(parts.streams_shutdown.clone()));
    tracker.spawn(Arc::clone(&parts.rollouts).run(parts.streams_shutdown.clone()));
    tracker.spawn(parts.sweep().run(parts.streams_shutdown.clone()));
    let site = parts.site(http_tls(&parts.config, http_addr, &authority)?);
    tracker.spawn(crate::metrics::serve(
        http_listener,
        site,
        tracker.clone(),
        server_shutdown.clone(),
    ));
    tracker.spawn(reload_on_hangup(
        authority,
        reload_auth,
        parts.streams_shutdown.clone(),
    ));
    write_addr_file(&parts.config.data_dir, ADDR_FILE, local_addr).await;
    write_addr_file(&parts.config.data_dir, HTTP_ADDR_FILE, http_addr).await;
    parts
        .counters
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(%local_addr, %http_addr, "coordinator listening");

    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            return Err(match result {
                Ok(Ok(())) => Error::Server {
                    context: "the server stopped by itself".to_owned(),
                    source: None,
                },
                Ok(Err(err)) => Error::server("serving", err),
                Err(err) => Error::server("joining the server task", err),
            });
        }
    }
    parts
        .counters
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("shutting down: health NOT_SERVING");
    set_health(&health_reporter, false).await;
    tracing::info!("shutting down: ending agent and watch streams");
    parts.streams_shutdown.cancel();
    server_shutdown.cancel();
    // One deadline for every stage, so the whole stop stays within `grace`.
    let deadline = tokio::time::Instant::now() + grace;
    match tokio::time::timeout_at(deadline, &mut server).await {
        Ok(_) => tracing::info!("shutting down: server stopped"),
        Err(_) => {
            tracing::warn!("shutting down: server did not stop within the grace period");
            server.abort();
        }
    }
    stop(parts, writer, deadline).await;
    Ok(())
}

/// The HTTP listener's TLS: off loopback with `[tls]`, HTTPS whose
/// clients need a viewer binding (`metrics::https`); off loopback without
/// it (`--insecure-http`), a warning at every start; on loopback, plain.
fn http_tls(
    config: &Config,
    http_addr: std::net::SocketAddr,
    authority: &Arc<Authority>,
) -> Result<Option<Https>> {
    if http_addr.ip().is_loopback() {
        return Ok(None);
    }
    match &config.tls {
        Some(files) => Ok(Some(Https {
            acceptor: crate::metrics::tls_acceptor(files)?,
            authority: Arc::clone(authority),
        })),
        None => {
            tracing::warn!(%http_addr, "HTTP listener off loopback WITHOUT TLS (--insecure-http): anyone who can reach this port reads the fleet's metrics and dashboard");
            Ok(None)
        }
    }
}

/// The gRPC server with `[tls]` if configured; without it off loopback
/// (`--insecure-listen`), a warning at every start.
fn server_builder(
    config: &Config,
    local_addr: std::net::SocketAddr,
) -> Result<tonic::transport::Server> {
    let builder = tonic::transport::Server::builder();
    match &config.tls {
        Some(files) => builder
            .tls_config(server_tls(files)?)
            .map_err(|err| Error::server("setting up TLS", err)),
        None => {
            if !local_addr.ip().is_loopback() {
                tracing::warn!(%local_addr, "listening off loopback WITHOUT TLS (--insecure-listen): anyone who can reach this port can roll back any deployment");
            }
            Ok(builder)
        }
    }
}

/// On every SIGHUP, reads `[auth]` again and puts it in force; a bad one
/// is logged and the one in force stays.
async fn reload_on_hangup(
    authority: Arc<Authority>,
    reload_auth: ReloadAuth,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP: [auth] is read only at start");
            return;
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        match reload_auth() {
            Ok(policy) => {
                let (n_roles, n_revoked) = (policy.roles.len(), policy.revoked.len());
                let ended = authority.reload(policy);
                tracing::info!(n_roles, n_revoked, ended, "SIGHUP: [auth] reloaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "SIGHUP: the config is bad; [auth] in force is kept");
            }
        }
    }
}

/// Opens the store and reads what it holds, off the runtime's threads.
async fn open_store(
    config: &Config,
    counters: Arc<Counters>,
) -> Result<(Store, std::thread::JoinHandle<()>, Snapshot)> {
    let data_dir = config.data_dir.clone();
    let (store, writer) = tokio::task::spawn_blocking(move || Store::open(&data_dir, counters))
        .await
        .map_err(|err| Error::server("opening the store", err))??;
    let load_store = store.clone();
    let snapshot = tokio::task::spawn_blocking(move || load_store.load())
        .await
        .map_err(|err| Error::server("loading the store", err))??;
    tracing::info!(
        path = %store.path().display(),
        n_agents = snapshot.agents.len(),
        n_commands = snapshot.commands.len(),
        "store opened"
    );
    Ok((store, writer, snapshot))
}

async fn set_health(reporter: &tonic_health::server::HealthReporter, serving: bool) {
    type Agents = AgentServer;
    type Controls = pb::control_service_server::ControlServiceServer<Control>;
    if serving {
        reporter.set_serving::<Agents>().await;
        reporter.set_serving::<Controls>().await;
    } else {
        reporter.set_not_serving::<Agents>().await;
        reporter.set_not_serving::<Controls>().await;
    }
}

/// The last stages of the shutdown: every task, then the store's writer.
async fn stop(parts: Parts, writer: std::thread::JoinHandle<()>, deadline: tokio::time::Instant) {
    let tracker = parts.tracker.clone();
    tracker.close();
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutting down: stream tasks did not finish within the grace period");
    }
    drop(parts);
    // The writer drains what is queued and exits once every Store handle is gone.
    let joined = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout_at(deadline, joined).await.is_err() {
        tracing::warn!("shutting down: store writer did not finish within the grace period");
    }
    tracing::info!("coordinator stopped");
}

/// The sweep that forgets what is past its retention.
struct Sweep {
    config: Arc<Config>,
    fleet: Arc<Fleet<AgentTx>>,
    store: Store,
}

/// Every ten minutes, stores that connected hosts were seen, and forgets
/// hosts disconnected for longer than `host_retention` and commands older
/// than `command_retention`, in memory and in the store. The first sweep comes ten minutes after start: hosts that were
/// connected when the last run stopped have had time to come back.
impl Sweep {
    async fn run(self, shutdown: CancellationToken) {
        const EVERY: Duration = Duration::from_secs(600);
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            let seen = self.fleet.touch_connected(SystemTime::now());
            for chunk in seen.chunks(1000) {
                let writes = chunk.iter().cloned().map(Write::Agent).collect();
                if let Err(err) = self.store.commit(writes).await {
                    tracing::warn!(error = %chain(&err), "cannot store when hosts were last seen");
                    break;
                }
            }
            let retention = self.config.host_retention;
            let forgotten = self
                .fleet
                .forget_gone(SystemTime::now(), retention, |host_id| {
                    // Lossy: a record left behind is forgotten again after a restart.
                    self.store
                        .queue_lossy(Write::ForgetAgent(host_id.to_string()));
                });
            if forgotten > 0 {
                tracing::info!(forgotten, retention = ?retention, "forgot hosts gone past the retention");
            }
            let retention = self.config.command_retention;
            let forgotten = self.fleet.forget_old_commands(SystemTime::now(), retention);
            if !forgotten.is_empty() {
                tracing::info!(forgotten = forgotten.len(), retention = ?retention, "forgetting commands past the retention");
            }
            for command_id in forgotten {
                // Not lossy: nothing later would redo it (a result that races
                // it is dropped by the store, see `Write::Result`).
                if let Err(err) = self
                    .store
                    .queue(Write::ForgetCommand(command_id.to_string()))
                    .await
                {
                    tracing::warn!(error = %chain(&err), "cannot forget a command in the store");
                    break;
                }
            }
        }
    }
}

async fn write_addr_file(data_dir: &std::path::Path, name: &str, addr: std::net::SocketAddr) {
    let path = data_dir.join(name);
    let tmp = data_dir.join(format!("{name}.tmp"));
    // Written then renamed, so a reader never sees half an address.
    let result = async {
        tokio::fs::write(&tmp, format!("{addr}\n")).await?;
        tokio::fs::rename(&tmp, &path).await
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(path = %path.display(), error = %err, "cannot write the address file");
    }
}

/// Raises the open-file soft limit to the hard limit (one socket per agent).
pub fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(
            before = ?before,
            after = ?limit.maximum,
            "open-file limit raised to the hard limit"
        ),
        Err(err) => {
            tracing::warn!(before = ?before, error = %err, "cannot raise the open-file limit")
        }
    }
}

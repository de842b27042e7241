//! Starting and stopping the coordinator: store, fleet, gRPC services, and the
//! ordered shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_proto::v1 as pb;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::service::{agent::AgentLink, control::Control, Shared};
use crate::store::{Store, Write};

/// Name of the file in the data dir that holds the bound gRPC address, so
/// that scripts (and the demo) can find a coordinator started on port 0.
pub const ADDR_FILE: &str = "coordinator.addr";

/// Name of the file in the data dir that holds the bound HTTP (metrics) address.
pub const HTTP_ADDR_FILE: &str = "http.addr";

/// Serves on `listener` until `shutdown` completes, then stops in order:
/// health NOT_SERVING, Goodbye to and end of every agent and watch stream,
/// the server, the remaining tasks, and the store.
pub async fn run(
    config: Config,
    listener: TcpListener,
    http_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let http_addr = http_listener
        .local_addr()
        .map_err(|err| Error::Server(format!("metrics listener has no address: {err}")))?;
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let local_addr = listener
        .local_addr()
        .map_err(|err| Error::Server(format!("listener has no address: {err}")))?;
    let data_dir = config.data_dir.clone();
    let store_metrics = Arc::clone(&metrics);
    let (store, writer) =
        tokio::task::spawn_blocking(move || Store::open(&data_dir, store_metrics))
            .await
            .map_err(|err| Error::Server(err.to_string()))??;
    let load_store = store.clone();
    let snapshot = tokio::task::spawn_blocking(move || load_store.load())
        .await
        .map_err(|err| Error::Server(err.to_string()))??;
    tracing::info!(
        path = %store.path().display(),
        n_agents = snapshot.agents.len(),
        n_commands = snapshot.commands.len(),
        "store opened"
    );
    let judge = Arc::new(crate::judge::Judge::from_snapshot(&snapshot));
    let fleet = Arc::new(Fleet::from_snapshot(snapshot));
    let grace = config.shutdown_grace;
    let streams_shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let notifier = crate::notify::Notifier::start(
        config.webhook_url.clone(),
        &tracker,
        streams_shutdown.clone(),
    );
    let shared = Shared {
        config: Arc::new(config),
        fleet: Arc::clone(&fleet),
        store: store.clone(),
        judge,
        notifier,
        metrics: Arc::clone(&metrics),
        streams_shutdown: streams_shutdown.clone(),
        tracker: tracker.clone(),
        decisions: Arc::default(),
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::agent_service_server::AgentServiceServer<AgentLink>>()
        .await;
    health_reporter
        .set_serving::<pb::control_service_server::ControlServiceServer<Control>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rollguard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|err| Error::Server(format!("reflection: {err}")))?;

    let server_shutdown = CancellationToken::new();
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            pb::agent_service_server::AgentServiceServer::new(AgentLink::new(shared.clone()))
                // Agents send gzip-compressed samples; uncompressed peers work too.
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(pb::control_service_server::ControlServiceServer::new(
            Control::new(shared.clone()),
        ))
        .serve_with_incoming_shutdown(
            // Small messages (acks, commands) go out at once, not behind Nagle.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            server_shutdown.clone().cancelled_owned(),
        );
    let mut server = tokio::spawn(server);
    tracker.spawn(crate::judge::run(shared.clone(), streams_shutdown.clone()));
    tracker.spawn(forget_gone_hosts(shared.clone(), streams_shutdown.clone()));
    tracker.spawn(crate::metrics::serve(
        http_listener,
        shared.clone(),
        server_shutdown.clone(),
    ));
    write_addr_file(&shared.config.data_dir, ADDR_FILE, local_addr).await;
    write_addr_file(&shared.config.data_dir, HTTP_ADDR_FILE, http_addr).await;
    metrics
        .ready
        .store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(%local_addr, %http_addr, "coordinator listening");

    tokio::select! {
        () = shutdown => {}
        result = &mut server => {
            return match result {
                Ok(Ok(())) => Err(Error::Server("server stopped by itself".to_owned())),
                Ok(Err(err)) => Err(Error::Server(err.to_string())),
                Err(err) => Err(Error::Server(err.to_string())),
            };
        }
    }

    metrics
        .ready
        .store(false, std::sync::atomic::Ordering::Relaxed);
    tracing::info!("shutting down: health NOT_SERVING");
    health_reporter
        .set_not_serving::<pb::agent_service_server::AgentServiceServer<AgentLink>>()
        .await;
    health_reporter
        .set_not_serving::<pb::control_service_server::ControlServiceServer<Control>>()
        .await;
    tracing::info!("shutting down: ending agent and watch streams");
    streams_shutdown.cancel();
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
    tracker.close();
    if tokio::time::timeout_at(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("shutting down: stream tasks did not finish within the grace period");
    }
    drop(shared);
    drop(store);
    drop(fleet);
    // The writer drains what is queued and exits once every Store handle is gone.
    let joined = tokio::task::spawn_blocking(move || writer.join());
    if tokio::time::timeout_at(deadline, joined).await.is_err() {
        tracing::warn!("shutting down: store writer did not finish within the grace period");
    }
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Every ten minutes, stores that connected hosts were seen, and forgets
/// hosts disconnected for longer than `host_retention` and commands older
/// than `command_retention`, in memory and in the store. The first sweep comes ten minutes after start: hosts that were
/// connected when the last run stopped have had time to come back.
async fn forget_gone_hosts(shared: Shared, shutdown: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(600);
    let mut every = tokio::time::interval_at(tokio::time::Instant::now() + EVERY, EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let seen = shared.fleet.touch_connected(SystemTime::now());
        for chunk in seen.chunks(1000) {
            let writes = chunk.iter().cloned().map(Write::Agent).collect();
            if let Err(err) = shared.store.commit(writes).await {
                tracing::warn!(error = %err, "cannot store when hosts were last seen");
                break;
            }
        }
        let retention = shared.config.host_retention;
        let forgotten = shared
            .fleet
            .forget_gone(SystemTime::now(), retention, |host_id| {
                // Lossy: a record left behind is forgotten again after a restart.
                shared
                    .store
                    .queue_lossy(Write::ForgetAgent(host_id.to_string()));
            });
        if forgotten > 0 {
            tracing::info!(forgotten, retention = ?retention, "forgot hosts gone past the retention");
        }
        let retention = shared.config.command_retention;
        let forgotten = shared
            .fleet
            .forget_old_commands(SystemTime::now(), retention);
        if !forgotten.is_empty() {
            tracing::info!(forgotten = forgotten.len(), retention = ?retention, "forgetting commands past the retention");
        }
        for command_id in forgotten {
            // Not lossy: nothing later would redo it (a result that races
            // it is dropped by the store, see `Write::Result`).
            if let Err(err) = shared
                .store
                .queue(Write::ForgetCommand(command_id.to_string()))
                .await
            {
                tracing::warn!(error = %err, "cannot forget a command in the store");
                break;
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

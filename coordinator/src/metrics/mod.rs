//! The coordinator's own metrics, served as Prometheus text exposition
//! format 0.0.4 on `--http-listen` (`/metrics`), with `/healthz` (the process
//! is alive) and `/readyz` (the store is open and the gRPC listener is up),
//! and the dashboard's pages (`crate::dashboard`) on the same listener.
//!
//! Counters are atomics bumped on the hot path (`counters`); everything
//! else (agents, cohort figures, verdicts, commands) is read from fleet and
//! decision state at scrape time, by a `prometheus-client` collector
//! (`families.rs`) whose output `text.rs` turns into the 0.0.4 format. Names follow Prometheus conventions so `promtool check
//! metrics` is clean: base units (`_seconds`, `_bytes`, `_ratio`), `_total`
//! on counters, HELP on every family. Label cardinality is bounded by
//! deployments and cohorts; per-host series exist only with
//! `[metrics] per_host = true`.
//!
//! The listener is bounded so that idle or stalled HTTP peers cannot use up
//! the file descriptors agents need (issue 10): see [`Limits`].

mod families;
mod https;
mod text;

use std::sync::Arc;
use std::time::Duration;

use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::counters::Counters;
use crate::dashboard::{reply, Body, Dashboard};
use crate::decisions::Decisions;
use crate::fleet::Fleet;
use crate::outbound::AgentTx;

/// What a scrape reads.
#[derive(Debug, Clone)]
pub(crate) struct Scrape {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet<AgentTx>>,
    pub(crate) decisions: Arc<Decisions>,
    pub(crate) counters: Arc<Counters>,
}

/// What the HTTP listener allows one peer, and all of them together.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Connections served at once. Past it, new ones wait in the listen
    /// backlog (accepted once one closes), so they hold no descriptor of
    /// ours. Prometheus and a load balancer's probes need a handful.
    max_connections: usize,
    /// Time a peer has to send a request's headers, from when the server
    /// starts reading them: on a new connection, and on a kept-alive one
    /// between requests, so an idle connection is closed after it too.
    header_read_timeout: Duration,
    /// Age after which a connection is asked to close (at the end of the
    /// request in flight), so no peer holds one for good.
    max_age: Duration,
    /// Time a connection past `max_age` has to finish its request (a peer
    /// that stopped reading a response is cut off after it).
    drain_timeout: Duration,
}

impl Limits {
    /// The limits `serve` uses. Constants rather than config keys for now.
    const DEFAULT: Limits = Limits {
        max_connections: 256,
        header_read_timeout: Duration::from_secs(10),
        max_age: Duration::from_secs(120),
        drain_timeout: Duration::from_secs(10),
    };
}

/// What the HTTP listener serves: the metrics and the dashboard.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) scrape: Scrape,
    /// `None`: metrics and health only (unit tests).
    pub(crate) dashboard: Option<Dashboard>,
    /// Off loopback with `[tls]`: HTTPS, and who may read (see `https`).
    pub(crate) tls: Option<Https>,
}

use https::Access;
pub(crate) use https::{acceptor as tls_acceptor, Https};

/// Serves `/metrics`, `/healthz`, `/readyz` and the dashboard on
/// `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    site: Site,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    serve_with(listener, site, tracker, shutdown, Limits::DEFAULT).await;
}

async fn serve_with(
    listener: TcpListener,
    scrape: Site,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        // A permit first, then accept: at the cap, peers wait in the backlog.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                // Never closed: the semaphore lives as long as this loop.
                Err(_) => break,
            },
        };
        let (stream, _) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "metrics listener accept failed");
                    continue;
                }
            },
        };
        let site = scrape.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            match site.tls.clone() {
                None => connection(stream, site, Access::Open, limits, shutdown).await,
                Some(Https {
                    acceptor,
                    authority,
                }) => {
                    // The handshake gets the header-read time, no more.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(stream));
                    if let Ok(Ok(tls)) = handshake.await {
                        let peer = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|certs| certs.first())
                            .map(|der| der.as_ref().to_vec());
                        let access = https::access(&authority, peer.as_deref());
                        connection(tls, site, access, limits, shutdown).await;
                    }
                }
            }
            drop(permit);
        });
    }
}

/// Serves one connection until it ends, it is past its age, or `shutdown`.
async fn connection<S>(
    stream: S,
    site: Site,
    access: Access,
    limits: Limits,
    shutdown: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let stream_shutdown = shutdown.clone();
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        let site = site.clone();
        let access = access.clone();
        let shutdown = stream_shutdown.clone();
        async move {
            Ok::<_, std::convert::Infallible>(route(&request, &site, &access, &shutdown).await)
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => return,
        () = shutdown.cancelled() => return,
        () = tokio::time::sleep(limits.max_age) => connection.as_mut().graceful_shutdown(),
    }
    tokio::select! {
        _ = tokio::time::timeout(limits.drain_timeout, connection) => {}
        () = shutdown.cancelled() => {}
    }
}

async fn route(
    request: &Request<hyper::body::Incoming>,
    site: &Site,
    access: &Access,
    shutdown: &CancellationToken,
) -> Response<Body> {
    let scrape = &site.scrape;
    if request.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        );
    }
    let path = request.uri().path();
    if let Access::Denied(why) = access {
        if path != "/healthz" && path != "/readyz" {
            return reply(StatusCode::FORBIDDEN, "text/plain", format!("{why}\n"));
        }
    }
    match path {
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            text::render(scrape),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" => {
            if scrape.counters.is_ready() {
                reply(StatusCode::OK, "text/plain", "ready\n".to_owned())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "not ready\n".to_owned(),
                )
            }
        }
        path => {
            if let Some(dashboard) = &site.dashboard {
                let query = request.uri().query().unwrap_or_default();
                if let Some(response) = dashboard.route(path, query, shutdown).await {
                    return response;
                }
            }
            reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_owned(),
            )
        }
    }
}

#[cfg(test)]
mod tests;

//! The coordinator's own metrics, served as Prometheus text exposition
//! format 0.0.4 on `--http-listen` (`/metrics`), with `/healthz` (the process
//! is alive) and `/readyz` (the store is open and the gRPC listener is up).
//!
//! Counters are atomics bumped on the hot path (`counters`); everything
//! else (agents, cohort figures, verdicts, commands) is read from fleet and
//! decision state at scrape time, by a `prometheus-client` collector
//! (`families.rs`) whose output `text.rs` turns into the 0.0.4 format. Names follow Prometheus conventions so `promtool check
//! metrics` is clean: base units (`_seconds`, `_bytes`, `_ratio`), `_total`
//! on counters, HELP on every family. Label cardinality is bounded by
//! deployments and cohorts; per-host series exist only with
//! `[metrics] per_host = true`.

mod families;
mod text;

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::counters::Counters;
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

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` until `shutdown`.
pub(crate) async fn serve(
    listener: TcpListener,
    scrape: Scrape,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
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
        let scrape = scrape.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let scrape = scrape.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(&request, &scrape)) }
                });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn route(request: &Request<hyper::body::Incoming>, scrape: &Scrape) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != hyper::Method::GET {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".to_owned(),
        );
    }
    match request.uri().path() {
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
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests;

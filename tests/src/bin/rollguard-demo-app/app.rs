//! The HTTP side of the demo app: the accept loop, `/metrics` and `/healthz`,
//! and the background loops that tick the simulation and re-read the version
//! and control files.
//!
//! It deliberately has no TLS, no keep-alive tuning and no request bodies:
//! every route is a GET with an empty body.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::sim::{parse_control, ControlOverride, Sim};

const TICK: Duration = Duration::from_millis(100);
const RELOAD_EVERY: Duration = Duration::from_millis(200);
/// How long open connections get to finish after a shutdown signal.
const GRACE: Duration = Duration::from_secs(5);

/// The shared state of the running app.
#[derive(Debug)]
pub(crate) struct App {
    sim: Mutex<Sim>,
    version_file: PathBuf,
    control_file_opt: Option<PathBuf>,
}

impl App {
    /// Returns an app serving `sim`, watching the given files.
    pub(crate) fn new(sim: Sim, version_file: PathBuf, control_file_opt: Option<PathBuf>) -> Self {
        App {
            sim: Mutex::new(sim),
            version_file,
            control_file_opt,
        }
    }

    fn sim(&self) -> MutexGuard<'_, Sim> {
        // Sim updates are plain arithmetic, so a poisoned lock still holds usable state.
        self.sim.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let now = Instant::now();
        let (status, content_type, body) = match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => (
                StatusCode::OK,
                "text/plain; version=0.0.4",
                self.sim().render(now),
            ),
            (&Method::GET, "/healthz") => {
                if self.sim().probe(now) {
                    (StatusCode::OK, "text/plain", "ok\n".to_owned())
                } else {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "text/plain",
                        "unhealthy\n".to_owned(),
                    )
                }
            }
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found\n".to_owned(),
            ),
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    }
}

/// Serves `listener` and runs the simulation until `shutdown` is cancelled,
/// then gives open connections [`GRACE`] to finish.
pub(crate) async fn run(listener: TcpListener, app: Arc<App>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    tracker.spawn(tick_loop(Arc::clone(&app), shutdown.clone()));
    tracker.spawn(reload_loop(Arc::clone(&app), shutdown.clone()));
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                tracker.spawn(serve_connection(stream, Arc::clone(&app), shutdown.clone()));
            }
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(TICK).await;
            }
        }
    }
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        warn!(
            grace_secs = GRACE.as_secs(),
            "connections still open after the grace period"
        );
    }
}

async fn serve_connection(stream: TcpStream, app: Arc<App>, shutdown: CancellationToken) {
    let service = service_fn(move |request| {
        let response = app.respond(&request);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finish the request in flight, then close instead of keeping alive.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        debug!(error = %err, "connection ended with an error");
    }
}

async fn tick_loop(app: Arc<App>, shutdown: CancellationToken) {
    // The default (burst) missed-tick behaviour catches up after a stall, so
    // the simulated request rate stays exact against the wall clock.
    let mut interval = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => app.sim().tick(Instant::now()),
        }
    }
}

/// Re-reads the version and control files; logs only when something changes,
/// so a persistent problem does not log every 200 ms.
async fn reload_loop(app: Arc<App>, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(RELOAD_EVERY);
    let mut version_error_opt: Option<String> = None;
    // A control file that is missing from the start is not worth a log line.
    let mut control_text = String::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        match tokio::fs::read_to_string(&app.version_file).await {
            // A writer that truncates before writing can be caught in between:
            // an empty file keeps the installed version.
            Ok(text) if text.trim().is_empty() => {}
            Ok(text) => {
                version_error_opt = None;
                let mut sim = app.sim();
                let from = sim.version().to_owned();
                if sim.set_version(text.trim(), Instant::now()) {
                    info!(%from, to = %sim.version(), "installed version changed");
                }
            }
            Err(err) => {
                let error = err.to_string();
                if version_error_opt.as_ref() != Some(&error) {
                    warn!(%error, path = %app.version_file.display(), "reading the version file failed, keeping the version");
                    version_error_opt = Some(error);
                }
            }
        }
        if let Some(control_file) = &app.control_file_opt {
            // A missing or unreadable file means no override.
            let text = tokio::fs::read_to_string(control_file)
                .await
                .unwrap_or_default();
            if text == control_text {
                continue;
            }
            match parse_control(&text) {
                Ok(control) => {
                    if control == ControlOverride::default() {
                        info!("control override cleared");
                    } else {
                        info!(error_rate = ?control.error_rate, latency_ms = ?control.latency_ms, "control override set");
                    }
                    app.sim().set_control(control);
                }
                Err(err) => {
                    warn!(error = %format_args!("{err:#}"), path = %control_file.display(), "ignoring the control file");
                }
            }
            control_text = text;
        }
    }
}

//! Webhook notifications: a JSON POST per event (verdict changes, rollbacks
//! and their results), retried with backoff so a team channel hears of them.
//!
//! Events go through a bounded queue to one sender task. Full policy: when
//! the queue is full (the webhook is down for long), new events are dropped
//! with a warning; notifications never hold up a decision or a rollback.
//!
//! An `https://` webhook is verified against the system's trust store
//! (`rollguard_proto::https`); there is no client certificate.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rollguard_proto::https::{self, HttpsConnector, TrustRoots};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events waiting to be posted.
const QUEUE: usize = 1024;
/// Attempts per event, with 1 s, 2 s, 4 s, 8 s between them.
const ATTEMPTS: u32 = 5;
const POST_TIMEOUT: Duration = Duration::from_secs(5);

type WebhookClient = Client<HttpsConnector, Full<Bytes>>;

/// Handle to the notifier; cheap to clone. Does nothing without a webhook URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    tx: Option<mpsc::Sender<Value>>,
}

impl Notifier {
    /// Starts the sender task for `webhook_url` (if any) on `tracker`.
    pub(crate) fn start(
        webhook_url: Option<String>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let Some(url) = webhook_url else {
            return Notifier::default();
        };
        let (tx, rx) = mpsc::channel(QUEUE);
        tracker.spawn(run(url, rx, shutdown));
        Notifier { tx: Some(tx) }
    }

    /// Whether any webhook is configured.
    pub(crate) fn is_configured(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues an event; drops it with a warning if the queue is full.
    pub(crate) fn send(&self, event: Value) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                tracing::warn!("webhook queue full; notification dropped");
            }
        }
    }
}

/// Returns the webhook client for `url`: an `https://` one trusts the
/// system's roots.
fn client_for(url: &str) -> WebhookClient {
    let roots_opt = if url.starts_with("https://") {
        // Config validation loaded them already; failing now means the
        // trust store went away since, and every post fails on the certificate.
        TrustRoots::system()
            .inspect_err(|err| {
                tracing::error!(%url, error = %err, "no trust roots for the https webhook");
            })
            .ok()
    } else {
        None
    };
    Client::builder(TokioExecutor::new()).build(https::connector(roots_opt.as_ref()))
}

async fn run(url: String, mut rx: mpsc::Receiver<Value>, shutdown: CancellationToken) {
    let client = client_for(&url);
    loop {
        let event = tokio::select! {
            () = shutdown.cancelled() => break,
            event = rx.recv() => match event {
                Some(event) => event,
                None => break,
            },
        };
        let body = Bytes::from(event.to_string());
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=ATTEMPTS {
            match post(&client, &url, body.clone()).await {
                Ok(()) => break,
                Err(err) if attempt == ATTEMPTS => {
                    tracing::warn!(%url, error = %err, attempt, "webhook failed; giving up on this event");
                }
                Err(err) => {
                    tracing::debug!(%url, error = %err, attempt, "webhook failed; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay *= 2;
                }
            }
        }
    }
}

async fn post(client: &WebhookClient, url: &str, body: Bytes) -> Result<(), String> {
    let request = hyper::Request::post(url)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(
            hyper::header::USER_AGENT,
            concat!("rollguard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|err| err.to_string())?;
    let response = tokio::time::timeout(POST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        // The whole chain: a certificate error is in the sources.
        .map_err(|err| crate::error::chain(&err))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("status {}", response.status()))
    }
}

#[cfg(test)]
mod tests;

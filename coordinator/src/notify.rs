//! Webhook notifications: a POST per event (verdict changes, rollbacks and
//! their results, a rollout's steps), retried with backoff so a team
//! channel hears of them. Each webhook has its event filter and its body:
//! the event as JSON, or a Slack-compatible `{"text": ...}`.
//!
//! Each webhook's events go through a bounded queue to its own sender task
//! (a slow one never delays another). Full policy: when a queue is full
//! (its webhook is down for long), new events for it are dropped with a
//! warning; notifications never hold up a decision or a rollback.
//!
//! An `https://` webhook is verified against the system's trust store
//! (`rollguard_proto::https`); there is no client certificate.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rollguard_proto::https::{self, HttpsConnector, TrustRoots};
use serde_json::{json, Value};

use crate::config::{Webhook, WebhookFormat};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events waiting to be posted.
const QUEUE: usize = 1024;
/// Attempts per event, with 1 s, 2 s, 4 s, 8 s between them.
const ATTEMPTS: u32 = 5;
const POST_TIMEOUT: Duration = Duration::from_secs(5);

type WebhookClient = Client<HttpsConnector, Full<Bytes>>;

/// Handle to the notifier; cheap to clone. Does nothing without a webhook.
#[derive(Debug, Clone, Default)]
pub(crate) struct Notifier {
    targets: Arc<[Target]>,
}

#[derive(Debug)]
struct Target {
    webhook: Webhook,
    tx: mpsc::Sender<Bytes>,
}

impl Notifier {
    /// Starts one sender task per webhook on `tracker`.
    pub(crate) fn start(
        webhooks: &[Webhook],
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let targets = webhooks
            .iter()
            .map(|webhook| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tracker.spawn(run(webhook.url.clone(), rx, shutdown.clone()));
                Target {
                    webhook: webhook.clone(),
                    tx,
                }
            })
            .collect();
        Notifier { targets }
    }

    /// Whether any webhook is configured.
    pub(crate) fn is_configured(&self) -> bool {
        !self.targets.is_empty()
    }

    /// Whether any webhook takes events named `event`: an event built for
    /// every host of a fan-out is built only then.
    pub(crate) fn wants(&self, event: &str) -> bool {
        self.targets.iter().any(|t| t.webhook.wants(event))
    }

    /// Queues an event for every webhook whose filter takes its `event`
    /// name, in that webhook's format; drops it for a webhook whose queue
    /// is full, with a warning.
    pub(crate) fn send(&self, event: Value) {
        let name = event["event"].as_str().unwrap_or_default();
        for target in self.targets.iter().filter(|t| t.webhook.wants(name)) {
            let body = match target.webhook.format {
                WebhookFormat::Json => Bytes::from(event.to_string()),
                WebhookFormat::Slack => {
                    Bytes::from(json!({ "text": slack_text(&event) }).to_string())
                }
            };
            if target.tx.try_send(body).is_err() {
                tracing::warn!(url = %target.webhook.url, event = name, "webhook queue full; notification dropped");
            }
        }
    }
}

/// The line a chat channel shows for `event`: its own `text` if it has
/// one (rollout events do), else the name, deployment and what happened.
pub(crate) fn slack_text(event: &Value) -> String {
    if let Some(text) = event["text"].as_str() {
        return text.to_owned();
    }
    let name = event["event"].as_str().unwrap_or("event");
    let deployment = event["deployment"].as_str().unwrap_or("?");
    let what = ["reason", "to", "status", "host_id"]
        .iter()
        .filter_map(|key| event[*key].as_str().map(|v| format!("{key}: {v}")))
        .collect::<Vec<_>>()
        .join(", ");
    if what.is_empty() {
        format!("{name} {deployment}")
    } else {
        format!("{name} {deployment}: {what}")
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

async fn run(url: String, mut rx: mpsc::Receiver<Bytes>, shutdown: CancellationToken) {
    let client = client_for(&url);
    loop {
        let body = tokio::select! {
            () = shutdown.cancelled() => break,
            body = rx.recv() => match body {
                Some(body) => body,
                None => break,
            },
        };
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

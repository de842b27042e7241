//! The live dashboard (issue 13), served on `--http-listen` beside
//! `/metrics`: one embedded page (`dashboard/page.html`, `page.css`,
//! `page.js`: no CDN, no build step) that shows the fleet at `/` and a
//! deployment at `/deployments/NAME`, read from two JSON endpoints, and kept
//! live by Server-Sent Events (`/api/events`): every judged round as it is
//! recorded (the broadcast `Decisions` sends the rollouts too), and the
//! fleet once a second (as the watch stream). Read-only: nothing here
//! changes state.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::{Response, StatusCode};
use rollguard_common::ids::validate_name;
use rollguard_common::policy::{CohortFigures, Policy};
use rollguard_common::DeploymentName;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::decisions::Decisions;
use crate::fleet::{CommandView, Fleet};
use crate::outbound::AgentTx;
use crate::rollout::Rollouts;
use crate::store::{unix_ms, AuditRecord, RoundRecord, Store};

/// The page, its style and its code, embedded in the binary.
const PAGE_HTML: &str = include_str!("dashboard/page.html");
const PAGE_CSS: &str = include_str!("dashboard/page.css");
const PAGE_JS: &str = include_str!("dashboard/page.js");

/// How often the event stream sends the fleet (as the watch stream does).
const FLEET_EVERY: Duration = Duration::from_secs(1);
/// Events queued for one slow browser before its stream is closed (it
/// reconnects and reloads its data).
const EVENTS_QUEUED: usize = 256;
/// Longest range a deployment page may ask for.
const MAX_RANGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most rounds one deployment page gets (evenly thinned past it).
const MAX_POINTS: usize = 2000;
/// Recent commands shown per deployment.
const COMMANDS_SHOWN: usize = 10;

/// A response body: whole, or a stream of events.
pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// What the pages read.
#[derive(Debug, Clone)]
pub(crate) struct Dashboard {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet<AgentTx>>,
    pub(crate) decisions: Arc<Decisions>,
    pub(crate) rollouts: Arc<Rollouts>,
    pub(crate) store: Store,
    /// Each event stream's task runs here (shutdown waits for it).
    pub(crate) tracker: TaskTracker,
}

/// A whole response.
pub(crate) fn reply(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

impl Dashboard {
    /// Answers a dashboard path; `None` for any other.
    pub(crate) async fn route(
        &self,
        path: &str,
        query: &str,
        shutdown: &CancellationToken,
    ) -> Option<Response<Body>> {
        let html = "text/html; charset=utf-8";
        let response = match path {
            "/" => reply(StatusCode::OK, html, PAGE_HTML),
            "/page.css" => reply(StatusCode::OK, "text/css; charset=utf-8", PAGE_CSS),
            "/page.js" => reply(StatusCode::OK, "text/javascript; charset=utf-8", PAGE_JS),
            "/api/fleet" => json_reply(&self.fleet_json().await),
            "/api/events" => self.events(shutdown.clone()),
            _ => {
                if let Some(name) = path.strip_prefix("/deployments/") {
                    match validate_name("deployment", name) {
                        Ok(()) => reply(StatusCode::OK, html, PAGE_HTML),
                        Err(err) => reply(StatusCode::NOT_FOUND, "text/plain", format!("{err}\n")),
                    }
                } else if let Some(name) = path.strip_prefix("/api/deployments/") {
                    self.deployment_reply(name, query).await
                } else {
                    return None;
                }
            }
        };
        Some(response)
    }

    async fn deployment_reply(&self, name: &str, query: &str) -> Response<Body> {
        if let Err(err) = validate_name("deployment", name) {
            return reply(StatusCode::BAD_REQUEST, "text/plain", format!("{err}\n"));
        }
        let range = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("range="))
            .map_or(Ok(Duration::from_secs(3600)), |v| {
                v.parse::<u64>().map(Duration::from_secs)
            });
        let Ok(range) = range else {
            return reply(StatusCode::BAD_REQUEST, "text/plain", "range is seconds\n");
        };
        match self.deployment_json(name, range.min(MAX_RANGE)).await {
            Ok(value) => json_reply(&value),
            Err(err) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("cannot read the store: {err}\n"),
            ),
        }
    }

    /// Every deployment (configured or announced) with its cohorts, judge
    /// state, latest verdict, rollout and hosts.
    pub(crate) async fn fleet_json(&self) -> Value {
        let views = self.fleet.status(None);
        let agents = self.fleet.agents(None);
        let mut names: BTreeMap<DeploymentName, ()> = self
            .config
            .deployments
            .keys()
            .map(|d| (d.clone(), ()))
            .collect();
        names.extend(views.iter().map(|v| (v.deployment.clone(), ())));
        let mut deployments = Vec::new();
        for name in names.into_keys() {
            let state = self.decisions.state(&name);
            let latest = self.decisions.latest(&name);
            let cohorts: Vec<Value> = views
                .iter()
                .filter(|v| v.deployment == name)
                .flat_map(|v| &v.cohorts)
                .map(|c| {
                    json!({
                        "cohort": c.cohort.as_str(),
                        "connected": c.hosts_connected,
                        "stale": c.hosts_stale,
                        "disconnected": c.hosts_disconnected,
                    })
                })
                .collect();
            let hosts: Vec<Value> = agents
                .iter()
                .filter(|a| a.identity.deployment == name)
                .map(|a| {
                    json!({
                        "host_id": a.identity.host_id.as_str(),
                        "version": a.identity.app_version,
                        "cohort": a.identity.cohort.as_str(),
                        "connected": a.connected,
                        "stale": a.stale,
                        "cpu_percent": a.latest.as_ref().map(|s| s.cpu_percent),
                        "memory_percent": a.latest.as_ref().map(|s| s.memory_percent()),
                        "last_seen_ms": unix_ms(a.last_seen),
                    })
                })
                .collect();
            let rollout = self.rollouts.summary(&name).await;
            deployments.push(json!({
                "name": name.as_str(),
                "configured": self.config.deployments.contains_key(&name),
                "armed": state.armed,
                "consecutive": state.consecutive,
                "consecutive_failures": self.config.deployment(&name).consecutive_failures,
                "verdict": latest.as_ref().map(|r| r.evaluation.verdict.as_str()),
                "reason": latest.as_ref().map(|r| r.evaluation.reason.clone()),
                "last_decision": self.last_decision(&name),
                "rollout": rollout,
                "cohorts": cohorts,
                "hosts": hosts,
            }));
        }
        json!({
            "generated_at_ms": unix_ms(SystemTime::now()),
            "deployments": deployments,
        })
    }

    /// The newest rollback command of `deployment` the fleet keeps.
    fn last_decision(&self, deployment: &DeploymentName) -> Option<Value> {
        let command = self
            .fleet
            .recent_commands(deployment, 1)
            .into_iter()
            .next()?;
        Some(command_json(&command))
    }

    /// One deployment's page: its rounds over `range`, the rule limits,
    /// markers from the audit, the latest why and recent commands.
    async fn deployment_json(&self, name: &str, range: Duration) -> crate::error::Result<Value> {
        let deployment = DeploymentName::new(name.to_owned());
        let now = SystemTime::now();
        let from = unix_ms(now.checked_sub(range).unwrap_or(SystemTime::UNIX_EPOCH));
        let store = self.store.clone();
        let owned = name.to_owned();
        let (rounds, audit) = tokio::task::spawn_blocking(move || {
            let rounds = store.rounds(&owned, from, usize::MAX)?;
            let audit = store.audit(Some(&owned), 1000)?;
            Ok::<_, crate::error::Error>((rounds, audit))
        })
        .await
        .map_err(|err| crate::error::Error::store("reading the dashboard's rounds", err))??;
        let policy = self.config.deployment(&deployment);
        let step = rounds.len().div_ceil(MAX_POINTS).max(1);
        let points: Vec<Value> = rounds
            .iter()
            .enumerate()
            // Thinned evenly, keeping every round that decided something.
            .filter(|(i, r)| i % step == 0 || !r.command_id.is_empty())
            .map(|(_, r)| round_json(r, &policy))
            .collect();
        let markers: Vec<Value> = audit
            .iter()
            .filter(|a| a.time_unix_ms >= from)
            .filter_map(marker_json)
            .collect();
        let commands: Vec<Value> = self
            .fleet
            .recent_commands(&deployment, COMMANDS_SHOWN)
            .iter()
            .map(command_json)
            .collect();
        let why = self.decisions.latest(&deployment).map(|r| {
            json!({
                "at_ms": r.at_unix_ms,
                "verdict": r.evaluation.verdict.as_str(),
                "reason": r.evaluation.reason,
                "rules": r.evaluation.rules.iter().map(|rule| json!({
                    "metric": rule.metric,
                    "value": rule.value,
                    "baseline": rule.baseline,
                    "limit": rule.limit_text,
                    "verdict": rule.verdict.as_str(),
                    "note": rule.note,
                })).collect::<Vec<_>>(),
            })
        });
        Ok(json!({
            "name": name,
            "range_s": range.as_secs(),
            "max_range_s": MAX_RANGE.as_secs(),
            "check_interval_ms": policy.check_interval.as_millis() as u64,
            "consecutive_failures": policy.consecutive_failures,
            "rounds": points,
            "markers": markers,
            "why": why,
            "commands": commands,
            "rollout": self.rollouts.summary(&deployment).await,
        }))
    }

    /// `/api/events`: an SSE stream of `round` events as rounds are judged
    /// and a `fleet` event every second, until `shutdown`. A browser that
    /// falls behind by [`EVENTS_QUEUED`] events is cut off (it reconnects).
    fn events(&self, shutdown: CancellationToken) -> Response<Body> {
        let (tx, rx) = mpsc::channel::<Bytes>(EVENTS_QUEUED);
        let dashboard = self.clone();
        let mut rounds = self.decisions.subscribe_rounds();
        self.tracker.spawn(async move {
            // The browser retries after a second when the stream ends.
            if tx.send(Bytes::from_static(b"retry: 1000\n\n")).await.is_err() {
                return;
            }
            let mut tick = tokio::time::interval(FLEET_EVERY);
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    round = rounds.recv() => match round {
                        Ok(round) => {
                            let policy = dashboard.config.deployment(&DeploymentName::new(round.deployment.clone()));
                            sse("round", &round_json(&round, &policy))
                        }
                        // Missed rounds: the page reloads its data on `resync`.
                        Err(RecvError::Lagged(_)) => sse("resync", &json!({})),
                        Err(RecvError::Closed) => return,
                    },
                    _ = tick.tick() => sse("fleet", &dashboard.fleet_json().await),
                };
                if tx.try_send(event).is_err() {
                    return;
                }
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let body = StreamBody::new(tokio_stream::StreamExt::map(stream, |bytes| {
            Ok::<_, Infallible>(Frame::data(bytes))
        }));
        let mut response = Response::new(BodyExt::boxed(body));
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        headers.insert(
            hyper::header::CACHE_CONTROL,
            hyper::header::HeaderValue::from_static("no-store"),
        );
        response
    }
}

fn json_reply(value: &Value) -> Response<Body> {
    reply(StatusCode::OK, "application/json", value.to_string())
}

/// One SSE event.
fn sse(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// A round as the page draws it: both cohorts' figures, the limits of the
/// rules on the charted metrics, the verdict and what it decided.
fn round_json(round: &RoundRecord, policy: &Policy) -> Value {
    let seconds = policy.check_interval.as_secs_f64().max(0.001);
    let figures = |f: &CohortFigures| {
        json!({
            "hosts": f.hosts,
            "error_rate": f.error_rate,
            "latency_p99_ms": f.latency_p99_ms,
            "request_rate": f.requests / seconds,
            "cpu_percent": f.cpu_percent,
            "memory_percent": f.memory_percent,
        })
    };
    let mut limits = serde_json::Map::new();
    for rule in &round.evaluation.rules {
        if let Some(limit) = rule.limit {
            limits.insert(rule.metric.clone(), limit.into());
        }
    }
    json!({
        "deployment": round.deployment,
        "seq": round.seq,
        "at_ms": round.at_unix_ms,
        "verdict": round.evaluation.verdict.as_str(),
        "reason": round.evaluation.reason,
        "consecutive": round.state.consecutive,
        "armed": round.state.armed,
        "decision": format!("{:?}", round.decision),
        "command_id": round.command_id,
        "beta": figures(&round.evaluation.beta),
        "baseline": figures(&round.evaluation.baseline),
        "limits": limits,
    })
}

/// An audit entry worth a marker on the charts.
fn marker_json(entry: &AuditRecord) -> Option<Value> {
    let kind = match entry.action.as_str() {
        "rollback" | "local_rollback" => "rollback",
        "promote"
        | "rollout_start"
        | "rollout_completed"
        | "rollout_rolled_back"
        | "rollout_aborted" => "rollout",
        "rearm" => "rearm",
        _ => return None,
    };
    Some(json!({
        "at_ms": entry.time_unix_ms,
        "kind": kind,
        "action": entry.action,
        "actor": entry.actor,
        "reason": entry.reason,
        "command_id": entry.command_id,
    }))
}

fn command_json(command: &CommandView) -> Value {
    let record = &command.record;
    json!({
        "command_id": record.command_id,
        "kind": record.kind.as_str(),
        "action": record.action,
        "version": record.version,
        "actor": record.actor,
        "reason": record.reason,
        "issued_at_ms": record.issued_at_unix_ms,
        "results": command.results.iter().map(|r| json!({
            "host_id": r.host_id,
            "status": r.status.as_str(),
            "reason": r.reason,
        })).collect::<Vec<_>>(),
    })
}

//! The coordinator's config: raw (serde) form, validation, and the checked
//! [`Config`] that the rest of the crate sees.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use rollguard_common::config::{self, ConfigError, RawTelemetry, Sources};
use rollguard_common::ids::validate_name;
use rollguard_common::policy::{Policy, RawPolicy};
use rollguard_common::DeploymentName;
use rollguard_proto::tls::Identity;
use serde::{Deserialize, Serialize};

/// Rollback targets are the beta hosts seen within this window; a host
/// away longer is no target of a new decision (it catches up on connect).
pub(crate) const TARGET_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Env prefix: `ROLLGUARD_COORDINATOR__LISTEN=...`.
pub const ENV_PREFIX: &str = "ROLLGUARD_COORDINATOR";

/// The coordinator config as written in TOML.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Leaves room to change the format; only 1 is known.
    pub config_version: u32,
    /// Address of the gRPC listener (agents and rollguardctl).
    pub listen: String,
    /// Allows a non-loopback `listen` while there is no TLS or authentication.
    pub insecure_listen: bool,
    /// Address of the HTTP listener for `/metrics`, `/healthz`, `/readyz`
    /// and the dashboard.
    pub http_listen: String,
    /// Allows a non-loopback `http_listen` without `[tls]` (plain HTTP).
    pub insecure_http: bool,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// How long a command stays deliverable after its decision (`not_after`).
    pub command_ttl: String,
    /// How long shutdown may take per stage.
    pub shutdown_grace: String,
    /// How long a disconnected host is remembered (listed, counted in the
    /// blast radius) before it is forgotten; at least 24h, the rollback
    /// target window.
    pub host_retention: String,
    /// How long a command and its per-host results are kept (the audit
    /// history keeps its entry for good); a deployment's newest decision
    /// is kept whatever its age. At least 24h.
    pub command_retention: String,
    /// Per-deployment policy; deployments not listed get the defaults and no rules.
    pub deployments: BTreeMap<String, RawPolicy>,
    /// Where verdict changes and rollbacks are announced.
    pub notify: RawNotify,
    /// Trace export.
    pub telemetry: RawTelemetry,
    /// The `/metrics` endpoint.
    pub metrics: RawMetrics,
    /// Mutual TLS on the gRPC listener; all three files or none.
    pub tls: RawTls,
    /// Who may do what (with `[tls]`).
    pub auth: RawAuth,
    /// Most gRPC connections open at once; a connection past it waits in
    /// the kernel's backlog until one closes.
    pub max_connections: usize,
    /// Most concurrent streams (calls) on one HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// How often a rollback that failed (or was interrupted) on a host is
    /// retried there, each as a new command closed to that host.
    pub action_retries: u32,
}

/// The `[tls]` table: the coordinator's certificate and key, and the CA
/// that signs every caller's certificate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: String,
    pub key: String,
    pub client_ca: String,
}

/// The `[auth]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    /// Operator certificate names -> `viewer` | `operator` | `admin`.
    pub roles: BTreeMap<String, String>,
    /// Identities refused whatever their certificate: `agent/NAME`, `operator/NAME`.
    pub revoked: Vec<String>,
}

/// The `[metrics]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Also export per-host series (one per host: mind the cardinality).
    pub per_host: bool,
}

/// The `[notify]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotify {
    /// JSON POST target (a team channel's incoming webhook); empty means
    /// none. Kept as a webhook with `events = ["*"]`, `format = "json"`.
    pub webhook_url: String,
    /// `[[notify.webhooks]]`: each with its event filter and body format.
    pub webhooks: Vec<RawWebhook>,
}

/// One `[[notify.webhooks]]` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    /// Event names (`rollout.completed`), prefixes (`rollout.*`) or `*`.
    #[serde(default = "all_events")]
    pub events: Vec<String>,
    #[serde(default)]
    pub format: WebhookFormat,
}

fn all_events() -> Vec<String> {
    vec!["*".to_owned()]
}

/// A webhook's body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// The event as JSON, its name in the top-level `event`.
    #[default]
    Json,
    /// A Slack-compatible `{"text": ...}`.
    Slack,
}

/// A checked webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: String,
    pub events: Vec<String>,
    pub format: WebhookFormat,
}

impl Webhook {
    /// Whether `event` passes this webhook's filter.
    pub fn wants(&self, event: &str) -> bool {
        self.events
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => event.starts_with(prefix),
                None => pattern == event,
            })
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            config_version: 1,
            listen: "127.0.0.1:7600".to_owned(),
            insecure_listen: false,
            http_listen: "127.0.0.1:7601".to_owned(),
            insecure_http: false,
            data_dir: PathBuf::from("./rollguard-data"),
            command_ttl: "1h".to_owned(),
            shutdown_grace: "5s".to_owned(),
            host_retention: "7d".to_owned(),
            command_retention: "30d".to_owned(),
            deployments: BTreeMap::new(),
            notify: RawNotify::default(),
            telemetry: RawTelemetry::default(),
            metrics: RawMetrics::default(),
            tls: RawTls::default(),
            auth: RawAuth::default(),
            max_connections: 16_384,
            max_streams_per_connection: 1024,
            action_retries: 2,
        }
    }
}

/// The checked coordinator config.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the gRPC server listens.
    pub listen: SocketAddr,
    /// Whether a non-loopback listen address was explicitly allowed.
    pub insecure_listen: bool,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_listen: SocketAddr,
    /// Whether per-host series are exported.
    pub metrics_per_host: bool,
    /// Directory of the embedded store.
    pub data_dir: PathBuf,
    /// Lifetime of a command after its decision.
    pub command_ttl: Duration,
    /// Time allowed for each shutdown stage.
    pub shutdown_grace: Duration,
    /// How long a disconnected host is remembered.
    pub host_retention: Duration,
    /// How long a command and its results are kept.
    pub command_retention: Duration,
    /// Per-deployment policy.
    pub deployments: BTreeMap<DeploymentName, Policy>,
    /// Where notifications go (`[notify] webhook_url` first, as a webhook of every event).
    pub webhooks: Vec<Webhook>,
    /// OTLP endpoint for traces, if configured (else `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// Mutual TLS on the gRPC listener, if configured.
    pub tls: Option<TlsFiles>,
    /// Roles and revocations (in force only with TLS).
    pub auth: AuthPolicy,
    /// Most gRPC connections open at once.
    pub max_connections: usize,
    /// Most concurrent streams on one connection.
    pub max_streams_per_connection: u32,
    /// Retries of a failed rollback on a host (the first after 5 s, then doubling).
    pub action_retries: u32,
}

/// The files of `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// What a bound operator may do; each role may do all the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Every read: status, watch, agents, deployments, why, report, history, results.
    Viewer,
    /// A viewer that may also roll back and rearm.
    Operator,
    /// An operator that may also change the fleet's trust.
    Admin,
}

impl Role {
    fn parse(value: &str) -> Option<Role> {
        match value {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

/// The checked `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthPolicy {
    /// Operator name -> role; an operator not here may call nothing.
    pub roles: BTreeMap<String, Role>,
    /// Identities refused at once.
    pub revoked: BTreeSet<Identity>,
}

impl RawAuth {
    /// Checks `[auth]`; used at start and on every SIGHUP.
    pub fn validate(self) -> Result<AuthPolicy, ConfigError> {
        let mut roles = BTreeMap::new();
        for (name, role) in self.roles {
            let key = format!("auth.roles.{name}");
            validate_name("operator name", &name).map_err(|m| ConfigError::invalid(&key, m))?;
            let role = Role::parse(&role).ok_or_else(|| {
                ConfigError::invalid(
                    &key,
                    format!("`{role}` is not a role (viewer, operator or admin)"),
                )
            })?;
            roles.insert(name, role);
        }
        let mut revoked = BTreeSet::new();
        for entry in self.revoked {
            let identity = Identity::parse_key(&entry).ok_or_else(|| {
                ConfigError::invalid(
                    "auth.revoked",
                    format!("`{entry}` is not agent/NAME or operator/NAME"),
                )
            })?;
            revoked.insert(identity);
        }
        Ok(AuthPolicy { roles, revoked })
    }
}

impl RawNotify {
    fn validate(self) -> Result<Vec<Webhook>, ConfigError> {
        let mut webhooks = Vec::new();
        if !self.webhook_url.trim().is_empty() {
            webhooks.push(Webhook {
                url: check_url("notify.webhook_url", self.webhook_url.trim())?,
                events: all_events(),
                format: WebhookFormat::Json,
            });
        }
        for (idx, raw) in self.webhooks.into_iter().enumerate() {
            let key = format!("notify.webhooks[{idx}]");
            let url = check_url(&format!("{key}.url"), raw.url.trim())?;
            if raw.events.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.events"),
                    "names no event: use [\"*\"] for all",
                ));
            }
            for pattern in &raw.events {
                let name = pattern.strip_suffix('*').unwrap_or(pattern);
                let valid = name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
                if !valid || pattern.is_empty() {
                    return Err(ConfigError::invalid(
                        format!("{key}.events"),
                        format!("`{pattern}` is not an event name, a prefix ending in `*`, or `*`"),
                    ));
                }
            }
            webhooks.push(Webhook {
                url,
                events: raw.events,
                format: raw.format,
            });
        }
        Ok(webhooks)
    }
}

/// An http:// or https:// URL (an https one needs the system's roots).
fn check_url(key: &str, url: &str) -> Result<String, ConfigError> {
    if url.starts_with("http://") {
        return Ok(url.to_owned());
    }
    if url.starts_with("https://") {
        // Verified against the system's roots: check now that there are some.
        return match rollguard_proto::https::TrustRoots::system() {
            Ok(_) => Ok(url.to_owned()),
            Err(err) => Err(ConfigError::invalid(
                key,
                format!("`{url}` is https:// but {err}"),
            )),
        };
    }
    Err(ConfigError::invalid(
        key,
        format!("`{url}` is not an http:// or https:// URL"),
    ))
}

impl RawTls {
    fn validate(self) -> Result<Option<TlsFiles>, ConfigError> {
        let set = [&self.cert, &self.key, &self.client_ca]
            .iter()
            .filter(|v| !v.trim().is_empty())
            .count();
        match set {
            0 => Ok(None),
            3 => Ok(Some(TlsFiles {
                cert: PathBuf::from(self.cert),
                key: PathBuf::from(self.key),
                client_ca: PathBuf::from(self.client_ca),
            })),
            _ => {
                let missing = [
                    ("tls.cert", &self.cert),
                    ("tls.key", &self.key),
                    ("tls.client_ca", &self.client_ca),
                ]
                .into_iter()
                .find(|(_, v)| v.trim().is_empty())
                .map_or("tls", |(key, _)| key);
                Err(ConfigError::invalid(
                    missing,
                    "[tls] needs cert, key and client_ca together",
                ))
            }
        }
    }
}

impl Config {
    /// Returns the policy of `deployment`, or the defaults (no rules) for one not in the config.
    pub fn deployment(&self, deployment: &DeploymentName) -> Policy {
        self.deployments
            .get(deployment)
            .cloned()
            .unwrap_or_default()
    }

    /// Returns a config for tests: loopback port 0 and the given data dir.
    pub fn for_test(data_dir: PathBuf) -> Self {
        RawConfig {
            listen: "127.0.0.1:0".to_owned(),
            http_listen: "127.0.0.1:0".to_owned(),
            data_dir,
            ..RawConfig::default()
        }
        .validate()
        .expect("the test config is valid")
    }
}

impl RawConfig {
    /// Checks the connection bounds and the retry count.
    fn check_limits(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "max_connections",
                "must be at least 1",
            ));
        }
        if self.max_streams_per_connection == 0 {
            return Err(ConfigError::invalid(
                "max_streams_per_connection",
                "must be at least 1",
            ));
        }
        if self.action_retries > 10 {
            return Err(ConfigError::invalid(
                "action_retries",
                "at most 10 (the last would wait 5s x 2^9, 43 minutes)",
            ));
        }
        Ok(())
    }

    /// Loads the layers: defaults, file, env, then flags.
    pub fn load(sources: Sources<'_>) -> Result<Self, ConfigError> {
        config::load(sources)
    }

    /// Checks every value and builds the [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        if self.config_version != 1 {
            return Err(ConfigError::invalid(
                "config_version",
                format!("only version 1 is known, got {}", self.config_version),
            ));
        }
        let listen: SocketAddr = self.listen.parse().map_err(|err| {
            ConfigError::invalid(
                "listen",
                format!("`{}` is not an address ({err})", self.listen),
            )
        })?;
        self.check_limits()?;
        let tls = self.tls.validate()?;
        if !listen.ip().is_loopback() && tls.is_none() && !self.insecure_listen {
            return Err(ConfigError::invalid(
                "listen",
                format!(
                    "{listen} is not a loopback address; without [tls] the coordinator \
                     listens off loopback only with --insecure-listen"
                ),
            ));
        }
        let http_listen: SocketAddr = self.http_listen.parse().map_err(|err| {
            ConfigError::invalid(
                "http_listen",
                format!("`{}` is not an address ({err})", self.http_listen),
            )
        })?;
        if !http_listen.ip().is_loopback() && tls.is_none() && !self.insecure_http {
            return Err(ConfigError::invalid(
                "http_listen",
                format!(
                    "{http_listen} is not a loopback address; without [tls] the HTTP listener \
                     (metrics, dashboard) listens off loopback only with --insecure-http"
                ),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        let command_ttl = config::parse_positive_duration("command_ttl", &self.command_ttl)?;
        let shutdown_grace =
            config::parse_positive_duration("shutdown_grace", &self.shutdown_grace)?;
        let host_retention =
            config::parse_positive_duration("host_retention", &self.host_retention)?;
        if host_retention < TARGET_WINDOW {
            return Err(ConfigError::invalid(
                "host_retention",
                "must be at least 24h: a host away less long is still a rollback target",
            ));
        }
        let command_retention =
            config::parse_positive_duration("command_retention", &self.command_retention)?;
        if command_retention < Duration::from_secs(24 * 3600) || command_retention < command_ttl {
            return Err(ConfigError::invalid(
                "command_retention",
                "must be at least 24h and at least command_ttl",
            ));
        }
        let auth = self.auth.validate()?;
        let mut deployments = BTreeMap::new();
        for (name, raw) in self.deployments {
            let key = format!("deployments.{name}");
            validate_name("deployment name", &name).map_err(|m| ConfigError::invalid(&key, m))?;
            deployments.insert(DeploymentName::new(name), raw.validate(&key)?);
        }
        let webhooks = self.notify.validate()?;
        Ok(Config {
            listen,
            insecure_listen: self.insecure_listen,
            http_listen,
            metrics_per_host: self.metrics.per_host,
            data_dir: self.data_dir,
            command_ttl,
            shutdown_grace,
            host_retention,
            command_retention,
            deployments,
            webhooks,
            otlp_endpoint: self.telemetry.endpoint().map(str::to_owned),
            tls,
            auth,
            max_connections: self.max_connections,
            max_streams_per_connection: self.max_streams_per_connection,
            action_retries: self.action_retries,
        })
    }
}

#[cfg(test)]
mod tests;

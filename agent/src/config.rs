//! The agent's config: raw (serde) form, validation, and the checked [`Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use rollguard_common::config::{self, ConfigError, RawTelemetry, Sources};
use rollguard_common::ids::{validate_name, validate_version, VERSION_PLACEHOLDER};
use rollguard_common::{Cohort, DeploymentName, HostId};
use rollguard_proto::tls::{ClientFiles, Identity};
use serde::{Deserialize, Serialize};
use tonic::transport::ClientTlsConfig;

use crate::app::config::AppConfig;
use crate::collect::{Backend, CollectConfig, DEFAULT_EXCLUDED_INTERFACES};
use crate::tripwire::TripwireConfig;

// The `[app]` table is parsed next to the code that reads it; its raw form
// stays reachable here, where it always was.
pub use crate::app::config::RawApp;
pub use crate::tripwire::RawTripwire;

/// The default of `resend_buffer`. A typical host with app histograms
/// costs about 2.4 KiB a sample in the buffer (README, Agent
/// configuration), so this holds about 29 minutes at 1 s; a 10-minute cut
/// costs about 1.4 MiB.
pub(crate) const DEFAULT_RESEND_BUFFER: &str = "4MiB";

/// The smallest `resend_buffer` accepted: a few samples of a large host.
const MIN_RESEND_BUFFER_BYTES: u64 = 64 << 10;

/// Env prefix: `ROLLGUARD_AGENT__DEPLOYMENT=cache-service`.
pub const ENV_PREFIX: &str = "ROLLGUARD_AGENT";

/// The agent config as written in TOML (`/etc/rollguard/agent.toml`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Leaves room to change the format; only 1 is known.
    pub config_version: u32,
    /// Coordinator URL.
    pub coordinator: String,
    /// Host identity; empty means the hostname.
    pub host_id: String,
    /// Deployment this host belongs to (required).
    pub deployment: String,
    /// `beta`, `baseline`, or `auto` (the default, also when empty): the
    /// coordinator decides.
    pub cohort: String,
    /// Version of the application under guard, when it is fixed.
    pub app_version: String,
    /// File whose trimmed content is the app version, re-read every interval.
    pub version_file: Option<PathBuf>,
    /// Command (argv, no shell) whose trimmed stdout is the app version, run every interval.
    pub version_command: Option<Vec<String>>,
    /// Sampling interval.
    pub interval: String,
    /// Directory of the command journal (at-most-once execution across restarts).
    pub state_dir: PathBuf,
    /// How long shutdown waits for a running action.
    pub shutdown_grace: String,
    /// Memory bound of the samples kept until the coordinator acks them
    /// (resent after a reconnect; the oldest are dropped past it), e.g. `4MiB`.
    pub resend_buffer: String,
    /// Free-form labels sent in Hello.
    pub labels: BTreeMap<String, String>,
    /// Named actions; the coordinator can only name one of these.
    pub actions: BTreeMap<String, RawAction>,
    /// Which host figures count.
    pub collect: RawCollect,
    /// Trace export.
    pub telemetry: RawTelemetry,
    /// Application health: a metrics scrape and/or a health probe.
    pub app: RawApp,
    /// Mutual TLS to the coordinator (needed for an `https://` coordinator).
    pub tls: RawTls,
    /// The local tripwire while the coordinator is unreachable; absent means off.
    pub tripwire: Option<RawTripwire>,
}

/// The `[tls]` table: the CA that signed the coordinator's certificate,
/// and this agent's certificate (`rollguardctl pki issue agent HOST_ID`) and key.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One `[actions.NAME]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    /// argv; run without a shell.
    pub command: Vec<String>,
    /// Killed and reported failed after this long.
    #[serde(default = "default_action_timeout")]
    pub timeout: String,
    /// Extra environment for the action.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; default the state dir.
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
}

fn default_action_timeout() -> String {
    "60s".to_owned()
}

/// The `[collect]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCollect {
    /// Where host figures come from: `procfs` (Linux only; the default
    /// there) or `sysinfo` (the default elsewhere).
    pub backend: String,
    /// Interface name prefixes left out of network figures.
    pub exclude_interfaces: Vec<String>,
    /// When non-empty, only these interfaces count.
    pub include_interfaces: Vec<String>,
}

impl Default for RawCollect {
    fn default() -> Self {
        RawCollect {
            backend: Backend::DEFAULT.name().to_owned(),
            exclude_interfaces: DEFAULT_EXCLUDED_INTERFACES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            include_interfaces: Vec::new(),
        }
    }
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            config_version: 1,
            coordinator: "http://127.0.0.1:7600".to_owned(),
            host_id: String::new(),
            deployment: String::new(),
            cohort: String::new(),
            app_version: String::new(),
            version_file: None,
            version_command: None,
            interval: "1s".to_owned(),
            state_dir: PathBuf::from("/var/lib/rollguard-agent"),
            shutdown_grace: "10s".to_owned(),
            resend_buffer: DEFAULT_RESEND_BUFFER.to_owned(),
            labels: BTreeMap::new(),
            actions: BTreeMap::new(),
            collect: RawCollect::default(),
            telemetry: RawTelemetry::default(),
            app: RawApp::default(),
            tls: RawTls::default(),
            tripwire: None,
        }
    }
}

/// Where the app version comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// A fixed string (possibly empty).
    Fixed(String),
    /// The trimmed content of a file.
    File(PathBuf),
    /// The trimmed stdout of a command.
    Command(Vec<String>),
}

/// A checked action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// argv, `argv[0]` is the program.
    pub argv: Vec<String>,
    pub timeout: Duration,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
}

impl Action {
    /// Whether an argument is `{version}`: the command must name one.
    pub fn takes_version(&self) -> bool {
        self.argv.iter().any(|arg| arg == VERSION_PLACEHOLDER)
    }

    /// Returns this action for a command naming `version` (empty: none):
    /// `{version}` replaced by it when the action takes one, unchanged when
    /// it does not (the version is ignored). Errs, with the reason, when the
    /// action takes a version and the command names none or a bad one.
    pub fn for_version(&self, version: &str) -> Result<Action, String> {
        if !self.takes_version() {
            return Ok(self.clone());
        }
        if version.is_empty() {
            return Err(format!(
                "the action takes a `{VERSION_PLACEHOLDER}` and the command names none"
            ));
        }
        validate_version(version)?;
        let mut action = self.clone();
        for arg in &mut action.argv {
            if arg == VERSION_PLACEHOLDER {
                version.clone_into(arg);
            }
        }
        Ok(action)
    }
}

/// The checked agent config.
#[derive(Debug, Clone)]
pub struct Config {
    pub coordinator: String,
    pub host_id: HostId,
    pub deployment: DeploymentName,
    /// `None`: `auto`, the coordinator decides.
    pub cohort: Option<Cohort>,
    pub version: VersionSource,
    pub interval: Duration,
    pub state_dir: PathBuf,
    pub shutdown_grace: Duration,
    /// Bound of the unacked samples' memory (`resend_buffer`).
    pub(crate) resend_buffer_bytes: usize,
    pub labels: BTreeMap<String, String>,
    pub actions: BTreeMap<String, Action>,
    pub(crate) collect: CollectConfig,
    /// App health to scrape and/or probe; `None` when neither URL is set.
    pub(crate) app: Option<AppConfig>,
    /// OTLP endpoint for traces, if configured (else `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub otlp_endpoint: Option<String>,
    /// TLS to the coordinator, read from `[tls]`, when the URL is `https://`.
    pub tls: Option<ClientTlsConfig>,
    /// The local tripwire, when `[tripwire]` is set.
    pub tripwire: Option<TripwireConfig>,
}

impl Config {
    /// One line on what this config makes the agent do (for `--check-config`).
    pub fn summary(&self) -> String {
        let scrape = self.app.as_ref().and_then(|a| a.scrape.as_ref());
        let probe = self.app.as_ref().and_then(|a| a.probe.as_ref());
        let actions: Vec<&str> = self.actions.keys().map(String::as_str).collect();
        format!(
            "host {} in {} ({}) every {:?}, coordinator {}; host figures: {}; actions: {}; scrape: {}; probe: {}; tripwire: {}",
            self.host_id,
            self.deployment,
            cohort_name(self.cohort),
            self.interval,
            self.coordinator,
            self.collect.backend.name(),
            if actions.is_empty() {
                "none (a rollback will be rejected)".to_owned()
            } else {
                actions.join(", ")
            },
            scrape.map_or_else(|| "none".to_owned(), |s| s.url.to_string()),
            probe.map_or_else(|| "none".to_owned(), |p| p.url.to_string()),
            self.tripwire.as_ref().map_or_else(
                || "off".to_owned(),
                |t| format!(
                    "`{}` after {:?} away and {} failing round(s)",
                    t.action, t.after, t.policy.consecutive_failures
                )
            ),
        )
    }
}

/// Reads `[tls]` when the coordinator URL needs it: the client settings and
/// the host id the certificate names.
fn coordinator_tls(
    coordinator: &str,
    raw: &RawTls,
) -> Result<Option<(ClientTlsConfig, String)>, ConfigError> {
    let https = coordinator.starts_with("https://");
    let set = [&raw.ca, &raw.cert, &raw.key]
        .into_iter()
        .filter(|p| !p.as_os_str().is_empty())
        .count();
    if !https {
        if set > 0 {
            return Err(ConfigError::invalid(
                "coordinator",
                format!("[tls] is set, so `{coordinator}` must be an https:// URL"),
            ));
        }
        return Ok(None);
    }
    for (key, path) in [
        ("tls.ca", &raw.ca),
        ("tls.cert", &raw.cert),
        ("tls.key", &raw.key),
    ] {
        if path.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                key,
                format!("an https:// coordinator ({coordinator}) needs [tls] ca, cert and key"),
            ));
        }
    }
    let loaded = ClientFiles {
        ca: &raw.ca,
        cert: &raw.cert,
        key: &raw.key,
    }
    .load()
    .map_err(|err| ConfigError::invalid("tls", err.to_string()))?;
    match loaded.identity {
        Identity::Agent(host_id) => Ok(Some((loaded.config, host_id))),
        other => Err(ConfigError::invalid(
            "tls.cert",
            format!(
                "{} names {other}, not an agent (rollguardctl pki issue agent HOST_ID)",
                raw.cert.display()
            ),
        )),
    }
}

impl RawConfig {
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
        if !(self.coordinator.starts_with("http://") || self.coordinator.starts_with("https://")) {
            return Err(ConfigError::invalid(
                "coordinator",
                format!("`{}` is not an http:// or https:// URL", self.coordinator),
            ));
        }
        let tls = coordinator_tls(&self.coordinator, &self.tls)?;
        let host_id = match (&tls, self.host_id.is_empty()) {
            // With TLS the certificate names the host; a flag may only agree.
            (Some((_, certified)), true) => certified.clone(),
            (Some((_, certified)), false) if *certified != self.host_id => {
                return Err(ConfigError::invalid(
                    "host_id",
                    format!(
                        "`{}` differs from `{certified}`, the host its certificate ({}) names",
                        self.host_id,
                        self.tls.cert.display()
                    ),
                ));
            }
            (_, true) => rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            (_, false) => self.host_id,
        };
        validate_name("host_id", &host_id).map_err(|m| ConfigError::invalid("host_id", m))?;
        if self.deployment.is_empty() {
            return Err(ConfigError::Missing {
                key: "deployment".to_owned(),
            });
        }
        validate_name("deployment", &self.deployment)
            .map_err(|m| ConfigError::invalid("deployment", m))?;
        // Empty or `auto`: the coordinator decides (beta while a rollout
        // has promoted this host, baseline otherwise; issue 12).
        let cohort: Option<Cohort> = match self.cohort.as_str() {
            "" | "auto" => None,
            fixed => Some(fixed.parse().map_err(|_: String| {
                ConfigError::invalid(
                    "cohort",
                    format!("expected `beta`, `baseline` or `auto`, got `{fixed}`"),
                )
            })?),
        };
        let version = version_source(self.version_file, self.version_command, self.app_version)?;
        let interval = config::parse_positive_duration("interval", &self.interval)?;
        if interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid("interval", "must be at least 100ms"));
        }
        let backend = collect_backend(&self.collect.backend, interval)?;
        if self.state_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("state_dir", "must not be empty"));
        }
        let shutdown_grace = config::parse_duration("shutdown_grace", &self.shutdown_grace)?;
        let resend_buffer_bytes = resend_buffer_bytes(&self.resend_buffer)?;
        let app = AppConfig::from_raw(self.app, interval)?;
        let mut actions = BTreeMap::new();
        for (name, raw) in self.actions {
            let checked = action(&name, raw)?;
            actions.insert(name, checked);
        }
        let tripwire = self
            .tripwire
            .map(|raw| raw.validate(actions.keys()))
            .transpose()?;
        if let Some(tripwire) = &tripwire {
            tripwire_reads_the_app(tripwire, app.as_ref())?;
            // A local run has no command to name a version.
            if actions
                .get(&tripwire.action)
                .is_some_and(Action::takes_version)
            {
                return Err(ConfigError::invalid(
                    "tripwire.action",
                    format!(
                        "`{}` takes a `{VERSION_PLACEHOLDER}`, which a local run cannot name",
                        tripwire.action
                    ),
                ));
            }
        }
        Ok(Config {
            tls: tls.map(|(config, _)| config),
            coordinator: self.coordinator,
            host_id: HostId::new(host_id),
            deployment: DeploymentName::new(self.deployment),
            cohort,
            version,
            interval,
            state_dir: self.state_dir,
            shutdown_grace,
            resend_buffer_bytes,
            labels: self.labels,
            actions,
            collect: CollectConfig {
                backend,
                exclude_interfaces: self.collect.exclude_interfaces,
                include_interfaces: self.collect.include_interfaces,
                ..CollectConfig::default()
            },
            app,
            otlp_endpoint: self.telemetry.endpoint().map(str::to_owned),
            tripwire,
        })
    }
}

/// Checks `collect.backend` against this OS, and the interval against what
/// the backend can measure.
fn collect_backend(value: &str, interval: Duration) -> Result<Backend, ConfigError> {
    let backend = Backend::parse(value).map_err(|m| ConfigError::invalid("collect.backend", m))?;
    if backend == Backend::Sysinfo && interval < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
        return Err(ConfigError::invalid(
            "interval",
            format!(
                "must be at least {:?} with `collect.backend = \"sysinfo\"` (sysinfo refreshes CPU usage no more often)",
                sysinfo::MINIMUM_CPU_UPDATE_INTERVAL
            ),
        ));
    }
    Ok(backend)
}

/// Checks `resend_buffer`: a size of at least [`MIN_RESEND_BUFFER_BYTES`].
fn resend_buffer_bytes(value: &str) -> Result<usize, ConfigError> {
    let bytes = config::parse_bytes("resend_buffer", value)?;
    if bytes < MIN_RESEND_BUFFER_BYTES {
        return Err(ConfigError::invalid(
            "resend_buffer",
            format!("`{value}` is below the least, 64KiB (a few samples of a large host)"),
        ));
    }
    usize::try_from(bytes)
        .map_err(|_| ConfigError::invalid("resend_buffer", format!("`{value}` is too large")))
}

/// Checks that every tripwire rule has its figures: a probe metric needs
/// `app.probe_url`, the others `app.scrape_url`. A rule without them would
/// hold its count forever (an unreadable round), and never fire.
fn tripwire_reads_the_app(
    tripwire: &TripwireConfig,
    app: Option<&AppConfig>,
) -> Result<(), ConfigError> {
    for (idx, rule) in tripwire.policy.rules.iter().enumerate() {
        let (has, needs) = if rule.metric.is_probe() {
            (app.is_some_and(|a| a.probe.is_some()), "app.probe_url")
        } else {
            (app.is_some_and(|a| a.scrape.is_some()), "app.scrape_url")
        };
        if !has {
            return Err(ConfigError::invalid(
                format!("tripwire.rules[{idx}].metric"),
                format!(
                    "`{}` is read from the app: set `{needs}` in [app]",
                    rule.metric.name
                ),
            ));
        }
    }
    Ok(())
}

/// Picks where the app version comes from: at most one of the file and the command.
fn version_source(
    version_file: Option<PathBuf>,
    version_command: Option<Vec<String>>,
    app_version: String,
) -> Result<VersionSource, ConfigError> {
    match (version_file, version_command) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "version_command",
            "set either version_file or version_command, not both",
        )),
        (Some(path), None) => Ok(VersionSource::File(path)),
        (None, Some(argv)) => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(ConfigError::invalid(
                    "version_command",
                    "must name a program",
                ));
            }
            Ok(VersionSource::Command(argv))
        }
        (None, None) => Ok(VersionSource::Fixed(app_version)),
    }
}

/// Checks the `[actions.NAME]` table `raw`.
fn action(name: &str, raw: RawAction) -> Result<Action, ConfigError> {
    let key = format!("actions.{name}");
    validate_name("action name", name).map_err(|m| ConfigError::invalid(&key, m))?;
    if raw.command.is_empty() || raw.command[0].is_empty() {
        return Err(ConfigError::invalid(
            format!("{key}.command"),
            "must be a non-empty argv, e.g. [\"/usr/local/bin/switch-version\", \"stable\"]",
        ));
    }
    // `{version}` only as a whole argument, never as the program: a value
    // is one argv element, so nothing in it is read as more than that.
    for (idx, arg) in raw.command.iter().enumerate() {
        let whole = arg == VERSION_PLACEHOLDER;
        if (whole && idx == 0) || (!whole && arg.contains(VERSION_PLACEHOLDER)) {
            return Err(ConfigError::invalid(
                format!("{key}.command"),
                format!(
                    "`{VERSION_PLACEHOLDER}` may only be a whole argument after the program, \
                     e.g. [\"/usr/local/bin/switch-version\", \"{VERSION_PLACEHOLDER}\"]; got `{arg}`"
                ),
            ));
        }
    }
    let timeout = config::parse_positive_duration(&format!("{key}.timeout"), &raw.timeout)?;
    Ok(Action {
        argv: raw.command,
        timeout,
        env: raw.env,
        working_dir: raw.working_dir,
    })
}

/// How a cohort setting reads: `beta`, `baseline` or `auto`.
pub fn cohort_name(cohort: Option<Cohort>) -> &'static str {
    match cohort {
        Some(Cohort::Beta) => "beta",
        Some(Cohort::Baseline) => "baseline",
        None => "auto",
    }
}

#[cfg(test)]
mod tests;

//! Flags (`Args`) and the checked run description (`Config`).
//!
//! Everything is checked before any connection is opened; an error names the
//! flag. There is no config file: a load run is described on the command line.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

/// Flags of `rollguard-loadgen`.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Simulated rollguard agents on real gRPC streams: ingest and rollback fan-out figures"
)]
pub(crate) struct Args {
    /// The coordinator's gRPC URL.
    #[arg(
        long,
        env = "ROLLGUARD_COORDINATOR",
        default_value = "http://127.0.0.1:7600"
    )]
    coordinator: String,
    /// Simulated agents (with --ramp: the first step).
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Sampling interval of every simulated agent.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Measurement window (per ramp step), after the warm-up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between the first samples and the start of the window; default 2 intervals, at least 2s.
    #[arg(long, value_parser = humantime::parse_duration)]
    warmup: Option<Duration>,
    /// After the window, how long acks of samples sent in it are still waited
    /// for; default 2 intervals, at least 2s. Later acks count as lag = drain end.
    #[arg(long, value_parser = humantime::parse_duration)]
    drain: Option<Duration>,
    /// After the window, roll the deployment back and measure the fan-out.
    #[arg(long)]
    rollback: bool,
    /// Share of the simulated agents in the beta cohort (rollback targets), 0 to 1;
    /// the others are baseline. Every 1/share-th host id is beta.
    #[arg(long, default_value_t = 0.5)]
    beta_share: f64,
    /// Deployment of every simulated agent.
    #[arg(long, default_value = "loadgen")]
    deployment: String,
    /// Action the simulated agents define (the coordinator's default rollback action is `rollback`).
    #[arg(long, default_value = "rollback")]
    action: String,
    /// HTTP/2 connections shared by the streams (0: one connection per agent,
    /// as a real fleet). Not with --tls-dir: a TLS connection carries one
    /// agent's identity.
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Mutual TLS: a PKI directory made by `rollguardctl pki init` (ca.pem,
    /// ca-key.pem). Each simulated agent presents its own certificate, made
    /// on first use and kept in DIR/agents/HOST_ID.pem for the next run; the
    /// rollback presents DIR/OPERATOR.pem (made too if missing). Needs an
    /// https:// --coordinator.
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// With --tls-dir: the operator name of the control calls (rollback); the
    /// coordinator needs `[auth.roles] NAME = "operator"`.
    #[arg(long, value_name = "NAME", default_value = "loadgen")]
    tls_operator: String,
    /// Compress samples with gzip as the real agent does. Off by default: on a
    /// small machine the loadgen's own compression would take the CPU the
    /// coordinator is being measured with; use it for the wire figure.
    #[arg(long)]
    gzip: bool,
    /// Send every sample whole, as an agent does to a coordinator that takes
    /// no compact samples (to compare the wire figure).
    #[arg(long)]
    whole_samples: bool,
    /// Agents connecting at the same time.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Give up on agents not connected after this long.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// PID of the coordinator, for its CPU and RSS; found from the listening port when unset.
    #[arg(long)]
    coordinator_pid: Option<u32>,
    /// Give up waiting for the rollback's results after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    rollback_timeout: Duration,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Double the agents each step until ingest lag p99 > 1s or acked < 90% of sent.
    #[arg(long)]
    ramp: bool,
    /// Fault mode: keep the agents connected until SIGTERM or SIGINT,
    /// reconnecting with the real agent's backoff and jitter when a stream
    /// ends, running each command at most once; then report the outages
    /// (time until every agent was back) and the commands each agent ran.
    /// Not with --ramp or --rollback.
    #[arg(long)]
    hold: bool,
    /// With --ramp: the largest step.
    #[arg(long, default_value_t = 64_000)]
    ramp_max: usize,
}

/// A checked run description.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) coordinator: String,
    pub(crate) agents: NonZeroUsize,
    pub(crate) interval: Duration,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) drain: Duration,
    pub(crate) rollback: bool,
    pub(crate) beta_share: f64,
    pub(crate) deployment: String,
    pub(crate) action: String,
    /// `None`: one connection per agent.
    pub(crate) connections: Option<NonZeroUsize>,
    /// `Some`: mutual TLS with the certificates of this PKI directory.
    pub(crate) tls_dir: Option<PathBuf>,
    /// Operator name of the control calls with TLS.
    pub(crate) tls_operator: String,
    /// Compress samples with gzip.
    pub(crate) gzip: bool,
    /// Never send compact samples.
    pub(crate) whole_samples: bool,
    pub(crate) connect_concurrency: NonZeroUsize,
    pub(crate) connect_timeout: Duration,
    pub(crate) coordinator_pid: Option<u32>,
    pub(crate) rollback_timeout: Duration,
    pub(crate) json: Option<PathBuf>,
    /// Fault mode (`hold.rs`).
    pub(crate) hold: bool,
    /// `Some(max agents)` in ramp mode.
    pub(crate) ramp_max: Option<usize>,
}

/// The coordinator refuses names longer than this (host ids, deployment).
const MAX_NAME_LEN: usize = 253;
/// Longest name `rollguardctl pki` issues a certificate for.
const MAX_PKI_NAME_LEN: usize = 128;

/// Checks the TLS flags against the URL and the names that become
/// certificate file names and SPIFFE path segments.
fn check_tls(args: &Args) -> anyhow::Result<()> {
    let https = args.coordinator.starts_with("https://");
    let Some(dir) = &args.tls_dir else {
        if https {
            bail!("--coordinator {} needs --tls-dir", args.coordinator);
        }
        return Ok(());
    };
    if !https {
        bail!(
            "--tls-dir needs an https:// --coordinator, not `{}`",
            args.coordinator
        );
    }
    if dir.as_os_str().is_empty() {
        bail!("--tls-dir must not be empty");
    }
    // The coordinator admits a Hello only when its host id is the one the
    // connection's certificate names, so a connection can carry one agent.
    // Several agents on one connection would need a proxy identity (one
    // certificate allowed to speak for many host ids) that the coordinator
    // does not have.
    if args.connections > 0 {
        bail!(
            "--connections cannot be used with --tls-dir: a TLS connection presents one \
             agent certificate and the coordinator refuses a Hello from any other host id, \
             so every simulated agent needs a connection of its own"
        );
    }
    // Host ids are `<deployment>-NNNNNN`: the deployment alone decides whether they are valid names.
    for (flag, name, budget) in [
        ("--deployment", &args.deployment, MAX_PKI_NAME_LEN - 12),
        ("--tls-operator", &args.tls_operator, MAX_PKI_NAME_LEN),
    ] {
        let valid = !name.is_empty()
            && name.len() <= budget
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && name != "."
            && name != ".."
            && name != "ca"
            && !name.ends_with("-key");
        if !valid {
            bail!(
                "{flag} names a certificate with --tls-dir: 1 to {budget} letters, digits, \
                 '.', '-' or '_', and not `ca` nor ending in `-key`"
            );
        }
    }
    Ok(())
}

impl Config {
    /// Checks the flags; the error names the first bad one.
    pub(crate) fn from_args(args: Args) -> anyhow::Result<Config> {
        tonic::transport::Endpoint::from_shared(args.coordinator.clone())
            .with_context(|| format!("--coordinator: `{}` is not a URL", args.coordinator))?;
        let agents = NonZeroUsize::new(args.agents).context("--agents must be at least 1")?;
        // The coordinator accepts intervals from 100ms to 1h in a Hello.
        if args.interval < Duration::from_millis(100) || args.interval > Duration::from_secs(3600) {
            bail!("--interval must be between 100ms and 1h");
        }
        if args.duration < args.interval {
            bail!("--duration must be at least one --interval");
        }
        if !(0.0..=1.0).contains(&args.beta_share) {
            bail!("--beta-share must be between 0 and 1");
        }
        if args.rollback && args.beta_share == 0.0 {
            bail!("--rollback needs beta agents: --beta-share must be above 0");
        }
        for (flag, name) in [
            ("--deployment", &args.deployment),
            ("--action", &args.action),
        ] {
            if name.is_empty()
                || name.len() > MAX_NAME_LEN - 12
                || name.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                bail!(
                    "{flag} must be 1 to {} bytes without spaces",
                    MAX_NAME_LEN - 12
                );
            }
        }
        check_tls(&args)?;
        if args.hold && (args.ramp || args.rollback) {
            bail!("--hold cannot be used with --ramp or --rollback");
        }
        if args.ramp && args.ramp_max < args.agents {
            bail!("--ramp-max must be at least --agents");
        }
        let two_intervals = (args.interval * 2).max(Duration::from_secs(2));
        Ok(Config {
            coordinator: args.coordinator,
            agents,
            interval: args.interval,
            duration: args.duration,
            warmup: args.warmup.unwrap_or(two_intervals),
            drain: args.drain.unwrap_or(two_intervals),
            rollback: args.rollback,
            beta_share: args.beta_share,
            deployment: args.deployment,
            action: args.action,
            connections: NonZeroUsize::new(args.connections),
            tls_dir: args.tls_dir,
            tls_operator: args.tls_operator,
            gzip: args.gzip,
            whole_samples: args.whole_samples,
            connect_concurrency: NonZeroUsize::new(args.connect_concurrency)
                .context("--connect-concurrency must be at least 1")?,
            connect_timeout: args.connect_timeout,
            coordinator_pid: args.coordinator_pid,
            rollback_timeout: args.rollback_timeout,
            json: args.json,
            ramp_max: args.ramp.then_some(args.ramp_max),
            hold: args.hold,
        })
    }

    /// Whether simulated agent `idx` is in the beta cohort. Depends on the
    /// index only, so a host keeps its cohort from one ramp step to the next.
    pub(crate) fn is_beta(&self, idx: usize) -> bool {
        let share = self.beta_share;
        ((idx + 1) as f64 * share).floor() > (idx as f64 * share).floor()
    }

    /// Host id of simulated agent `idx`.
    pub(crate) fn host_id(&self, idx: usize) -> String {
        format!("{}-{idx:06}", self.deployment)
    }
}

#[cfg(test)]
mod tests;

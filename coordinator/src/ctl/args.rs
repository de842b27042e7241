//! rollguardctl's command line: the clap types and the one check made
//! before they parse.
//!
//! Parsing only; what each command does lives in its own module.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// Operate a rollguard fleet: status, agents, rollback, history.
#[derive(Debug, Parser)]
#[command(name = "rollguardctl", version, about)]
pub struct Cli {
    /// Coordinator URL.
    #[arg(
        long,
        global = true,
        env = "ROLLGUARD_COORDINATOR",
        default_value = "http://127.0.0.1:7600"
    )]
    pub coordinator: String,
    /// CA certificate that signed the coordinator's (for an https:// coordinator).
    #[arg(long, global = true, env = "ROLLGUARD_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// This operator's certificate (`rollguardctl pki issue operator NAME`).
    #[arg(long, global = true, env = "ROLLGUARD_CERT", value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// The key of --cert.
    #[arg(long, global = true, env = "ROLLGUARD_KEY", value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// OTLP/gRPC endpoint for this call's trace (env OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, global = true, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The client TLS settings of `--ca`, `--cert` and `--key`: all three or
    /// none, and required for an `https://` coordinator.
    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ClientTlsConfig>> {
        let https = self.coordinator.starts_with("https://");
        match (&self.ca, &self.cert, &self.key) {
            (None, None, None) if !https => Ok(None),
            (Some(ca), Some(cert), Some(key)) => {
                let files = rollguard_proto::tls::ClientFiles { ca, cert, key };
                Ok(Some(files.load()?.config))
            }
            _ => anyhow::bail!(
                "an https:// coordinator needs --ca, --cert and --key together \
                 (or ROLLGUARD_CA, ROLLGUARD_CERT, ROLLGUARD_KEY)"
            ),
        }
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for scripts.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per deployment and cohort: hosts connected/stale and aggregate figures.
    Status {
        /// Only this deployment.
        #[arg(long)]
        deployment: Option<String>,
        /// Keep redrawing from the server's stream.
        #[arg(long)]
        watch: bool,
    },
    /// One row per host with its latest figures.
    Agents {
        /// Only this deployment.
        #[arg(long)]
        deployment: Option<String>,
    },
    /// Every deployment with its policy (rules, rounds, dry run) and arming;
    /// one only hosts announce shows as having no policy.
    Deployments,
    /// Roll back DEPLOYMENT's beta hosts now (allowed whether armed or not).
    Rollback {
        /// The deployment to roll back.
        deployment: String,
        /// Why; kept in the audit history.
        #[arg(long)]
        reason: String,
        /// Wait for each host's result; exit non-zero unless all succeeded.
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// Each target host's result of a rollback (its id is in `history` and
    /// `why`); exits non-zero unless every host succeeded.
    Results {
        /// The rollback's command id.
        command_id: String,
        /// Wait until every host has a final result (or --timeout passes).
        #[arg(long)]
        wait: bool,
        /// How long --wait waits.
        #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The audit history of changes (rollbacks and the like).
    History {
        /// Only this deployment.
        #[arg(long)]
        deployment: Option<String>,
        /// At most this many entries (newest).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// The last rounds' verdicts of DEPLOYMENT with each rule's value,
    /// baseline, limit and outcome: why it rolled back (or why not).
    Why {
        /// The deployment to explain.
        deployment: String,
        /// How many rounds, newest last.
        #[arg(long, default_value_t = 10)]
        rounds: u32,
    },
    /// Let the policy decide a rollback of DEPLOYMENT again (resets the count).
    Rearm {
        /// The deployment to re-arm.
        deployment: String,
        /// Why; kept in the audit history.
        #[arg(long, default_value = "re-armed by an operator")]
        reason: String,
    },
    /// Beta vs baseline over a window: error rate, p99 latency, CPU, memory.
    Report {
        /// The deployment to report on.
        deployment: String,
        /// How far back.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        window: Duration,
    },
    /// Roll a version out to DEPLOYMENT's hosts in phases (preflight,
    /// start, status, approve, pause, resume, abort, retro, history).
    Rollout(RolloutArgs),
    /// Run a whole local fleet (coordinator and three agents) and a rollback.
    Demo(DemoArgs),
    /// Make the fleet's CA and certificates for mutual TLS (no coordinator
    /// needed).
    Pki(PkiArgs),
}

/// `rollguardctl rollout`.
#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub(crate) command: RolloutCommand,
}

/// The flags of a rollout's version and phases.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RolloutPlan {
    /// The deployment to roll out to.
    pub(crate) deployment: String,
    /// The version the agents' promote action installs.
    #[arg(long)]
    pub(crate) version: String,
    /// Cumulative percent of hosts per phase (default: the deployment's `[rollout] phases`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) phases: Vec<u32>,
    /// Start even with a critical impact, data at risk or a manual
    /// fallback; the reason is audited.
    #[arg(long, value_name = "REASON", default_value = "")]
    pub(crate) accept_risk: String,
}

/// What `rollguardctl rollout` does.
#[derive(Debug, Subcommand)]
pub(crate) enum RolloutCommand {
    /// The blast-radius checklist, one line per check; exit 0 only if all pass.
    Preflight(RolloutPlan),
    /// Run the preflight and, if it passes, start (or schedule) the rollout.
    Start {
        #[command(flatten)]
        plan: RolloutPlan,
        /// Start at this time (RFC 3339) instead of now; the team is briefed before.
        #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
        at: Option<std::time::SystemTime>,
    },
    /// State, phase, hosts, what the gate waits for, and beta vs baseline.
    Status { deployment: String },
    /// Let a manual rollout's next phase start.
    Approve {
        deployment: String,
        #[arg(long, default_value = "approved by an operator")]
        reason: String,
    },
    /// Start no new phase until `resume` (failures still roll back).
    Pause {
        deployment: String,
        #[arg(long, default_value = "paused by an operator")]
        reason: String,
    },
    /// Go on after `pause`.
    Resume {
        deployment: String,
        #[arg(long, default_value = "resumed by an operator")]
        reason: String,
    },
    /// Stop the rollout and roll every promoted host back.
    Abort {
        deployment: String,
        #[arg(long)]
        reason: String,
    },
    /// The retrospective: every phase beta vs baseline, time in each, every decision.
    Retro { deployment: String },
    /// Every rollout of the deployment.
    History { deployment: String },
}

/// Returns true when the arguments ask for `-o json` (for errors found
/// before they parse).
pub fn wants_json(args: impl IntoIterator<Item = String>) -> bool {
    let mut previous_was_flag = false;
    for arg in args {
        if previous_was_flag && arg == "json" {
            return true;
        }
        if matches!(arg.as_str(), "-ojson" | "-o=json" | "--output=json") {
            return true;
        }
        previous_was_flag = matches!(arg.as_str(), "-o" | "--output");
    }
    false
}

/// Flags of `rollguardctl demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of beta hosts.
    #[arg(long, default_value_t = 2)]
    pub(super) beta: u32,
    /// Number of baseline hosts.
    #[arg(long, default_value_t = 1)]
    pub(super) baseline: u32,
    /// Keep the fleet running after the rollback until Ctrl-C.
    #[arg(long)]
    pub(super) keep_running: bool,
    /// Keep the temporary directory (logs, store, evidence) afterwards.
    #[arg(long)]
    pub(super) keep_data: bool,
    /// How long the beta app behaves before it starts failing.
    #[arg(long, default_value = "12s")]
    pub(super) fail_after: String,
    /// Another scenario than the rollback of a beta someone else installed.
    #[command(subcommand)]
    pub(super) scenario: Option<DemoScenario>,
}

/// `rollguardctl demo SCENARIO`.
#[derive(Debug, Subcommand)]
pub(crate) enum DemoScenario {
    /// A rollout through 5 → 25 → 90 % of `auto` hosts, caught at 90 % and
    /// rolled back, with the team's channel shown (under two minutes).
    Rollout {
        /// Number of hosts.
        #[arg(long, default_value_t = 20)]
        hosts: u32,
    },
}

/// `rollguardctl pki`: its subcommands.
#[derive(Debug, clap::Args)]
pub struct PkiArgs {
    #[command(subcommand)]
    pub(super) command: PkiCommand,
}

/// What `rollguardctl pki` does.
#[derive(Debug, Subcommand)]
pub(crate) enum PkiCommand {
    /// Make a new CA: DIR/ca.pem and DIR/ca-key.pem (refuses to replace one).
    Init {
        /// Where the CA goes (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// How long the CA is valid (e.g. 3650d, 10y); default 3650 days.
        #[arg(long, value_parser = humantime::parse_duration)]
        valid_for: Option<Duration>,
    },
    /// Issue a certificate and key signed by the CA in --dir.
    #[command(subcommand)]
    Issue(IssueKind),
    /// Print a certificate's identity, SANs, serial, validity and usages.
    Show {
        /// A PEM certificate file.
        file: PathBuf,
    },
}

/// The kinds of certificate `pki issue` makes.
#[derive(Debug, Subcommand)]
pub(crate) enum IssueKind {
    /// A server certificate for the coordinator: DIR/NAME.pem and
    /// DIR/NAME-key.pem (serverAuth; default 365 days).
    Coordinator {
        /// File name and subject CN.
        name: String,
        /// A DNS name or IP address clients dial (repeatable; at least one).
        #[arg(long = "san", value_name = "HOST_OR_IP", required = true)]
        sans: Vec<String>,
        #[command(flatten)]
        flags: IssueFlags,
    },
    /// A client certificate for a host's agent: DIR/HOST_ID.pem and
    /// DIR/HOST_ID-key.pem (clientAuth; default 90 days).
    Agent {
        /// The host id the agent announces.
        host_id: String,
        #[command(flatten)]
        flags: IssueFlags,
    },
    /// A client certificate for an operator or tool: DIR/NAME.pem and
    /// DIR/NAME-key.pem (clientAuth; default 90 days); with --p12 also
    /// DIR/NAME.p12 for a browser.
    Operator {
        /// Who calls the control API.
        name: String,
        #[command(flatten)]
        flags: IssueFlags,
        #[command(flatten)]
        bundle: BundleFlags,
    },
}

/// Flags every `pki issue` takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct IssueFlags {
    /// The directory holding ca.pem and ca-key.pem; the new files go there too.
    #[arg(long)]
    pub(super) dir: PathBuf,
    /// How long the certificate is valid (e.g. 90d, 1y, 10m).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(super) valid_for: Option<Duration>,
    /// Replace an existing certificate and key of that name.
    #[arg(long)]
    pub(super) force: bool,
    /// Issue one that expired yesterday (for tests of refusal).
    #[arg(long, hide = true, conflicts_with = "valid_for")]
    pub(super) expired: bool,
}

/// The PKCS#12 bundle only `pki issue operator` writes: a browser presents
/// an operator's certificate to the dashboard; agents and the coordinator
/// read PEM files.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BundleFlags {
    /// Also write DIR/NAME.p12 (certificate, key and CA; AES-256-CBC with
    /// PBKDF2) to import into a browser.
    #[arg(long, requires = "p12_password_file")]
    pub(super) p12: bool,
    /// The .p12's password: the first line of FILE (keep it chmod 600).
    #[arg(long, value_name = "FILE", requires = "p12")]
    pub(super) p12_password_file: Option<PathBuf>,
}

#[cfg(test)]
mod tests;

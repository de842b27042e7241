//! `rollguard-demo-app`: a small real HTTP server that plays the beta
//! application for `rollguardctl demo` and the end-to-end tests.
//!
//! It serves Prometheus metrics on `/metrics` and a probe on `/healthz`. While
//! the version file holds the beta version, the app turns unhealthy
//! `--fail-after` after that version was installed; writing another version
//! (what a rollback does) makes it healthy again. A control file can force an
//! error rate or latency on every version, to simulate a fleet-wide incident.
#![forbid(unsafe_code)]

mod app;
mod sim;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::app::App;
use crate::sim::{BetaProfile, Sim};

/// Flags of the demo app.
#[derive(Debug, Parser)]
#[command(version, about = "A demo HTTP app whose beta build starts failing")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
    /// After binding, write the bound `ip:port` here (atomically, via PATH.tmp).
    #[arg(long)]
    addr_file: Option<PathBuf>,
    /// File holding the installed version; re-read every 200 ms.
    #[arg(long)]
    version_file: PathBuf,
    /// The version that fails once it has been installed for `--fail-after`.
    #[arg(long, default_value = "2.0.0-beta.3")]
    beta_version: String,
    /// How long the beta stays healthy after it is installed (e.g. 20s, 1m).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    fail_after: Duration,
    /// Error rate of the failing beta, in [0, 1].
    #[arg(long, default_value_t = 0.5, value_parser = parse_rate)]
    fail_error_rate: f64,
    /// Multiplier of the mean latency of the failing beta.
    #[arg(long, default_value_t = 4.0, value_parser = parse_factor)]
    fail_latency_factor: f64,
    /// Optional `error_rate=..` / `latency_ms=..` override file, re-read every 200 ms.
    #[arg(long)]
    control_file: Option<PathBuf>,
    /// Simulated requests per second.
    #[arg(long, default_value_t = 200)]
    rps: u32,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err("expected a number in [0, 1]".to_owned()),
    }
}

fn parse_factor(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(factor) if factor.is_finite() && factor > 0.0 => Ok(factor),
        _ => Err("expected a positive number".to_owned()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let _ = err.print();
            // EX_USAGE for bad flags; --help and --version are not errors.
            return if err.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let _telemetry = rollguard_proto::otel::init("rollguard-demo-app", "info", None);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            error!(error = %format_args!("{err:#}"), "demo app failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let version = tokio::fs::read_to_string(&args.version_file)
        .await
        .with_context(|| format!("reading version file {}", args.version_file.display()))?;
    let beta = BetaProfile {
        version: args.beta_version,
        fail_after: args.fail_after,
        error_rate: args.fail_error_rate,
        latency_factor: args.fail_latency_factor,
    };
    let sim = Sim::new(beta, args.rps, version.trim().to_owned(), Instant::now());
    let app = Arc::new(App::new(sim, args.version_file, args.control_file));

    let shutdown = CancellationToken::new();
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let local_addr = listener.local_addr().context("reading the bound address")?;
    if let Some(addr_file) = &args.addr_file {
        write_atomically(addr_file, &format!("{local_addr}\n"))
            .with_context(|| format!("writing address file {}", addr_file.display()))?;
    }
    info!(%local_addr, version = %version.trim(), "demo app listening");

    let signal_shutdown = shutdown.clone();
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = sigterm.recv() => "SIGTERM",
            _ = sigint.recv() => "SIGINT",
        };
        info!(signal = name, "shutting down");
        signal_shutdown.cancel();
    });
    app::run(listener, app, shutdown).await;
    info!("demo app stopped");
    Ok(())
}

/// Writes `contents` to `path.tmp` and renames it over `path`, so that a
/// reader sees either no file or the whole address.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut tmp_path = path.as_os_str().to_owned();
    tmp_path.push(".tmp");
    std::fs::write(&tmp_path, contents)?;
    std::fs::rename(&tmp_path, path)
}

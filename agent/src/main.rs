//! `rollguard-agent`: parse flags, load config, run until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rollguard_agent::config::{RawConfig, ENV_PREFIX};
use rollguard_common::config::Sources;
use tokio_util::sync::CancellationToken;

/// The rollguard agent: streams host health to the coordinator and runs the
/// rollback actions this host defines.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (optional; no file means defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Coordinator URL [default: http://127.0.0.1:7600].
    #[arg(long, value_name = "URL")]
    coordinator: Option<String>,
    /// Host identity [default: hostname].
    #[arg(long)]
    host_id: Option<String>,
    /// Deployment this host belongs to (required here, in the file or the env).
    #[arg(long, value_name = "NAME")]
    deployment: Option<String>,
    /// `beta`, `baseline`, or `auto` (the default): the coordinator decides
    /// (beta while a rollout has promoted this host, baseline otherwise).
    #[arg(long)]
    cohort: Option<String>,
    /// Version of the application under guard.
    #[arg(long, value_name = "STRING")]
    app_version: Option<String>,
    /// Sampling interval [default: 1s].
    #[arg(long, value_name = "DURATION")]
    interval: Option<String>,
    /// Directory of the command journal [default: /var/lib/rollguard-agent].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Check the config, print what it makes the agent do, and exit (0 when
    /// valid, 64 naming the bad key otherwise).
    #[arg(long)]
    check_config: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let overrides: Vec<(&str, String)> = [
        ("coordinator", cli.coordinator),
        ("host_id", cli.host_id),
        ("deployment", cli.deployment),
        ("cohort", cli.cohort),
        ("app_version", cli.app_version),
        ("interval", cli.interval),
        ("state_dir", cli.state_dir.map(|d| d.display().to_string())),
    ]
    .into_iter()
    .filter_map(|(key, value)| value.map(|v| (key, v)))
    .collect();
    let config = match RawConfig::load(Sources {
        file: cli.config.as_deref(),
        env_prefix: ENV_PREFIX,
        env: None,
        overrides,
    })
    .and_then(RawConfig::validate)
    {
        Ok(config) => config,
        Err(err) => {
            eprintln!("rollguard-agent: bad config: {err}");
            return ExitCode::from(64);
        }
    };
    if cli.check_config {
        println!("config OK: {}", config.summary());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rollguard-agent: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        let endpoint = rollguard_proto::otel::resolve_endpoint(config.otlp_endpoint.as_deref());
        let telemetry = rollguard_proto::otel::init("rollguard-agent", "info", endpoint.as_deref());
        let signal_token = shutdown.clone();
        tokio::spawn(async move {
            rollguard_proto::process::shutdown_signal().await;
            signal_token.cancel();
        });
        tracing::info!(
            host_id = %config.host_id,
            deployment = %config.deployment,
            cohort = rollguard_agent::config::cohort_name(config.cohort),
            coordinator = %config.coordinator,
            actions = ?config.actions.keys().collect::<Vec<_>>(),
            "agent starting"
        );
        let result = rollguard_agent::run(config, shutdown).await;
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rollguard-agent: {err:#}");
            ExitCode::FAILURE
        }
    }
}

//! `rollguard-coordinator`: parse flags, load config, bind, serve until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use rollguard_common::config::Sources;
use rollguard_coordinator::config::{RawConfig, ENV_PREFIX};
use rollguard_coordinator::ReloadAuth;

/// The rollguard coordinator: aggregates fleet health, stores decisions and
/// sends rollbacks to beta hosts.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file (optional; no file means defaults).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:7600].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Allow a non-loopback --listen while there is no TLS or authentication.
    #[arg(long)]
    insecure_listen: bool,
    /// Certificate of the gRPC listener (PEM); with --tls-key and
    /// --tls-client-ca it turns on mutual TLS (config `[tls] cert`).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert (config `[tls] key`).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// CA that signs every caller's certificate (config `[tls] client_ca`).
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,
    /// HTTP address for /metrics, /healthz, /readyz and the dashboard
    /// [default: 127.0.0.1:7601]. Off loopback it serves HTTPS with [tls].
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<String>,
    /// Allow a non-loopback --http-listen without [tls] (plain HTTP).
    #[arg(long)]
    insecure_http: bool,
    /// Directory of the embedded store [default: ./rollguard-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Check the config, print a summary of it, and exit (0 when valid, 64
    /// naming the bad key otherwise). Binds nothing, opens no store.
    #[arg(long)]
    check_config: bool,
}

/// mimalloc rather than glibc's allocator (issue 15): a fleet's streams
/// decode a great many small messages, and glibc's malloc, free and
/// consolidation were a third of prost's decode time at 100,000 agents.
/// Built without transparent huge pages (`no_thp`): with them, idle
/// connections' buffers kept whole 2 MiB pages resident (57 rather than 43
/// KiB per agent on connections of their own).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Vec::new();
    if let Some(listen) = cli.listen {
        overrides.push(("listen", listen));
    }
    if let Some(http_listen) = cli.http_listen {
        overrides.push(("http_listen", http_listen));
    }
    if cli.insecure_listen {
        overrides.push(("insecure_listen", "true".to_owned()));
    }
    if cli.insecure_http {
        overrides.push(("insecure_http", "true".to_owned()));
    }
    if let Some(dir) = cli.data_dir {
        overrides.push(("data_dir", dir.display().to_string()));
    }
    for (key, path) in [
        ("tls.cert", &cli.tls_cert),
        ("tls.key", &cli.tls_key),
        ("tls.client_ca", &cli.tls_client_ca),
    ] {
        if let Some(path) = path {
            overrides.push((key, path.display().to_string()));
        }
    }
    let file = cli.config;
    let config = match load(file.as_deref(), &overrides).and_then(RawConfig::validate) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("rollguard-coordinator: bad config: {err}");
            return ExitCode::from(64);
        }
    };
    if cli.check_config {
        let deployments: Vec<String> = config
            .deployments
            .iter()
            .map(|(name, policy)| format!("{name} ({} rules)", policy.rules.len()))
            .collect();
        println!(
            "config OK: listen {}, http {}, data dir {}; deployments: {}",
            config.listen,
            config.http_listen,
            config.data_dir.display(),
            if deployments.is_empty() {
                "none configured (status and manual rollback only)".to_owned()
            } else {
                deployments.join(", ")
            }
        );
        return ExitCode::SUCCESS;
    }
    // SIGHUP reads [auth] again from the same file, env and flags.
    let reload_auth: ReloadAuth =
        Box::new(move || load(file.as_deref(), &overrides).and_then(|raw| raw.auth.validate()));
    match serve(config, reload_auth) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rollguard-coordinator: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the config's layers: defaults, the file, env, then the flags.
fn load(
    file: Option<&std::path::Path>,
    overrides: &[(&'static str, String)],
) -> Result<RawConfig, rollguard_common::config::ConfigError> {
    RawConfig::load(Sources {
        file,
        env_prefix: ENV_PREFIX,
        env: None,
        overrides: overrides.to_vec(),
    })
}

/// How often (in task polls) a runtime worker takes a task from the
/// global queue before its own; measured with `bench/run.sh` (issue 15).
const GLOBAL_QUEUE_INTERVAL: u32 = 4;
/// How often (in task polls) a worker polls the sockets: the connections'
/// reads and writes wait on it while stream tasks fill the queues.
const EVENT_INTERVAL: u32 = 8;

fn serve(
    config: rollguard_coordinator::config::Config,
    reload_auth: ReloadAuth,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // A fan-out wakes one HTTP/2 stream task per target, most of them
        // queued on the runtime's global queue, while the answers keep each
        // worker's local queue busy. Left to tune itself, a worker looks at
        // the global queue once in up to 127 polls, and the last targets
        // wait behind the first ones' answers (issue 15).
        .global_queue_interval(GLOBAL_QUEUE_INTERVAL)
        .event_interval(EVENT_INTERVAL)
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let endpoint = rollguard_proto::otel::resolve_endpoint(config.otlp_endpoint.as_deref());
        let telemetry =
            rollguard_proto::otel::init("rollguard-coordinator", "info", endpoint.as_deref());
        let result = serve_inner(config, reload_auth).await;
        // Spans are flushed last, after every stream and task has stopped.
        telemetry.shutdown().await;
        result
    })
}

/// Listen backlog of the gRPC listener: room for a whole fleet reconnecting
/// at once after a restart (issue 11's reconnect storm). tokio's `bind`
/// uses 1024, and a SYN dropped from a full queue costs its agent a 1 s, 3 s,
/// 7 s retransmit; the kernel caps this at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

fn bind_with_backlog(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    // As std's bind does: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn serve_inner(
    config: rollguard_coordinator::config::Config,
    reload_auth: ReloadAuth,
) -> anyhow::Result<()> {
    {
        rollguard_coordinator::raise_nofile_limit();
        let listener = bind_with_backlog(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let http_listener = tokio::net::TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("binding {}", config.http_listen))?;
        rollguard_coordinator::run(
            config,
            listener,
            http_listener,
            rollguard_proto::process::shutdown_signal(),
            reload_auth,
        )
        .await
        .context("running the coordinator")
    }
}

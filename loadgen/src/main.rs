//! `rollguard-loadgen`: opens N simulated agents as real gRPC streams against
//! a real coordinator and measures ingest (samples/s acked, ingest lag,
//! coordinator CPU and RSS, bytes on the wire) and, with `--rollback`, the
//! fan-out of a rollback command and the time until every result is acked.
//! `--ramp` doubles N until the coordinator falls behind.
//!
//! It is a measuring tool, not a test: it asserts nothing and exits 0 when
//! the run completed, whatever the figures. Bad flags exit 64, a run that
//! could not be carried out (coordinator unreachable) exits 1.
#![forbid(unsafe_code)]

mod certs;
mod config;
mod hold;
mod procfs;
mod report;
mod rollback;
mod sample;
mod sim;
mod stats;
mod step;

use std::process::ExitCode;

use clap::Parser;

use crate::config::{Args, Config};

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("rollguard-loadgen: {err:#}");
            return ExitCode::from(64);
        }
    };
    sim::GZIP.store(config.gzip, std::sync::atomic::Ordering::Relaxed);
    sim::WHOLE_SAMPLES.store(config.whole_samples, std::sync::atomic::Ordering::Relaxed);
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        use tracing_subscriber::Layer as _;
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_filter(rollguard_proto::otel::log_filter(
                        "warn,rollguard_loadgen=info",
                    )),
            )
            .init();
    }
    procfs::raise_nofile_limit();
    // Multi-thread: one task per simulated agent, spread over every core.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rollguard-loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(step::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("rollguard-loadgen: {err:#}");
            ExitCode::FAILURE
        }
    }
}

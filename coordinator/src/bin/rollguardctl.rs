//! `rollguardctl`: the operator's command-line client.

use std::process::ExitCode;

use clap::Parser;
use rollguard_coordinator::ctl::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("rollguardctl: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(async {
        let endpoint = rollguard_proto::otel::resolve_endpoint(cli.otlp_endpoint.as_deref());
        let telemetry = rollguard_proto::otel::init("rollguardctl", "warn", endpoint.as_deref());
        let code = ctl::run(cli).await;
        // Flush this call's spans; without an endpoint this returns at once.
        telemetry.shutdown().await;
        code
    }))
}

//! `rollguardctl`: the operator's command-line client.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rollguard_coordinator::ctl::{self, Cli};

/// How long a call may wait to hand its spans to the collector at exit.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // With -o json, stdout holds one JSON document whatever happens.
            if err.use_stderr() && ctl::wants_json(std::env::args()) {
                println!("{}", serde_json::json!({ "error": err.to_string().trim() }));
            }
            err.exit();
        }
    };
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
        telemetry.shutdown_within(FLUSH_LIMIT).await;
        code
    }))
}

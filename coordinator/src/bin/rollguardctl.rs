//! `rollguardctl`: the operator's command-line client.

use std::process::ExitCode;

use clap::Parser;
use rollguard_coordinator::ctl::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    rollguard_common::telemetry::init("warn");
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
    ExitCode::from(runtime.block_on(ctl::run(cli)))
}

//! rollguardctl: the operator's gRPC client.
//!
//! stdout carries only the command's output (with `-o json`, exactly one JSON
//! document, also on failure); logs go to stderr.
//!
//! This module only dispatches: the command line is in `args`, the
//! connection in `connect`, each subcommand in a module of its own name, and
//! the judgement printing that `status`, `why` and the demo share in
//! `judgement`. The modules form a tree: commands use `args`, `connect`,
//! `output` and each other's printers, never this module.

mod agents;
mod args;
mod connect;
mod demo;
mod deployments;
mod history;
mod judgement;
mod output;
mod pki;
mod rearm;
mod report;
mod results;
mod rollback;
mod rollout;
mod status;
mod why;

use serde_json::json;

pub use self::args::{wants_json, Cli, Command, Format};
pub use self::connect::connect;
pub use self::results::wait_for_results;

/// Runs the parsed command; returns the process exit code.
pub async fn run(cli: Cli) -> u8 {
    let format = cli.output;
    match dispatch(cli).await {
        Ok(code) => code,
        Err(err) => {
            if format == Format::Json {
                println!("{}", json!({ "error": format!("{err:#}") }));
            }
            eprintln!("rollguardctl: {err:#}");
            1
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    if let Command::Demo(args) = cli.command {
        return demo::run(args).await;
    }
    // Certificates are made locally: no coordinator to connect to.
    if let Command::Pki(args) = cli.command {
        return pki::run(args, cli.output);
    }
    let mut client = connect(&cli.coordinator, cli.tls()?).await?;
    let format = cli.output;
    match cli.command {
        Command::Status { deployment, watch } => {
            status::status(&mut client, format, deployment.unwrap_or_default(), watch).await
        }
        Command::Agents { deployment } => {
            agents::agents(&mut client, format, deployment.unwrap_or_default()).await
        }
        Command::Deployments => deployments::deployments(&mut client, format).await,
        Command::Rollback {
            deployment,
            reason,
            wait,
            timeout,
        } => rollback::rollback(&mut client, format, deployment, reason, wait, timeout).await,
        Command::Results {
            command_id,
            wait,
            timeout,
        } => results::results(&mut client, format, &command_id, wait, timeout).await,
        Command::History { deployment, limit } => {
            history::history(&mut client, format, deployment.unwrap_or_default(), limit).await
        }
        Command::Why { deployment, rounds } => {
            why::why(&mut client, format, deployment, rounds).await
        }
        Command::Rearm { deployment, reason } => {
            rearm::rearm(&mut client, format, deployment, reason).await
        }
        Command::Report { deployment, window } => {
            report::report(&mut client, format, deployment, window).await
        }
        Command::Rollout(args) => rollout::run(&mut client, format, args.command).await,
        Command::Demo(_) | Command::Pki(_) => unreachable!("handled above"),
    }
}

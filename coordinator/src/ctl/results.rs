//! `rollguardctl results`: each target host's result of a rollback, and the
//! polling that `rollback --wait` and the demo share.

use std::time::{Duration, Instant};

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{request, status_error};
use super::output::{fmt_time, table};

pub(crate) async fn results(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    command_id: &str,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<u8> {
    let timeout = if wait { timeout } else { Duration::ZERO };
    let command = wait_for_results(client, command_id, timeout).await?;
    print_results(&command, format);
    Ok(if all_succeeded(&command) { 0 } else { 1 })
}

/// True when the command reached at least one host and every host succeeded.
pub(crate) fn all_succeeded(command: &pb::GetCommandResponse) -> bool {
    !command.results.is_empty()
        && command
            .results
            .iter()
            .all(|r| r.checked_status().ok() == Some(rollguard_common::CommandStatus::Succeeded))
}

/// Polls the command until every target has a final result or `timeout` passes.
pub async fn wait_for_results(
    client: &mut ControlServiceClient<Channel>,
    command_id: &str,
    timeout: Duration,
) -> anyhow::Result<pb::GetCommandResponse> {
    let deadline = Instant::now() + timeout;
    loop {
        let command = client
            .get_command(request(pb::GetCommandRequest {
                command_id: command_id.to_owned(),
            }))
            .await
            .map_err(status_error)?
            .into_inner();
        let done = command
            .results
            .iter()
            .all(|r| r.checked_status().map(|s| s.is_final()).unwrap_or(false));
        if done || Instant::now() >= deadline {
            return Ok(command);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn print_results(command: &pb::GetCommandResponse, format: Format) {
    let status_name =
        |r: &pb::HostResult| r.checked_status().map(|s| s.as_str()).unwrap_or("unknown");
    // A failed run says what follows it: a retry, or a person.
    let status_line = |r: &pb::HostResult| {
        if r.needs_attention {
            format!("{} (needs attention)", status_name(r))
        } else if !r.retried_by.is_empty() {
            format!("{} (retried by {})", status_name(r), r.retried_by)
        } else {
            status_name(r).to_owned()
        }
    };
    match format {
        Format::Json => {
            let results: Vec<Value> = command
                .results
                .iter()
                .map(|r| {
                    json!({
                        "host_id": r.host_id,
                        "status": status_name(r),
                        "exit_code": r.exit_code,
                        "reason": r.reason,
                        "output_tail": r.output_tail,
                        "started_at": r.started_at.as_ref().map(fmt_time),
                        "duration_ms": duration_ms(r),
                        "needs_attention": r.needs_attention,
                        "retried_by": (!r.retried_by.is_empty()).then_some(&r.retried_by),
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "command_id": command.command_id,
                    "deployment": command.deployment,
                    "action": command.action,
                    "retry_of": (!command.retry_of.is_empty()).then_some(&command.retry_of),
                    "attempt": command.attempt,
                    "local": command.local,
                    "results": results,
                })
            );
        }
        Format::Table => {
            if command.local {
                let host = command.results.first().map_or("?", |r| r.host_id.as_str());
                println!(
                    "local rollback {} of {} by host {host} (its tripwire, while the coordinator was unreachable): action `{}`",
                    command.command_id, command.deployment, command.action
                );
                println!("why: {}", command.reason);
            } else {
                println!(
                    "rollback {} of {}: action `{}`",
                    command.command_id, command.deployment, command.action
                );
            }
            let mut rows = vec![
                ["HOST", "STATUS", "EXIT", "TOOK", "REASON", "OUTPUT (tail)"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for r in &command.results {
                rows.push(vec![
                    r.host_id.clone(),
                    status_line(r),
                    r.exit_code
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                    duration_ms(r).map_or_else(|| "-".to_owned(), |ms| format!("{ms} ms")),
                    r.reason.clone(),
                    r.output_tail.lines().last().unwrap_or("").to_owned(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
}

/// How long the host's action ran, once it finished.
fn duration_ms(result: &pb::HostResult) -> Option<u64> {
    let finished = result
        .checked_status()
        .is_ok_and(|s| s.is_final() && s != rollguard_common::CommandStatus::Rejected);
    let took = rollguard_proto::duration_from_pb("duration", result.duration.as_ref()?).ok()?;
    finished.then(|| u64::try_from(took.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;

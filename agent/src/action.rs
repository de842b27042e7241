//! Running a named action: argv without a shell, a timeout, and the tail of
//! its combined output.

use std::process::Stdio;
use std::time::{Duration, Instant};

use rollguard_common::CommandStatus;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::config::Action;

/// Bytes of output kept (the end of it).
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// How an action ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    pub status: CommandStatus,
    pub exit_code: Option<i32>,
    pub reason: String,
    pub output_tail: String,
    pub duration: Duration,
}

/// Runs `action` to completion or its timeout (then kills it).
pub async fn run(action: &Action, default_dir: &std::path::Path) -> RunResult {
    let started = Instant::now();
    let mut command = Command::new(&action.argv[0]);
    command
        .args(&action.argv[1..])
        .envs(&action.env)
        .current_dir(action.working_dir.as_deref().unwrap_or(default_dir))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => {
            return RunResult {
                status: CommandStatus::Failed,
                exit_code: None,
                reason: format!("cannot start `{}`: {err}", action.argv[0]),
                output_tail: String::new(),
                duration: started.elapsed(),
            }
        }
    };
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let output = async {
        let (a, b) = tokio::join!(read_all(stdout), read_all(stderr));
        let mut combined = a;
        combined.extend_from_slice(&b);
        combined
    };
    let waited = tokio::time::timeout(action.timeout, async {
        let (status, output) = tokio::join!(child.wait(), output);
        (status, output)
    })
    .await;
    match waited {
        Ok((Ok(status), output)) => {
            let exit_code = status.code();
            let (status_kind, reason) = if status.success() {
                (CommandStatus::Succeeded, String::new())
            } else {
                match exit_code {
                    Some(code) => (CommandStatus::Failed, format!("exited with status {code}")),
                    None => (
                        CommandStatus::Failed,
                        format!("ended by a signal ({status})"),
                    ),
                }
            };
            RunResult {
                status: status_kind,
                exit_code,
                reason,
                output_tail: tail(&output),
                duration: started.elapsed(),
            }
        }
        Ok((Err(err), output)) => RunResult {
            status: CommandStatus::Failed,
            exit_code: None,
            reason: format!("cannot wait for the action: {err}"),
            output_tail: tail(&output),
            duration: started.elapsed(),
        },
        Err(_) => {
            let _ = child.kill().await;
            RunResult {
                status: CommandStatus::Failed,
                exit_code: None,
                reason: format!("timed out after {}", humantime_secs(action.timeout)),
                output_tail: String::new(),
                duration: started.elapsed(),
            }
        }
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Reads a pipe to its end, keeping only the last [`OUTPUT_TAIL_BYTES`].
async fn read_all(pipe: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut pipe) = pipe else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_TAIL_BYTES {
                    kept.drain(..kept.len() - OUTPUT_TAIL_BYTES);
                }
            }
        }
    }
    kept
}

fn tail(output: &[u8]) -> String {
    let start = output.len().saturating_sub(OUTPUT_TAIL_BYTES);
    String::from_utf8_lossy(&output[start..]).into_owned()
}

#[cfg(test)]
mod tests;

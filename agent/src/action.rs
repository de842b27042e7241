//! Running a named action: argv without a shell, a timeout, and the tail of
//! its combined output.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rollguard_common::CommandStatus;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::config::Action;

/// Bytes of output kept (the end of it).
pub const OUTPUT_TAIL_BYTES: usize = 4096;
/// How long output is still read after the action ended.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

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
    // The pipes are drained into shared buffers while the action runs (a
    // full pipe would block it), so that what was read is kept whatever ends it.
    let (out_buf, err_buf) = (Arc::default(), Arc::default());
    let mut readers = [
        tokio::spawn(read_into(child.stdout.take(), Arc::clone(&out_buf))),
        tokio::spawn(read_into(child.stderr.take(), Arc::clone(&err_buf))),
    ];
    let waited = tokio::time::timeout(action.timeout, child.wait()).await;
    if waited.is_err() {
        let _ = child.kill().await;
    }
    // The pipes close when the action exits, unless it left a background
    // process holding them (a restarted daemon): the action is over all the
    // same, so its output is what came within a short grace.
    let _ = tokio::time::timeout(OUTPUT_GRACE, async {
        for reader in &mut readers {
            let _ = reader.await;
        }
    })
    .await;
    for reader in &readers {
        reader.abort();
    }
    let output_tail = {
        let mut combined = take(&out_buf);
        combined.extend_from_slice(&take(&err_buf));
        tail(&combined)
    };
    let (status, exit_code, reason) = match waited {
        Ok(Ok(status)) => {
            let exit_code = status.code();
            if status.success() {
                (CommandStatus::Succeeded, exit_code, String::new())
            } else {
                let reason = match exit_code {
                    Some(code) => format!("exited with status {code}"),
                    None => format!("ended by a signal ({status})"),
                };
                (CommandStatus::Failed, exit_code, reason)
            }
        }
        Ok(Err(err)) => (
            CommandStatus::Failed,
            None,
            format!("cannot wait for the action: {err}"),
        ),
        Err(_) => (
            CommandStatus::Failed,
            None,
            format!("timed out after {}", humantime_secs(action.timeout)),
        ),
    };
    RunResult {
        status,
        exit_code,
        reason,
        output_tail,
        duration: started.elapsed(),
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Reads a pipe to its end into `kept`, keeping only the last [`OUTPUT_TAIL_BYTES`].
async fn read_into(pipe: Option<impl AsyncRead + Unpin>, kept: Arc<Mutex<Vec<u8>>>) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let mut kept = kept
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_TAIL_BYTES {
                    let cut = kept.len() - OUTPUT_TAIL_BYTES;
                    kept.drain(..cut);
                }
            }
        }
    }
}

fn take(buf: &Mutex<Vec<u8>>) -> Vec<u8> {
    std::mem::take(
        &mut *buf
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

fn tail(output: &[u8]) -> String {
    let start = output.len().saturating_sub(OUTPUT_TAIL_BYTES);
    String::from_utf8_lossy(&output[start..]).into_owned()
}

#[cfg(test)]
mod tests;

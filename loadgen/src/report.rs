//! The figures of one step (`StepReport`), the table printed to stdout, and
//! the JSON written with `--json`.
//!
//! JSON keys are the field names; a figure that was not measured (no
//! `--rollback`, no coordinator pid) is `null`, and `acked_all` is then false.
//! A ramp writes `{"steps": [...], "stop_reason": ...}` with the figures of
//! the largest step that held also at the top level.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;

/// Everything measured in one step.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct StepReport {
    /// Simulated agents asked for.
    pub(crate) agents: usize,
    pub(crate) connected: usize,
    pub(crate) connect_failed: usize,
    /// Streams that ended before the step did.
    pub(crate) dropped_streams: usize,
    /// Time to connect every agent (TCP, HTTP/2, Hello, Welcome; with
    /// `tls`, the TLS handshake too), `--connect-concurrency` at a time.
    pub(crate) connect_secs: f64,
    /// Whether every agent connected with mutual TLS (`--tls-dir`).
    pub(crate) tls: bool,
    pub(crate) interval_ms: u64,
    pub(crate) window_secs: f64,
    /// Samples sent per second in the window, all agents.
    pub(crate) samples_sent_per_sec: f64,
    /// Samples whose ack arrived in the window, per second.
    pub(crate) samples_per_sec: f64,
    pub(crate) acked_ratio: f64,
    /// Send of a batch to receipt of the ack covering it; unacked at the drain deadline count as lag = deadline.
    pub(crate) ingest_lag_p50_ms: Option<f64>,
    pub(crate) ingest_lag_p99_ms: Option<f64>,
    pub(crate) ingest_lag_max_ms: Option<f64>,
    pub(crate) unacked_samples: u64,
    /// Samples skipped because an agent's upstream queue was full (backpressure).
    pub(crate) queue_full_samples: u64,
    pub(crate) coordinator_pid: Option<u32>,
    /// Coordinator CPU over the window, in percent of one core.
    pub(crate) coordinator_cpu_percent: Option<f64>,
    /// Median coordinator RSS over the window.
    pub(crate) coordinator_rss_mib: Option<f64>,
    /// Highest coordinator RSS seen in the whole step (connect, window, rollback).
    pub(crate) coordinator_rss_max_mib: Option<f64>,
    /// The loadgen's own CPU over the window: it shares the machine.
    pub(crate) loadgen_cpu_percent: Option<f64>,
    /// CPU used by everything else on the machine over the window (other
    /// processes, the kernel outside these two), in percent of one core: a
    /// benchmark is only as good as a quiet machine.
    pub(crate) other_cpu_percent: Option<f64>,
    /// Bytes on the wire upstream per agent per second: what this process
    /// wrote to its sockets (`socket_bytes_up_per_agent_per_sec`), or the
    /// payload figure where /proc has no I/O counts.
    pub(crate) wire_bytes_per_agent_per_sec: f64,
    /// Upstream protobuf bytes (encoded_len) + 5 bytes gRPC framing per message, per agent per second.
    pub(crate) payload_bytes_per_agent_per_sec: f64,
    /// Downstream (acks), counted the same way.
    pub(crate) payload_bytes_down_per_agent_per_sec: f64,
    /// Bytes this process wrote to its sockets (HTTP/2 frames, TCP payload), per agent per second.
    pub(crate) socket_bytes_up_per_agent_per_sec: Option<f64>,
    pub(crate) socket_bytes_down_per_agent_per_sec: Option<f64>,
    /// Mean encoded size of one SampleBatch of one sample, framing included.
    pub(crate) batch_bytes: Option<f64>,
    pub(crate) rollback: bool,
    /// Connected agents of the beta cohort: the rollback targets.
    pub(crate) beta_agents: usize,
    pub(crate) rollback_targets: Option<usize>,
    /// Duration of the Rollback call (decision committed, then dispatched).
    pub(crate) rollback_call_ms: Option<f64>,
    /// From the Rollback call to each beta agent having the command.
    pub(crate) fanout_p50_ms: Option<f64>,
    pub(crate) fanout_p99_ms: Option<f64>,
    pub(crate) fanout_max_ms: Option<f64>,
    /// Connected beta agents that never got the command.
    pub(crate) fanout_missing: usize,
    /// Every target's result is `succeeded` in GetCommand.
    pub(crate) acked_all: bool,
    /// From the Rollback call until GetCommand showed every result succeeded.
    pub(crate) all_acked_ms: Option<f64>,
    /// CPU time the coordinator spent from the call until every result was in.
    pub(crate) fanout_coordinator_cpu_ms: Option<f64>,
    /// CPU time this process spent over the same span.
    pub(crate) fanout_loadgen_cpu_ms: Option<f64>,
    /// Status -> hosts from the last GetCommand, when not every one succeeded.
    pub(crate) rollback_statuses: Option<std::collections::BTreeMap<String, usize>>,
    pub(crate) rollback_error: Option<String>,
    /// A few distinct connect or stream errors, for diagnosis.
    pub(crate) errors: Vec<String>,
}

impl StepReport {
    /// Whether the coordinator kept up: lag p99 at most 1 s and at least 90% of sent samples acked.
    pub(crate) fn held(&self) -> Result<(), String> {
        if self.connected * 100 < self.agents * 99 {
            return Err(format!(
                "only {} of {} agents connected",
                self.connected, self.agents
            ));
        }
        if let Some(p99) = self.ingest_lag_p99_ms.filter(|p99| *p99 > 1000.0) {
            return Err(format!("ingest lag p99 {p99:.0} ms > 1000 ms"));
        }
        if self.samples_per_sec < 0.9 * self.samples_sent_per_sec {
            return Err(format!(
                "acked {:.0}/s < 90% of sent {:.0}/s",
                self.samples_per_sec, self.samples_sent_per_sec
            ));
        }
        Ok(())
    }
}

/// Prints one header and one row per step, as a Markdown table.
pub(crate) fn print_table(steps: &[StepReport]) {
    println!(
        "| agents | tls | connected | connect s | sent/s | acked/s | lag p50 ms | lag p99 ms | coord CPU % | coord RSS MiB (max) | loadgen / other CPU % | wire B/agent/s | fan-out p50 / p99 / max ms | all acked ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in steps {
        let fanout = match (s.fanout_p50_ms, s.fanout_p99_ms, s.fanout_max_ms) {
            (Some(p50), Some(p99), Some(max)) => {
                let missing = if s.fanout_missing > 0 {
                    format!(" ({} missing)", s.fanout_missing)
                } else {
                    String::new()
                };
                format!("{p50:.0} / {p99:.0} / {max:.0}{missing}")
            }
            _ if s.rollback => "none".to_owned(),
            _ => "-".to_owned(),
        };
        let acked = match (s.rollback, s.all_acked_ms) {
            (false, _) => "-".to_owned(),
            (true, Some(ms)) => format!("{ms:.0}"),
            (true, None) => "not all".to_owned(),
        };
        let rss = match (s.coordinator_rss_mib, s.coordinator_rss_max_mib) {
            (Some(median), Some(max)) => format!("{median:.0} ({max:.0})"),
            _ => "?".to_owned(),
        };
        println!(
            "| {} | {} | {} | {:.1} | {:.0} | {:.0} | {} | {} | {} | {} | {} / {} | {:.0} | {} | {} |",
            s.agents,
            if s.tls { "yes" } else { "no" },
            s.connected,
            s.connect_secs,
            s.samples_sent_per_sec,
            s.samples_per_sec,
            opt(s.ingest_lag_p50_ms, 1),
            opt(s.ingest_lag_p99_ms, 1),
            opt(s.coordinator_cpu_percent, 1),
            rss,
            opt(s.loadgen_cpu_percent, 0),
            opt(s.other_cpu_percent, 0),
            s.wire_bytes_per_agent_per_sec,
            fanout,
            acked,
        );
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "?".to_owned(), |v| format!("{v:.decimals$}"))
}

/// Writes one step's figures as a JSON object.
pub(crate) fn write_step(path: &Path, step: &StepReport) -> anyhow::Result<()> {
    write(path, &serde_json::to_value(step)?)
}

/// Writes a ramp: every step, why it stopped, and the largest step that held at the top level.
pub(crate) fn write_ramp(
    path: &Path,
    steps: &[StepReport],
    held: Option<&StepReport>,
    stop_reason: &str,
) -> anyhow::Result<()> {
    let mut value = match held {
        Some(step) => serde_json::to_value(step)?,
        None => serde_json::json!({}),
    };
    if let Some(object) = value.as_object_mut() {
        object.insert("held_agents".to_owned(), held.map(|s| s.agents).into());
        object.insert("stop_reason".to_owned(), stop_reason.into());
        object.insert("steps".to_owned(), serde_json::to_value(steps)?);
    }
    write(path, &value)
}

fn write(path: &Path, value: &serde_json::Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

//! What an operator and the team see of a rollout: the status view (with
//! its gate and the beta-vs-baseline table) and the webhook events, both
//! built from the stored record.

use std::time::{Duration, SystemTime};

use rollguard_common::rollout::{Approval, RolloutConfig};
use rollguard_common::CommandStatus;
use serde::Serialize;
use serde_json::{json, Value};

use crate::fleet::CommandView;
use crate::review::Comparison;
use crate::store::{from_unix_ms, AuditRecord, PhaseRecord, RolloutRecord};

/// What the current phase's gate still waits for.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Gate {
    pub(crate) promotes_succeeded: u32,
    pub(crate) promotes_total: u32,
    pub(crate) time_left_ms: u64,
    pub(crate) passing_rounds: u32,
    pub(crate) min_passing_rounds: u32,
    pub(crate) manual_approval: bool,
    pub(crate) approved: bool,
    /// One line per condition not met yet; empty when the gate is open.
    pub(crate) waiting_for: Vec<String>,
}

/// One phase as shown.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct PhaseView {
    pub(crate) phase: u32,
    pub(crate) percent: u32,
    pub(crate) started_at_unix_ms: u64,
    pub(crate) ended_at_unix_ms: Option<u64>,
    pub(crate) hosts_total: u32,
    pub(crate) hosts: Vec<String>,
    pub(crate) promote_command: String,
    pub(crate) approved_by: String,
    /// Beta against baseline over the phase's rounds (when read).
    pub(crate) comparison: Option<Comparison>,
}

/// A rollout as `rollguardctl rollout status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RolloutView {
    pub(crate) deployment: String,
    pub(crate) number: u64,
    pub(crate) version: String,
    pub(crate) state: &'static str,
    /// 1-based; 0 before the first phase.
    pub(crate) phase: u32,
    pub(crate) percent: u32,
    pub(crate) phases: Vec<u32>,
    pub(crate) hosts_total: u32,
    pub(crate) hosts_promoted: Vec<String>,
    pub(crate) gate: Option<Gate>,
    /// The current phase so far, beta against baseline.
    pub(crate) comparison: Option<Comparison>,
    pub(crate) created_by: String,
    pub(crate) accept_risk: String,
    pub(crate) start_at_unix_ms: u64,
    pub(crate) ended_at_unix_ms: Option<u64>,
    pub(crate) end_reason: String,
    pub(crate) ended_by: String,
    pub(crate) rollback_command: String,
    pub(crate) phase_log: Vec<PhaseView>,
}

/// The gate of `record`'s current phase at `now`, given its promote's results.
pub(crate) fn gate(
    record: &RolloutRecord,
    config: &RolloutConfig,
    promote: Option<&CommandView>,
    now: SystemTime,
) -> Option<Gate> {
    let phase = record.current()?;
    let last = record.phase_log.len() == record.phases.len();
    let (succeeded, total) = promote.map_or((0, 0), |view| {
        let ok = view
            .results
            .iter()
            .filter(|r| r.status == CommandStatus::Succeeded)
            .count();
        (count(ok), count(view.results.len()))
    });
    let elapsed = now
        .duration_since(from_unix_ms(phase.started_at_unix_ms))
        .unwrap_or_default();
    let time_left = config.min_phase_duration.saturating_sub(elapsed);
    let manual = config.approval == Approval::Manual && !last;
    let mut gate = Gate {
        promotes_succeeded: succeeded,
        promotes_total: total,
        time_left_ms: u64::try_from(time_left.as_millis()).unwrap_or(u64::MAX),
        passing_rounds: record.passing_rounds,
        min_passing_rounds: config.min_passing_rounds,
        manual_approval: manual,
        approved: !phase.approved_by.is_empty(),
        waiting_for: Vec::new(),
    };
    if succeeded < total {
        gate.waiting_for
            .push(format!("promotes: {succeeded} of {total} succeeded"));
    }
    if last {
        return Some(gate);
    }
    if !time_left.is_zero() {
        gate.waiting_for.push(format!(
            "time: {} left of {}",
            human(time_left),
            human(config.min_phase_duration)
        ));
    }
    if record.passing_rounds < config.min_passing_rounds {
        gate.waiting_for.push(format!(
            "rounds: {} of {} passing in a row",
            record.passing_rounds, config.min_passing_rounds
        ));
    }
    if manual && !gate.approved {
        gate.waiting_for
            .push("approval: `rollguardctl rollout approve`".to_owned());
    }
    Some(gate)
}

/// The view of `record`; `comparisons` are per phase (index = phase - 1)
/// where they were read.
pub(crate) fn view(
    record: &RolloutRecord,
    gate: Option<Gate>,
    comparisons: &[Option<Comparison>],
) -> RolloutView {
    let phase_log: Vec<PhaseView> = record
        .phase_log
        .iter()
        .enumerate()
        .map(|(idx, p)| phase_view(idx, p, comparisons.get(idx).cloned().flatten()))
        .collect();
    let current = record.current();
    RolloutView {
        deployment: record.deployment.clone(),
        number: record.number,
        version: record.version.clone(),
        state: record.state.as_str(),
        phase: record.phase_number(),
        percent: current.map_or(0, |p| p.percent),
        phases: record.phases.clone(),
        hosts_total: current.map_or(0, |p| p.hosts_total),
        hosts_promoted: record.promoted.clone(),
        gate: if record.state.is_active() { gate } else { None },
        comparison: phase_log.last().and_then(|p| p.comparison.clone()),
        created_by: record.created_by.clone(),
        accept_risk: record.accept_risk.clone(),
        start_at_unix_ms: record.start_at_unix_ms,
        ended_at_unix_ms: record.ended_at_unix_ms,
        end_reason: record.end_reason.clone(),
        ended_by: record.ended_by.clone(),
        rollback_command: record.rollback_command.clone(),
        phase_log,
    }
}

fn phase_view(idx: usize, phase: &PhaseRecord, comparison: Option<Comparison>) -> PhaseView {
    PhaseView {
        phase: count(idx + 1),
        percent: phase.percent,
        started_at_unix_ms: phase.started_at_unix_ms,
        ended_at_unix_ms: phase.ended_at_unix_ms,
        hosts_total: phase.hosts_total,
        hosts: phase.hosts.clone(),
        promote_command: phase.promote_command.clone(),
        approved_by: phase.approved_by.clone(),
        comparison,
    }
}

/// A webhook event: `event` at the top (as every event has), the fields a
/// receiver filters on, a one-line `text` (what a chat channel shows), and
/// the whole view.
pub(crate) fn event(name: &str, view: &RolloutView, text: String) -> Value {
    json!({
        "event": name,
        "deployment": view.deployment,
        "version": view.version,
        "rollout": view.number,
        "state": view.state,
        "phase": view.phase,
        "percent": view.percent,
        "hosts_total": view.hosts_total,
        "hosts_promoted": view.hosts_promoted.len(),
        "text": text,
        "status": view,
    })
}

/// The retrospective: the whole rollout per phase, beta against baseline,
/// time in each phase, and every decision with who made it.
pub(crate) fn retrospective(view: &RolloutView, decisions: &[AuditRecord]) -> Value {
    let phases: Vec<Value> = view
        .phase_log
        .iter()
        .map(|p| {
            let end = p.ended_at_unix_ms.or(view.ended_at_unix_ms);
            json!({
                "phase": p.phase,
                "percent": p.percent,
                "hosts_total": p.hosts_total,
                "hosts": p.hosts,
                "duration_ms": end.map(|e| e.saturating_sub(p.started_at_unix_ms)),
                "comparison": p.comparison,
                "approved_by": p.approved_by,
            })
        })
        .collect();
    let decisions: Vec<Value> = decisions
        .iter()
        .map(|d| {
            json!({
                "time_unix_ms": d.time_unix_ms,
                "action": d.action,
                "actor": d.actor,
                "reason": d.reason,
                "detail": d.detail,
                "command_id": d.command_id,
            })
        })
        .collect();
    json!({
        "deployment": view.deployment,
        "rollout": view.number,
        "version": view.version,
        "state": view.state,
        "end_reason": view.end_reason,
        "phases": phases,
        "decisions": decisions,
    })
}

/// The one-line summary of a view, as a chat channel reads it.
pub(crate) fn summary(view: &RolloutView) -> String {
    let mut text = format!(
        "{} {} rollout #{}: {} at phase {}/{} ({} %), {} of {} host(s) on the new version",
        view.deployment,
        view.version,
        view.number,
        view.state,
        view.phase,
        view.phases.len(),
        view.percent,
        view.hosts_promoted.len(),
        view.hosts_total,
    );
    if let Some(comparison) = &view.comparison {
        for row in &comparison.rows {
            text.push_str(&format!(
                "; {} {} vs {} ({})",
                row.metric,
                fmt_figure(row.beta),
                fmt_figure(row.baseline),
                row.assessment.as_str()
            ));
        }
    }
    text
}

fn fmt_figure(value: Option<f64>) -> String {
    match value {
        Some(v) if v.abs() < 1.0 => format!("{v:.4}"),
        Some(v) => format!("{v:.1}"),
        None => "-".to_owned(),
    }
}

/// `1h 2m`, `3m 4s`, `5s` (a part second counts as one: time left is never shown short).
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, s % 3600 / 60),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

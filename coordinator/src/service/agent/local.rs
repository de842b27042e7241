//! A host's report of a local rollback (issue 11): its tripwire fired while
//! the coordinator was unreachable, and it ran its own action once.
//!
//! [`check_local`] checks the wire message like every agent input (bounded
//! lengths, finite figures, a finished status); [`LocalRun::records`] turns
//! it into what the coordinator keeps: a command record closed to that
//! host and marked `local` (so it is never sent, retried or taken for a
//! catch-up), the host's result (so it counts in `results` and
//! `/metrics`), and an audit entry that names the host and the figures.
//! Recording it once per command id is the fleet's (`record_local`).

use std::time::{Duration, SystemTime};

use rollguard_common::ids::validate_name;
use rollguard_common::policy::format_value;
use rollguard_common::CommandStatus;
use rollguard_proto::v1 as pb;
use rollguard_proto::{duration_from_pb, time_from_pb, WireError};
use serde_json::{json, Value};

use crate::fleet::HostIdentity;
use crate::store::{unix_ms, AuditRecord, CommandKind, CommandRecord, ResultRecord};

/// Ids of local runs start with this, so they never pass for a coordinator's command.
const LOCAL_PREFIX: &str = "local-";
/// Most rules one report names.
const MAX_FIGURES: usize = 32;
/// Longest metric name (the policy's own limit).
const MAX_METRIC_LEN: usize = 128;
/// Longest limit text.
const MAX_LIMIT_TEXT: usize = 256;
/// Longest reason kept (the agent's reason and its result's).
const MAX_REASON: usize = 1024;

/// One broken rule of the round that fired.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Figure {
    pub(super) metric: String,
    pub(super) value: Option<f64>,
    pub(super) limit: Option<f64>,
    pub(super) limit_text: String,
}

impl Figure {
    /// How it reads: `error_rate 0.5 (max 0.2)`.
    fn text(&self) -> String {
        let value = self.value.map_or_else(|| "-".to_owned(), format_value);
        format!("{} {value} ({})", self.metric, self.limit_text)
    }
}

/// A checked report.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct LocalRun {
    pub(super) command_id: String,
    pub(super) action: String,
    pub(super) reason: String,
    pub(super) figures: Vec<Figure>,
    pub(super) consecutive: u32,
    pub(super) unreachable_for: Duration,
    pub(super) status: CommandStatus,
    pub(super) exit_code: Option<i32>,
    pub(super) result_reason: String,
    pub(super) output_tail: String,
    pub(super) started_at: Option<SystemTime>,
    pub(super) duration: Option<Duration>,
}

/// Checks a report; a hostile value is an error naming its field.
pub(super) fn check_local(
    report: &pb::LocalRollback,
    max_output_tail: usize,
) -> Result<LocalRun, WireError> {
    let invalid = |field: &'static str, message: String| WireError::Invalid { field, message };
    validate_name("command_id", &report.command_id).map_err(|m| invalid("command_id", m))?;
    if !report.command_id.starts_with(LOCAL_PREFIX) {
        return Err(invalid(
            "command_id",
            format!("a local run's id starts with `{LOCAL_PREFIX}`"),
        ));
    }
    validate_name("action", &report.action).map_err(|m| invalid("action", m))?;
    if report.figures.len() > MAX_FIGURES {
        return Err(invalid("figures", format!("at most {MAX_FIGURES} rules")));
    }
    let mut figures = Vec::with_capacity(report.figures.len());
    for rule in &report.figures {
        validate_name("metric", &rule.metric).map_err(|m| invalid("figures", m))?;
        if rule.metric.len() > MAX_METRIC_LEN || rule.limit_text.len() > MAX_LIMIT_TEXT {
            return Err(invalid(
                "figures",
                "a metric or limit text is too long".to_owned(),
            ));
        }
        if [rule.value, rule.limit]
            .iter()
            .flatten()
            .any(|v| !v.is_finite())
        {
            return Err(invalid("figures", "figures must be finite".to_owned()));
        }
        figures.push(Figure {
            metric: rule.metric.clone(),
            value: rule.value,
            limit: rule.limit,
            limit_text: rule.limit_text.clone(),
        });
    }
    let status = report.checked_status()?;
    let started_at = report
        .started_at
        .as_ref()
        .map(|t| time_from_pb("started_at", t))
        .transpose()?;
    let duration = report
        .duration
        .as_ref()
        .map(|d| duration_from_pb("duration", d))
        .transpose()?;
    let unreachable_for = report
        .unreachable_for
        .as_ref()
        .map(|d| duration_from_pb("unreachable_for", d))
        .transpose()?
        .unwrap_or_default();
    Ok(LocalRun {
        command_id: report.command_id.clone(),
        action: report.action.clone(),
        reason: bounded(&report.reason, MAX_REASON),
        figures,
        consecutive: report.consecutive_failures,
        unreachable_for,
        status,
        exit_code: report.exit_code,
        result_reason: bounded(&report.result_reason, MAX_REASON),
        output_tail: tail(&report.output_tail, max_output_tail),
        started_at,
        duration,
    })
}

/// The first `max` bytes of `text`, cut on a char boundary.
fn bounded(text: &str, max: usize) -> String {
    text[..text.floor_char_boundary(max)].to_owned()
}

/// The last `max` bytes of `text`, cut on a char boundary.
fn tail(text: &str, max: usize) -> String {
    let mut cut = text.len().saturating_sub(max);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_owned()
}

impl LocalRun {
    /// Who ran it, as the history names the actor.
    fn actor(identity: &HostIdentity) -> String {
        format!("host {}", identity.host_id)
    }

    /// The figures that tripped it, in words.
    fn figures_text(&self) -> String {
        let figures: Vec<String> = self.figures.iter().map(Figure::text).collect();
        if figures.is_empty() {
            "no figures reported".to_owned()
        } else {
            figures.join(", ")
        }
    }

    /// The command record (closed to the host, local, never sent), the
    /// host's result and the audit entry, as of `now`.
    pub(super) fn records(
        &self,
        identity: &HostIdentity,
        now: SystemTime,
    ) -> (CommandRecord, ResultRecord, AuditRecord) {
        let host = identity.host_id.as_str();
        let started_ms = self.started_at.map_or_else(|| unix_ms(now), unix_ms);
        let reason = format!(
            "local tripwire on {host}: {}; {} local round(s) in a row while the coordinator was unreachable for {}s",
            self.reason,
            self.consecutive,
            self.unreachable_for.as_secs()
        );
        let record = CommandRecord {
            command_id: self.command_id.clone(),
            deployment: identity.deployment.to_string(),
            action: self.action.clone(),
            reason: bounded(&reason, MAX_REASON),
            actor: Self::actor(identity),
            issued_at_unix_ms: started_ms,
            // Already past: nothing about it is ever live.
            not_after_unix_ms: started_ms,
            targets: vec![host.to_owned()],
            trace_context: Vec::new(),
            closed: true,
            request_id: String::new(),
            retry_of: String::new(),
            attempt: 0,
            local: true,
            kind: CommandKind::Rollback,
            version: String::new(),
        };
        let result = ResultRecord {
            command_id: self.command_id.clone(),
            host_id: host.to_owned(),
            status: self.status,
            exit_code: self.exit_code,
            reason: self.result_reason.clone(),
            output_tail: self.output_tail.clone(),
            updated_at_unix_ms: unix_ms(now),
            started_at_unix_ms: self.started_at.map(unix_ms),
            duration_ms: self
                .duration
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        let exit = self
            .exit_code
            .map_or_else(String::new, |code| format!(", exit {code}"));
        let audit = AuditRecord {
            time_unix_ms: unix_ms(now),
            deployment: identity.deployment.to_string(),
            action: "local_rollback".to_owned(),
            reason: record.reason.clone(),
            command_id: self.command_id.clone(),
            actor: Self::actor(identity),
            detail: bounded(
                &format!(
                    "local rollback by {host}: action `{}` {}{exit}; figures: {}",
                    self.action,
                    self.status,
                    self.figures_text()
                ),
                MAX_REASON,
            ),
        };
        (record, result, audit)
    }

    /// The webhook event.
    pub(super) fn event(&self, identity: &HostIdentity) -> Value {
        let figures: Vec<Value> = self
            .figures
            .iter()
            .map(|f| {
                json!({
                    "metric": f.metric,
                    "value": f.value,
                    "limit": f.limit,
                    "limit_text": f.limit_text,
                })
            })
            .collect();
        json!({
            "event": "local_rollback",
            "deployment": identity.deployment.as_str(),
            "host_id": identity.host_id.as_str(),
            "command_id": self.command_id,
            "action": self.action,
            "reason": self.reason,
            "figures": figures,
            "consecutive_failures": self.consecutive,
            "unreachable_for_secs": self.unreachable_for.as_secs(),
            "status": self.status.as_str(),
            "exit_code": self.exit_code,
        })
    }
}

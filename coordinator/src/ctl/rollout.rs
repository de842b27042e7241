//! `rollguardctl rollout`: preflight, start, status, approve, pause,
//! resume, abort, retro and history of a deployment's rollouts.

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::args::{Format, RolloutCommand, RolloutPlan};
use super::connect::{actor, request, status_error};
use super::judgement::fmt_opt;
use super::output::{fmt_time, table};

/// Exit code of a failed preflight or a refused start.
const REFUSED: u8 = 2;

pub(crate) async fn run(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    command: RolloutCommand,
) -> anyhow::Result<u8> {
    match command {
        RolloutCommand::Preflight(plan) => preflight(client, format, plan).await,
        RolloutCommand::Start { plan, at } => start(client, format, plan, at).await,
        RolloutCommand::Status { deployment } => {
            let response = client
                .rollout_status(request(pb::RolloutStatusRequest { deployment }))
                .await
                .map_err(status_error)?
                .into_inner();
            print_rollout(format, response.rollout.as_ref());
            Ok(0)
        }
        RolloutCommand::Approve { deployment, reason } => {
            change(
                client,
                format,
                deployment,
                pb::RolloutChange::Approve,
                reason,
            )
            .await
        }
        RolloutCommand::Pause { deployment, reason } => {
            change(client, format, deployment, pb::RolloutChange::Pause, reason).await
        }
        RolloutCommand::Resume { deployment, reason } => {
            change(
                client,
                format,
                deployment,
                pb::RolloutChange::Resume,
                reason,
            )
            .await
        }
        RolloutCommand::Abort { deployment, reason } => {
            change(client, format, deployment, pb::RolloutChange::Abort, reason).await
        }
        RolloutCommand::Retro { deployment } => retro(client, format, deployment).await,
        RolloutCommand::History { deployment } => history(client, format, deployment).await,
    }
}

async fn preflight(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    plan: RolloutPlan,
) -> anyhow::Result<u8> {
    let response = client
        .rollout_preflight(request(pb::RolloutPreflightRequest {
            deployment: plan.deployment,
            version: plan.version,
            phases: plan.phases,
            accept_risk: plan.accept_risk,
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            json!({ "ok": response.ok, "checks": checks_json(&response.checks) })
        ),
        Format::Table => print_checks(&response.checks),
    }
    Ok(if response.ok { 0 } else { REFUSED })
}

async fn start(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    plan: RolloutPlan,
    at: Option<std::time::SystemTime>,
) -> anyhow::Result<u8> {
    let response = client
        .rollout_start(request(pb::RolloutStartRequest {
            deployment: plan.deployment.clone(),
            version: plan.version,
            phases: plan.phases,
            at: at.map(rollguard_proto::time_to_pb),
            accept_risk: plan.accept_risk,
            actor: actor(),
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    if !response.started {
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "started": false,
                    "ok": false,
                    "checks": checks_json(&response.checks),
                })
            ),
            Format::Table => {
                eprintln!(
                    "rollguardctl: the rollout of {} was refused:",
                    plan.deployment
                );
                print_checks(&response.checks);
            }
        }
        return Ok(REFUSED);
    }
    if format == Format::Table {
        print_checks(&response.checks);
        println!();
    }
    print_rollout(format, response.rollout.as_ref());
    Ok(0)
}

async fn change(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    change: pb::RolloutChange,
    reason: String,
) -> anyhow::Result<u8> {
    let response = client
        .rollout_change(request(pb::RolloutChangeRequest {
            deployment,
            change: change as i32,
            reason,
            actor: actor(),
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    print_rollout(format, response.rollout.as_ref());
    Ok(0)
}

async fn retro(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
) -> anyhow::Result<u8> {
    let response = client
        .rollout_retro(request(pb::RolloutRetroRequest { deployment }))
        .await
        .map_err(status_error)?
        .into_inner();
    let Some(rollout) = response.rollout.as_ref() else {
        anyhow::bail!("the coordinator sent no rollout");
    };
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "rollout": rollout_json(rollout),
                "sent": response.sent,
                "decisions": response.decisions.iter().map(|d| json!({
                    "time": d.time.as_ref().map(fmt_time),
                    "action": d.action,
                    "actor": d.actor,
                    "reason": d.reason,
                    "detail": d.detail,
                })).collect::<Vec<_>>(),
            })
        ),
        Format::Table => {
            println!(
                "Retrospective of {} {} rollout #{}: {}{}",
                rollout.deployment,
                rollout.version,
                rollout.number,
                rollout.state,
                if rollout.end_reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", rollout.end_reason)
                }
            );
            for phase in &rollout.phase_log {
                let duration = match (&phase.started_at, &phase.ended_at) {
                    (Some(from), Some(to)) => {
                        format!("{}s", to.seconds.saturating_sub(from.seconds))
                    }
                    _ => "ongoing".to_owned(),
                };
                println!(
                    "\nphase {} ({} %): {} new host(s) of {}, {duration}{}",
                    phase.phase,
                    phase.percent,
                    phase.hosts.len(),
                    phase.hosts_total,
                    if phase.approved_by.is_empty() {
                        String::new()
                    } else {
                        format!(", approved by {}", phase.approved_by)
                    }
                );
                if let Some(comparison) = &phase.comparison {
                    print_comparison(comparison);
                }
            }
            println!("\ndecisions:");
            let mut rows = vec![["TIME", "ACTION", "ACTOR", "REASON"]
                .map(str::to_owned)
                .to_vec()];
            for d in &response.decisions {
                rows.push(vec![
                    d.time.as_ref().map(fmt_time).unwrap_or_default(),
                    d.action.clone(),
                    d.actor.clone(),
                    d.reason.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}

async fn history(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
) -> anyhow::Result<u8> {
    let response = client
        .rollout_history(request(pb::RolloutHistoryRequest { deployment }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            Value::Array(response.rollouts.iter().map(rollout_json).collect())
        ),
        Format::Table => {
            let mut rows = vec![[
                "#", "VERSION", "STATE", "PHASE", "HOSTS", "STARTED", "BY", "END",
            ]
            .map(str::to_owned)
            .to_vec()];
            for r in &response.rollouts {
                rows.push(vec![
                    r.number.to_string(),
                    r.version.clone(),
                    r.state.clone(),
                    format!("{}/{} ({} %)", r.phase, r.phases.len(), r.percent),
                    r.hosts_promoted.len().to_string(),
                    r.start_at.as_ref().map(fmt_time).unwrap_or_default(),
                    r.created_by.clone(),
                    r.end_reason.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}

fn checks_json(checks: &[pb::PreflightCheck]) -> Vec<Value> {
    checks
        .iter()
        .map(|c| json!({ "name": c.name, "ok": c.ok, "detail": c.detail }))
        .collect()
}

pub(crate) fn print_checks(checks: &[pb::PreflightCheck]) {
    for check in checks {
        println!(
            "{}  {:<18} {}",
            if check.ok { "pass" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
}

fn comparison_json(comparison: &pb::Comparison) -> Value {
    json!({
        "rounds": comparison.rounds,
        "beta_requests": comparison.beta_requests,
        "baseline_requests": comparison.baseline_requests,
        "rows": comparison.rows.iter().map(|r| json!({
            "metric": r.metric,
            "beta": r.beta,
            "baseline": r.baseline,
            "change_percent": r.change_percent,
            "assessment": r.assessment,
        })).collect::<Vec<_>>(),
    })
}

fn rollout_json(r: &pb::Rollout) -> Value {
    json!({
        "deployment": r.deployment,
        "number": r.number,
        "version": r.version,
        "state": r.state,
        "phase": r.phase,
        "percent": r.percent,
        "phases": r.phases,
        "hosts_total": r.hosts_total,
        "hosts_promoted": r.hosts_promoted,
        "gate": r.gate.as_ref().map(|g| json!({
            "promotes_succeeded": g.promotes_succeeded,
            "promotes_total": g.promotes_total,
            "time_left_ms": g.time_left.as_ref().map(|d| d.seconds * 1000 + i64::from(d.nanos) / 1_000_000),
            "passing_rounds": g.passing_rounds,
            "min_passing_rounds": g.min_passing_rounds,
            "manual_approval": g.manual_approval,
            "approved": g.approved,
            "waiting_for": g.waiting_for,
        })),
        "comparison": r.comparison.as_ref().map(comparison_json),
        "created_by": r.created_by,
        "accept_risk": r.accept_risk,
        "start_at": r.start_at.as_ref().map(fmt_time),
        "ended_at": r.ended_at.as_ref().map(fmt_time),
        "end_reason": r.end_reason,
        "ended_by": r.ended_by,
        "rollback_command": r.rollback_command,
        "phase_log": r.phase_log.iter().map(|p| json!({
            "phase": p.phase,
            "percent": p.percent,
            "started_at": p.started_at.as_ref().map(fmt_time),
            "ended_at": p.ended_at.as_ref().map(fmt_time),
            "hosts_total": p.hosts_total,
            "hosts": p.hosts,
            "promote_command": p.promote_command,
            "approved_by": p.approved_by,
            "comparison": p.comparison.as_ref().map(comparison_json),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn print_comparison(comparison: &pb::Comparison) {
    println!(
        "beta vs baseline over {} round(s) ({} vs {} requests):",
        comparison.rounds,
        fmt_opt(Some(comparison.beta_requests)),
        fmt_opt(Some(comparison.baseline_requests)),
    );
    let mut rows = vec![["METRIC", "BETA", "BASELINE", "CHANGE", "ASSESSMENT"]
        .map(str::to_owned)
        .to_vec()];
    for r in &comparison.rows {
        rows.push(vec![
            r.metric.clone(),
            fmt_opt(r.beta),
            fmt_opt(r.baseline),
            r.change_percent
                .map_or_else(|| "-".to_owned(), |c| format!("{c:+.1}%")),
            r.assessment.clone(),
        ]);
    }
    print!("{}", table(&rows));
}

pub(crate) fn print_rollout(format: Format, rollout: Option<&pb::Rollout>) {
    let Some(r) = rollout else {
        return;
    };
    if format == Format::Json {
        println!("{}", rollout_json(r));
        return;
    }
    println!(
        "{} {} rollout #{}: {}, phase {}/{} ({} %), {} of {} host(s) on the new version",
        r.deployment,
        r.version,
        r.number,
        r.state,
        r.phase,
        r.phases.len(),
        r.percent,
        r.hosts_promoted.len(),
        r.hosts_total,
    );
    if !r.hosts_promoted.is_empty() {
        println!("promoted: {}", r.hosts_promoted.join(", "));
    }
    if let Some(gate) = &r.gate {
        if gate.waiting_for.is_empty() {
            println!("gate: open");
        } else {
            println!("gate waits for: {}", gate.waiting_for.join("; "));
        }
    }
    if !r.end_reason.is_empty() {
        println!("ended by {}: {}", r.ended_by, r.end_reason);
    }
    match &r.comparison {
        Some(comparison) if comparison.rounds > 0 => print_comparison(comparison),
        Some(_) => println!("beta vs baseline: no round judged in this phase yet"),
        None => {}
    }
}

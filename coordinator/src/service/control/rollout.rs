//! The rollout calls of the control API (issue 12): requests checked here,
//! the work done by `crate::rollout`, views turned into wire messages.

use rollguard_common::ids::validate_name;
use rollguard_common::DeploymentName;
use rollguard_proto::time_to_pb;
use rollguard_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Control;
use crate::auth::Caller;
use crate::error::Error;
use crate::review::Comparison;
use crate::rollout::view::{Gate, PhaseView, RolloutView};
use crate::rollout::{Change, Check, StartRequest};
use crate::store::from_unix_ms;

/// Longest accepted `accept_risk` or `reason`, in bytes.
const MAX_TEXT: usize = 512;

fn deployment(name: &str) -> Result<DeploymentName, Status> {
    validate_name("deployment", name).map_err(Status::invalid_argument)?;
    Ok(DeploymentName::new(name.to_owned()))
}

fn text(field: &str, value: &str) -> Result<(), Status> {
    if value.len() > MAX_TEXT {
        return Err(Status::invalid_argument(format!(
            "{field} is longer than {MAX_TEXT} bytes"
        )));
    }
    Ok(())
}

fn phases(phases: &[u32]) -> Option<Vec<u32>> {
    (!phases.is_empty()).then(|| phases.to_vec())
}

pub(super) async fn preflight(
    control: &Control,
    request: Request<pb::RolloutPreflightRequest>,
) -> Result<Response<pb::RolloutPreflightResponse>, Status> {
    let request = request.into_inner();
    let name = deployment(&request.deployment)?;
    text("accept_risk", &request.accept_risk)?;
    let checks = control
        .rollouts
        .preflight(
            &name,
            &request.version,
            phases(&request.phases),
            &request.accept_risk,
        )
        .await?;
    Ok(Response::new(pb::RolloutPreflightResponse {
        ok: checks.iter().all(|c| c.ok),
        checks: checks.iter().map(check_to_wire).collect(),
    }))
}

pub(super) async fn start(
    control: &Control,
    request: Request<pb::RolloutStartRequest>,
) -> Result<Response<pb::RolloutStartResponse>, Status> {
    let caller = Caller::of(&request);
    let request = request.into_inner();
    let name = deployment(&request.deployment)?;
    text("accept_risk", &request.accept_risk)?;
    text("actor", &request.actor)?;
    let at = match &request.at {
        Some(at) => Some(rollguard_proto::time_from_pb("at", at).map_err(Error::from)?),
        None => None,
    };
    let started = control
        .rollouts
        .start(StartRequest {
            deployment: name,
            version: request.version,
            phases: phases(&request.phases),
            at,
            accept_risk: request.accept_risk,
            actor: caller.actor(&request.actor),
        })
        .await?;
    Ok(Response::new(pb::RolloutStartResponse {
        started: started.rollout.is_some(),
        checks: started.checks.iter().map(check_to_wire).collect(),
        rollout: started.rollout.as_ref().map(rollout_to_wire),
    }))
}

pub(super) async fn status(
    control: &Control,
    request: Request<pb::RolloutStatusRequest>,
) -> Result<Response<pb::RolloutStatusResponse>, Status> {
    let name = deployment(&request.into_inner().deployment)?;
    let view = control.rollouts.status(&name).await?;
    Ok(Response::new(pb::RolloutStatusResponse {
        rollout: Some(rollout_to_wire(&view)),
    }))
}

pub(super) async fn change(
    control: &Control,
    request: Request<pb::RolloutChangeRequest>,
) -> Result<Response<pb::RolloutStatusResponse>, Status> {
    let caller = Caller::of(&request);
    let request = request.into_inner();
    let name = deployment(&request.deployment)?;
    text("reason", &request.reason)?;
    text("actor", &request.actor)?;
    let change = match pb::RolloutChange::try_from(request.change) {
        Ok(pb::RolloutChange::Approve) => Change::Approve,
        Ok(pb::RolloutChange::Pause) => Change::Pause,
        Ok(pb::RolloutChange::Resume) => Change::Resume,
        Ok(pb::RolloutChange::Abort) => Change::Abort,
        _ => {
            return Err(Status::invalid_argument(
                "change must be approve, pause, resume or abort",
            ))
        }
    };
    let actor = caller.actor(&request.actor);
    let view = control
        .rollouts
        .change(&name, change, &request.reason, &actor)
        .await?;
    Ok(Response::new(pb::RolloutStatusResponse {
        rollout: Some(rollout_to_wire(&view)),
    }))
}

pub(super) async fn retro(
    control: &Control,
    request: Request<pb::RolloutRetroRequest>,
) -> Result<Response<pb::RolloutRetroResponse>, Status> {
    let name = deployment(&request.into_inner().deployment)?;
    let (view, decisions, sent) = control.rollouts.retrospective(&name).await?;
    Ok(Response::new(pb::RolloutRetroResponse {
        rollout: Some(rollout_to_wire(&view)),
        decisions: decisions.into_iter().map(super::audit_to_wire).collect(),
        sent,
    }))
}

pub(super) async fn history(
    control: &Control,
    request: Request<pb::RolloutHistoryRequest>,
) -> Result<Response<pb::RolloutHistoryResponse>, Status> {
    let name = deployment(&request.into_inner().deployment)?;
    let rollouts = control.rollouts.history(&name).await?;
    Ok(Response::new(pb::RolloutHistoryResponse {
        rollouts: rollouts.iter().map(rollout_to_wire).collect(),
    }))
}

fn check_to_wire(check: &Check) -> pb::PreflightCheck {
    pb::PreflightCheck {
        name: check.name.to_owned(),
        ok: check.ok,
        detail: check.detail.clone(),
    }
}

fn time(unix_ms: u64) -> Option<prost_types::Timestamp> {
    Some(time_to_pb(from_unix_ms(unix_ms)))
}

fn comparison_to_wire(comparison: &Comparison) -> pb::Comparison {
    pb::Comparison {
        rounds: comparison.rounds,
        beta_requests: comparison.beta_requests,
        baseline_requests: comparison.baseline_requests,
        rows: comparison
            .rows
            .iter()
            .map(|r| pb::ComparisonRow {
                metric: r.metric.to_owned(),
                beta: r.beta,
                baseline: r.baseline,
                change_percent: r.change_percent,
                assessment: r.assessment.as_str().to_owned(),
            })
            .collect(),
    }
}

fn gate_to_wire(gate: &Gate) -> pb::RolloutGate {
    pb::RolloutGate {
        promotes_succeeded: gate.promotes_succeeded,
        promotes_total: gate.promotes_total,
        time_left: Some(rollguard_proto::duration_to_pb(
            std::time::Duration::from_millis(gate.time_left_ms),
        )),
        passing_rounds: gate.passing_rounds,
        min_passing_rounds: gate.min_passing_rounds,
        manual_approval: gate.manual_approval,
        approved: gate.approved,
        waiting_for: gate.waiting_for.clone(),
    }
}

fn phase_to_wire(phase: &PhaseView) -> pb::RolloutPhase {
    pb::RolloutPhase {
        phase: phase.phase,
        percent: phase.percent,
        started_at: time(phase.started_at_unix_ms),
        ended_at: phase.ended_at_unix_ms.and_then(time),
        hosts_total: phase.hosts_total,
        hosts: phase.hosts.clone(),
        promote_command: phase.promote_command.clone(),
        approved_by: phase.approved_by.clone(),
        comparison: phase.comparison.as_ref().map(comparison_to_wire),
    }
}

pub(super) fn rollout_to_wire(view: &RolloutView) -> pb::Rollout {
    pb::Rollout {
        deployment: view.deployment.clone(),
        number: view.number,
        version: view.version.clone(),
        state: view.state.to_owned(),
        phase: view.phase,
        percent: view.percent,
        phases: view.phases.clone(),
        hosts_total: view.hosts_total,
        hosts_promoted: view.hosts_promoted.clone(),
        gate: view.gate.as_ref().map(gate_to_wire),
        comparison: view.comparison.as_ref().map(comparison_to_wire),
        created_by: view.created_by.clone(),
        accept_risk: view.accept_risk.clone(),
        start_at: time(view.start_at_unix_ms),
        ended_at: view.ended_at_unix_ms.and_then(time),
        end_reason: view.end_reason.clone(),
        ended_by: view.ended_by.clone(),
        rollback_command: view.rollback_command.clone(),
        phase_log: view.phase_log.iter().map(phase_to_wire).collect(),
    }
}

//! `ControlService`: what rollguardctl calls.
//!
//! Reads come from fleet state (or the store, for history). Every call that
//! changes something writes an audit entry in the same commit as its change.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rollguard_common::ids::validate_name;
use rollguard_common::policy::{JudgeState, Policy};
use rollguard_common::{CommandStatus, DeploymentName};
use rollguard_proto::time_to_pb;
use rollguard_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::auth::Caller;
use crate::config::Config;
use crate::decisions::Decisions;
use crate::error::Error;
use crate::fleet::{AgentView, CohortView, DeploymentView, Fleet};
use crate::outbound::AgentTx;
use crate::rollout::Rollouts;
use crate::store::{from_unix_ms, unix_ms, AuditRecord, ResultRecord, RoundRecord, Store};

mod rollout;

/// How often a watch stream sends the status.
const WATCH_PERIOD: Duration = Duration::from_secs(1);
/// Default and largest history page.
const HISTORY_LIMIT: u32 = 1000;

/// The control API and what it reads and acts through.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    pub(crate) config: Arc<Config>,
    pub(crate) fleet: Arc<Fleet<AgentTx>>,
    pub(crate) store: Store,
    pub(crate) decisions: Arc<Decisions>,
    pub(crate) rollouts: Arc<Rollouts>,
    /// Cancelled first at shutdown: every watch stream ends on it.
    pub(crate) streams_shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

impl Control {
    fn status(&self, deployment: &str) -> Result<pb::GetFleetStatusResponse, Status> {
        let filter = optional_deployment(deployment)?;
        let mut views = self.fleet.status(filter.as_ref());
        // Configured deployments no host has joined are shown too: that is
        // where an operator sees a fleet the monitor is blind to.
        let configured = self.config.deployments.keys();
        let missing: Vec<DeploymentName> = configured
            .filter(|name| filter.as_ref().is_none_or(|f| f == *name))
            .filter(|name| !views.iter().any(|v| &v.deployment == *name))
            .cloned()
            .collect();
        if !missing.is_empty() {
            views.extend(missing.into_iter().map(|deployment| DeploymentView {
                deployment,
                cohorts: Vec::new(),
            }));
            views.sort_by(|a, b| a.deployment.cmp(&b.deployment));
        }
        Ok(pb::GetFleetStatusResponse {
            generated_at: Some(time_to_pb(SystemTime::now())),
            deployments: views.iter().map(|v| self.deployment_to_wire(v)).collect(),
        })
    }

    fn deployment_to_wire(&self, view: &DeploymentView) -> pb::DeploymentStatus {
        let mut judgement = self
            .decisions
            .latest(&view.deployment)
            .map(|r| judgement_to_wire(&r));
        // The arming may have changed since the round (rearm).
        if let Some(j) = judgement.as_mut() {
            let state = self.decisions.state(&view.deployment);
            j.armed = state.armed;
            j.consecutive = state.consecutive;
        }
        pb::DeploymentStatus {
            deployment: view.deployment.to_string(),
            cohorts: view.cohorts.iter().map(cohort_to_wire).collect(),
            rollback_action: self.config.deployment(&view.deployment).rollback_action,
            judgement,
            unconfigured: !self.config.deployments.contains_key(&view.deployment),
            needs_attention: self
                .fleet
                .needs_attention(view.deployment.as_str(), self.config.action_retries),
        }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::GetFleetStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::control_service_server::ControlService for Control {
    type WatchFleetStatusStream = WatchStream;

    async fn get_fleet_status(
        &self,
        request: Request<pb::GetFleetStatusRequest>,
    ) -> Result<Response<pb::GetFleetStatusResponse>, Status> {
        self.status(&request.get_ref().deployment)
            .map(Response::new)
    }

    async fn watch_fleet_status(
        &self,
        request: Request<pb::WatchFleetStatusRequest>,
    ) -> Result<Response<Self::WatchFleetStatusStream>, Status> {
        let caller = Caller::of(&request);
        let deployment = request.into_inner().deployment;
        optional_deployment(&deployment)?;
        let (tx, rx) = mpsc::channel(4);
        let control = self.clone();
        let shutdown = self.streams_shutdown.clone();
        self.tracker.spawn(async move {
            let mut ticker = tokio::time::interval(WATCH_PERIOD);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = caller.revoked() => {
                        let revoked = Status::permission_denied("this operator's identity is revoked or its role changed");
                        let _ = tx.try_send(Err(revoked));
                        break;
                    }
                    _ = ticker.tick() => {}
                }
                let status = control.status(&deployment);
                // A slow watcher skips a frame rather than queueing stale ones.
                match tx.try_send(status) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let filter = optional_deployment(&request.get_ref().deployment)?;
        let agents = self.fleet.agents(filter.as_ref());
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.iter().map(agent_to_wire).collect(),
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let trace_context = rollguard_proto::otel::from_metadata(request.metadata());
        let caller = Caller::of(&request);
        let request = request.into_inner();
        validate_name("deployment", &request.deployment).map_err(Status::invalid_argument)?;
        let reason = request.reason.trim();
        if reason.is_empty() {
            return Err(Status::invalid_argument("a rollback needs a reason"));
        }
        if reason.len() > 1024 || request.actor.len() > 256 {
            return Err(Status::invalid_argument("reason or actor is too long"));
        }
        check_request_id(&request.request_id)?;
        let deployment = DeploymentName::new(request.deployment.clone());
        let actor = caller.actor(&request.actor);
        // The CLI's trace continues here (W3C context in the request metadata).
        let span =
            tracing::info_span!("control.rollback", deployment = %deployment, actor = %actor);
        rollguard_proto::otel::set_parent(&span, &trace_context);
        let record = self
            .decisions
            .rollback(&deployment, reason, &actor, &request.request_id)
            .instrument(span)
            .await?;
        Ok(Response::new(pb::RollbackResponse {
            command_id: record.command_id.clone(),
            target_host_ids: record.targets.clone(),
            action: record.action.clone(),
            not_after: Some(time_to_pb(from_unix_ms(record.not_after_unix_ms))),
        }))
    }

    async fn get_command(
        &self,
        request: Request<pb::GetCommandRequest>,
    ) -> Result<Response<pb::GetCommandResponse>, Status> {
        let command_id = request.into_inner().command_id;
        let view = self
            .fleet
            .command(&command_id)
            .ok_or_else(|| Error::NotFound(format!("no command `{command_id}`")))?;
        let record = &view.record;
        Ok(Response::new(pb::GetCommandResponse {
            command_id: record.command_id.clone(),
            deployment: record.deployment.clone(),
            action: record.action.clone(),
            reason: record.reason.clone(),
            issued_at: Some(time_to_pb(from_unix_ms(record.issued_at_unix_ms))),
            not_after: Some(time_to_pb(from_unix_ms(record.not_after_unix_ms))),
            results: view
                .results
                .iter()
                .map(|result| {
                    // Only a failed run is retried: the lookup (a lock and a
                    // scan of the commands) is skipped for the others, which
                    // at 100,000 targets is every poll's time (issue 15).
                    let retried_by = (result.status == CommandStatus::Failed)
                        .then(|| self.fleet.retried_by(&record.command_id, &result.host_id))
                        .flatten();
                    // A promote is never retried: it has no attempts to run out of.
                    let last =
                        record.kind.is_rollback() && record.attempt >= self.config.action_retries;
                    result_to_wire(result, retried_by, last)
                })
                .collect(),
            retry_of: record.retry_of.clone(),
            attempt: record.attempt,
            local: record.local,
            kind: record.kind.as_str().to_owned(),
            version: record.version.clone(),
        }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let request = request.into_inner();
        let filter = optional_deployment(&request.deployment)?.map(|d| d.to_string());
        let limit = match request.limit {
            0 => HISTORY_LIMIT,
            n => n.min(HISTORY_LIMIT),
        } as usize;
        let store = self.store.clone();
        let entries = tokio::task::spawn_blocking(move || store.audit(filter.as_deref(), limit))
            .await
            .map_err(|err| Status::internal(format!("history read failed: {err}")))??;
        Ok(Response::new(pb::HistoryResponse {
            entries: entries.into_iter().map(audit_to_wire).collect(),
        }))
    }

    async fn why(
        &self,
        request: Request<pb::WhyRequest>,
    ) -> Result<Response<pb::WhyResponse>, Status> {
        let request = request.into_inner();
        validate_name("deployment", &request.deployment).map_err(Status::invalid_argument)?;
        let limit = match request.rounds {
            0 => 10,
            n => n.min(1000),
        } as usize;
        let store = self.store.clone();
        let deployment = request.deployment.clone();
        let rounds = tokio::task::spawn_blocking(move || store.rounds(&deployment, 0, limit))
            .await
            .map_err(|err| Status::internal(format!("why read failed: {err}")))??;
        Ok(Response::new(pb::WhyResponse {
            deployment: request.deployment,
            rounds: rounds.iter().map(judgement_to_wire).collect(),
        }))
    }

    async fn rearm(
        &self,
        request: Request<pb::RearmRequest>,
    ) -> Result<Response<pb::RearmResponse>, Status> {
        let caller = Caller::of(&request);
        let request = request.into_inner();
        validate_name("deployment", &request.deployment).map_err(Status::invalid_argument)?;
        if request.actor.len() > 256 {
            return Err(Status::invalid_argument("actor is too long"));
        }
        let deployment = DeploymentName::new(request.deployment.clone());
        let actor = caller.actor(&request.actor);
        let was_armed = self
            .decisions
            .rearm(&deployment, request.reason, actor)
            .await?;
        tracing::info!(%deployment, was_armed, "deployment re-armed");
        Ok(Response::new(pb::RearmResponse { was_armed }))
    }

    async fn report(
        &self,
        request: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let request = request.into_inner();
        validate_name("deployment", &request.deployment).map_err(Status::invalid_argument)?;
        let window = match &request.window {
            Some(d) => rollguard_proto::duration_from_pb("window", d).map_err(Error::from)?,
            None => Duration::from_secs(3600),
        };
        let now = SystemTime::now();
        let from = now.checked_sub(window).unwrap_or(SystemTime::UNIX_EPOCH);
        let store = self.store.clone();
        let deployment = request.deployment.clone();
        let rounds = tokio::task::spawn_blocking(move || {
            store.rounds(&deployment, unix_ms(from), usize::MAX)
        })
        .await
        .map_err(|err| Status::internal(format!("report read failed: {err}")))??;
        Ok(Response::new(report(
            &request.deployment,
            &rounds,
            from,
            now,
        )))
    }

    async fn rollout_preflight(
        &self,
        request: Request<pb::RolloutPreflightRequest>,
    ) -> Result<Response<pb::RolloutPreflightResponse>, Status> {
        rollout::preflight(self, request).await
    }

    async fn rollout_start(
        &self,
        request: Request<pb::RolloutStartRequest>,
    ) -> Result<Response<pb::RolloutStartResponse>, Status> {
        rollout::start(self, request).await
    }

    async fn rollout_status(
        &self,
        request: Request<pb::RolloutStatusRequest>,
    ) -> Result<Response<pb::RolloutStatusResponse>, Status> {
        rollout::status(self, request).await
    }

    async fn rollout_change(
        &self,
        request: Request<pb::RolloutChangeRequest>,
    ) -> Result<Response<pb::RolloutStatusResponse>, Status> {
        rollout::change(self, request).await
    }

    async fn rollout_retro(
        &self,
        request: Request<pb::RolloutRetroRequest>,
    ) -> Result<Response<pb::RolloutRetroResponse>, Status> {
        rollout::retro(self, request).await
    }

    async fn rollout_history(
        &self,
        request: Request<pb::RolloutHistoryRequest>,
    ) -> Result<Response<pb::RolloutHistoryResponse>, Status> {
        rollout::history(self, request).await
    }

    async fn list_deployments(
        &self,
        _request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let counts = self.fleet.host_counts();
        let names: std::collections::BTreeSet<&DeploymentName> = self
            .config
            .deployments
            .keys()
            .chain(counts.keys())
            .collect();
        let deployments = names
            .into_iter()
            .map(|name| {
                deployment_to_wire(
                    name,
                    self.config.deployments.contains_key(name),
                    &self.config.deployment(name),
                    self.decisions.state(name),
                    counts.get(name).copied().unwrap_or_default(),
                )
            })
            .collect();
        Ok(Response::new(pb::ListDeploymentsResponse { deployments }))
    }
}

/// The last argument is the hosts (seen, connected).
fn deployment_to_wire(
    name: &DeploymentName,
    configured: bool,
    policy: &Policy,
    state: JudgeState,
    (hosts_seen, hosts_connected): (u32, u32),
) -> pb::DeploymentInfo {
    pb::DeploymentInfo {
        deployment: name.to_string(),
        configured,
        rollback_action: policy.rollback_action.clone(),
        check_interval: Some(rollguard_proto::duration_to_pb(policy.check_interval)),
        consecutive_failures: policy.consecutive_failures,
        min_hosts: policy.min_hosts,
        min_requests: policy.min_requests,
        dry_run: policy.dry_run,
        max_beta_share: policy.max_beta_share,
        beta_hosts: policy
            .beta_hosts
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
        on_inconclusive: policy.on_inconclusive.as_str().to_owned(),
        on_error: policy.on_error.as_str().to_owned(),
        rules: policy
            .rules
            .iter()
            .map(|rule| pb::RuleSpec {
                metric: rule.metric.name.clone(),
                max: rule.max,
                min: rule.min,
                max_ratio_to_baseline: rule.max_ratio_to_baseline,
                min_baseline: rule.min_baseline,
                limit_text: rule.limit_text(),
            })
            .collect(),
        armed: state.armed,
        consecutive: state.consecutive,
        hosts_seen,
        hosts_connected,
    }
}

/// `rollguardctl report`'s answer: the review of `rounds` (see `review`).
fn report(
    deployment: &str,
    rounds: &[RoundRecord],
    from: SystemTime,
    to: SystemTime,
) -> pb::ReportResponse {
    let comparison = crate::review::compare(rounds);
    pb::ReportResponse {
        deployment: deployment.to_owned(),
        rounds: comparison.rounds,
        // What the rounds cover: the store keeps the newest 20,000 rounds of
        // a deployment, so a long window may start later than asked.
        from: Some(time_to_pb(
            rounds
                .first()
                .map_or(from, |r| from_unix_ms(r.at_unix_ms).max(from)),
        )),
        to: Some(time_to_pb(to)),
        rows: comparison
            .rows
            .iter()
            .map(|r| pb::ReportRow {
                metric: r.metric.to_owned(),
                beta: r.beta,
                baseline: r.baseline,
                change_percent: r.change_percent,
            })
            .collect(),
        beta_requests: comparison.beta_requests,
        baseline_requests: comparison.baseline_requests,
    }
}

fn audit_to_wire(e: AuditRecord) -> pb::AuditEntry {
    pb::AuditEntry {
        time: Some(time_to_pb(from_unix_ms(e.time_unix_ms))),
        deployment: e.deployment,
        action: e.action,
        reason: e.reason,
        command_id: e.command_id,
        actor: e.actor,
        detail: e.detail,
    }
}

fn verdict_to_wire(verdict: rollguard_common::policy::Verdict) -> i32 {
    use rollguard_common::policy::Verdict;
    (match verdict {
        Verdict::Pass => pb::Verdict::Pass,
        Verdict::Fail => pb::Verdict::Fail,
        Verdict::Inconclusive => pb::Verdict::Inconclusive,
        Verdict::Error => pb::Verdict::Error,
    }) as i32
}

fn judgement_to_wire(record: &RoundRecord) -> pb::Judgement {
    use rollguard_common::policy::Decision;
    let e = &record.evaluation;
    pb::Judgement {
        verdict: verdict_to_wire(e.verdict),
        reason: e.reason.clone(),
        consecutive: record.state.consecutive,
        consecutive_failures: record.consecutive_failures,
        armed: record.state.armed,
        dry_run: record.dry_run,
        blast_radius_exceeded: e.blast_radius_exceeded,
        rules: e
            .rules
            .iter()
            .map(|r| pb::RuleResult {
                metric: r.metric.clone(),
                value: r.value,
                baseline: r.baseline,
                limit: r.limit,
                limit_text: r.limit_text.clone(),
                verdict: verdict_to_wire(r.verdict),
                note: r.note.clone(),
            })
            .collect(),
        at: Some(time_to_pb(from_unix_ms(record.at_unix_ms))),
        beta_hosts: e.beta.hosts,
        baseline_hosts: e.baseline.hosts,
        decision: match record.decision {
            Decision::None => "none",
            Decision::RollBack => "roll_back",
            Decision::WouldRollBack => "would_roll_back",
        }
        .to_owned(),
        beta_requests: e.beta.requests,
        baseline_requests: e.baseline.requests,
        command_id: record.command_id.clone(),
    }
}

/// Checks a rollback's idempotency key: empty (none), or at most 128 bytes
/// of printable ASCII, so that the keys kept with the commands stay small
/// and print as they are in logs.
fn check_request_id(request_id: &str) -> Result<(), Status> {
    const MAX_REQUEST_ID_BYTES: usize = 128;
    if request_id.len() > MAX_REQUEST_ID_BYTES {
        return Err(Status::invalid_argument(format!(
            "request_id is longer than {MAX_REQUEST_ID_BYTES} bytes"
        )));
    }
    if !request_id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Status::invalid_argument(
            "request_id must be printable ASCII without spaces",
        ));
    }
    Ok(())
}

fn optional_deployment(deployment: &str) -> Result<Option<DeploymentName>, Status> {
    if deployment.is_empty() {
        return Ok(None);
    }
    validate_name("deployment", deployment).map_err(Status::invalid_argument)?;
    Ok(Some(DeploymentName::new(deployment)))
}

fn cohort_to_wire(view: &CohortView) -> pb::CohortStatus {
    let agg = &view.aggregate;
    pb::CohortStatus {
        cohort: pb::Cohort::from(view.cohort) as i32,
        hosts_connected: view.hosts_connected,
        hosts_stale: view.hosts_stale,
        hosts_disconnected: view.hosts_disconnected,
        cpu_percent_mean: agg.cpu_percent_mean,
        cpu_percent_max: agg.cpu_percent_max,
        memory_percent_mean: agg.memory_percent_mean,
        memory_percent_max: agg.memory_percent_max,
        load1_mean: agg.load1_mean,
        load1_max: agg.load1_max,
        swap_used_bytes_mean: agg.swap_used_bytes_mean,
        disk_read_bytes_per_sec_mean: agg.disk_read_bytes_per_sec_mean,
        disk_write_bytes_per_sec_mean: agg.disk_write_bytes_per_sec_mean,
        net_rx_bytes_per_sec_mean: agg.net_rx_bytes_per_sec_mean,
        net_tx_bytes_per_sec_mean: agg.net_tx_bytes_per_sec_mean,
        pressure_mean: agg.pressure_mean.map(pb::Pressure::from),
        versions: view.versions.clone(),
    }
}

fn agent_to_wire(view: &AgentView) -> pb::AgentInfo {
    pb::AgentInfo {
        host_id: view.identity.host_id.to_string(),
        deployment: view.identity.deployment.to_string(),
        cohort: pb::Cohort::from(view.identity.cohort) as i32,
        app_version: view.identity.app_version.clone(),
        agent_version: view.identity.agent_version.clone(),
        connected: view.connected,
        stale: view.stale,
        last_seen: Some(time_to_pb(view.last_seen)),
        action_names: view.identity.action_names.clone(),
        latest: view.latest.as_ref().map(pb::HostSample::from),
        labels: view
            .identity
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A host's result; `retried_by` names its retry, and a failed run with
/// none and no retry left needs a person.
fn result_to_wire(
    result: &ResultRecord,
    retried_by: Option<String>,
    last_attempt: bool,
) -> pb::HostResult {
    pb::HostResult {
        needs_attention: result.status == CommandStatus::Failed && last_attempt,
        retried_by: retried_by.unwrap_or_default(),
        host_id: result.host_id.clone(),
        status: pb::CommandStatus::from(result.status) as i32,
        exit_code: result.exit_code,
        reason: result.reason.clone(),
        output_tail: result.output_tail.clone(),
        updated_at: (result.updated_at_unix_ms > 0)
            .then(|| time_to_pb(from_unix_ms(result.updated_at_unix_ms))),
        started_at: result
            .started_at_unix_ms
            .map(|ms| time_to_pb(from_unix_ms(ms))),
        duration: result
            .duration_ms
            .map(|ms| rollguard_proto::duration_to_pb(Duration::from_millis(ms))),
    }
}

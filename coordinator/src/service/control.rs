//! `ControlService`: what rollguardctl calls.
//!
//! Reads come from fleet state (or the store, for history). Every call that
//! changes something writes an audit entry in the same commit as its change.

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use rollguard_common::ids::validate_name;
use rollguard_common::DeploymentName;
use rollguard_proto::time_to_pb;
use rollguard_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::error::Error;
use crate::fleet::{AgentView, CohortView, DeploymentView};
use crate::store::{from_unix_ms, unix_ms, AuditRecord, CommandRecord, ResultRecord, Write};

/// How often a watch stream sends the status.
const WATCH_PERIOD: Duration = Duration::from_secs(1);
/// Default and largest history page.
const HISTORY_LIMIT: u32 = 1000;

/// The control API.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    shared: Shared,
}

impl Control {
    pub(crate) fn new(shared: Shared) -> Self {
        Control { shared }
    }

    fn status(&self, deployment: &str) -> Result<pb::GetFleetStatusResponse, Status> {
        let filter = optional_deployment(deployment)?;
        let views = self.shared.fleet.status(filter.as_ref());
        Ok(pb::GetFleetStatusResponse {
            generated_at: Some(time_to_pb(SystemTime::now())),
            deployments: views.iter().map(|v| self.deployment_to_wire(v)).collect(),
        })
    }

    fn deployment_to_wire(&self, view: &DeploymentView) -> pb::DeploymentStatus {
        pb::DeploymentStatus {
            deployment: view.deployment.to_string(),
            cohorts: view.cohorts.iter().map(cohort_to_wire).collect(),
            rollback_action: self
                .shared
                .config
                .deployment(&view.deployment)
                .rollback_action,
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
        let deployment = request.into_inner().deployment;
        optional_deployment(&deployment)?;
        let (tx, rx) = mpsc::channel(4);
        let control = self.clone();
        let shutdown = self.shared.streams_shutdown.clone();
        self.shared.tracker.spawn(async move {
            let mut ticker = tokio::time::interval(WATCH_PERIOD);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
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
        let agents = self.shared.fleet.agents(filter.as_ref());
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.iter().map(agent_to_wire).collect(),
        }))
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::RollbackResponse>, Status> {
        let request = request.into_inner();
        validate_name("deployment", &request.deployment).map_err(Status::invalid_argument)?;
        let reason = request.reason.trim();
        if reason.is_empty() {
            return Err(Status::invalid_argument("a rollback needs a reason"));
        }
        if reason.len() > 1024 || request.actor.len() > 256 {
            return Err(Status::invalid_argument("reason or actor is too long"));
        }
        let deployment = DeploymentName::new(request.deployment.clone());
        let now = SystemTime::now();
        let (targets, known) = self.shared.fleet.beta_targets(&deployment, now);
        if !known && !self.shared.config.deployments.contains_key(&deployment) {
            return Err(Error::NotFound(format!(
                "deployment `{deployment}` is not configured and no host of it was ever seen"
            ))
            .into());
        }
        let action = self.shared.config.deployment(&deployment).rollback_action;
        let actor = if request.actor.is_empty() {
            "unknown".to_owned()
        } else {
            request.actor.clone()
        };
        let not_after = now + self.shared.config.command_ttl;
        let record = CommandRecord {
            command_id: new_command_id(now),
            deployment: deployment.to_string(),
            action: action.clone(),
            reason: reason.to_owned(),
            actor: actor.clone(),
            issued_at_unix_ms: unix_ms(now),
            not_after_unix_ms: unix_ms(not_after),
            targets: targets.clone(),
            trace_context: Vec::new(),
        };
        let audit = AuditRecord {
            time_unix_ms: unix_ms(now),
            deployment: deployment.to_string(),
            action: "rollback".to_owned(),
            reason: reason.to_owned(),
            command_id: record.command_id.clone(),
            actor,
            detail: format!(
                "manual; action `{action}` to {} beta host(s)",
                targets.len()
            ),
        };
        // The decision is durable before any agent hears of it.
        self.shared
            .store
            .commit(vec![Write::Command(record.clone()), Write::Audit(audit)])
            .await?;
        tracing::info!(
            %deployment,
            command_id = %record.command_id,
            action = %action,
            n_targets = targets.len(),
            "rollback decided"
        );
        let response = pb::RollbackResponse {
            command_id: record.command_id.clone(),
            target_host_ids: targets,
            action,
            not_after: Some(time_to_pb(not_after)),
        };
        if let Some(updated) = self.shared.fleet.dispatch(record) {
            self.shared.store.queue(Write::Command(updated)).await?;
        }
        Ok(Response::new(response))
    }

    async fn get_command(
        &self,
        request: Request<pb::GetCommandRequest>,
    ) -> Result<Response<pb::GetCommandResponse>, Status> {
        let command_id = request.into_inner().command_id;
        let view = self
            .shared
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
            results: view.results.iter().map(result_to_wire).collect(),
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
        let store = self.shared.store.clone();
        let entries = tokio::task::spawn_blocking(move || store.audit(filter.as_deref(), limit))
            .await
            .map_err(|err| Status::internal(format!("history read failed: {err}")))??;
        Ok(Response::new(pb::HistoryResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::AuditEntry {
                    time: Some(time_to_pb(from_unix_ms(e.time_unix_ms))),
                    deployment: e.deployment,
                    action: e.action,
                    reason: e.reason,
                    command_id: e.command_id,
                    actor: e.actor,
                    detail: e.detail,
                })
                .collect(),
        }))
    }
}

fn optional_deployment(deployment: &str) -> Result<Option<DeploymentName>, Status> {
    if deployment.is_empty() {
        return Ok(None);
    }
    validate_name("deployment", deployment).map_err(Status::invalid_argument)?;
    Ok(Some(DeploymentName::new(deployment)))
}

/// A command id that is unique across restarts: time plus randomness.
fn new_command_id(now: SystemTime) -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS per process and per instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("cmd-{:x}-{:016x}", unix_ms(now), hasher.finish())
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
    }
}

fn result_to_wire(result: &ResultRecord) -> pb::HostResult {
    pb::HostResult {
        host_id: result.host_id.clone(),
        status: pb::CommandStatus::from(result.status) as i32,
        exit_code: result.exit_code,
        reason: result.reason.clone(),
        output_tail: result.output_tail.clone(),
        updated_at: (result.updated_at_unix_ms > 0)
            .then(|| time_to_pb(from_unix_ms(result.updated_at_unix_ms))),
    }
}

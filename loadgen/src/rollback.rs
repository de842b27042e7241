//! The rollback measurement: `ControlService.Rollback` for the deployment,
//! then `GetCommand` until every target's result is `succeeded`.
//!
//! The fan-out itself (when each simulated agent got the command) is taken
//! by the agents; this module times the control call and the acknowledgement
//! of every result. To keep its own polling from loading the coordinator it
//! polls `GetCommand` only once every local agent has sent its answer.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use tonic::transport::Channel;

use crate::sim::Progress;

/// Poll period of the local answer counter and of `GetCommand`.
// As often as `rollguardctl rollback --wait`: each poll builds every target's result
// under the fleet lock, so polling faster would slow the fan-out it measures.
const POLL: Duration = Duration::from_millis(200);

/// What the control side saw of one rollback.
#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub(crate) command_id: String,
    /// When the Rollback call was made.
    pub(crate) called_at: Instant,
    /// How long the Rollback call took (commit of the decision included).
    pub(crate) call: Duration,
    /// Hosts the coordinator addressed.
    pub(crate) targets: usize,
    /// From the call until a `GetCommand` showed every target `succeeded`.
    pub(crate) all_acked: Option<Duration>,
    /// Status name -> hosts, from the last `GetCommand`.
    pub(crate) statuses: BTreeMap<String, usize>,
    /// CPU time the coordinator (when its pid is known) and this process
    /// spent from the call until every result was in (or the timeout): the
    /// fan-out's cost, steadier from run to run than its latency.
    pub(crate) coordinator_cpu: Option<Duration>,
    pub(crate) loadgen_cpu: Option<Duration>,
}

/// Rolls `deployment` back and waits (up to `timeout`) until every target acked success.
pub(crate) async fn run(
    control: &mut ControlServiceClient<Channel>,
    deployment: &str,
    n_beta: usize,
    progress: &Progress,
    timeout: Duration,
    coordinator_pid: Option<u32>,
) -> anyhow::Result<Figures> {
    let cpu_at_call = cpu_ticks(coordinator_pid);
    let called_at = Instant::now();
    let deadline = called_at + timeout;
    let response = control
        .rollback(pb::RollbackRequest {
            deployment: deployment.to_owned(),
            reason: "rollguard-loadgen fan-out measurement".to_owned(),
            actor: "rollguard-loadgen".to_owned(),
            // Each measurement is a rollback of its own.
            request_id: String::new(),
        })
        .await
        .context("calling ControlService.Rollback")?
        .into_inner();
    let call = called_at.elapsed();
    let mut figures = Figures {
        command_id: response.command_id,
        called_at,
        call,
        targets: response.target_host_ids.len(),
        all_acked: None,
        statuses: BTreeMap::new(),
        coordinator_cpu: None,
        loadgen_cpu: None,
    };
    tracing::info!(
        command_id = %figures.command_id,
        n_targets = figures.targets,
        call_ms = call.as_millis() as u64,
        "rollback called"
    );
    while progress.commands_answered.load(Ordering::Relaxed) < n_beta && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    loop {
        let command = control
            .get_command(pb::GetCommandRequest {
                command_id: figures.command_id.clone(),
            })
            .await
            .context("calling ControlService.GetCommand")?
            .into_inner();
        let now = Instant::now();
        figures.statuses.clear();
        for result in &command.results {
            let name = pb::CommandStatus::try_from(result.status)
                .map(|s| {
                    s.as_str_name()
                        .trim_start_matches("COMMAND_STATUS_")
                        .to_lowercase()
                })
                .unwrap_or_else(|_| format!("status {}", result.status));
            *figures.statuses.entry(name).or_default() += 1;
        }
        figures.targets = command.results.len();
        let succeeded = command
            .results
            .iter()
            .all(|r| r.status == pb::CommandStatus::Succeeded as i32);
        if succeeded && !command.results.is_empty() {
            figures.all_acked = Some(now - called_at);
            break;
        }
        if now >= deadline {
            tracing::warn!(statuses = ?figures.statuses, "not every target acked success in time");
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let cpu_at_end = cpu_ticks(coordinator_pid);
    let spent = |at_call: Option<u64>, at_end: Option<u64>| {
        Some(crate::procfs::ticks_to_duration(
            at_end?.checked_sub(at_call?)?,
        ))
    };
    figures.coordinator_cpu = spent(cpu_at_call.0, cpu_at_end.0);
    figures.loadgen_cpu = spent(cpu_at_call.1, cpu_at_end.1);
    Ok(figures)
}

/// CPU ticks of the coordinator (if its pid is known) and of this process.
fn cpu_ticks(coordinator_pid: Option<u32>) -> (Option<u64>, Option<u64>) {
    let ticks = |pid| crate::procfs::sample(pid).ok().map(|s| s.cpu_ticks);
    (
        coordinator_pid.and_then(|pid| ticks(Some(pid))),
        ticks(None),
    )
}

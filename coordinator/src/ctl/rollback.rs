//! `rollguardctl rollback`: a manual rollback, optionally waiting for its
//! results.

use std::time::Duration;

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::json;
use tonic::transport::Channel;
use tracing::Instrument;

use super::args::Format;
use super::connect::{actor, request, status_error};
use super::results::{all_succeeded, print_results, wait_for_results};

pub(crate) async fn rollback(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    reason: String,
    wait: bool,
    timeout: Duration,
) -> anyhow::Result<u8> {
    // The trace of a manual rollback starts here and travels in the metadata.
    let span = tracing::info_span!("rollguardctl.rollback", deployment = %deployment);
    let mut call = request(pb::RollbackRequest {
        deployment: deployment.clone(),
        reason,
        actor: actor(),
        request_id: String::new(),
    });
    rollguard_proto::otel::to_metadata(&span, call.metadata_mut());
    let response = client
        .rollback(call)
        .instrument(span)
        .await
        .map_err(status_error)?
        .into_inner();
    if response.target_host_ids.is_empty() {
        tracing::warn!(%deployment, "no beta host of this deployment is known yet; beta hosts that connect before not_after will get the rollback");
    }
    if !wait {
        match format {
            Format::Json => println!(
                "{}",
                json!({
                    "command_id": response.command_id,
                    "action": response.action,
                    "targets": response.target_host_ids,
                })
            ),
            Format::Table => println!(
                "rollback {} of {deployment}: action `{}` sent to {} beta host(s): {}",
                response.command_id,
                response.action,
                response.target_host_ids.len(),
                response.target_host_ids.join(", ")
            ),
        }
        return Ok(0);
    }
    let command = wait_for_results(client, &response.command_id, timeout).await?;
    print_results(&command, format);
    Ok(if all_succeeded(&command) { 0 } else { 1 })
}

//! `rollguardctl rollback`: a manual rollback, optionally waiting for its
//! results.
//!
//! Each invocation sends one random idempotency key (`request_id`) and
//! retries the call once with it when the first attempt ended without
//! telling whether the coordinator decided (UNAVAILABLE, DEADLINE_EXCEEDED):
//! the coordinator then returns the command the first attempt made, if it
//! made one, instead of rolling back twice.

use std::future::Future;
use std::time::Duration;

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status};
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
    let message = pb::RollbackRequest {
        deployment: deployment.clone(),
        reason,
        actor: actor(),
        request_id: new_request_id(),
    };
    let response = call_with_retry(RETRY_PAUSE, || {
        let mut call = request(message.clone());
        rollguard_proto::otel::to_metadata(&span, call.metadata_mut());
        let mut client = client.clone();
        async move { client.rollback(call).await.map(tonic::Response::into_inner) }
            .instrument(span.clone())
    })
    .await
    .map_err(status_error)?;
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

/// Pause before the one retry.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Returns a fresh idempotency key: 128 random bits in hex.
fn new_request_id() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// Whether a failed call may have decided a rollback or not: the answer
/// was lost or never came. Every other failure is the coordinator's answer.
fn may_retry(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded)
}

/// Makes the call, and once more after `pause` if the first attempt
/// failed with a code [`may_retry`] takes; `call` builds each attempt from
/// the same message, so both carry the same `request_id`.
async fn call_with_retry<T, Fut>(
    pause: Duration,
    mut call: impl FnMut() -> Fut,
) -> Result<T, Status>
where
    Fut: Future<Output = Result<T, Status>>,
{
    match call().await {
        Err(status) if may_retry(status.code()) => {
            tracing::warn!(code = ?status.code(), error = %status.message(), "rollback call failed; retrying once with the same request id");
            tokio::time::sleep(pause).await;
            call().await
        }
        result => result,
    }
}

#[cfg(test)]
mod tests;

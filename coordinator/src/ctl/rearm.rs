//! `rollguardctl rearm`: let the policy decide a rollback again.

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{actor, request, status_error};

pub(crate) async fn rearm(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    reason: String,
) -> anyhow::Result<u8> {
    let response = client
        .rearm(request(pb::RearmRequest {
            deployment: deployment.clone(),
            reason,
            actor: actor(),
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            json!({ "deployment": deployment, "armed": true, "was_armed": response.was_armed })
        ),
        Format::Table => {
            if response.was_armed {
                println!("{deployment} was already armed; its count is reset");
            } else {
                println!("{deployment} re-armed; the policy may decide a rollback again");
            }
        }
    }
    Ok(0)
}

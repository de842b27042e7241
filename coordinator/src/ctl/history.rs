//! `rollguardctl history`: the audit history of changes.

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{request, status_error};
use super::output::{fmt_time, table};

pub(crate) async fn history(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    limit: u32,
) -> anyhow::Result<u8> {
    let response = client
        .history(request(pb::HistoryRequest { deployment, limit }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => {
            let entries: Vec<Value> = response
                .entries
                .iter()
                .map(|e| {
                    json!({
                        "time": e.time.as_ref().map(fmt_time),
                        "deployment": e.deployment,
                        "action": e.action,
                        "reason": e.reason,
                        "command_id": e.command_id,
                        "actor": e.actor,
                        "detail": e.detail,
                    })
                })
                .collect();
            println!("{}", Value::Array(entries));
        }
        Format::Table => {
            if response.entries.is_empty() {
                println!("no history yet");
                return Ok(0);
            }
            let mut rows = vec![
                ["TIME", "DEPLOYMENT", "ACTION", "ACTOR", "COMMAND", "REASON"]
                    .map(str::to_owned)
                    .to_vec(),
            ];
            for e in &response.entries {
                rows.push(vec![
                    e.time.as_ref().map(fmt_time).unwrap_or_default(),
                    e.deployment.clone(),
                    e.action.clone(),
                    e.actor.clone(),
                    e.command_id.clone(),
                    e.reason.clone(),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}

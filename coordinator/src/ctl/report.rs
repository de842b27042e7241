//! `rollguardctl report`: beta vs baseline over a window.

use std::time::Duration;

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{request, status_error};
use super::judgement::fmt_opt;
use super::output::{fmt_time, table};

pub(crate) async fn report(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    window: Duration,
) -> anyhow::Result<u8> {
    let response = client
        .report(request(pb::ReportRequest {
            deployment,
            window: Some(rollguard_proto::duration_to_pb(window)),
        }))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "deployment": response.deployment,
                "rounds": response.rounds,
                "from": response.from.as_ref().map(fmt_time),
                "to": response.to.as_ref().map(fmt_time),
                "beta_requests": response.beta_requests,
                "baseline_requests": response.baseline_requests,
                "rows": response.rows.iter().map(|r| json!({
                    "metric": r.metric,
                    "beta": r.beta,
                    "baseline": r.baseline,
                    "change_percent": r.change_percent,
                })).collect::<Vec<_>>(),
            })
        ),
        Format::Table => {
            println!(
                "{}: beta vs baseline, {} round(s) from {} to {} ({} vs {} requests)",
                response.deployment,
                response.rounds,
                response.from.as_ref().map(fmt_time).unwrap_or_default(),
                response.to.as_ref().map(fmt_time).unwrap_or_default(),
                fmt_opt(Some(response.beta_requests)),
                fmt_opt(Some(response.baseline_requests)),
            );
            let mut rows = vec![["METRIC", "BETA", "BASELINE", "CHANGE"]
                .map(str::to_owned)
                .to_vec()];
            for r in &response.rows {
                rows.push(vec![
                    r.metric.clone(),
                    fmt_opt(r.beta),
                    fmt_opt(r.baseline),
                    r.change_percent
                        .map(|c| format!("{c:+.1}%"))
                        .unwrap_or_else(|| "-".to_owned()),
                ]);
            }
            print!("{}", table(&rows));
        }
    }
    Ok(0)
}

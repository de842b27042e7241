//! `rollguardctl deployments`: each deployment's policy and arming.

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{request, status_error};
use super::output::table;

pub(crate) async fn deployments(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
) -> anyhow::Result<u8> {
    let response = client
        .list_deployments(request(pb::ListDeploymentsRequest {}))
        .await
        .map_err(status_error)?
        .into_inner();
    match format {
        Format::Json => {
            let deployments: Vec<Value> =
                response.deployments.iter().map(deployment_json).collect();
            println!("{}", Value::Array(deployments));
        }
        Format::Table => {
            let mut rows = vec![[
                "DEPLOYMENT",
                "POLICY",
                "ARMED",
                "FAILING",
                "HOSTS",
                "ROUND",
                "RULES",
            ]
            .map(str::to_owned)
            .to_vec()];
            for d in &response.deployments {
                let rules: Vec<String> = d
                    .rules
                    .iter()
                    .map(|r| format!("{} {}", r.metric, r.limit_text))
                    .collect();
                rows.push(vec![
                    d.deployment.clone(),
                    match (d.configured, d.dry_run) {
                        (false, _) => "none".to_owned(),
                        (true, true) => "dry run".to_owned(),
                        (true, false) => "yes".to_owned(),
                    },
                    if d.armed { "yes" } else { "no" }.to_owned(),
                    format!("{}/{}", d.consecutive, d.consecutive_failures),
                    format!("{}/{}", d.hosts_connected, d.hosts_seen),
                    d.check_interval
                        .as_ref()
                        .and_then(|i| rollguard_proto::duration_from_pb("check_interval", i).ok())
                        .map(|i| humantime::format_duration(i).to_string())
                        .unwrap_or_default(),
                    rules.join("; "),
                ]);
            }
            if response.deployments.is_empty() {
                println!("no deployment configured or seen");
            } else {
                print!("{}", table(&rows));
            }
        }
    }
    Ok(0)
}

fn deployment_json(d: &pb::DeploymentInfo) -> Value {
    let rules: Vec<Value> = d
        .rules
        .iter()
        .map(|r| {
            json!({
                "metric": r.metric,
                "max": r.max,
                "min": r.min,
                "max_ratio_to_baseline": r.max_ratio_to_baseline,
                "min_baseline": r.min_baseline,
                "limit_text": r.limit_text,
            })
        })
        .collect();
    json!({
        "deployment": d.deployment,
        "configured": d.configured,
        "rollback_action": d.rollback_action,
        "check_interval_secs": d.check_interval.as_ref().map(|i| i.seconds as f64 + f64::from(i.nanos) / 1e9),
        "consecutive_failures": d.consecutive_failures,
        "min_hosts": d.min_hosts,
        "min_requests": d.min_requests,
        "dry_run": d.dry_run,
        "max_beta_share": d.max_beta_share,
        "beta_hosts": d.beta_hosts,
        "on_inconclusive": d.on_inconclusive,
        "on_error": d.on_error,
        "rules": rules,
        "armed": d.armed,
        "consecutive": d.consecutive,
        "hosts_seen": d.hosts_seen,
        "hosts_connected": d.hosts_connected,
    })
}

//! `rollguardctl status`: per deployment and cohort, once or as a stream.

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{request, status_error};
use super::judgement;
use super::output::{cohort_name, fmt_rate, fmt_time, table};

pub(crate) async fn status(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
    watch: bool,
) -> anyhow::Result<u8> {
    if !watch {
        let response = client
            .get_fleet_status(request(pb::GetFleetStatusRequest { deployment }))
            .await
            .map_err(status_error)?
            .into_inner();
        print_status(&response, format);
        return Ok(0);
    }
    let mut stream = client
        .watch_fleet_status(pb::WatchFleetStatusRequest { deployment })
        .await
        .map_err(status_error)?
        .into_inner();
    while let Some(response) = stream.message().await.map_err(status_error)? {
        if format == Format::Table {
            // Clear the screen and home the cursor, then redraw.
            print!("\x1b[2J\x1b[H");
        }
        print_status(&response, format);
    }
    Ok(0)
}

pub(crate) fn print_status(response: &pb::GetFleetStatusResponse, format: Format) {
    match format {
        Format::Json => println!("{}", status_json(response)),
        Format::Table => {
            let mut rows = vec![vec![
                "DEPLOYMENT".to_owned(),
                "COHORT".to_owned(),
                "CONNECTED".to_owned(),
                "STALE".to_owned(),
                "GONE".to_owned(),
                "CPU% MEAN".to_owned(),
                "CPU% MAX".to_owned(),
                "MEM% MEAN".to_owned(),
                "MEM% MAX".to_owned(),
                "LOAD1".to_owned(),
                "DISK R/W".to_owned(),
                "NET RX/TX".to_owned(),
                "VERSIONS".to_owned(),
            ]];
            let width = rows[0].len();
            for deployment in &response.deployments {
                // An unconfigured name is most often a typo in an agent's config.
                let name = if !deployment.unconfigured {
                    deployment.deployment.clone()
                } else {
                    format!("{} (no policy)", deployment.deployment)
                };
                if deployment.cohorts.is_empty() {
                    let mut row = vec![name.clone(), "-".to_owned()];
                    row.extend(["0", "0", "0"].map(str::to_owned));
                    row.resize(width, "-".to_owned());
                    rows.push(row);
                }
                for cohort in &deployment.cohorts {
                    rows.push(vec![
                        name.clone(),
                        cohort_name(cohort.cohort).to_owned(),
                        cohort.hosts_connected.to_string(),
                        cohort.hosts_stale.to_string(),
                        cohort.hosts_disconnected.to_string(),
                        format!("{:.1}", cohort.cpu_percent_mean),
                        format!("{:.1}", cohort.cpu_percent_max),
                        format!("{:.1}", cohort.memory_percent_mean),
                        format!("{:.1}", cohort.memory_percent_max),
                        format!("{:.2}", cohort.load1_mean),
                        format!(
                            "{} / {}",
                            fmt_rate(cohort.disk_read_bytes_per_sec_mean),
                            fmt_rate(cohort.disk_write_bytes_per_sec_mean)
                        ),
                        format!(
                            "{} / {}",
                            fmt_rate(cohort.net_rx_bytes_per_sec_mean),
                            fmt_rate(cohort.net_tx_bytes_per_sec_mean)
                        ),
                        cohort.versions.join(" "),
                    ]);
                }
            }
            if response.deployments.is_empty() {
                println!("no hosts seen yet");
            } else {
                print!("{}", table(&rows));
            }
            for deployment in &response.deployments {
                if !deployment.needs_attention.is_empty() {
                    println!(
                        "\n{}: NEEDS ATTENTION: the rollback failed on every retry on {}",
                        deployment.deployment,
                        deployment.needs_attention.join(", ")
                    );
                }
            }
            for deployment in &response.deployments {
                if let Some(j) = &deployment.judgement {
                    println!();
                    judgement::print_judgement_header(&deployment.deployment, j);
                    judgement::print_rules(j);
                }
            }
        }
    }
}

fn status_json(response: &pb::GetFleetStatusResponse) -> Value {
    let deployments: Vec<Value> = response
        .deployments
        .iter()
        .map(|d| {
            let cohorts: Vec<Value> = d
                .cohorts
                .iter()
                .map(|c| {
                    json!({
                        "cohort": cohort_name(c.cohort),
                        "hosts_connected": c.hosts_connected,
                        "hosts_stale": c.hosts_stale,
                        "hosts_disconnected": c.hosts_disconnected,
                        "cpu_percent_mean": c.cpu_percent_mean,
                        "cpu_percent_max": c.cpu_percent_max,
                        "memory_percent_mean": c.memory_percent_mean,
                        "memory_percent_max": c.memory_percent_max,
                        "load1_mean": c.load1_mean,
                        "load1_max": c.load1_max,
                        "swap_used_bytes_mean": c.swap_used_bytes_mean,
                        "disk_read_bytes_per_sec_mean": c.disk_read_bytes_per_sec_mean,
                        "disk_write_bytes_per_sec_mean": c.disk_write_bytes_per_sec_mean,
                        "net_rx_bytes_per_sec_mean": c.net_rx_bytes_per_sec_mean,
                        "net_tx_bytes_per_sec_mean": c.net_tx_bytes_per_sec_mean,
                        "pressure_mean": c.pressure_mean.map(|p| json!({
                            "cpu_some_avg10": p.cpu_some_avg10,
                            "memory_some_avg10": p.memory_some_avg10,
                            "io_some_avg10": p.io_some_avg10,
                        })),
                        "versions": c.versions,
                    })
                })
                .collect();
            json!({
                "deployment": d.deployment,
                "rollback_action": d.rollback_action,
                "configured": !d.unconfigured,
                "needs_attention": d.needs_attention,
                "cohorts": cohorts,
                "judgement": d.judgement.as_ref().map(judgement::judgement_json),
            })
        })
        .collect();
    json!({
        "generated_at": response.generated_at.as_ref().map(fmt_time),
        "deployments": deployments,
    })
}

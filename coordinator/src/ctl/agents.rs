//! `rollguardctl agents`: one row (or JSON object) per host.

use rollguard_proto::v1 as pb;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use serde_json::{json, Value};
use tonic::transport::Channel;

use super::args::Format;
use super::connect::{request, status_error};
use super::output::{cohort_name, fmt_bytes, fmt_rate, fmt_time, table};

pub(crate) async fn agents(
    client: &mut ControlServiceClient<Channel>,
    format: Format,
    deployment: String,
) -> anyhow::Result<u8> {
    let response = client
        .list_agents(request(pb::ListAgentsRequest { deployment }))
        .await
        .map_err(status_error)?
        .into_inner();
    print_agents(&response, format);
    Ok(0)
}

pub(crate) fn print_agents(response: &pb::ListAgentsResponse, format: Format) {
    match format {
        Format::Json => {
            let agents: Vec<Value> = response.agents.iter().map(agent_json).collect();
            println!("{}", Value::Array(agents));
        }
        Format::Table => {
            let mut rows = vec![[
                "HOST",
                "DEPLOYMENT",
                "COHORT",
                "VERSION",
                "STATE",
                "LAST SEEN",
                "CPU%",
                "MEM",
                "LOAD1",
                "DISK R/W",
                "NET RX/TX",
            ]
            .map(str::to_owned)
            .to_vec()];
            for agent in &response.agents {
                let state = match (agent.connected, agent.stale) {
                    (true, false) => "connected",
                    (true, true) => "stale",
                    (false, _) => "disconnected",
                };
                let figures = match &agent.latest {
                    Some(s) => vec![
                        format!("{:.1}", s.cpu_percent),
                        format!(
                            "{} / {}",
                            fmt_bytes(s.memory_used_bytes as f64),
                            fmt_bytes(s.memory_total_bytes as f64)
                        ),
                        format!("{:.2}", s.load1),
                        format!(
                            "{} / {}",
                            fmt_rate(s.disk_read_bytes_per_sec),
                            fmt_rate(s.disk_write_bytes_per_sec)
                        ),
                        format!(
                            "{} / {}",
                            fmt_rate(s.net_rx_bytes_per_sec),
                            fmt_rate(s.net_tx_bytes_per_sec)
                        ),
                    ],
                    None => vec!["-".to_owned(); 5],
                };
                let mut row = vec![
                    agent.host_id.clone(),
                    agent.deployment.clone(),
                    cohort_name(agent.cohort).to_owned(),
                    if agent.app_version.is_empty() {
                        "-".to_owned()
                    } else {
                        agent.app_version.clone()
                    },
                    state.to_owned(),
                    agent.last_seen.as_ref().map(fmt_time).unwrap_or_default(),
                ];
                row.extend(figures);
                rows.push(row);
            }
            if response.agents.is_empty() {
                println!("no hosts seen yet");
            } else {
                print!("{}", table(&rows));
            }
        }
    }
}

fn agent_json(agent: &pb::AgentInfo) -> Value {
    let s = agent.latest.as_ref();
    // The checked domain form, for the lists and the app's percentiles.
    let latest = s.and_then(|s| rollguard_common::HostSample::try_from(s).ok());
    json!({
        "host_id": agent.host_id,
        "deployment": agent.deployment,
        "cohort": cohort_name(agent.cohort),
        "version": agent.app_version,
        "agent_version": agent.agent_version,
        "connected": agent.connected,
        "stale": agent.stale,
        "last_seen": agent.last_seen.as_ref().map(fmt_time),
        "actions": agent.action_names,
        "labels": agent.labels,
        "cpu_percent": s.map(|s| s.cpu_percent),
        "cpu_core_percent": s.map(|s| s.cpu_core_percent.clone()),
        "memory_used_bytes": s.map(|s| s.memory_used_bytes),
        "memory_total_bytes": s.map(|s| s.memory_total_bytes),
        "memory_available_bytes": s.map(|s| s.memory_available_bytes),
        "swap_used_bytes": s.map(|s| s.swap_used_bytes),
        "load1": s.map(|s| s.load1),
        "load5": s.map(|s| s.load5),
        "load15": s.map(|s| s.load15),
        "disk_read_bytes_per_sec": s.map(|s| s.disk_read_bytes_per_sec),
        "disk_write_bytes_per_sec": s.map(|s| s.disk_write_bytes_per_sec),
        "disk_read_ops_per_sec": s.map(|s| s.disk_read_ops_per_sec),
        "disk_write_ops_per_sec": s.map(|s| s.disk_write_ops_per_sec),
        "net_rx_bytes_per_sec": s.map(|s| s.net_rx_bytes_per_sec),
        "net_tx_bytes_per_sec": s.map(|s| s.net_tx_bytes_per_sec),
        "pressure": s.and_then(|s| s.pressure).map(|p| json!({
            "cpu_some_avg10": p.cpu_some_avg10,
            "memory_some_avg10": p.memory_some_avg10,
            "io_some_avg10": p.io_some_avg10,
        })),
        "filesystems": s.map(|s| s.filesystems.iter().map(|f| json!({
            "mount_point": f.mount_point, "device": f.device, "fs_type": f.fs_type,
            "used_bytes": f.used_bytes, "total_bytes": f.total_bytes,
        })).collect::<Vec<_>>()),
        "disks": latest.as_ref().map(|s| &s.disks),
        "interfaces": latest.as_ref().map(|s| &s.interfaces),
        "app": latest.as_ref().and_then(|s| s.app.as_ref()).map(app_json),
    })
}

/// One host's application health over its latest interval, with the
/// percentiles of that interval's histogram deltas.
fn app_json(app: &rollguard_common::sample::AppHealth) -> Value {
    use rollguard_common::policy::quantile_ms;
    let latency = |q: f64| quantile_ms(q, &app.latency_buckets);
    json!({
        "requests": app.requests,
        "errors": app.errors,
        "error_rate": (app.requests > 0.0).then(|| app.errors / app.requests),
        "latency_p50_ms": latency(0.5),
        "latency_p95_ms": latency(0.95),
        "latency_p99_ms": latency(0.99),
        "latency_p999_ms": latency(0.999),
        "gauges": app.gauges.iter().cloned().collect::<std::collections::BTreeMap<String, f64>>(),
        "scrapes": app.scrapes,
        "scrape_errors": app.scrape_errors,
        "scrape_error": app.scrape_error,
        "probes": app.probes,
        "probe_errors": app.probe_errors,
        "probe_error": app.probe_error,
        "probe_latency_p99_ms": quantile_ms(0.99, &app.probe_latency_buckets),
    })
}

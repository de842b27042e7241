//! Host figures from either collector backend (issue 14): an agent with
//! `[collect] backend = "sysinfo"` streams, and `rollguardctl agents` shows
//! its figures beside those of a `procfs` agent on the same host.

use std::collections::BTreeSet;
use std::path::Path;

use rollguard_tests::{agent, test_dir, Agent, AgentSpec, Coordinator};
use serde_json::Value;

/// An agent of deployment `figures` whose host figures come from `backend`.
fn spec(host_id: &str, cohort: &str, backend: &str) -> AgentSpec {
    let mut spec = AgentSpec::with_evidence_action(host_id, "figures", cohort);
    spec.extra_toml
        .push_str(&format!("[collect]\nbackend = \"{backend}\"\n"));
    spec
}

/// The values of `key` in every object of the array `list` holds.
fn names(list: &Value, key: &str) -> BTreeSet<String> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item[key].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_agent_on_sysinfo_streams_figures_that_rollguardctl_agents_shows() {
    let root = test_dir("host-figures");
    let coordinator = Coordinator::start(&root.join("data"), None).expect("coordinator");
    let on_sysinfo = Agent::start(
        &root,
        &coordinator.url,
        &spec("sysinfo-1", "beta", "sysinfo"),
    )
    .expect("sysinfo agent");
    let _on_procfs = Agent::start(
        &root,
        &coordinator.url,
        &spec("procfs-1", "baseline", "procfs"),
    )
    .expect("procfs agent");

    let agents = coordinator
        .wait_for_agents("both agents streaming host figures", |agents| {
            ["sysinfo-1", "procfs-1"].iter().all(|host| {
                agent(agents, host).is_some_and(|a| {
                    a["connected"] == true
                        && a["memory_total_bytes"].as_u64().is_some_and(|m| m > 0)
                        && a["cpu_core_percent"]
                            .as_array()
                            .is_some_and(|cores| !cores.is_empty())
                })
            })
        })
        .expect("both agents report figures");
    let from_sysinfo = agent(&agents, "sysinfo-1").expect("listed");
    let from_procfs = agent(&agents, "procfs-1").expect("listed");

    // The same host, read two ways.
    assert_eq!(
        from_sysinfo["memory_total_bytes"],
        from_procfs["memory_total_bytes"]
    );
    let cpu = from_sysinfo["cpu_percent"].as_f64().expect("cpu_percent");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    assert_eq!(
        from_sysinfo["cpu_core_percent"].as_array().map(Vec::len),
        from_procfs["cpu_core_percent"].as_array().map(Vec::len)
    );
    assert!(from_sysinfo["load1"].as_f64().is_some());
    assert_eq!(
        names(&from_sysinfo["filesystems"], "mount_point"),
        names(&from_procfs["filesystems"], "mount_point")
    );
    assert_eq!(
        names(&from_sysinfo["interfaces"], "interface"),
        names(&from_procfs["interfaces"], "interface")
    );
    // Pressure is Linux's, read from /proc by either backend.
    assert_eq!(
        from_sysinfo["pressure"].is_object(),
        Path::new("/proc/pressure/cpu").exists(),
        "{from_sysinfo}"
    );
    // sysinfo counts disk bytes only: ops are 0, not made up.
    assert_eq!(from_sysinfo["disk_read_ops_per_sec"].as_f64(), Some(0.0));

    // The table an operator reads: a row with the host's figures, not "-".
    let table = coordinator.ctl(&["agents"]);
    assert!(table.status.success(), "{table:?}");
    let row = table
        .stdout
        .lines()
        .find(|line| line.starts_with("sysinfo-1"))
        .unwrap_or_else(|| panic!("no row for sysinfo-1 in:\n{}", table.stdout));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert!(columns.contains(&"connected"), "{row}");
    let cpu_column = columns
        .iter()
        .position(|c| *c == "connected")
        .and_then(|idx| columns.get(idx + 2))
        .expect("a CPU% column after STATE and LAST SEEN");
    assert!(
        cpu_column.parse::<f64>().is_ok(),
        "CPU% {cpu_column:?} in {row}"
    );

    let log = on_sysinfo.proc.log_text();
    assert!(
        log.contains("collecting host figures") && log.contains("sysinfo"),
        "{log}"
    );
}

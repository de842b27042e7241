//! The demo's child processes: a coordinator, and per host an app and an
//! agent, each logging to a file in the demo's directory.
//!
//! Starting and stopping only; what the demo shows is in `demo`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use super::super::args::DemoArgs;

/// Version the beta hosts start on, and the one a rollback switches to.
pub(super) const BETA_VERSION: &str = "2.0.0-beta.3";
pub(super) const STABLE_VERSION: &str = "1.9.4";

/// One demo host: its id, cohort and the app version it starts on.
pub(super) type Host = (String, &'static str, &'static str);

/// Lists the hosts `args` asks for: the beta ones first.
pub(super) fn hosts(args: &DemoArgs) -> Vec<Host> {
    let mut hosts = Vec::new();
    for idx in 1..=args.beta {
        hosts.push((format!("beta-{idx}"), "beta", BETA_VERSION));
    }
    for idx in 1..=args.baseline {
        hosts.push((format!("baseline-{idx}"), "baseline", STABLE_VERSION));
    }
    hosts
}

/// The running children, in start order, each with the name its log uses.
#[derive(Default)]
pub(super) struct Fleet {
    children: Vec<(String, Child)>,
}

impl Fleet {
    /// Starts the coordinator on a data dir under `dir` with `config`
    /// (and the PKI's); returns its URL once it listens.
    pub(super) async fn start_coordinator(
        &mut self,
        dir: &Path,
        coordinator_bin: &Path,
        pki: &DemoPki,
        config_toml: &str,
    ) -> anyhow::Result<String> {
        let data_dir = dir.join("coordinator-data");
        let addr_file = data_dir.join(crate::ADDR_FILE);
        std::fs::create_dir_all(&data_dir)?;
        let config = dir.join("coordinator.toml");
        std::fs::write(
            &config,
            format!("{config_toml}\n{}", pki.coordinator_toml()),
        )?;
        let coordinator = Command::new(coordinator_bin)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(&data_dir)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir, "coordinator")?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the coordinator")?;
        self.children.push(("coordinator".to_owned(), coordinator));
        let addr = read_addr(&addr_file, "the coordinator to listen").await?;
        let url = format!("https://{}", addr.trim());
        Ok(url)
    }

    /// Starts `host`'s app and then its agent, which reports to `url`;
    /// returns the app's URL. An `auto` host (its cohort left to the
    /// coordinator) also gets a `promote` action, and its app a control
    /// file (`DIR/HOST/control`) through which the demo can make it fail.
    pub(super) async fn start_host(
        &mut self,
        fail_after: &str,
        dir: &Path,
        [agent_bin, app_bin]: [&Path; 2],
        url: &str,
        (host_id, cohort, version): &Host,
        pki: &DemoPki,
    ) -> anyhow::Result<String> {
        let state_dir = dir.join(host_id);
        std::fs::create_dir_all(&state_dir)?;
        let version_file = state_dir.join("version");
        std::fs::write(&version_file, format!("{version}\n"))?;
        let app_addr_file = state_dir.join("app.addr");
        let app = Command::new(app_bin)
            .args(["--listen", "127.0.0.1:0", "--beta-version", BETA_VERSION])
            .args(["--fail-after", fail_after])
            .arg("--version-file")
            .arg(&version_file)
            .arg("--control-file")
            .arg(state_dir.join("control"))
            .arg("--addr-file")
            .arg(&app_addr_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir, &format!("{host_id}-app"))?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the app of {host_id}"))?;
        self.children.push((format!("{host_id}-app"), app));
        let app_url = format!(
            "http://{}",
            read_addr(&app_addr_file, "the app to listen").await?.trim()
        );
        let config = state_dir.join("agent.toml");
        std::fs::write(
            &config,
            format!(
                "{}\n{}",
                agent_config(host_id, cohort, &state_dir, &app_url),
                pki.agent_toml(host_id)
            ),
        )?;
        let child = Command::new(agent_bin)
            .arg("--config")
            .arg(&config)
            .arg("--coordinator")
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file(dir, host_id)?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting agent {host_id}"))?;
        self.children.push((host_id.clone(), child));
        Ok(app_url)
    }

    /// Stops every child, the last started first.
    pub(super) async fn stop(&mut self) {
        // SIGTERM everyone, agents first, then wait; SIGKILL what lingers.
        for (_, child) in self.children.iter().rev() {
            if let Some(pid) = child
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        for (name, child) in self.children.iter_mut() {
            match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                Ok(Ok(status)) => tracing::debug!(%name, %status, "stopped"),
                _ => {
                    let _ = child.kill().await;
                }
            }
        }
        self.children.clear();
    }
}

/// The demo's certificates: a CA, the coordinator's for 127.0.0.1, one per
/// agent and one for the demo's own calls (operator `demo`, an admin).
#[derive(Debug)]
pub(super) struct DemoPki {
    pub(super) dir: PathBuf,
}

/// The operator the demo calls as.
pub(super) const OPERATOR: &str = "demo";

impl DemoPki {
    /// Makes the CA and every certificate under `dir/pki`.
    pub(super) fn make(dir: &Path, hosts: &[Host]) -> anyhow::Result<DemoPki> {
        use crate::ctl::pki::{
            self, Leaf, Validity, CA_VALID_FOR, CLIENT_VALID_FOR, SERVER_VALID_FOR,
        };
        use rollguard_proto::tls::Identity;
        let dir = dir.join("pki");
        let now = std::time::SystemTime::now();
        pki::init(&dir, Validity::starting(now, CA_VALID_FOR)?)?;
        let coordinator = Leaf::Coordinator {
            name: "coordinator".to_owned(),
            sans: vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
        };
        pki::issue(
            &dir,
            &coordinator,
            Validity::starting(now, SERVER_VALID_FOR)?,
            false,
        )?;
        let clients = hosts
            .iter()
            .map(|(host_id, _, _)| Identity::Agent(host_id.clone()))
            .chain([Identity::Operator(OPERATOR.to_owned())]);
        for identity in clients {
            let leaf = Leaf::Client(identity);
            pki::issue(
                &dir,
                &leaf,
                Validity::starting(now, CLIENT_VALID_FOR)?,
                false,
            )?;
        }
        Ok(DemoPki { dir })
    }

    pub(super) fn file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub(super) fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    fn coordinator_toml(&self) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n\n[auth.roles]\n{OPERATOR} = \"admin\"\n",
            self.file("coordinator").display(),
            self.key("coordinator").display(),
            self.file("ca").display(),
        )
    }

    fn agent_toml(&self, host_id: &str) -> String {
        format!(
            "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            self.file("ca").display(),
            self.file(host_id).display(),
            self.key(host_id).display(),
        )
    }

    /// The demo's own client settings.
    pub(super) fn client_tls(&self) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
        let ca = self.file("ca");
        let cert = self.file(OPERATOR);
        let key = self.key(OPERATOR);
        let files = rollguard_proto::tls::ClientFiles {
            ca: &ca,
            cert: &cert,
            key: &key,
        };
        Ok(files.load()?.config)
    }

    /// `rollguardctl --coordinator URL --ca .. --cert .. --key ..`, to copy.
    pub(super) fn ctl_line(&self, url: &str) -> String {
        format!(
            "rollguardctl --coordinator {url} --ca {} --cert {} --key {}",
            self.file("ca").display(),
            self.file(OPERATOR).display(),
            self.key(OPERATOR).display()
        )
    }
}

/// The demo's coordinator config: one deployment with an absolute and a relative rule.
/// (The rollout demo's is in `rollout.rs`.)
pub(super) const COORDINATOR_CONFIG: &str = r#"[deployments.demo]
check_interval = "2s"
consecutive_failures = 3
min_requests = 50
[[deployments.demo.rules]]
metric = "error_rate"
max = 0.05
[[deployments.demo.rules]]
metric = "latency_p99_ms"
max_ratio_to_baseline = 2.0
min_baseline = 10.0
"#;

/// Waits for a child to write its bound address, a line, to `path`.
async fn read_addr(path: &Path, what: &str) -> anyhow::Result<String> {
    poll(what, Duration::from_secs(30), || async {
        std::fs::read_to_string(path)
            .ok()
            .filter(|s| s.ends_with('\n'))
    })
    .await
}

/// The config of `host_id`'s agent: scrape and probe the app at `app_url`,
/// and a rollback action that switches its version file to the stable one.
fn agent_config(host_id: &str, cohort: &str, state_dir: &Path, app_url: &str) -> String {
    format!(
        r#"host_id = "{host_id}"
deployment = "demo"
cohort = "{cohort}"
version_file = "{version}"
state_dir = "{state}"

[app]
scrape_url = "{app_url}/metrics"
probe_url = "{app_url}/healthz"

[actions.rollback]
# argv, run without a shell by the agent; this one happens to call sh.
command = ["/bin/sh", "-c", "echo \"$(date -u +%FT%TZ) rolled back to {STABLE_VERSION}\" >> rollback.log && echo {STABLE_VERSION} > version && echo switched to {STABLE_VERSION}"]
timeout = "30s"
{promote}"#,
        version = state_dir.join("version").display(),
        state = state_dir.display(),
        promote = if cohort == "auto" { PROMOTE_ACTION } else { "" },
    )
}

/// The promote action of an `auto` host: the version is its one argument.
const PROMOTE_ACTION: &str = r#"
[actions.promote]
command = ["/bin/sh", "-c", "echo \"$(date -u +%FT%TZ) promoted to $1\" >> promote.log && echo \"$1\" > version", "promote", "{version}"]
timeout = "30s"
"#;

/// Creates `name.log` in `dir`, for a child's stderr.
fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    let path: PathBuf = dir.join(format!("{name}.log"));
    std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))
}

/// Calls `probe` every 100ms until it returns a value or `timeout` passes.
pub(super) async fn poll<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

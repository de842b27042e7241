//! The end-to-end test harness: builds the real binaries once per run, starts
//! them as separate processes on loopback, and waits for conditions by
//! polling with a deadline (never by sleeping a fixed time).
//!
//! `cargo test` does not build other packages' binaries, so [`binaries`]
//! runs `cargo build` for them once, into the same target dir as the test
//! executable, and finds them beside it.
#![forbid(unsafe_code)]

pub mod cdp;
pub mod otlp;
mod webhook;

pub use webhook::{Received, WebhookReceiver};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// Paths of the workspace binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub agent: PathBuf,
    pub coordinator: PathBuf,
    pub ctl: PathBuf,
    pub demo_app: PathBuf,
    pub loadgen: PathBuf,
}

/// Builds the binaries (once per test process) and returns their paths.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| build_binaries().expect("building the rollguard binaries"))
}

fn build_binaries() -> anyhow::Result<Binaries> {
    // A test executable lives in <target>/<profile>/deps/, a bench binary
    // that uses this harness in <target>/<profile>/.
    let exe = std::env::current_exe().context("locating the test executable")?;
    let mut profile_dir = exe
        .parent()
        .context("the executable has no directory")?
        .to_path_buf();
    if profile_dir.file_name().is_some_and(|n| n == "deps") {
        profile_dir.pop();
    }
    let target_dir = profile_dir
        .parent()
        .context("no target dir above the profile dir")?;
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .args([
            "-p",
            "rollguard-agent",
            "-p",
            "rollguard-coordinator",
            "-p",
            "rollguard-loadgen",
            "--bins",
        ]);
    if release {
        build.arg("--release");
    }
    let status = build.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the binaries failed: {status}");
    }
    let binaries = Binaries {
        agent: profile_dir.join("rollguard-agent"),
        coordinator: profile_dir.join("rollguard-coordinator"),
        ctl: profile_dir.join("rollguardctl"),
        demo_app: profile_dir.join("rollguard-demo-app"),
        loadgen: profile_dir.join("rollguard-loadgen"),
    };
    for path in [
        &binaries.agent,
        &binaries.coordinator,
        &binaries.ctl,
        &binaries.demo_app,
        &binaries.loadgen,
    ] {
        if !path.exists() {
            bail!("{} was not built", path.display());
        }
    }
    Ok(binaries)
}

/// Polls `probe` every `every` until it returns `Some` or `timeout` passes.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// A fresh, empty directory for one test.
pub fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rollguard-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("creating the test dir");
    dir
}

/// A command that runs `program` through `launcher` (none when empty).
fn launched(launcher: &[&str], program: &Path) -> Command {
    match launcher.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(program);
            command
        }
        None => Command::new(program),
    }
}

/// A child process that is stopped (SIGKILL) when dropped, with every
/// process it started: each runs in a process group of its own, so a
/// wrapper that forks (`faketime`) or a browser's helpers go with it.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    pub name: String,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, command: &mut Command, log: PathBuf) -> anyhow::Result<Proc> {
        use std::os::unix::process::CommandExt as _;
        let log_file = std::fs::File::create(&log)?;
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .env("RUST_LOG", "info")
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Proc {
            child: Some(child),
            name: name.to_owned(),
            log,
        })
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let child = self.child.as_mut().context("already stopped")?;
        let pid = rustix::process::Pid::from_raw(child.id() as i32).context("bad pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let status = wait_until(
            &format!("{} to exit after SIGTERM", self.name),
            timeout,
            Duration::from_millis(20),
            || child.try_wait().ok().flatten(),
        )?;
        self.child = None;
        Ok(status)
    }

    /// Sends `signal` (SIGKILL, SIGSTOP, SIGCONT...) to the process.
    pub fn signal(&self, signal: rustix::process::Signal) -> anyhow::Result<()> {
        let pid = self.pid().context("not running")?;
        rustix::process::kill_process(pid, signal)?;
        Ok(())
    }

    /// SIGKILL, then reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        child.kill()?;
        Ok(child.wait()?)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<rustix::process::Pid> {
        let child = self.child.as_ref()?;
        rustix::process::Pid::from_raw(child.id() as i32)
    }

    /// Returns the process's stderr so far (its log).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The group first (its leader's id names it), then the leader.
            if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A coordinator process on 127.0.0.1 port 0.
#[derive(Debug)]
pub struct Coordinator {
    pub proc: Proc,
    pub url: String,
    pub data_dir: PathBuf,
}

impl Coordinator {
    /// Starts a coordinator on `data_dir` with an optional TOML config, and waits until it listens.
    pub fn start(data_dir: &Path, config_toml: Option<&str>) -> anyhow::Result<Coordinator> {
        Coordinator::launch(data_dir, config_toml, "http", "127.0.0.1:0")
    }

    /// Starts a new coordinator process on this one's data dir, config and
    /// gRPC address (so its agents reconnect), after this one has exited.
    pub fn restart_same_address(&self) -> anyhow::Result<Coordinator> {
        let listen = self
            .url
            .split_once("://")
            .map(|(_, addr)| addr.to_owned())
            .context("coordinator URL")?;
        let config = std::fs::read_to_string(self.data_dir.join("coordinator.toml")).ok();
        let scheme = if self.url.starts_with("https") {
            "https"
        } else {
            "http"
        };
        Coordinator::launch(&self.data_dir, config.as_deref(), scheme, &listen)
    }

    /// Starts a coordinator whose gRPC listener is on `listen` (`IP:0`); off
    /// loopback it is started with `--insecure-listen`.
    pub fn start_on(
        data_dir: &Path,
        config_toml: Option<&str>,
        listen: &str,
    ) -> anyhow::Result<Coordinator> {
        Coordinator::launch(data_dir, config_toml, "http", listen)
    }

    /// Starts a coordinator whose config has a `[tls]` table; its URL is `https://`.
    pub fn start_tls(data_dir: &Path, config_toml: &str) -> anyhow::Result<Coordinator> {
        Coordinator::launch(data_dir, Some(config_toml), "https", "127.0.0.1:0")
    }

    /// Starts a TLS coordinator (like [`Coordinator::start_tls`]) whose HTTP
    /// listener is on `http_listen` (off loopback it serves HTTPS).
    pub fn start_tls_http_on(
        data_dir: &Path,
        config_toml: &str,
        http_listen: &str,
    ) -> anyhow::Result<Coordinator> {
        Coordinator::launch_with(
            data_dir,
            Some(config_toml),
            "https",
            "127.0.0.1:0",
            http_listen,
        )
    }

    fn launch(
        data_dir: &Path,
        config_toml: Option<&str>,
        scheme: &str,
        listen: &str,
    ) -> anyhow::Result<Coordinator> {
        Coordinator::launch_with(data_dir, config_toml, scheme, listen, "127.0.0.1:0")
    }

    fn launch_with(
        data_dir: &Path,
        config_toml: Option<&str>,
        scheme: &str,
        listen: &str,
        http_listen: &str,
    ) -> anyhow::Result<Coordinator> {
        std::fs::create_dir_all(data_dir)?;
        let addr_file = data_dir.join("coordinator.addr");
        // A restart on the same data dir must not read the last run's addresses.
        let _ = std::fs::remove_file(&addr_file);
        let _ = std::fs::remove_file(data_dir.join("http.addr"));
        let mut command = Command::new(&binaries().coordinator);
        command
            .args(["--listen", listen, "--http-listen", http_listen])
            .arg("--data-dir")
            .arg(data_dir);
        let loopback = listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|addr| addr.ip().is_loopback());
        if scheme == "http" && !loopback {
            command.arg("--insecure-listen");
        }
        if let Some(toml) = config_toml {
            let path = data_dir.join("coordinator.toml");
            std::fs::write(&path, toml)?;
            command.arg("--config").arg(path);
        }
        let mut proc = Proc::spawn(
            "coordinator",
            &mut command,
            data_dir.join("coordinator.log"),
        )?;
        let addr = wait_until(
            "the coordinator's address file",
            Duration::from_secs(30),
            Duration::from_millis(20),
            || {
                if let Some(child) = proc.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("coordinator exited early ({status}): {}", proc.log_text());
                    }
                }
                std::fs::read_to_string(&addr_file)
                    .ok()
                    .filter(|s| s.ends_with('\n'))
            },
        )?;
        Ok(Coordinator {
            proc,
            url: format!("{scheme}://{}", addr.trim()),
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Returns the `http://ip:port` of its /metrics listener.
    pub fn http_url(&self) -> anyhow::Result<String> {
        let addr = wait_for_addr_file(
            "the coordinator's HTTP address file",
            &self.data_dir.join("http.addr"),
        )?;
        Ok(format!("http://{addr}"))
    }

    /// Runs `rollguardctl --coordinator URL <args>`.
    pub fn ctl(&self, args: &[&str]) -> CtlOutput {
        ctl(&self.url, args)
    }

    /// Returns `agents -o json` once `pred` holds for it.
    pub fn wait_for_agents(
        &self,
        what: &str,
        pred: impl Fn(&[Value]) -> bool,
    ) -> anyhow::Result<Vec<Value>> {
        wait_until(
            what,
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let out = self.ctl(&["agents", "-o", "json"]);
                let agents = out.json().ok()?.as_array()?.clone();
                pred(&agents).then_some(agents)
            },
        )
    }
}

/// `rollguard-loadgen --hold`: simulated agents that stay connected,
/// reconnect as real agents do and run each command at most once, until
/// stopped with SIGTERM; then [`HeldFleet::report`] reads what they saw.
#[derive(Debug)]
pub struct HeldFleet {
    pub proc: Proc,
    pub json: PathBuf,
}

impl HeldFleet {
    /// Starts `agents` simulated agents of deployment `loadgen` against
    /// `coordinator_url`, with `extra` flags (`--beta-share`, `--interval`, ...).
    pub fn start(
        root: &Path,
        coordinator_url: &str,
        agents: usize,
        extra: &[&str],
    ) -> anyhow::Result<HeldFleet> {
        let json = root.join("loadgen-hold.json");
        let _ = std::fs::remove_file(&json);
        let mut command = Command::new(&binaries().loadgen);
        command
            .args(["--hold", "--coordinator", coordinator_url])
            .args(["--agents", &agents.to_string()])
            .args(extra)
            .arg("--json")
            .arg(&json);
        let proc = Proc::spawn("loadgen", &mut command, root.join("loadgen.log"))?;
        Ok(HeldFleet { proc, json })
    }

    /// Stops the fleet (SIGTERM) and returns its JSON report.
    pub fn report(&mut self) -> anyhow::Result<Value> {
        let status = self.proc.terminate(Duration::from_secs(60))?;
        if !status.success() {
            bail!("loadgen exited with {status}: {}", self.proc.log_text());
        }
        let text = std::fs::read_to_string(&self.json)
            .with_context(|| format!("reading {}", self.json.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// What one rollguardctl run printed.
#[derive(Debug)]
pub struct CtlOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// Parses stdout as exactly one JSON document.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.stdout)
            .with_context(|| format!("stdout is not one JSON document: {:?}", self.stdout))
    }
}

/// Waits for an `ip:port` file written whole (it ends with a newline);
/// returns the address.
fn wait_for_addr_file(what: &str, path: &Path) -> anyhow::Result<String> {
    let text = wait_until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(20),
        || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|s| s.ends_with('\n'))
        },
    )?;
    Ok(text.trim().to_owned())
}

/// Runs rollguardctl against `url`.
pub fn ctl(url: &str, args: &[&str]) -> CtlOutput {
    let mut command = Command::new(&binaries().ctl);
    command.arg("--coordinator").arg(url).args(args);
    run_ctl(&mut command)
}

/// Runs rollguardctl with any arguments (no `--coordinator`).
pub fn ctl_args(args: &[&str]) -> CtlOutput {
    run_ctl(Command::new(&binaries().ctl).args(args))
}

fn run_ctl(command: &mut Command) -> CtlOutput {
    let output: Output = command
        .stdin(Stdio::null())
        .output()
        .expect("running rollguardctl");
    CtlOutput {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A CA and certificates made by `rollguardctl pki` in one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    /// `rollguardctl pki init --dir DIR`.
    pub fn init(dir: &Path) -> anyhow::Result<Pki> {
        let dir_arg = dir.display().to_string();
        let out = ctl_args(&["pki", "init", "--dir", &dir_arg]);
        anyhow::ensure!(out.status.success(), "pki init failed: {}", out.stderr);
        Ok(Pki {
            dir: dir.to_path_buf(),
        })
    }

    /// `rollguardctl pki issue KIND NAME --dir DIR EXTRA...`.
    pub fn issue(&self, kind: &str, name: &str, extra: &[&str]) -> anyhow::Result<()> {
        let dir = self.dir.display().to_string();
        let mut args = vec!["pki", "issue", kind, name, "--dir", &dir];
        args.extend_from_slice(extra);
        let out = ctl_args(&args);
        anyhow::ensure!(
            out.status.success(),
            "pki issue {kind} {name} failed: {}",
            out.stderr
        );
        Ok(())
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn cert(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    pub fn key(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-key.pem"))
    }

    /// The coordinator's `[tls]` table for the certificate `name`.
    pub fn coordinator_toml(&self, name: &str) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            self.cert(name).display(),
            self.key(name).display(),
            self.ca().display()
        )
    }

    /// An agent's `[tls]` table for the certificate `name`.
    pub fn agent_toml(&self, name: &str) -> String {
        format!(
            "[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            self.ca().display(),
            self.cert(name).display(),
            self.key(name).display()
        )
    }

    /// Runs rollguardctl against `url` as the operator `name`.
    pub fn ctl_as(&self, url: &str, name: &str, args: &[&str]) -> CtlOutput {
        let mut command = Command::new(&binaries().ctl);
        command
            .arg("--coordinator")
            .arg(url)
            .arg("--ca")
            .arg(self.ca())
            .arg("--cert")
            .arg(self.cert(name))
            .arg("--key")
            .arg(self.key(name))
            .args(args);
        run_ctl(&mut command)
    }
}

/// How to start one agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub host_id: String,
    pub deployment: String,
    pub cohort: String,
    /// Extra TOML appended to the generated config (actions, app, ...).
    pub extra_toml: String,
}

impl AgentSpec {
    /// An agent whose `rollback` action appends a line to `<state_dir>/evidence`.
    pub fn with_evidence_action(host_id: &str, deployment: &str, cohort: &str) -> AgentSpec {
        AgentSpec {
            host_id: host_id.to_owned(),
            deployment: deployment.to_owned(),
            cohort: cohort.to_owned(),
            extra_toml: "[actions.rollback]\n\
                 command = [\"/bin/sh\", \"-c\", \"echo ran >> evidence; echo rolled back\"]\n\
                 timeout = \"30s\"\n"
                .to_owned(),
        }
    }
}

/// An agent process.
#[derive(Debug)]
pub struct Agent {
    pub proc: Proc,
    pub state_dir: PathBuf,
    pub spec: AgentSpec,
}

impl Agent {
    /// Starts an agent with its state dir under `root`.
    pub fn start(root: &Path, coordinator_url: &str, spec: &AgentSpec) -> anyhow::Result<Agent> {
        Agent::launch(
            root,
            coordinator_url,
            spec,
            &root.join(&spec.host_id),
            &[],
            &[],
        )
    }

    /// Starts an agent like [`Agent::start`], its command line run through
    /// `launcher` (a fault injected by another program: `["faketime", "-f",
    /// "+1h"]`, `["ip", "netns", "exec", "NAME"]`), with `env` added
    /// (`ROLLGUARD_AGENT__INTERVAL` wins over the generated file).
    pub fn start_via(
        root: &Path,
        coordinator_url: &str,
        spec: &AgentSpec,
        launcher: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Agent> {
        let state_dir = root.join(&spec.host_id);
        Agent::launch(root, coordinator_url, spec, &state_dir, launcher, env)
    }

    /// Starts an agent whose state dir (journal, actions' working dir) is
    /// `state_dir` (a small tmpfs, say); its config and log stay in `root/HOST_ID`.
    pub fn start_in(
        root: &Path,
        coordinator_url: &str,
        spec: &AgentSpec,
        state_dir: &Path,
    ) -> anyhow::Result<Agent> {
        Agent::launch(root, coordinator_url, spec, state_dir, &[], &[])
    }

    fn launch(
        root: &Path,
        coordinator_url: &str,
        spec: &AgentSpec,
        state_dir: &Path,
        launcher: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Agent> {
        let own_dir = root.join(&spec.host_id);
        std::fs::create_dir_all(&own_dir)?;
        std::fs::create_dir_all(state_dir)?;
        let state_dir = state_dir.to_path_buf();
        let config_path = own_dir.join("agent.toml");
        let toml = format!(
            "host_id = \"{}\"\ndeployment = \"{}\"\ncohort = \"{}\"\ninterval = \"250ms\"\nstate_dir = \"{}\"\n{}",
            spec.host_id,
            spec.deployment,
            spec.cohort,
            state_dir.display(),
            spec.extra_toml
        );
        std::fs::write(&config_path, toml)?;
        let mut command = launched(launcher, &binaries().agent);
        command
            .envs(env.iter().copied())
            .arg("--config")
            .arg(&config_path)
            .arg("--coordinator")
            .arg(coordinator_url);
        let proc = Proc::spawn(&spec.host_id, &mut command, own_dir.join("agent.log"))?;
        Ok(Agent {
            proc,
            state_dir,
            spec: spec.clone(),
        })
    }

    /// Lines of the evidence file its action writes (0 if it never ran).
    pub fn evidence_lines(&self) -> usize {
        std::fs::read_to_string(self.state_dir.join("evidence"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// Finds the agent object with `host_id` in `agents -o json` output.
pub fn agent<'a>(agents: &'a [Value], host_id: &str) -> Option<&'a Value> {
    agents.iter().find(|a| a["host_id"] == host_id)
}

/// A `rollguard-demo-app` process: the "beta software" the agents watch.
#[derive(Debug)]
pub struct DemoApp {
    pub proc: Proc,
    /// Base URL, e.g. `http://127.0.0.1:1234`.
    pub url: String,
    /// The installed version; a rollback action rewrites it.
    pub version_file: PathBuf,
    /// Overrides (`error_rate=0.3`) for a fleet-wide incident.
    pub control_file: PathBuf,
}

impl DemoApp {
    /// Starts an app in `dir` with `version` installed; `fail_after` applies when it is the beta version.
    pub fn start(dir: &Path, version: &str, fail_after: &str) -> anyhow::Result<DemoApp> {
        DemoApp::start_via(dir, version, fail_after, &[])
    }

    /// Starts an app like [`DemoApp::start`], its command line run through
    /// `launcher` (such as `["ip", "netns", "exec", "NAME"]`).
    pub fn start_via(
        dir: &Path,
        version: &str,
        fail_after: &str,
        launcher: &[&str],
    ) -> anyhow::Result<DemoApp> {
        std::fs::create_dir_all(dir)?;
        let version_file = dir.join("app-version");
        std::fs::write(&version_file, format!("{version}\n"))?;
        let addr_file = dir.join("app.addr");
        let _ = std::fs::remove_file(&addr_file);
        let control_file = dir.join("app-control");
        let mut command = launched(launcher, &binaries().demo_app);
        command
            .args(["--listen", "127.0.0.1:0", "--beta-version", BETA_VERSION])
            .args(["--fail-after", fail_after, "--rps", "400"])
            .arg("--addr-file")
            .arg(&addr_file)
            .arg("--version-file")
            .arg(&version_file)
            .arg("--control-file")
            .arg(&control_file);
        let proc = Proc::spawn("demo-app", &mut command, dir.join("app.log"))?;
        let addr = wait_for_addr_file("the app's address file", &addr_file)?;
        Ok(DemoApp {
            proc,
            url: format!("http://{addr}"),
            version_file,
            control_file,
        })
    }

    /// Agent TOML: scrape and probe this app, and a rollback action that
    /// installs the stable version and leaves evidence.
    pub fn agent_toml(&self) -> String {
        format!(
            "version_file = \"{version}\"\n\
             [app]\nscrape_url = \"{url}/metrics\"\nprobe_url = \"{url}/healthz\"\n\
             [actions.rollback]\n\
             command = [\"/bin/sh\", \"-c\", \"date +%s%N >> evidence; echo {STABLE_VERSION} > '{version}'\"]\n\
             timeout = \"30s\"\n",
            version = self.version_file.display(),
            url = self.url,
        )
    }
}

/// The version the demo app misbehaves on, and the stable one.
pub const BETA_VERSION: &str = "2.0.0-beta.3";
pub const STABLE_VERSION: &str = "1.9.4";

impl Agent {
    /// Wall-clock times (ns since the epoch) at which its action ran, from the evidence file.
    pub fn evidence_times_ns(&self) -> Vec<u128> {
        std::fs::read_to_string(self.state_dir.join("evidence"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

/// The target dir the binaries were built in (e.g. `target/`).
pub fn target_dir() -> PathBuf {
    binaries()
        .agent
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"))
}

/// File in the target dir where skipped tests write why; `.ci/run` prints it.
pub const SKIPPED_FILE: &str = "rollguard-skipped.txt";

/// Says loudly that `test` did not run and why: on stderr (shown with
/// `--nocapture`) and appended to `<target>/rollguard-skipped.txt`, which
/// `.ci/run` prints after the tests (libtest hides a passing test's stderr).
pub fn skip(test: &str, reason: &str) {
    use std::io::Write as _;
    let line = format!("SKIPPED {test}: {reason}");
    eprintln!("{line}");
    let path = target_dir().join(SKIPPED_FILE);
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut file| writeln!(file, "{line}"));
    if let Err(err) = written {
        eprintln!("cannot note the skip in {}: {err}", path.display());
    }
}

/// A plain HTTP/1.1 GET over a real socket; returns (status code, body).
pub fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").context("http:// URLs only")?;
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut stream = std::net::TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").context("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status code")?;
    // Bodies here are small and sent with Content-Length (hyper, no chunking for a Full body).
    Ok((code, body.to_owned()))
}

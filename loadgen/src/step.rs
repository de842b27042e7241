//! A run: one step of N agents, or a ramp of steps (N, 2N, 4N, ...) until
//! the coordinator falls behind.
//!
//! One step: connect every agent (a bounded number at a time), then start
//! their samples spread evenly over one interval; after the warm-up, measure
//! over the window (coordinator CPU from `/proc/<pid>/stat`, RSS sampled
//! every 250 ms, this process's CPU and socket bytes); wait the drain for the
//! window's acks; with `--rollback`, roll back and wait for every result;
//! then close every stream and gather what the agents saw.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rollguard_proto::v1::control_service_client::ControlServiceClient;
use tokio::sync::{watch, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use crate::certs::Certs;
use crate::config::Config;
use crate::procfs::{self, ProcSample};
use crate::report::{self, StepReport};
use crate::sim::{self, Clock, Outcome, Progress};
use crate::stats;

/// Period of the coordinator RSS sampler.
const RSS_EVERY: Duration = Duration::from_millis(250);
/// Largest GetCommand answer accepted (one result per target).
const MAX_CONTROL_MESSAGE: usize = 64 << 20;
/// File descriptors kept for everything but agent sockets.
const SPARE_FDS: u64 = 256;
/// Distinct errors kept in a report.
const MAX_ERRORS: usize = 5;

/// Runs the step or ramp the config describes, prints the table and writes the JSON.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    let endpoint = endpoint(&config)?;
    let (mut certs, control_endpoint) = open_tls(&config, &endpoint).await?;
    let coordinator_pid = config
        .coordinator_pid
        .or_else(|| find_pid(&config.coordinator));
    match coordinator_pid {
        Some(pid) => tracing::info!(pid, "measuring the coordinator process"),
        None => tracing::warn!(
            "coordinator pid unknown (pass --coordinator-pid): no CPU or RSS figures"
        ),
    }
    let channel = control_endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to the coordinator at {}", config.coordinator))?;
    let mut control =
        ControlServiceClient::new(channel).max_decoding_message_size(MAX_CONTROL_MESSAGE);

    if config.hold {
        certs = ensure_certs(certs, &config, config.agents.get()).await?;
        return crate::hold::run(&config, &endpoint, certs.as_ref()).await;
    }
    let Some(ramp_max) = config.ramp_max else {
        certs = ensure_certs(certs, &config, config.agents.get()).await?;
        let step = one_step(
            &config,
            config.agents.get(),
            &endpoint,
            certs.as_ref(),
            &mut control,
            coordinator_pid,
        )
        .await?;
        report::print_table(std::slice::from_ref(&step));
        if let Err(reason) = step.held() {
            println!("\nthe coordinator fell behind: {reason}");
        }
        if let Some(path) = &config.json {
            report::write_step(path, &step)?;
        }
        return Ok(());
    };

    let mut steps: Vec<StepReport> = Vec::new();
    let mut held_idx: Option<usize> = None;
    let mut n_agents = config.agents.get();
    let stop_reason = loop {
        if config.connections.is_none() {
            let limit = procfs::nofile_limit().unwrap_or(u64::MAX);
            if n_agents as u64 + SPARE_FDS > limit {
                break format!(
                    "{n_agents} agents need more than the open-file limit {limit} (try --connections)"
                );
            }
        }
        certs = ensure_certs(certs, &config, n_agents).await?;
        let step = one_step(
            &config,
            n_agents,
            &endpoint,
            certs.as_ref(),
            &mut control,
            coordinator_pid,
        )
        .await?;
        let verdict = step.held();
        steps.push(step);
        match verdict {
            Ok(()) => held_idx = Some(steps.len() - 1),
            Err(reason) => break format!("at {n_agents} agents: {reason}"),
        }
        if n_agents >= ramp_max {
            break format!("reached --ramp-max {ramp_max}");
        }
        n_agents = (n_agents * 2).min(ramp_max);
        // Let the coordinator take in the disconnects before the next step.
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    report::print_table(&steps);
    let held = held_idx.map(|idx| &steps[idx]);
    match held {
        Some(step) => println!(
            "\nheld up to {} agents; stopped: {stop_reason}",
            step.agents
        ),
        None => println!("\nno step held; stopped: {stop_reason}"),
    }
    if let Some(path) = &config.json {
        report::write_ramp(path, &steps, held, &stop_reason)?;
    }
    Ok(())
}

/// With `--tls-dir`: the PKI directory's certificates, and the control
/// calls' endpoint presenting the operator's; otherwise none and `endpoint`.
async fn open_tls(
    config: &Config,
    endpoint: &Endpoint,
) -> anyhow::Result<(Option<Certs>, Endpoint)> {
    let Some(dir) = &config.tls_dir else {
        return Ok((None, endpoint.clone()));
    };
    let (dir, operator) = (dir.clone(), config.tls_operator.clone());
    // Reading the CA and perhaps signing the operator's certificate is blocking work.
    let certs = tokio::task::spawn_blocking(move || Certs::open(&dir, &operator))
        .await
        .context("reading the PKI directory")??;
    let control_endpoint = endpoint
        .clone()
        .tls_config(certs.operator())
        .context("the operator's TLS settings")?;
    Ok((Some(certs), control_endpoint))
}

/// Makes sure agents `0..n_agents` have their certificates, before the
/// step's clock starts: making them is the loadgen's work, not the
/// coordinator's, and is not part of the connect time.
async fn ensure_certs(
    certs: Option<Certs>,
    config: &Config,
    n_agents: usize,
) -> anyhow::Result<Option<Certs>> {
    let Some(mut certs) = certs else {
        return Ok(None);
    };
    let host_ids: Vec<String> = (0..n_agents).map(|idx| config.host_id(idx)).collect();
    let certs = tokio::task::spawn_blocking(move || certs.ensure(&host_ids).map(|()| certs))
        .await
        .context("making agent certificates")??;
    Ok(Some(certs))
}

fn endpoint(config: &Config) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(config.coordinator.clone())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true))
}

/// The pid of the local process listening on the URL's port, if the host is this one.
fn find_pid(url: &str) -> Option<u32> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host()?;
    let local = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let default_port = if uri.scheme_str() == Some("https") {
        443
    } else {
        80
    };
    let port = uri.port_u16().unwrap_or(default_port);
    local.then(|| procfs::listener_pid(port)).flatten()
}

/// Runs one step of `n_agents` simulated agents.
async fn one_step(
    config: &Config,
    n_agents: usize,
    endpoint: &Endpoint,
    certs: Option<&Certs>,
    control: &mut ControlServiceClient<Channel>,
    coordinator_pid: Option<u32>,
) -> anyhow::Result<StepReport> {
    let step_start = Instant::now();
    tracing::info!(n_agents, "step: connecting agents");
    let slots = sim::Slots::open(config, n_agents, endpoint, certs).await?;
    let stop = CancellationToken::new();
    let progress = Arc::new(Progress::default());
    let permits = Arc::new(Semaphore::new(config.connect_concurrency.get()));
    let (clock_tx, clock_rx) = watch::channel(None);

    // Coordinator RSS over the whole step, sampled in the background.
    let rss_samples: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let sampler = coordinator_pid.map(|pid| {
        let samples = Arc::clone(&rss_samples);
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(RSS_EVERY);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticker.tick() => {}
                }
                if let Ok(sample) = procfs::sample(Some(pid)) {
                    let mut samples = samples
                        .lock()
                        .expect("the RSS sampler never panics holding it");
                    samples.push((Instant::now(), sample.rss_kib));
                }
            }
        })
    });

    let mut agents = Vec::with_capacity(n_agents);
    for idx in 0..n_agents {
        let (identity, link) = slots.agent(idx);
        agents.push(tokio::spawn(sim::run(
            identity,
            link,
            Arc::clone(&permits),
            Arc::clone(&progress),
            clock_rx.clone(),
            stop.clone(),
        )));
    }

    // Connect phase: wait until every attempt ended, or the timeout.
    let connect_deadline = step_start + config.connect_timeout;
    let mut next_log = Instant::now() + Duration::from_secs(5);
    while progress.connect_done.load(ORD) < n_agents && Instant::now() < connect_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if Instant::now() >= next_log {
            tracing::info!(
                connected = progress.connected.load(ORD),
                n_agents,
                "step: still connecting"
            );
            next_log += Duration::from_secs(5);
        }
    }
    let connect_secs = step_start.elapsed().as_secs_f64();
    let connected = progress.connected.load(ORD);
    tracing::info!(
        connected,
        n_agents,
        connect_secs,
        "step: connected; sampling"
    );

    let first_tick = Instant::now() + Duration::from_millis(50);
    let window_start = first_tick + config.warmup;
    let window_end = window_start + config.duration;
    let clock = Clock {
        first_tick,
        window_start,
        window_end,
        drain_end: window_end + config.drain,
        n_agents,
    };
    // Every agent holds a receiver until it ends: a send error means none is left.
    let _ = clock_tx.send(Some(clock));

    tokio::time::sleep_until(window_start.into()).await;
    let before = Measure::take(coordinator_pid);
    tokio::time::sleep_until(window_end.into()).await;
    let after = Measure::take(coordinator_pid);
    tracing::info!("step: window over; draining acks");
    tokio::time::sleep_until(clock.drain_end.into()).await;

    let n_beta = progress.beta_connected.load(ORD);
    let rollback = if config.rollback {
        let result = crate::rollback::run(
            control,
            &config.deployment,
            n_beta,
            &progress,
            config.rollback_timeout,
            coordinator_pid,
        )
        .await;
        Some(result)
    } else {
        None
    };

    stop.cancel();
    let mut outcomes = Vec::with_capacity(n_agents);
    for agent in agents {
        outcomes.push(agent.await.context("a simulated agent task failed")?);
    }
    if let Some(sampler) = sampler {
        let _ = sampler.await;
    }

    let mut step = gather(config, n_agents, connect_secs, &outcomes, &clock);
    step.tls = certs.is_some();
    step.coordinator_pid = coordinator_pid;
    let window = after.at - before.at;
    if let (Some(b), Some(a)) = (before.coordinator, after.coordinator) {
        step.coordinator_cpu_percent = Some(procfs::cpu_percent(b, a, window));
    }
    if let (Some(b), Some(a)) = (before.me, after.me) {
        step.loadgen_cpu_percent = Some(procfs::cpu_percent(b, a, window));
    }
    if let (Some(b), Some(a)) = (before.machine_busy, after.machine_busy) {
        let machine = procfs::cpu_percent(
            ProcSample {
                cpu_ticks: b,
                rss_kib: 0,
            },
            ProcSample {
                cpu_ticks: a,
                rss_kib: 0,
            },
            window,
        );
        let ours =
            step.coordinator_cpu_percent.unwrap_or(0.0) + step.loadgen_cpu_percent.unwrap_or(0.0);
        let other = (machine - ours).max(0.0);
        step.other_cpu_percent = Some(other);
        if other > 25.0 {
            tracing::warn!(
                other_cpu_percent = other,
                "other processes used the CPU during the window: the figures are disturbed"
            );
        }
    }
    if let (Some((w0, r0)), Some((w1, r1))) = (before.io, after.io) {
        let per = (connected.max(1) as f64) * window.as_secs_f64();
        let up = w1.saturating_sub(w0) as f64 / per;
        step.socket_bytes_up_per_agent_per_sec = Some(up);
        step.wire_bytes_per_agent_per_sec = up;
        step.socket_bytes_down_per_agent_per_sec = Some(r1.saturating_sub(r0) as f64 / per);
    }
    {
        let samples = rss_samples
            .lock()
            .expect("the RSS sampler never panics holding it");
        let mut in_window: Vec<u64> = samples
            .iter()
            .filter(|(at, _)| *at >= window_start && *at < window_end)
            .map(|(_, kib)| *kib)
            .collect();
        step.coordinator_rss_mib = stats::median_u64(&mut in_window).map(mib);
        step.coordinator_rss_max_mib = samples.iter().map(|(_, kib)| *kib).max().map(mib);
    }
    match rollback {
        None => {}
        Some(Err(err)) => step.rollback_error = Some(format!("{err:#}")),
        Some(Ok(figures)) => {
            let mut fanout: Vec<Duration> = Vec::new();
            let mut missing = 0;
            for (idx, outcome) in outcomes.iter().enumerate() {
                if !config.is_beta(idx) || !outcome.connected {
                    continue;
                }
                match outcome
                    .commands
                    .iter()
                    .find(|(id, _)| *id == figures.command_id)
                {
                    Some((_, at)) => fanout.push(at.saturating_duration_since(figures.called_at)),
                    None => missing += 1,
                }
            }
            if let Some(summary) = stats::summarize(&mut fanout) {
                step.fanout_p50_ms = Some(summary.p50_ms);
                step.fanout_p99_ms = Some(summary.p99_ms);
                step.fanout_max_ms = Some(summary.max_ms);
            }
            step.fanout_missing = missing;
            step.rollback_targets = Some(figures.targets);
            step.rollback_call_ms = Some(ms(figures.call));
            step.all_acked_ms = figures.all_acked.map(ms);
            step.fanout_coordinator_cpu_ms = figures.coordinator_cpu.map(ms);
            step.fanout_loadgen_cpu_ms = figures.loadgen_cpu.map(ms);
            tracing::info!(
                coordinator_cpu_ms = step.fanout_coordinator_cpu_ms,
                loadgen_cpu_ms = step.fanout_loadgen_cpu_ms,
                all_acked_ms = step.all_acked_ms,
                "step: CPU spent from the rollback call until every result was in"
            );
            step.acked_all = figures.all_acked.is_some();
            if !step.acked_all {
                step.rollback_statuses = Some(figures.statuses);
            }
        }
    }
    tracing::info!(
        n_agents,
        secs = step_start.elapsed().as_secs_f64(),
        "step: done"
    );
    Ok(step)
}

const ORD: std::sync::atomic::Ordering = std::sync::atomic::Ordering::Relaxed;

/// `/proc` readings at one moment.
#[derive(Debug)]
struct Measure {
    at: Instant,
    coordinator: Option<ProcSample>,
    me: Option<ProcSample>,
    io: Option<(u64, u64)>,
    machine_busy: Option<u64>,
}

impl Measure {
    fn take(coordinator_pid: Option<u32>) -> Measure {
        Measure {
            at: Instant::now(),
            coordinator: coordinator_pid.and_then(|pid| procfs::sample(Some(pid)).ok()),
            me: procfs::sample(None).ok(),
            io: procfs::self_io().ok(),
            machine_busy: procfs::machine_busy_ticks().ok(),
        }
    }
}

/// Adds up what the agents saw.
fn gather(
    config: &Config,
    n_agents: usize,
    connect_secs: f64,
    outcomes: &[Outcome],
    clock: &Clock,
) -> StepReport {
    let window_secs = (clock.window_end - clock.window_start).as_secs_f64();
    let connected = outcomes.iter().filter(|o| o.connected).count();
    let mut lags: Vec<Duration> = Vec::new();
    let (mut sent, mut acked, mut unacked, mut full) = (0u64, 0u64, 0u64, 0u64);
    let (mut up, mut down) = (0u64, 0u64);
    let mut errors: Vec<String> = Vec::new();
    for outcome in outcomes {
        lags.extend_from_slice(&outcome.lags);
        sent += outcome.sent_in_window;
        acked += outcome.acked_in_window;
        unacked += outcome.unacked;
        full += outcome.queue_full;
        up += outcome.bytes_up;
        down += outcome.bytes_down;
        if let Some(err) = &outcome.error {
            if errors.len() < MAX_ERRORS && !errors.contains(err) {
                errors.push(err.clone());
            }
        }
    }
    let lag = stats::summarize(&mut lags);
    let agent_secs = connected.max(1) as f64 * window_secs;
    StepReport {
        agents: n_agents,
        connected,
        connect_failed: n_agents - connected,
        dropped_streams: outcomes.iter().filter(|o| o.dropped).count(),
        connect_secs,
        interval_ms: config.interval.as_millis() as u64,
        window_secs,
        samples_sent_per_sec: sent as f64 / window_secs,
        samples_per_sec: acked as f64 / window_secs,
        acked_ratio: if sent == 0 {
            0.0
        } else {
            acked as f64 / sent as f64
        },
        ingest_lag_p50_ms: lag.map(|s| s.p50_ms),
        ingest_lag_p99_ms: lag.map(|s| s.p99_ms),
        ingest_lag_max_ms: lag.map(|s| s.max_ms),
        unacked_samples: unacked,
        queue_full_samples: full,
        wire_bytes_per_agent_per_sec: up as f64 / agent_secs,
        payload_bytes_per_agent_per_sec: up as f64 / agent_secs,
        payload_bytes_down_per_agent_per_sec: down as f64 / agent_secs,
        batch_bytes: (sent > 0).then(|| up as f64 / sent as f64),
        rollback: config.rollback,
        beta_agents: outcomes
            .iter()
            .enumerate()
            .filter(|(idx, o)| o.connected && config.is_beta(*idx))
            .count(),
        errors,
        ..StepReport::default()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

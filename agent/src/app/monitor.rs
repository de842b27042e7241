//! [`AppMonitor`]: starts the scraper and prober tasks, stops them, and hands
//! the sample loop what they counted.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rollguard_common::sample::AppHealth;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accumulator::{lock, Accumulator};
use super::config::AppConfig;
use super::{client, probe, scrape};

/// Runs the scraper and prober tasks and holds what they add up.
#[derive(Debug)]
pub(crate) struct AppMonitor {
    shared: Arc<Mutex<Accumulator>>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl AppMonitor {
    /// Spawns the scraper and/or prober on `tracker`; they stop when
    /// `shutdown` is cancelled or [`AppMonitor::stop`] is called.
    pub(crate) fn start(
        config: &AppConfig,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> AppMonitor {
        let shared = Arc::new(Mutex::new(Accumulator::new(
            config.scrape.is_some(),
            config.probe.is_some(),
        )));
        let stop = shutdown.child_token();
        let client = client::new(config.roots_opt.as_ref());
        let mut tasks = Vec::new();
        if let Some(scrape) = &config.scrape {
            tracing::info!(url = %scrape.url, interval = ?scrape.interval, "scraping app metrics");
            tasks.push(tracker.spawn(scrape::run(
                scrape.clone(),
                client.clone(),
                Arc::clone(&shared),
                stop.clone(),
            )));
        }
        if let Some(probe) = &config.probe {
            tracing::info!(url = %probe.url, interval = ?probe.interval, "probing app health");
            tasks.push(tracker.spawn(probe::run(
                probe.clone(),
                client,
                Arc::clone(&shared),
                stop.clone(),
            )));
        }
        AppMonitor {
            shared,
            stop,
            tasks,
        }
    }

    /// Returns the app health since the previous call, without a figure
    /// the coordinator would reject; logs what was dropped at most once a minute.
    pub(crate) fn take(&self) -> AppHealth {
        let (health, due_opt) = {
            let mut accumulator = lock(&self.shared);
            let health = accumulator.take();
            (health, accumulator.dropped.due(Instant::now()))
        };
        if let Some(due) = due_opt {
            due.log("app");
        }
        health
    }

    /// Stops the tasks and waits for them; an in-flight request is dropped.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(err) = task.await {
                tracing::warn!(error = %err, "app health task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! Per-cohort aggregates over the latest samples of its hosts: pure code,
//! shared by fleet status and (later) the policy engine.

use std::collections::BTreeMap;

use crate::sample::{HostSample, Pressure};

/// Aggregates over the hosts of one (deployment, cohort) that have a fresh sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CohortAggregate {
    /// Hosts that contributed a sample.
    pub hosts: u32,
    pub cpu_percent_mean: f64,
    pub cpu_percent_max: f64,
    pub memory_percent_mean: f64,
    pub memory_percent_max: f64,
    pub load1_mean: f64,
    pub load1_max: f64,
    pub swap_used_bytes_mean: f64,
    pub disk_read_bytes_per_sec_mean: f64,
    pub disk_write_bytes_per_sec_mean: f64,
    pub net_rx_bytes_per_sec_mean: f64,
    pub net_tx_bytes_per_sec_mean: f64,
    /// Means over the hosts that report pressure; `None` when none does.
    pub pressure_mean: Option<Pressure>,
}

impl CohortAggregate {
    /// Aggregates the given samples; an empty input gives all zeros and `hosts == 0`.
    pub fn from_samples<'a>(samples: impl IntoIterator<Item = &'a HostSample>) -> Self {
        let mut agg = CohortAggregate::default();
        let mut pressure_sum = Pressure::default();
        let mut pressure_hosts = 0u32;
        for sample in samples {
            agg.hosts += 1;
            agg.cpu_percent_mean += sample.cpu_percent;
            agg.cpu_percent_max = agg.cpu_percent_max.max(sample.cpu_percent);
            let memory_percent = sample.memory_percent();
            agg.memory_percent_mean += memory_percent;
            agg.memory_percent_max = agg.memory_percent_max.max(memory_percent);
            agg.load1_mean += sample.load1;
            agg.load1_max = agg.load1_max.max(sample.load1);
            agg.swap_used_bytes_mean += sample.swap_used_bytes as f64;
            agg.disk_read_bytes_per_sec_mean += sample.disk_read_bytes_per_sec;
            agg.disk_write_bytes_per_sec_mean += sample.disk_write_bytes_per_sec;
            agg.net_rx_bytes_per_sec_mean += sample.net_rx_bytes_per_sec;
            agg.net_tx_bytes_per_sec_mean += sample.net_tx_bytes_per_sec;
            if let Some(p) = sample.pressure {
                pressure_hosts += 1;
                pressure_sum.cpu_some_avg10 += p.cpu_some_avg10;
                pressure_sum.memory_some_avg10 += p.memory_some_avg10;
                pressure_sum.io_some_avg10 += p.io_some_avg10;
            }
        }
        if agg.hosts > 0 {
            let n = f64::from(agg.hosts);
            agg.cpu_percent_mean /= n;
            agg.memory_percent_mean /= n;
            agg.load1_mean /= n;
            agg.swap_used_bytes_mean /= n;
            agg.disk_read_bytes_per_sec_mean /= n;
            agg.disk_write_bytes_per_sec_mean /= n;
            agg.net_rx_bytes_per_sec_mean /= n;
            agg.net_tx_bytes_per_sec_mean /= n;
        }
        if pressure_hosts > 0 {
            let n = f64::from(pressure_hosts);
            agg.pressure_mean = Some(Pressure {
                cpu_some_avg10: pressure_sum.cpu_some_avg10 / n,
                memory_some_avg10: pressure_sum.memory_some_avg10 / n,
                io_some_avg10: pressure_sum.io_some_avg10 / n,
            });
        }
        agg
    }
}

/// Counts hosts per app version, sorted by version, as `version=count`.
pub fn version_counts<'a>(versions: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for version in versions {
        let version = if version.is_empty() {
            "unknown"
        } else {
            version
        };
        *counts.entry(version).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(version, n)| format!("{version}={n}"))
        .collect()
}

#[cfg(test)]
mod tests;

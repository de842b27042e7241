//! From/TryFrom between `v1` wire types and `rollguard_common` domain types.
//!
//! Conversions from the wire are fallible and check everything a peer could
//! get wrong (unset enums, negative durations, non-finite figures); the
//! conversions to the wire cannot fail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rollguard_common::sample::{AppHealth, Bucket, DiskIo, FilesystemUsage, NetIo, Pressure};
use rollguard_common::{Cohort, CommandStatus, HostSample};

use crate::error::WireError;
use crate::v1 as pb;

// === time ===

/// Converts a wall-clock time to a protobuf timestamp.
pub fn time_to_pb(time: SystemTime) -> prost_types::Timestamp {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

/// Converts a protobuf timestamp to wall-clock time; before 1970 or out of range is an error.
pub fn time_from_pb(
    field: &'static str,
    ts: &prost_types::Timestamp,
) -> Result<SystemTime, WireError> {
    let secs = u64::try_from(ts.seconds).map_err(|_| WireError::invalid(field, "before 1970"))?;
    let nanos = u32::try_from(ts.nanos).map_err(|_| WireError::invalid(field, "negative nanos"))?;
    if nanos >= 1_000_000_000 {
        return Err(WireError::invalid(field, "nanos out of range"));
    }
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| WireError::invalid(field, "out of range"))
}

/// Converts a duration to a protobuf duration.
pub fn duration_to_pb(duration: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

/// Converts a protobuf duration; negative or malformed is an error.
pub fn duration_from_pb(
    field: &'static str,
    d: &prost_types::Duration,
) -> Result<Duration, WireError> {
    let secs = u64::try_from(d.seconds).map_err(|_| WireError::invalid(field, "negative"))?;
    let nanos = u32::try_from(d.nanos).map_err(|_| WireError::invalid(field, "negative"))?;
    if nanos >= 1_000_000_000 {
        return Err(WireError::invalid(field, "nanos out of range"));
    }
    Ok(Duration::new(secs, nanos))
}

// === enums ===

impl From<Cohort> for pb::Cohort {
    fn from(cohort: Cohort) -> Self {
        match cohort {
            Cohort::Beta => pb::Cohort::Beta,
            Cohort::Baseline => pb::Cohort::Baseline,
        }
    }
}

impl TryFrom<pb::Cohort> for Cohort {
    type Error = WireError;

    fn try_from(cohort: pb::Cohort) -> Result<Self, WireError> {
        match cohort {
            pb::Cohort::Beta => Ok(Cohort::Beta),
            pb::Cohort::Baseline => Ok(Cohort::Baseline),
            pb::Cohort::Unspecified => Err(WireError::Missing("cohort")),
        }
    }
}

/// Converts the raw enum value of a `cohort` field.
pub(crate) fn cohort_from_i32(value: i32) -> Result<Cohort, WireError> {
    let cohort = pb::Cohort::try_from(value)
        .map_err(|_| WireError::invalid("cohort", format!("unknown value {value}")))?;
    cohort.try_into()
}

impl From<CommandStatus> for pb::CommandStatus {
    fn from(status: CommandStatus) -> Self {
        match status {
            CommandStatus::Accepted => pb::CommandStatus::Accepted,
            CommandStatus::Running => pb::CommandStatus::Running,
            CommandStatus::Succeeded => pb::CommandStatus::Succeeded,
            CommandStatus::Failed => pb::CommandStatus::Failed,
            CommandStatus::Rejected => pb::CommandStatus::Rejected,
            CommandStatus::NoAnswer => pb::CommandStatus::NoAnswer,
        }
    }
}

impl TryFrom<pb::CommandStatus> for CommandStatus {
    type Error = WireError;

    fn try_from(status: pb::CommandStatus) -> Result<Self, WireError> {
        match status {
            pb::CommandStatus::Accepted => Ok(CommandStatus::Accepted),
            pb::CommandStatus::Running => Ok(CommandStatus::Running),
            pb::CommandStatus::Succeeded => Ok(CommandStatus::Succeeded),
            pb::CommandStatus::Failed => Ok(CommandStatus::Failed),
            pb::CommandStatus::Rejected => Ok(CommandStatus::Rejected),
            pb::CommandStatus::NoAnswer => Ok(CommandStatus::NoAnswer),
            pb::CommandStatus::Unspecified => Err(WireError::Missing("status")),
        }
    }
}

impl pb::Hello {
    /// Returns the cohort, rejecting unset or unknown values.
    pub fn checked_cohort(&self) -> Result<Cohort, WireError> {
        cohort_from_i32(self.cohort)
    }
}

impl pb::AgentInfo {
    /// Returns the cohort, rejecting unset or unknown values.
    pub fn checked_cohort(&self) -> Result<Cohort, WireError> {
        cohort_from_i32(self.cohort)
    }
}

impl pb::CohortStatus {
    /// Returns the cohort, rejecting unset or unknown values.
    pub fn checked_cohort(&self) -> Result<Cohort, WireError> {
        cohort_from_i32(self.cohort)
    }
}

impl pb::CommandUpdate {
    /// Returns the status, rejecting unset, unknown and coordinator-only values.
    pub fn checked_status(&self) -> Result<CommandStatus, WireError> {
        let status = pb::CommandStatus::try_from(self.status)
            .map_err(|_| WireError::invalid("status", format!("unknown value {}", self.status)))?;
        match CommandStatus::try_from(status)? {
            CommandStatus::NoAnswer => Err(WireError::invalid(
                "status",
                "no_answer is not an agent status",
            )),
            other => Ok(other),
        }
    }
}

impl pb::LocalRollback {
    /// Returns the status: a local run is reported once it finished, so
    /// only succeeded or failed.
    pub fn checked_status(&self) -> Result<CommandStatus, WireError> {
        let status = pb::CommandStatus::try_from(self.status)
            .map_err(|_| WireError::invalid("status", format!("unknown value {}", self.status)))?;
        match CommandStatus::try_from(status)? {
            status @ (CommandStatus::Succeeded | CommandStatus::Failed) => Ok(status),
            other => Err(WireError::invalid(
                "status",
                format!("{other} is not a finished local run"),
            )),
        }
    }
}

impl pb::HostResult {
    /// Returns the status, rejecting unset or unknown values.
    pub fn checked_status(&self) -> Result<CommandStatus, WireError> {
        let status = pb::CommandStatus::try_from(self.status)
            .map_err(|_| WireError::invalid("status", format!("unknown value {}", self.status)))?;
        status.try_into()
    }
}

// === samples ===

impl From<&HostSample> for pb::HostSample {
    fn from(s: &HostSample) -> Self {
        sample_to_pb(s, Names::Sent)
    }
}

/// Whether a sample's names go on the wire, or only its figures (a compact
/// sample: the stream's layout has the names, see `compact`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    Sent,
    LeftOut,
}

/// The wire form of `s`, in one step from the domain.
pub(crate) fn sample_to_pb(s: &HostSample, names: Names) -> pb::HostSample {
    let name = |n: &String| match names {
        Names::Sent => n.clone(),
        Names::LeftOut => String::new(),
    };
    pb::HostSample {
        collected_at: Some(time_to_pb(s.collected_at)),
        interval: Some(duration_to_pb(s.interval)),
        cpu_percent: s.cpu_percent,
        load1: s.load1,
        load5: s.load5,
        load15: s.load15,
        memory_total_bytes: s.memory_total_bytes,
        memory_used_bytes: s.memory_used_bytes,
        memory_available_bytes: s.memory_available_bytes,
        swap_used_bytes: s.swap_used_bytes,
        disk_read_bytes_per_sec: s.disk_read_bytes_per_sec,
        disk_write_bytes_per_sec: s.disk_write_bytes_per_sec,
        net_rx_bytes_per_sec: s.net_rx_bytes_per_sec,
        net_tx_bytes_per_sec: s.net_tx_bytes_per_sec,
        pressure: s.pressure.map(pressure_to_pb),
        cpu_core_percent: s.cpu_core_percent.clone(),
        filesystems: s
            .filesystems
            .iter()
            .map(|f| pb::FilesystemUsage {
                mount_point: name(&f.mount_point),
                device: name(&f.device),
                fs_type: name(&f.fs_type),
                used_bytes: f.used_bytes,
                total_bytes: f.total_bytes,
            })
            .collect(),
        disks: s
            .disks
            .iter()
            .map(|d| pb::DiskIo {
                device: name(&d.device),
                read_bytes_per_sec: d.read_bytes_per_sec,
                write_bytes_per_sec: d.write_bytes_per_sec,
                read_ops_per_sec: d.read_ops_per_sec,
                write_ops_per_sec: d.write_ops_per_sec,
            })
            .collect(),
        interfaces: s
            .interfaces
            .iter()
            .map(|n| pb::NetIo {
                interface: name(&n.interface),
                rx_bytes_per_sec: n.rx_bytes_per_sec,
                tx_bytes_per_sec: n.tx_bytes_per_sec,
                rx_packets_per_sec: n.rx_packets_per_sec,
                tx_packets_per_sec: n.tx_packets_per_sec,
                rx_errors_per_sec: n.rx_errors_per_sec,
                tx_errors_per_sec: n.tx_errors_per_sec,
                rx_drops_per_sec: n.rx_drops_per_sec,
                tx_drops_per_sec: n.tx_drops_per_sec,
            })
            .collect(),
        disk_read_ops_per_sec: s.disk_read_ops_per_sec,
        disk_write_ops_per_sec: s.disk_write_ops_per_sec,
        app: s.app.as_ref().map(|app| app_to_pb(app, names)),
        same_layout: names == Names::LeftOut,
    }
}

/// A compact sample's gauge values: in the order of their sorted names.
pub(crate) fn sorted_gauge_values(gauges: &[(String, f64)]) -> Vec<f64> {
    let mut sorted: Vec<&(String, f64)> = gauges.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    sorted.into_iter().map(|(_, value)| *value).collect()
}

fn buckets_to_pb(buckets: &[Bucket]) -> Vec<pb::HistogramBucket> {
    buckets
        .iter()
        .map(|b| pb::HistogramBucket {
            upper_bound: b.upper_bound,
            cumulative_count: b.cumulative_count,
        })
        .collect()
}

fn buckets_from_pb(buckets: &[pb::HistogramBucket]) -> Vec<Bucket> {
    buckets
        .iter()
        .map(|b| Bucket {
            upper_bound: b.upper_bound,
            cumulative_count: b.cumulative_count,
        })
        .collect()
}

/// The app's figures; with names left out, histograms go as counts (their
/// bounds are in the layout) and gauges as values in name order.
fn app_to_pb(app: &AppHealth, names: Names) -> pb::AppHealth {
    let mut wire = pb::AppHealth {
        requests: app.requests,
        errors: app.errors,
        latency_count: app.latency_count,
        latency_sum_seconds: app.latency_sum_seconds,
        scrape_enabled: app.scrape_enabled,
        scrapes: app.scrapes,
        scrape_errors: app.scrape_errors,
        scrape_error: app.scrape_error.clone(),
        probe_enabled: app.probe_enabled,
        probes: app.probes,
        probe_errors: app.probe_errors,
        probe_error: app.probe_error.clone(),
        ..Default::default()
    };
    match names {
        Names::Sent => {
            wire.latency_buckets = buckets_to_pb(&app.latency_buckets);
            wire.probe_latency_buckets = buckets_to_pb(&app.probe_latency_buckets);
            wire.gauges = app.gauges.iter().cloned().collect();
        }
        Names::LeftOut => {
            let counts = |buckets: &[Bucket]| -> Vec<u64> {
                buckets.iter().map(|b| b.cumulative_count as u64).collect()
            };
            wire.latency_counts = counts(&app.latency_buckets);
            wire.probe_latency_counts = counts(&app.probe_latency_buckets);
            wire.gauge_values = sorted_gauge_values(&app.gauges);
        }
    }
    wire
}

fn app_from_pb(app: &pb::AppHealth) -> AppHealth {
    let mut gauges: Vec<(String, f64)> = app.gauges.iter().map(|(k, v)| (k.clone(), *v)).collect();
    gauges.sort_by(|a, b| a.0.cmp(&b.0));
    AppHealth {
        requests: app.requests,
        errors: app.errors,
        latency_buckets: buckets_from_pb(&app.latency_buckets),
        latency_count: app.latency_count,
        latency_sum_seconds: app.latency_sum_seconds,
        gauges,
        scrape_enabled: app.scrape_enabled,
        scrapes: app.scrapes,
        scrape_errors: app.scrape_errors,
        scrape_error: app.scrape_error.clone(),
        probe_enabled: app.probe_enabled,
        probes: app.probes,
        probe_errors: app.probe_errors,
        probe_error: app.probe_error.clone(),
        probe_latency_buckets: buckets_from_pb(&app.probe_latency_buckets),
    }
}

/// Converts pressure figures to the wire.
pub(crate) fn pressure_to_pb(p: Pressure) -> pb::Pressure {
    pb::Pressure {
        cpu_some_avg10: p.cpu_some_avg10,
        memory_some_avg10: p.memory_some_avg10,
        io_some_avg10: p.io_some_avg10,
    }
}

impl From<Pressure> for pb::Pressure {
    fn from(p: Pressure) -> Self {
        pressure_to_pb(p)
    }
}

impl TryFrom<&pb::HostSample> for HostSample {
    type Error = WireError;

    fn try_from(s: &pb::HostSample) -> Result<Self, WireError> {
        // A compact sample means nothing without its stream: `compact::Expander` first.
        let compact_app = s.app.as_ref().is_some_and(|a| {
            !(a.latency_counts.is_empty()
                && a.probe_latency_counts.is_empty()
                && a.gauge_values.is_empty())
        });
        if s.same_layout || compact_app {
            return Err(WireError::invalid(
                "same_layout",
                "a compact sample must be expanded against its stream",
            ));
        }
        let sample = fields_from_pb(s)?;
        sample
            .validate()
            .map_err(|message| WireError::invalid("sample", message))?;
        Ok(sample)
    }
}

/// Every figure of `s` as it is on the wire, unchecked: a compact sample's
/// names and histograms are left empty for its stream's layout to fill.
pub(crate) fn fields_from_pb(s: &pb::HostSample) -> Result<HostSample, WireError> {
    let collected_at = time_from_pb(
        "collected_at",
        s.collected_at
            .as_ref()
            .ok_or(WireError::Missing("collected_at"))?,
    )?;
    let interval = duration_from_pb(
        "interval",
        s.interval.as_ref().ok_or(WireError::Missing("interval"))?,
    )?;
    let sample = HostSample {
        collected_at,
        interval,
        cpu_percent: s.cpu_percent,
        cpu_core_percent: s.cpu_core_percent.clone(),
        load1: s.load1,
        load5: s.load5,
        load15: s.load15,
        memory_total_bytes: s.memory_total_bytes,
        memory_used_bytes: s.memory_used_bytes,
        memory_available_bytes: s.memory_available_bytes,
        swap_used_bytes: s.swap_used_bytes,
        filesystems: s
            .filesystems
            .iter()
            .map(|f| FilesystemUsage {
                mount_point: f.mount_point.clone(),
                device: f.device.clone(),
                fs_type: f.fs_type.clone(),
                used_bytes: f.used_bytes,
                total_bytes: f.total_bytes,
            })
            .collect(),
        disks: s
            .disks
            .iter()
            .map(|d| DiskIo {
                device: d.device.clone(),
                read_bytes_per_sec: d.read_bytes_per_sec,
                write_bytes_per_sec: d.write_bytes_per_sec,
                read_ops_per_sec: d.read_ops_per_sec,
                write_ops_per_sec: d.write_ops_per_sec,
            })
            .collect(),
        disk_read_bytes_per_sec: s.disk_read_bytes_per_sec,
        disk_write_bytes_per_sec: s.disk_write_bytes_per_sec,
        disk_read_ops_per_sec: s.disk_read_ops_per_sec,
        disk_write_ops_per_sec: s.disk_write_ops_per_sec,
        interfaces: s
            .interfaces
            .iter()
            .map(|n| NetIo {
                interface: n.interface.clone(),
                rx_bytes_per_sec: n.rx_bytes_per_sec,
                tx_bytes_per_sec: n.tx_bytes_per_sec,
                rx_packets_per_sec: n.rx_packets_per_sec,
                tx_packets_per_sec: n.tx_packets_per_sec,
                rx_errors_per_sec: n.rx_errors_per_sec,
                tx_errors_per_sec: n.tx_errors_per_sec,
                rx_drops_per_sec: n.rx_drops_per_sec,
                tx_drops_per_sec: n.tx_drops_per_sec,
            })
            .collect(),
        net_rx_bytes_per_sec: s.net_rx_bytes_per_sec,
        net_tx_bytes_per_sec: s.net_tx_bytes_per_sec,
        pressure: s.pressure.map(|p| Pressure {
            cpu_some_avg10: p.cpu_some_avg10,
            memory_some_avg10: p.memory_some_avg10,
            io_some_avg10: p.io_some_avg10,
        }),
        app: s.app.as_ref().map(app_from_pb),
    };
    Ok(sample)
}

#[cfg(test)]
mod tests;

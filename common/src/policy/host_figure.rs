//! The host figures a rule can name ([`HostFigure`]), their names, and where
//! each one comes from in a sample. The names are the `HOST_METRICS` table.

use std::ops::{Index, IndexMut};

use crate::sample::HostSample;

/// A figure of one host, averaged over its samples in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostFigure {
    CpuPercent,
    MemoryPercent,
    Load1,
    Load5,
    Load15,
    SwapUsedBytes,
    DiskReadBytesPerSec,
    DiskWriteBytesPerSec,
    DiskReadOpsPerSec,
    DiskWriteOpsPerSec,
    NetRxBytesPerSec,
    NetTxBytesPerSec,
    PsiCpuSomeAvg10,
    PsiMemorySomeAvg10,
    PsiIoSomeAvg10,
}

impl HostFigure {
    /// How many figures there are.
    pub(super) const COUNT: usize = 15;

    /// Every figure, in declaration order (which is also `HOST_METRICS`' order).
    pub(super) const ALL: [HostFigure; Self::COUNT] = [
        HostFigure::CpuPercent,
        HostFigure::MemoryPercent,
        HostFigure::Load1,
        HostFigure::Load5,
        HostFigure::Load15,
        HostFigure::SwapUsedBytes,
        HostFigure::DiskReadBytesPerSec,
        HostFigure::DiskWriteBytesPerSec,
        HostFigure::DiskReadOpsPerSec,
        HostFigure::DiskWriteOpsPerSec,
        HostFigure::NetRxBytesPerSec,
        HostFigure::NetTxBytesPerSec,
        HostFigure::PsiCpuSomeAvg10,
        HostFigure::PsiMemorySomeAvg10,
        HostFigure::PsiIoSomeAvg10,
    ];

    /// Every figure's name, in the order of [`HostFigure::ALL`].
    pub(super) const NAMES: [&'static str; Self::COUNT] = {
        let mut names = [""; Self::COUNT];
        let mut idx = 0;
        while idx < Self::COUNT {
            names[idx] = Self::ALL[idx].name();
            idx += 1;
        }
        names
    };

    /// Returns the metric name a rule uses.
    pub(super) const fn name(self) -> &'static str {
        match self {
            HostFigure::CpuPercent => "cpu_percent",
            HostFigure::MemoryPercent => "memory_percent",
            HostFigure::Load1 => "load1",
            HostFigure::Load5 => "load5",
            HostFigure::Load15 => "load15",
            HostFigure::SwapUsedBytes => "swap_used_bytes",
            HostFigure::DiskReadBytesPerSec => "disk_read_bytes_per_sec",
            HostFigure::DiskWriteBytesPerSec => "disk_write_bytes_per_sec",
            HostFigure::DiskReadOpsPerSec => "disk_read_ops_per_sec",
            HostFigure::DiskWriteOpsPerSec => "disk_write_ops_per_sec",
            HostFigure::NetRxBytesPerSec => "net_rx_bytes_per_sec",
            HostFigure::NetTxBytesPerSec => "net_tx_bytes_per_sec",
            HostFigure::PsiCpuSomeAvg10 => "psi_cpu_some_avg10",
            HostFigure::PsiMemorySomeAvg10 => "psi_memory_some_avg10",
            HostFigure::PsiIoSomeAvg10 => "psi_io_some_avg10",
        }
    }

    /// Returns the figure a metric name names, `None` for any other name.
    pub(super) fn from_name(name: &str) -> Option<HostFigure> {
        Self::ALL.into_iter().find(|figure| figure.name() == name)
    }

    /// Returns true for the PSI figures, which only some samples carry (not
    /// every kernel has PSI): their mean is over the samples that had them.
    pub(super) fn is_pressure(self) -> bool {
        matches!(
            self,
            HostFigure::PsiCpuSomeAvg10
                | HostFigure::PsiMemorySomeAvg10
                | HostFigure::PsiIoSomeAvg10
        )
    }

    /// Returns the figure's value in `sample`, `None` for PSI when the sample has none.
    pub(super) fn of(self, sample: &HostSample) -> Option<f64> {
        let pressure = sample.pressure;
        match self {
            HostFigure::CpuPercent => Some(sample.cpu_percent),
            HostFigure::MemoryPercent => Some(sample.memory_percent()),
            HostFigure::Load1 => Some(sample.load1),
            HostFigure::Load5 => Some(sample.load5),
            HostFigure::Load15 => Some(sample.load15),
            HostFigure::SwapUsedBytes => Some(sample.swap_used_bytes as f64),
            HostFigure::DiskReadBytesPerSec => Some(sample.disk_read_bytes_per_sec),
            HostFigure::DiskWriteBytesPerSec => Some(sample.disk_write_bytes_per_sec),
            HostFigure::DiskReadOpsPerSec => Some(sample.disk_read_ops_per_sec),
            HostFigure::DiskWriteOpsPerSec => Some(sample.disk_write_ops_per_sec),
            HostFigure::NetRxBytesPerSec => Some(sample.net_rx_bytes_per_sec),
            HostFigure::NetTxBytesPerSec => Some(sample.net_tx_bytes_per_sec),
            HostFigure::PsiCpuSomeAvg10 => pressure.map(|p| p.cpu_some_avg10),
            HostFigure::PsiMemorySomeAvg10 => pressure.map(|p| p.memory_some_avg10),
            HostFigure::PsiIoSomeAvg10 => pressure.map(|p| p.io_some_avg10),
        }
    }
}

/// One `f64` per host figure, indexed by [`HostFigure`].
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct PerFigure([f64; HostFigure::COUNT]);

impl Index<HostFigure> for PerFigure {
    type Output = f64;

    fn index(&self, figure: HostFigure) -> &f64 {
        // In bounds: every discriminant is below COUNT (a test checks ALL).
        &self.0[figure as usize]
    }
}

impl IndexMut<HostFigure> for PerFigure {
    fn index_mut(&mut self, figure: HostFigure) -> &mut f64 {
        &mut self.0[figure as usize]
    }
}

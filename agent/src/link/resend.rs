//! [`ResendBuffer`]: the samples the coordinator has not acked yet.
//!
//! Bounded by bytes (`resend_buffer`, default
//! [`DEFAULT_RESEND_BUFFER`](crate::config::DEFAULT_RESEND_BUFFER)):
//! each sample is charged its [`footprint`] in memory, and when the total
//! passes the bound the oldest samples are dropped (newer figures matter
//! more to a rollout decision than old ones). A count bound would mean
//! minutes on a small host and much more memory on one with many disks,
//! interfaces and app histograms; bytes are what the operator budgets.
//! After a reconnect everything still here is sent again, in order; the
//! coordinator tells duplicates apart by sequence number and keeps samples
//! older than its round out of the round (`rollguard_samples_late_total`).
//!
//! It does not bound the wire: the resend goes out in batches of the size
//! the coordinator's Welcome allows.

use std::collections::VecDeque;
use std::mem::size_of;

use rollguard_common::sample::{Bucket, DiskIo, FilesystemUsage, NetIo};
use rollguard_common::HostSample;

/// One unacked sample.
#[derive(Debug)]
pub(crate) struct Unacked {
    pub(crate) seq: u64,
    /// What it is charged against the bound.
    bytes: usize,
    pub(crate) sample: HostSample,
}

/// Unacked samples, each with its sequence number, oldest first.
#[derive(Debug)]
pub(crate) struct ResendBuffer {
    samples: VecDeque<Unacked>,
    next_seq: u64,
    /// Sum of the kept samples' footprints.
    bytes: usize,
    max_bytes: usize,
    /// Samples dropped for the bound since the last [`ResendBuffer::take_dropped`].
    dropped: u64,
}

impl ResendBuffer {
    /// Returns an empty buffer that keeps at most `max_bytes` of samples
    /// (always at least the newest); the first sample gets sequence number 0.
    pub(crate) fn new(max_bytes: usize) -> ResendBuffer {
        ResendBuffer {
            samples: VecDeque::new(),
            next_seq: 0,
            bytes: 0,
            max_bytes,
            dropped: 0,
        }
    }

    /// Keeps `sample` under the next sequence number, dropping the oldest
    /// samples while the buffer is over its bound.
    pub(crate) fn push(&mut self, sample: &HostSample) {
        let bytes = footprint(sample);
        // Kept as the domain sample: the stream's encoding (whole or
        // compact) is chosen when it is sent, in one step.
        self.samples.push_back(Unacked {
            seq: self.next_seq,
            bytes,
            sample: sample.clone(),
        });
        self.bytes += bytes;
        self.next_seq += 1;
        while self.bytes > self.max_bytes && self.samples.len() > 1 {
            if let Some(oldest) = self.samples.pop_front() {
                self.bytes -= oldest.bytes;
                self.dropped += 1;
            }
        }
    }

    /// Returns the newest sample and its sequence number.
    pub(crate) fn newest(&self) -> Option<(u64, &HostSample)> {
        self.samples.back().map(|u| (u.seq, &u.sample))
    }

    /// Forgets every sample up to and including `seq`.
    pub(crate) fn ack(&mut self, seq: u64) {
        while self.samples.front().is_some_and(|u| u.seq <= seq) {
            if let Some(acked) = self.samples.pop_front() {
                self.bytes -= acked.bytes;
            }
        }
    }

    /// Returns how many samples are kept and their footprint in bytes.
    pub(crate) fn len_and_bytes(&self) -> (usize, usize) {
        (self.samples.len(), self.bytes)
    }

    /// Returns how many samples the bound dropped since the last
    /// [`ResendBuffer::take_dropped`].
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Returns how many samples the bound dropped since the last call.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    /// Returns every buffered sample, oldest first, in runs of at most
    /// `max_batch` (at least one).
    pub(crate) fn chunks(&mut self, max_batch: usize) -> std::slice::Chunks<'_, Unacked> {
        self.samples.make_contiguous().chunks(max_batch.max(1))
    }
}

/// Estimates what a buffered `sample` holds in memory: its entry in the
/// buffer plus what its vectors and strings point to. Lengths, not
/// capacities: the buffer keeps clones, whose capacities are their lengths.
pub(crate) fn footprint(sample: &HostSample) -> usize {
    let filesystems: usize = sample
        .filesystems
        .iter()
        .map(|f| {
            size_of::<FilesystemUsage>() + f.mount_point.len() + f.device.len() + f.fs_type.len()
        })
        .sum();
    let disks: usize = sample
        .disks
        .iter()
        .map(|d| size_of::<DiskIo>() + d.device.len())
        .sum();
    let interfaces: usize = sample
        .interfaces
        .iter()
        .map(|i| size_of::<NetIo>() + i.interface.len())
        .sum();
    let app = sample.app.as_ref().map_or(0, |app| {
        let gauges: usize = app
            .gauges
            .iter()
            .map(|(name, _)| size_of::<(String, f64)>() + name.len())
            .sum();
        (app.latency_buckets.len() + app.probe_latency_buckets.len()) * size_of::<Bucket>()
            + gauges
            + app.scrape_error.len()
            + app.probe_error.len()
    });
    size_of::<Unacked>()
        + sample.cpu_core_percent.len() * size_of::<f64>()
        + filesystems
        + disks
        + interfaces
        + app
}

#[cfg(test)]
mod tests;

//! [`ResendBuffer`]: the samples the coordinator has not acked yet.
//!
//! Bounded at [`SAMPLE_BUFFER`]; when full the oldest sample is dropped
//! (newer figures matter more to a rollout decision than old ones). After a
//! reconnect everything still here is sent again, in order; the coordinator
//! tells duplicates apart by sequence number.

use std::collections::VecDeque;

use rollguard_common::HostSample;

/// Samples kept while unacked (at 1 s, two minutes).
const SAMPLE_BUFFER: usize = 120;

/// Unacked samples, each with its sequence number, oldest first.
#[derive(Debug)]
pub(crate) struct ResendBuffer {
    samples: VecDeque<(u64, HostSample)>,
    next_seq: u64,
}

impl ResendBuffer {
    /// Returns an empty buffer; the first sample gets sequence number 0.
    pub(crate) fn new() -> ResendBuffer {
        ResendBuffer {
            samples: VecDeque::with_capacity(SAMPLE_BUFFER),
            next_seq: 0,
        }
    }

    /// Keeps `sample` under the next sequence number, dropping the oldest
    /// sample when the buffer is full.
    pub(crate) fn push(&mut self, sample: &HostSample) {
        if self.samples.len() == SAMPLE_BUFFER {
            self.samples.pop_front();
        }
        // Kept as the domain sample: the stream's encoding (whole or
        // compact) is chosen when it is sent, in one step.
        self.samples.push_back((self.next_seq, sample.clone()));
        self.next_seq += 1;
    }

    /// Returns the newest sample and its sequence number.
    pub(crate) fn newest(&self) -> Option<(u64, &HostSample)> {
        self.samples.back().map(|(seq, sample)| (*seq, sample))
    }

    /// Forgets every sample up to and including `seq`.
    pub(crate) fn ack(&mut self, seq: u64) {
        while self.samples.front().is_some_and(|(kept, _)| *kept <= seq) {
            self.samples.pop_front();
        }
    }

    /// Returns every buffered sample, oldest first, in runs of at most
    /// `max_batch` (at least one).
    pub(crate) fn chunks(&mut self, max_batch: usize) -> std::slice::Chunks<'_, (u64, HostSample)> {
        self.samples.make_contiguous().chunks(max_batch.max(1))
    }
}

#[cfg(test)]
mod tests;

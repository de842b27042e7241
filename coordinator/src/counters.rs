//! The coordinator's counters: atomics bumped where things happen (ingest,
//! the store's commits, the policy's rounds) and read by `/metrics` at scrape
//! time. A leaf: it knows nothing of who bumps or reads it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the store commit latency histogram.
pub(crate) const COMMIT_BOUNDS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Counters and histograms bumped where things happen.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) samples_ingested: AtomicU64,
    pub(crate) samples_rejected: AtomicU64,
    pub(crate) samples_deduplicated: AtomicU64,
    pub(crate) samples_late: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BOUNDS.len()],
    commit_count: AtomicU64,
    commit_sum_nanos: AtomicU64,
    verdicts: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// The store is open and the gRPC listener is up (`/readyz`).
    pub(crate) ready: AtomicBool,
    /// The store's last commit failed; it is being reopened (`/readyz` 503).
    store_failing: AtomicBool,
    /// Failed commits and reopen attempts, and held writes dropped.
    store_errors: AtomicU64,
}

/// The store commit histogram as read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CommitHistogram {
    /// Cumulative count per bound of [`COMMIT_BOUNDS`].
    pub(crate) buckets: [u64; COMMIT_BOUNDS.len()],
    pub(crate) count: u64,
    pub(crate) sum_secs: f64,
}

impl Counters {
    /// Records one store commit's duration.
    pub(crate) fn observe_commit(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bucket, bound) in self.commit_buckets.iter().zip(COMMIT_BOUNDS) {
            if secs <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.commit_count.fetch_add(1, Ordering::Relaxed);
        self.commit_sum_nanos.fetch_add(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts one failed store commit (or reopen, or dropped write).
    pub(crate) fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Store errors so far.
    pub(crate) fn store_errors(&self) -> u64 {
        self.store_errors.load(Ordering::Relaxed)
    }

    pub(crate) fn set_store_failing(&self, failing: bool) {
        self.store_failing.store(failing, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200: serving, and the store commits.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed) && !self.store_failing.load(Ordering::Relaxed)
    }

    /// Counts one round's verdict.
    pub(crate) fn verdict(&self, deployment: &str, verdict: &'static str) {
        let mut verdicts = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        *verdicts
            .entry((deployment.to_owned(), verdict))
            .or_default() += 1;
    }

    /// Rounds counted so far, by deployment and verdict.
    pub(crate) fn verdicts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The store commit histogram now.
    pub(crate) fn commits(&self) -> CommitHistogram {
        CommitHistogram {
            buckets: std::array::from_fn(|idx| self.commit_buckets[idx].load(Ordering::Relaxed)),
            count: self.commit_count.load(Ordering::Relaxed),
            sum_secs: self.commit_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    /// Adds `n` to `counter` (a field of this struct), skipping the atomic for zero.
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        if n > 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_counts_in_every_bucket_at_or_above_it() {
        let counters = Counters::default();
        counters.observe_commit(Duration::from_millis(3));
        counters.observe_commit(Duration::from_secs(10));
        let commits = counters.commits();
        // 3 ms is above the first three bounds (0.5, 1, 2.5 ms); 10 s is above all.
        assert_eq!(&commits.buckets[..3], &[0, 0, 0]);
        assert_eq!(&commits.buckets[3..], &[1; 9]);
        assert_eq!(commits.count, 2);
        assert!((commits.sum_secs - 10.003).abs() < 1e-9);
    }

    #[test]
    fn verdicts_count_per_deployment_and_verdict() {
        let counters = Counters::default();
        counters.verdict("web", "fail");
        counters.verdict("web", "fail");
        counters.verdict("web", "pass");
        counters.verdict("api", "fail");
        let verdicts = counters.verdicts();
        assert_eq!(verdicts[&("web".to_owned(), "fail")], 2);
        assert_eq!(verdicts[&("web".to_owned(), "pass")], 1);
        assert_eq!(verdicts[&("api".to_owned(), "fail")], 1);
        assert_eq!(verdicts.len(), 3);
    }
}

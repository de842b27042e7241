//! Beta against baseline over stored rounds: the essay's expansion review.
//! `rollguardctl report`, a rollout's status and its retrospective all read
//! their table from here.

use rollguard_common::policy::{merge_buckets, quantile_ms};
use rollguard_common::rollout::Assessment;
use rollguard_common::sample::Bucket;
use serde::Serialize;

use crate::store::RoundRecord;

/// One figure, both cohorts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Row {
    pub(crate) metric: &'static str,
    pub(crate) beta: Option<f64>,
    pub(crate) baseline: Option<f64>,
    /// (beta − baseline) / baseline, in percent.
    pub(crate) change_percent: Option<f64>,
    pub(crate) assessment: Assessment,
}

/// The comparison over some rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Comparison {
    pub(crate) rounds: u32,
    pub(crate) beta_requests: f64,
    pub(crate) baseline_requests: f64,
    /// Error rate, p99 latency, CPU and memory, in that order.
    pub(crate) rows: Vec<Row>,
}

#[derive(Default)]
struct Side {
    requests: f64,
    errors: f64,
    buckets: Vec<Bucket>,
    cpu: (f64, u32),
    memory: (f64, u32),
}

/// Compares beta with baseline over `rounds`: error rate from summed
/// counts, p99 from summed bucket deltas, CPU and memory as means of rounds.
pub(crate) fn compare<'a>(rounds: impl IntoIterator<Item = &'a RoundRecord>) -> Comparison {
    let mut beta = Side::default();
    let mut baseline = Side::default();
    let mut n = 0u32;
    for round in rounds {
        n = n.saturating_add(1);
        for (side, figures) in [
            (&mut beta, &round.evaluation.beta),
            (&mut baseline, &round.evaluation.baseline),
        ] {
            side.requests += figures.requests;
            side.errors += figures.errors;
            let buckets: Vec<Bucket> = figures
                .latency_buckets
                .iter()
                .map(|&(upper_bound, cumulative_count)| Bucket {
                    upper_bound,
                    cumulative_count,
                })
                .collect();
            side.buckets = merge_buckets(&side.buckets, &buckets);
            if let Some(cpu) = figures.cpu_percent {
                side.cpu.0 += cpu;
                side.cpu.1 += 1;
            }
            if let Some(memory) = figures.memory_percent {
                side.memory.0 += memory;
                side.memory.1 += 1;
            }
        }
    }
    let mean = |(sum, n): (f64, u32)| (n > 0).then(|| sum / f64::from(n));
    let rate = |s: &Side| (s.requests > 0.0).then(|| s.errors / s.requests);
    let row = |metric: &'static str, beta: Option<f64>, baseline: Option<f64>| Row {
        metric,
        beta,
        baseline,
        change_percent: match (beta, baseline) {
            (Some(b), Some(base)) if base != 0.0 => Some((b - base) / base * 100.0),
            _ => None,
        },
        assessment: Assessment::of(metric, beta, baseline),
    };
    Comparison {
        rounds: n,
        beta_requests: beta.requests,
        baseline_requests: baseline.requests,
        rows: vec![
            row("error_rate", rate(&beta), rate(&baseline)),
            row(
                "latency_p99_ms",
                quantile_ms(0.99, &beta.buckets),
                quantile_ms(0.99, &baseline.buckets),
            ),
            row("cpu_percent", mean(beta.cpu), mean(baseline.cpu)),
            row("memory_percent", mean(beta.memory), mean(baseline.memory)),
        ],
    }
}

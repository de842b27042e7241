//! Classic (bucketed) histograms: extraction from a scrape, per-interval
//! deltas, and PromQL's `histogram_quantile`.

use std::cmp::Ordering;

use super::model::Exposition;
use super::parse::parse_float;
use super::selector::{matchers_match, LabelMatcher};

/// A classic histogram summed over the series that matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `(upper_bound, cumulative_count)` sorted by bound, one entry per
    /// distinct `le`; the last bound is `+Inf` for a well-formed histogram.
    pub buckets: Vec<(f64, f64)>,
    /// The `_count` total; the last bucket's count if no `_count` series matched.
    pub count: f64,
    /// The `_sum` total; NaN if no `_sum` series matched.
    pub sum: f64,
}

/// Extracts histogram `base_name` from a scrape, summing every series of
/// `<base_name>_bucket`, `_count` and `_sum` that satisfies `matchers` (as
/// PromQL's `sum by (le) (...)` would).
///
/// Buckets whose `le` is missing or not a float are skipped, as PromQL does.
/// Returns `None` if no bucket series matched. `matchers` should not mention
/// `le`, since the `_count` and `_sum` series lack it.
pub fn histogram(
    exposition: &Exposition<'_>,
    base_name: &str,
    matchers: &[LabelMatcher],
) -> Option<Histogram> {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let mut count_opt: Option<f64> = None;
    let mut sum_opt: Option<f64> = None;
    // A sample's name starts with its family's name: the family is either
    // the typed histogram `base_name` or an untyped `<base_name>_bucket`.
    let families = exposition
        .families
        .iter()
        .filter(|family| base_name.starts_with(family.name) || family.name.starts_with(base_name));
    for sample in families.flat_map(|family| family.samples.iter()) {
        let Some(suffix) = sample.name.strip_prefix(base_name) else {
            continue;
        };
        let slot = match suffix {
            "_bucket" => None,
            "_count" => Some(&mut count_opt),
            "_sum" => Some(&mut sum_opt),
            _ => continue,
        };
        if !matchers_match(matchers, sample) {
            continue;
        }
        match slot {
            Some(total) => *total = Some(total.unwrap_or(0.0) + sample.value),
            None => {
                if let Some(upper_bound) = sample.label("le").and_then(parse_float) {
                    buckets.push((upper_bound, sample.value));
                }
            }
        }
    }
    if buckets.is_empty() {
        return None;
    }
    sort_by_bound(&mut buckets);
    coalesce(&mut buckets);
    let last_count = buckets.last().map_or(f64::NAN, |&(_, count)| count);
    Some(Histogram {
        buckets,
        count: count_opt.unwrap_or(last_count),
        sum: sum_opt.unwrap_or(f64::NAN),
    })
}

// === impl Histogram ===

impl Histogram {
    /// Returns what was observed between `previous` and `self`, two scrapes
    /// of the same histogram.
    ///
    /// If any bucket or the count went down, or the bucket layout changed, the
    /// target restarted in between (a counter reset): like PromQL's `rate`,
    /// the current values are then taken as the delta.
    pub fn delta(&self, previous: &Histogram) -> Histogram {
        let same_layout = self.buckets.len() == previous.buckets.len()
            && self
                .buckets
                .iter()
                .zip(&previous.buckets)
                .all(|(current, prev)| current.0 == prev.0);
        let reset = !same_layout
            || self.count < previous.count
            || self
                .buckets
                .iter()
                .zip(&previous.buckets)
                .any(|(current, prev)| current.1 < prev.1);
        if reset {
            return self.clone();
        }
        Histogram {
            buckets: self
                .buckets
                .iter()
                .zip(&previous.buckets)
                .map(|(&(upper_bound, current), &(_, prev))| (upper_bound, current - prev))
                .collect(),
            count: self.count - previous.count,
            sum: self.sum - previous.sum,
        }
    }

    /// Returns the `q`-quantile of the buckets; see [`histogram_quantile`].
    pub fn quantile(&self, q: f64) -> Option<f64> {
        histogram_quantile(q, &self.buckets)
    }
}

/// Computes the `q`-quantile from `(upper_bound, cumulative_count)` buckets
/// exactly like PromQL's `histogram_quantile` on classic buckets, returning
/// `None` where Prometheus returns NaN (or has no result).
///
/// The buckets need not be sorted; equal bounds are summed. Then:
/// - no buckets, or `q` is NaN → `None`;
/// - `q < 0` → `-Inf`; `q > 1` → `+Inf`;
/// - the highest bound is not `+Inf`, fewer than two buckets remain, or the
///   total count is zero → `None`;
/// - counts that differ from their predecessor by a relative 1e-12 or less
///   are treated as equal, and any decrease between successive buckets is
///   raised to the running maximum (Prometheus' monotonicity fix);
/// - the rank `q * count` is located in the first bucket whose count reaches
///   it and interpolated linearly within it; the lowest bucket starts at 0
///   if its upper bound is positive, otherwise its upper bound is returned;
/// - a rank in the `+Inf` bucket returns the second-highest bound.
///
/// The result is NaN in Prometheus in a few further degenerate cases, e.g.
/// `q = 0` with an empty lowest bucket (0/0 interpolation); those are `None`
/// here too.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    // PromQL produces no series at all without buckets.
    if buckets.is_empty() || q.is_nan() {
        return None;
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let mut buckets = buckets.to_vec();
    sort_by_bound(&mut buckets);
    if buckets.last().map(|&(upper_bound, _)| upper_bound) != Some(f64::INFINITY) {
        return None;
    }
    coalesce(&mut buckets);
    correct_precision_errors(&mut buckets, 1e-12);
    ensure_monotonic(&mut buckets);

    let n = buckets.len();
    if n < 2 {
        return None;
    }
    let observations = buckets[n - 1].1;
    if observations == 0.0 {
        return None;
    }
    let mut rank = q * observations;
    let b = go_sort_search(n - 1, |idx| buckets[idx].1 >= rank);
    let value = if b == n - 1 {
        buckets[n - 2].0
    } else if b == 0 && buckets[0].0 <= 0.0 {
        buckets[0].0
    } else {
        let bucket_end = buckets[b].0;
        let mut count = buckets[b].1;
        let mut bucket_start = 0.0;
        if b > 0 {
            bucket_start = buckets[b - 1].0;
            count -= buckets[b - 1].1;
            rank -= buckets[b - 1].1;
        }
        bucket_start + (bucket_end - bucket_start) * (rank / count)
    };
    (!value.is_nan()).then_some(value)
}

/// Sorts by upper bound with a total order: a NaN `le` sorts to an end, so
/// such a histogram has no `+Inf` bucket last and no quantile. `-0` sorts
/// just before `0`, and `coalesce` then merges them as Prometheus does.
fn sort_by_bound(buckets: &mut [(f64, f64)]) {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
}

/// Merges sorted buckets with equal bounds by summing their counts.
fn coalesce(buckets: &mut Vec<(f64, f64)>) {
    buckets.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 += next.1;
        }
        same
    });
}

/// Treats counts within a relative `tolerance` of the previous distinct count
/// as equal to it, so float noise from summing rates does not look like a
/// decrease (Prometheus' `correctPrecisionErrors`).
fn correct_precision_errors(buckets: &mut [(f64, f64)], tolerance: f64) {
    let Some(&(_, first)) = buckets.first() else {
        return;
    };
    let mut prev = first;
    for bucket in buckets.iter_mut().skip(1) {
        let current = bucket.1;
        let delta = (current - prev).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / current <= tolerance {
            bucket.1 = prev;
        } else {
            prev = current;
        }
    }
}

/// Raises every count to the running maximum, so cumulative counts never
/// decrease (Prometheus' `ensureMonotonic`).
fn ensure_monotonic(buckets: &mut [(f64, f64)]) {
    let Some(&(_, first)) = buckets.first() else {
        return;
    };
    let mut max = first;
    for bucket in buckets.iter_mut().skip(1) {
        match bucket.1.partial_cmp(&max) {
            Some(Ordering::Greater) => max = bucket.1,
            Some(Ordering::Less) => bucket.1 = max,
            // Equal, or NaN on either side: Go's switch takes neither branch.
            Some(Ordering::Equal) | None => {}
        }
    }
}

/// Go's `sort.Search`: the smallest index in `0..n` for which `pred` holds,
/// assuming it holds for a suffix. Implemented the same way so that NaN
/// counts land where they do in Prometheus.
fn go_sort_search(n: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if pred(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

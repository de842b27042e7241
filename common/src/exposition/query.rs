//! Counter and gauge reads over a scrape, and counter arithmetic across two.

use super::model::Exposition;
use super::selector::Selector;

/// Returns the sum of every series `selector` matches, or `None` if none does.
///
/// Counters from different series (e.g. one per status code) add up to the
/// total the agent turns into a rate with [`counter_delta`].
pub fn sum_counter(exposition: &Exposition<'_>, selector: &Selector) -> Option<f64> {
    sum_selected(exposition, selector)
}

/// Returns the value of the gauge `selector` matches: the value of the single
/// matching series, the sum if several match, `None` if none does.
///
/// Summing suits the gauges a health policy reads (in-flight requests, queue
/// depth across workers); select down to one series to read it alone.
pub fn gauge(exposition: &Exposition<'_>, selector: &Selector) -> Option<f64> {
    sum_selected(exposition, selector)
}

/// Returns how much a counter grew between two scrapes: `current - previous`,
/// or `current` when the counter went down (the target restarted and the
/// counter reset to zero in between), as PromQL's `increase` does.
pub fn counter_delta(current: f64, previous: f64) -> f64 {
    if current < previous {
        current
    } else {
        current - previous
    }
}

fn sum_selected(exposition: &Exposition<'_>, selector: &Selector) -> Option<f64> {
    exposition
        .select(selector)
        .map(|sample| sample.value)
        .reduce(|total, value| total + value)
}

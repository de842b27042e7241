//! Application health: scrape the app's Prometheus text endpoint and/or
//! probe its health URL, and hand per-interval counts to the sample loop.
//!
//! Main types: [`AppConfig`] (the checked `[app]` table, built from
//! [`config::RawApp`] in `config`), [`AppMonitor`] (owns the scraper and prober tasks) and
//! [`Accumulator`] (what the tasks add up between two samples). The scraper
//! lives in `scrape`, the prober in `probe`, the HTTP/1 client both share (http and
//! https) in `client`.
//!
//! Invariants:
//! - Counts, not rates: every figure is what happened since the previous
//!   [`AppMonitor::take`], so figures add up across hosts and rounds.
//! - A scrape or probe that fails is counted with its reason, never skipped.
//!   A failed scrape leaves the counter baseline at the last good scrape, so
//!   the next good one covers the whole gap.
//! - The scraper and prober run on their own intervals, independent of the
//!   sample interval; the [`Accumulator`] lock is never held across an await.
//! - What is sent always passes `AppHealth::validate` (errors <= requests,
//!   at most `MAX_BUCKETS` buckets, no NaN or infinite figure but a `+Inf`
//!   bucket bound), so one odd scrape cannot get a whole sample rejected by
//!   the coordinator, which would end the agent's stream. What had to be
//!   left out for that is counted and logged (`crate::figures`).
//!
//! URLs may be `https://`, verified against `app.ca` or the system roots.
//!
//! Deliberately NOT done here: client certificates, compression (no `Accept-Encoding` is sent), auth, OpenMetrics or protobuf
//! scrapes, and per-series counter deltas: matching series are summed first,
//! so a reset of one series among several that keep growing is undercounted
//! for one interval (a restart resets them all and is handled).

mod accumulator;
mod client;
pub(crate) mod config;
mod monitor;
mod probe;
mod scrape;

#[cfg(test)]
mod test_support;

pub(crate) use monitor::AppMonitor;
pub(crate) use probe::ProbeOutcome;
pub(crate) use scrape::ScrapeDelta;

/// Formats an error with its sources: `outer: inner: root cause`.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

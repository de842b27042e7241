//! Prometheus text exposition format (version 0.0.4): a parser for the body of
//! one scrape, and the arithmetic the agent does over two scrapes.
//!
//! Main pieces:
//! - [`parse`] turns a scrape body into an [`Exposition`]: [`MetricFamily`]s
//!   (HELP, TYPE and their [`Sample`]s) that borrow from the body, so a scrape
//!   costs one allocation per sample with labels and none per label unless a
//!   label value holds an escape sequence. The whole scrape is rejected on the
//!   first malformed line, because rates computed from a half-read scrape
//!   would be wrong; [`ParseError`] names the line and the reason.
//! - [`Selector`] / [`LabelMatcher`] pick series with PromQL's `=`, `!=`, `=~`
//!   and `!~`. The regex operators support a documented subset of RE2 (see
//!   [`LabelMatcher`]), implemented here without a regex crate.
//! - [`sum_counter`], [`gauge`], [`histogram`], [`counter_delta`],
//!   [`Histogram::delta`] and [`histogram_quantile`] compute what a health
//!   policy needs; `histogram_quantile` follows PromQL's classic-histogram
//!   semantics exactly, returning `None` where Prometheus returns NaN.
//!
//! This module deliberately does no IO (the agent fetches the body), keeps no
//! state between scrapes (the caller keeps the previous values), and does not
//! parse OpenMetrics, exemplars, native histograms or the protobuf format.

mod histogram;
mod model;
mod parse;
mod pattern;
mod query;
mod selector;

pub use histogram::{histogram, histogram_quantile, Histogram};
pub use model::{Exposition, Label, MetricFamily, MetricType, Sample};
pub use parse::{parse, parse_with_limits, Limits, ParseError, ParseErrorKind};
pub use pattern::PatternError;
pub use query::{counter_delta, gauge, sum_counter};
pub use selector::{LabelMatcher, MatchOp, Selector, SelectorError};

#[cfg(test)]
mod tests;

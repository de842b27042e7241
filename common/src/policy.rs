//! The policy engine: per-deployment rules, per-round cohort figures, the
//! verdict of one round, and the consecutive-failure state machine. Pure
//! code: no IO, no clocks (time comes in as arguments).
//!
//! Semantics (DESIGN.md, Policy): a limit is broken when the value is
//! strictly greater than it (strictly less, for `min`); one round gives one
//! verdict `pass`, `fail`, `inconclusive` or `error`; `fail` counts toward
//! rollback, `inconclusive` and `error` hold by default (they never count as
//! a pass), the first `pass` resets the count; hearing from no host at all is
//! the monitor being blind and never rolls back by itself.
//!
//! Files: `config` (rules as written and checked), `host_figure` (the host
//! metrics), `round` (what each host adds to a round), `cohort` (a cohort's
//! values), `rule` (judging one rule), `gate` (what overrules the rules),
//! `evaluate` (one round's verdict), `verdict` (its types), `state` (the
//! consecutive count) and `display` (how figures read).

mod cohort;
mod config;
mod display;
mod evaluate;
mod gate;
mod host_figure;
mod round;
mod rule;
mod state;
mod verdict;

pub use config::{
    HostPattern, Metric, MetricKind, Policy, RawPolicy, RawRule, Rule, VerdictAction, APP_METRICS,
    HOST_METRICS,
};
pub use display::format_value;
pub use evaluate::evaluate;
pub use round::{merge_buckets, quantile_ms, AppTotals, HostRound, RoundInput};
pub use state::{advance, Decision, JudgeState};
pub use verdict::{CohortFigures, Evaluation, RuleOutcome, Verdict};

#[cfg(test)]
mod tests;

//! End-to-end tests: real coordinator, agent, app and rollguardctl processes on loopback.

mod bad_input;
mod clock;
mod dashboard;
mod faults;
mod fleet;
mod host_figures;
mod journal;
mod limits;
mod metrics;
mod partition;
mod policy;
mod rollout;
mod tls;
mod traces;
mod tripwire;

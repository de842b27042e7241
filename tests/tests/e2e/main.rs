//! End-to-end tests: real coordinator, agent and rollguardctl processes on loopback.

mod bad_input;
mod fleet;

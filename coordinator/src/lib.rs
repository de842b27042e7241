//! rollguard-coordinator: fleet state, the embedded store, the agent link,
//! the policy loop and the control API; and the `rollguardctl` client (in
//! `ctl`).
//!
//! Wire types are converted at the service edge; fleet state, decisions and
//! the store work with domain types. The policy engine is pure code in
//! `rollguard_common::policy`; `judge` runs it, `decisions` acts on it.
#![forbid(unsafe_code)]

mod auth;
mod broadcast;
pub mod config;
mod counters;
pub mod ctl;
mod dashboard;
mod decisions;
mod error;
mod fleet;
mod judge;
mod listener;
mod metrics;
mod notify;
mod outbound;
mod review;
mod rollout;
mod server;
mod service;
mod store;

pub use error::{BoxError, Error, Result};
pub use server::{raise_nofile_limit, run, ReloadAuth, ADDR_FILE, HTTP_ADDR_FILE};

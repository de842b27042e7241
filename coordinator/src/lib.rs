//! rollguard-coordinator: fleet state, the embedded store, the agent link and
//! the control API; and the `rollguardctl` client (in `ctl`).
//!
//! Wire types are converted at the service edge; fleet state and the store
//! work with domain types. The policy engine (a later issue) is pure code in
//! `rollguard-common`.
#![forbid(unsafe_code)]

mod broadcast;
pub mod config;
pub mod ctl;
pub mod error;
pub mod fleet;
mod judge;
pub mod metrics;
mod notify;
mod server;
mod service;
pub mod store;

pub use error::{Error, Result};
pub use server::{raise_nofile_limit, run, ADDR_FILE, HTTP_ADDR_FILE};

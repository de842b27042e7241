//! rollguard-agent: collects host health, streams it to the coordinator, and
//! runs the named actions its own config defines.
//!
//! The coordinator only ever names an action; the command line comes from
//! this host's config. Each command id runs at most once, also across
//! restarts (see `journal`). With an `[app]` table it also scrapes and/or
//! probes the application (see `app`). This crate never depends on the
//! coordinator.
#![forbid(unsafe_code)]

pub mod action;
pub(crate) mod app;
pub(crate) mod collect;
pub mod config;
pub(crate) mod figures;
pub mod journal;
mod link;
#[cfg(test)]
mod tmpfs;
pub mod tripwire;
pub mod version;

pub use link::run;

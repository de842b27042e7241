//! rollguard's domain: identities, host samples, command states, config
//! loading and the pure logic over them (aggregation, later the policy).
//!
//! This crate deliberately has no tonic, no prost and no network IO: the wire
//! types live in `rollguard-proto`, which converts to and from these types.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod config;
pub mod exposition;
pub mod ids;
pub mod policy;
pub mod rollout;
pub mod sample;
pub mod time;

pub use ids::{Cohort, CommandId, CommandStatus, DeploymentName, HostId};
pub use sample::HostSample;

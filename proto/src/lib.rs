//! The rollguard.v1 wire contract: the code generated from `proto/` and every
//! conversion between wire (`pb`) and domain (`rollguard_common`) types.
//!
//! This is the only crate that builds or matches `pb` types; the agent and
//! coordinator convert at their gRPC edge and work with domain types inside.
//! It does not hold any service logic.
#![forbid(unsafe_code)]

pub mod compact;
mod convert;
mod error;
pub mod otel;
pub mod process;

pub use convert::{duration_from_pb, duration_to_pb, time_from_pb, time_to_pb};
pub use error::WireError;

/// The generated `rollguard.v1` messages, clients and servers.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    rust_2018_idioms
)]
pub mod v1 {
    tonic::include_proto!("rollguard.v1");
}

/// The encoded descriptor set of every rollguard.v1 file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rollguard_descriptor.bin"));

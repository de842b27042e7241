//! The rollguard.v1 wire contract: the code generated from `proto/` and the
//! conversions between wire (`pb`) and domain (`rollguard_common`) types.
//!
//! Other crates build `pb` messages too, but only at their gRPC edge: the
//! agent's link and the coordinator's services, agent streams and
//! rollguardctl put envelopes and requests together (with the conversions
//! here), and the end-to-end tests and loadgen speak the protocol directly.
//! Past the edge the agent and coordinator work with domain types only.
//! This crate holds no service logic.
#![forbid(unsafe_code)]

pub mod compact;
mod convert;
mod error;
pub mod https;
pub mod otel;
pub mod process;
pub mod tls;

pub use convert::{duration_from_pb, duration_to_pb, time_from_pb, time_to_pb};
pub use error::WireError;

#[cfg(test)]
mod rpc_tests {
    use super::Rpc;

    #[test]
    fn every_rpc_reads_back_from_its_path() {
        assert!(Rpc::ALL.len() >= 11);
        for rpc in Rpc::ALL {
            assert_eq!(Rpc::from_path(rpc.path()), Some(*rpc));
        }
        assert_eq!(Rpc::Connect.path(), "/rollguard.v1.AgentService/Connect");
        assert_eq!(Rpc::from_path("/rollguard.v1.ControlService/Nope"), None);
    }
}

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

include!(concat!(env!("OUT_DIR"), "/rpc.rs"));

/// The encoded descriptor set of every rollguard.v1 file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rollguard_descriptor.bin"));

//! Compiles the rollguard.v1 protos with protox (pure Rust, no system protoc)
//! and generates the tonic client and server code from the descriptor set.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/rollguard/v1/types.proto",
        "proto/rollguard/v1/agent_service.proto",
        "proto/rollguard/v1/control_service.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let fds = protox::compile(files, ["proto"])?;
    // The descriptor set is also served by gRPC server reflection.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("rollguard_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    // The rpc `AgentService.Connect` would clash with the transport helper
    // `AgentServiceClient::connect`, so clients are built from a `Channel` instead.
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}

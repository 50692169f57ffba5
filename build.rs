//! Compiles proto/ to Rust with protox (pure Rust, no system protoc) and writes the
//! descriptor set that gRPC reflection serves; the vendored OpenTelemetry protos
//! (proto/opentelemetry, for the OTLP trace export) are compiled to messages only.

use std::{env, fs, path::PathBuf};

use protox::prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = ["proto/switchyard/v1/gateway.proto"];
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("switchyard_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    let otlp = protox::compile(
        ["opentelemetry/proto/collector/trace/v1/trace_service.proto"],
        ["proto"],
    )?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(otlp)?;
    Ok(())
}

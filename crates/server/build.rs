//! Generates the etcd v3 message types, gRPC services and proto3-JSON (de)serializers from
//! `proto/etcd/*.proto`. protox parses the files in pure Rust: no system protoc is needed.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/etcd");
    for file in ["rpc.proto", "kv.proto", "auth.proto"] {
        println!("cargo:rerun-if-changed={}", proto_dir.join(file).display());
    }
    let fds = protox::compile(["rpc.proto"], [&proto_dir])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("etcd_descriptor.bin");
    std::fs::write(&descriptor_path, fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds.clone())?;

    let peer_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/stead");
    println!(
        "cargo:rerun-if-changed={}",
        peer_dir.join("peer.proto").display()
    );
    let peer = protox::compile(["peer.proto"], [&peer_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(peer)?;

    pbjson_build::Builder::new()
        .register_descriptors(&fds.encode_to_vec())?
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[".etcdserverpb", ".mvccpb", ".authpb"])?;
    Ok(())
}

//! Generates etcd's v3 API clients from `proto/third_party/etcd` with protox (no system
//! `protoc`). The `etcd-client` crate needs a system `protoc` to build, which Mimo does not
//! require anywhere.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: `env!` would bake in the path of the clone that compiled the script.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto/third_party");
    println!("cargo:rerun-if-changed=../../proto/third_party/etcd/api/etcdserverpb/rpc.proto");
    println!("cargo:rerun-if-changed=../../proto/third_party/etcd/api/mvccpb/kv.proto");
    let descriptor_set = protox::compile([root.join("etcd/api/etcdserverpb/rpc.proto")], [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptor_set)?;
    Ok(())
}

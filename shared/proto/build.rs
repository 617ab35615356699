//! Compiles `proto/mimo/v1/*.proto` with protox (no system `protoc`) and writes the
//! descriptor set next to the generated code, for server reflection and other tools.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: `env!` would bake in the path of whichever clone first compiled
    // this script, and cargo reuses the script for clones at other paths.
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<PathBuf> = ["common", "registry", "skill_host", "memory", "telemetry"]
        .iter()
        .map(|name| proto_root.join(format!("mimo/v1/{name}.proto")))
        .collect();
    // Relative to this package, so that clones of the workspace at other paths sharing one
    // target folder each watch their own files (an absolute path would keep watching the
    // clone that built last and miss changes in this one).
    for name in ["common", "registry", "skill_host", "memory", "telemetry"] {
        println!("cargo:rerun-if-changed=../../proto/mimo/v1/{name}.proto");
    }
    let descriptor_set = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("mimo_descriptor.bin"),
        descriptor_set.encode_to_vec(),
    )?;
    tonic_prost_build::configure().compile_fds(descriptor_set)?;
    Ok(())
}

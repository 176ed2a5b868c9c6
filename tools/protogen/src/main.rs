//! Regenerates `examples/proto/rampart.example.rs` from `examples/proto/demo.proto`.
//!
//! The generated code is committed so that building the examples needs no `protoc`; CI runs
//! this (with `protoc` installed) and fails if the committed file is stale:
//!
//! ```text
//! cargo run -p tower-rampart-protogen && git diff --exit-code examples/proto
//! ```

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let proto_dir = root.join("examples/proto");
    tonic_prost_build::configure()
        .out_dir(&proto_dir)
        .build_transport(false)
        .compile_protos(
            &[proto_dir.join("demo.proto")],
            std::slice::from_ref(&proto_dir),
        )?;
    println!("wrote {}", proto_dir.join("rampart.example.rs").display());
    Ok(())
}

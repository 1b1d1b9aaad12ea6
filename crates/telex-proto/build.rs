//! Compiles proto/telex/v1 with protox (pure Rust), so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary may be reused from a checkout at another path.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files: Vec<_> = ["admin", "client", "directory", "node", "rooms"]
        .iter()
        .map(|f| root.join(format!("telex/v1/{f}.proto")))
        .collect();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure().codec_path("crate::LeanCodec").compile_fds(fds)?;
    Ok(())
}

//! Regenerates the committed gRPC code and fails if it differs, so the `.proto` files
//! and `src/gen/` never drift. On a difference the fresh code is written in place:
//! review it, commit it, and run again.

use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "switchyard/v1/admin.proto",
    "switchyard/v1/snapshot.proto",
    "switchyard/v1/usage.proto",
];

#[test]
fn generated_code_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let includes = [root.join("proto")];
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join("proto").join(p)).collect();
    let fds = protox::compile(&files, &includes).expect("protos compile");

    let out = tempfile::tempdir().expect("temp dir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .build_transport(true)
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("code generation");

    let name = "switchyard.v1.rs";
    let fresh = std::fs::read_to_string(out.path().join(name)).expect("generated file");
    let committed_path = root.join("src/gen").join(name);
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if fresh != committed {
        std::fs::write(&committed_path, &fresh).expect("write generated code");
        panic!(
            "{} was out of date and has been regenerated; review and commit it",
            committed_path.display()
        );
    }
}

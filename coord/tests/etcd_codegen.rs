//! Regenerates the committed etcd client code and fails if it differs, so the
//! vendored `.proto` files (`proto/etcd/`) and `src/etcd/gen/` never drift. On a
//! difference the fresh code is written in place: review it, commit it, and run again.

use std::path::{Path, PathBuf};

const PROTOS: &[&str] = &[
    "etcd/api/etcdserverpb/rpc.proto",
    "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
];

/// The services Switchyard calls; etcd's others (cluster, maintenance, auth, lock)
/// get no client code.
const SERVICES: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Lease",
    "etcdserverpb.Watch",
    "v3electionpb.Election",
];

/// One file per protobuf package; `versionpb` only declares options and yields none.
const GENERATED: &[&str] = &[
    "authpb.rs",
    "etcdserverpb.rs",
    "mvccpb.rs",
    "v3electionpb.rs",
];

#[test]
fn generated_code_is_up_to_date() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let includes = [root.join("proto")];
    let files: Vec<PathBuf> = PROTOS.iter().map(|p| root.join("proto").join(p)).collect();
    let mut fds = protox::compile(&files, &includes).expect("protos compile");
    for file in &mut fds.file {
        let package = file.package().to_owned();
        file.service
            .retain(|s| SERVICES.contains(&format!("{package}.{}", s.name()).as_str()));
    }

    let out = tempfile::tempdir().expect("temp dir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .build_transport(false)
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("code generation");

    let mut produced: Vec<String> = std::fs::read_dir(out.path())
        .expect("read generated dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    produced.sort();
    assert_eq!(
        produced, GENERATED,
        "generated files changed: update GENERATED and src/etcd/mod.rs"
    );

    let mut stale = Vec::new();
    for name in GENERATED {
        let fresh = std::fs::read_to_string(out.path().join(name)).expect("generated file");
        let committed_path = root.join("src/etcd/gen").join(name);
        let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
        if fresh != committed {
            std::fs::write(&committed_path, &fresh).expect("write generated code");
            stale.push(committed_path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "out of date and regenerated; review and commit: {}",
        stale.join(", ")
    );
}

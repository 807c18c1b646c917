//! The training load of the data plane's profile-guided build (`scripts/build-pgo.sh`,
//! the image's build) runs against the real binaries, and every call in it gets the
//! status it expects: a route that stopped answering fails here, not in a release.

#![expect(
    clippy::unwrap_used,
    reason = "the helper of a test fails loudly on the first surprise"
)]

use std::process::{Command, Output};

fn training(args: &[&str]) -> Output {
    let bin_dir = switchyard_tests::procs::bin_dir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_switchyard-bench"))
        .args(args)
        .env("SWITCHYARD_BIN_DIR", &bin_dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn the_training_load_drives_every_route_as_expected() {
    let out = training(&["--training", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = [
        ("chat", 200),
        ("chat stream", 200),
        ("responses", 200),
        ("responses stream", 200),
        ("messages", 200),
        ("messages stream", 200),
        ("count tokens", 200),
        ("embeddings", 200),
        ("speech", 200),
        ("transcription", 200),
        ("models", 200),
        ("unknown key", 401),
        ("malformed body", 400),
    ];
    for (call, status) in expected {
        let row = format!("| {call} | {status} | {status} | ");
        assert!(
            stdout.lines().any(|l| l.starts_with(&row)),
            "no `{call}` call got {status}:\n{stdout}"
        );
    }
    // Only expected statuses: the header, then one row per call.
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("| ")).count(),
        1 + expected.len(),
        "{stdout}"
    );
}

#[test]
fn a_training_load_of_no_time_is_refused() {
    for bad in ["0", "-3", "soon"] {
        let out = training(&[&format!("--training={bad}")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--training"), "{bad}: {stderr}");
        assert!(out.stdout.is_empty(), "{bad}");
    }
}

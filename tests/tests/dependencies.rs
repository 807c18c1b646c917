//! The layering the architecture promises, read from cargo's own resolution: the core
//! does no IO, the data plane never touches a database or etcd, the collector never
//! touches Redis, and no library crate reaches a service crate it must not.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::collections::{BTreeSet, HashMap};
use std::process::Command;

use serde_json::Value;

/// Every package a workspace crate builds against (normal dependencies, transitively;
/// dev and build dependencies left out), by name.
fn closures() -> HashMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let name_of: HashMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let mut normal: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let deps = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| d["pkg"].as_str().unwrap())
            .collect();
        normal.insert(node["id"].as_str().unwrap(), deps);
    }
    let mut closures = HashMap::new();
    for member in meta["workspace_members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        let mut seen = BTreeSet::new();
        let mut todo = vec![member];
        while let Some(id) = todo.pop() {
            for &dep in normal.get(id).map(Vec::as_slice).unwrap_or_default() {
                if seen.insert(name_of[dep].to_owned()) {
                    todo.push(dep);
                }
            }
        }
        closures.insert(name_of[member].to_owned(), seen);
    }
    closures
}

#[test]
fn each_crate_stays_within_its_layer() {
    let closures = closures();
    let never: &[(&str, &[&str])] = &[
        (
            "switchyard-core",
            &[
                "tokio",
                "hyper",
                "axum",
                "tonic",
                "sqlx",
                "redis",
                "etcd-client",
                "reqwest",
                "rusqlite",
            ],
        ),
        ("switchyard-wire", &["sqlx", "redis"]),
        (
            "switchyard-data-plane",
            &["sqlx", "rusqlite", "etcd-client"],
        ),
        ("switchyard-usage-collector", &["redis"]),
        ("switchyard-control-plane", &["redis"]),
        // The command line speaks only the REST API.
        (
            "switchyard-cli",
            &[
                "switchyard-control-plane",
                "switchyard-data-plane",
                "switchyard-usage-collector",
                "sqlx",
                "redis",
            ],
        ),
        (
            "switchyard-runtime",
            &[
                "switchyard-control-plane",
                "switchyard-data-plane",
                "switchyard-usage-collector",
                "sqlx",
                "redis",
            ],
        ),
    ];
    let mut broken = Vec::new();
    for (krate, forbidden) in never {
        let deps = closures
            .get(*krate)
            .unwrap_or_else(|| panic!("{krate} is not a workspace member"));
        for f in *forbidden {
            if deps.contains(*f) {
                broken.push(format!("{krate} depends on {f}"));
            }
        }
    }
    // The three services meet only through the contracts, never as libraries of
    // one another (the embedded binary, the tests and the benchmark may use them all).
    let services = [
        "switchyard-control-plane",
        "switchyard-data-plane",
        "switchyard-usage-collector",
    ];
    for a in services {
        for b in services {
            if a != b && closures[a].contains(b) {
                broken.push(format!("{a} depends on {b}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken: {broken:#?}");
}

//! The core's modules form no circle: read from the `crate::` and `super::` paths of
//! each module's code (its tests left out) and from parents to the children they
//! declare, no module reaches itself again. A circle
//! would tie every module on it together, so none could be read or moved alone.

#![expect(
    clippy::unwrap_used,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every module under `src/` by path (`snapshot::data`), with its code up to its tests.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let name = match (prefix, stem.as_str()) {
                ("", _) => stem.clone(),
                (_, "mod") => prefix.to_owned(),
                _ => format!("{prefix}::{stem}"),
            };
            if path.is_dir() {
                walk(&path, &name, out);
            } else if name != "lib" && !name.ends_with("tests") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                out.insert(name, code.to_owned());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut out,
    );
    out
}

/// The modules module `name` depends on: those its `code` names, and its own children
/// (a parent declares and re-exports them).
fn uses(name: &str, code: &str, known: &BTreeSet<&str>) -> BTreeSet<String> {
    let parent = name.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out: BTreeSet<String> = known
        .iter()
        .filter(|m| m.rsplit_once("::").is_some_and(|(p, _)| p == name))
        .map(|m| (*m).to_owned())
        .collect();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (marker, base) in [("crate::", ""), ("super::", parent)] {
            for (at, _) in line.match_indices(marker) {
                let tail = &line[at + marker.len()..];
                let path: Vec<&str> = tail
                    .split("::")
                    .map(|s| {
                        s.split(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                            .next()
                    })
                    .map(Option::unwrap_or_default)
                    .take_while(|s| !s.is_empty())
                    .collect();
                // The longest prefix of the path that is a module.
                let found = (1..=path.len()).rev().find_map(|n| {
                    let joined = path[..n].join("::");
                    let full = if base.is_empty() {
                        joined
                    } else {
                        format!("{base}::{joined}")
                    };
                    known.contains(full.as_str()).then_some(full)
                });
                out.extend(found);
            }
        }
    }
    out.remove(name);
    out
}

/// A circle in `graph`, as the modules on it, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|start| visit(start, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_core_has_no_module_circle() {
    let modules = modules();
    let known: BTreeSet<&str> = modules.keys().map(String::as_str).collect();
    assert!(known.contains("snapshot::compiled") && known.contains("types"));
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|(name, code)| (name.clone(), uses(name, code, &known)))
        .collect();
    // The reading sees the edges it must: otherwise an empty graph would pass.
    assert!(graph["snapshot::compiled"].contains("route"));
    assert!(graph["route"].contains("snapshot::data"));
    assert!(graph["types"].is_empty(), "{:?}", graph["types"]);
    assert_eq!(circle(&graph), None);
}

#[test]
fn a_circle_is_found() {
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["c".to_owned()])),
        ("c".to_owned(), BTreeSet::from(["a".to_owned()])),
        ("d".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        circle(&graph),
        Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
    );
}

//! The tree as code, end to end (harness: `switchyard_tests::cli`): a file applied,
//! exported, applied to a fresh deployment and exported again to the same file; diff
//! says what apply then does; applying twice changes nothing; narrowing goes children
//! first; a file that breaks a bound or is malformed changes nothing and names the
//! line and column; prune deletes; every key apply held is revoked; no secret leaks;
//! and the same against a deployment of separate processes on Postgres.

use serde_json::Value;
use switchyard_tests::cli::{Out, PROVIDER_SECRET, SECOND_SECRET, Site};

const TREE: &str = "\
main: acme
rules:
  level_mapper:
    demo-*: 0
    big-*: 1
  switch_over:
    '1': 0
provider_keys:
  - provider: openai
    base_url: http://127.0.0.1:9/v1
    models: [demo-*]
    level: 0
    secret_from: {env: FIRST_SECRET}
  - provider: openai
    base_url: http://127.0.0.1:9/v1
    models: [big-*]
    level: 1
    weight: 3
    secret_from: {file: second.txt}
accounts:
  - name: team
    policy:
      models: [demo-*, big-*]
      rpm: 100
    billing:
      multiplier_ppm: 1250000
    credit_nanos: 20000000000
    accounts:
      - name: dev
        policy:
          models: [demo-*]
          rpm: 50
        credit_nanos: 5000000000
      - name: ops
        status: disabled
  - name: sales
    policy:
      client_cidrs: [10.0.0.0/8]
";

/// Lines a diff or apply printed, without its closing count.
fn changes(out: &Out) -> Vec<String> {
    let lines: Vec<String> = out.stdout.lines().map(str::to_owned).collect();
    lines[..lines.len().saturating_sub(1)].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_as_code_round_trips() {
    let first = Site::start();
    first.main_account("acme");
    let tree = first.home.path().join("tree.yaml");
    std::fs::write(&tree, TREE).unwrap();
    std::fs::write(first.home.path().join("second.txt"), SECOND_SECRET).unwrap();
    let tree_arg = tree.to_str().unwrap();
    let env = [("FIRST_SECRET", PROVIDER_SECRET)];

    // Diff says what apply then does, line for line.
    let diff = first.run_with(&["diff", "-f", tree_arg], "", &env).ok();
    let planned = changes(&diff);
    assert!(planned.len() >= 10, "{}", diff.stdout);
    let apply = first.run_with(&["apply", "-f", tree_arg], "", &env).ok();
    assert_eq!(changes(&apply), planned);
    // Parents before children on the way up.
    let pos = |needle: &str| {
        planned
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in {planned:?}"))
    };
    assert!(pos("+ account team ") < pos("+ account team/dev"));
    assert!(pos("+ provider key") < pos("~ rules"));
    // Twice changes nothing.
    assert_eq!(
        first
            .run_with(&["apply", "-f", tree_arg], "", &env)
            .ok()
            .stdout,
        "No changes.\n"
    );
    assert_eq!(
        first
            .run_with(&["diff", "-f", tree_arg], "", &env)
            .ok()
            .stdout,
        "No changes.\n"
    );

    // Export: stable, and applying it changes nothing.
    let exported = first.run(&["export"]).ok().stdout;
    assert_eq!(first.run(&["export"]).ok().stdout, exported);
    assert!(
        exported.contains("secret_from:") && exported.contains("hint:"),
        "{exported}"
    );
    let export_file = first.home.path().join("exported.yaml");
    std::fs::write(&export_file, &exported).unwrap();
    let export_arg = export_file.to_str().unwrap();
    assert_eq!(
        first.run(&["diff", "-f", export_arg]).ok().stdout,
        "No changes.\n"
    );
    let json = first.run(&["export", "-o", "json"]).ok().json();
    assert_eq!(json["accounts"][0]["name"], "sales");

    // A fresh deployment: the exported file applied makes the same tree.
    let second = Site::start();
    second.main_account("acme");
    let secrets = [
        ("SWITCHYARD_PROVIDER_SECRET_1", PROVIDER_SECRET),
        ("SWITCHYARD_PROVIDER_SECRET_2", SECOND_SECRET),
    ];
    let diff = second
        .run_with(&["diff", "-f", export_arg], "", &secrets)
        .ok();
    let seq_before = second
        .run(&["audit", "-o", "json", "--limit", "1"])
        .ok()
        .json()[0]["seq"]
        .as_i64()
        .unwrap();
    let apply = second
        .run_with(&["apply", "-f", export_arg], "", &secrets)
        .ok();
    assert_eq!(changes(&apply), changes(&diff));
    // Every key apply held to act for an account (a creation's first key, or one
    // issued for the purpose) was revoked before it ended.
    let audit = second
        .run(&["audit", "-o", "json", "--limit", "1000"])
        .ok()
        .json();
    let during: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["seq"].as_i64().unwrap() > seq_before)
        .collect();
    let count = |action: &str| during.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("account.create"), 4, "{during:?}");
    assert_eq!(
        count("issued_key.revoke"),
        count("account.create") + count("issued_key.create"),
        "{during:#?}"
    );
    assert_eq!(second.run(&["export"]).ok().stdout, exported);
    assert_eq!(
        second
            .run_with(&["apply", "-f", export_arg], "", &secrets)
            .ok()
            .stdout,
        "No changes.\n"
    );

    // Narrowing: children before parents.
    let narrowed = exported
        .replace("rpm: 100", "rpm: 40")
        .replace("rpm: 50", "rpm: 20");
    std::fs::write(&export_file, &narrowed).unwrap();
    let lines = changes(&second.run(&["apply", "-f", export_arg]).ok());
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("team/dev") && lines[1].contains("account team:"),
        "{lines:?}"
    );

    // A bound violated: nothing changes, every problem named with its place.
    let wider = narrowed
        .replace("rpm: 20", "rpm: 500")
        .replace("- 10.0.0.0/8", "- 10.0.0.0/8\n      rpm: 0");
    std::fs::write(&export_file, &wider).unwrap();
    let out = second.run(&["apply", "-f", export_arg]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let line_of = |needle: &str| {
        wider
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} in\n{wider}"))
            + 1
    };
    assert!(
        out.stderr
            .contains(&format!("exported.yaml:{}:", line_of("rpm: 500"))),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("500 exceeds the parent's 40"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("exported.yaml:{}:", line_of("rpm: 0"))),
        "{}",
        out.stderr
    );
    std::fs::write(&export_file, &narrowed).unwrap();
    assert_eq!(
        second.run(&["diff", "-f", export_arg]).ok().stdout,
        "No changes.\n",
        "nothing changed"
    );

    // A malformed file: where it breaks, nothing changed.
    std::fs::write(
        &export_file,
        "main: acme\naccounts:\n  - name: team\n    credit_nanos: lots\n",
    )
    .unwrap();
    let out = second.run(&["apply", "-f", export_arg]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("exported.yaml:4:19:"), "{}", out.stderr);

    // Prune: what the file no longer names goes, children first.
    let (sales, team) = (
        narrowed.find("  - name: sales\n").unwrap(),
        narrowed.find("  - name: team\n").unwrap(),
    );
    assert!(sales < team, "{narrowed}");
    let pruned = format!("{}{}", &narrowed[..sales], &narrowed[team..]);
    assert_ne!(pruned, narrowed, "{narrowed}");
    std::fs::write(&export_file, &pruned).unwrap();
    assert_eq!(
        second.run(&["apply", "-f", export_arg]).ok().stdout,
        "No changes.\n",
        "no prune, no delete"
    );
    let lines = changes(&second.run(&["apply", "-f", export_arg, "--prune"]).ok());
    assert_eq!(lines, ["- account sales"]);
    assert!(!second.run(&["export"]).ok().stdout.contains("sales"));

    // No secret in any file written, nor in either server's log.
    for site in [&first, &second] {
        assert!(
            !site.proc().log().contains(PROVIDER_SECRET)
                && !site.proc().log().contains(SECOND_SECRET)
        );
    }
    assert!(!exported.contains(PROVIDER_SECRET) && !exported.contains(SECOND_SECRET));
    // The first deployment's tree: team, team/dev, team/ops and sales.
    let accounts = first.run(&["accounts", "tree", "-o", "json"]).ok().json();
    assert_eq!(accounts.as_array().unwrap().len(), 4, "{accounts}");
}

/// The same command line against a deployment of separate processes on Postgres.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_against_a_deployed_system() {
    let sys = switchyard_tests::system::start_system(1 << 20).await;
    let site = Site::at(&sys.control.url("http"), &sys.root);
    site.main_account("acme");
    let status = site.run(&["status", "-o", "json"]).ok().json();
    assert!(
        !status["data_planes"].as_array().unwrap().is_empty(),
        "{status}"
    );
    let tree = site.home.path().join("tree.yaml");
    std::fs::write(
        &tree,
        "main: acme\naccounts:\n  - name: team\n    policy: {rpm: 100}\n    credit_nanos: 1000000000\n    accounts:\n      - name: dev\n        policy: {rpm: 10}\n",
    )
    .unwrap();
    let tree_arg = tree.to_str().unwrap();
    let applied = changes(&site.run(&["apply", "-f", tree_arg]).ok());
    assert_eq!(
        applied,
        [
            "+ account team policy {\"rpm\":100}",
            "~ credit team: $0.00 -> $1.00",
            "+ account team/dev policy {\"rpm\":10}",
        ]
    );
    assert_eq!(
        site.run(&["diff", "-f", tree_arg]).ok().stdout,
        "No changes.\n"
    );
    let exported = site.run(&["export"]).ok().stdout;
    assert!(
        exported.contains("  - name: team\n") && exported.contains("      - name: dev\n"),
        "{exported}"
    );
}

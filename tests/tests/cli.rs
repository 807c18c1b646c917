//! The admin command line's command groups as an operator runs them (harness:
//! `switchyard_tests::cli`): login and profiles, accounts, keys, provider keys,
//! rules, credit, bill, logs, audit, completions and help, with table and JSON output
//! and exit codes 0/1/2/3; secrets in no output, no file the command line writes, no
//! log.

use std::io::BufRead as _;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::cli::{PROVIDER_SECRET, SECOND_SECRET, Site, walk};
use switchyard_tests::wait;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_every_command_group() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let site = Site::start();
    let url = site.url();

    // Exit codes before anything: not logged in is a usage error, an unknown
    // subcommand too; a server that does not answer is 3; a wrong key is refused.
    assert_eq!(site.run(&["status"]).code, 2);
    assert_eq!(site.run(&["accounts", "frobnicate"]).code, 2);
    let out = site.run_with(
        &["login", "--url", "http://127.0.0.1:1", "--key-stdin"],
        "sy-nothing",
        &[],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let out = site.run_with(
        &["login", "--url", &url, "--key-stdin"],
        "sy-not-a-key",
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        !site.config_path().exists(),
        "a refused login keeps nothing"
    );

    // The operator logs in; the config file holds the key, for its owner only.
    let root = site.data_file("root-key");
    let out = site
        .run_with(&["login", "--url", &url, "--key-stdin"], &root, &[])
        .ok();
    assert!(out.stdout.contains("the operator"), "{}", out.stdout);
    assert!(
        !out.stdout.contains(&root) && !out.stderr.contains(&root),
        "the key is never printed"
    );
    let meta = std::fs::metadata(site.config_path()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(
        std::fs::read_to_string(site.config_path())
            .unwrap()
            .contains(&root)
    );
    let status = site.run(&["status", "-o", "json"]).ok().json();
    assert_eq!(status["url"], url.as_str());
    assert!(status["config_revision"].as_u64().is_some(), "{status}");
    assert!(
        site.run(&["status"])
            .ok()
            .stdout
            .contains("config revision")
    );

    // Environment variables override the profile: a wrong key there is refused.
    let out = site.run_with(&["status"], "", &[("SWITCHYARD_API_KEY", "sy-wrong")]);
    assert_eq!(out.code, 1);
    let out = site.run_with(&["status"], "", &[("SWITCHYARD_URL", "http://127.0.0.1:1")]);
    assert_eq!(out.code, 3);

    // A main account, then its profile.
    site.main_account("acme");
    let me = site.run(&["accounts", "show", "-o", "json"]).ok().json();
    assert_eq!(me["account"]["name"], "acme");

    // Accounts.
    let team = site
        .run(&[
            "accounts",
            "create",
            "team",
            "--policy",
            "{models: [demo-*], rpm: 100}",
            "-o",
            "json",
        ])
        .ok()
        .json();
    let team_id = team["account"]["id"].as_str().unwrap().to_owned();
    assert!(team["api_key"].as_str().is_some());
    let table = site.run(&["accounts", "list"]).ok().stdout;
    assert!(table.starts_with("ID"), "{table}");
    assert!(
        table.contains("team") && table.contains(&team_id),
        "{table}"
    );
    let list = site.run(&["accounts", "list", "-o", "json"]).ok().json();
    assert_eq!(list[0]["name"], "team");
    let yaml = site.run(&["accounts", "list", "-o", "yaml"]).ok().stdout;
    assert!(yaml.contains("name: team"), "{yaml}");
    site.run(&[
        "accounts",
        "update",
        &team_id,
        "--policy",
        "{models: [demo-*], rpm: 50}",
    ])
    .ok();
    let shown = site
        .run(&["accounts", "show", &team_id, "-o", "json"])
        .ok()
        .json();
    assert_eq!(shown["policy"]["rpm"], 50);
    assert!(
        site.run(&["accounts", "show", &team_id])
            .ok()
            .stdout
            .contains("effective_policy")
    );
    site.run(&["accounts", "disable", &team_id]).ok();
    assert_eq!(
        site.run(&["accounts", "show", &team_id, "-o", "json"])
            .ok()
            .json()["account"]["status"],
        "disabled"
    );
    site.run(&["accounts", "enable", &team_id]).ok();
    let dev = site
        .run(&["accounts", "create", "dev", "-o", "json"])
        .ok()
        .json();
    let dev_id = dev["account"]["id"].as_str().unwrap().to_owned();
    let tree = site.run(&["accounts", "tree"]).ok().stdout;
    assert!(tree.contains("team") && tree.contains("dev"), "{tree}");
    assert_eq!(
        site.run(&["accounts", "tree", "-o", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Refused: the API's reason printed, exit 1.
    let out = site.run(&["accounts", "show", "00000000-0000-7000-8000-000000000000"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("refused (404"), "{}", out.stderr);
    let out = site.run(&["accounts", "update", &team_id]);
    assert_eq!(out.code, 2, "nothing to change is a usage error");
    site.run(&["accounts", "delete", &dev_id]).ok();

    // Credit.
    let credit = site
        .run(&[
            "credit", "top-up", &team_id, "12.50", "--note", "start", "-o", "json",
        ])
        .ok()
        .json();
    assert_eq!(credit["allocated_nanos"], 12_500_000_000_i64);
    site.run(&["credit", "withdraw", &team_id, "2.5"]).ok();
    let table = site.run(&["credit", "show", &team_id]).ok().stdout;
    assert!(table.contains("$10.00"), "{table}");
    let out = site.run(&["credit", "withdraw", &team_id, "1000"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(site.run(&["credit", "top-up", &team_id, "lots"]).code, 2);

    // Provider keys: the secret goes in on stdin and never comes out.
    let base = "http://127.0.0.1:9/v1";
    let added = site
        .run_with(
            &[
                "provider-keys",
                "add",
                "--provider",
                "openai",
                "--base-url",
                base,
                "--models",
                "demo-*,other",
                "--level",
                "0",
                "--secret-stdin",
                "-o",
                "json",
            ],
            PROVIDER_SECRET,
            &[],
        )
        .ok()
        .json();
    let pk = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["secret_hint"], "****7788");
    let table = site.run(&["provider-keys", "list"]).ok().stdout;
    assert!(table.contains(&pk) && table.contains("****7788"), "{table}");
    assert_eq!(
        site.run(&["provider-keys", "list", "-o", "json"])
            .ok()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(
        site.run(&["provider-keys", "show", &pk])
            .ok()
            .stdout
            .contains("secret_hint")
    );
    site.run(&["provider-keys", "update", &pk, "--weight", "5"])
        .ok();
    let secret_file = site.home.path().join("second");
    std::fs::write(&secret_file, SECOND_SECRET).unwrap();
    let updated = site
        .run(&[
            "provider-keys",
            "update",
            &pk,
            "--new-secret",
            "--secret-file",
            secret_file.to_str().unwrap(),
            "-o",
            "json",
        ])
        .ok()
        .json();
    assert_eq!(updated["weight"], 5);
    assert_eq!(updated["secret_hint"], "****9911");
    site.run(&["provider-keys", "disable", &pk]).ok();
    site.run(&["provider-keys", "enable", &pk]).ok();
    let discovered = site
        .run(&["provider-keys", "discover", &pk, "-o", "json"])
        .ok()
        .json();
    assert!(discovered["discovery_error"].is_string(), "{discovered}");
    let out = site.run(&[
        "provider-keys",
        "add",
        "--provider",
        "openai",
        "--base-url",
        base,
        "--models",
        "x",
    ]);
    assert_eq!(out.code, 2, "no terminal to prompt on: {}", out.stderr);

    // Rules: set from a file, edit through $EDITOR, show.
    let rules_file = site.home.path().join("rules.yaml");
    std::fs::write(&rules_file, "level_mapper:\n  demo-*: 0\n").unwrap();
    site.run(&["rules", "set", "-f", rules_file.to_str().unwrap()])
        .ok();
    let editor = site.home.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nprintf 'level_mapper:\\n  demo-*: 0\\nmodel_mapper:\\n  alias: demo-echo\\n' > \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    site.run_with(
        &["rules", "edit"],
        "",
        &[("EDITOR", editor.to_str().unwrap())],
    )
    .ok();
    let rules = site.run(&["rules", "show", "-o", "json"]).ok().json();
    assert_eq!(rules["model_mapper"]["alias"], "demo-echo");
    assert_eq!(rules["level_mapper"]["demo-*"], 0);
    assert!(
        site.run(&["rules", "show"])
            .ok()
            .stdout
            .contains("alias: demo-echo")
    );
    assert_eq!(
        site.run(&["rules", "show", "--section", "model_mapper", "-o", "json"])
            .ok()
            .json()["alias"],
        "demo-echo"
    );
    // Rules the server refuses (a level without a key): exit 1, the reason printed.
    std::fs::write(&rules_file, "level_mapper:\n  demo-*: 7\n").unwrap();
    let out = site.run(&["rules", "set", "-f", rules_file.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("refused"), "{}", out.stderr);
    // A file that is not YAML: where it breaks.
    std::fs::write(&rules_file, "level_mapper: [oops\n").unwrap();
    let out = site.run(&["rules", "set", "-f", rules_file.to_str().unwrap()]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("rules.yaml:"), "{}", out.stderr);

    // Keys: create, list, revoke, rotate (the profile keeps the new key).
    let created = site
        .run(&["keys", "create", "--expires-in-days", "7", "-o", "json"])
        .ok()
        .json();
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();
    let table = site.run(&["keys", "list"]).ok().stdout;
    assert!(table.contains(&key_id) && table.contains("yes"), "{table}");
    site.run(&["keys", "revoke", &key_id]).ok();
    let keys = site.run(&["keys", "list", "-o", "json"]).ok().json();
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key_id.as_str() && k["status"] == "revoked"),
        "{keys}"
    );
    site.run(&["keys", "create", "--account", &team_id]).ok();
    let before = std::fs::read_to_string(site.config_path()).unwrap();
    site.run(&["keys", "rotate"]).ok();
    let after = std::fs::read_to_string(site.config_path()).unwrap();
    assert_ne!(before, after, "the rotated key is saved");
    site.run(&["status"]).ok();

    // Usage: a call through the proxy as the demo account, then its bill and logs.
    let demo = site.data_file("demo-key");
    let http = reqwest::Client::new();
    let chat = format!("{}/v1/chat/completions", site.proc().url("proxy"));
    wait::until_ok(
        Duration::from_secs(20),
        "a call through the proxy",
        async || {
            let r = http
                .post(&chat)
                .bearer_auth(&demo)
                .json(
                    &json!({"model": "demo-echo", "messages": [{"role": "user", "content": "hi"}]}),
                )
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                Ok(())
            } else {
                Err(r.status())
            }
        },
    )
    .await;
    let demo_env = [
        ("SWITCHYARD_URL", url.as_str()),
        ("SWITCHYARD_API_KEY", demo.as_str()),
    ];
    let logs = wait::until_ok(
        Duration::from_secs(20),
        "the call in the logs",
        async || {
            let out = site.run_with(&["logs", "-o", "json"], "", &demo_env).ok();
            let logs = out.json();
            if logs.as_array().is_some_and(|a| !a.is_empty()) {
                Ok(logs)
            } else {
                Err(out.stdout)
            }
        },
    )
    .await;
    assert_eq!(logs[0]["model_served"], "demo-echo");
    assert!(
        site.run_with(&["logs"], "", &demo_env)
            .ok()
            .stdout
            .contains("demo-echo")
    );
    let bill = wait::until_ok(
        Duration::from_secs(20),
        "the call in the bill",
        async || {
            let bill = site
                .run_with(&["bill", "-o", "json"], "", &demo_env)
                .ok()
                .json();
            if bill["rows"][0]["requests"] == 1 {
                Ok(bill)
            } else {
                Err(bill)
            }
        },
    )
    .await;
    assert_eq!(bill["rows"][0]["model"], "demo-echo");
    assert!(
        site.run_with(&["bill"], "", &demo_env)
            .ok()
            .stdout
            .contains("demo-echo")
    );
    let out = site.run_with(&["bill", "--from", "2026-13-45"], "", &demo_env);
    assert_eq!(out.code, 1, "{}", out.stderr);

    // logs --follow prints a call made after it started.
    let mut follow = site
        .command(
            &[
                "logs",
                "--follow",
                "--interval",
                "1",
                "-o",
                "json",
                "--limit",
                "1",
            ],
            &demo_env,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(20)).unwrap();
    assert!(first.contains("demo-echo"), "{first}");
    let r = http
        .post(&chat)
        .bearer_auth(&demo)
        .json(&json!({"model": "demo-echo", "messages": [{"role": "user", "content": "followed"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let next: Value =
        serde_json::from_str(&rx.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(next["model_served"], "demo-echo");
    assert_ne!(
        next["id"].to_string(),
        serde_json::from_str::<Value>(&first).unwrap()["id"].to_string()
    );
    let _ = follow.kill();
    let _ = follow.wait();

    // Audit: the operator's and the owner's view.
    let audit = site
        .run(&["audit", "-o", "json", "--limit", "5"])
        .ok()
        .json();
    assert_eq!(audit.as_array().unwrap().len(), 5);
    assert!(site.run(&["audit"]).ok().stdout.starts_with("SEQ"));
    let out = site.run_with(&["audit"], "", &demo_env);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Delete the provider key; completions; every command's help has an example.
    site.run(&["provider-keys", "delete", &pk]).ok();
    assert!(
        site.run(&["completions", "bash"])
            .ok()
            .stdout
            .contains("switchyard")
    );
    for args in [
        vec!["login"],
        vec!["status"],
        vec!["accounts", "list"],
        vec!["accounts", "tree"],
        vec!["accounts", "show"],
        vec!["accounts", "create"],
        vec!["accounts", "update"],
        vec!["accounts", "disable"],
        vec!["accounts", "enable"],
        vec!["accounts", "delete"],
        vec!["keys", "list"],
        vec!["keys", "create"],
        vec!["keys", "revoke"],
        vec!["keys", "rotate"],
        vec!["provider-keys", "list"],
        vec!["provider-keys", "show"],
        vec!["provider-keys", "add"],
        vec!["provider-keys", "update"],
        vec!["provider-keys", "disable"],
        vec!["provider-keys", "delete"],
        vec!["provider-keys", "discover"],
        vec!["rules", "show"],
        vec!["rules", "set"],
        vec!["rules", "edit"],
        vec!["credit", "show"],
        vec!["credit", "top-up"],
        vec!["credit", "withdraw"],
        vec!["bill"],
        vec!["logs"],
        vec!["audit"],
        vec!["export"],
        vec!["diff"],
        vec!["apply"],
        vec!["completions"],
        vec!["up"],
    ] {
        let mut with_help = args.clone();
        with_help.push("--help");
        let out = site.run(&with_help).ok();
        assert!(
            out.stdout.contains("Example"),
            "{args:?} --help has no example:\n{}",
            out.stdout
        );
    }

    // Secrets: in no file the command line wrote but the config (which holds the
    // issued key) and in no log.
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    let log = site.proc().log();
    for secret in [PROVIDER_SECRET, SECOND_SECRET] {
        assert!(!config.contains(secret));
        assert!(
            !log.contains(secret),
            "a provider secret in the server's log"
        );
    }
    for entry in walk(site.home.path()) {
        if entry != secret_file && entry != site.config_path() {
            let text = std::fs::read_to_string(&entry).unwrap_or_default();
            assert!(
                !text.contains(PROVIDER_SECRET) && !text.contains(SECOND_SECRET),
                "{}",
                entry.display()
            );
        }
    }
}

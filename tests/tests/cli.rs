//! The admin command line as an operator runs it: the built `switchyard` binary as a
//! process, its config in a throwaway home, against `switchyard up` (the real
//! services, in one process on SQLite). Every command group with table and JSON
//! output and its exit codes; the tree exported, applied to a fresh deployment and
//! exported again; secrets in no output, no file the command line writes, no log.
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard_tests::procs::{Proc, bin_dir};
use switchyard_tests::wait;

const PROVIDER_SECRET: &str = "sk-cli-provider-secret-never-shown-7788";
const SECOND_SECRET: &str = "sk-cli-second-secret-never-shown-9911";

/// `switchyard up --demo-upstream` on free ports.
fn up(dir: &Path) -> Proc {
    let data = dir.join("data").display().to_string();
    Proc::spawn(
        "switchyard",
        &[
            "up",
            "--demo-upstream",
            "--data-dir",
            &data,
            "--proxy-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--demo-upstream-listen",
            "127.0.0.1:0",
        ],
        &[],
        dir,
    )
    .unwrap()
}

/// One deployment and one person's home directory.
struct Site {
    up: Proc,
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
    fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Site {
    fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let up = up(dir.path());
        Site {
            up,
            dir,
            home: tempfile::tempdir().unwrap(),
        }
    }

    fn url(&self) -> String {
        self.up.url("admin")
    }

    fn data_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("data").join(name))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn config_path(&self) -> PathBuf {
        self.home
            .path()
            .join("xdg")
            .join("switchyard")
            .join("config.yaml")
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(bin_dir().unwrap().join("switchyard"));
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("xdg"))
            .env_remove("SWITCHYARD_URL")
            .env_remove("SWITCHYARD_API_KEY")
            .current_dir(self.home.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run the command line with `stdin` as its input.
    fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Out {
        let mut child = self
            .command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let out = Out {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        for secret in [PROVIDER_SECRET, SECOND_SECRET] {
            assert!(
                !out.stdout.contains(secret) && !out.stderr.contains(secret),
                "a provider secret in the output of {args:?}"
            );
        }
        out
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, "", &[])
    }

    /// Log in as the operator, create main account `name` and log in as it (the
    /// current profile afterwards): its id.
    fn main_account(&self, name: &str) -> String {
        let root = self.data_file("root-key");
        self.run_with(
            &[
                "login",
                "--url",
                &self.url(),
                "--profile",
                "root",
                "--key-stdin",
            ],
            &root,
            &[],
        )
        .ok();
        let created = self
            .run(&[
                "--profile",
                "root",
                "accounts",
                "create",
                name,
                "-o",
                "json",
            ])
            .ok()
            .json();
        let key_file = self.home.path().join(format!("{name}.key"));
        std::fs::write(&key_file, created["api_key"].as_str().unwrap()).unwrap();
        self.run(&[
            "login",
            "--url",
            &self.url(),
            "--profile",
            name,
            "--key-file",
            key_file.to_str().unwrap(),
        ])
        .ok();
        std::fs::remove_file(&key_file).unwrap();
        created["account"]["id"].as_str().unwrap().to_owned()
    }
}

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
    let chat = format!("{}/v1/chat/completions", site.up.url("proxy"));
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
    let log = site.up.log();
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

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

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
        assert!(!site.up.log().contains(PROVIDER_SECRET) && !site.up.log().contains(SECOND_SECRET));
    }
    assert!(!exported.contains(PROVIDER_SECRET) && !exported.contains(SECOND_SECRET));
    // The first deployment's tree: team, team/dev, team/ops and sales.
    let accounts = first.run(&["accounts", "tree", "-o", "json"]).ok().json();
    assert_eq!(accounts.as_array().unwrap().len(), 4, "{accounts}");
}

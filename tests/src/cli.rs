//! The admin command line run as an operator runs it: the built `switchyard` binary
//! as a process, its config in a throwaway home, against `switchyard up` (the real
//! services in one process on SQLite). Every run checks that no provider secret the
//! suites use appears in what it printed.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "helpers of a test fail loudly on the first surprise"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::procs::{Proc, bin_dir};

pub const PROVIDER_SECRET: &str = "sk-cli-provider-secret-never-shown-7788";
pub const SECOND_SECRET: &str = "sk-cli-second-secret-never-shown-9911";

/// `switchyard up --demo-upstream` on free ports, with `extra` flags; its data
/// directory is `dir/data`.
pub fn up(dir: &Path, extra: &[&str]) -> Proc {
    let data_dir_arg = dir.join("data").display().to_string();
    let mut args = vec![
        "up",
        "--demo-upstream",
        "--data-dir",
        &data_dir_arg,
        "--proxy-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--demo-upstream-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Proc::spawn("switchyard", &args, &[], dir).unwrap()
}

/// One deployment and one person's home directory.
pub struct Site {
    /// `switchyard up`, or none for a deployment started apart.
    pub up: Option<Proc>,
    pub dir: tempfile::TempDir,
    pub home: tempfile::TempDir,
    url: String,
    root: String,
}

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
    pub fn ok(self) -> Out {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Site {
    /// `switchyard up` of its own.
    pub fn start() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let up = up(dir.path(), &[]);
        let url = up.url("admin");
        let mut site = Site {
            up: Some(up),
            dir,
            home: tempfile::tempdir().unwrap(),
            url,
            root: String::new(),
        };
        site.root = site.data_file("root-key");
        site
    }

    /// A deployment started apart: its REST API and the operator's key.
    pub fn at(url: &str, root: &str) -> Site {
        Site {
            up: None,
            dir: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            url: url.to_owned(),
            root: root.to_owned(),
        }
    }

    /// The `switchyard up` process.
    pub fn proc(&self) -> &Proc {
        self.up.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn data_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("data").join(name))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub fn config_path(&self) -> PathBuf {
        self.home
            .path()
            .join("xdg")
            .join("switchyard")
            .join("config.yaml")
    }

    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
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
    pub fn run_with(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Out {
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

    pub fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, "", &[])
    }

    /// Log in as the operator, create main account `name` and log in as it (the
    /// current profile afterwards): its id.
    pub fn main_account(&self, name: &str) -> String {
        let root = self.root.clone();
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

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
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

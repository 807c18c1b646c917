//! Starts Switchyard's binaries as separate processes, the way a supervisor or
//! Kubernetes does, and stops them on drop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{HarnessError, wait};

/// The directory of the workspace's built binaries (`target/debug` for tests).
pub fn bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os("SWITCHYARD_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    // target/debug/deps/<test> → target/debug
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| HarnessError::Missing("cannot locate the target directory".into()))
}

pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    addrs: BTreeMap<String, SocketAddr>,
}

impl Proc {
    /// Start `bin` with `args` (plus `--addr-file`) and wait for its address file.
    pub fn spawn(
        bin: &str,
        args: &[&str],
        env: &[(&str, &str)],
        dir: &Path,
    ) -> Result<Self, HarnessError> {
        let path = bin_dir()?.join(bin);
        if !path.exists() {
            return Err(HarnessError::Missing(format!(
                "{} is not built: run `cargo build --workspace --bins` first (scripts/test.sh does)",
                path.display()
            )));
        }
        let unique = format!(
            "{bin}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let addr_file = dir.join(format!("{unique}.addr.json"));
        let log = dir.join(format!("{unique}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(&path);
        cmd.args(args)
            .arg("--addr-file")
            .arg(&addr_file)
            .env_remove("SWITCHYARD_ROOT_KEY")
            .env_remove("SWITCHYARD_KEK")
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn()?;
        let mut proc = Self {
            name: bin.to_owned(),
            child,
            log,
            addrs: BTreeMap::new(),
        };
        // The address file, or what says there will be none (an early exit).
        let outcome = wait::blocking_until(Duration::from_secs(60), || {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                return Some(Ok(text));
            }
            match proc.child.try_wait() {
                Ok(None) => None,
                Ok(Some(status)) => Some(Err(HarnessError::NotReady(
                    bin.into(),
                    format!("exited with {status}; log:\n{}", proc.log_tail()),
                ))),
                Err(e) => Some(Err(e.into())),
            }
        });
        let Some(text) = outcome else {
            return Err(HarnessError::NotReady(
                bin.into(),
                format!("no address file after 60 s; log:\n{}", proc.log_tail()),
            ));
        };
        let parsed: BTreeMap<String, String> = serde_json::from_str(&text?)
            .map_err(|e| HarnessError::NotReady(bin.into(), format!("bad address file: {e}")))?;
        for (k, v) in parsed {
            let addr = v
                .parse()
                .map_err(|_| HarnessError::NotReady(bin.into(), format!("bad address {v}")))?;
            proc.addrs.insert(k, addr);
        }
        Ok(proc)
    }

    /// Where the listener called `name` is bound (`http`, `grpc`).
    /// The operating system's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self, name: &str) -> SocketAddr {
        match self.addrs.get(name) {
            Some(a) => *a,
            None => SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://{}", self.addr(name))
    }

    /// The last lines of the process's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: a crash, as far as anyone else can tell.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait (up to `grace`) for a clean exit; SIGKILL after that.
    pub fn terminate(&mut self, grace: Duration) -> Result<ExitStatus, HarnessError> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        match wait::blocking_until(grace, || self.child.try_wait().transpose()) {
            Some(exited) => Ok(exited?),
            None => {
                let _ = self.child.kill();
                Err(HarnessError::NotReady(
                    self.name.clone(),
                    "did not stop after SIGTERM".into(),
                ))
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

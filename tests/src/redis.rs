//! A throwaway Redis server: no persistence, a temp dir, a free loopback port;
//! killed on drop. Tests share nothing else: each names its own key namespace.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{HarnessError, free_port, wait_for_port};

pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn binary() -> Result<PathBuf, HarnessError> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            HarnessError::Missing(
                "redis-server not found: install Debian's `redis-server` package \
                 (scripts/test.sh does this when run as root)"
                    .into(),
            )
        })
}

impl RedisServer {
    pub fn start() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-redis-")
            .tempdir()?;
        let port = free_port()?;
        let child = spawn(port, dir.path())?;
        Ok(Self {
            child,
            port,
            _dir: dir,
        })
    }

    /// Kill it and start an empty one on the same port: a restart that lost every key.
    pub fn restart_empty(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.child = spawn(self.port, self._dir.path())?;
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Stop it at once (a crash, as far as its clients can tell).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start redis-server on `port` and wait until it accepts connections.
fn spawn(port: u16, dir: &std::path::Path) -> Result<Child, HarnessError> {
    let mut child = Command::new(binary()?)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for_port(&mut child, port, "redis-server", Duration::from_secs(10))?;
    Ok(child)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

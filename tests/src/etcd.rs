//! A throwaway single-member etcd: a temp data dir, free loopback ports; killed on
//! drop. A restart keeps its data, as a real etcd restart does.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{HarnessError, free_port, wait_for_port};

pub struct EtcdServer {
    child: Child,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

fn binary() -> Result<PathBuf, HarnessError> {
    ["/usr/bin/etcd", "/usr/local/bin/etcd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| {
            HarnessError::Missing(
                "etcd not found: install Debian's `etcd-server` package \
                 (scripts/test.sh does this when run as root)"
                    .into(),
            )
        })
}

impl EtcdServer {
    pub fn start() -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-etcd-")
            .tempdir()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let child = spawn(client_port, peer_port, dir.path())?;
        Ok(Self {
            child,
            client_port,
            peer_port,
            dir,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Stop it at once and start it again on the same ports and data.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        self.kill();
        self.child = spawn(self.client_port, self.peer_port, self.dir.path())?;
        Ok(())
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(client: u16, peer: u16, dir: &std::path::Path) -> Result<Child, HarnessError> {
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut child = Command::new(binary()?)
        .args(["--name", "t", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("t={peer_url}")])
        .args(["--initial-cluster-state", "new"])
        .args(["--logger", "zap", "--log-outputs"])
        .arg(dir.join("etcd.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for_port(&mut child, client, "etcd", Duration::from_secs(15))?;
    Ok(child)
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

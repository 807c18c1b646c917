//! Process plumbing every Switchyard service shares: structured logs, listeners bound
//! with `TCP_NODELAY`, an address file for supervisors and tests, and a shutdown
//! signal. Nothing here knows about accounts, keys or usage.
//!
//! Layout:
//! - [`telemetry`]: logs (pretty or JSON, redacted), OTLP traces, the metrics recorder.
//! - here: listeners, address files, shutdown, settings from a value or a file, the
//!   key-encryption-key flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

mod telemetry;

pub use telemetry::{LogArgs, LogFormat, Telemetry, init_telemetry, metrics_handle, tracing_on};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("key-encryption keys are required: set SWITCHYARD_KEK or SWITCHYARD_KEK_FILE")]
    MissingKeyring,
    #[error("invalid key-encryption keys: {0}")]
    Keyring(#[source] switchyard_core::crypto::CryptoError),
    #[error("{setting}: give a value or a file, not both")]
    ValueAndFile { setting: &'static str },
    #[error("{setting}: cannot read {path}: {source}")]
    SettingFile {
        setting: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write address file {path}: {source}")]
    AddrFile {
        path: String,
        source: std::io::Error,
    },
}

/// Bind a TCP listener. Port 0 picks a free port; read it back with `local_addr`.
pub async fn bind(addr: &str) -> Result<TcpListener, RuntimeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RuntimeError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Write `{"name": "ip:port", ...}` atomically, so a supervisor or test that started
/// the process with port 0 learns where it listens once every listener is bound.
pub fn write_addr_file(
    path: &Path,
    addrs: &BTreeMap<&str, SocketAddr>,
) -> Result<(), RuntimeError> {
    let err = |source| RuntimeError::AddrFile {
        path: path.display().to_string(),
        source,
    };
    let text: BTreeMap<&str, String> = addrs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    let body = serde_json::to_vec(&text).map_err(|e| err(std::io::Error::other(e)))?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// A shutdown signal that many tasks can wait on.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending half: trigger once, every [`Shutdown`] wakes.
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl Shutdown {
    /// Resolves once shutdown is triggered (or the trigger is gone).
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|down| *down).await;
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}

/// Resolves on SIGINT or SIGTERM (what Kubernetes sends before killing a pod).
pub async fn termination_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// A setting given inline or as a file (a mounted Kubernetes Secret, say). The file's
/// content is trimmed of surrounding whitespace.
pub fn value_or_file(
    setting: &'static str,
    value: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, RuntimeError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(RuntimeError::ValueAndFile { setting }),
        (Some(v), None) => Ok(Some(v.trim().to_owned())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Some(text.trim().to_owned()))
            .map_err(|source| RuntimeError::SettingFile {
                setting,
                path: path.display().to_string(),
                source,
            }),
        (None, None) => Ok(None),
    }
}

/// A shutdown that triggers on SIGINT or SIGTERM. Must be called inside a runtime.
pub fn shutdown_on_signal() -> Shutdown {
    let (trigger, shutdown) = shutdown_pair();
    tokio::spawn(async move {
        termination_signal().await;
        tracing::info!("shutting down");
        trigger.trigger();
    });
    shutdown
}

/// The key-encryption keys, as every service that seals or opens provider secrets
/// takes them: inline (`SWITCHYARD_KEK`) or from a file (`SWITCHYARD_KEK_FILE`).
#[derive(Debug, clap::Args)]
pub struct KeyringArgs {
    /// Key-encryption keys, `id:base64key[,id:base64key...]`; the first seals.
    #[arg(long, env = "SWITCHYARD_KEK", hide_env_values = true)]
    pub kek: Option<String>,
    /// A file holding the key-encryption keys.
    #[arg(long, env = "SWITCHYARD_KEK_FILE")]
    pub kek_file: Option<std::path::PathBuf>,
}

impl KeyringArgs {
    pub fn load(self) -> Result<switchyard_core::crypto::Keyring, RuntimeError> {
        let spec = value_or_file("key-encryption key", self.kek, self.kek_file.as_deref())?
            .ok_or(RuntimeError::MissingKeyring)?;
        switchyard_core::crypto::Keyring::parse(&spec).map_err(RuntimeError::Keyring)
    }
}

/// Where upstream connections may go, as the control plane (checking base URLs) and
/// the data plane (checking each address it connects to) both take it.
#[derive(Clone, Debug, clap::Args)]
pub struct UpstreamNetworkArgs {
    /// Let upstreams be on loopback, private and other special-purpose addresses
    /// (local models, tests); refused otherwise.
    #[arg(long, env = "SWITCHYARD_ALLOW_PRIVATE_UPSTREAMS")]
    pub allow_private_upstreams: bool,
    /// Special-purpose networks upstreams may be on all the same (comma-separated
    /// CIDRs, such as an in-cluster router's).
    #[arg(
        long,
        env = "SWITCHYARD_ALLOWED_UPSTREAM_NETWORKS",
        value_delimiter = ','
    )]
    pub allowed_upstream_networks: Vec<ipnet::IpNet>,
}

impl UpstreamNetworkArgs {
    /// The rule these flags give; `allow_all` also lifts the refusal (the embedded
    /// demo upstream is on loopback).
    pub fn networks(self, allow_all: bool) -> switchyard_core::netguard::UpstreamNetworks {
        switchyard_core::netguard::UpstreamNetworks::new(
            self.allow_private_upstreams || allow_all,
            self.allowed_upstream_networks,
        )
    }
}

/// Milliseconds since the unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn addr_file_round_trip() {
        let dir = std::env::temp_dir().join(format!("sy-rt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("addrs.json");
        let l = bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        write_addr_file(&path, &BTreeMap::from([("http", addr)])).unwrap();
        let v: BTreeMap<String, String> =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["http"], addr.to_string());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn shutdown_wakes_waiters() {
        let (trigger, shutdown) = shutdown_pair();
        let waiter = tokio::spawn(shutdown.clone().wait());
        assert!(!shutdown.is_triggered());
        trigger.trigger();
        waiter.await.unwrap();
        assert!(shutdown.is_triggered());
    }
}

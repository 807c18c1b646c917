//! Test support shared by every suite that needs real components:
//! - [`pg`]: a throwaway PostgreSQL server in a temp dir on a free loopback port.
//! - [`procs`]: starts Switchyard's real binaries as separate processes and learns
//!   where they listen from their address files.
//! - [`system`]: the whole system started as processes, and helpers to call it.
//! - [`redis`]: a throwaway Redis; [`link`]: a TCP link a test can cut.
//! - [`otlp`]: an OTLP trace receiver standing in for an OpenTelemetry collector.
//! - [`etcd`]: a throwaway etcd; [`backends`]: `every_backend!`, a scenario on SQLite
//!   and on Postgres.
//! - [`browser`]: a headless Chromium through WebDriver, for the console's tests.
//! - [`cli`]: the `switchyard` command line run as a process against `switchyard up`.
//! - [`events`]: usage events as store and API tests write them.
//! - [`webhook`]: a webhook receiver on loopback that records what it got.
//! - [`wait`]: waiting on a condition with a deadline, never a fixed pause.

pub mod backends;
pub mod browser;
pub mod cli;
pub mod clients;
pub mod etcd;
pub mod events;
pub mod link;
pub mod otlp;
pub mod pg;
pub mod procs;
pub mod redis;
pub mod system;
pub mod wait;
pub mod webhook;

/// Wait until something accepts connections on loopback `port`; kill `child` and
/// fail, naming `what`, if nothing does within `patience`.
pub fn wait_for_port(
    child: &mut std::process::Child,
    port: u16,
    what: &str,
    patience: std::time::Duration,
) -> Result<(), HarnessError> {
    let listens = wait::blocking_until(patience, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    if listens.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HarnessError::NotReady(
            what.into(),
            format!("nothing listens on port {port}"),
        ));
    }
    Ok(())
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> Result<u16, HarnessError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{0}")]
    Missing(String),
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0} did not become ready: {1}")]
    NotReady(String, String),
}

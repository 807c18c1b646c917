//! Coordination through etcd.
//!
//! One lease per process, kept alive by a session task: registry entries and
//! election candidacies are bound to it, so a process that dies (or loses etcd for
//! longer than the lease) gives up its leaderships and disappears from the registry
//! by itself. When the lease is lost the session grants a new one and publishes
//! again what this process had registered. Keys live under the configured prefix:
//! `config-revision`, `members/<group>/<id>` and `elections/<name>`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_runtime::Shutdown;
use tokio::sync::watch;

use crate::{CoordError, next_backoff, raise};

mod client;

pub use client::EtcdError;
use client::{ConnectSettings, EtcdClient};

/// etcd's gRPC API, generated from `coord/proto/etcd/` by `tests/etcd_codegen.rs`
/// (client stubs of the KV, Lease, Watch and Election services only).
mod proto {
    #![allow(
        dead_code,
        clippy::all,
        reason = "generated: wider than the calls made, and shaped by the .proto files"
    )]

    pub mod authpb {
        include!("gen/authpb.rs");
    }
    pub mod etcdserverpb {
        include!("gen/etcdserverpb.rs");
    }
    pub mod mvccpb {
        include!("gen/mvccpb.rs");
    }
    pub mod v3electionpb {
        include!("gen/v3electionpb.rs");
    }
}

/// Longest wait for one unary etcd call.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Debug)]
pub struct EtcdSettings {
    /// `http://host:port` of one or more etcd members.
    pub endpoints: Vec<String>,
    /// Prefix of every key, so several installations can share one etcd.
    pub prefix: String,
    /// This process's name in elections and in the registry.
    pub member: String,
    /// How long a process that stopped answering keeps its leaderships and entries.
    pub lease_ttl: Duration,
}

pub(crate) struct Etcd {
    shared: Arc<Shared>,
}

struct Shared {
    settings: EtcdSettings,
    /// Connects lazily and reconnects by itself; calls fail while etcd is away.
    client: EtcdClient,
    /// The live lease, if any.
    lease: watch::Sender<Option<i64>>,
    revisions: watch::Sender<u64>,
    /// The newest revision this process wants announced; the announcer puts it in
    /// etcd as soon as etcd takes it, so an announcement made while etcd is away is
    /// late, not lost.
    to_announce: watch::Sender<u64>,
    /// What this process registered (full key → value), to publish again under a
    /// new lease.
    registered: Mutex<BTreeMap<String, String>>,
    shutdown: Shutdown,
}

async fn timed<T>(call: impl Future<Output = Result<T, EtcdError>>) -> Result<T, CoordError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(CoordError::Settings("etcd did not answer in time".into())),
    }
}

impl Etcd {
    pub(crate) fn start(settings: EtcdSettings, shutdown: Shutdown) -> Result<Self, CoordError> {
        if settings.endpoints.is_empty() {
            return Err(CoordError::Settings("no etcd endpoints".into()));
        }
        if settings.lease_ttl < Duration::from_secs(2) {
            return Err(CoordError::Settings(
                "the lease must live at least 2 seconds".into(),
            ));
        }
        let client = EtcdClient::new(
            &settings.endpoints,
            &ConnectSettings {
                connect_timeout: Duration::from_secs(2),
                keep_alive_interval: Duration::from_secs(5),
                keep_alive_timeout: Duration::from_secs(3),
            },
        )?;
        tracing::info!(endpoints = ?settings.endpoints, member = %settings.member, "coordinating through etcd");
        let shared = Arc::new(Shared {
            settings,
            client,
            lease: watch::channel(None).0,
            revisions: watch::channel(0).0,
            to_announce: watch::channel(0).0,
            registered: Mutex::default(),
            shutdown,
        });
        tokio::spawn(session(shared.clone()));
        tokio::spawn(watch_revision(shared.clone()));
        tokio::spawn(announcer(shared.clone()));
        Ok(Self { shared })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.shared.settings.prefix)
    }

    pub(crate) fn announce(&self, revision: u64) {
        raise(&self.shared.to_announce, revision);
    }

    pub(crate) fn revisions(&self) -> watch::Receiver<u64> {
        self.shared.revisions.subscribe()
    }

    pub(crate) fn leadership(&self, election: &str) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        tokio::spawn(campaign(
            self.shared.clone(),
            self.key(&format!("elections/{election}")),
            election.to_owned(),
            tx,
        ));
        rx
    }

    pub(crate) async fn register(&self, group: &str, id: &str, value: String) {
        let key = self.key(&format!("members/{group}/{id}"));
        if let Ok(mut r) = self.shared.registered.lock() {
            r.insert(key.clone(), value.clone());
        }
        let lease = *self.shared.lease.borrow();
        if let Some(lease) = lease {
            let put = self.shared.client.put(&key, &value, Some(lease));
            if let Err(e) = timed(put).await {
                tracing::warn!(group, id, error = %e, "cannot register in etcd; will retry with the next lease");
            }
        }
    }

    pub(crate) async fn unregister(&self, group: &str, id: &str) {
        let key = self.key(&format!("members/{group}/{id}"));
        if let Ok(mut r) = self.shared.registered.lock() {
            r.remove(&key);
        }
        if let Err(e) = timed(self.shared.client.delete(&key)).await {
            tracing::warn!(group, id, error = %e, "cannot unregister in etcd; the lease will");
        }
    }

    pub(crate) async fn members(&self, group: &str) -> Result<Vec<(String, String)>, CoordError> {
        let prefix = self.key(&format!("members/{group}/"));
        let found = timed(self.shared.client.get_prefix(&prefix)).await?;
        let mut out: Vec<(String, String)> = found
            .entries
            .iter()
            .filter_map(|entry| {
                let key = std::str::from_utf8(&entry.key).ok()?;
                let id = key.strip_prefix(&prefix)?;
                Some((
                    id.to_owned(),
                    std::str::from_utf8(&entry.value).ok()?.to_owned(),
                ))
            })
            .collect();
        out.sort();
        Ok(out)
    }
}

/// Hold a lease for as long as the process lives, renewing it (and what hangs on
/// it) whenever it is lost. Revokes it at shutdown, so leaderships move at once
/// instead of after the lease's time-to-live.
async fn session(shared: Arc<Shared>) {
    let stop = shared.shutdown.clone().wait();
    tokio::pin!(stop);
    let ttl = i64::try_from(shared.settings.lease_ttl.as_secs()).unwrap_or(10);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let held = tokio::select! {
            () = &mut stop => break,
            held = hold_lease(&shared, ttl) => held,
        };
        shared.lease.send_replace(None);
        if let Err(e) = held {
            tracing::warn!(error = %e, "etcd lease lost; asking for a new one");
        }
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = next_backoff(backoff);
    }
    let lease = shared.lease.send_replace(None);
    if let Some(lease) = lease
        && let Err(e) = timed(shared.client.lease_revoke(lease)).await
    {
        tracing::warn!(error = %e, "cannot revoke the etcd lease; it will expire");
    }
}

/// Grant a lease, publish what is registered under it, and keep it alive until it
/// cannot be; returns why.
async fn hold_lease(shared: &Shared, ttl: i64) -> Result<(), CoordError> {
    let client = &shared.client;
    let lease = timed(client.lease_grant(ttl)).await?;
    // Published before the entries are read: an entry registered meanwhile is then
    // put by `register` itself, instead of falling between the two.
    shared.lease.send_replace(Some(lease));
    let entries: Vec<(String, String)> = shared
        .registered
        .lock()
        .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for (key, value) in entries {
        timed(client.put(&key, &value, Some(lease))).await?;
    }
    let mut keeper = timed(client.lease_keep_alive(lease)).await?;
    let every = Duration::from_millis(u64::try_from(ttl).unwrap_or(10) * 1000 / 3);
    loop {
        tokio::time::sleep(every).await;
        match tokio::time::timeout(CALL_TIMEOUT, keeper.keep_alive()).await {
            Ok(Ok(ttl)) if ttl > 0 => {}
            Ok(Ok(_)) => {
                return Err(CoordError::Settings("the lease expired".into()));
            }
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(CoordError::Settings(
                    "etcd did not renew the lease in time".into(),
                ));
            }
        }
    }
}

/// Follow the announced revision: read it, then watch it; again after any break.
async fn watch_revision(shared: Arc<Shared>) {
    let client = &shared.client;
    let stop = shared.shutdown.clone().wait();
    tokio::pin!(stop);
    let key = format!("{}config-revision", shared.settings.prefix);
    let mut backoff = FIRST_BACKOFF;
    loop {
        let followed = async {
            let current = timed(client.get(&key)).await?;
            for entry in &current.entries {
                note(&shared, &entry.value);
            }
            // Watch from just after what was read, so a put between the read and
            // the watch is not missed (from now if etcd gave no revision).
            let after = if current.revision > 0 {
                current.revision + 1
            } else {
                0
            };
            let mut watch = timed(client.watch(&key, after)).await?;
            while let Some(values) = watch.next().await? {
                for value in &values {
                    note(&shared, value);
                }
            }
            Ok::<(), CoordError>(())
        };
        tokio::select! {
            () = &mut stop => return,
            result = followed => match result {
                Ok(()) => tracing::warn!("etcd watch ended; watching again"),
                Err(e) => tracing::warn!(error = %e, "etcd watch failed; watching again"),
            },
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = next_backoff(backoff);
    }
}

/// Put the newest revision to announce into etcd, retrying until etcd takes it (or
/// a newer one replaces it).
async fn announcer(shared: Arc<Shared>) {
    let mut wanted = shared.to_announce.subscribe();
    let stop = shared.shutdown.clone().wait();
    tokio::pin!(stop);
    let key = format!("{}config-revision", shared.settings.prefix);
    let mut announced = 0u64;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let target = *wanted.borrow_and_update();
        if target > announced {
            match timed(shared.client.put(&key, &target.to_string(), None)).await {
                Ok(_) => {
                    announced = target;
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    tracing::warn!(revision = target, error = %e, "cannot announce a change in etcd yet; retrying");
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = next_backoff(backoff);
                    continue;
                }
            }
        }
        tokio::select! {
            () = &mut stop => return,
            changed = wanted.changed() => if changed.is_err() { return },
        }
    }
}

fn note(shared: &Shared, value: &[u8]) {
    let revision = std::str::from_utf8(value)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(revision) = revision {
        raise(&shared.revisions, revision);
    }
}

/// Stand for `election` under each lease this process holds; `leader` says whether
/// it won. Losing the lease ends the leadership at once, here, before etcd lets
/// another replica take over.
async fn campaign(shared: Arc<Shared>, key: String, election: String, leader: watch::Sender<bool>) {
    let mut leases = shared.lease.subscribe();
    let stop = shared.shutdown.clone().wait();
    tokio::pin!(stop);
    let member = shared.settings.member.clone();
    loop {
        let Some(lease) = *leases.borrow_and_update() else {
            tokio::select! {
                () = &mut stop => return,
                changed = leases.changed() => if changed.is_err() { return },
            }
            continue;
        };
        // Campaigning waits until elected; a new lease (or none) ends the attempt.
        let won = tokio::select! {
            () = &mut stop => return,
            _ = leases.changed() => continue,
            won = shared.client.campaign(&key, &member, lease) => won,
        };
        if let Err(e) = won {
            tracing::warn!(election, error = %e, "campaign failed; standing again");
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        }
        leader.send_replace(true);
        tracing::info!(election, member, "leading");
        loop {
            tokio::select! {
                () = &mut stop => {
                    leader.send_replace(false);
                    return;
                }
                changed = leases.changed() => if changed.is_err() { return },
            }
            if *leases.borrow() != Some(lease) {
                break;
            }
        }
        leader.send_replace(false);
        tracing::warn!(election, member, "leadership lost with the lease");
    }
}

//! Compiles the stored state into snapshots and hands the newest to every connected
//! data plane.
//!
//! Writers call [`Publisher::changed`] with the revision they committed. One task
//! rebuilds outside any request: on a change signal, and on a timer too, so a missed
//! signal (or a write by another process) is caught by the next tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_proto::v1 as pb;
use switchyard_runtime::Shutdown;
use switchyard_wire::snapshot::encode;
use tokio::sync::watch;

use crate::store::Store;

/// What a connected data plane last reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState {
    pub applied_version: u64,
    pub last_rejection: Option<String>,
}

#[derive(Clone)]
pub struct Publisher {
    revision: Arc<watch::Sender<u64>>,
    snapshot: Arc<watch::Sender<Option<Arc<pb::Snapshot>>>>,
    replicas: Arc<Mutex<HashMap<String, ReplicaState>>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    pub fn new() -> Self {
        Self {
            revision: Arc::new(watch::channel(0).0),
            snapshot: Arc::new(watch::channel(None).0),
            replicas: Arc::default(),
        }
    }

    /// A write committed `revision`; rebuild soon.
    pub fn changed(&self, revision: u64) {
        self.revision.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
    }

    /// The newest snapshot and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<pb::Snapshot>>> {
        self.snapshot.subscribe()
    }

    /// The newest revision a write on this replica committed (a snapshot of it may
    /// still be building).
    pub fn committed_revision(&self) -> u64 {
        *self.revision.borrow()
    }

    pub fn current_version(&self) -> u64 {
        self.snapshot.borrow().as_ref().map_or(0, |s| s.version)
    }

    pub fn record_replica(&self, replica: &str, update: impl FnOnce(&mut ReplicaState)) {
        if let Ok(mut replicas) = self.replicas.lock() {
            let state = replicas.entry(replica.to_owned()).or_insert(ReplicaState {
                applied_version: 0,
                last_rejection: None,
            });
            update(state);
        }
    }

    pub fn forget_replica(&self, replica: &str) {
        if let Ok(mut replicas) = self.replicas.lock() {
            replicas.remove(replica);
        }
    }

    pub fn replicas(&self) -> HashMap<String, ReplicaState> {
        self.replicas.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Build once now, then keep rebuilding on changes and every `resync`.
    pub async fn run(self, store: Store, resync: Duration, shutdown: Shutdown) {
        let mut changes = self.revision.subscribe();
        let mut tick = tokio::time::interval(resync);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            // Rebuild outside the select so a shutdown never cancels it half-way.
            self.rebuild(&store).await;
            tokio::select! {
                () = &mut stop => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
        }
    }

    async fn rebuild(&self, store: &Store) {
        // A one-row read decides; the whole state is read only when it changed.
        match store.revision().await {
            Ok(revision) if revision <= self.current_version() => return,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot read the config revision; serving the previous snapshot");
                return;
            }
        }
        let snapshot = match store.load_snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot load state for a snapshot; serving the previous one");
                return;
            }
        };
        let version = snapshot.version;
        if version <= self.current_version() {
            return;
        }
        let encoded = Arc::new(encode(&snapshot));
        self.snapshot.send_replace(Some(encoded));
        tracing::info!(
            version,
            accounts = snapshot.accounts.len(),
            keys = snapshot.issued_keys.len(),
            provider_keys = snapshot.provider_keys.len(),
            "snapshot published"
        );
    }
}

//! Compiles the stored state into snapshots and hands the newest to every connected
//! data plane.
//!
//! Writers call [`Publisher::changed`] with the revision they committed; the
//! coordinator announces it to every replica (in etcd when deployed). One task
//! rebuilds outside any request: on a local signal, on an announcement from any
//! replica, and on a timer too, so a missed signal is caught by the next tick.
//!
//! Which data plane applied which version is kept where every replica can read it:
//! in the coordinator's registry, bound to the lease of the replica that serves
//! the data plane's stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_coord::Coordinator;
use switchyard_proto::v1 as pb;
use switchyard_runtime::Shutdown;
use switchyard_wire::snapshot::encode;
use tokio::sync::watch;

use crate::store::Store;

/// The registry group of connected data planes.
const DATA_PLANES: &str = "data-planes";

/// How often the data planes in the registry are counted again.
const COUNT_EVERY: Duration = Duration::from_secs(2);

/// What a connected data plane last reported, and which control plane serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub applied_version: u64,
    pub last_rejection: Option<String>,
    #[serde(default)]
    pub control_plane: String,
    /// The key-encryption key ids the data plane can open secrets with.
    #[serde(default)]
    pub key_ids: Vec<String>,
}

/// A snapshot as published: whole, and as the changes from the one before it.
pub struct Published {
    pub full: pb::Snapshot,
    /// From the previously published version (none for the first).
    pub delta: Option<pb::SnapshotDelta>,
}

#[derive(Clone)]
pub struct Publisher {
    revision: Arc<watch::Sender<u64>>,
    snapshot: Arc<watch::Sender<Option<Arc<Published>>>>,
    replicas: Arc<Mutex<HashMap<String, ReplicaState>>>,
    /// How many data planes follow any replica, as the registry last said (0: not
    /// read yet).
    data_planes: Arc<watch::Sender<u32>>,
    coordinator: Coordinator,
    /// This control plane's name among its replicas.
    member: Arc<str>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// A publisher coordinating with nobody else (one replica).
    pub fn new() -> Self {
        Self::with_coordinator(Coordinator::local(), "control-plane")
    }

    pub fn with_coordinator(coordinator: Coordinator, member: &str) -> Self {
        Self {
            revision: Arc::new(watch::channel(0).0),
            snapshot: Arc::new(watch::channel(None).0),
            replicas: Arc::default(),
            data_planes: Arc::new(watch::channel(0).0),
            coordinator,
            member: member.into(),
        }
    }

    /// A write committed `revision`: rebuild soon, and tell the other replicas.
    pub fn changed(&self, revision: u64) {
        let newer = self.revision.send_if_modified(|current| {
            let newer = revision > *current;
            if newer {
                *current = revision;
            }
            newer
        });
        if newer {
            self.coordinator.announce(revision);
        }
    }

    /// The newest snapshot and every later one.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Published>>> {
        self.snapshot.subscribe()
    }

    /// The newest revision a write on this replica committed (a snapshot of it may
    /// still be building).
    pub fn committed_revision(&self) -> u64 {
        *self.revision.borrow()
    }

    pub fn current_version(&self) -> u64 {
        self.snapshot
            .borrow()
            .as_ref()
            .map_or(0, |s| s.full.version)
    }

    /// Update what a data plane connected here reported, and publish it to the
    /// registry every replica reads.
    pub async fn record_replica(&self, replica: &str, update: impl FnOnce(&mut ReplicaState)) {
        let state = {
            let Ok(mut replicas) = self.replicas.lock() else {
                return;
            };
            let state = replicas
                .entry(replica.to_owned())
                .or_insert_with(|| ReplicaState {
                    control_plane: self.member.to_string(),
                    ..ReplicaState::default()
                });
            update(state);
            state.clone()
        };
        if let Ok(value) = serde_json::to_string(&state) {
            self.coordinator.register(DATA_PLANES, replica, value).await;
        }
    }

    pub async fn forget_replica(&self, replica: &str) {
        if let Ok(mut replicas) = self.replicas.lock() {
            replicas.remove(replica);
        }
        self.coordinator.unregister(DATA_PLANES, replica).await;
    }

    /// Every data plane connected to any replica. When the registry cannot be read,
    /// those connected here.
    pub async fn replicas(&self) -> HashMap<String, ReplicaState> {
        match self.coordinator.members(DATA_PLANES).await {
            Ok(members) => members
                .into_iter()
                .filter_map(|(id, value)| Some((id, serde_json::from_str(&value).ok()?)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "registry unreadable; listing this replica's data planes only");
                self.replicas.lock().map(|r| r.clone()).unwrap_or_default()
            }
        }
    }

    /// How many data planes follow any replica, as it changes (0: not known yet).
    pub fn data_planes(&self) -> watch::Receiver<u32> {
        self.data_planes.subscribe()
    }

    /// Count the data planes in the registry again. When it cannot be read the last
    /// count stands: a count of only this replica's data planes would hand each of
    /// them too large a share of every limit.
    pub async fn count_data_planes(&self) {
        match self.coordinator.members(DATA_PLANES).await {
            Ok(members) => {
                let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
                self.data_planes.send_if_modified(|current| {
                    let changed = *current != count;
                    *current = count;
                    changed
                });
            }
            Err(e) => {
                tracing::debug!(error = %e, "registry unreadable; the data-plane count stands")
            }
        }
    }

    /// The versions the data planes connected to this replica applied.
    pub fn applied_here(&self) -> Vec<u64> {
        self.replicas
            .lock()
            .map(|r| r.values().map(|s| s.applied_version).collect())
            .unwrap_or_default()
    }

    /// Sets the configuration, snapshot and data-plane gauges: read when `/metrics`
    /// is scraped rather than kept current on every change.
    pub fn record_gauges(&self) {
        use crate::metric::{CONFIG_REVISION, DATA_PLANE_LAG, DATA_PLANES, SNAPSHOT_VERSION};
        let version = self.current_version();
        let revision = self
            .committed_revision()
            .max(self.announced_revision())
            .max(version);
        metrics::gauge!(CONFIG_REVISION).set(revision as f64);
        metrics::gauge!(SNAPSHOT_VERSION).set(version as f64);
        let applied = self.applied_here();
        metrics::gauge!(DATA_PLANES).set(applied.len() as f64);
        let lag = applied
            .iter()
            .map(|a| version.saturating_sub(*a))
            .max()
            .unwrap_or(0);
        metrics::gauge!(DATA_PLANE_LAG).set(lag as f64);
    }

    /// The newest revision any replica announced.
    pub fn announced_revision(&self) -> u64 {
        *self.coordinator.revisions().borrow()
    }

    /// Build once now, then keep rebuilding on changes and every `resync`.
    pub async fn run(self, store: Store, resync: Duration, shutdown: Shutdown) {
        tokio::spawn(self.clone().keep_counting(shutdown.clone()));
        let mut changes = self.revision.subscribe();
        let mut announced = self.coordinator.revisions();
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
                changed = announced.changed() => if changed.is_err() { return },
                _ = tick.tick() => {}
            }
        }
    }

    /// Keep the data-plane count current: data planes connected to other replicas
    /// come and go without this one hearing of it.
    async fn keep_counting(self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(COUNT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                _ = tick.tick() => self.count_data_planes().await,
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
        let building = std::time::Instant::now();
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
        let encoded = encode(&snapshot);
        let previous = self.snapshot.borrow().clone();
        let delta = previous.map(|p| switchyard_wire::delta::diff(&p.full, &encoded));
        let delta_entries = delta.as_ref().map(|d| {
            d.upsert_accounts.len()
                + d.delete_accounts.len()
                + d.upsert_issued_keys.len()
                + d.delete_issued_keys.len()
                + d.upsert_provider_keys.len()
                + d.delete_provider_keys.len()
                + d.upsert_rules.len()
                + d.delete_rules.len()
        });
        self.snapshot.send_replace(Some(Arc::new(Published {
            full: encoded,
            delta,
        })));
        metrics::histogram!(crate::metric::SNAPSHOT_BUILD).record(building.elapsed());
        tracing::info!(
            version,
            accounts = snapshot.accounts.len(),
            keys = snapshot.issued_keys.len(),
            provider_keys = snapshot.provider_keys.len(),
            delta_entries,
            "snapshot published"
        );
    }
}

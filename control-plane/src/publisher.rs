//! Compiles the stored state into snapshots and hands the newest to every connected
//! data plane.
//!
//! Writers call [`Publisher::changed`] with the revision they committed. One task
//! rebuilds outside any request: on a change signal, and on a timer too, so a missed
//! signal (or a write by another process) is caught by the next tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_core::ids::AccountId;
use switchyard_core::policy::{Period, Policy};
use switchyard_core::rules::Rules;
use switchyard_core::snapshot::{ProviderKind, Snapshot, Status};
use switchyard_proto::v1 as pb;
use switchyard_runtime::Shutdown;
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

fn status(s: Status) -> i32 {
    match s {
        Status::Active => pb::Status::Active.into(),
        Status::Disabled => pb::Status::Disabled.into(),
    }
}

fn strings<T: ToString>(list: &Option<Vec<T>>) -> Option<pb::StringList> {
    list.as_ref().map(|l| pb::StringList {
        values: l.iter().map(ToString::to_string).collect(),
    })
}

pub fn encode_policy(p: &Policy) -> pb::Policy {
    pb::Policy {
        models: strings(&p.models),
        resources: strings(&p.resources),
        client_cidrs: strings(&p.client_cidrs),
        rpm: p.rpm,
        key_rpm: p.key_rpm,
        model_limits: p
            .model_limits
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    pb::ModelLimit {
                        rpm: v.rpm,
                        tpm: v.tpm,
                    },
                )
            })
            .collect(),
        credit: p.credit.map(|c| pb::CreditLimit {
            limit_nanos: c.limit_nanos,
            period: match c.period {
                Period::Day => "day".into(),
                Period::Month => "month".into(),
            },
        }),
    }
}

fn encode_rules(owner: AccountId, r: &Rules) -> pb::Rules {
    pb::Rules {
        owner_id: owner.to_string(),
        model_mapper: r.model_mapper.clone().into_iter().collect(),
        level_mapper: r
            .level_mapper
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        switch_over: r.switch_over.clone().into_iter().collect(),
        resources: strings(&r.resources),
        model_limits: r
            .model_limits
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    pb::ModelLimit {
                        rpm: v.rpm,
                        tpm: v.tpm,
                    },
                )
            })
            .collect(),
        pricing: r
            .pricing
            .iter()
            .map(|(k, p)| {
                (
                    k.to_string(),
                    pb::Price {
                        input_per_million_nanos: p.input_per_million_nanos,
                        cached_input_per_million_nanos: p.cached_input_per_million_nanos,
                        output_per_million_nanos: p.output_per_million_nanos,
                        per_request_nanos: p.per_request_nanos,
                    },
                )
            })
            .collect(),
    }
}

/// The snapshot in its wire form. Provider secrets stay sealed.
pub fn encode(s: &Snapshot) -> pb::Snapshot {
    pb::Snapshot {
        version: s.version,
        accounts: s
            .accounts
            .iter()
            .map(|a| pb::Account {
                id: a.id.to_string(),
                parent_id: a.parent.map(|p| p.to_string()).unwrap_or_default(),
                name: a.name.clone(),
                status: status(a.status),
                policy: Some(encode_policy(&a.policy)),
            })
            .collect(),
        issued_keys: s
            .issued_keys
            .iter()
            .map(|k| pb::IssuedKey {
                id: k.id.to_string(),
                account_id: k.account.to_string(),
                hash: k.hash.0.to_vec(),
                expires_at_unix_ms: k.expires_at_ms,
                status: status(k.status),
            })
            .collect(),
        provider_keys: s
            .provider_keys
            .iter()
            .map(|p| pb::ProviderKey {
                id: p.id.to_string(),
                owner_id: p.owner.to_string(),
                kind: match p.kind {
                    ProviderKind::OpenAi => pb::ProviderKind::Openai.into(),
                    ProviderKind::Anthropic => pb::ProviderKind::Anthropic.into(),
                },
                base_url: p.base_url.clone(),
                secret: Some(pb::SealedSecret {
                    key_id: p.secret.key_id.clone(),
                    blob: p.secret.blob.clone(),
                }),
                level: p.level,
                models: p.models.iter().map(ToString::to_string).collect(),
                weight: p.weight,
                status: status(p.status),
            })
            .collect(),
        rules: s
            .rules
            .iter()
            .map(|(owner, r)| encode_rules(*owner, r))
            .collect(),
    }
}

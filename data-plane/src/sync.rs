//! Follows the control plane's snapshot stream: decode, validate, build, swap, ack.
//! Reconnects with backoff; keeps serving the last good snapshot meanwhile. On the
//! same stream it reports provider keys whose health changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use switchyard_core::ids::ProviderKeyId;
use switchyard_core::route::{HealthState, KeyHealth};
use switchyard_core::snapshot::{Compiled, Configuration, ProviderKey};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_runtime::Shutdown;
use switchyard_runtime::now_ms;
use switchyard_wire::delta::{apply_in_place, only_issued_keys};
use switchyard_wire::snapshot::{
    decode, decode_configuration, decode_issued_key, decode_issued_key_id,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::live::Live;
use crate::persist::SnapshotFile;

/// The newest applied snapshot, encoded, for the writer of the snapshot file.
pub type Persisted = tokio::sync::watch::Sender<Option<Arc<Vec<u8>>>>;

/// A task that keeps `file` holding the newest snapshot handed to the returned
/// sender. Writes happen off the runtime's threads, one at a time; a burst of
/// snapshots writes only the last.
pub fn persist_to(file: SnapshotFile) -> Persisted {
    let (tx, mut rx) = tokio::sync::watch::channel::<Option<Arc<Vec<u8>>>>(None);
    tokio::spawn(async move {
        while rx.changed().await.is_ok() {
            let Some(encoded) = rx.borrow_and_update().clone() else {
                continue;
            };
            let file = file.clone();
            match tokio::task::spawn_blocking(move || file.save(&encoded)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "cannot persist the snapshot"),
                Err(e) => tracing::error!(error = %e, "snapshot writer failed"),
            }
        }
    });
    tx
}

const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;
/// How often key health is compared with what was last reported.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("control plane URL is invalid: {0}")]
    Url(String),
    #[error("cannot reach the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("snapshot stream failed: {0}")]
    Stream(#[from] tonic::Status),
}

/// Follow a control plane until shutdown; with `persisted`, every applied snapshot
/// is also handed to the snapshot file's writer. `data_planes` holds the number of
/// live data planes the control plane last reported (kept when the stream breaks).
/// When a stream breaks, the next of `urls` is tried at once; the backoff applies
/// once every one of them failed.
pub async fn follow(
    urls: Vec<String>,
    replica_id: String,
    key_ids: Vec<String>,
    live: Arc<Live>,
    persisted: Option<Persisted>,
    data_planes: Arc<AtomicU32>,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    loop {
        let Some(url) = urls.get(next % urls.len().max(1)) else {
            tracing::error!("no control plane URL to follow");
            return;
        };
        next = next.wrapping_add(1);
        let attempt = follow_once(
            url,
            &replica_id,
            &key_ids,
            &live,
            persisted.as_ref(),
            &data_planes,
        );
        tokio::select! {
            () = shutdown.clone().wait() => return,
            result = attempt => match result {
                Ok(()) => {
                    tracing::warn!("control plane closed the snapshot stream; reconnecting");
                    backoff = Duration::from_millis(100);
                }
                Err(e) => tracing::warn!(error = %e, version = live.version(), "snapshot stream down; serving the last good snapshot"),
            },
        }
        live.set_following(false);
        if !next.is_multiple_of(urls.len()) {
            continue;
        }
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow_once(
    url: &str,
    replica_id: &str,
    key_ids: &[String],
    live: &Live,
    persisted: Option<&Persisted>,
    data_planes: &AtomicU32,
) -> Result<(), SyncError> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .map_err(|_| SyncError::Url(url.to_owned()))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut client =
        SnapshotServiceClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
    let (tx, rx) = mpsc::channel(8);
    let hello = pb::SyncRequest {
        kind: Some(pb::sync_request::Kind::Hello(pb::Hello {
            replica_id: replica_id.to_owned(),
            have_version: live.version(),
            key_ids: key_ids.to_vec(),
        })),
    };
    // The receiver is alive (held just below); a failure here cannot happen.
    let _ = tx.send(hello).await;
    let mut updates = client.sync(ReceiverStream::new(rx)).await?.into_inner();
    tracing::info!(url, "following the control plane");
    // What this stream has reported; a new stream reports everything known again.
    let mut reported = HashMap::new();
    let mut follower = Follower::default();
    let mut health_tick = tokio::time::interval(HEALTH_EVERY);
    health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let update = tokio::select! {
            update = updates.message() => update?,
            _ = health_tick.tick() => {
                let Some(snapshot) = live.load() else { continue };
                let keys = health_changes(&mut reported, snapshot.provider_health(), now_ms());
                if keys.is_empty() {
                    continue;
                }
                let report = pb::sync_request::Kind::Health(pb::HealthReport { keys });
                if tx.send(pb::SyncRequest { kind: Some(report) }).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Some(update) = update else { break };
        // 0: a control plane that does not count; the last count stands.
        if update.live_data_planes > 0
            && data_planes.swap(update.live_data_planes, Ordering::Relaxed)
                != update.live_data_planes
        {
            tracing::info!(
                live_data_planes = update.live_data_planes,
                "data-plane count changed"
            );
        }
        // Building tables takes a core for up to a hundred milliseconds at scale:
        // done in place of a runtime worker, calls queued behind it would wait.
        let step = tokio::task::block_in_place(|| follower.update(live, update.full, update.delta));
        let reply = match step {
            Step::Nothing => continue,
            Step::NeedFull { reason } => {
                tracing::warn!(
                    reason,
                    "delta not applicable; asking for the whole snapshot"
                );
                pb::sync_request::Kind::NeedFull(pb::NeedFull {
                    have_version: live.version(),
                    reason,
                })
            }
            Step::Applied {
                version,
                installed,
                how,
            } => {
                if installed {
                    tracing::info!(
                        version,
                        keys = live.load().map_or(0, |c| c.key_count()),
                        how,
                        "snapshot applied"
                    );
                    // Encoded for the file only after the swap: it never delays one.
                    if let (Some(writer), Some(base)) = (persisted, follower.base()) {
                        writer.send_replace(Some(Arc::new(prost::Message::encode_to_vec(base))));
                    }
                }
                live.set_following(true);
                pb::sync_request::Kind::Applied(pb::Applied { version })
            }
            Step::Rejected { version, reason } => {
                tracing::error!(version, reason = %reason, "snapshot refused; keeping the last good one");
                pb::sync_request::Kind::Rejected(pb::Rejected { version, reason })
            }
        };
        if tx
            .send(pb::SyncRequest { kind: Some(reply) })
            .await
            .is_err()
        {
            break;
        }
    }
    Ok(())
}

/// What one update of the snapshot stream did.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Validated and built; installed unless the same or a newer version is served.
    Applied {
        version: u64,
        installed: bool,
        /// How: `whole` (a whole snapshot built), `keys` (only issued keys changed:
        /// the served key table patched), `delta` (the configuration changed: its
        /// tables rebuilt, the served key table patched or shared) or `rebuild` (a
        /// delta on a base other than what is served: rebuilt whole).
        how: &'static str,
    },
    /// A delta that does not fit the snapshot held: the whole one is needed.
    NeedFull { reason: String },
    /// Refused by validation; the last good snapshot stays.
    Rejected { version: u64, reason: String },
    /// An update with nothing in it.
    Nothing,
}

/// The data plane's side of one snapshot stream: the wire form of the last
/// snapshot applied from it, the base of the next delta.
#[derive(Default)]
pub struct Follower {
    base: Option<pb::Snapshot>,
}

impl Follower {
    /// A follower whose stream already applied `base`.
    pub fn with_base(base: pb::Snapshot) -> Self {
        Self { base: Some(base) }
    }

    /// The last snapshot applied, in wire form.
    pub fn base(&self) -> Option<&pb::Snapshot> {
        self.base.as_ref()
    }

    /// Apply one update (a whole snapshot or a delta) to `live`: validate, build,
    /// swap. A delta patches the served tables instead of building them all: the
    /// key table (100,000s of rows) is copied only when keys change, and the
    /// configuration's tables are rebuilt only when it changes.
    pub fn update(
        &mut self,
        live: &Live,
        full: Option<pb::Snapshot>,
        delta: Option<pb::SnapshotDelta>,
    ) -> Step {
        match (full, delta) {
            (Some(full), _) => {
                let version = full.version;
                // Decoding consumes its input; the wire form is kept for the next delta.
                match build(live, full.clone()) {
                    Ok(compiled) => {
                        self.base = Some(full);
                        Step::Applied {
                            version,
                            installed: live.install_followed(compiled),
                            how: "whole",
                        }
                    }
                    Err(e) => Step::Rejected {
                        version,
                        reason: e.to_string(),
                    },
                }
            }
            (None, Some(delta)) => self.delta(live, &delta),
            (None, None) => Step::Nothing,
        }
    }

    fn delta(&mut self, live: &Live, delta: &pb::SnapshotDelta) -> Step {
        let Some(base) = self.base.as_mut() else {
            return Step::NeedFull {
                reason: "no snapshot to apply a delta to".to_owned(),
            };
        };
        let version = delta.version;
        // Patchable: on top of exactly what is served (the base is checked as the
        // delta is applied to it).
        let served = live
            .load()
            .filter(|served| served.version() == delta.base_version);
        if let Err(e) = apply_in_place(base, delta) {
            return Step::NeedFull {
                reason: e.to_string(),
            };
        }
        let (built, how) = match served {
            Some(served) if only_issued_keys(delta) => (patch(&served, None, delta), "keys"),
            Some(served) => (
                decode_configuration(base)
                    .map_err(ApplyError::from)
                    .and_then(|config| patch(&served, Some(config), delta)),
                "delta",
            ),
            None => (build(live, base.clone()), "rebuild"),
        };
        match built {
            Ok(compiled) => Step::Applied {
                version,
                installed: live.install_followed(compiled),
                how,
            },
            Err(e) => {
                // What is held is no longer what was applied: start over whole.
                self.base = None;
                Step::Rejected {
                    version,
                    reason: e.to_string(),
                }
            }
        }
    }
}

/// Why an update could not be applied: its wire form, or the snapshot it makes.
#[derive(Debug, thiserror::Error)]
enum ApplyError {
    #[error(transparent)]
    Decode(#[from] switchyard_wire::snapshot::DecodeError),
    #[error(transparent)]
    Snapshot(#[from] switchyard_core::snapshot::SnapshotError),
}

/// Decode and build a whole snapshot, carrying key health over from what is served.
fn build(live: &Live, snapshot: pb::Snapshot) -> Result<Compiled, ApplyError> {
    let decoded = decode(snapshot)?;
    Ok(Compiled::build_after(decoded, live.load().as_deref())?)
}

/// The served snapshot with a delta's changes: its issued keys, and the new
/// configuration when the delta changed any of it.
fn patch(
    served: &Compiled,
    config: Option<Configuration>,
    delta: &pb::SnapshotDelta,
) -> Result<Compiled, ApplyError> {
    let upserts = delta
        .upsert_issued_keys
        .iter()
        .cloned()
        .map(decode_issued_key)
        .collect::<Result<Vec<_>, _>>()?;
    let deleted = delta
        .delete_issued_keys
        .iter()
        .map(|id| decode_issued_key_id(id))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(served.patched(delta.version, config, upserts, &deleted)?)
}

/// The keys whose health differs from what was last reported (and records them as
/// reported). Keys no call has used yet are left out.
fn health_changes<'a>(
    reported: &mut HashMap<ProviderKeyId, HealthState>,
    keys: impl Iterator<Item = (&'a ProviderKey, &'a Arc<KeyHealth>)>,
    now_ms: i64,
) -> Vec<pb::ProviderKeyHealth> {
    let mut changes = Vec::new();
    for (key, health) in keys {
        let state = health.state(now_ms);
        let (wire_state, until_unix_ms) = match state {
            HealthState::Unknown => continue,
            HealthState::Healthy => (pb::KeyHealthState::Healthy, 0),
            HealthState::CoolingDown { until_ms } => (pb::KeyHealthState::CoolingDown, until_ms),
            HealthState::Rejected { until_ms } => (pb::KeyHealthState::Unhealthy, until_ms),
        };
        if reported.insert(key.id, state) == Some(state) {
            continue;
        }
        changes.push(pb::ProviderKeyHealth {
            provider_key_id: key.id.to_string(),
            state: wire_state.into(),
            until_unix_ms,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::route::{CoolDown, Failure};

    use switchyard_core::apikey;
    use switchyard_core::ids::{AccountId, IssuedKeyId};
    use switchyard_core::snapshot::{Account, AuthError, IssuedKey, Snapshot, Status};
    use switchyard_wire::delta::diff;
    use switchyard_wire::snapshot::encode;

    fn account(parent: Option<AccountId>) -> Account {
        Account {
            id: AccountId::new(),
            parent,
            name: "a".into(),
            status: Status::Active,
            policy: Default::default(),
            billing: Default::default(),
        }
    }

    fn issued(account: AccountId) -> (String, IssuedKey) {
        let k = apikey::generate();
        let key = IssuedKey {
            id: IssuedKeyId::new(),
            account,
            hash: k.hash,
            expires_at_ms: None,
            status: Status::Active,
        };
        (k.clear.expose().clone(), key)
    }

    #[test]
    fn deltas_patch_what_they_change_and_misfits_ask_for_the_whole() {
        let main = account(None);
        let (first_clear, first) = issued(main.id);
        let v1 = Snapshot {
            version: 1,
            accounts: vec![main.clone()],
            issued_keys: vec![first.clone()],
            ..Default::default()
        };
        let live = Live::default();
        let mut follower = Follower::default();
        assert_eq!(
            follower.update(&live, None, Some(diff(&encode(&v1), &encode(&v1)))),
            Step::NeedFull {
                reason: "no snapshot to apply a delta to".into()
            }
        );
        let step = follower.update(&live, Some(encode(&v1)), None);
        assert!(matches!(
            step,
            Step::Applied {
                version: 1,
                installed: true,
                how: "whole"
            }
        ));

        // A key issued: the served tables are patched.
        let (second_clear, second) = issued(main.id);
        let v2 = Snapshot {
            version: 2,
            issued_keys: vec![first.clone(), second.clone()],
            ..v1.clone()
        };
        let step = follower.update(&live, None, Some(diff(&encode(&v1), &encode(&v2))));
        assert!(matches!(
            step,
            Step::Applied {
                version: 2,
                installed: true,
                how: "keys"
            }
        ));
        let served = live.load().unwrap();
        assert!(served.authenticate(&second_clear, 0).is_ok());
        assert!(served.authenticate(&first_clear, 0).is_ok());
        assert_eq!(follower.base(), Some(&encode(&v2)));

        // An account added with its key: the configuration's tables rebuilt, the
        // key table patched.
        let child = account(Some(main.id));
        let (third_clear, third) = issued(child.id);
        let mut v3 = v2.clone();
        v3.version = 3;
        v3.accounts.push(child.clone());
        v3.issued_keys.push(third);
        let step = follower.update(&live, None, Some(diff(&encode(&v2), &encode(&v3))));
        assert!(matches!(
            step,
            Step::Applied {
                version: 3,
                installed: true,
                how: "delta"
            }
        ));
        assert!(live.load().unwrap().authenticate(&third_clear, 0).is_ok());

        // The account disabled: its key is refused from this version on.
        let mut v4 = v3.clone();
        v4.version = 4;
        v4.accounts[1].status = Status::Disabled;
        let step = follower.update(&live, None, Some(diff(&encode(&v3), &encode(&v4))));
        assert!(matches!(
            step,
            Step::Applied {
                version: 4,
                installed: true,
                how: "delta"
            }
        ));
        assert_eq!(
            live.load().unwrap().authenticate(&third_clear, 0).err(),
            Some(AuthError::AccountDisabled(child.id))
        );

        // A delta from another base: the whole snapshot is needed, nothing changes.
        let step = follower.update(&live, None, Some(diff(&encode(&v1), &encode(&v2))));
        assert!(matches!(step, Step::NeedFull { .. }));
        assert_eq!(live.version(), 4);

        // A key of an account nobody knows: refused, the last good one stays, and
        // the next delta asks for the whole snapshot.
        let (_, stray) = issued(AccountId::new());
        let mut v5 = v4.clone();
        v5.version = 5;
        v5.issued_keys.push(stray);
        let step = follower.update(&live, None, Some(diff(&encode(&v4), &encode(&v5))));
        assert!(matches!(step, Step::Rejected { version: 5, .. }));
        assert_eq!(live.version(), 4);
        let step = follower.update(&live, None, Some(diff(&encode(&v4), &encode(&v5))));
        assert!(matches!(step, Step::NeedFull { .. }));

        // A stream whose base is not what is served (another stream installed a
        // newer version): its delta is applied to its own base and built whole.
        let mut behind = Follower::with_base(encode(&v2));
        let step = behind.update(&live, None, Some(diff(&encode(&v2), &encode(&v3))));
        assert!(matches!(
            step,
            Step::Applied {
                version: 3,
                installed: false,
                how: "rebuild"
            }
        ));
        assert_eq!(behind.base(), Some(&encode(&v3)));
        assert_eq!(live.version(), 4);
    }

    #[test]
    fn only_changes_are_reported() {
        let key = ProviderKey {
            id: ProviderKeyId::new(),
            owner: switchyard_core::ids::AccountId::new(),
            kind: switchyard_core::snapshot::ProviderKind::OpenAi,
            passthrough: false,
            base_url: "https://api.example.com/v1".into(),
            secret: switchyard_core::crypto::Sealed {
                key_id: "k".into(),
                blob: vec![0; 40],
            },
            level: 1,
            models: Vec::new(),
            weight: 1,
            status: switchyard_core::snapshot::Status::Active,
            discovered_models: Vec::new(),
        };
        let health = Arc::new(KeyHealth::default());
        let mut reported = HashMap::new();
        let policy = CoolDown::default();
        let changes =
            |r: &mut HashMap<_, _>, now| health_changes(r, std::iter::once((&key, &health)), now);
        // Never used: nothing to say.
        assert!(changes(&mut reported, 0).is_empty());
        health.record_success();
        let first = changes(&mut reported, 0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].state, i32::from(pb::KeyHealthState::Healthy));
        assert!(changes(&mut reported, 1).is_empty());
        health.record_failure(&policy, Failure::ServerError, 1_000);
        let cooling = changes(&mut reported, 1_000);
        assert_eq!(cooling[0].state, i32::from(pb::KeyHealthState::CoolingDown));
        assert_eq!(cooling[0].until_unix_ms, 2_000);
        // Waking up is a change too, without any call.
        let awake = changes(&mut reported, 2_000);
        assert_eq!(awake[0].state, i32::from(pb::KeyHealthState::Healthy));
        health.record_failure(&policy, Failure::Rejected, 3_000);
        let rejected = changes(&mut reported, 3_000);
        assert_eq!(rejected[0].state, i32::from(pb::KeyHealthState::Unhealthy));
    }
}

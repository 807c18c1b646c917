//! Key-encryption-key rotation: re-seal every provider secret (and every alert rule's
//! webhook secret) under the active key id.
//!
//! Rotation without downtime: first give every control plane and data plane the new
//! keyring with the new key first and the old one still listed (`k2:…,k1:…`); they
//! open secrets sealed under either. Then run `switchyard-control-plane reseal`: each
//! secret sealed under another id is opened and sealed again under the active one, one
//! row and one transaction at a time, audited. Running data planes keep serving
//! throughout; the control planes pick the change up on their next re-read. When the
//! report shows nothing left under the old id, drop it from the keyring.
//!
//! The control plane does the second step itself: the replica that leads
//! `key-reseal` re-seals as soon as every data plane reports holding the active key
//! ([`reseal_when_safe`]), so a rotation is only a matter of rolling out keyrings.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use switchyard_core::crypto::Keyring;
use switchyard_runtime::Shutdown;
use tokio::sync::watch;

use crate::publisher::Publisher;
use crate::store::{AuditEntry, RulesOf, Store, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResealReport {
    /// Provider keys looked at.
    pub total: usize,
    /// Re-sealed under the active key id by this run.
    pub resealed: usize,
    /// Already under the active key id.
    pub current: usize,
    /// Alert rules' webhook secrets re-sealed by this run (they are sealed the
    /// same way; `total` and `current` count provider keys only).
    pub webhook_secrets_resealed: usize,
    /// Could not be opened with any loaded key (provider key or alert rule id, and
    /// reason); left as they were.
    pub failed: Vec<(String, String)>,
    /// The configuration revision of the last re-seal (0: none).
    #[serde(skip)]
    pub revision: u64,
}

/// Re-seal every provider secret not sealed under the keyring's active key id.
pub async fn reseal_all(
    store: &Store,
    keyring: &Keyring,
    now_ms: i64,
) -> Result<ResealReport, StoreError> {
    let mut report = ResealReport::default();
    for owner in store.main_accounts().await? {
        for mut record in store.provider_keys(owner).await? {
            report.total += 1;
            let key = &mut record.key;
            // A passthrough key holds no secret: nothing to re-seal.
            if key.passthrough || key.secret.key_id == keyring.active_id() {
                report.current += 1;
                continue;
            }
            let aad = key.id.0.as_bytes().to_vec();
            let sealed = keyring
                .open(&key.secret, &aad)
                .and_then(|plain| keyring.seal(&plain, &aad));
            let sealed = match sealed {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(provider_key = %key.id, error = %e, "cannot re-seal a provider secret");
                    report.failed.push((key.id.to_string(), e.to_string()));
                    continue;
                }
            };
            let from = std::mem::replace(&mut key.secret, sealed);
            let audit = AuditEntry {
                at_ms: now_ms,
                actor: "root".to_owned(),
                owner: Some(owner),
                action: "provider_key.reseal",
                target: key.id.to_string(),
                before: Some(serde_json::json!({"key_id": from.key_id})),
                after: Some(serde_json::json!({"key_id": key.secret.key_id})),
            };
            report.revision = report
                .revision
                .max(store.update_provider_key(&record, &audit).await?);
            report.resealed += 1;
        }
    }
    reseal_webhook_secrets(store, keyring, &mut report).await?;
    Ok(report)
}

/// Re-seal alert rules' webhook secrets not under the active key id (the rule id is
/// the associated data, as when they were sealed).
async fn reseal_webhook_secrets(
    store: &Store,
    keyring: &Keyring,
    report: &mut ResealReport,
) -> Result<(), StoreError> {
    let mut after: Option<String> = None;
    loop {
        let rules = store
            .alert_rules(RulesOf::Every, after.as_deref(), 500)
            .await?;
        for rule in &rules {
            if rule.secret.key_id == keyring.active_id() {
                continue;
            }
            let sealed = keyring
                .open(&rule.secret, rule.id.as_bytes())
                .and_then(|plain| keyring.seal(&plain, rule.id.as_bytes()));
            match sealed {
                Ok(sealed) => {
                    store
                        .reseal_alert_secret(&rule.id, &rule.secret.key_id, &sealed)
                        .await?;
                    report.webhook_secrets_resealed += 1;
                }
                Err(e) => {
                    tracing::error!(alert_rule = %rule.id, error = %e, "cannot re-seal a webhook secret");
                    report.failed.push((rule.id.clone(), e.to_string()));
                }
            }
        }
        match rules.last() {
            Some(last) if rules.len() == 500 => after = Some(last.id.clone()),
            _ => return Ok(()),
        }
    }
}

/// The data planes (by replica id) that cannot open secrets sealed under `active`.
pub fn lacking_key<'a>(
    data_planes: impl IntoIterator<Item = (&'a String, &'a crate::publisher::ReplicaState)>,
    active: &str,
) -> Vec<&'a str> {
    let mut lacking: Vec<&str> = data_planes
        .into_iter()
        .filter(|(_, s)| !s.key_ids.iter().any(|k| k == active))
        .map(|(id, _)| id.as_str())
        .collect();
    lacking.sort_unstable();
    lacking
}

/// How long a new leader waits before its first re-seal: until then, data planes
/// may still be reconnecting and missing from the registry (their reconnect backoff
/// is at most 5 s), and a data plane nobody knows of cannot be waited for.
pub const SETTLE: Duration = Duration::from_secs(10);

/// While this replica leads `key-reseal` (see `leader`), and has for [`SETTLE`],
/// look every `every` for provider secrets sealed under a key other than the active
/// one, and re-seal them once every registered data plane holds the active key;
/// until then, say which ones do not. Re-sealing earlier would hand data planes
/// secrets they cannot open. (A data plane that is not connected at all is not
/// known: rolling the new keyring out to every data plane stays the first step.)
pub async fn reseal_when_safe(
    store: Store,
    keyring: Arc<Keyring>,
    publisher: Publisher,
    mut leader: watch::Receiver<bool>,
    every: Duration,
    shutdown: Shutdown,
) {
    let mut waiting_for: Vec<String> = Vec::new();
    let mut leading_since: Option<std::time::Instant> = None;
    loop {
        if !*leader.borrow_and_update() {
            leading_since = None;
        } else if leading_since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            >= SETTLE
        {
            look(&store, &keyring, &publisher, &mut waiting_for).await;
        }
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = switchyard_coord::leadership_changed(&mut leader) => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// One look of the leader: re-seal if every data plane holds the active key, else
/// say which do not (once per change of that list, kept in `waiting_for`).
async fn look(
    store: &Store,
    keyring: &Keyring,
    publisher: &Publisher,
    waiting_for: &mut Vec<String>,
) {
    let data_planes = publisher.replicas().await;
    let lacking = lacking_key(&data_planes, keyring.active_id());
    if !lacking.is_empty() {
        if lacking != *waiting_for {
            tracing::warn!(
                active = keyring.active_id(),
                data_planes = ?lacking,
                "not re-sealing yet: these data planes do not hold the active key-encryption key"
            );
            *waiting_for = lacking.into_iter().map(str::to_owned).collect();
        }
        return;
    }
    waiting_for.clear();
    match reseal_all(store, keyring, switchyard_runtime::now_ms()).await {
        Ok(report) => {
            if report.resealed > 0
                || report.webhook_secrets_resealed > 0
                || !report.failed.is_empty()
            {
                tracing::info!(
                    resealed = report.resealed,
                    webhook_secrets = report.webhook_secrets_resealed,
                    failed = report.failed.len(),
                    active = keyring.active_id(),
                    "provider secrets re-sealed under the active key"
                );
            }
            if report.resealed > 0 {
                publisher.changed(report.revision);
            }
        }
        Err(e) => tracing::error!(error = %e, "re-sealing failed; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::publisher::ReplicaState;

    #[test]
    fn waits_for_every_data_plane_that_lacks_the_active_key() {
        let holding = |ids: &[&str]| ReplicaState {
            key_ids: ids.iter().map(|s| (*s).to_owned()).collect(),
            ..ReplicaState::default()
        };
        let mut planes = HashMap::from([
            ("dp-b".to_owned(), holding(&["k1"])),
            ("dp-a".to_owned(), holding(&["k2", "k1"])),
            // A data plane that reports no keys (an older release) is waited for too.
            ("dp-c".to_owned(), holding(&[])),
        ]);
        assert_eq!(lacking_key(&planes, "k2"), ["dp-b", "dp-c"]);
        assert!(lacking_key(&planes, "k1").contains(&"dp-c"));
        planes.remove("dp-c");
        planes.insert("dp-b".to_owned(), holding(&["k2"]));
        assert!(lacking_key(&planes, "k2").is_empty());
        assert!(lacking_key(&HashMap::new(), "k2").is_empty());
    }
}

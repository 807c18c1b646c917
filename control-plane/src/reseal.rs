//! Key-encryption-key rotation: re-seal every provider secret under the active key id.
//!
//! Rotation without downtime: first give every control plane and data plane the new
//! keyring with the new key first and the old one still listed (`k2:…,k1:…`); they
//! open secrets sealed under either. Then run `switchyard-control-plane reseal`: each
//! secret sealed under another id is opened and sealed again under the active one, one
//! row and one transaction at a time, audited. Running data planes keep serving
//! throughout; the control planes pick the change up on their next re-read. When the
//! report shows nothing left under the old id, drop it from the keyring.

use serde::Serialize;
use switchyard_core::crypto::Keyring;

use crate::store::{AuditEntry, Store, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResealReport {
    /// Provider keys looked at.
    pub total: usize,
    /// Re-sealed under the active key id by this run.
    pub resealed: usize,
    /// Already under the active key id.
    pub current: usize,
    /// Could not be opened with any loaded key (id and reason); left as they were.
    pub failed: Vec<(String, String)>,
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
            if key.secret.key_id == keyring.active_id() {
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
            store.update_provider_key(&record, &audit).await?;
            report.resealed += 1;
        }
    }
    Ok(report)
}

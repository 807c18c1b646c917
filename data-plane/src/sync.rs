//! Follows the control plane's snapshot stream: decode, validate, build, swap, ack.
//! Reconnects with backoff; keeps serving the last good snapshot meanwhile.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use switchyard_core::apikey::KeyHash;
use switchyard_core::crypto::Sealed;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::model::ModelPattern;
use switchyard_core::policy::{CreditLimit, ModelLimit, Period, Policy};
use switchyard_core::rules::{Price, Rules};
use switchyard_core::snapshot::{
    Account, Compiled, IssuedKey, ProviderKey, ProviderKind, Snapshot, Status,
};
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::snapshot_service_client::SnapshotServiceClient;
use switchyard_runtime::Shutdown;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::live::Live;

const MAX_SNAPSHOT_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{field}: {value:?} is not a valid id")]
    Id { field: &'static str, value: String },
    #[error("{0}: unknown status")]
    Status(&'static str),
    #[error("provider key {0}: unknown provider kind")]
    Kind(String),
    #[error("provider key {0}: missing sealed secret")]
    Secret(String),
    #[error("provider key {key}: model pattern: {why}")]
    Model { key: String, why: String },
    #[error("issued key {0}: hash must be 32 bytes")]
    Hash(String),
    #[error("account {account}: policy: {why}")]
    Policy { account: String, why: String },
    #[error("rules of {owner}: {why}")]
    Rules { owner: String, why: String },
}

fn parse_list<T: std::str::FromStr>(
    list: Option<pb::StringList>,
    field: &str,
) -> Result<Option<Vec<T>>, String>
where
    T::Err: std::fmt::Display,
{
    list.map(|l| {
        l.values
            .iter()
            .map(|v| v.parse::<T>().map_err(|e| format!("{field} {v:?}: {e}")))
            .collect()
    })
    .transpose()
}

fn patterns<T>(
    map: impl IntoIterator<Item = (String, T)>,
    field: &str,
) -> Result<std::collections::BTreeMap<ModelPattern, T>, String> {
    map.into_iter()
        .map(|(k, v)| {
            k.parse::<ModelPattern>()
                .map(|p| (p, v))
                .map_err(|e| format!("{field} {k:?}: {e}"))
        })
        .collect()
}

fn decode_rules(r: pb::Rules) -> Result<Rules, String> {
    Ok(Rules {
        model_mapper: r.model_mapper.into_iter().collect(),
        level_mapper: patterns(r.level_mapper, "level_mapper")?,
        switch_over: r.switch_over.into_iter().collect(),
        resources: parse_list(r.resources, "resources")?,
        model_limits: patterns(
            r.model_limits.into_iter().map(|(k, l)| {
                (
                    k,
                    ModelLimit {
                        rpm: l.rpm,
                        tpm: l.tpm,
                    },
                )
            }),
            "model_limits",
        )?,
        pricing: patterns(
            r.pricing.into_iter().map(|(k, p)| {
                (
                    k,
                    Price {
                        input_per_million_nanos: p.input_per_million_nanos,
                        cached_input_per_million_nanos: p.cached_input_per_million_nanos,
                        output_per_million_nanos: p.output_per_million_nanos,
                        per_request_nanos: p.per_request_nanos,
                    },
                )
            }),
            "pricing",
        )?,
    })
}

fn decode_policy(p: pb::Policy) -> Result<Policy, String> {
    let mut model_limits = std::collections::BTreeMap::new();
    for (pattern, limit) in p.model_limits {
        let pattern = pattern
            .parse::<ModelPattern>()
            .map_err(|e| format!("model_limits {pattern:?}: {e}"))?;
        model_limits.insert(
            pattern,
            ModelLimit {
                rpm: limit.rpm,
                tpm: limit.tpm,
            },
        );
    }
    let credit = p
        .credit
        .map(|c| {
            let period = match c.period.as_str() {
                "day" => Period::Day,
                "month" => Period::Month,
                other => return Err(format!("credit period {other:?}")),
            };
            Ok(CreditLimit {
                limit_nanos: c.limit_nanos,
                period,
            })
        })
        .transpose()?;
    let policy = Policy {
        models: parse_list(p.models, "models")?,
        resources: parse_list(p.resources, "resources")?,
        client_cidrs: parse_list::<IpNet>(p.client_cidrs, "client_cidrs")?,
        rpm: p.rpm,
        key_rpm: p.key_rpm,
        model_limits,
        credit,
    };
    policy.validate().map_err(|e| e.to_string())?;
    Ok(policy)
}

fn id<T: std::str::FromStr>(field: &'static str, value: &str) -> Result<T, DecodeError> {
    value.parse().map_err(|_| DecodeError::Id {
        field,
        value: value.to_owned(),
    })
}

fn status(field: &'static str, value: i32) -> Result<Status, DecodeError> {
    match pb::Status::try_from(value) {
        Ok(pb::Status::Active) => Ok(Status::Active),
        Ok(pb::Status::Disabled) => Ok(Status::Disabled),
        _ => Err(DecodeError::Status(field)),
    }
}

/// The wire snapshot as plain data. Beyond this edge nothing touches prost types.
pub fn decode(s: pb::Snapshot) -> Result<Snapshot, DecodeError> {
    let accounts = s
        .accounts
        .into_iter()
        .map(|a| {
            Ok(Account {
                id: id::<AccountId>("account.id", &a.id)?,
                parent: if a.parent_id.is_empty() {
                    None
                } else {
                    Some(id::<AccountId>("account.parent_id", &a.parent_id)?)
                },
                status: status("account.status", a.status)?,
                policy: decode_policy(a.policy.unwrap_or_default()).map_err(|why| {
                    DecodeError::Policy {
                        account: a.id.clone(),
                        why,
                    }
                })?,
                name: a.name,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let issued_keys = s
        .issued_keys
        .into_iter()
        .map(|k| {
            Ok(IssuedKey {
                hash: KeyHash::from_slice(&k.hash)
                    .ok_or_else(|| DecodeError::Hash(k.id.clone()))?,
                id: id::<IssuedKeyId>("issued_key.id", &k.id)?,
                account: id::<AccountId>("issued_key.account_id", &k.account_id)?,
                expires_at_ms: k.expires_at_unix_ms,
                status: status("issued_key.status", k.status)?,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let provider_keys = s
        .provider_keys
        .into_iter()
        .map(|p| {
            let kind = match pb::ProviderKind::try_from(p.kind) {
                Ok(pb::ProviderKind::Openai) => ProviderKind::OpenAi,
                Ok(pb::ProviderKind::Anthropic) => ProviderKind::Anthropic,
                _ => return Err(DecodeError::Kind(p.id)),
            };
            let secret = p.secret.ok_or_else(|| DecodeError::Secret(p.id.clone()))?;
            let models = p
                .models
                .iter()
                .map(|m| {
                    m.parse::<ModelPattern>().map_err(|e| DecodeError::Model {
                        key: p.id.clone(),
                        why: e.to_string(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ProviderKey {
                id: id::<ProviderKeyId>("provider_key.id", &p.id)?,
                owner: id::<AccountId>("provider_key.owner_id", &p.owner_id)?,
                kind,
                base_url: p.base_url,
                secret: Sealed {
                    key_id: secret.key_id,
                    blob: secret.blob,
                },
                level: p.level,
                models,
                weight: p.weight,
                status: status("provider_key.status", p.status)?,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let rules = s
        .rules
        .into_iter()
        .map(|r| {
            let owner = id::<AccountId>("rules.owner_id", &r.owner_id)?;
            let rules = decode_rules(r).map_err(|why| DecodeError::Rules {
                owner: owner.to_string(),
                why,
            })?;
            Ok((owner, rules))
        })
        .collect::<Result<std::collections::BTreeMap<_, _>, DecodeError>>()?;
    Ok(Snapshot {
        version: s.version,
        accounts,
        issued_keys,
        provider_keys,
        rules,
    })
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("control plane URL is invalid: {0}")]
    Url(String),
    #[error("cannot reach the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("snapshot stream failed: {0}")]
    Stream(#[from] tonic::Status),
}

/// Follow the control plane until shutdown.
pub async fn follow(url: String, replica_id: String, live: Arc<Live>, shutdown: Shutdown) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = follow_once(&url, &replica_id, &live);
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
        tokio::select! {
            () = shutdown.clone().wait() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn follow_once(url: &str, replica_id: &str, live: &Live) -> Result<(), SyncError> {
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
        })),
    };
    // The receiver is alive (held just below); a failure here cannot happen.
    let _ = tx.send(hello).await;
    let mut updates = client.sync(ReceiverStream::new(rx)).await?.into_inner();
    tracing::info!(url, "following the control plane");
    while let Some(update) = updates.message().await? {
        let Some(full) = update.full else { continue };
        let version = full.version;
        let reply = match decode(full)
            .map_err(|e| e.to_string())
            .and_then(|s| Compiled::build(s).map_err(|e| e.to_string()))
        {
            Ok(compiled) => {
                let keys = compiled.key_count();
                if live.install(compiled) {
                    tracing::info!(version, keys, "snapshot applied");
                }
                pb::sync_request::Kind::Applied(pb::Applied { version })
            }
            Err(reason) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_wire_snapshots_are_refused() {
        let account = pb::Account {
            id: AccountId::new().to_string(),
            parent_id: String::new(),
            name: "a".into(),
            status: pb::Status::Active.into(),
            policy: None,
        };
        let good = pb::Snapshot {
            version: 1,
            accounts: vec![account.clone()],
            ..Default::default()
        };
        assert!(decode(good).is_ok());
        let mut bad = account.clone();
        bad.status = 0;
        assert_eq!(
            decode(pb::Snapshot {
                accounts: vec![bad],
                ..Default::default()
            })
            .err(),
            Some(DecodeError::Status("account.status"))
        );
        let mut bad = account;
        bad.id = "x".into();
        assert!(matches!(
            decode(pb::Snapshot {
                accounts: vec![bad],
                ..Default::default()
            }),
            Err(DecodeError::Id { .. })
        ));
        let key = pb::IssuedKey {
            id: IssuedKeyId::new().to_string(),
            account_id: AccountId::new().to_string(),
            hash: vec![1, 2, 3],
            expires_at_unix_ms: None,
            status: pb::Status::Active.into(),
        };
        assert!(matches!(
            decode(pb::Snapshot {
                issued_keys: vec![key],
                ..Default::default()
            }),
            Err(DecodeError::Hash(_))
        ));
    }
}

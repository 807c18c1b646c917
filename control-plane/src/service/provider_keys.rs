//! A main account's upstream provider keys: sealed secrets, checked base URLs,
//! models, levels and weights.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_core::crypto::Sealed;
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::{AccountId, ProviderKeyId};
use switchyard_core::model::ModelPattern;
use switchyard_core::netguard::{Resolving, UpstreamNetworks};
use switchyard_core::passthrough;
use switchyard_core::snapshot::{ProviderKey, ProviderKind, Status};

use super::audit::state;
use super::{ApiError, Caller, Service, present};
use crate::store::ProviderKeyRecord;

const MAX_SECRET: usize = 4096;
const MAX_MODELS: usize = 256;
const MAX_LEVEL: u32 = 1000;
const MAX_WEIGHT: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProviderKey {
    pub provider: String,
    pub base_url: String,
    /// Required, except for a passthrough key, which holds none.
    #[serde(default, deserialize_with = "present")]
    pub secret: Option<String>,
    /// The protocol a passthrough key speaks.
    #[serde(default, deserialize_with = "present")]
    pub protocol: Option<String>,
    pub models: Vec<String>,
    #[serde(default, deserialize_with = "present")]
    pub level: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub weight: Option<u32>,
}

/// `PATCH /x-keys/{id}`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProviderKey {
    #[serde(default, deserialize_with = "present")]
    pub provider: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub base_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub secret: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub models: Option<Vec<String>>,
    #[serde(default, deserialize_with = "present")]
    pub level: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub weight: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub protocol: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProviderKeyView {
    pub id: ProviderKeyId,
    /// Its kind: a provider (`openai`, `anthropic`) or `passthrough`.
    pub provider: &'static str,
    /// The protocol the upstream speaks.
    pub protocol: &'static str,
    pub base_url: String,
    pub secret_hint: String,
    pub models: Vec<String>,
    pub level: u32,
    pub weight: u32,
    pub status: &'static str,
    /// What data planes last reported: `unknown`, `healthy`, `cooling_down` or
    /// `unhealthy`.
    pub health: String,
    /// When a resting key is tried again (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_until_unix_ms: Option<i64>,
    pub created_at_unix_ms: i64,
    /// The models the upstream itself last listed (sorted); what `/v1/models`
    /// shows of a key granted by pattern.
    pub discovered_models: Vec<String>,
    /// When the upstream was last asked for its models (Unix ms); `null`: not yet.
    pub discovered_at_unix_ms: Option<i64>,
    /// Why that asking failed (`no model list` when the upstream has none); `null`
    /// when it answered.
    pub discovery_error: Option<String>,
}

/// Longest wait for a base URL's host name to resolve when a key is written.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

impl Service {
    /// The main account whose provider keys the caller manages.
    pub(super) fn key_owner(caller: &Caller) -> Result<AccountId, ApiError> {
        match caller {
            Caller::Root => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "the operator holds no provider keys; call with a main account's key",
            )),
            Caller::Account { account, .. } if account.parent.is_some() => Err(ApiError::new(
                ErrorCode::PermissionDenied,
                "only a main account manages provider keys",
            )),
            Caller::Account { account, .. } => Ok(account.id),
        }
    }

    /// Seal a secret for the provider key `id`. The record's id is the associated
    /// data: a sealed secret moved onto another record does not open.
    fn seal(&self, id: ProviderKeyId, secret: &str) -> Result<Sealed, ApiError> {
        self.keyring
            .seal(secret.as_bytes(), id.0.as_bytes())
            .map_err(|e| {
                tracing::error!(error = %e, "sealing a provider secret failed");
                ApiError::new(ErrorCode::Internal, "internal error")
            })
    }

    /// A base URL as [`validate_base_url`] accepts it, and whose host name does not
    /// resolve now to an address the operator does not allow: an early, clear
    /// refusal. A name that does not resolve now (or not within [`RESOLVE_TIMEOUT`])
    /// is accepted: it may exist later, and the data plane checks every address it
    /// connects to anyway, which is what keeps a name that changes its answer out.
    async fn checked_base_url(&self, raw: &str) -> Result<String, ApiError> {
        let networks = &self.options.upstream_networks;
        let base_url = validate_base_url(raw, networks)?;
        if networks.allow_private {
            return Ok(base_url);
        }
        let host = match url::Url::parse(&base_url).ok().and_then(|u| {
            u.host().and_then(|h| match h {
                url::Host::Domain(d) => Some(d.to_owned()),
                // Literal addresses were judged by `validate_base_url`.
                url::Host::Ipv4(_) | url::Host::Ipv6(_) => None,
            })
        }) {
            Some(host) => host,
            None => return Ok(base_url),
        };
        let resolving: Resolving = match &self.options.resolver {
            Some(resolver) => resolver.resolve(&host),
            None => {
                let host = host.clone();
                Box::pin(async move {
                    Ok(tokio::net::lookup_host((host.as_str(), 0))
                        .await?
                        .map(|addr| addr.ip())
                        .collect())
                })
            }
        };
        let resolved = match tokio::time::timeout(RESOLVE_TIMEOUT, resolving).await {
            Ok(Ok(resolved)) => resolved,
            Ok(Err(e)) => {
                tracing::info!(host, error = %e, "a provider base URL's host does not resolve now; accepted, checked when connecting");
                return Ok(base_url);
            }
            Err(_) => {
                tracing::info!(
                    host,
                    "a provider base URL's host did not resolve in time; accepted, checked when connecting"
                );
                return Ok(base_url);
            }
        };
        if let Some(refusal) = resolved.into_iter().find_map(|ip| networks.check(ip).err()) {
            return Err(ApiError::invalid_field(
                "base_url",
                format!(
                    "base_url {raw:?} resolves to an address upstreams may not have ({refusal}); the operator has not allowed this network for upstreams"
                ),
            ));
        }
        Ok(base_url)
    }

    /// `POST /x-keys`: an upstream provider key for the caller's main account.
    pub async fn add_provider_key(
        &self,
        caller: &Caller,
        req: AddProviderKey,
        now_ms: i64,
    ) -> Result<ProviderKeyView, ApiError> {
        let owner = Self::key_owner(caller)?;
        let (kind, passthrough) = validate_kind(&req.provider, req.protocol.as_deref())?;
        let secret = validate_secret_for(passthrough, kind, req.secret.as_deref())?;
        let id = ProviderKeyId::new();
        let mut record = ProviderKeyRecord {
            key: ProviderKey {
                id,
                owner,
                kind,
                passthrough,
                base_url: in_stored_form(kind, &self.checked_base_url(&req.base_url).await?),
                secret: match secret {
                    Some(secret) => self.seal(id, secret)?,
                    None => no_secret(),
                },
                level: validate_level(req.level.unwrap_or(1))?,
                models: validate_models(&req.models)?,
                weight: validate_weight(req.weight.unwrap_or(1))?,
                status: Status::Active,
                discovered_models: Vec::new(),
            },
            secret_hint: secret.map(secret_hint).unwrap_or_default(),
            health: "unknown".to_owned(),
            health_until_ms: None,
            created_at_ms: now_ms,
            discovered_at_ms: None,
            discovery_error: None,
        };
        // Asked before it is stored, so the key arrives with its list (one write,
        // one revision); a failure is recorded on the key, never a refusal of it.
        if self.options.discover_on_write {
            let outcome = self.discoverer.ask(&record.key).await;
            record.learn(&outcome, now_ms);
        }
        let audit = self.audit(
            caller,
            Some(owner),
            "provider_key.create",
            id.to_string(),
            None,
            state(provider_view(&record)),
        );
        let revision = self.store.add_provider_key(&record, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(provider_key = %id, owner = %owner, revision, "provider key added");
        Ok(provider_view(&record))
    }

    /// `GET /x-keys`.
    pub async fn provider_keys(&self, caller: &Caller) -> Result<Vec<ProviderKeyView>, ApiError> {
        let owner = Self::key_owner(caller)?;
        Ok(self
            .store
            .provider_keys(owner)
            .await?
            .iter()
            .map(provider_view)
            .collect())
    }

    async fn owned_provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
    ) -> Result<ProviderKeyRecord, ApiError> {
        let owner = Self::key_owner(caller)?;
        self.store.provider_key(owner, id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, format!("provider key {id} not found"))
        })
    }

    /// `GET /x-keys/{id}`.
    pub async fn provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
    ) -> Result<ProviderKeyView, ApiError> {
        Ok(provider_view(&self.owned_provider_key(caller, id).await?))
    }

    /// `PATCH /x-keys/{id}`: change any setting; a new secret is sealed anew.
    pub async fn update_provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
        req: UpdateProviderKey,
    ) -> Result<ProviderKeyView, ApiError> {
        let mut record = self.owned_provider_key(caller, id).await?;
        let before = provider_view(&record);
        let was_active = record.key.status == Status::Active;
        let (old_kind, old_base_url) = (record.key.kind, record.key.base_url.clone());
        let was_passthrough = record.key.passthrough;
        let k = &mut record.key;
        let mut changed = false;
        if req.provider.is_some() || req.protocol.is_some() {
            let provider = req.provider.as_deref().unwrap_or(api_kind(k));
            // A passthrough key keeps its protocol unless one is given.
            let protocol = req
                .protocol
                .as_deref()
                .or((k.passthrough && provider == passthrough::KIND).then(|| k.kind.as_str()));
            (k.kind, k.passthrough) = validate_kind(provider, protocol)?;
            changed = true;
        }
        if let Some(url) = &req.base_url {
            k.base_url = self.checked_base_url(url).await?;
            changed = true;
        }
        if req.provider.is_some() || req.protocol.is_some() || req.base_url.is_some() {
            k.base_url = in_stored_form(k.kind, &k.base_url);
        }
        if let Some(models) = &req.models {
            k.models = validate_models(models)?;
            changed = true;
        }
        if let Some(level) = req.level {
            k.level = validate_level(level)?;
            changed = true;
        }
        if let Some(weight) = req.weight {
            k.weight = validate_weight(weight)?;
            changed = true;
        }
        if let Some(status) = &req.status {
            k.status = Status::parse(status).ok_or_else(|| {
                ApiError::invalid_field(
                    "status",
                    format!("status must be \"active\" or \"disabled\", not {status:?}"),
                )
            })?;
            changed = true;
        }
        match validate_secret_for(k.passthrough, k.kind, req.secret.as_deref()) {
            Ok(Some(secret)) => {
                k.secret = self.seal(id, secret)?;
                record.secret_hint = secret_hint(secret);
                changed = true;
            }
            // Turned passthrough: the secret it held goes.
            Ok(None) if k.passthrough && !was_passthrough => {
                k.secret = no_secret();
                record.secret_hint = String::new();
            }
            Ok(None) => {}
            // A key that held a secret keeps it; one turned from passthrough needs one.
            Err(_) if req.secret.is_none() && !was_passthrough => {}
            Err(e) => return Err(e),
        }
        if !changed {
            return Err(ApiError::invalid("nothing to change"));
        }
        if record.key.kind != old_kind
            || record.key.passthrough != was_passthrough
            || record.key.base_url != old_base_url
        {
            // Learnt from another upstream: the store drops it in the same update.
            record.key.discovered_models.clear();
            record.discovered_at_ms = None;
            record.discovery_error = None;
        }
        let audit = self.audit(
            caller,
            Some(record.key.owner),
            "provider_key.update",
            id.to_string(),
            state(before),
            state(provider_view(&record)),
        );
        let revision = self.store.update_provider_key(&record, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(provider_key = %id, revision, "provider key updated");
        let repointed = req.provider.is_some()
            || req.protocol.is_some()
            || req.base_url.is_some()
            || req.secret.is_some();
        let woken = !was_active && record.key.status == Status::Active;
        if self.options.discover_on_write
            && record.key.status == Status::Active
            && (repointed || woken)
        {
            // Answered with what the upstream said; its failure is the key's to show,
            // and a failure to record it does not undo the update.
            if let Err(e) = self.discoverer.discover(&record.key).await {
                tracing::warn!(provider_key = %id, error = %e, "recording a model list failed");
            }
            return Ok(provider_view(&self.owned_provider_key(caller, id).await?));
        }
        Ok(provider_view(&record))
    }

    /// `POST /x-keys/{id}/discover`: ask the key's upstream for its models now and
    /// answer the key as it is afterwards (the list, or why it could not be had).
    pub async fn discover_provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
    ) -> Result<ProviderKeyView, ApiError> {
        let record = self.owned_provider_key(caller, id).await?;
        self.discoverer.discover(&record.key).await?;
        Ok(provider_view(&self.owned_provider_key(caller, id).await?))
    }

    /// `DELETE /x-keys/{id}`.
    pub async fn delete_provider_key(
        &self,
        caller: &Caller,
        id: ProviderKeyId,
    ) -> Result<(), ApiError> {
        let existing = self.owned_provider_key(caller, id).await?;
        let owner = existing.key.owner;
        let audit = self.audit(
            caller,
            Some(owner),
            "provider_key.delete",
            id.to_string(),
            state(provider_view(&existing)),
            None,
        );
        let revision = self.store.delete_provider_key(owner, id, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(provider_key = %id, revision, "provider key deleted");
        Ok(())
    }
}

fn provider_view(r: &ProviderKeyRecord) -> ProviderKeyView {
    ProviderKeyView {
        id: r.key.id,
        provider: api_kind(&r.key),
        protocol: r.key.kind.as_str(),
        base_url: r.key.base_url.clone(),
        secret_hint: r.secret_hint.clone(),
        models: r.key.models.iter().map(ToString::to_string).collect(),
        level: r.key.level,
        weight: r.key.weight,
        status: r.key.status.as_str(),
        health: r.health.clone(),
        health_until_unix_ms: r.health_until_ms,
        created_at_unix_ms: r.created_at_ms,
        discovered_models: r.key.discovered_models.clone(),
        discovered_at_unix_ms: r.discovered_at_ms,
        discovery_error: r.discovery_error.clone(),
    }
}

/// A key's kind as the API names it: its provider kind, or `passthrough`.
fn api_kind(key: &ProviderKey) -> &'static str {
    if key.passthrough {
        passthrough::KIND
    } else {
        key.kind.as_str()
    }
}

/// The protocol and whether the key is passthrough, from the API's `provider` and
/// `protocol`: a passthrough key names its protocol; any other speaks its own (a
/// `protocol` naming it again is accepted, another refused).
fn validate_kind(provider: &str, protocol: Option<&str>) -> Result<(ProviderKind, bool), ApiError> {
    if provider == passthrough::KIND {
        let protocol = protocol.ok_or_else(|| {
            unfit(
                "protocol",
                "protocol is required for a passthrough key: \"anthropic\" or \"openai\"",
            )
        })?;
        let kind = passthrough::parse_protocol(protocol)
            .map_err(|e| ApiError::invalid_field("protocol", e.to_string()))?;
        return Ok((kind, true));
    }
    let kind = ProviderKind::parse(provider).ok_or_else(|| {
        ApiError::invalid_field(
            "provider",
            format!(
            "provider must be \"openai\", \"anthropic\", \"gemini\" or \"passthrough\", not {provider:?}"
        ),
        )
    })?;
    match protocol {
        Some(p) if p != kind.as_str() => Err(unfit(
            "protocol",
            format!(
                "protocol {p:?} applies to passthrough keys only; an {provider:?} key speaks its own"
            ),
        )),
        _ => Ok((kind, false)),
    }
}

/// The secret a key of this kind is written with: none for a passthrough key (each
/// call brings its caller's credential, and none is ever stored), one otherwise.
fn validate_secret_for(
    passthrough: bool,
    kind: ProviderKind,
    secret: Option<&str>,
) -> Result<Option<&str>, ApiError> {
    match (passthrough, secret) {
        (true, None) => Ok(None),
        (true, Some(_)) => Err(unfit(
            "secret",
            "secret: a passthrough key holds none; each call carries its caller's own provider credential",
        )),
        (false, Some(secret)) => validate_secret(secret).map(Some),
        (false, None) => Err(unfit(
            "secret",
            format!("secret is required for an {:?} key", kind.as_str()),
        )),
    }
}

/// A request well formed field by field whose fields do not fit together (a
/// protocol on a key that speaks its own, a secret for a passthrough key or none for
/// another): 422, as the OpenAPI document's schemas cannot say it.
fn unfit(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unprocessable, message).about(field)
}

/// What a passthrough key holds where others hold their sealed secret.
fn no_secret() -> Sealed {
    Sealed {
        key_id: String::new(),
        blob: Vec::new(),
    }
}

fn validate_secret(secret: &str) -> Result<&str, ApiError> {
    let secret = secret.trim();
    if secret.is_empty()
        || secret.chars().count() > MAX_SECRET
        || secret.chars().any(char::is_control)
    {
        return Err(ApiError::invalid_field(
            "secret",
            format!("secret must be 1-{MAX_SECRET} printable characters"),
        ));
    }
    Ok(secret)
}

fn validate_models(models: &[String]) -> Result<Vec<ModelPattern>, ApiError> {
    if models.is_empty() || models.len() > MAX_MODELS {
        return Err(ApiError::invalid_field(
            "models",
            format!("models must list 1-{MAX_MODELS} names or `prefix*` patterns"),
        ));
    }
    models
        .iter()
        .map(|m| {
            m.parse::<ModelPattern>()
                .map_err(|e| ApiError::invalid_field("models", format!("models: {e}")))
        })
        .collect()
}

fn validate_level(level: u32) -> Result<u32, ApiError> {
    if level > MAX_LEVEL {
        return Err(ApiError::invalid_field(
            "level",
            format!("level must be 0-{MAX_LEVEL}"),
        ));
    }
    Ok(level)
}

fn validate_weight(weight: u32) -> Result<u32, ApiError> {
    if weight == 0 || weight > MAX_WEIGHT {
        return Err(ApiError::invalid_field(
            "weight",
            format!("weight must be 1-{MAX_WEIGHT}"),
        ));
    }
    Ok(weight)
}

/// Only the last four characters, and only of secrets long enough to spare them.
fn secret_hint(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 12 {
        return "****".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("****{tail}")
}

/// [`crate::upstream_url::check`], refused as an invalid request.
pub fn validate_base_url(raw: &str, networks: &UpstreamNetworks) -> Result<String, ApiError> {
    crate::upstream_url::check(raw, networks).map_err(|e| ApiError::invalid_field("base_url", e.0))
}

/// A checked base URL with its path in the form stored for `kind`
/// (`core::base_url`): the forms each provider's SDK takes are accepted.
pub fn in_stored_form(kind: ProviderKind, base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(mut url) => {
            url.set_path(&switchyard_core::base_url::normalised_path(
                kind,
                url.path(),
            ));
            url.as_str().trim_end_matches('/').to_owned()
        }
        // Checked already; nothing to normalise otherwise.
        Err(_) => base_url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_stored_in_one_form_per_kind() {
        let stored = |kind, url| in_stored_form(kind, url);
        let (openai, anthropic) = (ProviderKind::OpenAi, ProviderKind::Anthropic);
        assert_eq!(
            stored(anthropic, "https://api.anthropic.com"),
            "https://api.anthropic.com/v1"
        );
        assert_eq!(
            stored(anthropic, "https://api.anthropic.com/v1"),
            "https://api.anthropic.com/v1"
        );
        assert_eq!(
            stored(anthropic, "https://api.deepseek.com/anthropic"),
            "https://api.deepseek.com/anthropic/v1"
        );
        assert_eq!(
            stored(openai, "https://api.openai.com"),
            "https://api.openai.com/v1"
        );
        assert_eq!(
            stored(openai, "https://openrouter.ai/api/v1"),
            "https://openrouter.ai/api/v1"
        );
        assert_eq!(
            stored(openai, "http://10.0.0.5:8000/v1/chat/completions"),
            "http://10.0.0.5:8000/v1"
        );
        let gemini = ProviderKind::Gemini;
        for sdk_form in [
            "https://generativelanguage.googleapis.com",
            "https://generativelanguage.googleapis.com/",
            "https://generativelanguage.googleapis.com/v1beta",
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        ] {
            assert_eq!(
                stored(gemini, sdk_form),
                switchyard_core::base_url::GEMINI_DEFAULT
            );
        }
        // Refused forms stay refused before any normalising.
        let strict = UpstreamNetworks::default();
        assert!(validate_base_url("http://127.0.0.1", &strict).is_err());
        assert!(validate_base_url("https://api.anthropic.com?beta=1", &strict).is_err());
    }

    #[test]
    fn base_urls() {
        let strict = UpstreamNetworks::default();
        assert_eq!(
            validate_base_url("https://api.openai.com/v1/", &strict).unwrap(),
            "https://api.openai.com/v1"
        );
        for bad in [
            "ftp://x.com",
            "not a url",
            "https://user:pw@api.x.com/v1",
            "https://api.x.com/v1?a=b",
            "http://127.0.0.1:8000/v1",
            "http://10.1.2.3/v1",
            "http://192.168.1.1",
            "http://169.254.169.254/latest",
            "http://[::1]:80",
            "http://[fd00::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://localhost:11434/v1",
            "http://metadata.google.internal/",
            "http://100.64.0.1/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://224.0.0.1/",
            "http://198.18.0.1/",
            "http://0x7f.1/",
        ] {
            let error = validate_base_url(bad, &strict).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidRequest, "{bad}");
        }
        let refused = validate_base_url("http://[64:ff9b::a9fe:a9fe]/", &strict).unwrap_err();
        assert!(
            refused
                .message
                .contains("carries 169.254.169.254, link-local"),
            "{}",
            refused.message
        );
        let all = UpstreamNetworks::new(true, Vec::new());
        assert!(validate_base_url("http://127.0.0.1:8000/v1", &all).is_ok());
        assert!(validate_base_url("http://localhost:11434/v1", &all).is_ok());
        let some = UpstreamNetworks::new(false, vec!["10.1.0.0/16".parse().unwrap()]);
        assert!(validate_base_url("http://10.1.2.3/v1", &some).is_ok());
        assert!(validate_base_url("http://10.2.0.1/v1", &some).is_err());
        // Names are left to resolution when some networks are allowed.
        assert!(validate_base_url("http://router.internal/v1", &some).is_ok());
    }

    #[test]
    fn hints_reveal_little() {
        assert_eq!(secret_hint("sk-abcdefghijklmnop"), "****mnop");
        assert_eq!(secret_hint("short"), "****");
    }
}

//! The snapshot and its parts (policies, rules) in their wire form and back. The
//! control plane encodes; data planes decode and validate; the Admin API's gRPC face
//! uses the policy and rules conversions too.

use ipnet::IpNet;
use switchyard_core::apikey::KeyHash;
use switchyard_core::billing::Billing;
use switchyard_core::crypto::Sealed;
use switchyard_core::forward;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::model::ModelPattern;
use switchyard_core::policy::{CreditLimit, ModelLimit, Period, Policy};
use switchyard_core::rules::{LimitSettings, Price, Rules, StoreDown, TranslationSettings};
use switchyard_core::snapshot::{
    Account, Configuration, IssuedKey, ProviderKey, ProviderKind, Snapshot, Status,
};
use switchyard_proto::v1 as pb;

fn encode_status(s: Status) -> i32 {
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

fn encode_model_limits(
    limits: &std::collections::BTreeMap<ModelPattern, ModelLimit>,
) -> std::collections::HashMap<String, pb::ModelLimit> {
    limits
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
        .collect()
}

pub fn encode_policy(p: &Policy) -> pb::Policy {
    pb::Policy {
        models: strings(&p.models),
        resources: strings(&p.resources),
        client_cidrs: strings(&p.client_cidrs),
        rpm: p.rpm,
        key_rpm: p.key_rpm,
        model_limits: encode_model_limits(&p.model_limits),
        credit: p.credit.map(|c| pb::CreditLimit {
            limit_nanos: c.limit_nanos,
            period: match c.period {
                Period::Day => "day".into(),
                Period::Month => "month".into(),
            },
        }),
        forbid_translation: p.forbid_translation,
    }
}

pub fn encode_billing(b: &Billing) -> pb::Billing {
    pb::Billing {
        multiplier_ppm: b.multiplier_ppm,
        prices: b
            .prices
            .iter()
            .map(|(k, p)| (k.to_string(), encode_price(p)))
            .collect(),
    }
}

pub fn encode_price(p: &Price) -> pb::Price {
    pb::Price {
        input_per_million_nanos: p.input_per_million_nanos,
        cached_input_per_million_nanos: p.cached_input_per_million_nanos,
        cache_write_per_million_nanos: p.cache_write_per_million_nanos,
        output_per_million_nanos: p.output_per_million_nanos,
        per_request_nanos: p.per_request_nanos,
    }
}

fn decode_price(p: pb::Price) -> Price {
    Price {
        input_per_million_nanos: p.input_per_million_nanos,
        cached_input_per_million_nanos: p.cached_input_per_million_nanos,
        cache_write_per_million_nanos: p.cache_write_per_million_nanos,
        output_per_million_nanos: p.output_per_million_nanos,
        per_request_nanos: p.per_request_nanos,
    }
}

/// Billing from the wire, validated.
pub fn decode_billing(b: pb::Billing) -> Result<Billing, ValueError> {
    let billing = Billing {
        multiplier_ppm: b.multiplier_ppm,
        prices: patterns(
            b.prices.into_iter().map(|(k, p)| (k, decode_price(p))),
            "billing prices",
        )?,
    };
    billing.validate()?;
    Ok(billing)
}

pub fn encode_rules(owner: AccountId, r: &Rules) -> pb::Rules {
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
        model_limits: encode_model_limits(&r.model_limits),
        pricing: r
            .pricing
            .iter()
            .map(|(k, p)| (k.to_string(), encode_price(p)))
            .collect(),
        limits: Some(pb::LimitSettings {
            default_max_output_tokens: r.limits.default_max_output_tokens,
            when_store_down: match r.limits.when_store_down {
                StoreDown::FailClosed => pb::StoreDown::FailClosed,
                StoreDown::FailOpen => pb::StoreDown::FailOpen,
            }
            .into(),
            omit_quota_headers: !r.limits.quota_headers,
        }),
        forward_headers: r.forward_headers.clone(),
        translation_disabled: !r.translation.enabled,
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
                status: encode_status(a.status),
                policy: Some(encode_policy(&a.policy)),
                billing: Some(encode_billing(&a.billing)),
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
                status: encode_status(k.status),
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
                    ProviderKind::Gemini => pb::ProviderKind::Gemini.into(),
                },
                passthrough: p.passthrough,
                base_url: p.base_url.clone(),
                secret: Some(pb::SealedSecret {
                    key_id: p.secret.key_id.clone(),
                    blob: p.secret.blob.clone(),
                }),
                level: p.level,
                models: p.models.iter().map(ToString::to_string).collect(),
                weight: p.weight,
                status: encode_status(p.status),
                discovered_models: p.discovered_models.clone(),
            })
            .collect(),
        rules: s
            .rules
            .iter()
            .map(|(owner, r)| encode_rules(*owner, r))
            .collect(),
    }
}

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
    Policy { account: String, why: ValueError },
    #[error("account {account}: billing: {why}")]
    Billing { account: String, why: ValueError },
    #[error("rules of {owner}: {why}")]
    Rules { owner: String, why: ValueError },
}

/// Why a policy, billing or rules message is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    /// An entry of a list or a key of a map that does not parse.
    #[error("{field} {value:?}: {why}")]
    Entry {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("{field}: more than {max} entries")]
    TooMany { field: &'static str, max: usize },
    #[error("limits when_store_down {0}")]
    StoreDown(i32),
    #[error("credit period {0:?}")]
    CreditPeriod(String),
    #[error(transparent)]
    Policy(#[from] switchyard_core::policy::PolicyError),
    #[error(transparent)]
    Billing(#[from] switchyard_core::billing::BillingError),
}

impl ValueError {
    fn entry(field: &'static str, value: &str, why: impl std::fmt::Display) -> Self {
        Self::Entry {
            field,
            value: value.to_owned(),
            why: why.to_string(),
        }
    }
}

fn parse_list<T: std::str::FromStr>(
    list: Option<pb::StringList>,
    field: &'static str,
) -> Result<Option<Vec<T>>, ValueError>
where
    T::Err: std::fmt::Display,
{
    list.map(|l| {
        l.values
            .iter()
            .map(|v| v.parse::<T>().map_err(|e| ValueError::entry(field, v, e)))
            .collect()
    })
    .transpose()
}

fn patterns<T>(
    map: impl IntoIterator<Item = (String, T)>,
    field: &'static str,
) -> Result<std::collections::BTreeMap<ModelPattern, T>, ValueError> {
    map.into_iter()
        .map(|(k, v)| {
            k.parse::<ModelPattern>()
                .map(|p| (p, v))
                .map_err(|e| ValueError::entry(field, &k, e))
        })
        .collect()
}

pub fn decode_rules(r: pb::Rules) -> Result<Rules, ValueError> {
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
            r.pricing.into_iter().map(|(k, p)| (k, decode_price(p))),
            "pricing",
        )?,
        limits: r
            .limits
            .map(decode_limit_settings)
            .transpose()?
            .unwrap_or_default(),
        forward_headers: forward_headers(r.forward_headers)?,
        translation: TranslationSettings {
            enabled: !r.translation_disabled,
        },
    })
}

/// Header names an owner added to the forwarded ones: lowercase, each one an owner
/// may add (the control plane checked; a snapshot is not trusted to have been).
fn forward_headers(names: Vec<String>) -> Result<Vec<String>, ValueError> {
    if names.len() > forward::MAX_OWNER_HEADERS {
        return Err(ValueError::TooMany {
            field: "forward_headers",
            max: forward::MAX_OWNER_HEADERS,
        });
    }
    names
        .into_iter()
        .map(|name| match forward::owner_name_problem(&name) {
            Some(problem) => Err(ValueError::entry("forward_headers", &name, problem)),
            None => Ok(name.to_ascii_lowercase()),
        })
        .collect()
}

fn decode_limit_settings(l: pb::LimitSettings) -> Result<LimitSettings, ValueError> {
    let when_store_down = match pb::StoreDown::try_from(l.when_store_down) {
        Ok(pb::StoreDown::Unspecified | pb::StoreDown::FailClosed) => StoreDown::FailClosed,
        Ok(pb::StoreDown::FailOpen) => StoreDown::FailOpen,
        Err(_) => return Err(ValueError::StoreDown(l.when_store_down)),
    };
    Ok(LimitSettings {
        default_max_output_tokens: l.default_max_output_tokens,
        when_store_down,
        quota_headers: !l.omit_quota_headers,
    })
}

pub fn decode_policy(p: pb::Policy) -> Result<Policy, ValueError> {
    let mut model_limits = std::collections::BTreeMap::new();
    for (pattern, limit) in p.model_limits {
        let pattern = pattern
            .parse::<ModelPattern>()
            .map_err(|e| ValueError::entry("model_limits", &pattern, e))?;
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
                other => return Err(ValueError::CreditPeriod(other.to_owned())),
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
        forbid_translation: p.forbid_translation,
    };
    policy.validate()?;
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

pub fn decode_issued_key(k: pb::IssuedKey) -> Result<IssuedKey, DecodeError> {
    Ok(IssuedKey {
        hash: KeyHash::from_slice(&k.hash).ok_or_else(|| DecodeError::Hash(k.id.clone()))?,
        id: decode_issued_key_id(&k.id)?,
        account: id::<AccountId>("issued_key.account_id", &k.account_id)?,
        expires_at_ms: k.expires_at_unix_ms,
        status: status("issued_key.status", k.status)?,
    })
}

pub fn decode_issued_key_id(text: &str) -> Result<IssuedKeyId, DecodeError> {
    id::<IssuedKeyId>("issued_key.id", text)
}

/// The wire snapshot as plain data. Beyond this edge nothing touches prost types.
pub fn decode(s: pb::Snapshot) -> Result<Snapshot, DecodeError> {
    let issued_keys = s
        .issued_keys
        .into_iter()
        .map(decode_issued_key)
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let config = configuration(s.accounts, s.provider_keys, s.rules)?;
    Ok(Snapshot {
        version: s.version,
        accounts: config.accounts,
        issued_keys,
        provider_keys: config.provider_keys,
        rules: config.rules,
    })
}

/// The configuration of a wire snapshot (everything but its issued keys), read
/// without touching the keys: what a data plane rebuilds when a delta changes it.
pub fn decode_configuration(s: &pb::Snapshot) -> Result<Configuration, DecodeError> {
    configuration(s.accounts.clone(), s.provider_keys.clone(), s.rules.clone())
}

fn configuration(
    accounts: Vec<pb::Account>,
    provider_keys: Vec<pb::ProviderKey>,
    rules: Vec<pb::Rules>,
) -> Result<Configuration, DecodeError> {
    let accounts = accounts
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
                billing: decode_billing(a.billing.unwrap_or_default()).map_err(|why| {
                    DecodeError::Billing {
                        account: a.id.clone(),
                        why,
                    }
                })?,
                name: a.name,
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let provider_keys = provider_keys
        .into_iter()
        .map(|p| {
            let kind = match pb::ProviderKind::try_from(p.kind) {
                Ok(pb::ProviderKind::Openai) => ProviderKind::OpenAi,
                Ok(pb::ProviderKind::Anthropic) => ProviderKind::Anthropic,
                Ok(pb::ProviderKind::Gemini) => ProviderKind::Gemini,
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
                passthrough: p.passthrough,
                base_url: p.base_url,
                secret: Sealed {
                    key_id: secret.key_id,
                    blob: secret.blob,
                },
                level: p.level,
                models,
                weight: p.weight,
                status: status("provider_key.status", p.status)?,
                // Kept as the control plane keeps them: a list past the bounds is
                // narrowed, never a reason to refuse the whole snapshot.
                discovered_models: switchyard_core::model_list::kept(p.discovered_models),
            })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    let rules = rules
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
    Ok(Configuration {
        accounts,
        provider_keys,
        rules,
    })
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
            billing: None,
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

    /// An active provider key of `kind` serving `models`.
    fn provider_key(owner: AccountId, kind: ProviderKind, models: &str) -> ProviderKey {
        ProviderKey {
            id: ProviderKeyId::new(),
            owner,
            kind,
            passthrough: false,
            base_url: "https://api.example.com/v1".into(),
            secret: Sealed {
                key_id: "k".into(),
                blob: vec![0; 40],
            },
            level: 1,
            models: vec![models.parse().unwrap()],
            weight: 1,
            status: Status::Active,
            discovered_models: Vec::new(),
        }
    }

    #[test]
    fn every_provider_kind_travels_and_an_unknown_one_is_refused() {
        let owner = AccountId::new();
        for kind in ProviderKind::ALL {
            let snapshot = Snapshot {
                version: 1,
                provider_keys: vec![provider_key(owner, kind, "gemini-*")],
                ..Default::default()
            };
            let wire = encode(&snapshot);
            assert_eq!(decode(wire.clone()).unwrap(), snapshot, "{kind:?}");
            for unknown in [0, 4, -1] {
                let mut bad = wire.clone();
                bad.provider_keys[0].kind = unknown;
                assert!(
                    matches!(decode(bad), Err(DecodeError::Kind(_))),
                    "{unknown}"
                );
            }
        }
    }

    #[test]
    fn discovered_models_travel_and_are_narrowed_on_arrival() {
        let owner = AccountId::new();
        let snapshot = Snapshot {
            version: 3,
            accounts: vec![Account {
                id: owner,
                parent: None,
                name: "a".into(),
                status: Status::Active,
                policy: Policy::default(),
                billing: Billing::default(),
            }],
            provider_keys: vec![ProviderKey {
                discovered_models: vec!["gpt-4o".into(), "o3".into()],
                ..provider_key(owner, ProviderKind::OpenAi, "*")
            }],
            ..Default::default()
        };
        let mut wire = encode(&snapshot);
        assert_eq!(decode(wire.clone()).unwrap(), snapshot);
        // A passthrough key travels as one: no secret, its protocol as its kind.
        let mut passthrough = snapshot.clone();
        let key = &mut passthrough.provider_keys[0];
        key.passthrough = true;
        key.kind = ProviderKind::Anthropic;
        key.secret = Sealed {
            key_id: String::new(),
            blob: Vec::new(),
        };
        assert_eq!(decode(encode(&passthrough)).unwrap(), passthrough);
        wire.provider_keys[0].discovered_models =
            vec!["o3".into(), "bad\u{0}".into(), "gpt-4o".into(), "o3".into()];
        assert_eq!(
            decode(wire).unwrap().provider_keys[0].discovered_models,
            ["gpt-4o", "o3"]
        );
    }

    #[test]
    fn limit_settings_round_trip() {
        let owner = AccountId::new();
        let mut rules = Rules::default();
        assert_eq!(decode_rules(encode_rules(owner, &rules)), Ok(rules.clone()));
        rules.limits = LimitSettings {
            default_max_output_tokens: Some(300),
            when_store_down: StoreDown::FailOpen,
            quota_headers: false,
        };
        assert_eq!(decode_rules(encode_rules(owner, &rules)), Ok(rules.clone()));
        // An older control plane sends no settings: the defaults apply.
        let mut wire = encode_rules(owner, &rules);
        wire.limits = None;
        assert_eq!(
            decode_rules(wire).map(|r| r.limits),
            Ok(LimitSettings::default())
        );
        let mut wire = encode_rules(owner, &rules);
        if let Some(l) = wire.limits.as_mut() {
            l.when_store_down = 9;
        }
        assert!(decode_rules(wire).is_err());
    }

    #[test]
    fn forwarded_header_names_round_trip_and_refused_ones_do_not_decode() {
        let owner = AccountId::new();
        let rules = Rules {
            forward_headers: vec!["x-my-header".into(), "x-team".into()],
            ..Rules::default()
        };
        assert_eq!(decode_rules(encode_rules(owner, &rules)), Ok(rules.clone()));
        let mut wire = encode_rules(owner, &rules);
        wire.forward_headers = vec!["X-Upper".into()];
        assert_eq!(
            decode_rules(wire).map(|r| r.forward_headers),
            Ok(vec!["x-upper".to_owned()])
        );
        for refused in ["authorization", "Cookie", "x y", ""] {
            let mut wire = encode_rules(owner, &rules);
            wire.forward_headers = vec![refused.into()];
            assert!(decode_rules(wire).is_err(), "{refused:?}");
        }
        let mut wire = encode_rules(owner, &rules);
        wire.forward_headers = (0..=forward::MAX_OWNER_HEADERS)
            .map(|i| format!("x-h{i}"))
            .collect();
        assert!(decode_rules(wire).is_err());
    }
}

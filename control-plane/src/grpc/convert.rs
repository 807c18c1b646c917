//! Between the service layer's views and the protobuf messages: views out,
//! policies, billing, rules and ids in (a malformed one is the caller's error).

use switchyard_core::billing::Billing;
use switchyard_core::policy::Policy;
use switchyard_core::rules::Rules;
use switchyard_proto::v1 as pb;
use switchyard_wire::snapshot::{
    decode_billing, decode_policy, decode_rules, encode_billing, encode_policy,
};
use tonic::Status;

use crate::service::{
    AccountInfo, AccountView, CreatedKey, CreditView, IssuedKeyView, ProviderKeyView,
};
use crate::store::NewsItem;

pub(super) fn provider_view(v: ProviderKeyView) -> pb::ProviderKeyView {
    pb::ProviderKeyView {
        id: v.id.to_string(),
        provider: v.provider.to_owned(),
        protocol: v.protocol.to_owned(),
        base_url: v.base_url,
        secret_hint: v.secret_hint,
        models: v.models,
        level: v.level,
        weight: v.weight,
        status: v.status.to_owned(),
        created_at_unix_ms: v.created_at_unix_ms,
        health: v.health,
        health_until_unix_ms: v.health_until_unix_ms,
    }
}

pub(super) fn rules_in(r: Option<pb::Rules>) -> Result<Rules, Status> {
    decode_rules(r.unwrap_or_default())
        .map_err(|why| Status::invalid_argument(format!("rules: {why}")))
}

pub(super) fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

pub(super) fn account_view(a: AccountView) -> pb::AccountView {
    pb::AccountView {
        id: a.id.to_string(),
        parent_id: a.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        name: a.name,
        status: a.status.to_owned(),
        created_at_unix_ms: a.created_at_unix_ms,
    }
}

pub(super) fn account_info(i: AccountInfo) -> pb::AccountInfo {
    pb::AccountInfo {
        account: Some(account_view(i.account)),
        policy: Some(encode_policy(&i.policy)),
        effective_policy: Some(encode_policy(&i.effective_policy)),
        billing: Some(encode_billing(&i.billing)),
        ancestors: i.ancestors.iter().map(ToString::to_string).collect(),
    }
}

pub(super) fn key_view(k: IssuedKeyView) -> pb::IssuedKeyView {
    pb::IssuedKeyView {
        id: k.id.to_string(),
        tail: k.tail,
        status: k.status.to_owned(),
        expires_at_unix_ms: k.expires_at_unix_ms,
        created_at_unix_ms: k.created_at_unix_ms,
        in_use: k.in_use,
    }
}

pub(super) fn created_key(c: CreatedKey) -> pb::CreatedKey {
    pb::CreatedKey {
        api_key: c.api_key,
        key: Some(key_view(c.key)),
    }
}

pub(super) fn credit_view(v: CreditView) -> pb::CreditView {
    pb::CreditView {
        account_id: v.account_id.to_string(),
        allocated_nanos: v.allocated_nanos,
        delegated_nanos: v.delegated_nanos,
        available_to_delegate_nanos: v.available_to_delegate_nanos,
        ledger: v
            .ledger
            .into_iter()
            .map(|e| pb::CreditEntry {
                id: e.id,
                at_unix_ms: e.at_unix_ms,
                account_id: e.account_id,
                parent_id: e.parent_id.unwrap_or_default(),
                actor: e.actor,
                amount_nanos: e.amount_nanos,
                note: e.note,
            })
            .collect(),
    }
}

pub(super) fn news_item(n: NewsItem) -> pb::NewsItem {
    pb::NewsItem {
        id: n.id,
        author_id: n.author_id.unwrap_or_default(),
        at_unix_ms: n.at_unix_ms,
        title: n.title,
        body: n.body,
    }
}

/// A policy from the wire; malformed entries are the caller's error.
pub(super) fn policy_in(p: Option<pb::Policy>) -> Result<Option<Policy>, Status> {
    p.map(|p| decode_policy(p).map_err(|why| Status::invalid_argument(format!("policy: {why}"))))
        .transpose()
}

/// Billing from the wire; malformed entries are the caller's error.
pub(super) fn billing_in(b: Option<pb::Billing>) -> Result<Option<Billing>, Status> {
    b.map(|b| decode_billing(b).map_err(|why| Status::invalid_argument(format!("billing: {why}"))))
        .transpose()
}

pub(super) fn parsed<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, Status> {
    text.parse()
        .map_err(|_| Status::invalid_argument(format!("{text:?} is not a valid {what}")))
}

//! One account of the caller's tree (`/accounts/{id}`): its policy edited beside the
//! parent's effective bounds, rename, disable and enable, its billing rule (for its
//! direct parent), credit top-ups and withdrawals with the ledger, and keys issued
//! for it (shown once). Each form calls the service method its REST route calls.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;
use switchyard_core::policy::Policy;
use switchyard_runtime::now_ms;

use super::form::{self, PolicyText};
use super::{AccountLine, PAGE_SIZE};
use crate::console::Console;
use crate::console::pages::keys::expiry;
use crate::console::pages::{form_status, pretty, refusal};
use crate::console::session::{Fields, Posted, Signed, account_id};
use crate::console::views::{self, Nav, Refusal, dollars, when};
use crate::rest::decode_object;
use crate::service::{
    AllocateCredit, ApiError, Caller, LedgerQuery, NewKey, TreeQuery, UpdateAccount,
};

/// What a form left for the account page to show: its refusals (each beside its
/// field), what was typed, a key just issued, or what was saved.
#[derive(Default)]
pub struct Shown {
    refusals: Vec<Refusal>,
    policy: Option<PolicyText>,
    name: Option<String>,
    billing: Option<(String, String)>,
    amount: String,
    direction: String,
    note: String,
    expires: String,
    key: Option<String>,
    saved: Option<&'static str>,
    /// Which page of the credit ledger.
    ledger_page: u32,
}

impl Shown {
    fn refused(refusal: Refusal) -> Self {
        Self {
            refusals: vec![refusal],
            ..Self::default()
        }
    }
}

/// What each of the parent's effective policy fields allows, as text.
pub struct Bounds {
    pub models: String,
    pub resources: String,
    pub client_cidrs: String,
    pub rpm: String,
    pub key_rpm: String,
    pub model_limits: String,
    pub credit: String,
}

impl Bounds {
    fn of(p: &Policy) -> Self {
        let text = PolicyText::of(p);
        let or = |t: String, none: &str| {
            if t.is_empty() {
                none.to_owned()
            } else {
                t.replace('\n', ", ")
            }
        };
        Self {
            models: or(text.models, "any model"),
            resources: or(text.resources, "any path"),
            client_cidrs: or(text.client_cidrs, "any network"),
            rpm: or(text.rpm, "no limit"),
            key_rpm: or(text.key_rpm, "no limit"),
            model_limits: or(text.model_limits, "none"),
            credit: if p.credit.is_some() {
                format!("${} a {}", text.credit, text.period)
            } else {
                "no cap".to_owned()
            },
        }
    }

    fn unknown(why: &str) -> Self {
        let t = || why.to_owned();
        Self {
            models: t(),
            resources: t(),
            client_cidrs: t(),
            rpm: t(),
            key_rpm: t(),
            model_limits: t(),
            credit: t(),
        }
    }
}

pub struct LedgerLine {
    pub at: String,
    pub actor: String,
    pub amount: String,
    pub note: String,
}

pub struct Credit {
    pub allocated: String,
    pub delegated: String,
    pub available: Option<String>,
    /// One page of the ledger, newest first.
    pub ledger: Vec<LedgerLine>,
    pub previous: Option<u32>,
    pub next: Option<u32>,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub nav: Nav,
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
    /// The parent's id and name, when the caller may see it.
    pub parent: Option<(String, String)>,
    /// The caller's own account: the page only shows it (its parent changes it).
    pub own: bool,
    /// The caller is its direct parent: billing and credit are its to set.
    pub is_parent: bool,
    pub policy: PolicyText,
    pub bounds: Bounds,
    pub effective_policy: String,
    pub account_name: String,
    pub multiplier: String,
    pub prices: String,
    pub credit: Result<Credit, String>,
    pub amount: String,
    pub withdraw: bool,
    pub note: String,
    pub expires: String,
    pub children: Result<Vec<AccountLine>, String>,
    pub more_children: bool,
    pub key: Option<String>,
    pub saved: Option<&'static str>,
    pub refusals: Vec<Refusal>,
}

impl AccountPage {
    /// The refusal beside `field`, if any.
    pub fn refused(&self, field: &str) -> Option<&str> {
        self.refusals
            .iter()
            .find(|r| r.field == field)
            .map(|r| r.message.as_str())
    }
}

fn caller_id(caller: &Caller) -> Option<AccountId> {
    match caller {
        Caller::Root => None,
        Caller::Account { account, .. } => Some(account.id),
    }
}

/// The account page, or the service's 404/403 page.
async fn page(c: &Console, signed: &Signed, id: AccountId, shown: Shown) -> Response {
    let nav = signed.nav("accounts");
    let info = match c.service.info(&signed.caller, Some(id)).await {
        Ok(info) => info,
        Err(e) => return views::failure_in(Some(nav), &e),
    };
    let me = caller_id(&signed.caller);
    let own = me == Some(id);
    let parent_id = info.account.parent_id;
    let is_parent = parent_id == me;
    // The parent's effective policy bounds this one's (none above a main account);
    // an account's own parent is outside what it may read.
    let (parent, bounds) = match parent_id {
        None => (None, Bounds::unknown("no bound")),
        Some(p) => match c.service.info(&signed.caller, Some(p)).await {
            Ok(pi) => (
                Some((pi.account.id.to_string(), pi.account.name)),
                Bounds::of(&pi.effective_policy),
            ),
            Err(e) if e.code == ErrorCode::NotFound => {
                (None, Bounds::unknown("set by your parent"))
            }
            Err(e) => return views::failure_in(Some(nav), &e),
        },
    };
    let ledger_page = shown.ledger_page;
    let ledger = LedgerQuery {
        offset: Some(ledger_page.saturating_mul(PAGE_SIZE)),
        limit: Some(PAGE_SIZE + 1),
    };
    let credit = c
        .service
        .credit_page(&signed.caller, id, ledger)
        .await
        .map(|v| Credit {
            allocated: dollars(v.allocated_nanos),
            delegated: dollars(v.delegated_nanos),
            available: v.available_to_delegate_nanos.map(dollars),
            previous: ledger_page.checked_sub(1),
            next: (v.ledger.len() > PAGE_SIZE as usize).then_some(ledger_page + 1),
            ledger: v
                .ledger
                .iter()
                .take(PAGE_SIZE as usize)
                .map(|e| LedgerLine {
                    at: when(e.at_unix_ms),
                    actor: actor_name(&e.actor, me, parent.as_ref()),
                    amount: dollars(e.amount_nanos),
                    note: e.note.clone(),
                })
                .collect(),
        })
        .map_err(|e| e.message);
    let listed = c
        .service
        .descendants(
            &signed.caller,
            TreeQuery {
                id: Some(id.to_string()),
                offset: Some(0),
                limit: Some(PAGE_SIZE + 1),
                name: None,
            },
            1,
        )
        .await;
    let more_children = listed
        .as_ref()
        .is_ok_and(|rows| rows.len() > PAGE_SIZE as usize);
    let names = HashMap::from([(id.to_string(), info.account.name.clone())]);
    let top = id.to_string();
    let children = listed
        .map(|rows| {
            rows.iter()
                .take(PAGE_SIZE as usize)
                .map(|e| AccountLine::new(e, &names, Some(&top)))
                .collect()
        })
        .map_err(|e| e.message);
    let (multiplier, prices) = shown
        .billing
        .unwrap_or_else(|| form::billing_text(&info.billing));
    let refused = !shown.refusals.is_empty();
    views::page(
        form_status(refused, shown.key.is_some()),
        &AccountPage {
            nav,
            id: id.to_string(),
            account_name: shown.name.unwrap_or_else(|| info.account.name.clone()),
            name: info.account.name,
            status: info.account.status,
            created: when(info.account.created_at_unix_ms),
            parent,
            own,
            is_parent,
            policy: shown.policy.unwrap_or_else(|| PolicyText::of(&info.policy)),
            bounds,
            effective_policy: pretty(&info.effective_policy),
            multiplier,
            prices,
            credit,
            amount: shown.amount,
            withdraw: shown.direction == "withdraw",
            note: shown.note,
            expires: shown.expires,
            children,
            more_children,
            key: shown.key,
            saved: shown.saved,
            refusals: shown.refusals,
        },
    )
}

/// Who made a ledger entry, in the reader's words.
fn actor_name(actor: &str, me: Option<AccountId>, parent: Option<&(String, String)>) -> String {
    if actor == "root" {
        return "the operator".to_owned();
    }
    if me.is_some_and(|m| m.to_string() == actor) {
        return "you".to_owned();
    }
    match parent {
        Some((id, name)) if id == actor => name.clone(),
        _ => actor.to_owned(),
    }
}

/// What `?saved=` may say.
fn saved_notice(what: &str) -> Option<&'static str> {
    match what {
        "policy" => Some("Policy saved."),
        "name" => Some("Renamed."),
        "active" => Some("Enabled: its keys work again."),
        "disabled" => Some("Disabled: its keys and its sub-accounts' keys are refused."),
        "billing" => Some("Billing rule saved."),
        "credit" => Some("Credit allocated."),
        _ => None,
    }
}

/// `GET /accounts/{id}`.
pub async fn show(
    State(c): State<Console>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let id = match account_id(&id) {
        Ok(id) => id,
        Err(e) => return views::failure_in(Some(signed.nav("accounts")), &e),
    };
    let shown = Shown {
        saved: q.get("saved").and_then(|s| saved_notice(s)),
        ledger_page: q.get("ledger").and_then(|p| p.parse().ok()).unwrap_or(0),
        ..Shown::default()
    };
    page(&c, &signed, id, shown).await
}

/// After a form: back to the page (what was saved said once), the service's 404 or
/// 403 page, or the page again with the refusal beside its field (422).
async fn after(
    c: &Console,
    signed: &Signed,
    id: AccountId,
    outcome: Result<&'static str, ApiError>,
    refused: impl FnOnce(&ApiError) -> Shown,
) -> Response {
    match outcome {
        Ok(saved) => Redirect::to(&format!("/accounts/{id}?saved={saved}")).into_response(),
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::PermissionDenied) => {
            views::failure_in(Some(signed.nav("accounts")), &e)
        }
        Err(e) => page(c, signed, id, refused(&e)).await,
    }
}

/// `PATCH /x-users/{id}` with `body`, read as the REST API reads it.
async fn update(c: &Console, signed: &Signed, id: AccountId, body: Value) -> Result<(), ApiError> {
    let req = decode_object::<UpdateAccount>(body)?;
    c.service.update_account(&signed.caller, id, req).await?;
    Ok(())
}

/// A form posted to an account's page: the session and fields (as [`Posted`]) and
/// the account its path names; any other path is the not-found page.
pub struct AccountForm {
    pub(super) signed: Signed,
    pub(super) form: Fields,
    pub(super) id: AccountId,
}

impl FromRequest<Console> for AccountForm {
    type Rejection = Response;

    async fn from_request(req: Request, console: &Console) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Path(id) = Path::<String>::from_request_parts(&mut parts, console)
            .await
            .map_err(IntoResponse::into_response)?;
        let Posted { signed, form } =
            Posted::from_request(Request::from_parts(parts, body), console).await?;
        match account_id(&id) {
            Ok(id) => Ok(Self { signed, form, id }),
            Err(e) => Err(views::failure_in(Some(signed.nav("accounts")), &e)),
        }
    }
}

/// `POST /accounts/{id}/policy`: the account's own policy, within its parent's.
pub async fn set_policy(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let text = PolicyText::posted(&form);
    let read = text.to_json().map_err(|r| vec![r]).and_then(read_policy);
    let outcome = match read {
        Ok(req) => c
            .service
            .update_account(&signed.caller, id, req)
            .await
            .map(|_| "policy"),
        Err(refusals) => {
            let shown = Shown {
                refusals,
                policy: Some(text),
                ..Shown::default()
            };
            return page(&c, &signed, id, shown).await;
        }
    };
    after(&c, &signed, id, outcome, |e| Shown {
        refusals: form::policy_refusals(&e.message),
        policy: Some(text),
        ..Shown::default()
    })
    .await
}

/// A form's `object` read as `PATCH /x-users/{id}` reads `{key: object}`. That
/// reading names no field when a value has the wrong type, so on a refusal each
/// field (`(its JSON name, the form's field)`) is read alone and each one's refusal
/// goes beside it; `fallback` places a refusal no single field explains.
fn read_update(
    key: &str,
    object: Value,
    fields: &[(&str, &'static str)],
    fallback: impl FnOnce(&ApiError) -> Vec<Refusal>,
) -> Result<UpdateAccount, Vec<Refusal>> {
    let whole = match decode_object::<UpdateAccount>(json!({ key: object })) {
        Ok(req) => return Ok(req),
        Err(e) => e,
    };
    let mut refusals = Vec::new();
    if let Value::Object(values) = &object {
        for (name, value) in values {
            if let Err(e) = decode_object::<UpdateAccount>(json!({ key: { name: value } })) {
                let field = fields
                    .iter()
                    .find(|(json_name, _)| json_name == name)
                    .map_or("", |(_, field)| *field);
                refusals.push(Refusal {
                    field,
                    message: e.message,
                });
            }
        }
    }
    if refusals.is_empty() {
        refusals = fallback(&whole);
    }
    Err(refusals)
}

fn read_policy(policy: Value) -> Result<UpdateAccount, Vec<Refusal>> {
    let fields: Vec<(&str, &'static str)> = form::POLICY_FIELDS.iter().map(|f| (*f, *f)).collect();
    read_update("policy", policy, &fields, |e| {
        form::policy_refusals(&e.message)
    })
}

/// `POST /accounts/{id}/name`.
pub async fn rename(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let name = form.get("name").to_owned();
    let outcome = update(&c, &signed, id, json!({ "name": name })).await;
    after(&c, &signed, id, outcome.map(|()| "name"), |e| Shown {
        name: Some(name),
        ..Shown::refused(Refusal {
            field: "name",
            message: e.message.clone(),
        })
    })
    .await
}

/// `POST /accounts/{id}/status`: `active` or `disabled`.
pub async fn set_status(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let status = form.get("status").to_owned();
    let outcome = update(&c, &signed, id, json!({ "status": status })).await;
    let saved = if status == "active" {
        "active"
    } else {
        "disabled"
    };
    after(&c, &signed, id, outcome.map(|()| saved), |e| {
        Shown::refused(Refusal {
            field: "status",
            message: e.message.clone(),
        })
    })
    .await
}

/// `POST /accounts/{id}/billing`: what the caller, its direct parent, bills it.
pub async fn set_billing(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let typed = (
        form.get("multiplier").trim().to_owned(),
        form.get("prices").to_owned(),
    );
    let read = form::billing_json(&typed.0, &typed.1)
        .map_err(|r| vec![r])
        .and_then(|billing| {
            read_update(
                "billing",
                billing,
                &[("multiplier_ppm", "multiplier"), ("prices", "prices")],
                |e| vec![refusal(e, &["multiplier", "prices"])],
            )
        });
    let outcome = match read {
        Ok(req) => c
            .service
            .update_account(&signed.caller, id, req)
            .await
            .map(|_| "billing"),
        Err(refusals) => {
            let shown = Shown {
                refusals,
                billing: Some(typed),
                ..Shown::default()
            };
            return page(&c, &signed, id, shown).await;
        }
    };
    after(&c, &signed, id, outcome, |e| Shown {
        billing: Some(typed),
        ..Shown::refused(refusal(e, &["multiplier", "prices"]))
    })
    .await
}

/// `POST /accounts/{id}/credit`: a top-up or a withdrawal, in dollars, by the
/// account's direct parent.
pub async fn allocate(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let amount = form.get("amount").trim().to_owned();
    let direction = form.get("direction").to_owned();
    let note = form.get("note").to_owned();
    let typed = |refusal: Refusal| Shown {
        amount: amount.clone(),
        direction: direction.clone(),
        note: note.clone(),
        ..Shown::refused(refusal)
    };
    let Some(nanos) = form::dollars_to_nanos(&amount).and_then(|n| i64::try_from(n).ok()) else {
        let refusal = Refusal {
            field: "amount",
            message: format!("amount: {amount:?} is not a dollar amount like 12.50"),
        };
        return page(&c, &signed, id, typed(refusal)).await;
    };
    let req = AllocateCredit {
        amount_nanos: if direction == "withdraw" {
            -nanos
        } else {
            nanos
        },
        note: (!note.is_empty()).then(|| note.clone()),
    };
    let outcome = c
        .service
        .allocate_credit(&signed.caller, id, req, now_ms())
        .await
        .map(|_| "credit");
    after(&c, &signed, id, outcome, |e| {
        let mut refusal = refusal(e, &["note", "amount"]);
        // "credit refused: ..." concerns the amount.
        if refusal.field.is_empty() {
            refusal.field = "amount";
        }
        typed(refusal)
    })
    .await
}

/// `POST /accounts/{id}/keys`: a key for the account, shown this once.
pub async fn issue_key(State(c): State<Console>, posted: AccountForm) -> Response {
    let AccountForm { signed, form, id } = posted;
    let expires = form.get("expires").trim().to_owned();
    let expires_at_unix_ms = match expiry(&expires) {
        Ok(at) => at,
        Err(refusal) => {
            let shown = Shown {
                expires,
                ..Shown::refused(refusal)
            };
            return page(&c, &signed, id, shown).await;
        }
    };
    let created = c
        .service
        .create_key(
            &signed.caller,
            Some(id),
            NewKey { expires_at_unix_ms },
            now_ms(),
        )
        .await;
    match created {
        Ok(created) => {
            let shown = Shown {
                key: Some(created.api_key),
                ..Shown::default()
            };
            page(&c, &signed, id, shown).await
        }
        Err(e) if matches!(e.code, ErrorCode::NotFound | ErrorCode::PermissionDenied) => {
            views::failure_in(Some(signed.nav("accounts")), &e)
        }
        Err(e) => {
            let shown = Shown {
                expires,
                ..Shown::refused(refusal(&e, &["expires"]))
            };
            page(&c, &signed, id, shown).await
        }
    }
}

//! One account of the caller's tree (`/accounts/{id}`): its policy beside the
//! parent's effective bounds, status, billing, credit with the ledger a page at a
//! time, its sub-accounts; what a form left to show. The forms: [`super::edits`].

use std::collections::HashMap;

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;
use switchyard_core::policy::Policy;

use super::form::{self, PolicyText};
use super::{AccountLine, PAGE_SIZE};
use crate::console::Console;
use crate::console::pages::{form_status, pretty};
use crate::console::session::{Fields, Posted, Signed, account_id};
use crate::console::views::{self, Nav, Refusal, dollars, when};
use crate::service::{ApiError, Caller, LedgerQuery, TreeQuery};

/// What a form left for the account page to show: its refusals (each beside its
/// field), what was typed, a key just issued, or what was saved.
#[derive(Default)]
pub(super) struct Shown {
    pub(super) refusals: Vec<Refusal>,
    pub(super) policy: Option<PolicyText>,
    pub(super) name: Option<String>,
    pub(super) billing: Option<(String, String)>,
    pub(super) amount: String,
    pub(super) direction: String,
    pub(super) note: String,
    pub(super) expires: String,
    pub(super) key: Option<String>,
    pub(super) saved: Option<&'static str>,
    /// Which page of the credit ledger.
    pub(super) ledger_page: u32,
}

impl Shown {
    pub(super) fn refused(refusal: Refusal) -> Self {
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
pub(super) async fn page(c: &Console, signed: &Signed, id: AccountId, shown: Shown) -> Response {
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
pub(super) async fn after(
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

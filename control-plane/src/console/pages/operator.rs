//! Operator (the root key): main accounts, paged; create one (its first key shown
//! once); disable or enable one.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};
use switchyard_core::error::ErrorCode;
use switchyard_runtime::now_ms;

use super::{descendants_page, form_status, is_form_refusal, refusal};
use crate::console::Console;
use crate::console::session::{Posted, Signed, account_id};
use crate::console::views::{self, Nav, Refusal, when};
use crate::rest::decode_object;
use crate::service::{ApiError, Caller, CreateAccount, TreeEntry, UpdateAccount};

pub const ROUTES: &[(&str, &[&str])] = &[
    ("/operator/accounts", &["GET", "POST"]),
    ("/operator/accounts/{id}/status", &["POST"]),
];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/operator/accounts", get(accounts).post(create))
        .route("/operator/accounts/{id}/status", post(set_status))
}

const ACTIVE: &str = "operator";

/// The create form's fields, in the order a refusal is placed at them.
const CREATE_FIELDS: &[&str] = &["name", "policy"];

/// These pages are the operator's alone: an account's key is refused here (the
/// page saying so), even where the API would answer it about its own tree.
fn not_operator(signed: &Signed) -> Option<Response> {
    match signed.caller {
        Caller::Root => None,
        Caller::Account { .. } => Some(views::failure_in(
            Some(signed.nav(ACTIVE)),
            &ApiError::new(
                ErrorCode::PermissionDenied,
                "only the operator (signed in with the root key) manages main accounts",
            ),
        )),
    }
}

/// What a form left to show on the list.
struct Shown {
    refusal: Option<Refusal>,
    name: String,
    policy: String,
    /// A main account just created, with its first key (shown this once).
    created: Option<(String, String)>,
}

impl Shown {
    fn nothing() -> Self {
        Self {
            refusal: None,
            name: String::new(),
            policy: String::new(),
            created: None,
        }
    }
}

async fn accounts_page(c: &Console, signed: &Signed, page: u32, shown: Shown) -> Response {
    let (rows, more) = match descendants_page(c, signed, None, None, page, 1).await {
        Ok(listed) => listed,
        Err(e) => return views::failure_in(Some(signed.nav(ACTIVE)), &e),
    };
    views::page(
        form_status(shown.refusal.is_some(), shown.created.is_some()),
        &OperatorAccountsPage {
            nav: signed.nav(ACTIVE),
            more,
            accounts: rows.iter().map(MainAccount::from).collect(),
            page,
            refusal: shown.refusal,
            name: shown.name,
            policy: shown.policy,
            created: shown.created,
        },
    )
}

fn page_of(text: &str) -> u32 {
    text.parse().unwrap_or(0)
}

/// `GET /operator/accounts?page=N`: the main accounts, a page at a time.
async fn accounts(
    State(c): State<Console>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    if let Some(page) = not_operator(&signed) {
        return page;
    }
    let page = q.get("page").map_or(0, |p| page_of(p));
    accounts_page(&c, &signed, page, Shown::nothing()).await
}

/// `POST /operator/accounts`: a main account with a name and an optional policy
/// (JSON, as in the API).
async fn create(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    if let Some(page) = not_operator(&signed) {
        return page;
    }
    let name = form.get("name").to_owned();
    let policy = form.get("policy").trim().to_owned();
    let refused = |refusal| Shown {
        refusal: Some(refusal),
        name: name.clone(),
        policy: policy.clone(),
        created: None,
    };
    let mut body = Map::new();
    body.insert("name".to_owned(), Value::String(name.clone()));
    if !policy.is_empty() {
        match serde_json::from_str::<Value>(&policy) {
            Ok(v) => {
                body.insert("policy".to_owned(), v);
            }
            Err(e) => {
                let refusal = Refusal {
                    field: "policy",
                    message: format!("policy: not JSON: {e}"),
                };
                return accounts_page(&c, &signed, 0, refused(refusal)).await;
            }
        }
    }
    let outcome = match decode_object::<CreateAccount>(Value::Object(body)) {
        Ok(req) => {
            c.service
                .create_account(&signed.caller, req, now_ms())
                .await
        }
        Err(e) => Err(e),
    };
    let shown = match outcome {
        Ok(created) => Shown {
            created: Some((created.account.name, created.api_key)),
            ..Shown::nothing()
        },
        Err(e) if is_form_refusal(&e) => refused(refusal(&e, CREATE_FIELDS)),
        Err(e) => return views::failure_in(Some(signed.nav(ACTIVE)), &e),
    };
    accounts_page(&c, &signed, 0, shown).await
}

/// `POST /operator/accounts/{id}/status`: disable or enable; back to the same page.
async fn set_status(State(c): State<Console>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    if let Some(page) = not_operator(&signed) {
        return page;
    }
    let page = page_of(form.get("page"));
    let updated = match account_id(&id) {
        Ok(id) => {
            let req = UpdateAccount {
                status: Some(form.get("status").to_owned()),
                ..UpdateAccount::default()
            };
            c.service.update_account(&signed.caller, id, req).await
        }
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => Redirect::to(&format!("/operator/accounts?page={page}")).into_response(),
        Err(e) if is_form_refusal(&e) => {
            let shown = Shown {
                refusal: Some(refusal(&e, &["status"])),
                ..Shown::nothing()
            };
            accounts_page(&c, &signed, page, shown).await
        }
        Err(e) => views::failure_in(Some(signed.nav(ACTIVE)), &e),
    }
}

/// A main account's row, with the change its button offers.
pub struct MainAccount {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
    /// The status the row's button sets (`disabled` for an active account).
    pub toggle: &'static str,
}

impl From<&TreeEntry> for MainAccount {
    fn from(e: &TreeEntry) -> Self {
        let a = &e.account;
        Self {
            id: a.id.to_string(),
            name: a.name.clone(),
            status: a.status,
            created: when(a.created_at_unix_ms),
            toggle: if a.status == "active" {
                "disabled"
            } else {
                "active"
            },
        }
    }
}

#[derive(Template)]
#[template(path = "operator_accounts.html")]
pub struct OperatorAccountsPage {
    pub nav: Nav,
    pub accounts: Vec<MainAccount>,
    pub page: u32,
    pub more: bool,
    pub refusal: Option<Refusal>,
    pub name: String,
    pub policy: String,
    /// A main account just created, with its first key (shown this once).
    pub created: Option<(String, String)>,
}

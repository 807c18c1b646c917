//! Sub-accounts: the caller's tree, paged; create; one account's page.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use switchyard_runtime::now_ms;

use super::{PAGE_SIZE, form_status, pretty, refusal};
use crate::console::Console;
use crate::console::session::{Posted, Signed, account_id};
use crate::console::views::{self, Nav, Refusal, when};
use crate::rest::decode_object;
use crate::service::{CreateAccount, TreeEntry, TreeQuery};

pub const ROUTES: &[(&str, &[&str])] = &[
    ("/accounts", &["GET", "POST"]),
    ("/accounts/{id}", &["GET"]),
];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/accounts", get(accounts).post(create_account))
        .route("/accounts/{id}", get(account))
}

/// The sub-accounts page with whatever a form left to show.
struct AccountsForm {
    refusal: Option<Refusal>,
    name: String,
    policy: String,
    created: Option<(String, String)>,
}

async fn accounts_page(c: &Console, signed: &Signed, page: u32, form: AccountsForm) -> Response {
    let listed = c
        .service
        .descendants(
            &signed.caller,
            TreeQuery {
                id: None,
                offset: Some(page.saturating_mul(PAGE_SIZE)),
                limit: Some(PAGE_SIZE + 1),
            },
            1,
        )
        .await;
    let more = listed
        .as_ref()
        .is_ok_and(|rows| rows.len() > PAGE_SIZE as usize);
    let accounts = listed
        .map(|rows| {
            rows.iter()
                .take(PAGE_SIZE as usize)
                .map(AccountLine::from)
                .collect()
        })
        .map_err(|e| e.message);
    views::page(
        form_status(form.refusal.is_some(), form.created.is_some()),
        &AccountsPage {
            nav: signed.nav("accounts"),
            accounts,
            page,
            more,
            refusal: form.refusal,
            name: form.name,
            policy: form.policy,
            created: form.created,
        },
    )
}

/// `GET /accounts?page=N`: the caller's direct children, a page at a time.
async fn accounts(
    State(c): State<Console>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let form = AccountsForm {
        refusal: None,
        name: String::new(),
        policy: String::new(),
        created: None,
    };
    accounts_page(&c, &signed, page, form).await
}

/// `POST /accounts`: a child with a name and an optional policy (JSON, as in the API).
async fn create_account(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let name = form.get("name").to_owned();
    let policy = form.get("policy").trim().to_owned();
    let mut body = serde_json::Map::new();
    body.insert("name".to_owned(), serde_json::Value::String(name.clone()));
    if !policy.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&policy) {
            Ok(v) => {
                body.insert("policy".to_owned(), v);
            }
            Err(e) => {
                let form = AccountsForm {
                    refusal: Some(Refusal {
                        field: "policy",
                        message: format!("policy: not JSON: {e}"),
                    }),
                    name,
                    policy,
                    created: None,
                };
                return accounts_page(&c, &signed, 0, form).await;
            }
        }
    }
    let outcome = match decode_object::<CreateAccount>(serde_json::Value::Object(body)) {
        Ok(req) => {
            c.service
                .create_account(&signed.caller, req, now_ms())
                .await
        }
        Err(e) => Err(e),
    };
    let form = match outcome {
        Ok(created) => AccountsForm {
            refusal: None,
            name: String::new(),
            policy: String::new(),
            created: Some((created.account.name, created.api_key)),
        },
        Err(e) => AccountsForm {
            refusal: Some(refusal(&e, &["policy", "name"])),
            name,
            policy,
            created: None,
        },
    };
    accounts_page(&c, &signed, 0, form).await
}

/// `GET /accounts/{id}`: one account of the caller's tree; any other is not found.
async fn account(State(c): State<Console>, Path(id): Path<String>, signed: Signed) -> Response {
    let nav = || signed.nav("accounts");
    let info = match account_id(&id) {
        Ok(id) => c.service.info(&signed.caller, Some(id)).await,
        Err(e) => Err(e),
    };
    match info {
        Ok(info) => views::page(
            StatusCode::OK,
            &AccountPage {
                nav: nav(),
                id: info.account.id.to_string(),
                name: info.account.name,
                status: info.account.status,
                created: views::when(info.account.created_at_unix_ms),
                policy: pretty(&info.policy),
                effective_policy: pretty(&info.effective_policy),
            },
        ),
        Err(e) => views::failure_in(Some(nav()), &e),
    }
}

pub struct AccountLine {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
}

impl From<&TreeEntry> for AccountLine {
    fn from(e: &TreeEntry) -> Self {
        Self {
            id: e.account.id.to_string(),
            name: e.account.name.clone(),
            status: e.account.status,
            created: when(e.account.created_at_unix_ms),
        }
    }
}

#[derive(Template)]
#[template(path = "accounts.html")]
pub struct AccountsPage {
    pub nav: Nav,
    pub accounts: Result<Vec<AccountLine>, String>,
    pub page: u32,
    pub more: bool,
    pub refusal: Option<Refusal>,
    pub name: String,
    pub policy: String,
    /// An account just created, with its first key (shown this once).
    pub created: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub nav: Nav,
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
    pub policy: String,
    pub effective_policy: String,
}

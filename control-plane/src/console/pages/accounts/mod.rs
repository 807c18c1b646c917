//! Sub-accounts: the caller's tree to any depth, paged and searched by name;
//! create. One account's page: [`account`]; its forms: [`edits`]; deletion:
//! [`delete`].

mod account;
mod delete;
mod edits;
mod form;

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use switchyard_core::error::ErrorCode;
use switchyard_runtime::now_ms;

use super::{PAGE_SIZE, descendants_page, form_status, refusal};
use crate::console::Console;
use crate::console::session::{Posted, Signed};
use crate::console::views::{self, Nav, Refusal, when};
use crate::rest::{MAX_TREE_DEPTH, decode_object};
use crate::service::{CreateAccount, TreeEntry};

pub const ROUTES: &[(&str, &[&str])] = &[
    ("/accounts", &["GET", "POST"]),
    ("/accounts/{id}", &["GET"]),
    ("/accounts/{id}/policy", &["POST"]),
    ("/accounts/{id}/name", &["POST"]),
    ("/accounts/{id}/status", &["POST"]),
    ("/accounts/{id}/billing", &["POST"]),
    ("/accounts/{id}/credit", &["POST"]),
    ("/accounts/{id}/keys", &["POST"]),
    ("/accounts/{id}/delete", &["GET", "POST"]),
];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/accounts", get(accounts).post(create_account))
        .route("/accounts/{id}", get(account::show))
        .route("/accounts/{id}/policy", post(edits::set_policy))
        .route("/accounts/{id}/name", post(edits::rename))
        .route("/accounts/{id}/status", post(edits::set_status))
        .route("/accounts/{id}/billing", post(edits::set_billing))
        .route("/accounts/{id}/credit", post(edits::allocate))
        .route("/accounts/{id}/keys", post(edits::issue_key))
        .route(
            "/accounts/{id}/delete",
            get(delete::confirm).post(delete::delete),
        )
}

/// What the list shows: which part of the tree, which page, and a search.
#[derive(Default)]
struct Listing {
    /// Whose tree (a descendant's; the caller's when empty).
    under: String,
    /// A name to search for.
    q: String,
    page: u32,
    /// Accounts just deleted.
    deleted: Option<u32>,
}

impl Listing {
    fn from_query(q: &HashMap<String, String>) -> Self {
        let text = |name: &str| q.get(name).map(|v| v.trim().to_owned()).unwrap_or_default();
        Self {
            under: text("under"),
            q: text("q"),
            page: q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0),
            deleted: q.get("deleted").and_then(|d| d.parse().ok()),
        }
    }

    /// The list's address for another page, keeping the search.
    fn link(&self, page: u32) -> String {
        url::form_urlencoded::Serializer::new(String::from("/accounts?"))
            .extend_pairs(
                [("under", &self.under), ("q", &self.q)]
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty()),
            )
            .append_pair("page", &page.to_string())
            .finish()
    }
}

/// The sub-accounts page with whatever a form left to show.
struct AccountsForm {
    refusal: Option<Refusal>,
    name: String,
    policy: String,
    created: Option<(String, String)>,
}

async fn accounts_page(
    c: &Console,
    signed: &Signed,
    listing: Listing,
    form: AccountsForm,
) -> Response {
    let nav = signed.nav("accounts");
    let top = (!nav.account_id.is_empty()).then(|| nav.account_id.clone());
    let mut names: HashMap<String, String> =
        top.iter().map(|me| (me.clone(), nav.who.clone())).collect();
    let mut under_name = None;
    if !listing.under.is_empty() {
        let info = match crate::console::session::account_id(&listing.under) {
            Ok(id) => c.service.info(&signed.caller, Some(id)).await,
            Err(e) => Err(e),
        };
        match info {
            Ok(info) => {
                names.insert(info.account.id.to_string(), info.account.name.clone());
                under_name = Some(info.account.name);
            }
            Err(e) => return views::failure_in(Some(nav), &e),
        }
    }
    let listed = descendants_page(
        c,
        signed,
        (!listing.under.is_empty()).then(|| listing.under.clone()),
        (!listing.q.is_empty()).then(|| listing.q.clone()),
        listing.page,
        MAX_TREE_DEPTH,
    )
    .await;
    let mut search_refusal = None;
    let (accounts, more) = match listed {
        Ok((rows, more)) => {
            for row in &rows {
                names.insert(row.account.id.to_string(), row.account.name.clone());
            }
            let lines = rows
                .iter()
                .map(|e| AccountLine::new(e, &names, top.as_deref()))
                .collect();
            (Ok(lines), more)
        }
        Err(e) if e.code == ErrorCode::InvalidRequest => {
            search_refusal = Some(refusal(&e, &["name"]));
            (Ok(Vec::new()), false)
        }
        Err(e) if e.code == ErrorCode::NotFound => return views::failure_in(Some(nav), &e),
        Err(e) => (Err(e.message), false),
    };
    let refused = form.refusal.is_some() || search_refusal.is_some();
    views::page(
        form_status(refused, form.created.is_some()),
        &AccountsPage {
            previous: (listing.page > 0).then(|| listing.link(listing.page - 1)),
            next: more.then(|| listing.link(listing.page + 1)),
            nav,
            accounts,
            page: listing.page,
            q: listing.q,
            under: listing.under,
            under_name,
            deleted: listing.deleted,
            search_refusal,
            refusal: form.refusal,
            name: form.name,
            policy: form.policy,
            created: form.created,
        },
    )
}

/// `GET /accounts?q=&under=&page=N`: the caller's tree (or a descendant's), to any
/// depth, breadth first, a page at a time; `q` keeps the names that contain it.
async fn accounts(
    State(c): State<Console>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let form = AccountsForm {
        refusal: None,
        name: String::new(),
        policy: String::new(),
        created: None,
    };
    accounts_page(&c, &signed, Listing::from_query(&q), form).await
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
                return accounts_page(&c, &signed, Listing::default(), form).await;
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
    accounts_page(&c, &signed, Listing::default(), form).await
}

pub struct AccountLine {
    pub id: String,
    pub name: String,
    pub status: &'static str,
    pub created: String,
    pub depth: u32,
    /// Dots before the name, one per level below the first (at most eight), so the
    /// list reads as a tree.
    pub indent: String,
    /// The parent's id and name (`None`: the caller itself, or a main account).
    pub parent: Option<(String, String)>,
}

impl AccountLine {
    fn new(e: &TreeEntry, names: &HashMap<String, String>, top: Option<&str>) -> Self {
        let parent = e
            .account
            .parent_id
            .map(|p| p.to_string())
            .filter(|p| Some(p.as_str()) != top)
            .map(|p| {
                let name = names.get(&p).cloned().unwrap_or_else(|| short_id(&p));
                (p, name)
            });
        Self {
            id: e.account.id.to_string(),
            name: e.account.name.clone(),
            status: e.account.status,
            created: when(e.account.created_at_unix_ms),
            depth: e.depth,
            indent: "· ".repeat(e.depth.saturating_sub(1).min(8) as usize),
            parent,
        }
    }
}

/// An id too long for a table cell, recognisably shortened.
fn short_id(id: &str) -> String {
    format!("…{}", id.get(id.len().saturating_sub(8)..).unwrap_or(id))
}

#[derive(Template)]
#[template(path = "accounts.html")]
pub struct AccountsPage {
    pub nav: Nav,
    pub accounts: Result<Vec<AccountLine>, String>,
    pub page: u32,
    pub previous: Option<String>,
    pub next: Option<String>,
    pub q: String,
    pub under: String,
    pub under_name: Option<String>,
    pub deleted: Option<u32>,
    /// A search the service refused, shown beside the search field.
    pub search_refusal: Option<Refusal>,
    pub refusal: Option<Refusal>,
    pub name: String,
    pub policy: String,
    /// An account just created, with its first key (shown this once).
    pub created: Option<(String, String)>,
}

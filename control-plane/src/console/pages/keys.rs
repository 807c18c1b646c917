//! The account's own issued keys: create (shown once), revoke.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use switchyard_core::ids::IssuedKeyId;
use switchyard_core::time::parse_utc_day;
use switchyard_runtime::now_ms;

use super::{form_status, refusal};
use crate::console::Console;
use crate::console::session::{Posted, Signed};
use crate::console::views::{self, Nav, Refusal, when};
use crate::service::{ApiError, IssuedKeyView, NewKey};

pub const ROUTES: &[(&str, &[&str])] = &[
    ("/keys", &["GET", "POST"]),
    ("/keys/{id}/revoke", &["POST"]),
];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/keys", get(keys).post(create_key))
        .route("/keys/{id}/revoke", post(revoke_key))
}

/// The keys page with whatever a form left to show.
async fn keys_page(
    c: &Console,
    signed: &Signed,
    created: Option<String>,
    refusal: Option<Refusal>,
    expires: String,
) -> Response {
    let keys = c
        .service
        .self_view(&signed.caller, now_ms())
        .await
        .map(|v| v.keys.iter().map(KeyLine::from).collect())
        .map_err(|e| e.message);
    views::page(
        form_status(refusal.is_some(), created.is_some()),
        &KeysPage {
            nav: signed.nav("keys"),
            keys,
            created,
            refusal,
            expires,
        },
    )
}

/// `GET /keys`: the account's own issued keys.
async fn keys(State(c): State<Console>, signed: Signed) -> Response {
    keys_page(&c, &signed, None, None, String::new()).await
}

/// `POST /keys`: a new key, with an optional expiry date (UTC midnight).
async fn create_key(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let expires = form.get("expires").trim().to_owned();
    let expires_at_unix_ms = if expires.is_empty() {
        None
    } else if let Some(days) = parse_utc_day(&expires) {
        Some(days.saturating_mul(86_400_000))
    } else {
        let refusal = Refusal {
            field: "expires",
            message: format!("{expires:?} is not a date like 2026-01-31"),
        };
        return keys_page(&c, &signed, None, Some(refusal), expires).await;
    };
    match c
        .service
        .create_key(
            &signed.caller,
            None,
            NewKey { expires_at_unix_ms },
            now_ms(),
        )
        .await
    {
        Ok(created) => keys_page(&c, &signed, Some(created.api_key), None, String::new()).await,
        Err(e) => {
            let refusal = refusal(&e, &["expires"]);
            keys_page(&c, &signed, None, Some(refusal), expires).await
        }
    }
}

/// `POST /keys/{id}/revoke`.
async fn revoke_key(State(c): State<Console>, Path(id): Path<String>, posted: Posted) -> Response {
    let signed = posted.signed;
    let key: IssuedKeyId = match id.parse() {
        Ok(k) => k,
        Err(_) => {
            let e = ApiError::new(
                switchyard_core::error::ErrorCode::NotFound,
                format!("issued key {id:?} not found"),
            );
            return views::failure_in(Some(signed.nav("keys")), &e);
        }
    };
    match c.service.revoke_key(&signed.caller, key).await {
        Ok(()) => Redirect::to("/keys").into_response(),
        Err(e) => views::failure_in(Some(signed.nav("keys")), &e),
    }
}

pub struct KeyLine {
    pub id: String,
    pub tail: String,
    pub status: &'static str,
    pub created: String,
    pub expires: String,
    pub in_use: bool,
}

impl From<&IssuedKeyView> for KeyLine {
    fn from(k: &IssuedKeyView) -> Self {
        Self {
            id: k.id.to_string(),
            tail: k.tail.clone(),
            status: k.status,
            created: when(k.created_at_unix_ms),
            expires: k
                .expires_at_unix_ms
                .map_or_else(|| "never".to_owned(), when),
            in_use: k.in_use,
        }
    }
}

#[derive(Template)]
#[template(path = "keys.html")]
pub struct KeysPage {
    pub nav: Nav,
    pub keys: Result<Vec<KeyLine>, String>,
    /// A key just created: shown this once.
    pub created: Option<String>,
    pub refusal: Option<Refusal>,
    pub expires: String,
}

//! The account's own issued keys: create (shown once), revoke, and rotate the key
//! the session was opened with (the new key shown once, the old one kept for the
//! overlap the user picks).

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
use crate::service::{ApiError, IssuedKeyView, NewKey, Rotate};

pub const ROUTES: &[(&str, &[&str])] = &[
    ("/keys", &["GET", "POST"]),
    ("/keys/{id}/revoke", &["POST"]),
    ("/keys/rotate", &["POST"]),
];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/keys", get(keys).post(create_key))
        .route("/keys/{id}/revoke", post(revoke_key))
        .route("/keys/rotate", post(rotate_key))
}

/// What a form left for the keys page to show.
#[derive(Default)]
struct KeysForm {
    created: Option<String>,
    rotated: Option<Rotated>,
    refusal: Option<Refusal>,
    expires: String,
    overlap: String,
}

/// A rotation just done: the new key (shown this once) and when the old one stops.
pub struct Rotated {
    pub key: String,
    pub old_tail: String,
    pub old_stops: String,
}

/// An expiry date typed in a form (a UTC day, empty for none) as the API's Unix
/// milliseconds (that day's midnight).
pub fn expiry(text: &str) -> Result<Option<i64>, Refusal> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    parse_utc_day(text)
        .map(|days| Some(days.saturating_mul(86_400_000)))
        .ok_or_else(|| Refusal {
            field: "expires",
            message: format!("{text:?} is not a date like 2026-01-31"),
        })
}

/// The keys page with whatever a form left to show.
async fn keys_page(c: &Console, signed: &Signed, form: KeysForm) -> Response {
    let keys = c
        .service
        .self_view(&signed.caller, now_ms())
        .await
        .map(|v| v.keys.iter().map(KeyLine::from).collect())
        .map_err(|e| e.message);
    let created = form.created.is_some() || form.rotated.is_some();
    views::page(
        form_status(form.refusal.is_some(), created),
        &KeysPage {
            nav: signed.nav("keys"),
            keys,
            created: form.created,
            rotated: form.rotated,
            refusal: form.refusal,
            expires: form.expires,
            overlap: if form.overlap.is_empty() {
                "60".to_owned()
            } else {
                form.overlap
            },
        },
    )
}

/// `GET /keys`: the account's own issued keys.
async fn keys(State(c): State<Console>, signed: Signed) -> Response {
    keys_page(&c, &signed, KeysForm::default()).await
}

/// `POST /keys`: a new key, with an optional expiry date (UTC midnight).
async fn create_key(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let expires = form.get("expires").trim().to_owned();
    let expires_at_unix_ms = match expiry(&expires) {
        Ok(at) => at,
        Err(refusal) => {
            let form = KeysForm {
                refusal: Some(refusal),
                expires,
                ..KeysForm::default()
            };
            return keys_page(&c, &signed, form).await;
        }
    };
    let outcome = c
        .service
        .create_key(
            &signed.caller,
            None,
            NewKey { expires_at_unix_ms },
            now_ms(),
        )
        .await;
    let form = match outcome {
        Ok(created) => KeysForm {
            created: Some(created.api_key),
            ..KeysForm::default()
        },
        Err(e) => KeysForm {
            refusal: Some(refusal(&e, &["expires"])),
            expires,
            ..KeysForm::default()
        },
    };
    keys_page(&c, &signed, form).await
}

/// `POST /keys/rotate`: a new key now; the key this session was opened with keeps
/// working for `overlap` minutes (0: it stops with the next snapshot, and so does
/// this session).
async fn rotate_key(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let overlap = form.get("overlap").trim().to_owned();
    let Some(seconds) = overlap
        .parse::<u64>()
        .ok()
        .map(|minutes| minutes.saturating_mul(60))
    else {
        let form = KeysForm {
            refusal: Some(Refusal {
                field: "overlap",
                message: format!("overlap: {overlap:?} is not a whole number of minutes"),
            }),
            overlap,
            ..KeysForm::default()
        };
        return keys_page(&c, &signed, form).await;
    };
    let old_tail = c
        .service
        .self_view(&signed.caller, now_ms())
        .await
        .ok()
        .and_then(|v| v.keys.into_iter().find(|k| k.in_use))
        .map(|k| k.tail)
        .unwrap_or_default();
    let now = now_ms();
    let rotation = Rotate {
        overlap_seconds: Some(seconds),
    };
    let form = match c.service.rotate(&signed.caller, rotation, now).await {
        Ok(created) => KeysForm {
            rotated: Some(Rotated {
                key: created.api_key,
                old_tail,
                old_stops: when(now.saturating_add(
                    i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX),
                )),
            }),
            ..KeysForm::default()
        },
        Err(e) => KeysForm {
            refusal: Some(refusal(&e, &["overlap"])),
            overlap,
            ..KeysForm::default()
        },
    };
    keys_page(&c, &signed, form).await
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
    pub rotated: Option<Rotated>,
    pub refusal: Option<Refusal>,
    pub expires: String,
    /// Minutes the key of this session keeps working after a rotation.
    pub overlap: String,
}

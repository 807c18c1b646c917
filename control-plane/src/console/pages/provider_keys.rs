//! Admin (main accounts): provider keys. The list, with each key's health as the
//! data planes report it; adding a key, whose secret is write-only (never shown,
//! never filled back into a form); a key's own page: its level, weight and models,
//! disable or enable, ask its upstream for its models now, delete.

use std::collections::HashMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::ProviderKeyId;
use switchyard_runtime::now_ms;

use super::{PAGE_SIZE, form_status, is_form_refusal, refusal};
use crate::console::Console;
use crate::console::session::{Fields, Posted, Signed};
use crate::console::views::{self, Nav, Refusal, when};
use crate::rest::decode_object;
use crate::service::{AddProviderKey, ApiError, ProviderKeyView, UpdateProviderKey};

pub const ROUTES: &[(&str, &[&str])] = &[
    ("/admin/provider-keys", &["GET", "POST"]),
    ("/admin/provider-keys/{id}", &["GET", "POST"]),
    ("/admin/provider-keys/{id}/status", &["POST"]),
    ("/admin/provider-keys/{id}/discover", &["POST"]),
    ("/admin/provider-keys/{id}/delete", &["POST"]),
];

pub fn routes() -> Router<Console> {
    Router::new()
        .route("/admin/provider-keys", get(list).post(add))
        .route("/admin/provider-keys/{id}", get(one).post(edit))
        .route("/admin/provider-keys/{id}/status", post(set_status))
        .route("/admin/provider-keys/{id}/discover", post(discover))
        .route("/admin/provider-keys/{id}/delete", post(delete))
}

const ACTIVE: &str = "admin-keys";

/// The add form's fields, in the order a refusal is placed at them.
const ADD_FIELDS: &[&str] = &[
    "provider", "protocol", "base_url", "secret", "models", "level", "weight",
];
const EDIT_FIELDS: &[&str] = &["models", "level", "weight"];

/// Discovered models a row of the list names before it says how many more.
const LISTED_MODELS: usize = 5;

/// What the add form shows again after a refusal: everything typed but the secret.
pub struct AddForm {
    pub provider: String,
    /// A passthrough key's protocol; empty for other kinds.
    pub protocol: String,
    pub base_url: String,
    pub models: String,
    pub level: String,
    pub weight: String,
}

impl AddForm {
    fn empty() -> Self {
        Self {
            provider: "openai".to_owned(),
            protocol: String::new(),
            base_url: String::new(),
            models: String::new(),
            level: "1".to_owned(),
            weight: "1".to_owned(),
        }
    }

    fn typed(form: &Fields) -> Self {
        Self {
            provider: form.get("provider").to_owned(),
            protocol: form.get("protocol").to_owned(),
            base_url: form.get("base_url").to_owned(),
            models: form.get("models").to_owned(),
            level: form.get("level").to_owned(),
            weight: form.get("weight").to_owned(),
        }
    }
}

/// The models a form lists, one per line or separated by commas.
fn model_list(text: &str) -> Vec<String> {
    text.split([',', '\n'])
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A number field as the API would receive it: a JSON number when it reads as one,
/// else the text (which the API's decoder then refuses, naming the field).
fn number(text: &str) -> Value {
    let text = text.trim();
    serde_json::from_str::<serde_json::Number>(text)
        .map_or_else(|_| Value::String(text.to_owned()), Value::Number)
}

/// A provider key id from a page's path; anything else is "not found".
fn key_id(text: &str) -> Result<ProviderKeyId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such provider key"))
}

/// The list page (a page of it) with whatever the add form left to show.
async fn list_page(
    c: &Console,
    signed: &Signed,
    page: u32,
    form: AddForm,
    refusal: Option<Refusal>,
    added: Option<(String, String)>,
) -> Response {
    let keys = match c.service.provider_keys(&signed.caller).await {
        Ok(keys) => keys,
        Err(e) => return views::failure_in(Some(signed.nav(ACTIVE)), &e),
    };
    let size = PAGE_SIZE as usize;
    let skip = (page as usize).saturating_mul(size);
    let more = keys.len() > skip.saturating_add(size);
    views::page(
        form_status(refusal.is_some(), added.is_some()),
        &ProviderKeysPage {
            nav: signed.nav(ACTIVE),
            keys: keys
                .iter()
                .skip(skip)
                .take(size)
                .map(ProviderKeyLine::from)
                .collect(),
            page,
            more,
            form,
            refusal,
            added,
        },
    )
}

/// `GET /admin/provider-keys?page=N`.
async fn list(
    State(c): State<Console>,
    Query(q): Query<HashMap<String, String>>,
    signed: Signed,
) -> Response {
    let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    list_page(&c, &signed, page, AddForm::empty(), None, None).await
}

/// `POST /admin/provider-keys`: a new key, through the API's own decoding and rules.
async fn add(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let typed = AddForm::typed(&form);
    let mut body = Map::new();
    for (name, value) in [("provider", &typed.provider), ("base_url", &typed.base_url)] {
        body.insert(name.to_owned(), Value::String(value.clone()));
    }
    // Left empty: none (a passthrough key takes none; others are told they need one).
    for (name, value) in [
        ("secret", form.get("secret")),
        ("protocol", &typed.protocol),
    ] {
        if !value.is_empty() {
            body.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    body.insert("models".to_owned(), Value::from(model_list(&typed.models)));
    for (name, value) in [("level", &typed.level), ("weight", &typed.weight)] {
        if !value.trim().is_empty() {
            body.insert(name.to_owned(), number(value));
        }
    }
    let outcome = match decode_object::<AddProviderKey>(Value::Object(body)) {
        Ok(req) => {
            c.service
                .add_provider_key(&signed.caller, req, now_ms())
                .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(key) => {
            let added = (key.id.to_string(), key.base_url);
            list_page(&c, &signed, 0, AddForm::empty(), None, Some(added)).await
        }
        Err(e) if is_form_refusal(&e) => {
            let refusal = refusal(&e, ADD_FIELDS);
            list_page(&c, &signed, 0, typed, Some(refusal), None).await
        }
        Err(e) => views::failure_in(Some(signed.nav(ACTIVE)), &e),
    }
}

/// What a key's page shows besides the key.
struct Shown {
    status: StatusCode,
    /// What was just done, said at the top.
    notice: Option<String>,
    /// The edit form as typed (after a refusal) or as the key is.
    form: Option<EditForm>,
    refusal: Option<Refusal>,
}

impl Shown {
    fn just(notice: Option<String>) -> Self {
        Self {
            status: StatusCode::OK,
            notice,
            form: None,
            refusal: None,
        }
    }

    fn refused(e: &ApiError, fields: &[&'static str], form: Option<EditForm>) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            notice: None,
            form,
            refusal: Some(refusal(e, fields)),
        }
    }
}

/// The edit form's fields.
pub struct EditForm {
    pub models: String,
    pub level: String,
    pub weight: String,
}

impl From<&ProviderKeyView> for EditForm {
    fn from(k: &ProviderKeyView) -> Self {
        Self {
            models: k.models.join("\n"),
            level: k.level.to_string(),
            weight: k.weight.to_string(),
        }
    }
}

fn key_page(signed: &Signed, key: &ProviderKeyView, shown: Shown) -> Response {
    views::page(
        shown.status,
        &ProviderKeyPage {
            nav: signed.nav(ACTIVE),
            key: ProviderKeyLine::from(key),
            secret_hint: key.secret_hint.clone(),
            created: when(key.created_at_unix_ms),
            discovered: key.discovered_models.clone(),
            discovered_at: key.discovered_at_unix_ms.map(when),
            discovery_error: key.discovery_error.clone(),
            form: shown.form.unwrap_or_else(|| EditForm::from(key)),
            refusal: shown.refusal,
            notice: shown.notice,
        },
    )
}

/// The caller's key named by the path, or the page saying why not.
async fn owned(c: &Console, signed: &Signed, id: &str) -> Result<ProviderKeyView, Response> {
    let found = match key_id(id) {
        Ok(id) => c.service.provider_key(&signed.caller, id).await,
        Err(e) => Err(e),
    };
    found.map_err(|e| views::failure_in(Some(signed.nav(ACTIVE)), &e))
}

/// `GET /admin/provider-keys/{id}`.
async fn one(State(c): State<Console>, Path(id): Path<String>, signed: Signed) -> Response {
    match owned(&c, &signed, &id).await {
        Ok(key) => key_page(&signed, &key, Shown::just(None)),
        Err(page) => page,
    }
}

/// `POST /admin/provider-keys/{id}`: what differs from the key's level, weight and
/// models is changed.
async fn edit(State(c): State<Console>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let key = match owned(&c, &signed, &id).await {
        Ok(key) => key,
        Err(page) => return page,
    };
    let typed = EditForm {
        models: form.get("models").to_owned(),
        level: form.get("level").to_owned(),
        weight: form.get("weight").to_owned(),
    };
    let mut body = Map::new();
    let models = model_list(&typed.models);
    if models != key.models {
        body.insert("models".to_owned(), Value::from(models));
    }
    for (name, value, now) in [
        ("level", &typed.level, key.level),
        ("weight", &typed.weight, key.weight),
    ] {
        if value.trim() != now.to_string() {
            body.insert(name.to_owned(), number(value));
        }
    }
    let outcome = match decode_object::<UpdateProviderKey>(Value::Object(body)) {
        Ok(req) => {
            c.service
                .update_provider_key(&signed.caller, key.id, req)
                .await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(updated) => key_page(&signed, &updated, Shown::just(Some("Saved.".to_owned()))),
        Err(e) if is_form_refusal(&e) => {
            key_page(&signed, &key, Shown::refused(&e, EDIT_FIELDS, Some(typed)))
        }
        Err(e) => views::failure_in(Some(signed.nav(ACTIVE)), &e),
    }
}

/// `POST /admin/provider-keys/{id}/status`: disable or enable.
async fn set_status(State(c): State<Console>, Path(id): Path<String>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let key = match owned(&c, &signed, &id).await {
        Ok(key) => key,
        Err(page) => return page,
    };
    let req = UpdateProviderKey {
        status: Some(form.get("status").to_owned()),
        ..UpdateProviderKey::default()
    };
    match c
        .service
        .update_provider_key(&signed.caller, key.id, req)
        .await
    {
        Ok(updated) => {
            let said = if updated.status == "active" {
                "Enabled: data planes use it again with the next snapshot."
            } else {
                "Disabled: data planes stop using it with the next snapshot."
            };
            key_page(&signed, &updated, Shown::just(Some(said.to_owned())))
        }
        Err(e) if is_form_refusal(&e) => {
            key_page(&signed, &key, Shown::refused(&e, &["status"], None))
        }
        Err(e) => views::failure_in(Some(signed.nav(ACTIVE)), &e),
    }
}

/// `POST /admin/provider-keys/{id}/discover`: the upstream asked for its models now.
async fn discover(State(c): State<Console>, Path(id): Path<String>, posted: Posted) -> Response {
    let signed = posted.signed;
    let key = match owned(&c, &signed, &id).await {
        Ok(key) => key,
        Err(page) => return page,
    };
    match c
        .service
        .discover_provider_key(&signed.caller, key.id)
        .await
    {
        Ok(asked) => {
            let said = match &asked.discovery_error {
                Some(why) => format!("The upstream was asked; no list: {why}"),
                None => format!(
                    "The upstream was asked; it lists {} models.",
                    asked.discovered_models.len()
                ),
            };
            key_page(&signed, &asked, Shown::just(Some(said)))
        }
        Err(e) if is_form_refusal(&e) => key_page(&signed, &key, Shown::refused(&e, &[], None)),
        Err(e) => views::failure_in(Some(signed.nav(ACTIVE)), &e),
    }
}

/// `POST /admin/provider-keys/{id}/delete` (the page asks first).
async fn delete(State(c): State<Console>, Path(id): Path<String>, posted: Posted) -> Response {
    let signed = posted.signed;
    let deleted = match key_id(&id) {
        Ok(id) => c.service.delete_provider_key(&signed.caller, id).await,
        Err(e) => Err(e),
    };
    match deleted {
        Ok(()) => Redirect::to("/admin/provider-keys").into_response(),
        Err(e) => views::failure_in(Some(signed.nav(ACTIVE)), &e),
    }
}

/// A key's health in words (a badge says it in text, never colour alone).
pub struct Health {
    /// `unknown`, `healthy`, `cooling_down` or `unhealthy`: the badge's style.
    pub state: &'static str,
    pub text: String,
}

impl From<&ProviderKeyView> for Health {
    fn from(k: &ProviderKeyView) -> Self {
        let (state, text) = match k.health.as_str() {
            "healthy" => ("healthy", "Healthy"),
            "cooling_down" => ("cooling_down", "Cooling down"),
            "unhealthy" => ("unhealthy", "Unhealthy"),
            _ => ("unknown", "Unknown: no call yet"),
        };
        let text = match k.health_until_unix_ms {
            Some(until) if state != "healthy" && state != "unknown" => {
                format!("{text} until {}", when(until))
            }
            _ => text.to_owned(),
        };
        Self { state, text }
    }
}

pub struct ProviderKeyLine {
    pub id: String,
    pub provider: &'static str,
    pub protocol: &'static str,
    pub base_url: String,
    pub level: u32,
    pub weight: u32,
    pub models: String,
    /// What the upstream lists, shortened, or why it could not be had.
    pub discovered: String,
    pub status: &'static str,
    pub health: Health,
}

impl From<&ProviderKeyView> for ProviderKeyLine {
    fn from(k: &ProviderKeyView) -> Self {
        let discovered = match (&k.discovery_error, k.discovered_at_unix_ms) {
            (Some(why), _) => format!("none: {why}"),
            (None, None) => "not asked yet".to_owned(),
            (None, Some(_)) if k.discovered_models.is_empty() => "none".to_owned(),
            (None, Some(_)) => {
                let named = k.discovered_models.iter().take(LISTED_MODELS);
                let mut text = named.cloned().collect::<Vec<_>>().join(", ");
                let rest = k.discovered_models.len().saturating_sub(LISTED_MODELS);
                if rest > 0 {
                    text.push_str(&format!(" and {rest} more"));
                }
                text
            }
        };
        Self {
            id: k.id.to_string(),
            provider: k.provider,
            protocol: k.protocol,
            base_url: k.base_url.clone(),
            level: k.level,
            weight: k.weight,
            models: k.models.join(", "),
            discovered,
            status: k.status,
            health: Health::from(k),
        }
    }
}

#[derive(Template)]
#[template(path = "provider_keys.html")]
pub struct ProviderKeysPage {
    pub nav: Nav,
    pub keys: Vec<ProviderKeyLine>,
    pub page: u32,
    pub more: bool,
    pub form: AddForm,
    pub refusal: Option<Refusal>,
    /// A key just added: its id and base URL.
    pub added: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "provider_key.html")]
pub struct ProviderKeyPage {
    pub nav: Nav,
    pub key: ProviderKeyLine,
    pub secret_hint: String,
    pub created: String,
    pub discovered: Vec<String>,
    pub discovered_at: Option<String>,
    pub discovery_error: Option<String>,
    pub form: EditForm,
    pub refusal: Option<Refusal>,
    pub notice: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_read_as_the_api_would() {
        assert_eq!(
            model_list(" gpt-4o, o3\n\nclaude-*\r\n,"),
            ["gpt-4o", "o3", "claude-*"]
        );
        assert_eq!(number(" 7 "), Value::from(7));
        assert_eq!(number("-1"), Value::from(-1));
        assert_eq!(number("seven"), Value::from("seven"));
        assert!(key_id("not-an-id").is_err());
    }
}

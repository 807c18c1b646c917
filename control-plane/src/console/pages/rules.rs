//! Admin (main accounts): the rules editor, one form per section. Each form carries
//! the revision its value was read at; the service applies a save only if nobody
//! saved the rules since, and otherwise the page shows the current value beside the
//! one posted.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use switchyard_core::error::ErrorCode;
use switchyard_core::rules::SECTIONS;

use super::{form_status, pretty};
use crate::console::Console;
use crate::console::session::{Posted, Signed};
use crate::console::views::{self, Nav};
use crate::service::RulesAt;

pub const ROUTES: &[(&str, &[&str])] = &[("/admin/rules", &["GET", "POST"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/admin/rules", get(rules).post(save_section))
}

/// Each section's heading and the shape its value takes.
const GUIDE: [(&str, &str, &str); 9] = [
    (
        "model_mapper",
        "Model mapper",
        r#"{"requested-name": "served-name"}: a requested model is renamed before routing (chains of up to 8, no cycles)."#,
    ),
    (
        "level_mapper",
        "Level mapper",
        r#"{"model or prefix*": level}: which level (pool of provider keys) serves a model; the most specific pattern wins; each level needs a provider key."#,
    ),
    (
        "switch_over",
        "Switch-over",
        r#"{"level": backup level}: the backup tried after a level's own keys failed; every chain must end."#,
    ),
    (
        "resources",
        "Resources",
        r#"["/v1/chat/completions", "/v1/embeddings*"]: the API paths that may be called; empty box: every path."#,
    ),
    (
        "model_limits",
        "Model limits",
        r#"{"model or prefix*": {"rpm": 100, "tpm": 100000}}: caps for the whole account tree."#,
    ),
    (
        "pricing",
        "Pricing",
        r#"{"model or prefix*": {"input_per_million_nanos": 0, "cached_input_per_million_nanos": 0, "cache_write_per_million_nanos": 0, "output_per_million_nanos": 0, "per_request_nanos": 0}}: nano-dollars; the most specific pattern wins."#,
    ),
    (
        "limits",
        "Limit settings",
        "The output tokens reserved for a call that names no maximum, and what the data planes do while the shared limit store is away.",
    ),
    (
        "forward_headers",
        "Forwarded headers",
        r#"["x-request-id"]: client headers sent upstream besides the built-in allow-list."#,
    ),
    (
        "translation",
        "Protocol translation",
        r#"{"enabled": false}: calls reach only provider keys of their own protocol (on by default: a model only another protocol's keys serve is translated)."#,
    ),
];

#[derive(Deserialize)]
struct Saved {
    saved: Option<String>,
}

/// `GET /admin/rules`.
async fn rules(State(c): State<Console>, signed: Signed, Query(q): Query<Saved>) -> Response {
    let saved = q
        .saved
        .and_then(|s| SECTIONS.iter().copied().find(|known| *known == s));
    rules_page(&c, &signed, None, saved).await
}

/// What a refused save leaves on the page: the section, the value posted, the
/// service's message, and whether it was refused for a newer revision.
struct Refused {
    section: &'static str,
    entered: Entered,
    message: String,
    conflict: bool,
}

/// A section's value as its form posted it.
#[derive(Clone, Default)]
struct Entered {
    value: String,
    default_max: String,
    store_down: String,
    quota_headers: String,
}

/// The page: every section at the current revision; a refused save keeps its value
/// (and on a conflict shows the current one beside it).
async fn rules_page(
    c: &Console,
    signed: &Signed,
    refused: Option<Refused>,
    saved: Option<&'static str>,
) -> Response {
    let nav = signed.nav("admin-rules");
    let at = match c.service.rules_at(&signed.caller).await {
        Ok(at) => at,
        Err(e) => return views::failure_in(Some(nav), &e),
    };
    let mut sections: Vec<SectionForm> = GUIDE
        .iter()
        .map(|(name, title, help)| SectionForm::current(&at, name, title, help))
        .collect();
    let mut top = None;
    let status = form_status(refused.is_some(), false);
    if let Some(r) = refused {
        match sections.iter_mut().find(|s| s.name == r.section) {
            Some(s) => {
                if r.conflict {
                    s.conflict = Some(s.value.clone());
                }
                s.value = r.entered.value;
                s.default_max = r.entered.default_max;
                s.store_down = r.entered.store_down;
                s.quota_headers = r.entered.quota_headers;
                s.error = Some(r.message);
            }
            None => top = Some(r.message),
        }
    }
    let page = RulesPage {
        nav,
        revision: at.revision,
        sections,
        error: top,
        saved: saved.map(|s| title_of(s).to_owned()),
    };
    views::page(status, &page)
}

fn title_of(section: &str) -> &'static str {
    GUIDE
        .iter()
        .find(|(name, _, _)| *name == section)
        .map_or("", |(_, title, _)| title)
}

/// `POST /admin/rules`: one section replaced, at the revision the form was read at.
async fn save_section(State(c): State<Console>, posted: Posted) -> Response {
    let Posted { signed, form } = posted;
    let asked = form.get("section");
    let section = SECTIONS.iter().copied().find(|s| *s == asked);
    let entered = Entered {
        value: form.get("value").to_owned(),
        default_max: form.get("default_max_output_tokens").trim().to_owned(),
        store_down: form.get("when_store_down").to_owned(),
        quota_headers: form.get("quota_headers").to_owned(),
    };
    let refuse = |message: String, conflict: bool| Refused {
        section: section.unwrap_or(""),
        entered: entered.clone(),
        message,
        conflict,
    };
    let Ok(revision) = form.get("revision").parse::<i64>() else {
        let r = refuse(
            "the form lost the revision it was read at; reload the page".into(),
            false,
        );
        return rules_page(&c, &signed, Some(r), None).await;
    };
    let value = match section_value(section, &entered) {
        Ok(v) => v,
        Err(message) => return rules_page(&c, &signed, Some(refuse(message, false)), None).await,
    };
    let mut patch = serde_json::Map::new();
    patch.insert(asked.to_owned(), value);
    match c
        .service
        .edit_rules(&signed.caller, Some(revision), |current| {
            current.patched(patch.clone())
        })
        .await
    {
        Ok(_) => Redirect::to(&format!(
            "/admin/rules?saved={0}#{0}",
            section.unwrap_or_default()
        ))
        .into_response(),
        Err(e) if e.code == ErrorCode::PermissionDenied => {
            views::failure_in(Some(signed.nav("admin-rules")), &e)
        }
        Err(e) => {
            let r = refuse(e.message, e.code == ErrorCode::Conflict);
            rules_page(&c, &signed, Some(r), None).await
        }
    }
}

/// The JSON a section form posted: the limit settings from their fields, any other
/// section from its text (empty: clear the section).
fn section_value(section: Option<&str>, posted: &Entered) -> Result<serde_json::Value, String> {
    if section == Some("limits") {
        let mut settings = serde_json::Map::new();
        if !posted.default_max.is_empty() {
            let n: u64 = posted.default_max.parse().map_err(|_| {
                format!(
                    "{:?} is not a whole number of tokens",
                    posted.default_max.chars().take(40).collect::<String>()
                )
            })?;
            settings.insert("default_max_output_tokens".into(), n.into());
        }
        settings.insert("when_store_down".into(), posted.store_down.clone().into());
        if posted.quota_headers == "off" {
            settings.insert("quota_headers".into(), false.into());
        }
        return Ok(serde_json::Value::Object(settings));
    }
    let text = posted.value.trim();
    if text.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

/// One section's form.
pub struct SectionForm {
    pub name: &'static str,
    pub title: &'static str,
    pub help: &'static str,
    /// The text in the box: the current value, or the one a refused save posted.
    pub value: String,
    /// The limit settings' fields.
    pub default_max: String,
    pub store_down: String,
    /// `on` or `off`.
    pub quota_headers: String,
    /// After a conflict: the value now stored, shown beside the posted one.
    pub conflict: Option<String>,
    pub error: Option<String>,
}

impl SectionForm {
    fn current(at: &RulesAt, name: &'static str, title: &'static str, help: &'static str) -> Self {
        let value = at.rules.section(name).unwrap_or(serde_json::Value::Null);
        let limits = at.rules.limits;
        Self {
            name,
            title,
            help,
            value: if value.is_null() {
                String::new()
            } else {
                pretty(&value)
            },
            default_max: limits
                .default_max_output_tokens
                .map(|n| n.to_string())
                .unwrap_or_default(),
            store_down: limits.when_store_down.as_str().to_owned(),
            quota_headers: if limits.quota_headers { "on" } else { "off" }.to_owned(),
            conflict: None,
            error: None,
        }
    }
}

#[derive(Template)]
#[template(path = "rules.html")]
pub struct RulesPage {
    pub nav: Nav,
    /// The revision every form was read at.
    pub revision: i64,
    pub sections: Vec<SectionForm>,
    /// A refusal that names no section (an unknown one).
    pub error: Option<String>,
    /// The section just saved.
    pub saved: Option<String>,
}

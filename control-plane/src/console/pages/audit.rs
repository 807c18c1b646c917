//! Admin: the audit log of the caller's tree (every entry for the operator), newest
//! first, paged, each change shown as the fields it changed with their value before
//! and after. The entries hold redacted views only, so no secret reaches the page.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::error::ErrorCode;

use super::PAGE_SIZE;
use crate::console::Console;
use crate::console::session::Signed;
use crate::console::views::{self, Nav, when};
use crate::service::{ApiError, AuditQuery};
use crate::store::AuditRecord;

pub const ROUTES: &[(&str, &[&str])] = &[("/admin/audit", &["GET"])];

pub fn routes() -> Router<Console> {
    Router::new().route("/admin/audit", get(audit))
}

#[derive(Deserialize)]
struct Paging {
    before: Option<String>,
}

/// `GET /admin/audit?before=<seq>`.
async fn audit(State(c): State<Console>, signed: Signed, Query(q): Query<Paging>) -> Response {
    let nav = signed.nav("admin-audit");
    let before = match q.before.as_deref().filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                let e = ApiError::new(
                    ErrorCode::InvalidRequest,
                    format!(
                        "{:?} is not an entry number",
                        b.chars().take(40).collect::<String>()
                    ),
                );
                return views::failure_in(Some(nav), &e);
            }
        },
    };
    let query = AuditQuery {
        before,
        limit: Some(PAGE_SIZE + 1),
    };
    match c.service.audit_log(&signed.caller, query).await {
        Ok(mut records) => {
            let older = records.len() > PAGE_SIZE as usize;
            records.truncate(PAGE_SIZE as usize);
            let older = older.then(|| records.last().map(|r| r.seq)).flatten();
            views::page(
                StatusCode::OK,
                &AuditPage {
                    nav,
                    entries: records.iter().map(AuditLine::from).collect(),
                    older,
                    paged: before.is_some(),
                },
            )
        }
        Err(e) => views::failure_in(Some(nav), &e),
    }
}

/// One field an entry changed.
pub struct Change {
    /// The field (empty: the whole value).
    pub field: String,
    pub before: String,
    pub after: String,
}

pub struct AuditLine {
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub changes: Vec<Change>,
}

impl From<&AuditRecord> for AuditLine {
    fn from(r: &AuditRecord) -> Self {
        Self {
            seq: r.seq,
            at: when(r.at_unix_ms),
            actor: r.actor.clone(),
            action: r.action.clone(),
            target: r.target.clone(),
            changes: changes(r.before.as_ref(), r.after.as_ref()),
        }
    }
}

/// The fields that differ between two states (objects: field by field; anything
/// else: the two values whole). Absent reads as `—`.
fn changes(before: Option<&Value>, after: Option<&Value>) -> Vec<Change> {
    let show = |v: Option<&Value>| v.map_or_else(|| "—".to_owned(), Value::to_string);
    match (before, after) {
        (Some(Value::Object(b)), Some(Value::Object(a))) => {
            let mut fields: Vec<&String> = b.keys().chain(a.keys()).collect();
            fields.sort();
            fields.dedup();
            fields
                .into_iter()
                .filter(|f| b.get(*f) != a.get(*f))
                .map(|f| Change {
                    field: f.clone(),
                    before: show(b.get(f)),
                    after: show(a.get(f)),
                })
                .collect()
        }
        (None, None) => Vec::new(),
        _ => vec![Change {
            field: String::new(),
            before: show(before),
            after: show(after),
        }],
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub entries: Vec<AuditLine>,
    /// The `before` of the next (older) page, when there is one.
    pub older: Option<i64>,
    /// Not the newest page: offer a way back.
    pub paged: bool,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_changed_fields_are_shown() {
        let before = json!({"model_mapper": {"a": "b"}, "pricing": {"m": 1}});
        let after = json!({"model_mapper": {"a": "c"}, "pricing": {"m": 1}, "resources": ["/v1"]});
        let shown: Vec<(String, String, String)> = changes(Some(&before), Some(&after))
            .into_iter()
            .map(|c| (c.field, c.before, c.after))
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    "model_mapper".into(),
                    r#"{"a":"b"}"#.into(),
                    r#"{"a":"c"}"#.into()
                ),
                ("resources".into(), "—".into(), r#"["/v1"]"#.into()),
            ]
        );
        let created = changes(None, Some(&json!({"name": "x"})));
        assert_eq!(created.len(), 1);
        assert_eq!(created[0].before, "—");
        assert_eq!(created[0].after, r#"{"name":"x"}"#);
        assert!(changes(None, None).is_empty());
    }
}

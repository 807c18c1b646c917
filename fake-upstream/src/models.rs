//! The model list, in each protocol's shape: OpenAI's list object, Anthropic's
//! pages (`limit`, `after_id`, `has_more`), Gemini's (`gemini::listing`). Asked for
//! the list, a credential can be refused (401) or find none (404, as at an upstream
//! without a model list). These calls are counted apart from the proxied ones and
//! leave what the fake observed of those as it was.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::{Behaviour, Dialect, Fake, error, json_response};

/// Most models on one of Anthropic's pages here, whatever `limit` asks: small, so a
/// client's paging is exercised.
pub const PAGE: usize = 20;

#[derive(Deserialize)]
pub(crate) struct PageQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after_id: Option<String>,
    // Gemini's.
    #[serde(default, rename = "pageSize")]
    pub(crate) page_size: Option<usize>,
    #[serde(default, rename = "pageToken")]
    pub(crate) page_token: Option<String>,
    #[serde(default)]
    pub(crate) key: Option<String>,
}

pub(crate) async fn list(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> Response {
    let dialect = if headers.contains_key(crate::gemini::KEY_HEADER) {
        Dialect::Gemini
    } else if headers.contains_key("anthropic-version") || headers.contains_key("x-api-key") {
        Dialect::Anthropic
    } else {
        Dialect::OpenAi
    };
    let models = match listed(&fake, dialect, &headers) {
        Ok(models) => models,
        Err(refused) => return *refused,
    };
    match dialect {
        Dialect::OpenAi => json_response(&json!({
            "object": "list",
            "data": models.iter().map(|id| json!({
                "id": id, "object": "model", "created": 0, "owned_by": "fake-upstream"
            })).collect::<Vec<_>>(),
        })),
        Dialect::Anthropic => {
            let start = page
                .after_id
                .and_then(|after| models.iter().position(|m| *m == after).map(|i| i + 1))
                .unwrap_or(0);
            let size = page.limit.unwrap_or(PAGE).clamp(1, PAGE);
            let end = (start + size).min(models.len());
            let shown = models.get(start..end).unwrap_or_default();
            json_response(&json!({
                "data": shown.iter().map(|id| json!({
                    "type": "model", "id": id, "display_name": id,
                    "created_at": "2025-01-01T00:00:00Z"
                })).collect::<Vec<_>>(),
                "has_more": end < models.len(),
                "first_id": shown.first(),
                "last_id": shown.last(),
            }))
        }
        Dialect::Gemini => crate::gemini::listing(&models, &page),
    }
}

/// Count a model-list call and answer it as the credential's behaviour says: the
/// models to list, or the refusal (401), the missing list (404) or the failure.
pub(crate) fn listed(
    fake: &Fake,
    dialect: Dialect,
    headers: &HeaderMap,
) -> Result<Vec<String>, Box<Response>> {
    fake.observed
        .model_list_calls
        .fetch_add(1, Ordering::SeqCst);
    let secret = crate::credential(dialect, headers);
    let secret = secret.strip_prefix("Bearer ").unwrap_or(secret);
    let behaviour = fake.behaviour_of(secret);
    let refused = fake.expected_secret.as_ref().is_some_and(|e| e != secret);
    if refused || behaviour == Behaviour::Reject {
        return Err(Box::new(error(
            dialect,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "Incorrect API key provided",
        )));
    }
    match behaviour {
        Behaviour::NoModelList => Err(Box::new(error(
            dialect,
            StatusCode::NOT_FOUND,
            "not_found_error",
            "Not found",
        ))),
        Behaviour::Fail { status } => Err(Box::new(error(
            dialect,
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "api_error",
            "The server had an error while processing your request",
        ))),
        _ => Ok(fake.models.lock().map(|m| m.clone()).unwrap_or_default()),
    }
}

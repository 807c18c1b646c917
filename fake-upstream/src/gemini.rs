//! Gemini's endpoints (`/v1beta`): `models/{model}:generateContent`,
//! `:streamGenerateContent` (with `?alt=sse` an SSE event per
//! `GenerateContentResponse`, without it one JSON array of them), `:countTokens`, and
//! the paged model list. The credential comes in `x-goog-api-key` or `?key=`;
//! errors take Google's shape (`{"error": {"code", "message", "status"}}`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::models::PageQuery;
use crate::{Dialect, Fake, count_tokens, error, json_response, pieces};

/// The header Gemini reads its API key from.
pub(crate) const KEY_HEADER: &str = "x-goog-api-key";

/// Listed after the fake's models, and never one a client may generate with: an
/// embedding model, as Gemini's own list has, that only answers `embedContent`.
pub const GEMINI_EMBEDDING_MODEL: &str = "gemini-embedding-001";

/// Google's canonical name of an HTTP error status.
pub(crate) fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

/// The call's headers with a `?key=` credential moved into [`KEY_HEADER`] (the
/// header wins when both are sent), so the rest of the fake reads one place.
fn with_key(mut headers: HeaderMap, key: Option<&str>) -> HeaderMap {
    if !headers.contains_key(KEY_HEADER)
        && let Some(value) = key.and_then(|k| HeaderValue::from_str(k).ok())
    {
        headers.insert(KEY_HEADER, value);
    }
    headers
}

/// `GET /v1beta/models`: pages of at most [`crate::models::PAGE`] models whatever
/// `pageSize` asks, so a client's paging is exercised; the token is where the next
/// page starts.
pub(crate) async fn list(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> Response {
    let headers = with_key(headers, page.key.as_deref());
    match crate::models::listed(&fake, Dialect::Gemini, &headers) {
        Ok(models) => listing(&models, &page),
        Err(refused) => *refused,
    }
}

/// One page of Gemini's list of `models` (and [`GEMINI_EMBEDDING_MODEL`] last).
pub(crate) fn listing(models: &[String], page: &PageQuery) -> Response {
    let all: Vec<Value> = models
        .iter()
        .map(|id| {
            json!({"name": format!("models/{id}"), "version": "001", "displayName": id,
                   "inputTokenLimit": 1_048_576, "outputTokenLimit": 65_536,
                   "supportedGenerationMethods": ["generateContent", "countTokens"]})
        })
        .chain(std::iter::once(json!({
            "name": format!("models/{GEMINI_EMBEDDING_MODEL}"), "version": "001",
            "displayName": GEMINI_EMBEDDING_MODEL,
            "supportedGenerationMethods": ["embedContent", "countTextTokens", "countTokens"]
        })))
        .collect();
    let start = page
        .page_token
        .as_deref()
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0)
        .min(all.len());
    let size = page
        .page_size
        .unwrap_or(crate::models::PAGE)
        .clamp(1, crate::models::PAGE);
    let end = (start + size).min(all.len());
    let mut body = json!({ "models": all.get(start..end).unwrap_or_default() });
    if end < all.len() {
        body["nextPageToken"] = json!(end.to_string());
    }
    json_response(&body)
}

#[derive(Deserialize)]
pub(crate) struct CallQuery {
    #[serde(default)]
    alt: Option<String>,
    #[serde(default)]
    key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest {
    #[serde(default)]
    contents: Vec<Content>,
    #[serde(default)]
    system_instruction: Option<Content>,
    #[serde(default)]
    tools: Vec<Tools>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CountRequest {
    #[serde(default)]
    contents: Vec<Content>,
    #[serde(default)]
    generate_content_request: Option<GenerateRequest>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    parts: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Tools {
    #[serde(default)]
    function_declarations: Vec<Declaration>,
}

#[derive(Deserialize)]
struct Declaration {
    name: String,
}

impl Content {
    fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl GenerateRequest {
    fn prompt(&self) -> String {
        self.system_instruction
            .iter()
            .chain(&self.contents)
            .map(Content::text)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The text of the last user turn (Gemini's role defaults to `user`).
    fn last_user(&self) -> String {
        self.contents
            .iter()
            .rev()
            .find(|c| c.role.as_deref().unwrap_or("user") == "user")
            .map(Content::text)
            .unwrap_or_default()
    }
}

/// `POST /v1beta/models/{model}:{method}`.
pub(crate) async fn call(
    State(fake): State<Arc<Fake>>,
    Path(call): Path<String>,
    Query(query): Query<CallQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers = with_key(headers, query.key.as_deref());
    let Some((model, method)) = call.rsplit_once(':') else {
        return not_found(&call);
    };
    let scripted = crate::scripted::gemini_scripted(&fake, &headers);
    match method {
        "generateContent" if scripted => {
            crate::scripted::gemini(&fake, &headers, &body, model, None).await
        }
        "streamGenerateContent" if scripted => {
            let sse = query.alt.as_deref() == Some("sse");
            crate::scripted::gemini(&fake, &headers, &body, model, Some(sse)).await
        }
        "generateContent" => generate(&fake, &headers, &body, model, None).await,
        "streamGenerateContent" => {
            let sse = query.alt.as_deref() == Some("sse");
            generate(&fake, &headers, &body, model, Some(sse)).await
        }
        "countTokens" => {
            match fake
                .read::<CountRequest>(Dialect::Gemini, &headers, &body)
                .await
            {
                Ok((req, _)) => {
                    let prompt = match &req.generate_content_request {
                        Some(inner) => inner.prompt(),
                        None => req
                            .contents
                            .iter()
                            .map(Content::text)
                            .collect::<Vec<_>>()
                            .join(" "),
                    };
                    json_response(&json!({"totalTokens": count_tokens(&prompt)}))
                }
                Err(refused) => *refused,
            }
        }
        _ => not_found(&call),
    }
}

fn not_found(call: &str) -> Response {
    error(
        Dialect::Gemini,
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("models/{call} is not found for API version v1beta"),
    )
}

/// A `GenerateContentResponse` of one candidate holding `parts`, with its finish
/// reason and `usageMetadata` when given (a whole answer, or a stream's chunk).
pub(crate) fn response(
    model: &str,
    parts: Vec<Value>,
    finish: Option<&str>,
    usage: Option<&Value>,
) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
    }
    let mut c = json!({"candidates": [candidate], "modelVersion": model,
                       "responseId": "fake-gemini"});
    if let Some(usage) = usage {
        c["usageMetadata"] = usage.clone();
    }
    c
}

/// An answer to `generateContent` (`stream` `None`) or `streamGenerateContent`
/// (`Some(true)`: SSE; `Some(false)`: one JSON array): an echo of the last user
/// turn, then a call to the first declared function when there are any;
/// `usageMetadata` on the whole answer and on the last chunk of a stream.
async fn generate(
    fake: &Arc<Fake>,
    headers: &HeaderMap,
    body: &[u8],
    model: &str,
    stream: Option<bool>,
) -> Response {
    let (req, behaviour) = match fake
        .read::<GenerateRequest>(Dialect::Gemini, headers, body)
        .await
    {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    if req.contents.is_empty() {
        return error(
            Dialect::Gemini,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "* GenerateContentRequest.contents: contents is not specified",
        );
    }
    let last_user = req.last_user();
    let reply = format!("echo: {last_user}");
    let (input, output) = (count_tokens(&req.prompt()), count_tokens(&reply));
    fake.record_tokens(input, output);
    let usage = json!({"promptTokenCount": input, "candidatesTokenCount": output,
                       "totalTokenCount": input + output});
    let function = req
        .tools
        .iter()
        .flat_map(|t| &t.function_declarations)
        .next()
        .map(|d| json!({"functionCall": {"name": d.name, "args": {"echo": last_user}}}));
    let chunk = |parts, finish, usage| response(model, parts, finish, usage);
    let Some(sse) = stream else {
        let mut parts = vec![json!({ "text": reply })];
        parts.extend(function);
        return fake.json(&chunk(parts, Some("STOP"), Some(&usage)), behaviour);
    };
    let mut chunks: Vec<Value> = pieces(&reply)
        .into_iter()
        .map(|p| chunk(vec![json!({ "text": p })], None, None))
        .collect();
    let last = match function {
        Some(call) => vec![call],
        None => vec![json!({"text": ""})],
    };
    chunks.push(chunk(last, Some("STOP"), Some(&usage)));
    if sse {
        // Google ends each event with CRLF pairs.
        let events = chunks
            .iter()
            .map(|c| format!("data: {c}\r\n\r\n"))
            .collect();
        fake.sse(events, behaviour)
    } else {
        fake.json(&Value::Array(chunks), behaviour)
    }
}

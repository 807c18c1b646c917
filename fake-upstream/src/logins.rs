//! Subscription logins, as the endpoints their clients call see them: Claude Code's
//! OAuth login on the Anthropic protocol at `/claude/v1/messages` (register
//! `http://FAKE/claude` as a base URL, as `https://api.anthropic.com`), and Codex's
//! ChatGPT login on the Responses API at `/backend-api/codex/responses` (register
//! `http://FAKE/backend-api/codex`, as `https://chatgpt.com/backend-api/codex`).
//!
//! Each checks the credential as its provider does: a bearer of the login's shape
//! (`sk-ant-oat01-…`; a JWT), the headers the login needs beside it (Claude:
//! `anthropic-beta` naming `oauth-2025-04-20`; Codex: `chatgpt-account-id`), and no
//! API key besides. A login told to [`crate::Behaviour::Reject`] (by its token) is
//! refused as an expired one is, one told to [`crate::Behaviour::Scripted`] plays the
//! scripted conversation. Anything wrong is a 401 in the protocol's shape;
//! otherwise the call is answered as the protocol's endpoint answers it, the answer
//! echoing in `x-fake-login` which login arrived (and Codex's account). The call's
//! headers are kept as for every call ([`crate::Observed::last_headers`]), and its
//! count by token ([`crate::FakeUpstream::calls_with`]).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;

use crate::{Behaviour, Dialect, Fake, error, scripted};

/// The beta flag Anthropic's API needs beside an OAuth token.
pub const CLAUDE_OAUTH_BETA: &str = "oauth-2025-04-20";

/// The routes of both logins.
pub(crate) fn routes() -> Router<Arc<Fake>> {
    Router::new()
        .route("/claude/v1/messages", post(claude))
        .route("/backend-api/codex/responses", post(codex))
}

/// The bearer token of `headers`, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

/// A refusal in `dialect`'s shape.
fn refused(dialect: Dialect, message: &str) -> Response {
    error(
        dialect,
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        message,
    )
}

/// Whether `token` was told to be refused. `count`: count the call under it (the
/// Anthropic endpoint counts by `x-api-key`, which a login has none of; the OpenAI
/// one counts by the bearer itself).
fn refuses(fake: &Fake, token: &str, count: bool) -> bool {
    if count && let Ok(mut by) = fake.observed.calls_by_secret.lock() {
        *by.entry(token.to_owned()).or_default() += 1;
    }
    fake.behaviours
        .lock()
        .map(|m| m.get(token) == Some(&Behaviour::Reject))
        .unwrap_or(false)
}

fn echoed(mut response: Response, login: String) -> Response {
    if let Ok(v) = HeaderValue::from_str(&login) {
        response.headers_mut().insert("x-fake-login", v);
    }
    response
}

/// `POST /claude/v1/messages`: Claude Code's OAuth login.
async fn claude(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let dialect = Dialect::Anthropic;
    let Some(token) = bearer(&headers).filter(|t| t.starts_with("sk-ant-oat01-")) else {
        return refused(dialect, "invalid bearer token: not an OAuth access token");
    };
    let beta = headers
        .get("anthropic-beta")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !beta.split(',').any(|flag| flag.trim() == CLAUDE_OAUTH_BETA) {
        return refused(dialect, "OAuth authentication is currently not supported.");
    }
    if headers.contains_key("x-api-key") {
        return refused(dialect, "an API key and an OAuth token were both sent");
    }
    if refuses(&fake, token, true) {
        return refused(dialect, "OAuth token has expired");
    }
    let answer = scripted::messages(State(fake), headers, body).await;
    echoed(answer, "claude-oauth".to_owned())
}

/// `POST /backend-api/codex/responses`: Codex's ChatGPT login.
async fn codex(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let dialect = Dialect::OpenAi;
    let Some(token) = bearer(&headers).filter(|t| t.split('.').count() == 3) else {
        return refused(dialect, "invalid bearer token: not a ChatGPT access token");
    };
    let Some(account) = headers
        .get("chatgpt-account-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return refused(dialect, "missing chatgpt-account-id");
    };
    if headers.contains_key("x-api-key") {
        return refused(dialect, "an API key and a login were both sent");
    }
    if refuses(&fake, token, false) {
        return refused(dialect, "Your authentication token has expired.");
    }
    let answer = scripted::responses(State(fake), headers, body).await;
    echoed(answer, format!("chatgpt; account={account}"))
}

//! An OpenAI-compatible upstream that answers locally, speaking the real wire format
//! (JSON and SSE). It echoes the last user message and reports token usage by a
//! simple documented rule: one token per whitespace-separated word.
//!
//! Two users: the embedded quick start's clearly named *demo upstream*, and the test
//! suites, which also read what it received, check the credential it was sent, and
//! can hold streams open to prove the proxy passes events through as they come.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Tokens by the fake's rule: whitespace-separated words.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// What the fake has seen and reported.
#[derive(Default)]
pub struct Observed {
    pub calls: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    /// Bodies received, in order.
    pub bodies: Mutex<Vec<serde_json::Value>>,
    /// `Authorization` headers received, in order.
    pub authorizations: Mutex<Vec<String>>,
}

pub struct Fake {
    /// When set, calls whose bearer differs get a 401 in OpenAI's shape.
    expected_secret: Option<String>,
    observed: Observed,
    /// While true, streams pause after their first content chunk.
    hold: watch::Sender<bool>,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: std::net::SocketAddr,
    state: Arc<Fake>,
}

impl FakeUpstream {
    /// Serve on `listener` until the process ends.
    pub fn serve(listener: TcpListener, expected_secret: Option<String>) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(Fake {
            expected_secret,
            observed: Observed::default(),
            hold: watch::channel(false).0,
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fake upstream stopped");
            }
        });
        Ok(Self { addr, state })
    }

    /// Bind a free loopback port and serve.
    pub async fn start(expected_secret: Option<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        Self::serve(listener, expected_secret)
    }

    /// The base URL to register as a provider key (`…/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn observed(&self) -> &Observed {
        &self.state.observed
    }

    pub fn calls(&self) -> u64 {
        self.state.observed.calls.load(Ordering::SeqCst)
    }

    /// Hold every stream after its first content chunk until [`Self::release_streams`].
    pub fn hold_streams(&self) {
        self.state.hold.send_replace(true);
    }

    pub fn release_streams(&self) {
        self.state.hold.send_replace(false);
    }
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: String,
    #[serde(default)]
    content: serde_json::Value,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
            .to_string(),
    )
        .into_response()
}

fn text_of(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

async fn chat(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Ok(mut seen) = fake.observed.authorizations.lock() {
        seen.push(auth.clone());
    }
    if let Some(expected) = &fake.expected_secret
        && auth != format!("Bearer {expected}")
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "Incorrect API key provided",
        );
    }
    let value: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "body is not JSON",
            );
        }
    };
    if let Ok(mut bodies) = fake.observed.bodies.lock() {
        bodies.push(value.clone());
    }
    let req: ChatRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &e.to_string(),
            );
        }
    };
    fake.observed.calls.fetch_add(1, Ordering::SeqCst);

    let prompt: String = req
        .messages
        .iter()
        .map(|m| text_of(&m.content))
        .collect::<Vec<_>>()
        .join(" ");
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .unwrap_or_default();
    let reply = format!("echo: {last_user}");
    let input = count_tokens(&prompt);
    let output = count_tokens(&reply);
    fake.observed
        .input_tokens
        .fetch_add(input, Ordering::SeqCst);
    fake.observed
        .output_tokens
        .fetch_add(output, Ordering::SeqCst);
    let usage = json!({"prompt_tokens": input, "completion_tokens": output, "total_tokens": input + output,
                       "prompt_tokens_details": {"cached_tokens": 0}});

    if !req.stream {
        let body = json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": req.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": usage,
        });
        return (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }

    let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
    let model = req.model;
    let chunk = |delta: serde_json::Value, finish: Option<&str>| {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
    let words: Vec<&str> = reply.split(' ').collect();
    for (i, w) in words.iter().enumerate() {
        let piece = if i == 0 {
            (*w).to_owned()
        } else {
            format!(" {w}")
        };
        events.push(chunk(json!({"content": piece}), None));
    }
    events.push(chunk(json!({}), Some("stop")));
    if include_usage {
        let c = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                       "choices": [], "usage": usage});
        events.push(format!("data: {c}\n\n"));
    }
    events.push("data: [DONE]\n\n".to_owned());

    let hold = fake.hold.subscribe();
    let stream = futures_util::stream::unfold(events.into_iter().enumerate(), move |mut it| {
        let mut hold = hold.clone();
        async move {
            let (i, event) = it.next()?;
            if i == 2 {
                // After the first content chunk: wait while the test holds streams.
                let _ = hold.wait_for(|held| !*held).await;
            }
            Some((Ok::<_, Infallible>(Bytes::from(event)), it))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "fake failed",
            )
        })
}

//! An upstream that answers locally, speaking the real wire formats of the
//! protocols Switchyard proxies: OpenAI (chat completions, Responses, embeddings,
//! audio), Anthropic (messages, token counting) and Gemini (`generateContent`,
//! `streamGenerateContent`, `countTokens`), as JSON and as SSE. It echoes the
//! last user message and reports token usage by one documented rule: one token per
//! whitespace-separated word.
//!
//! Two users: the embedded quick start's clearly named *demo upstream*, and the test
//! suites and benchmark, which also tell it per credential how to misbehave (rate
//! limit, fail, refuse, stall, cut streams or end them early), read what it received,
//! and hold streams open to prove the proxy passes events through as they come.
//!
//! Layout: here the server, its behaviours and what it observed; `openai`,
//! `anthropic` and `gemini` answer each protocol's endpoints; `agentic` the tool calls
//! and reasoning the first two answer; `models` the model list of the first two
//! (Gemini's is in `gemini`); `scripted` a conversation with one tool round trip, for
//! real clients; `provider_quota` puts a provider's own rate-limit headers on every
//! answer; `logins` the endpoints subscription logins call (Claude Code's, Codex's).

mod agentic;
mod anthropic;
mod gemini;
mod logins;
mod models;
mod openai;
mod provider_quota;
mod scripted;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use gemini::GEMINI_EMBEDDING_MODEL;
pub use provider_quota::PROVIDER_LIMIT;

/// Tokens by the fake's rule: whitespace-separated words.
pub fn count_tokens(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// How the fake answers calls made with one credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    #[default]
    Succeed,
    /// 429 with `Retry-After` in seconds.
    RateLimit { retry_after_secs: u64 },
    /// An error status (500, 503…) in the protocol's error shape.
    Fail { status: u16 },
    /// 401 (Gemini: 400 `API_KEY_INVALID`): the credential is refused.
    Reject,
    /// Accept the connection and never answer.
    Stall,
    /// Send this many SSE events (or the first half of a JSON body), then break the
    /// connection.
    CutAfter { events: usize },
    /// Send this many SSE events, then end the body cleanly, without the protocol's
    /// last ones (as a provider that drops a stream behind a proxy). JSON answers
    /// are whole.
    EndAfter { events: usize },
    /// Answer JSON without its `usage` (as some providers and routers do).
    OmitUsage,
    /// Have no model list: `GET /v1/models` answers 404; every other call succeeds.
    NoModelList,
    /// Hold a scripted conversation with one tool round trip, as real clients and
    /// coding agents do (`scripted.rs` says how).
    Scripted,
}

/// The models the fake lists until told otherwise ([`FakeUpstream::set_models`]).
pub const DEFAULT_MODELS: &[&str] = &["demo-echo", "gpt-4o-mini"];

/// What the fake has seen and reported.
#[derive(Default)]
pub struct Observed {
    pub calls: AtomicU64,
    pub input_tokens: AtomicU64,
    pub output_tokens: AtomicU64,
    /// Calls whose connection went away before the fake answered.
    pub abandoned: AtomicU64,
    /// Streams sent to their end.
    pub streams_finished: AtomicU64,
    /// JSON bodies received, in order (these four only when recording).
    pub bodies: Mutex<Vec<serde_json::Value>>,
    /// Credentials received (`Authorization`, `x-api-key`, `x-goog-api-key` or
    /// Gemini's `?key=`), in order.
    pub authorizations: Mutex<Vec<String>>,
    /// Request headers of the last call.
    pub last_headers: Mutex<HeaderMap>,
    /// The query string of the last call (`None`: it had none).
    pub last_query: Mutex<Option<String>>,
    /// Bytes of each multipart upload received.
    pub upload_sizes: Mutex<Vec<usize>>,
    /// Model lists asked for (not among `calls` or the recordings above).
    pub model_list_calls: AtomicU64,
    calls_by_secret: Mutex<HashMap<String, u64>>,
}

pub(crate) struct Fake {
    /// When set, calls with another credential get a 401.
    expected_secret: Option<String>,
    /// Keep what each call sent (bodies, credentials, headers) for tests to read. A
    /// long-running process (the demo, the benchmark's baseline) keeps only counts, so
    /// its memory stays flat.
    record: bool,
    observed: Observed,
    /// While true, streams pause after their first content event.
    hold: watch::Sender<bool>,
    behaviours: Mutex<HashMap<String, Behaviour>>,
    /// What `GET /v1/models` lists, in this order.
    models: Mutex<Vec<String>>,
    /// System prompts marked `cache_control` that were seen before: Anthropic's
    /// prompt cache, without expiry.
    prompt_cache: Mutex<std::collections::HashSet<String>>,
}

/// A running fake.
#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: std::net::SocketAddr,
    state: Arc<Fake>,
}

impl FakeUpstream {
    /// Serve on `listener` until the process ends, keeping what each call sent.
    pub fn serve(listener: TcpListener, expected_secret: Option<String>) -> std::io::Result<Self> {
        Self::serve_with(listener, expected_secret, true)
    }

    /// Serve on `listener` until the process ends, keeping counts only: for a process
    /// that runs for long (the demo upstream, the benchmark's baseline).
    pub fn serve_unrecorded(listener: TcpListener) -> std::io::Result<Self> {
        Self::serve_with(listener, None, false)
    }

    fn serve_with(
        listener: TcpListener,
        expected_secret: Option<String>,
        record: bool,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let state = Arc::new(Fake {
            expected_secret,
            record,
            observed: Observed::default(),
            hold: watch::channel(false).0,
            behaviours: Mutex::new(HashMap::new()),
            models: Mutex::new(DEFAULT_MODELS.iter().map(|m| (*m).to_owned()).collect()),
            prompt_cache: Mutex::new(std::collections::HashSet::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(scripted::chat))
            .route("/v1/responses", post(scripted::responses))
            .route("/v1/embeddings", post(openai::embeddings))
            .route("/v1/audio/speech", post(openai::speech))
            .route("/v1/audio/transcriptions", post(openai::transcription))
            .route("/v1/audio/translations", post(openai::transcription))
            .route("/v1/messages", post(scripted::messages))
            .route("/v1/messages/count_tokens", post(anthropic::count))
            .route("/v1/models", axum::routing::get(models::list))
            .route("/v1beta/models", axum::routing::get(gemini::list))
            // `{model}:generateContent` and the other methods: one path segment.
            .route("/v1beta/models/{call}", post(gemini::call))
            .merge(logins::routes())
            // Uploads of any size: the proxy in front decides what it accepts.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn(provider_quota::add))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                record_query,
            ))
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

    /// The base URL to register as a Gemini provider key (`…/v1beta`).
    pub fn gemini_base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr)
    }

    pub fn observed(&self) -> &Observed {
        &self.state.observed
    }

    pub fn calls(&self) -> u64 {
        self.state.observed.calls.load(Ordering::SeqCst)
    }

    /// A header of the last call, as text.
    pub fn last_header(&self, name: &str) -> Option<String> {
        self.state
            .observed
            .last_headers
            .lock()
            .ok()?
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Calls that reached the point of answering with `secret` (misbehaving ones too).
    pub fn calls_with(&self, secret: &str) -> u64 {
        self.state
            .observed
            .calls_by_secret
            .lock()
            .map(|m| m.get(secret).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// From now on, answer calls made with `secret` this way.
    pub fn set_behaviour(&self, secret: &str, behaviour: Behaviour) {
        if let Ok(mut map) = self.state.behaviours.lock() {
            map.insert(secret.to_owned(), behaviour);
        }
    }

    /// From now on, list these models (in this order) at `GET /v1/models`.
    pub fn set_models(&self, models: &[&str]) {
        if let Ok(mut list) = self.state.models.lock() {
            *list = models.iter().map(|m| (*m).to_owned()).collect();
        }
    }

    /// Model lists asked for so far.
    pub fn model_list_calls(&self) -> u64 {
        self.state.observed.model_list_calls.load(Ordering::SeqCst)
    }

    /// Hold every stream after its first content event until [`Self::release_streams`].
    pub fn hold_streams(&self) {
        self.state.hold.send_replace(true);
    }

    pub fn release_streams(&self) {
        self.state.hold.send_replace(false);
    }
}

/// Keep the query string of each call, when recording.
async fn record_query(
    axum::extract::State(fake): axum::extract::State<Arc<Fake>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if fake.record
        && let Ok(mut last) = fake.observed.last_query.lock()
    {
        *last = request.uri().query().map(str::to_owned);
    }
    next.run(request).await
}

/// The protocol whose shapes an answer takes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
}

pub(crate) fn error(dialect: Dialect, status: StatusCode, kind: &str, message: &str) -> Response {
    let body = match dialect {
        Dialect::OpenAi => {
            serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
        Dialect::Anthropic => {
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        // Google's shape: the status again, and its canonical name instead of a type.
        Dialect::Gemini => serde_json::json!({"error": {
            "code": status.as_u16(), "message": message, "status": gemini::status_name(status)
        }}),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A refused credential: 401, except on Gemini, which answers an invalid key with
/// 400 `INVALID_ARGUMENT` and the reason `API_KEY_INVALID` in its details.
fn rejected(dialect: Dialect) -> Response {
    if dialect != Dialect::Gemini {
        return error(
            dialect,
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "Incorrect API key provided",
        );
    }
    let body = serde_json::json!({"error": {
        "code": 400,
        "message": "API key not valid. Please pass a valid API key.",
        "status": "INVALID_ARGUMENT",
        "details": [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com"
        }]
    }});
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn json_response(body: &serde_json::Value) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The credential header a call carries in `dialect` (empty when none).
fn credential_header(dialect: Dialect, headers: &HeaderMap) -> &str {
    match dialect {
        Dialect::Anthropic => headers.get("x-api-key"),
        Dialect::OpenAi => headers.get(header::AUTHORIZATION),
        Dialect::Gemini => headers.get(gemini::KEY_HEADER),
    }
    .and_then(|v| v.to_str().ok())
    .unwrap_or_default()
}

/// The secret of a call: its credential without the `Bearer ` scheme.
pub(crate) fn credential(dialect: Dialect, headers: &HeaderMap) -> &str {
    let secret = credential_header(dialect, headers);
    secret.strip_prefix("Bearer ").unwrap_or(secret)
}

/// Counts a call that went away before its answer.
struct Abandon<'a> {
    fake: &'a Fake,
    armed: bool,
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.fake.observed.abandoned.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Fake {
    /// Check the credential, record the call, and apply the credential's behaviour.
    /// `Ok` carries the behaviour left for the answer itself (success or a cut).
    pub(crate) async fn admit(
        &self,
        dialect: Dialect,
        headers: &HeaderMap,
    ) -> Result<Behaviour, Box<Response>> {
        let secret = credential_header(dialect, headers);
        if self.record {
            if let Ok(mut seen) = self.observed.authorizations.lock() {
                seen.push(secret.to_owned());
            }
            if let Ok(mut last) = self.observed.last_headers.lock() {
                *last = headers.clone();
            }
        }
        let secret = credential(dialect, headers).to_owned();
        if let Some(expected) = &self.expected_secret
            && &secret != expected
        {
            return Err(Box::new(error(
                dialect,
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "Incorrect API key provided",
            )));
        }
        if let Ok(mut by) = self.observed.calls_by_secret.lock() {
            *by.entry(secret.clone()).or_default() += 1;
        }
        let behaviour = self.behaviour_of(&secret);
        match behaviour {
            Behaviour::RateLimit { retry_after_secs } => {
                let mut r = error(
                    dialect,
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "Rate limit reached",
                );
                if let Ok(v) = retry_after_secs.to_string().parse() {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                Err(Box::new(r))
            }
            Behaviour::Fail { status } => Err(Box::new(error(
                dialect,
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "api_error",
                "The server had an error while processing your request",
            ))),
            Behaviour::Reject => Err(Box::new(rejected(dialect))),
            Behaviour::Stall => {
                let mut guard = Abandon {
                    fake: self,
                    armed: true,
                };
                tokio::time::sleep(Duration::from_secs(3600)).await;
                guard.armed = false;
                Err(Box::new(error(
                    dialect,
                    StatusCode::GATEWAY_TIMEOUT,
                    "api_error",
                    "stalled",
                )))
            }
            other => Ok(other),
        }
    }

    /// Admit the call, then parse and record its JSON body.
    pub(crate) async fn read<T: serde::de::DeserializeOwned>(
        &self,
        dialect: Dialect,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(T, Behaviour), Box<Response>> {
        let behaviour = self.admit(dialect, headers).await?;
        let bad = |message: &str| {
            Box::new(error(
                dialect,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                message,
            ))
        };
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|_| bad("body is not JSON"))?;
        if self.record
            && let Ok(mut bodies) = self.observed.bodies.lock()
        {
            bodies.push(value.clone());
        }
        let parsed = serde_json::from_value(value).map_err(|e| bad(&e.to_string()))?;
        Ok((parsed, behaviour))
    }

    /// How calls with `secret` are to be answered.
    pub(crate) fn behaviour_of(&self, secret: &str) -> Behaviour {
        self.behaviours
            .lock()
            .map(|m| m.get(secret).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    pub(crate) fn record_tokens(&self, input: u64, output: u64) {
        self.observed.calls.fetch_add(1, Ordering::SeqCst);
        self.observed
            .input_tokens
            .fetch_add(input, Ordering::SeqCst);
        self.observed
            .output_tokens
            .fetch_add(output, Ordering::SeqCst);
    }

    /// Whether `prefix` was in the prompt cache; it is afterwards.
    pub(crate) fn cached_before(&self, prefix: &str) -> bool {
        self.prompt_cache
            .lock()
            .is_ok_and(|mut cache| !cache.insert(prefix.to_owned()))
    }

    /// An SSE response of `events`, honouring holds, cuts and early ends.
    pub(crate) fn sse(self: &Arc<Self>, events: Vec<String>, behaviour: Behaviour) -> Response {
        let events: Vec<String> = if behaviour == Behaviour::OmitUsage {
            events.into_iter().filter_map(without_usage).collect()
        } else {
            events
        };
        let cut = match behaviour {
            Behaviour::CutAfter { events } => Some(events),
            _ => None,
        };
        let hold = self.hold.subscribe();
        let total = events.len();
        let mut events = events;
        if let Behaviour::EndAfter { events: n } = behaviour {
            events.truncate(n);
        }
        let fake = self.clone();
        let stream = futures_util::stream::unfold(
            (events.into_iter().enumerate(), hold),
            move |(mut it, mut hold)| {
                let fake = fake.clone();
                async move {
                    let (i, event) = it.next()?;
                    if cut == Some(i) {
                        // Let what was sent reach the wire first, as a real cut does.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return Some((
                            Err(std::io::Error::other("cut by the fake upstream")),
                            (it, hold),
                        ));
                    }
                    if i == 2 {
                        // After the first content event: wait while the test holds streams.
                        let _ = hold.wait_for(|held| !*held).await;
                    }
                    if i + 1 == total {
                        fake.observed
                            .streams_finished
                            .fetch_add(1, Ordering::SeqCst);
                    }
                    Some((Ok(Bytes::from(event)), (it, hold)))
                }
            },
        );
        // A cut stream stops after its error.
        let stream = stream.scan(false, |failed, item| {
            if *failed {
                return futures_util::future::ready(None);
            }
            *failed = item.is_err();
            futures_util::future::ready(Some(item))
        });
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(stream),
        )
            .into_response()
    }

    /// A JSON answer, or half of it and a broken connection when told to cut.
    pub(crate) fn json(&self, body: &serde_json::Value, behaviour: Behaviour) -> Response {
        if behaviour == Behaviour::OmitUsage {
            let mut body = body.clone();
            if let Some(fields) = body.as_object_mut() {
                fields.remove("usage");
                fields.remove("usageMetadata");
            }
            return json_response(&body);
        }
        if !matches!(behaviour, Behaviour::CutAfter { .. }) {
            return json_response(body);
        }
        let text = body.to_string().into_bytes();
        let half = Bytes::from(text[..text.len() / 2].to_vec());
        let stream =
            futures_util::stream::iter([Ok(half)]).chain(futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("cut by the fake upstream"))
            }));
        (
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response()
    }
}

/// A chat message of either protocol.
#[derive(serde::Deserialize)]
pub(crate) struct Message {
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub content: serde_json::Value,
}

/// The fake's answer to `messages`: an echo of the last user message.
pub(crate) fn echo_last_user(messages: &[Message]) -> (String, String) {
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .map(|m| text_of(&m.content))
        .unwrap_or_default();
    let reply = format!("echo: {last_user}");
    (last_user, reply)
}

/// The text of a message's content: a string, or the text of its parts.
pub(crate) fn text_of(content: &serde_json::Value) -> String {
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

/// An SSE event as a provider that ignores usage sends it: no `usage` anywhere, and
/// no usage-only chunk at all.
fn without_usage(event: String) -> Option<String> {
    let Some((head, data)) = event.split_once("data: ") else {
        return Some(event);
    };
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(data.trim_end()) else {
        return Some(event);
    };
    let had_usage = value.get("usage").is_some();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("usage");
        fields.remove("usageMetadata");
        for inner in ["response", "message"] {
            if let Some(obj) = fields.get_mut(inner).and_then(|v| v.as_object_mut()) {
                obj.remove("usage");
            }
        }
    }
    let usage_only = had_usage
        && value
            .get("choices")
            .and_then(|c| c.as_array())
            .is_some_and(Vec::is_empty);
    (!usage_only).then(|| format!("{head}data: {value}\n\n"))
}

/// The reply and its pieces, one per word, as streams send them.
pub(crate) fn pieces(reply: &str) -> Vec<String> {
    reply
        .split(' ')
        .enumerate()
        .map(|(i, w)| {
            if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            }
        })
        .collect()
}

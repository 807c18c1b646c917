//! The REST face of the Admin and Manage APIs: extractors that turn every malformed
//! input into the shared error shape, and one thin handler per route.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use switchyard_core::apikey;
use switchyard_core::error::{ErrorCode, openai_error_body_about};
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::rules::Rules;
use switchyard_runtime::now_ms;

use crate::publisher::Publisher;
use crate::service::{
    AddProviderKey, AlertRulesQuery, AllocateCredit, ApiError, AuditQuery, BillQuery, Caller,
    CreateAccount, CreateAlertRule, DeliveriesQuery, LedgerQuery, LogPageView, LogsQuery, NewKey,
    NewsQuery, PostNews, Rotate, Service, TreeQuery, UpdateAccount, UpdateProviderKey,
};

/// Admin and Manage bodies are small; anything larger is refused before parsing.
pub const MAX_BODY: usize = 64 * 1024;

/// Deepest tree `/x-dna` walks.
pub const MAX_TREE_DEPTH: u32 = 64;

type Svc = State<Arc<Service>>;

/// Seconds a client is told to wait when something the API needs is unreachable.
pub const RETRY_AFTER_SECS: &str = "2";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            openai_error_body_about(self.code, &self.message, self.field.as_deref()),
        )
            .into_response();
        // 503 means a dependency (the database, the usage collector) is away for now.
        if self.code == ErrorCode::Unavailable {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, message)
}

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        format!("request body is larger than {MAX_BODY} bytes"),
    )
}

/// The authenticated caller (`Authorization: Bearer <key>`).
struct Authed(Caller);

impl FromRequestParts<Arc<Service>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(apikey::bearer_token);
        service.authenticate(bearer, now_ms()).await.map(Authed)
    }
}

/// A JSON object body; malformed, unknown fields and oversized bodies become clear errors.
struct Body<T>(T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => decode_object(v).map(Self),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(invalid(e.body_text())),
        }
    }
}

/// A JSON object body that may be left out entirely (then every field takes its default).
struct OptionalBody<T>(T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) => decode_object(v).map(Self),
            Err(JsonRejection::MissingJsonContentType(_)) => Ok(Self(T::default())),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(invalid(e.body_text())),
        }
    }
}

/// Any JSON value as the body, or `null` when it is left out.
struct AnyBody(serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for AnyBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(mut v)) => {
                whole_numbers(&mut v);
                Ok(Self(v))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Ok(Self(serde_json::Value::Null)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(e) => Err(invalid(e.body_text())),
        }
    }
}

/// A body's document as `T`. Every body is a JSON object (a bare list would otherwise
/// fill a struct by position); whole floats such as `2.0` count as the integers they
/// are, as in JSON Schema; errors name the field's path.
pub(crate) fn decode_object<T: DeserializeOwned>(
    mut value: serde_json::Value,
) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(invalid("the request body must be a JSON object"));
    }
    whole_numbers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let prefix = "Failed to deserialize the JSON body into the target type";
        if path == "." {
            invalid(format!("{prefix}: {}", e.inner()))
        } else {
            invalid(format!("{prefix}: {path}: {}", e.inner())).about(path)
        }
    })
}

/// Whole floats within the exactly representable range become integers.
fn whole_numbers(value: &mut serde_json::Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                // Exact: a whole number within 2^53.
                *value = serde_json::Value::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// Query parameters; unknown or malformed ones become clear errors.
struct Params<T>(T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e| invalid(e.body_text()))
    }
}

/// One id in the path, parsed.
struct Id<T>(T);

impl<T: FromStr + Send, S: Send + Sync> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| invalid(e.body_text()))?;
        text.parse()
            .map(Self)
            .map_err(|_| invalid(format!("{text:?} is not a valid id")))
    }
}

/// The OpenAPI document of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every route and its methods. `tests/openapi.rs` checks that the router serves
/// exactly these and that the OpenAPI document describes exactly these.
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/x-users", &["GET", "POST"]),
    ("/x-users/{id}", &["PATCH", "DELETE"]),
    ("/x-users/{id}/keys", &["POST"]),
    ("/x-users/{id}/credits", &["GET", "POST"]),
    ("/x-dna", &["GET"]),
    ("/x-info", &["GET"]),
    ("/x-self", &["GET"]),
    ("/x-self/keys", &["POST"]),
    ("/x-self/keys/{key}", &["DELETE"]),
    ("/x-self/rotate", &["POST"]),
    ("/x-keys", &["GET", "POST"]),
    ("/x-keys/{id}", &["GET", "PATCH", "DELETE"]),
    ("/x-keys/{id}/discover", &["POST"]),
    ("/x-conf", &["GET", "PUT", "PATCH"]),
    ("/x-config/{section}", &["GET", "PUT", "DELETE"]),
    ("/x-bill", &["GET"]),
    ("/x-audit", &["GET"]),
    ("/x-alerts", &["GET", "POST"]),
    ("/x-alerts/{id}", &["GET", "DELETE"]),
    ("/x-alerts/{id}/deliveries", &["GET"]),
    ("/x-alerts/{id}/test", &["POST"]),
    ("/dashboard/models", &["GET"]),
    ("/dashboard/status", &["GET"]),
    ("/dashboard/logs", &["GET"]),
    ("/dashboard/billing", &["GET"]),
    ("/dashboard/news", &["GET", "POST"]),
    ("/dashboard/news/{id}", &["DELETE"]),
    ("/healthz", &["GET"]),
    ("/readyz", &["GET"]),
    ("/openapi.json", &["GET"]),
    ("/metrics", &["GET"]),
];

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/x-users", post(create_account).get(children))
        .route(
            "/x-users/{id}",
            patch(update_account).delete(delete_account),
        )
        .route("/x-users/{id}/keys", post(create_key_for))
        .route("/x-users/{id}/credits", get(credit).post(allocate_credit))
        .route("/x-dna", get(dna))
        .route("/x-info", get(info))
        .route("/x-self", get(self_view))
        .route("/x-self/keys", post(create_own_key))
        .route("/x-self/keys/{key}", delete(revoke_own_key))
        .route("/x-self/rotate", post(rotate))
        .route("/x-keys", post(add_provider_key).get(list_provider_keys))
        .route(
            "/x-keys/{id}",
            get(get_provider_key)
                .patch(update_provider_key)
                .delete(delete_provider_key),
        )
        .route("/x-keys/{id}/discover", post(discover_provider_key))
        .route("/x-conf", get(rules).put(replace_rules).patch(patch_rules))
        .route(
            "/x-config/{section}",
            get(rule_section).put(put_rule).delete(delete_rule),
        )
        .route("/dashboard/models", get(dashboard_models))
        .route("/dashboard/status", get(dashboard_status))
        .route("/dashboard/logs", get(logs))
        .route("/dashboard/billing", get(bill))
        .route("/dashboard/news", get(news).post(post_news))
        .route("/dashboard/news/{id}", delete(delete_news))
        .route("/x-bill", get(bill))
        .route("/x-audit", get(audit_log))
        .route("/x-alerts", get(alert_rules).post(create_alert_rule))
        .route("/x-alerts/{id}", get(alert_rule).delete(delete_alert_rule))
        .route("/x-alerts/{id}/deliveries", get(alert_deliveries))
        .route("/x-alerts/{id}/test", post(test_alert_rule))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/readyz", get(ready))
        .route(
            "/metrics",
            get(metrics_page).with_state(service.publisher().clone()),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .route_layer(axum::middleware::from_fn(crate::metric::track))
        .with_state(service)
}

type Answer = Result<Response, ApiError>;

fn created(body: impl serde::Serialize) -> Answer {
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn ok(body: impl serde::Serialize) -> Answer {
    Ok(Json(body).into_response())
}

async fn create_account(
    State(s): Svc,
    Authed(c): Authed,
    Body(req): Body<CreateAccount>,
) -> Answer {
    created(s.create_account(&c, req, now_ms()).await?)
}

async fn update_account(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<AccountId>,
    Body(req): Body<UpdateAccount>,
) -> Answer {
    ok(s.update_account(&c, id, req).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    cascade: bool,
}

async fn delete_account(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<AccountId>,
    Params(q): Params<DeleteQuery>,
) -> Answer {
    ok(s.delete_account(&c, id, q.cascade).await?)
}

async fn children(State(s): Svc, Authed(c): Authed, Params(q): Params<TreeQuery>) -> Answer {
    ok(s.descendants(&c, q, 1).await?)
}

async fn dna(State(s): Svc, Authed(c): Authed, Params(q): Params<TreeQuery>) -> Answer {
    ok(s.descendants(&c, q, MAX_TREE_DEPTH).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoQuery {
    id: Option<String>,
}

async fn info(State(s): Svc, Authed(c): Authed, Params(q): Params<InfoQuery>) -> Answer {
    let id =
        q.id.map(|t| {
            t.parse::<AccountId>()
                .map_err(|_| invalid(format!("{t:?} is not an account id")))
        })
        .transpose()?;
    ok(s.info(&c, id).await?)
}

async fn self_view(State(s): Svc, Authed(c): Authed) -> Answer {
    ok(s.self_view(&c, now_ms()).await?)
}

async fn create_own_key(
    State(s): Svc,
    Authed(c): Authed,
    OptionalBody(req): OptionalBody<NewKey>,
) -> Answer {
    created(s.create_key(&c, None, req, now_ms()).await?)
}

async fn create_key_for(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<AccountId>,
    OptionalBody(req): OptionalBody<NewKey>,
) -> Answer {
    created(s.create_key(&c, Some(id), req, now_ms()).await?)
}

async fn revoke_own_key(State(s): Svc, Authed(c): Authed, Id(key): Id<IssuedKeyId>) -> Answer {
    s.revoke_key(&c, key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn rotate(
    State(s): Svc,
    Authed(c): Authed,
    OptionalBody(req): OptionalBody<Rotate>,
) -> Answer {
    created(s.rotate(&c, req, now_ms()).await?)
}

async fn add_provider_key(
    State(s): Svc,
    Authed(c): Authed,
    Body(req): Body<AddProviderKey>,
) -> Answer {
    created(s.add_provider_key(&c, req, now_ms()).await?)
}

async fn list_provider_keys(State(s): Svc, Authed(c): Authed) -> Answer {
    ok(s.provider_keys(&c).await?)
}

async fn get_provider_key(State(s): Svc, Authed(c): Authed, Id(id): Id<ProviderKeyId>) -> Answer {
    ok(s.provider_key(&c, id).await?)
}

async fn discover_provider_key(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<ProviderKeyId>,
) -> Answer {
    ok(s.discover_provider_key(&c, id).await?)
}

async fn update_provider_key(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<ProviderKeyId>,
    Body(req): Body<UpdateProviderKey>,
) -> Answer {
    ok(s.update_provider_key(&c, id, req).await?)
}

async fn delete_provider_key(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<ProviderKeyId>,
) -> Answer {
    s.delete_provider_key(&c, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `If-Match: "<revision>"` on a rules write: apply the edit only if the rules are
/// still at that revision (409 otherwise). Absent: the edit applies to whatever is
/// current.
struct IfMatch(Option<i64>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(header::IF_MATCH) else {
            return Ok(Self(None));
        };
        let refused =
            || invalid("If-Match must be a rules revision as the ETag gave it, like \"3\"");
        let text = value.to_str().map_err(|_| refused())?.trim();
        let bare = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        let revision = bare
            .parse::<i64>()
            .ok()
            .filter(|r| *r >= 0 && bare.len() <= 19)
            .ok_or_else(refused)?;
        Ok(Self(Some(revision)))
    }
}

/// A rules answer tagged with the revision it is at (`ETag`, for `If-Match`).
fn tagged(body: impl serde::Serialize, revision: i64) -> Answer {
    let mut response = Json(body).into_response();
    if let Ok(tag) = header::HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    Ok(response)
}

async fn rules(State(s): Svc, Authed(c): Authed) -> Answer {
    let at = s.rules_at(&c).await?;
    tagged(at.rules, at.revision)
}

async fn replace_rules(
    State(s): Svc,
    Authed(c): Authed,
    IfMatch(expected): IfMatch,
    Body(doc): Body<Rules>,
) -> Answer {
    let at = s.edit_rules(&c, expected, |_| Ok(doc.clone())).await?;
    tagged(at.rules, at.revision)
}

async fn patch_rules(
    State(s): Svc,
    Authed(c): Authed,
    IfMatch(expected): IfMatch,
    Body(patch): Body<serde_json::Map<String, serde_json::Value>>,
) -> Answer {
    let at = s
        .edit_rules(&c, expected, |current| current.patched(patch.clone()))
        .await?;
    tagged(at.rules, at.revision)
}

/// The section of a `/x-config/{section}` path.
struct Section(String);

impl<S: Send + Sync> FromRequestParts<S> for Section {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(section)| Self(section))
            .map_err(|e| invalid(e.body_text()))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryKey {
    key: String,
}

async fn rule_section(State(s): Svc, Authed(c): Authed, Section(section): Section) -> Answer {
    let (value, revision) = s.rule_section(&c, &section).await?;
    tagged(value, revision)
}

async fn put_rule(
    State(s): Svc,
    Authed(c): Authed,
    IfMatch(expected): IfMatch,
    Section(section): Section,
    Params(q): Params<EntryKey>,
    AnyBody(value): AnyBody,
) -> Answer {
    let at = s
        .edit_rules(&c, expected, |current| {
            current.with_entry(&section, &q.key, value.clone())
        })
        .await?;
    tagged(at.rules, at.revision)
}

async fn delete_rule(
    State(s): Svc,
    Authed(c): Authed,
    IfMatch(expected): IfMatch,
    Section(section): Section,
    Params(q): Params<EntryKey>,
) -> Answer {
    let at = s
        .edit_rules(&c, expected, |current| {
            current.without_entry(&section, &q.key)
        })
        .await?;
    tagged(at.rules, at.revision)
}

async fn dashboard_models(State(s): Svc, Authed(c): Authed) -> Answer {
    ok(s.dashboard_models(&c).await?)
}

async fn dashboard_status(State(s): Svc, Authed(_): Authed) -> Answer {
    ok(s.dashboard_status().await)
}

async fn logs(State(s): Svc, Authed(c): Authed, Params(q): Params<LogsQuery>) -> Answer {
    ok(LogPageView::from(s.logs(&c, q, now_ms()).await?))
}

async fn credit(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<AccountId>,
    Params(q): Params<LedgerQuery>,
) -> Answer {
    ok(s.credit_page(&c, id, q).await?)
}

async fn allocate_credit(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<AccountId>,
    Body(req): Body<AllocateCredit>,
) -> Answer {
    ok(s.allocate_credit(&c, id, req, now_ms()).await?)
}

async fn news(State(s): Svc, Authed(c): Authed, Params(q): Params<NewsQuery>) -> Answer {
    ok(s.news(&c, q).await?)
}

async fn post_news(State(s): Svc, Authed(c): Authed, Body(req): Body<PostNews>) -> Answer {
    created(s.post_news(&c, req, now_ms()).await?)
}

async fn delete_news(State(s): Svc, Authed(c): Authed, Id(id): Id<uuid::Uuid>) -> Answer {
    s.delete_news(&c, &id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn bill(State(s): Svc, Authed(c): Authed, Params(q): Params<BillQuery>) -> Answer {
    let today = switchyard_core::time::UtcDay::of_unix_ms(now_ms());
    ok(s.bill(&c, q, today).await?)
}

async fn audit_log(State(s): Svc, Authed(c): Authed, Params(q): Params<AuditQuery>) -> Answer {
    ok(s.audit_log(&c, q).await?)
}

async fn alert_rules(
    State(s): Svc,
    Authed(c): Authed,
    Params(q): Params<AlertRulesQuery>,
) -> Answer {
    ok(s.alert_rules(&c, q).await?)
}

async fn create_alert_rule(
    State(s): Svc,
    Authed(c): Authed,
    Body(req): Body<CreateAlertRule>,
) -> Answer {
    created(s.create_alert_rule(&c, req, now_ms()).await?)
}

async fn alert_rule(State(s): Svc, Authed(c): Authed, Id(id): Id<uuid::Uuid>) -> Answer {
    ok(s.alert_rule(&c, &id.to_string()).await?)
}

async fn delete_alert_rule(State(s): Svc, Authed(c): Authed, Id(id): Id<uuid::Uuid>) -> Answer {
    s.delete_alert_rule(&c, &id.to_string()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn alert_deliveries(
    State(s): Svc,
    Authed(c): Authed,
    Id(id): Id<uuid::Uuid>,
    Params(q): Params<DeliveriesQuery>,
) -> Answer {
    ok(s.alert_deliveries(&c, &id.to_string(), q).await?)
}

async fn test_alert_rule(State(s): Svc, Authed(c): Authed, Id(id): Id<uuid::Uuid>) -> Answer {
    ok(s.test_alert_rule(&c, &id.to_string(), now_ms()).await?)
}

/// Ready while the database answers within a second (`switchyard_db::PING_TIMEOUT`).
async fn ready(State(s): Svc) -> Result<&'static str, ApiError> {
    s.store()
        .ping()
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "database unreachable"))?;
    Ok("ready")
}

/// The `/metrics` answer: the publisher's gauges brought up to date, then every metric.
async fn metrics_page(State(publisher): State<Publisher>) -> String {
    publisher.record_gauges();
    switchyard_runtime::metrics_handle().map_or_else(String::new, |h| h.render())
}

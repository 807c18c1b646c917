//! The REST face of the Admin and Manage APIs.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use switchyard_core::error::{ErrorCode, openai_error_body};
use switchyard_runtime::now_ms;

use serde::Deserialize;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};

use crate::service::{
    AddProviderKey, ApiError, AuditQuery, BillQuery, Caller, CreateAccount, NewKey, Rotate,
    Service, TreeQuery, UpdateAccount, UpdateProviderKey,
};

/// Admin and Manage bodies are small; anything larger is refused before parsing.
pub const MAX_BODY: usize = 64 * 1024;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            openai_error_body(self.code, &self.message),
        )
            .into_response()
    }
}

fn json_error(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body is larger than {MAX_BODY} bytes"),
        );
    }
    ApiError::new(ErrorCode::InvalidRequest, rejection.body_text())
}

fn query_error(rejection: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, rejection.body_text())
}

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/x-users", post(create_account).get(children))
        .route(
            "/x-users/{id}",
            patch(update_account).delete(delete_account),
        )
        .route("/x-dna", get(dna))
        .route("/x-info", get(info))
        .route("/x-users/{id}/keys", post(create_key_for))
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
        .route("/x-bill", get(bill))
        .route("/x-audit", get(audit_log))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

async fn caller(service: &Service, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    service.authenticate(bearer, now_ms()).await
}

async fn create_account(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<CreateAccount>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Json(req) = body.map_err(json_error)?;
    let created = service.create_account(&caller, req, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn add_provider_key(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<AddProviderKey>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Json(req) = body.map_err(json_error)?;
    let view = service.add_provider_key(&caller, req, now_ms()).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn bill(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    query: Result<Query<BillQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Query(query) = query.map_err(query_error)?;
    let today = switchyard_core::time::utc_day(now_ms());
    Ok(Json(service.bill(&caller, query, &today).await?))
}

fn provider_key_id(id: Result<Path<String>, PathRejection>) -> Result<ProviderKeyId, ApiError> {
    let Path(text) = id.map_err(path_error)?;
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{text:?} is not a provider key id"),
        )
    })
}

async fn list_provider_keys(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    Ok(Json(service.provider_keys(&caller).await?))
}

async fn get_provider_key(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    Ok(Json(
        service.provider_key(&caller, provider_key_id(id)?).await?,
    ))
}

async fn update_provider_key(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateProviderKey>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let id = provider_key_id(id)?;
    let Json(req) = body.map_err(json_error)?;
    Ok(Json(service.update_provider_key(&caller, id, req).await?))
}

async fn delete_provider_key(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    service
        .delete_provider_key(&caller, provider_key_id(id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An optional JSON body: empty means the defaults.
fn optional_json<T: Default>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(v)) => Ok(v),
        Err(JsonRejection::MissingJsonContentType(_)) => Ok(T::default()),
        Err(e) => Err(json_error(e)),
    }
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, e.body_text())
}

fn key_id(text: &str) -> Result<IssuedKeyId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{text:?} is not a key id"),
        )
    })
}

async fn self_view(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    Ok(Json(service.self_view(&caller, now_ms()).await?))
}

async fn create_own_key(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let req = optional_json(body)?;
    Ok((
        StatusCode::CREATED,
        Json(service.create_key(&caller, None, req, now_ms()).await?),
    ))
}

async fn create_key_for(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Path(id) = id.map_err(path_error)?;
    let id = account_id(&id)?;
    let req = optional_json(body)?;
    Ok((
        StatusCode::CREATED,
        Json(service.create_key(&caller, Some(id), req, now_ms()).await?),
    ))
}

async fn revoke_own_key(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    key: Result<Path<String>, PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Path(key) = key.map_err(path_error)?;
    service.revoke_key(&caller, key_id(&key)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn rotate(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: Result<Json<Rotate>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let req = optional_json(body)?;
    Ok((
        StatusCode::CREATED,
        Json(service.rotate(&caller, req, now_ms()).await?),
    ))
}

fn account_id(text: &str) -> Result<AccountId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!("{text:?} is not an account id"),
        )
    })
}

async fn update_account(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<UpdateAccount>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Path(id) = id.map_err(path_error)?;
    let id = account_id(&id)?;
    let Json(req) = body.map_err(json_error)?;
    Ok(Json(service.update_account(&caller, id, req).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoQuery {
    id: Option<String>,
}

async fn info(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    query: Result<Query<InfoQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Query(query) = query.map_err(query_error)?;
    let id = query.id.as_deref().map(account_id).transpose()?;
    Ok(Json(service.info(&caller, id).await?))
}

/// Deepest tree `/x-dna` walks; the control plane refuses deeper trees long before.
const MAX_TREE_DEPTH: u32 = 64;

async fn dna(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    query: Result<Query<TreeQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(
        service.descendants(&caller, query, MAX_TREE_DEPTH).await?,
    ))
}

async fn children(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    query: Result<Query<TreeQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(service.descendants(&caller, query, 1).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    cascade: bool,
}

async fn delete_account(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Path(id) = id.map_err(path_error)?;
    let id = account_id(&id)?;
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(
        service.delete_account(&caller, id, query.cascade).await?,
    ))
}

async fn audit_log(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let caller = caller(&service, &headers).await?;
    let Query(query) = query.map_err(query_error)?;
    Ok(Json(service.audit_log(&caller, query).await?))
}

async fn ready(State(service): State<Arc<Service>>) -> Result<&'static str, ApiError> {
    service
        .store()
        .ping()
        .await
        .map_err(|_| ApiError::new(ErrorCode::Unavailable, "database unreachable"))?;
    Ok("ready")
}

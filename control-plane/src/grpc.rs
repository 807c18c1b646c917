//! The gRPC face: snapshot distribution to data planes, and the Admin and Manage
//! services over the same service layer as REST.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use switchyard_core::error::ErrorCode;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::admin_service_server::AdminService;
use switchyard_proto::v1::manage_service_server::ManageService;
use switchyard_proto::v1::snapshot_service_server::SnapshotService;
use switchyard_runtime::now_ms;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::publisher::Publisher;
use crate::service::{AddProviderKey, ApiError, BillQuery, Caller, CreateAccount, Service};

/// The shared error vocabulary, mapped once to gRPC codes.
pub fn to_status(e: ApiError) -> Status {
    let code = match e.code {
        ErrorCode::InvalidRequest | ErrorCode::Unprocessable | ErrorCode::PayloadTooLarge => {
            tonic::Code::InvalidArgument
        }
        ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::Conflict => tonic::Code::AlreadyExists,
        ErrorCode::RateLimited | ErrorCode::QuotaExceeded => tonic::Code::ResourceExhausted,
        ErrorCode::Unavailable | ErrorCode::UpstreamFailed => tonic::Code::Unavailable,
        ErrorCode::UpstreamTimeout => tonic::Code::DeadlineExceeded,
        ErrorCode::Internal => tonic::Code::Internal,
    };
    Status::new(code, e.message)
}

pub struct SnapshotGrpc {
    pub publisher: Publisher,
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl SnapshotService for SnapshotGrpc {
    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<Streaming<pb::SyncRequest>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(pb::SyncRequest {
                kind: Some(pb::sync_request::Kind::Hello(h)),
            }) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a Hello",
                ));
            }
        };
        if hello.replica_id.is_empty() || hello.replica_id.len() > 200 {
            return Err(Status::invalid_argument(
                "replica_id must be 1-200 characters",
            ));
        }
        let replica = hello.replica_id;
        tracing::info!(replica = %replica, have_version = hello.have_version, "data plane connected");
        let publisher = self.publisher.clone();
        publisher.record_replica(&replica, |s| s.applied_version = hello.have_version);

        let (tx, rx) = mpsc::channel(4);
        let mut snapshots = publisher.subscribe();
        // Outbound: the current snapshot, then every newer one.
        let send_replica = replica.clone();
        let sender = tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                let next = snapshots.borrow_and_update().clone();
                if let Some(snapshot) = next.filter(|s| s.version > sent) {
                    sent = snapshot.version;
                    let update = pb::SnapshotUpdate {
                        full: Some((*snapshot).clone()),
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                    tracing::debug!(replica = %send_replica, version = sent, "snapshot sent");
                }
                if snapshots.changed().await.is_err() {
                    return;
                }
            }
        });
        // Inbound: what the data plane applied or refused.
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(pb::SyncRequest {
                        kind: Some(pb::sync_request::Kind::Applied(a)),
                    })) => {
                        publisher.record_replica(&replica, |s| s.applied_version = a.version);
                        tracing::debug!(replica = %replica, version = a.version, "snapshot applied");
                    }
                    Ok(Some(pb::SyncRequest {
                        kind: Some(pb::sync_request::Kind::Rejected(r)),
                    })) => {
                        tracing::error!(replica = %replica, version = r.version, reason = %r.reason, "data plane refused a snapshot");
                        publisher.record_replica(&replica, |s| s.last_rejection = Some(r.reason));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            sender.abort();
            publisher.forget_replica(&replica);
            tracing::info!(replica = %replica, "data plane disconnected");
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Admin and Manage over gRPC: authenticate from metadata, call the service layer.
pub struct ApiGrpc {
    pub service: Arc<Service>,
}

impl ApiGrpc {
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let bearer = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(switchyard_core::apikey::bearer_token);
        self.service
            .authenticate(bearer, now_ms())
            .await
            .map_err(to_status)
    }
}

#[tonic::async_trait]
impl AdminService for ApiGrpc {
    async fn add_provider_key(
        &self,
        request: Request<pb::AddProviderKeyRequest>,
    ) -> Result<Response<pb::ProviderKeyView>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let view = self
            .service
            .add_provider_key(
                &caller,
                AddProviderKey {
                    provider: r.provider,
                    base_url: r.base_url,
                    secret: r.secret,
                    models: r.models,
                    level: r.level,
                    weight: r.weight,
                },
                now_ms(),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ProviderKeyView {
            id: view.id.to_string(),
            provider: view.provider.to_owned(),
            base_url: view.base_url,
            secret_hint: view.secret_hint,
            models: view.models,
            level: view.level,
            weight: view.weight,
            status: view.status.to_owned(),
            created_at_unix_ms: view.created_at_unix_ms,
        }))
    }
}

#[tonic::async_trait]
impl ManageService for ApiGrpc {
    async fn create_account(
        &self,
        request: Request<pb::CreateAccountRequest>,
    ) -> Result<Response<pb::CreatedAccount>, Status> {
        let caller = self.caller(&request).await?;
        let created = self
            .service
            .create_account(
                &caller,
                CreateAccount {
                    name: request.into_inner().name,
                    // Policies over gRPC arrive with the typed Policy message.
                    policy: None,
                },
                now_ms(),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreatedAccount {
            account: Some(pb::AccountView {
                id: created.account.id.to_string(),
                parent_id: created
                    .account
                    .parent_id
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                name: created.account.name,
                status: created.account.status.to_owned(),
                created_at_unix_ms: created.account.created_at_unix_ms,
            }),
            api_key: created.api_key,
            api_key_id: created.api_key_id.to_string(),
        }))
    }

    async fn get_bill(
        &self,
        request: Request<pb::GetBillRequest>,
    ) -> Result<Response<pb::Bill>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let non_empty = |s: String| (!s.is_empty()).then_some(s);
        let bill = self
            .service
            .bill(
                &caller,
                BillQuery {
                    from: non_empty(r.from_day),
                    to: non_empty(r.to_day),
                    granularity: non_empty(r.granularity),
                    account: non_empty(r.account_id),
                    model: non_empty(r.model),
                },
                &switchyard_core::time::utc_day(now_ms()),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::Bill {
            rows: bill
                .rows
                .into_iter()
                .map(|r| pb::BillRow {
                    period: r.period,
                    account_id: r.account_id,
                    model: r.model,
                    requests: r.requests,
                    errors: r.errors,
                    input_tokens: r.input_tokens,
                    output_tokens: r.output_tokens,
                    cached_tokens: r.cached_tokens,
                    cost_nanos: r.cost_nanos,
                })
                .collect(),
        }))
    }
}

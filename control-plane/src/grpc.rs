//! The gRPC face: the snapshot service (its streams are served by
//! [`crate::distribution`]), and the Admin and Manage services over the same
//! service layer as REST (alert rules' messages in `grpc/alerts.rs`).

mod alerts;
mod convert;

use std::sync::Arc;

use switchyard_core::error::ErrorCode;
use switchyard_core::ids::{AccountId, IssuedKeyId, ProviderKeyId};
use switchyard_core::rules::Rules;
use switchyard_proto::v1 as pb;
use switchyard_proto::v1::admin_service_server::AdminService;
use switchyard_proto::v1::manage_service_server::ManageService;
use switchyard_proto::v1::snapshot_service_server::SnapshotService;
use switchyard_runtime::now_ms;
use switchyard_wire::snapshot::{encode_price, encode_rules};
use switchyard_wire::{encode_event, encode_rollup};
use tonic::{Request, Response, Status, Streaming};

use self::convert::{
    account_info, account_view, billing_in, created_key, credit_view, key_view, news_item,
    non_empty, parsed, policy_in, provider_view, rules_in,
};
use crate::distribution::{self, SyncStream};
use crate::publisher::Publisher;
use crate::rest::MAX_TREE_DEPTH;
use crate::service::{
    AddProviderKey, AllocateCredit, ApiError, AuditQuery, BillQuery, Caller, CreateAccount,
    LogsQuery, NewKey, NewsQuery, PostNews, Rotate, RulesAt, Service, TreeQuery, UpdateAccount,
    UpdateProviderKey,
};

/// The shared error vocabulary, mapped once to gRPC codes.
pub fn to_status(e: ApiError) -> Status {
    let code = match e.code {
        ErrorCode::InvalidRequest
        | ErrorCode::Unprocessable
        | ErrorCode::PayloadTooLarge
        | ErrorCode::UnsupportedMediaType => tonic::Code::InvalidArgument,
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
    pub service: Arc<Service>,
}

#[tonic::async_trait]
impl SnapshotService for SnapshotGrpc {
    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<Streaming<pb::SyncRequest>>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        distribution::sync(
            self.publisher.clone(),
            self.service.store().clone(),
            request.into_inner(),
        )
        .await
        .map(Response::new)
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

impl ApiGrpc {
    /// The rules in their wire form, owned by the caller's main account.
    fn rules_out(caller: &Caller, rules: &Rules) -> pb::Rules {
        let owner = match caller {
            Caller::Account { account, .. } => account.id,
            Caller::Root => AccountId(uuid::Uuid::nil()),
        };
        encode_rules(owner, rules)
    }

    /// A rules answer, its revision in the `x-rules-revision` metadata.
    fn rules_reply(caller: &Caller, at: &RulesAt) -> Response<pb::Rules> {
        let mut reply = Response::new(Self::rules_out(caller, &at.rules));
        reply.metadata_mut().insert(
            RULES_REVISION,
            tonic::metadata::MetadataValue::from(at.revision),
        );
        reply
    }
}

/// The metadata naming a rules document's revision.
pub const RULES_REVISION: &str = "x-rules-revision";

/// A rules write's refusal: an edit made at a revision no longer current is ABORTED
/// (read again and retry), unlike the conflicts of other writes.
fn rules_status(e: ApiError) -> Status {
    if e.code == ErrorCode::Conflict {
        Status::aborted(e.message)
    } else {
        to_status(e)
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
        let req = AddProviderKey {
            provider: r.provider,
            base_url: r.base_url,
            // Empty: none (a passthrough key holds none).
            secret: non_empty(r.secret),
            protocol: r.protocol,
            models: r.models,
            level: r.level,
            weight: r.weight,
        };
        let view = self
            .service
            .add_provider_key(&caller, req, now_ms())
            .await
            .map_err(to_status)?;
        Ok(Response::new(provider_view(view)))
    }

    async fn list_provider_keys(
        &self,
        request: Request<pb::ListProviderKeysRequest>,
    ) -> Result<Response<pb::ProviderKeyList>, Status> {
        let caller = self.caller(&request).await?;
        let keys = self
            .service
            .provider_keys(&caller)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ProviderKeyList {
            keys: keys.into_iter().map(provider_view).collect(),
        }))
    }

    async fn get_provider_key(
        &self,
        request: Request<pb::GetProviderKeyRequest>,
    ) -> Result<Response<pb::ProviderKeyView>, Status> {
        let caller = self.caller(&request).await?;
        let id: ProviderKeyId = parsed(&request.into_inner().id, "provider key id")?;
        Ok(Response::new(provider_view(
            self.service
                .provider_key(&caller, id)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn update_provider_key(
        &self,
        request: Request<pb::UpdateProviderKeyRequest>,
    ) -> Result<Response<pb::ProviderKeyView>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let id: ProviderKeyId = parsed(&r.id, "provider key id")?;
        let req = UpdateProviderKey {
            provider: r.provider,
            base_url: r.base_url,
            secret: r.secret,
            models: r.models.map(|m| m.values),
            level: r.level,
            weight: r.weight,
            status: r.status,
            protocol: r.protocol,
        };
        Ok(Response::new(provider_view(
            self.service
                .update_provider_key(&caller, id, req)
                .await
                .map_err(to_status)?,
        )))
    }

    async fn delete_provider_key(
        &self,
        request: Request<pb::DeleteProviderKeyRequest>,
    ) -> Result<Response<pb::DeleteProviderKeyReply>, Status> {
        let caller = self.caller(&request).await?;
        let id: ProviderKeyId = parsed(&request.into_inner().id, "provider key id")?;
        self.service
            .delete_provider_key(&caller, id)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteProviderKeyReply {}))
    }

    async fn get_rules(
        &self,
        request: Request<pb::GetRulesRequest>,
    ) -> Result<Response<pb::Rules>, Status> {
        let caller = self.caller(&request).await?;
        let at = self.service.rules_at(&caller).await.map_err(to_status)?;
        Ok(Self::rules_reply(&caller, &at))
    }

    async fn put_rules(
        &self,
        request: Request<pb::PutRulesRequest>,
    ) -> Result<Response<pb::Rules>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let doc = rules_in(r.rules)?;
        let stored = self
            .service
            .edit_rules(&caller, r.expected_revision, |_| Ok(doc.clone()))
            .await
            .map_err(rules_status)?;
        Ok(Self::rules_reply(&caller, &stored))
    }

    async fn patch_rules(
        &self,
        request: Request<pb::PatchRulesRequest>,
    ) -> Result<Response<pb::Rules>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let given = rules_in(r.rules)?;
        let mut patch = serde_json::Map::new();
        for section in r.sections {
            let value = given
                .section(&section)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            patch.insert(section, value);
        }
        let stored = self
            .service
            .edit_rules(&caller, r.expected_revision, |current| {
                current.patched(patch.clone())
            })
            .await
            .map_err(rules_status)?;
        Ok(Self::rules_reply(&caller, &stored))
    }

    async fn put_rule_entry(
        &self,
        request: Request<pb::PutRuleEntryRequest>,
    ) -> Result<Response<pb::Rules>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let value: serde_json::Value = if r.value_json.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&r.value_json)
                .map_err(|e| Status::invalid_argument(format!("value_json: {e}")))?
        };
        let stored = self
            .service
            .edit_rules(&caller, r.expected_revision, |current| {
                current.with_entry(&r.section, &r.key, value.clone())
            })
            .await
            .map_err(rules_status)?;
        Ok(Self::rules_reply(&caller, &stored))
    }

    async fn delete_rule_entry(
        &self,
        request: Request<pb::DeleteRuleEntryRequest>,
    ) -> Result<Response<pb::Rules>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let stored = self
            .service
            .edit_rules(&caller, r.expected_revision, |current| {
                current.without_entry(&r.section, &r.key)
            })
            .await
            .map_err(rules_status)?;
        Ok(Self::rules_reply(&caller, &stored))
    }

    async fn get_audit(
        &self,
        request: Request<pb::GetAuditRequest>,
    ) -> Result<Response<pb::AuditPage>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let query = AuditQuery {
            before: r.before,
            limit: (r.limit != 0).then_some(r.limit),
        };
        let entries = self
            .service
            .audit_log(&caller, query)
            .await
            .map_err(to_status)?;
        let json = |v: Option<serde_json::Value>| v.map(|v| v.to_string()).unwrap_or_default();
        Ok(Response::new(pb::AuditPage {
            entries: entries
                .into_iter()
                .map(|e| pb::AuditEntry {
                    seq: e.seq,
                    at_unix_ms: e.at_unix_ms,
                    actor: e.actor,
                    owner_id: e.owner_id.unwrap_or_default(),
                    action: e.action,
                    target: e.target,
                    before_json: json(e.before),
                    after_json: json(e.after),
                })
                .collect(),
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
        let r = request.into_inner();
        let req = CreateAccount {
            name: r.name,
            policy: policy_in(r.policy)?,
            billing: billing_in(r.billing)?,
        };
        let created = self
            .service
            .create_account(&caller, req, now_ms())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreatedAccount {
            account: Some(account_view(created.account)),
            api_key: created.api_key,
            api_key_id: created.api_key_id.to_string(),
        }))
    }

    async fn update_account(
        &self,
        request: Request<pb::UpdateAccountRequest>,
    ) -> Result<Response<pb::AccountInfo>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let id: AccountId = parsed(&r.id, "account id")?;
        let req = UpdateAccount {
            name: r.name,
            status: r.status,
            policy: policy_in(r.policy)?,
            billing: billing_in(r.billing)?,
        };
        let info = self
            .service
            .update_account(&caller, id, req)
            .await
            .map_err(to_status)?;
        Ok(Response::new(account_info(info)))
    }

    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Result<Response<pb::DeleteAccountReply>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let id: AccountId = parsed(&r.id, "account id")?;
        let done = self
            .service
            .delete_account(&caller, id, r.cascade)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteAccountReply {
            deleted: done.deleted as u64,
        }))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::AccountList>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let query = TreeQuery {
            id: non_empty(r.id),
            offset: Some(r.offset),
            limit: (r.limit != 0).then_some(r.limit),
            name: None,
        };
        let depth = if r.descendants { MAX_TREE_DEPTH } else { 1 };
        let entries = self
            .service
            .descendants(&caller, query, depth)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AccountList {
            accounts: entries
                .into_iter()
                .map(|e| pb::TreeEntry {
                    account: Some(account_view(e.account)),
                    depth: e.depth,
                })
                .collect(),
        }))
    }

    async fn get_info(
        &self,
        request: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::AccountInfo>, Status> {
        let caller = self.caller(&request).await?;
        let id = request.into_inner().id;
        let id = if id.is_empty() {
            None
        } else {
            Some(parsed::<AccountId>(&id, "account id")?)
        };
        Ok(Response::new(account_info(
            self.service.info(&caller, id).await.map_err(to_status)?,
        )))
    }

    async fn get_self(
        &self,
        request: Request<pb::GetSelfRequest>,
    ) -> Result<Response<pb::SelfView>, Status> {
        let caller = self.caller(&request).await?;
        let view = self
            .service
            .self_view(&caller, now_ms())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::SelfView {
            info: Some(account_info(view.info)),
            keys: view.keys.into_iter().map(key_view).collect(),
        }))
    }

    async fn create_key(
        &self,
        request: Request<pb::CreateKeyRequest>,
    ) -> Result<Response<pb::CreatedKey>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let target = if r.account_id.is_empty() {
            None
        } else {
            Some(parsed::<AccountId>(&r.account_id, "account id")?)
        };
        let req = NewKey {
            expires_at_unix_ms: r.expires_at_unix_ms,
        };
        let created = self
            .service
            .create_key(&caller, target, req, now_ms())
            .await
            .map_err(to_status)?;
        Ok(Response::new(created_key(created)))
    }

    async fn revoke_key(
        &self,
        request: Request<pb::RevokeKeyRequest>,
    ) -> Result<Response<pb::RevokeKeyReply>, Status> {
        let caller = self.caller(&request).await?;
        let key: IssuedKeyId = parsed(&request.into_inner().key_id, "key id")?;
        self.service
            .revoke_key(&caller, key)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::RevokeKeyReply {}))
    }

    async fn rotate_key(
        &self,
        request: Request<pb::RotateKeyRequest>,
    ) -> Result<Response<pb::CreatedKey>, Status> {
        let caller = self.caller(&request).await?;
        let req = Rotate {
            overlap_seconds: request.into_inner().overlap_seconds,
        };
        Ok(Response::new(created_key(
            self.service
                .rotate(&caller, req, now_ms())
                .await
                .map_err(to_status)?,
        )))
    }

    async fn get_bill(
        &self,
        request: Request<pb::GetBillRequest>,
    ) -> Result<Response<pb::Bill>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let query = BillQuery {
            from: non_empty(r.from_day).map(Into::into),
            to: non_empty(r.to_day).map(Into::into),
            granularity: non_empty(r.granularity).map(Into::into),
            account: non_empty(r.account_id),
            model: non_empty(r.model),
            by: non_empty(r.by).map(Into::into),
        };
        let today = switchyard_core::time::UtcDay::of_unix_ms(now_ms());
        let bill = self
            .service
            .bill(&caller, query, today)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::Bill {
            rows: bill.rows.into_iter().map(encode_rollup).collect(),
        }))
    }

    async fn list_models(
        &self,
        request: Request<pb::ListModelsRequest>,
    ) -> Result<Response<pb::ModelList>, Status> {
        let caller = self.caller(&request).await?;
        let list = self
            .service
            .dashboard_models(&caller)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ModelList {
            models: list.models,
            prices: list
                .prices
                .iter()
                .map(|(m, p)| (m.clone(), encode_price(p)))
                .collect(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::SystemStatus>, Status> {
        self.caller(&request).await?;
        let status = self.service.dashboard_status().await;
        Ok(Response::new(pb::SystemStatus {
            snapshot_version: status.snapshot_version,
            config_revision: status.config_revision,
            data_planes: status
                .data_planes
                .into_iter()
                .map(|d| pb::DataPlaneStatus {
                    replica: d.replica,
                    applied_version: d.applied_version,
                    lag: d.lag,
                    last_rejection: d.last_rejection,
                    control_plane: d.control_plane,
                })
                .collect(),
        }))
    }

    async fn get_logs(
        &self,
        request: Request<pb::GetLogsRequest>,
    ) -> Result<Response<pb::LogPage>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let query = LogsQuery {
            from: r.from_unix_ms,
            to: r.to_unix_ms,
            account: non_empty(r.account_id),
            model: non_empty(r.model),
            status: (r.status != 0)
                .then(|| {
                    u16::try_from(r.status)
                        .map_err(|_| Status::invalid_argument("status is not an HTTP status"))
                })
                .transpose()?,
            session: non_empty(r.session),
            user: non_empty(r.user),
            tag: non_empty(r.tag),
            before: non_empty(r.before),
            limit: (r.limit != 0).then_some(r.limit),
        };
        let page = self
            .service
            .logs(&caller, query, now_ms())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::LogPage {
            events: page.events.into_iter().map(encode_event).collect(),
            next: page.next.unwrap_or_default(),
        }))
    }

    async fn post_news(
        &self,
        request: Request<pb::PostNewsRequest>,
    ) -> Result<Response<pb::NewsItem>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let item = self
            .service
            .post_news(
                &caller,
                PostNews {
                    title: r.title,
                    body: r.body,
                },
                now_ms(),
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(news_item(item)))
    }

    async fn list_news(
        &self,
        request: Request<pb::ListNewsRequest>,
    ) -> Result<Response<pb::NewsList>, Status> {
        let caller = self.caller(&request).await?;
        let limit = request.into_inner().limit;
        let items = self
            .service
            .news(
                &caller,
                NewsQuery {
                    limit: (limit != 0).then_some(limit),
                },
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::NewsList {
            items: items.into_iter().map(news_item).collect(),
        }))
    }

    async fn allocate_credit(
        &self,
        request: Request<pb::AllocateCreditRequest>,
    ) -> Result<Response<pb::CreditView>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.into_inner();
        let id: AccountId = parsed(&r.account_id, "account id")?;
        let req = AllocateCredit {
            amount_nanos: r.amount_nanos,
            note: non_empty(r.note),
        };
        Ok(Response::new(credit_view(
            self.service
                .allocate_credit(&caller, id, req, now_ms())
                .await
                .map_err(to_status)?,
        )))
    }

    async fn get_credit(
        &self,
        request: Request<pb::GetCreditRequest>,
    ) -> Result<Response<pb::CreditView>, Status> {
        let caller = self.caller(&request).await?;
        let id: AccountId = parsed(&request.into_inner().account_id, "account id")?;
        Ok(Response::new(credit_view(
            self.service.credit(&caller, id).await.map_err(to_status)?,
        )))
    }

    async fn delete_news(
        &self,
        request: Request<pb::DeleteNewsRequest>,
    ) -> Result<Response<pb::DeleteNewsReply>, Status> {
        let caller = self.caller(&request).await?;
        let id: uuid::Uuid = parsed(&request.into_inner().id, "announcement id")?;
        self.service
            .delete_news(&caller, &id.to_string())
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteNewsReply {}))
    }

    async fn create_alert_rule(
        &self,
        request: Request<pb::CreateAlertRuleRequest>,
    ) -> Result<Response<pb::CreatedAlertRule>, Status> {
        let caller = self.caller(&request).await?;
        alerts::create(&self.service, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_alert_rules(
        &self,
        request: Request<pb::ListAlertRulesRequest>,
    ) -> Result<Response<pb::AlertRuleList>, Status> {
        let caller = self.caller(&request).await?;
        alerts::list(&self.service, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_alert_rule(
        &self,
        request: Request<pb::AlertRuleRequest>,
    ) -> Result<Response<pb::AlertRule>, Status> {
        let caller = self.caller(&request).await?;
        alerts::get(&self.service, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete_alert_rule(
        &self,
        request: Request<pb::AlertRuleRequest>,
    ) -> Result<Response<pb::DeleteAlertRuleReply>, Status> {
        let caller = self.caller(&request).await?;
        alerts::delete(&self.service, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_alert_deliveries(
        &self,
        request: Request<pb::ListAlertDeliveriesRequest>,
    ) -> Result<Response<pb::AlertDeliveryList>, Status> {
        let caller = self.caller(&request).await?;
        alerts::deliveries(&self.service, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn test_alert_rule(
        &self,
        request: Request<pb::AlertRuleRequest>,
    ) -> Result<Response<pb::TestAlertDelivery>, Status> {
        let caller = self.caller(&request).await?;
        alerts::test(&self.service, &caller, request.into_inner())
            .await
            .map(Response::new)
    }
}

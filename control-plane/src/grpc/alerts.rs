//! The Manage service's alert rules over gRPC: each call is its REST twin
//! (`/x-alerts`), through the same service methods; here only the messages.

use switchyard_proto::v1 as pb;
use switchyard_runtime::now_ms;
use tonic::Status;

use super::convert::{non_empty, parsed};
use super::to_status;
use crate::service::{
    AlertRuleView, AlertRulesQuery, Caller, CreateAlertRule, DeliveriesQuery, Requested, Service,
};
use crate::store::DeliveryRecord;

fn rule(v: AlertRuleView) -> pb::AlertRule {
    pb::AlertRule {
        id: v.id,
        account_id: v.account_id.map(|a| a.to_string()).unwrap_or_default(),
        kind: v.kind.as_str().to_owned(),
        thresholds: v.thresholds,
        url: v.url,
        created_by: v.created_by,
        created_at_unix_ms: v.created_at_unix_ms,
    }
}

fn delivery(d: DeliveryRecord) -> pb::AlertDelivery {
    pb::AlertDelivery {
        id: d.id,
        rule_id: d.rule_id,
        firing_id: d.firing_id.unwrap_or_default(),
        state: d.state,
        attempts: d.attempts,
        status_code: d.status_code.map(u32::from),
        error: d.error,
        next_attempt_unix_ms: d.next_attempt_unix_ms,
        created_at_unix_ms: d.created_at_unix_ms,
        updated_at_unix_ms: d.updated_at_unix_ms,
    }
}

/// A rule id as the REST path takes it (a UUID), as text.
fn rule_id(text: &str) -> Result<String, Status> {
    Ok(parsed::<uuid::Uuid>(text, "alert rule id")?.to_string())
}

pub(super) async fn create(
    service: &Service,
    caller: &Caller,
    r: pb::CreateAlertRuleRequest,
) -> Result<pb::CreatedAlertRule, Status> {
    let req = CreateAlertRule {
        account_id: non_empty(r.account_id),
        kind: Requested::from(r.kind),
        thresholds: r.thresholds,
        url: r.url,
    };
    let created = service
        .create_alert_rule(caller, req, now_ms())
        .await
        .map_err(to_status)?;
    Ok(pb::CreatedAlertRule {
        rule: Some(rule(created.rule)),
        secret: created.secret,
    })
}

pub(super) async fn list(
    service: &Service,
    caller: &Caller,
    r: pb::ListAlertRulesRequest,
) -> Result<pb::AlertRuleList, Status> {
    let query = AlertRulesQuery {
        account: non_empty(r.account_id),
        after: non_empty(r.after),
        limit: (r.limit != 0).then_some(r.limit),
    };
    let rules = service
        .alert_rules(caller, query)
        .await
        .map_err(to_status)?;
    Ok(pb::AlertRuleList {
        rules: rules.into_iter().map(rule).collect(),
    })
}

pub(super) async fn get(
    service: &Service,
    caller: &Caller,
    r: pb::AlertRuleRequest,
) -> Result<pb::AlertRule, Status> {
    let id = rule_id(&r.id)?;
    Ok(rule(
        service.alert_rule(caller, &id).await.map_err(to_status)?,
    ))
}

pub(super) async fn delete(
    service: &Service,
    caller: &Caller,
    r: pb::AlertRuleRequest,
) -> Result<pb::DeleteAlertRuleReply, Status> {
    let id = rule_id(&r.id)?;
    service
        .delete_alert_rule(caller, &id)
        .await
        .map_err(to_status)?;
    Ok(pb::DeleteAlertRuleReply {})
}

pub(super) async fn deliveries(
    service: &Service,
    caller: &Caller,
    r: pb::ListAlertDeliveriesRequest,
) -> Result<pb::AlertDeliveryList, Status> {
    let id = rule_id(&r.id)?;
    let query = DeliveriesQuery {
        before: non_empty(r.before),
        limit: (r.limit != 0).then_some(r.limit),
    };
    let log = service
        .alert_deliveries(caller, &id, query)
        .await
        .map_err(to_status)?;
    Ok(pb::AlertDeliveryList {
        deliveries: log.into_iter().map(delivery).collect(),
    })
}

pub(super) async fn test(
    service: &Service,
    caller: &Caller,
    r: pb::AlertRuleRequest,
) -> Result<pb::TestAlertDelivery, Status> {
    let id = rule_id(&r.id)?;
    let sent = service
        .test_alert_rule(caller, &id, now_ms())
        .await
        .map_err(to_status)?;
    Ok(pb::TestAlertDelivery {
        delivery_id: sent.delivery_id,
        delivered: sent.delivered,
        status_code: sent.status_code.map(u32::from),
        error: sent.error,
    })
}

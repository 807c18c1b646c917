//! Alert rules an account sets on itself or a descendant, their delivery log, and
//! test webhooks. Who may see a rule is who may see its account (the operator alone
//! for its own rules); what a rule watches and its thresholds: `core::alerts`; the
//! leader's evaluation and deliveries: `alert_watch.rs`.

use serde::{Deserialize, Serialize};
use switchyard_core::alerts::{self, AlertEvent, AlertKind};
use switchyard_core::error::ErrorCode;
use switchyard_core::ids::AccountId;
use switchyard_core::policy::Period;
use zeroize::Zeroizing;

use super::audit::state;
use super::{ApiError, Caller, Placed, Requested, Service, present};
use crate::store::{AlertRuleRecord, AttemptRecord, DELIVERED, DeliveryRecord, FAILED, RulesOf};

/// The most rules one account (or the operator) holds: the evaluator reads each
/// one's spend every round.
pub const MAX_RULES_PER_ACCOUNT: usize = 50;

/// `POST /x-alerts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAlertRule {
    /// The watched account (the caller or a descendant); absent: the caller itself,
    /// or for the operator a rule of its own (`data_plane_lag`).
    #[serde(default, deserialize_with = "present")]
    pub account_id: Option<String>,
    pub kind: Requested<AlertKind>,
    /// Percents for `credit_share`, nano-dollars for `daily_spend`, versions for
    /// `data_plane_lag`, none for `provider_key_unhealthy`.
    #[serde(default)]
    pub thresholds: Vec<u64>,
    /// Where the webhooks go.
    pub url: String,
}

/// A rule as the API shows it (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AlertRuleView {
    pub id: String,
    pub account_id: Option<AccountId>,
    pub kind: AlertKind,
    pub thresholds: Vec<u64>,
    pub url: String,
    pub created_by: String,
    pub created_at_unix_ms: i64,
}

/// A new rule and its webhook secret, shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedAlertRule {
    #[serde(flatten)]
    pub rule: AlertRuleView,
    pub secret: String,
}

/// `GET /x-alerts`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRulesQuery {
    /// Rules watching this account (the caller or a descendant); default: the
    /// caller's own (the operator's own for the operator).
    pub account: Option<String>,
    /// The id of the last rule of the previous page.
    pub after: Option<String>,
    /// At most this many (1-500, default 100).
    pub limit: Option<u32>,
}

/// `GET /x-alerts/{id}/deliveries`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// The id of the last delivery of the previous page (newest first).
    pub before: Option<String>,
    /// At most this many (1-1000, default 100).
    pub limit: Option<u32>,
}

/// `POST /x-alerts/{id}/test`: what the receiver made of a signed `test` event.
#[derive(Debug, Serialize)]
pub struct TestDelivery {
    pub delivery_id: String,
    pub delivered: bool,
    pub status_code: Option<u16>,
    pub error: Option<String>,
}

fn view(r: &AlertRuleRecord) -> AlertRuleView {
    AlertRuleView {
        id: r.id.clone(),
        account_id: r.account_id,
        kind: r.kind,
        thresholds: r.thresholds.clone(),
        url: r.url.clone(),
        created_by: r.created_by.clone(),
        created_at_unix_ms: r.created_at_ms,
    }
}

/// The rules of `account`, or the operator's own.
fn scope(account: Option<AccountId>) -> RulesOf {
    account.map_or(RulesOf::Operator, RulesOf::Account)
}

fn internal(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "{what}");
    ApiError::new(ErrorCode::Internal, "internal error")
}

fn denied(message: &str) -> ApiError {
    ApiError::new(ErrorCode::PermissionDenied, message)
}

impl Service {
    /// The account a request names (`account`), else the caller's own; `None` for
    /// the operator naming none. Checked like every per-account setting.
    async fn watched(
        &self,
        caller: &Caller,
        account: Option<&str>,
    ) -> Result<Option<Placed>, ApiError> {
        let id = match (account, caller) {
            (Some(text), _) => text
                .parse::<AccountId>()
                .map_err(|_| ApiError::invalid(format!("{text:?} is not an account id")))?,
            (None, Caller::Account { account, .. }) => account.id,
            (None, Caller::Root) => return Ok(None),
        };
        Ok(Some(self.placed(caller, id, true).await?))
    }

    /// A rule the caller may see, with the main account of its tree (for audit).
    async fn visible_rule(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(AlertRuleRecord, Option<AccountId>), ApiError> {
        let not_found = || ApiError::new(ErrorCode::NotFound, format!("alert rule {id} not found"));
        let rule = self.store.alert_rule(id).await?.ok_or_else(not_found)?;
        match (rule.account_id, caller) {
            (None, Caller::Root) => Ok((rule, None)),
            (None, Caller::Account { .. }) => Err(not_found()),
            (Some(account), _) => {
                let placed =
                    self.placed(caller, account, true)
                        .await
                        .map_err(|e| match e.code {
                            ErrorCode::NotFound => not_found(),
                            _ => e,
                        })?;
                Ok((rule, Some(placed.main())))
            }
        }
    }

    /// The open webhook secret of `rule`.
    pub(super) fn webhook_secret(
        &self,
        rule: &AlertRuleRecord,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        self.keyring
            .open(&rule.secret, rule.id.as_bytes())
            .map_err(|e| internal("a webhook secret cannot be opened", e))
    }

    /// `POST /x-alerts`: a rule on the caller or a descendant; its secret is in the
    /// answer only.
    pub async fn create_alert_rule(
        &self,
        caller: &Caller,
        req: CreateAlertRule,
        now_ms: i64,
    ) -> Result<CreatedAlertRule, ApiError> {
        let kind = match req.kind {
            Requested::Known(kind) => kind,
            Requested::Unknown(other) => {
                return Err(ApiError::invalid(format!(
                    "kind must be \"credit_share\", \"daily_spend\", \"provider_key_unhealthy\" or \"data_plane_lag\", not {other:?}"
                )));
            }
        };
        let thresholds = alerts::checked_thresholds(kind, &req.thresholds)
            .map_err(|e| ApiError::invalid(e.0))?;
        let url = crate::upstream_url::check_webhook(&req.url, &self.options.upstream_networks)
            .map_err(|e| ApiError::invalid(e.0))?;
        let target = self.watched(caller, req.account_id.as_deref()).await?;
        match (kind, &target) {
            (AlertKind::DataPlaneLag, None) => {}
            (AlertKind::DataPlaneLag, Some(_)) => {
                return Err(match caller {
                    Caller::Root => ApiError::invalid(
                        "data_plane_lag watches the data planes, not an account: leave out account_id",
                    ),
                    Caller::Account { .. } => {
                        denied("only the operator watches data planes (data_plane_lag)")
                    }
                });
            }
            (_, None) => {
                return Err(ApiError::invalid(format!(
                    "{} watches an account: give account_id",
                    kind.as_str()
                )));
            }
            (AlertKind::CreditShare, Some(placed))
                if placed.record.account.policy.credit.is_none() =>
            {
                return Err(ApiError::new(
                    ErrorCode::Unprocessable,
                    format!(
                        "account {} has no credit limit (policy.credit) to take a share of",
                        placed.record.account.id
                    ),
                ));
            }
            (AlertKind::ProviderKeyUnhealthy, Some(placed)) => {
                let owner = placed.record.account.parent.is_none()
                    && caller
                        .account()
                        .is_some_and(|a| a.id == placed.record.account.id);
                if !owner {
                    return Err(denied(
                        "provider keys belong to main accounts: only the owner watches them (provider_key_unhealthy)",
                    ));
                }
            }
            (AlertKind::CreditShare | AlertKind::DailySpend, Some(_)) => {}
        }
        let account = target.as_ref().map(|p| p.record.account.id);
        let held = self
            .store
            .alert_rules(scope(account), None, MAX_RULES_PER_ACCOUNT as u32 + 1)
            .await?;
        if held.len() >= MAX_RULES_PER_ACCOUNT {
            return Err(ApiError::new(
                ErrorCode::Unprocessable,
                format!("an account holds at most {MAX_RULES_PER_ACCOUNT} alert rules"),
            ));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let secret = alerts::generate_secret();
        let sealed = self
            .keyring
            .seal(secret.as_bytes(), id.as_bytes())
            .map_err(|e| internal("sealing a webhook secret failed", e))?;
        let record = AlertRuleRecord {
            id: id.clone(),
            account_id: account,
            kind,
            thresholds,
            url,
            secret: sealed,
            created_by: caller.actor(),
            created_at_ms: now_ms,
        };
        let shown = view(&record);
        let audit = self.audit(
            caller,
            target.as_ref().map(Placed::main),
            "alert_rule.create",
            id,
            None,
            state(&shown),
        );
        let revision = self.store.add_alert_rule(&record, &audit).await?;
        self.publisher.changed(revision);
        tracing::info!(rule = %shown.id, kind = kind.as_str(), "alert rule created");
        Ok(CreatedAlertRule {
            rule: shown,
            secret,
        })
    }

    /// `GET /x-alerts`: the rules watching one account, a page at a time.
    pub async fn alert_rules(
        &self,
        caller: &Caller,
        query: AlertRulesQuery,
    ) -> Result<Vec<AlertRuleView>, ApiError> {
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 500 {
            return Err(ApiError::invalid("limit must be 1-500"));
        }
        let after = page_cursor("after", query.after.as_deref())?;
        let target = self.watched(caller, query.account.as_deref()).await?;
        let rules = self
            .store
            .alert_rules(scope(target.map(|p| p.record.account.id)), after, limit)
            .await?;
        Ok(rules.iter().map(view).collect())
    }

    /// `GET /x-alerts/{id}`.
    pub async fn alert_rule(&self, caller: &Caller, id: &str) -> Result<AlertRuleView, ApiError> {
        Ok(view(&self.visible_rule(caller, id).await?.0))
    }

    /// `DELETE /x-alerts/{id}`: the rule goes with its firings and delivery log.
    pub async fn delete_alert_rule(&self, caller: &Caller, id: &str) -> Result<(), ApiError> {
        let (rule, main) = self.visible_rule(caller, id).await?;
        let audit = self.audit(
            caller,
            main,
            "alert_rule.delete",
            rule.id.clone(),
            state(view(&rule)),
            None,
        );
        let revision = self.store.delete_alert_rule(&rule.id, &audit).await?;
        self.publisher.changed(revision);
        Ok(())
    }

    /// `GET /x-alerts/{id}/deliveries`: the delivery log, newest first.
    pub async fn alert_deliveries(
        &self,
        caller: &Caller,
        id: &str,
        query: DeliveriesQuery,
    ) -> Result<Vec<DeliveryRecord>, ApiError> {
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > 1000 {
            return Err(ApiError::invalid("limit must be 1-1000"));
        }
        let before = page_cursor("before", query.before.as_deref())?;
        let (rule, _) = self.visible_rule(caller, id).await?;
        Ok(self.store.deliveries(&rule.id, before, limit).await?)
    }

    /// `POST /x-alerts/{id}/test`: send a signed `test` event now, once, and say
    /// what the receiver answered (the attempt is in the delivery log too).
    pub async fn test_alert_rule(
        &self,
        caller: &Caller,
        id: &str,
        now_ms: i64,
    ) -> Result<TestDelivery, ApiError> {
        let (rule, _) = self.visible_rule(caller, id).await?;
        let delivery_id = uuid::Uuid::now_v7().to_string();
        let event = AlertEvent {
            id: delivery_id.clone(),
            rule_id: rule.id.clone(),
            account_id: rule.account_id.map(|a| a.to_string()),
            kind: "test".to_owned(),
            subject: None,
            threshold: 0,
            value: 0,
            period: alerts::period_key(Period::Day, now_ms),
            at_unix_ms: now_ms,
        };
        let body = serde_json::to_string(&event).map_err(|e| internal("alert body", e))?;
        let secret = self.webhook_secret(&rule)?;
        let attempt = self
            .webhooks
            .send(&rule.url, &secret, &delivery_id, &body, now_ms)
            .await;
        let delivered = attempt.succeeded();
        self.store
            .record_test_delivery(
                &delivery_id,
                &rule.id,
                &body,
                &AttemptRecord {
                    attempts: 1,
                    state: if delivered { DELIVERED } else { FAILED },
                    status_code: attempt.status_code,
                    error: attempt.error.clone(),
                    next_attempt_ms: None,
                    at_ms: now_ms,
                },
            )
            .await?;
        Ok(TestDelivery {
            delivery_id,
            delivered,
            status_code: attempt.status_code,
            error: attempt.error,
        })
    }
}

/// The longest page cursor (a rule's or a delivery's id) a list accepts.
const MAX_CURSOR: usize = 64;

/// A page cursor as given (an id: letters, digits, `-` and `_`), refused otherwise.
fn page_cursor<'a>(field: &str, cursor: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    let id_like = |c: &str| {
        (1..=MAX_CURSOR).contains(&c.len())
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    match cursor {
        Some(c) if !id_like(c) => Err(ApiError::invalid_field(
            field,
            format!("{field} must be an id: at most {MAX_CURSOR} letters, digits, '-' or '_'"),
        )),
        other => Ok(other),
    }
}

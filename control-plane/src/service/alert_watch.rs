//! What the replica leading `alerts` does: every round it reads each rule's value
//! (spend from the usage collector's rollups, credit limits and provider key health
//! from the store, data planes from the registry), records a firing for each
//! threshold reached (the firing's unique row decides whether it is new), and sends
//! the deliveries that are due, retrying on the schedule of `core::alerts`.

use std::collections::{BTreeMap, HashMap};

use futures_util::StreamExt;
use switchyard_core::alerts::{self, AlertEvent, AlertKind, DataPlaneLag, NextStep};
use switchyard_core::ids::AccountId;
use switchyard_core::policy::Period;
use switchyard_core::time::UtcDay;
use switchyard_proto::v1 as pb;

use super::{ApiError, Service};
use crate::store::{
    AlertRuleRecord, AttemptRecord, DELIVERED, DeliveryRecord, FAILED, FiringRecord, PENDING,
    RulesOf,
};

/// Rules read per page of the evaluator's walk.
const RULES_PAGE: u32 = 200;
/// Deliveries sent per round, and at once.
const DELIVERIES_PER_ROUND: u32 = 50;
const DELIVERY_CONCURRENCY: usize = 8;
/// The health a data plane reports for a failing provider key.
const UNHEALTHY: &str = "unhealthy";

/// What the evaluator keeps between rounds: the data planes it saw behind, at
/// which applied version (`core::alerts::stuck_data_planes`).
#[derive(Debug, Default)]
pub struct AlertMemory {
    behind: BTreeMap<String, u64>,
}

/// One round's reads, shared by its rules.
#[derive(Default)]
struct Round {
    spend: HashMap<(AccountId, UtcDay), u64>,
    data_planes: Option<Vec<DataPlaneLag>>,
}

impl Service {
    /// One evaluation of every rule at `now_ms`: how many alerts fired. A rule whose
    /// value cannot be read now (the collector away) is skipped until the next round.
    pub async fn evaluate_alerts(
        &self,
        memory: &mut AlertMemory,
        now_ms: i64,
    ) -> Result<usize, ApiError> {
        let mut round = Round::default();
        let mut fired = 0;
        let mut after: Option<String> = None;
        loop {
            let rules = self
                .store
                .alert_rules(RulesOf::Every, after.as_deref(), RULES_PAGE)
                .await?;
            for rule in &rules {
                match self.evaluate(rule, &mut round, memory, now_ms).await {
                    Ok(n) => fired += n,
                    Err(e) => {
                        tracing::warn!(rule = %rule.id, error = %e, "alert rule not evaluated this round");
                    }
                }
            }
            match rules.last() {
                Some(last) if rules.len() == RULES_PAGE as usize => after = Some(last.id.clone()),
                _ => break,
            }
        }
        if let Some(planes) = round.data_planes {
            memory.behind = planes
                .into_iter()
                .filter(|d| d.lag > 0)
                .map(|d| (d.replica, d.applied_version))
                .collect();
        }
        Ok(fired)
    }

    async fn evaluate(
        &self,
        rule: &AlertRuleRecord,
        round: &mut Round,
        memory: &AlertMemory,
        now_ms: i64,
    ) -> Result<usize, ApiError> {
        let today = UtcDay::of_unix_ms(now_ms);
        let mut fired = 0;
        match (rule.kind, rule.account_id) {
            (AlertKind::CreditShare, Some(account)) => {
                let Some(record) = self.store.account(account).await? else {
                    return Ok(0);
                };
                // A limit removed since the rule was made: nothing to take a share of.
                let Some(credit) = record.account.policy.credit else {
                    return Ok(0);
                };
                let from = match credit.period {
                    Period::Day => today,
                    Period::Month => today.first_of_month(),
                };
                let spend = self.spend(round, account, from, today).await?;
                let share = alerts::credit_share_percent(spend, credit.limit_nanos);
                let period = alerts::period_key(credit.period, now_ms);
                let done = self.store.fired_thresholds(&rule.id, &period, "").await?;
                for threshold in alerts::reached(&rule.thresholds, share, &done) {
                    fired += self
                        .fire(rule, &period, threshold, "", share, now_ms)
                        .await?;
                }
            }
            (AlertKind::DailySpend, Some(account)) => {
                let spend = self.spend(round, account, today, today).await?;
                let period = alerts::period_key(Period::Day, now_ms);
                let done = self.store.fired_thresholds(&rule.id, &period, "").await?;
                for threshold in alerts::reached(&rule.thresholds, spend, &done) {
                    fired += self
                        .fire(rule, &period, threshold, "", spend, now_ms)
                        .await?;
                }
            }
            (AlertKind::ProviderKeyUnhealthy, Some(owner)) => {
                // Once per key and UTC day while it stays unhealthy.
                let period = alerts::period_key(Period::Day, now_ms);
                for key in self.store.provider_keys(owner).await? {
                    if key.health == UNHEALTHY {
                        let subject = key.key.id.to_string();
                        fired += self.fire(rule, &period, 0, &subject, 0, now_ms).await?;
                    }
                }
            }
            (AlertKind::DataPlaneLag, None) => {
                if round.data_planes.is_none() {
                    let status = self.dashboard_status().await;
                    round.data_planes = Some(
                        status
                            .data_planes
                            .into_iter()
                            .map(|d| DataPlaneLag {
                                replica: d.replica,
                                applied_version: d.applied_version,
                                lag: d.lag,
                            })
                            .collect(),
                    );
                }
                let planes = round.data_planes.as_deref().unwrap_or_default();
                for &threshold in &rule.thresholds {
                    for d in alerts::stuck_data_planes(&memory.behind, planes, threshold) {
                        let period = format!("v{}", d.applied_version);
                        fired += self
                            .fire(rule, &period, threshold, &d.replica, d.lag, now_ms)
                            .await?;
                    }
                }
            }
            // Shapes creation refuses (an account-less spend rule, an account's lag
            // rule): nothing to watch.
            _ => {}
        }
        Ok(fired)
    }

    /// What `account`'s subtree spent (cost at the owner's price, as credit counts
    /// it) from `from` to `to`, read once per round.
    async fn spend(
        &self,
        round: &mut Round,
        account: AccountId,
        from: UtcDay,
        to: UtcDay,
    ) -> Result<u64, ApiError> {
        if let Some(spent) = round.spend.get(&(account, from)) {
            return Ok(*spent);
        }
        let (main_account_id, account_ids) = self.listed_subtree(account).await?;
        let rows = self
            .collector
            .rollups(pb::RollupQuery {
                main_account_id,
                account_ids,
                from_day: from.to_string(),
                to_day: to.to_string(),
                granularity: pb::Granularity::Month.into(),
                by_provider_key: false,
                by_endpoint: false,
                by_label: pb::RollupLabel::Unspecified.into(),
                ..Default::default()
            })
            .await?;
        let spent = rows.iter().fold(0u64, |sum, r| {
            sum.saturating_add(u64::try_from(r.cost_nanos).unwrap_or(0))
        });
        round.spend.insert((account, from), spent);
        Ok(spent)
    }

    /// Record one crossing and its delivery, due at once: 1 if it is new, 0 if this
    /// rule already fired for it.
    async fn fire(
        &self,
        rule: &AlertRuleRecord,
        period: &str,
        threshold: u64,
        subject: &str,
        value: u64,
        now_ms: i64,
    ) -> Result<usize, ApiError> {
        let firing = FiringRecord {
            id: uuid::Uuid::now_v7().to_string(),
            rule_id: rule.id.clone(),
            period: period.to_owned(),
            threshold,
            subject: subject.to_owned(),
            value,
            at_ms: now_ms,
        };
        let event = AlertEvent {
            id: firing.id.clone(),
            rule_id: rule.id.clone(),
            account_id: rule.account_id.map(|a| a.to_string()),
            kind: rule.kind.as_str().to_owned(),
            subject: (!subject.is_empty()).then(|| subject.to_owned()),
            threshold,
            value,
            period: period.to_owned(),
            at_unix_ms: now_ms,
        };
        let body = serde_json::to_string(&event).map_err(|e| {
            ApiError::new(switchyard_core::error::ErrorCode::Internal, e.to_string())
        })?;
        let delivery = uuid::Uuid::now_v7().to_string();
        let new = self.store.record_firing(&firing, &delivery, &body).await?;
        if new {
            tracing::info!(rule = %rule.id, kind = rule.kind.as_str(), period, threshold, subject, value, "alert fired");
        }
        Ok(usize::from(new))
    }

    /// Send the deliveries due at `now_ms` (a few at once) and record each attempt:
    /// how many were attempted.
    pub async fn deliver_due_alerts(&self, now_ms: i64) -> Result<usize, ApiError> {
        let due = self
            .store
            .due_deliveries(now_ms, DELIVERIES_PER_ROUND)
            .await?;
        let count = due.len();
        futures_util::stream::iter(due)
            .map(|delivery| self.attempt(delivery, now_ms))
            .buffer_unordered(DELIVERY_CONCURRENCY)
            .for_each(|_| async {})
            .await;
        Ok(count)
    }

    async fn attempt(&self, delivery: DeliveryRecord, now_ms: i64) {
        let attempts = delivery.attempts.saturating_add(1);
        let outcome = match self.store.alert_rule(&delivery.rule_id).await {
            // Deleted meanwhile: its deliveries went with it.
            Ok(None) => return,
            Ok(Some(rule)) => match self.webhook_secret(&rule) {
                Ok(secret) => {
                    self.webhooks
                        .send(&rule.url, &secret, &delivery.id, &delivery.body, now_ms)
                        .await
                }
                Err(e) => crate::webhook::Attempt {
                    status_code: None,
                    error: Some(e.message),
                },
            },
            Err(e) => {
                tracing::warn!(delivery = %delivery.id, error = %e, "alert delivery postponed");
                return;
            }
        };
        let (state, next) = match alerts::next_step(attempts, outcome.succeeded(), now_ms) {
            NextStep::Delivered => (DELIVERED, None),
            NextStep::RetryAt(at) => (PENDING, Some(at)),
            NextStep::GiveUp => (FAILED, None),
        };
        if state != DELIVERED {
            tracing::warn!(delivery = %delivery.id, attempts, error = ?outcome.error, state, "alert delivery failed");
        }
        let recorded = self
            .store
            .record_attempt(
                &delivery.id,
                &AttemptRecord {
                    attempts,
                    state,
                    status_code: outcome.status_code,
                    error: outcome.error,
                    next_attempt_ms: next,
                    at_ms: now_ms,
                },
            )
            .await;
        if let Err(e) = recorded {
            tracing::error!(delivery = %delivery.id, error = %e, "an alert delivery's attempt was not recorded; it will be sent again");
        }
    }
}

//! Alert rules (configuration: audited, like every write), their firings (one row
//! per rule, period, threshold and subject: the row that decides an alert fires
//! once) and their webhook deliveries (observations: no revision bump).

use sqlx::Row;
use sqlx::any::AnyRow;
use switchyard_core::alerts::AlertKind;
use switchyard_core::crypto::Sealed;
use switchyard_core::ids::AccountId;

use super::rows::{parse_id, to_u32, to_u64};
use super::{AuditEntry, Store, StoreError};

/// A stored alert rule; the webhook secret stays sealed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertRuleRecord {
    pub id: String,
    /// `None`: one of the operator's rules.
    pub account_id: Option<AccountId>,
    pub kind: AlertKind,
    pub thresholds: Vec<u64>,
    pub url: String,
    pub secret: Sealed,
    /// `root` or the creating account's id.
    pub created_by: String,
    pub created_at_ms: i64,
}

/// One crossing of a rule's threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FiringRecord {
    pub id: String,
    pub rule_id: String,
    pub period: String,
    pub threshold: u64,
    /// A provider key or data plane, `""` for the watched account itself.
    pub subject: String,
    pub value: u64,
    pub at_ms: i64,
}

/// Where a delivery stands.
pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// One webhook delivery and its last attempt.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRecord {
    /// Also the `x-switchyard-delivery` header, the same on every attempt.
    pub id: String,
    pub rule_id: String,
    /// `None` for a test delivery.
    pub firing_id: Option<String>,
    /// The JSON body sent on every attempt.
    #[serde(skip)]
    pub body: String,
    /// `pending`, `delivered` or `failed` (no attempt left).
    pub state: String,
    pub attempts: u32,
    /// The last attempt's HTTP status, if the receiver answered.
    pub status_code: Option<u16>,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// When the next attempt is due (unix ms), while pending.
    pub next_attempt_unix_ms: Option<i64>,
    pub created_at_unix_ms: i64,
    pub updated_at_unix_ms: i64,
}

/// Whose rules a read lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RulesOf {
    /// Those watching one account.
    Account(AccountId),
    /// The operator's own.
    Operator,
    /// Every rule (the evaluator's walk).
    Every,
}

/// The outcome of one attempt, as it is recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub attempts: u32,
    pub state: &'static str,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub next_attempt_ms: Option<i64>,
    pub at_ms: i64,
}

/// The columns `rule_from_row` reads, in order (a macro: statements are literals).
macro_rules! rule_columns {
    () => {
        "id, account_id, kind, thresholds, url, secret_key_id, secret_blob, created_by, created_at"
    };
}

/// The columns `delivery_from_row` reads, in order.
macro_rules! delivery_columns {
    () => {
        "id, rule_id, firing_id, body, state, attempts, status_code, error, next_attempt_at, \
         created_at, updated_at"
    };
}

fn rule_from_row(row: &AnyRow) -> Result<AlertRuleRecord, StoreError> {
    let kind: String = row.try_get(2)?;
    let thresholds: String = row.try_get(3)?;
    Ok(AlertRuleRecord {
        id: row.try_get(0)?,
        account_id: row
            .try_get::<Option<String>, _>(1)?
            .as_deref()
            .map(parse_id)
            .transpose()?,
        kind: kind
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("alert kind {kind:?}")))?,
        thresholds: serde_json::from_str(&thresholds)
            .map_err(|e| StoreError::Corrupt(format!("alert thresholds: {e}")))?,
        url: row.try_get(4)?,
        secret: Sealed {
            key_id: row.try_get(5)?,
            blob: row.try_get(6)?,
        },
        created_by: row.try_get(7)?,
        created_at_ms: row.try_get(8)?,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRecord, StoreError> {
    Ok(DeliveryRecord {
        id: row.try_get(0)?,
        rule_id: row.try_get(1)?,
        firing_id: row.try_get(2)?,
        body: row.try_get(3)?,
        state: row.try_get(4)?,
        attempts: to_u32(row.try_get::<i64, _>(5)?)?,
        status_code: row
            .try_get::<Option<i64>, _>(6)?
            .map(|c| u16::try_from(c).map_err(|_| StoreError::Corrupt(format!("status {c}"))))
            .transpose()?,
        error: row.try_get(7)?,
        next_attempt_unix_ms: row.try_get(8)?,
        created_at_unix_ms: row.try_get(9)?,
        updated_at_unix_ms: row.try_get(10)?,
    })
}

/// A number as the BIGINT columns hold it (values beyond `i64` are saturated).
fn stored(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    pub async fn add_alert_rule(
        &self,
        rule: &AlertRuleRecord,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let thresholds = serde_json::to_string(&rule.thresholds)
            .map_err(|e| StoreError::Corrupt(format!("alert thresholds: {e}")))?;
        let rule = rule.clone();
        self.write(audit, |tx| {
            Box::pin(async move {
                sqlx::query(concat!(
                    "INSERT INTO alert_rules (",
                    rule_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(rule.id)
                .bind(rule.account_id.map(|a| a.to_string()))
                .bind(rule.kind.as_str())
                .bind(thresholds)
                .bind(rule.url)
                .bind(rule.secret.key_id)
                .bind(rule.secret.blob)
                .bind(rule.created_by)
                .bind(rule.created_at_ms)
                .execute(&mut **tx)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Delete a rule with its firings and deliveries (by cascade).
    pub async fn delete_alert_rule(&self, id: &str, audit: &AuditEntry) -> Result<u64, StoreError> {
        let query = sqlx::query("DELETE FROM alert_rules WHERE id = $1").bind(id.to_owned());
        self.write_one(audit, "alert rule", query).await
    }

    pub async fn alert_rule(&self, id: &str) -> Result<Option<AlertRuleRecord>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            rule_columns!(),
            " FROM alert_rules WHERE id = $1"
        ))
        .bind(id.to_owned())
        .fetch_optional(&self.db.pool)
        .await?
        .as_ref()
        .map(rule_from_row)
        .transpose()
    }

    /// The rules of `scope`, oldest first, after the rule `after` when given.
    pub async fn alert_rules(
        &self,
        scope: RulesOf,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertRuleRecord>, StoreError> {
        let (query, account) = match scope {
            RulesOf::Account(account) => (
                sqlx::query(concat!(
                    "SELECT ",
                    rule_columns!(),
                    " FROM alert_rules WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                )),
                account.to_string(),
            ),
            RulesOf::Operator => (
                sqlx::query(concat!(
                    "SELECT ",
                    rule_columns!(),
                    " FROM alert_rules WHERE account_id IS NULL AND $1 = '' AND id > $2 \
                     ORDER BY id LIMIT $3"
                )),
                String::new(),
            ),
            RulesOf::Every => (
                sqlx::query(concat!(
                    "SELECT ",
                    rule_columns!(),
                    " FROM alert_rules WHERE $1 = '' AND id > $2 ORDER BY id LIMIT $3"
                )),
                String::new(),
            ),
        };
        let rows = query
            .bind(account)
            .bind(after.unwrap_or_default().to_owned())
            .bind(i64::from(limit))
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(rule_from_row).collect()
    }

    /// Replace a rule's sealed secret if it is still sealed under `from_key_id` (a
    /// re-seal under a new key-encryption key; not configuration: no revision bump).
    pub async fn reseal_alert_secret(
        &self,
        id: &str,
        from_key_id: &str,
        sealed: &Sealed,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_rules SET secret_key_id = $1, secret_blob = $2 \
             WHERE id = $3 AND secret_key_id = $4",
        )
        .bind(sealed.key_id.clone())
        .bind(sealed.blob.clone())
        .bind(id.to_owned())
        .bind(from_key_id.to_owned())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// The thresholds of `rule` that fired in `period` for `subject`.
    pub async fn fired_thresholds(
        &self,
        rule: &str,
        period: &str,
        subject: &str,
    ) -> Result<Vec<u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT threshold FROM alert_firings WHERE rule_id = $1 AND period = $2 AND subject = $3",
        )
        .bind(rule.to_owned())
        .bind(period.to_owned())
        .bind(subject.to_owned())
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter()
            .map(|r| to_u64(r.try_get::<i64, _>(0)?))
            .collect()
    }

    /// Record a firing and its first delivery (due at once), unless the rule already
    /// fired for this period, threshold and subject: whether it was new.
    pub async fn record_firing(
        &self,
        firing: &FiringRecord,
        delivery_id: &str,
        body: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.db.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO alert_firings (id, rule_id, period, threshold, subject, value, at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (rule_id, period, threshold, subject) DO NOTHING",
        )
        .bind(firing.id.clone())
        .bind(firing.rule_id.clone())
        .bind(firing.period.clone())
        .bind(stored(firing.threshold))
        .bind(firing.subject.clone())
        .bind(stored(firing.value))
        .bind(firing.at_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            insert_delivery(
                &mut tx,
                delivery_id,
                &firing.rule_id,
                Some(&firing.id),
                body,
                firing.at_ms,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    /// A test delivery of `rule`, recorded with its one attempt.
    pub async fn record_test_delivery(
        &self,
        id: &str,
        rule: &str,
        body: &str,
        attempt: &AttemptRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.db.pool.begin().await?;
        insert_delivery(&mut tx, id, rule, None, body, attempt.at_ms).await?;
        tx.commit().await?;
        self.record_attempt(id, attempt).await
    }

    /// Deliveries due by `now_ms`, the longest waiting first.
    pub async fn due_deliveries(
        &self,
        now_ms: i64,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM alert_deliveries \
             WHERE state = $1 AND next_attempt_at <= $2 ORDER BY next_attempt_at, id LIMIT $3"
        ))
        .bind(PENDING)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    pub async fn record_attempt(&self, id: &str, a: &AttemptRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE alert_deliveries SET attempts = $1, state = $2, status_code = $3, error = $4, \
             next_attempt_at = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(i64::from(a.attempts))
        .bind(a.state)
        .bind(a.status_code.map(i64::from))
        .bind(a.error.clone())
        .bind(a.next_attempt_ms)
        .bind(a.at_ms)
        .bind(id.to_owned())
        .execute(&self.db.pool)
        .await?;
        Ok(())
    }

    /// A rule's deliveries, newest first, older than `before` when given.
    pub async fn deliveries(
        &self,
        rule: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM alert_deliveries \
             WHERE rule_id = $1 AND ($2 = '' OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(rule.to_owned())
        .bind(before.unwrap_or_default().to_owned())
        .bind(i64::from(limit))
        .fetch_all(&self.db.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }
}

async fn insert_delivery(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    rule: &str,
    firing: Option<&str>,
    body: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO alert_deliveries (",
        delivery_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, 0, NULL, NULL, $6, $6, $6)"
    ))
    .bind(id.to_owned())
    .bind(rule.to_owned())
    .bind(firing.map(str::to_owned))
    .bind(body.to_owned())
    .bind(PENDING)
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

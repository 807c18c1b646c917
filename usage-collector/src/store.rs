//! Usage storage: raw events stored once per id, daily rollups updated in the same
//! transaction. One implementation over `sqlx::Any` for Postgres and SQLite.

use sqlx::Row;
use switchyard_core::ids::AccountId;
use switchyard_core::usage::{RollupRow, TokenUsage, UsageEvent, UsageSource};
use switchyard_db::{Db, DbError, Migrations};

static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] DbError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("a number does not fit the database: {0}")]
    Range(String),
}

/// How a batch landed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub new: u32,
    pub duplicates: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Month,
}

/// What to read: a main account's tree (or all of them), some accounts in it, a range of days.
#[derive(Clone, Debug)]
pub struct RollupFilter {
    pub main_account: Option<AccountId>,
    pub accounts: Vec<AccountId>,
    pub from_day: String,
    pub to_day: String,
    pub granularity: Granularity,
}

/// Which raw events to read: newest first, older than the cursor.
#[derive(Clone, Debug)]
pub struct EventFilter {
    pub main_account: Option<AccountId>,
    /// Only events whose account chain holds this account.
    pub within: Option<AccountId>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub model: Option<String>,
    pub status: Option<u16>,
    /// `(at_ms, id)` of the last event of the previous page.
    pub before: Option<(i64, String)>,
    pub limit: u32,
}

const SELECT_EVENTS: &str = "SELECT id, at_ms, account_chain, issued_key_id, provider_key_id, model_requested, model_served, \
     level, status, latency_ms, ttfb_ms, input_tokens, output_tokens, cached_tokens, usage_source, cost_nanos, path, \
     client_addr, streamed, billed_nanos FROM usage_events \
     WHERE ($1 = '' OR main_account_id = $1) \
     AND ($2 = '' OR (',' || account_chain || ',') LIKE ('%,' || $3 || ',%')) \
     AND at_ms >= $4 AND at_ms < $5 \
     AND ($6 = '' OR model_served = $7) \
     AND ($8 = 0 OR status = $9) \
     AND (at_ms < $10 OR (at_ms = $11 AND id < $12)) \
     ORDER BY at_ms DESC, id DESC LIMIT $13";

#[derive(Clone, Debug)]
pub struct UsageStore {
    db: Db,
}

const INSERT_EVENT: &str = "INSERT INTO usage_events (id, at_ms, day, account_id, main_account_id, account_chain, issued_key_id, \
     provider_key_id, model_requested, model_served, level, status, latency_ms, ttfb_ms, input_tokens, output_tokens, \
     cached_tokens, usage_source, cost_nanos, path, client_addr, streamed, billed_nanos) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
     ON CONFLICT (id) DO NOTHING";

const UPSERT_DAILY: &str = "INSERT INTO usage_daily (day, main_account_id, account_id, model, requests, errors, input_tokens, \
     output_tokens, cached_tokens, cost_nanos, billed_nanos) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8, $9, $10) \
     ON CONFLICT (day, account_id, model) DO UPDATE SET requests = usage_daily.requests + 1, \
     errors = usage_daily.errors + excluded.errors, input_tokens = usage_daily.input_tokens + excluded.input_tokens, \
     output_tokens = usage_daily.output_tokens + excluded.output_tokens, \
     cached_tokens = usage_daily.cached_tokens + excluded.cached_tokens, \
     cost_nanos = usage_daily.cost_nanos + excluded.cost_nanos, \
     billed_nanos = usage_daily.billed_nanos + excluded.billed_nanos";

const SELECT_DAILY_MAIN: &str = "SELECT day, account_id, model, requests, errors, input_tokens, output_tokens, cached_tokens, \
     cost_nanos, billed_nanos FROM usage_daily WHERE main_account_id = $1 AND day >= $2 AND day <= $3";

const SELECT_DAILY_ALL: &str = "SELECT day, account_id, model, requests, errors, input_tokens, output_tokens, cached_tokens, \
     cost_nanos, billed_nanos FROM usage_daily WHERE day >= $1 AND day <= $2";

fn parse_text<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Range(format!("stored event has a bad {what}")))
}

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<UsageEvent, StoreError> {
    let bad = |what: &str| StoreError::Range(format!("stored event has a bad {what}"));
    let chain: String = r.try_get(2)?;
    let provider: Option<String> = r.try_get(4)?;
    let source: String = r.try_get(14)?;
    let narrow = |v: i64, what: &str| u32::try_from(v).map_err(|_| bad(what));
    Ok(UsageEvent {
        id: parse_text(&r.try_get::<String, _>(0)?, "id")?,
        at_unix_ms: r.try_get(1)?,
        account_chain: chain
            .split(',')
            .map(|a| parse_text(a, "account chain"))
            .collect::<Result<_, _>>()?,
        issued_key: parse_text(&r.try_get::<String, _>(3)?, "issued key")?,
        provider_key: provider
            .map(|p| parse_text(&p, "provider key"))
            .transpose()?,
        model_requested: r.try_get(5)?,
        model_served: r.try_get(6)?,
        level: narrow(r.try_get(7)?, "level")?,
        status: u16::try_from(r.try_get::<i64, _>(8)?).map_err(|_| bad("status"))?,
        latency_ms: narrow(r.try_get(9)?, "latency")?,
        ttfb_ms: r
            .try_get::<Option<i64>, _>(10)?
            .map(|v| narrow(v, "ttfb"))
            .transpose()?,
        tokens: TokenUsage {
            input: uint(r.try_get(11)?),
            output: uint(r.try_get(12)?),
            cached: uint(r.try_get(13)?),
        },
        source: UsageSource::parse(&source).ok_or_else(|| bad("usage source"))?,
        cost_nanos: r.try_get(15)?,
        path: r.try_get(16)?,
        client_addr: r.try_get(17)?,
        streamed: r.try_get::<i64, _>(18)? != 0,
        billed_nanos: r.try_get(19)?,
    })
}

fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Range(v.to_string()))
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl UsageStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let migrations = Migrations {
            postgres: &POSTGRES,
            sqlite: &SQLITE,
        };
        Ok(Self {
            db: switchyard_db::open(url, &migrations, 8).await?,
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.db.pool).await?;
        Ok(())
    }

    /// Store a batch in one transaction. Events already held are skipped, and only new
    /// ones touch the rollups, so a replayed batch changes nothing.
    pub async fn insert(&self, events: &[UsageEvent]) -> Result<Stored, StoreError> {
        let mut stored = Stored::default();
        let mut tx = self.db.pool.begin().await?;
        let outcome: Result<(), StoreError> = async {
            for e in events {
                let (Some(account), Some(main)) = (e.account(), e.main_account()) else {
                    continue; // validated at the edge; an empty chain never reaches here
                };
                let day = switchyard_core::time::utc_day(e.at_unix_ms);
                let chain = e
                    .account_chain
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",");
                let inserted = sqlx::query(INSERT_EVENT)
                    .bind(e.id.to_string())
                    .bind(e.at_unix_ms)
                    .bind(day.clone())
                    .bind(account.to_string())
                    .bind(main.to_string())
                    .bind(chain)
                    .bind(e.issued_key.to_string())
                    .bind(e.provider_key.map(|p| p.to_string()))
                    .bind(e.model_requested.clone())
                    .bind(e.model_served.clone())
                    .bind(i64::from(e.level))
                    .bind(i64::from(e.status))
                    .bind(i64::from(e.latency_ms))
                    .bind(e.ttfb_ms.map(i64::from))
                    .bind(int(e.tokens.input)?)
                    .bind(int(e.tokens.output)?)
                    .bind(int(e.tokens.cached)?)
                    .bind(e.source.as_str())
                    .bind(e.cost_nanos)
                    .bind(e.path.clone())
                    .bind(e.client_addr.clone())
                    .bind(i64::from(e.streamed))
                    .bind(e.billed_nanos)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    stored.duplicates += 1;
                    continue;
                }
                stored.new += 1;
                sqlx::query(UPSERT_DAILY)
                    .bind(day)
                    .bind(main.to_string())
                    .bind(account.to_string())
                    .bind(e.model_served.clone())
                    .bind(i64::from(e.status >= 400))
                    .bind(int(e.tokens.input)?)
                    .bind(int(e.tokens.output)?)
                    .bind(int(e.tokens.cached)?)
                    .bind(e.cost_nanos)
                    .bind(e.billed_nanos)
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        }
        .await;
        match outcome {
            Ok(()) => {
                tx.commit().await?;
                Ok(stored)
            }
            Err(e) => {
                // Roll back now: a dropped transaction would keep SQLite's write lock
                // until its connection is next used.
                if let Err(rollback) = tx.rollback().await {
                    tracing::error!(error = %rollback, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// Raw events, newest first.
    pub async fn events(&self, f: &EventFilter) -> Result<Vec<UsageEvent>, StoreError> {
        let main = f.main_account.map(|m| m.to_string()).unwrap_or_default();
        let within = f.within.map(|w| w.to_string()).unwrap_or_default();
        let model = f.model.clone().unwrap_or_default();
        let status = i64::from(f.status.unwrap_or(0));
        let (before_ms, before_id) = f.before.clone().unwrap_or((i64::MAX, String::new()));
        // Each value is bound once per placeholder: `$n` must appear in order for SQLite.
        let rows = sqlx::query(SELECT_EVENTS)
            .bind(main.clone())
            .bind(within.clone())
            .bind(within)
            .bind(f.from_ms)
            .bind(f.to_ms)
            .bind(model.clone())
            .bind(model)
            .bind(status)
            .bind(status)
            .bind(before_ms)
            .bind(before_ms)
            .bind(before_id)
            .bind(i64::from(f.limit))
            .fetch_all(&self.db.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Rollups for a tree, summed by month when asked, ordered by period, account, model.
    pub async fn rollups(&self, filter: &RollupFilter) -> Result<Vec<RollupRow>, StoreError> {
        let rows = match filter.main_account {
            Some(main) => {
                sqlx::query(SELECT_DAILY_MAIN)
                    .bind(main.to_string())
                    .bind(filter.from_day.clone())
                    .bind(filter.to_day.clone())
                    .fetch_all(&self.db.pool)
                    .await?
            }
            None => {
                sqlx::query(SELECT_DAILY_ALL)
                    .bind(filter.from_day.clone())
                    .bind(filter.to_day.clone())
                    .fetch_all(&self.db.pool)
                    .await?
            }
        };
        let wanted: std::collections::HashSet<String> =
            filter.accounts.iter().map(ToString::to_string).collect();
        let mut out: std::collections::BTreeMap<(String, String, String), RollupRow> =
            Default::default();
        for r in rows {
            let day: String = r.try_get(0)?;
            let account_id: String = r.try_get(1)?;
            if !wanted.is_empty() && !wanted.contains(&account_id) {
                continue;
            }
            let model: String = r.try_get(2)?;
            let period = match filter.granularity {
                Granularity::Day => day,
                Granularity::Month => day.get(..7).unwrap_or(&day).to_owned(),
            };
            let row = out
                .entry((period.clone(), account_id.clone(), model.clone()))
                .or_insert_with(|| RollupRow {
                    period,
                    account_id,
                    model,
                    ..RollupRow::default()
                });
            row.requests += uint(r.try_get(3)?);
            row.errors += uint(r.try_get(4)?);
            row.input_tokens += uint(r.try_get(5)?);
            row.output_tokens += uint(r.try_get(6)?);
            row.cached_tokens += uint(r.try_get(7)?);
            row.cost_nanos += r.try_get::<i64, _>(8)?;
            row.billed_nanos += r.try_get::<i64, _>(9)?;
        }
        Ok(out.into_values().collect())
    }
}

//! The write path on Postgres: a transaction's events go in one
//! `INSERT … SELECT * FROM unnest(…)` of column arrays, and each rollup table's rows
//! in one more. The statements' text does not depend on the batch size, so each is
//! prepared once per connection, and Postgres evaluates one expression per column
//! instead of one per value, which is where multi-row `VALUES` spends its time.

use std::collections::{BTreeMap, HashSet};

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use switchyard_core::ids::EventId;
use switchyard_core::usage::UsageEvent;
use switchyard_db::DbError;

use super::{
    DAILY, DAILY_KEYS, EVENTS_INSERT, EVENTS_TAIL, EventRow, RollupDelta, RollupKey, RollupTable,
    StoreError, Stored, landed, number_columns, rollup_deltas, rollup_numbers,
};

/// Connections of the write pool: the collector runs two transactions at once.
const CONNECTIONS: u32 = 4;

/// The column types of [`EVENTS_INSERT`], in order.
const EVENT_TYPES: [&str; super::EVENT_PARAMS] = [
    "text", "int8", "text", "text", "text", "text", "text", "text", "text", "text", "int8", "int8",
    "int8", "int8", "int8", "int8", "int8", "text", "int8", "text", "text", "int8", "int8", "int8",
    "int8",
];

pub(super) async fn connect(url: &str) -> Result<PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(CONNECTIONS)
        .acquire_timeout(switchyard_db::POSTGRES_ACQUIRE_TIMEOUT)
        .connect(url)
        .await
        .map_err(|e| StoreError::Open(DbError::Connect(e)))
}

/// `insert SELECT * FROM unnest($1::t1[], $2::t2[], …)` then `tail`.
fn unnest_sql(insert: &str, types: &[&str], tail: &str) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    format!("{insert} SELECT * FROM unnest({}){tail}", arrays.join(", "))
}

/// The events of one statement, one array per column.
#[derive(Default)]
struct EventColumns {
    id: Vec<String>,
    at_ms: Vec<i64>,
    day: Vec<String>,
    account: Vec<String>,
    main_account: Vec<String>,
    chain: Vec<String>,
    issued_key: Vec<String>,
    provider_key: Vec<Option<String>>,
    model_requested: Vec<String>,
    model_served: Vec<String>,
    level: Vec<i64>,
    status: Vec<i64>,
    latency_ms: Vec<i64>,
    ttfb_ms: Vec<Option<i64>>,
    input: Vec<i64>,
    output: Vec<i64>,
    cached: Vec<i64>,
    source: Vec<&'static str>,
    cost_nanos: Vec<i64>,
    path: Vec<String>,
    client_addr: Vec<String>,
    streamed: Vec<i64>,
    billed_nanos: Vec<i64>,
    price_version: Vec<i64>,
    cache_write: Vec<i64>,
}

impl EventColumns {
    fn of(events: &[&UsageEvent]) -> Result<Self, StoreError> {
        let mut c = Self::default();
        for e in events {
            let r = EventRow::of(e)?;
            c.id.push(r.id);
            c.at_ms.push(r.at_ms);
            c.day.push(r.day);
            c.account.push(r.account);
            c.main_account.push(r.main_account);
            c.chain.push(r.chain);
            c.issued_key.push(r.issued_key);
            c.provider_key.push(r.provider_key);
            c.model_requested.push(r.model_requested);
            c.model_served.push(r.model_served);
            c.level.push(r.level);
            c.status.push(r.status);
            c.latency_ms.push(r.latency_ms);
            c.ttfb_ms.push(r.ttfb_ms);
            c.input.push(r.input);
            c.output.push(r.output);
            c.cached.push(r.cached);
            c.source.push(r.source);
            c.cost_nanos.push(r.cost_nanos);
            c.path.push(r.path);
            c.client_addr.push(r.client_addr);
            c.streamed.push(r.streamed);
            c.billed_nanos.push(r.billed_nanos);
            c.price_version.push(r.price_version);
            c.cache_write.push(r.cache_write);
        }
        Ok(c)
    }

    /// Insert them; the ids of those that were new.
    async fn insert(self, tx: &mut sqlx::PgConnection) -> Result<HashSet<EventId>, StoreError> {
        // Built from placeholders only; every value is bound.
        let sql = unnest_sql(EVENTS_INSERT, &EVENT_TYPES, EVENTS_TAIL);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.id)
            .bind(self.at_ms)
            .bind(self.day)
            .bind(self.account)
            .bind(self.main_account)
            .bind(self.chain)
            .bind(self.issued_key)
            .bind(self.provider_key)
            .bind(self.model_requested)
            .bind(self.model_served)
            .bind(self.level)
            .bind(self.status)
            .bind(self.latency_ms)
            .bind(self.ttfb_ms)
            .bind(self.input)
            .bind(self.output)
            .bind(self.cached)
            .bind(self.source)
            .bind(self.cost_nanos)
            .bind(self.path)
            .bind(self.client_addr)
            .bind(self.streamed)
            .bind(self.billed_nanos)
            .bind(self.price_version)
            .bind(self.cache_write)
            .fetch_all(&mut *tx)
            .await?;
        let mut new = HashSet::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get(0)?;
            if let Ok(id) = id.parse::<EventId>() {
                new.insert(id);
            }
        }
        Ok(new)
    }
}

/// Add `deltas` to `table` in one statement; the rows are distinct, which an upsert
/// of several rows requires.
async fn upsert(
    tx: &mut sqlx::PgConnection,
    table: &RollupTable,
    deltas: BTreeMap<RollupKey, RollupDelta>,
) -> Result<(), StoreError> {
    if deltas.is_empty() {
        return Ok(());
    }
    let numbers = number_columns(table);
    let mut names: [Vec<String>; 4] = Default::default();
    let mut counts: Vec<Vec<i64>> = vec![Vec::with_capacity(deltas.len()); numbers];
    for (key, d) in &deltas {
        let [day, main, of, model] = &mut names;
        day.push(key.day.clone());
        main.push(key.main_account.to_string());
        of.push(key.of.clone());
        model.push(key.model.clone());
        for (column, n) in counts.iter_mut().zip(rollup_numbers(d)?) {
            column.push(n);
        }
    }
    let types: Vec<&str> = ["text"; 4]
        .into_iter()
        .chain(std::iter::repeat_n("int8", numbers))
        .collect();
    // Built from placeholders only; every value is bound.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(unnest_sql(
        table.insert,
        &types,
        table.tail,
    )));
    for column in names {
        q = q.bind(column);
    }
    for column in counts {
        q = q.bind(column);
    }
    q.execute(&mut *tx).await?;
    Ok(())
}

/// [`super::UsageStore::insert_batches`] on Postgres. An error drops the transaction,
/// which rolls it back.
pub(super) async fn insert(
    pool: &PgPool,
    batches: &[&[UsageEvent]],
    events: &[&UsageEvent],
) -> Result<Vec<Stored>, StoreError> {
    let mut tx = pool.begin().await?;
    let new_ids = EventColumns::of(events)?.insert(&mut tx).await?;
    let (stored, new) = landed(batches, new_ids);
    let (accounts, keys) = rollup_deltas(new.iter().copied());
    upsert(&mut tx, &DAILY, accounts).await?;
    upsert(&mut tx, &DAILY_KEYS, keys).await?;
    tx.commit().await?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_array_per_column() {
        let sql = unnest_sql(EVENTS_INSERT, &EVENT_TYPES, EVENTS_TAIL);
        assert!(sql.contains("SELECT * FROM unnest($1::text[], $2::int8[], $3::text[]"));
        assert!(sql.ends_with("$25::int8[]) ON CONFLICT (id) DO NOTHING RETURNING id"));
        // As many columns as arrays.
        let columns = EVENTS_INSERT.matches(',').count() + 1;
        assert_eq!(columns, EVENT_TYPES.len());
    }
}

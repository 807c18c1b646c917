//! The write path on SQLite: multi-row statements of a few fixed sizes, on a pool
//! typed to SQLite, so each value is bound once as the driver keeps it.

use std::collections::HashSet;

use sqlx::Row;
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool};
use switchyard_core::ids::EventId;
use switchyard_core::usage::UsageEvent;

use super::{
    DAILY, DAILY_KEYS, EVENT_PARAMS, EVENTS_INSERT, EVENTS_TAIL_SILENT, EventRow, RollupDelta,
    RollupKey, RollupTable, StoreError, Stored, held_ids_sql, landed, number_columns,
    rollup_deltas, rollup_numbers, statement_chunks, values_sql,
};

/// Connections of the write pool: the collector runs two transactions at once, and
/// SQLite lets one write at a time anyway.
pub(super) const CONNECTIONS: u32 = 2;

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, SqliteArguments>;

fn bind_event<'q>(q: Query<'q>, e: &UsageEvent) -> Result<Query<'q>, StoreError> {
    let r = EventRow::of(e)?;
    Ok(q.bind(r.id)
        .bind(r.at_ms)
        .bind(r.day)
        .bind(r.account)
        .bind(r.main_account)
        .bind(r.chain)
        .bind(r.issued_key)
        .bind(r.provider_key)
        .bind(r.model_requested)
        .bind(r.model_served)
        .bind(r.level)
        .bind(r.status)
        .bind(r.latency_ms)
        .bind(r.ttfb_ms)
        .bind(r.input)
        .bind(r.output)
        .bind(r.cached)
        .bind(r.source)
        .bind(r.cost_nanos)
        .bind(r.path)
        .bind(r.client_addr)
        .bind(r.streamed)
        .bind(r.billed_nanos)
        .bind(r.price_version)
        .bind(r.cache_write))
}

fn bind_rollup<'q>(
    q: Query<'q>,
    key: &RollupKey,
    d: &RollupDelta,
    table: &RollupTable,
) -> Result<Query<'q>, StoreError> {
    let mut q = q
        .bind(key.day.clone())
        .bind(key.main_account.to_string())
        .bind(key.of.clone())
        .bind(key.model.clone());
    for n in rollup_numbers(d)?.into_iter().take(number_columns(table)) {
        q = q.bind(n);
    }
    Ok(q)
}

/// Store batches in one transaction (see `UsageStore::insert_batches`).
///
/// A fresh group, the usual case, needs no read: when every row goes in, no id was
/// held. Only when some do not (a replay, or an id twice in the group) is the
/// transaction undone and written again knowing which ids are held. The write lock
/// is taken at `BEGIN IMMEDIATE`, so no other writer stores one of the ids between
/// the read and the inserts.
pub(super) async fn insert(
    pool: &SqlitePool,
    batches: &[&[UsageEvent]],
    events: &[&UsageEvent],
) -> Result<Vec<Stored>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    match insert_fresh(&mut tx, batches, events).await {
        Ok(Some(stored)) => return settle(tx, Ok(stored)).await,
        Ok(None) => tx.rollback().await?,
        Err(e) => return settle(tx, Err(e)).await,
    }
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let checked = insert_checked(&mut tx, batches, events).await;
    settle(tx, checked).await
}

/// Insert every event and its rollups if none is held; `None` (with some rows in)
/// when one was.
async fn insert_fresh(
    tx: &mut SqliteConnection,
    batches: &[&[UsageEvent]],
    events: &[&UsageEvent],
) -> Result<Option<Vec<Stored>>, StoreError> {
    let inserted = insert_events(tx, events).await?;
    if usize::try_from(inserted).ok() != Some(events.len()) {
        return Ok(None);
    }
    let (stored, new) = landed(batches, events.iter().map(|e| e.id).collect());
    upsert_rollups(tx, &new).await?;
    Ok(Some(stored))
}

/// Read which ids are held, insert the rest, and add only those to the rollups.
async fn insert_checked(
    tx: &mut SqliteConnection,
    batches: &[&[UsageEvent]],
    events: &[&UsageEvent],
) -> Result<Vec<Stored>, StoreError> {
    // Every read before any insert, so an id twice in this transaction is not taken
    // as held because its first copy was just inserted.
    let mut held = HashSet::new();
    for chunk in statement_chunks(events) {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(held_ids_sql(chunk.len())));
        for e in chunk {
            q = q.bind(e.id.to_string());
        }
        for row in q.fetch_all(&mut *tx).await? {
            // An id that is not ours can match no event of the batch.
            if let Ok(id) = row.try_get::<String, _>(0)?.parse::<EventId>() {
                held.insert(id);
            }
        }
    }
    insert_events(tx, events).await?;
    let new_ids = events
        .iter()
        .map(|e| e.id)
        .filter(|id| !held.contains(id))
        .collect();
    let (stored, new) = landed(batches, new_ids);
    upsert_rollups(tx, &new).await?;
    Ok(stored)
}

/// Insert the events whose ids are not held; how many went in.
async fn insert_events(
    tx: &mut SqliteConnection,
    events: &[&UsageEvent],
) -> Result<u64, StoreError> {
    let mut inserted = 0;
    for chunk in statement_chunks(events) {
        // Built from placeholders only; every value is bound.
        let sql = values_sql(EVENTS_INSERT, EVENT_PARAMS, chunk.len(), EVENTS_TAIL_SILENT);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for e in chunk {
            q = bind_event(q, e)?;
        }
        inserted += q.execute(&mut *tx).await?.rows_affected();
    }
    Ok(inserted)
}

/// Add new events to both rollup tables: a few multi-row upserts per table (the rows
/// are distinct, which one statement requires).
async fn upsert_rollups(tx: &mut SqliteConnection, new: &[&UsageEvent]) -> Result<(), StoreError> {
    let (accounts, keys) = rollup_deltas(new.iter().copied());
    for (table, deltas) in [(&DAILY, accounts), (&DAILY_KEYS, keys)] {
        let rows: Vec<(RollupKey, RollupDelta)> = deltas.into_iter().collect();
        for chunk in statement_chunks(&rows) {
            // Built from placeholders only; every value is bound.
            let sql = values_sql(table.insert, table.params, chunk.len(), table.tail);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, d) in chunk {
                q = bind_rollup(q, key, d, table)?;
            }
            q.execute(&mut *tx).await?;
        }
    }
    Ok(())
}

/// Commit what was written, or roll back after a failure.
async fn settle<T>(
    tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    outcome: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match outcome {
        Ok(v) => {
            tx.commit().await?;
            Ok(v)
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

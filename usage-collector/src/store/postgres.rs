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
    EVENT_COLUMNS, EVENTS_INSERT, EVENTS_TAIL, ROLLUP_TABLES, RollupDelta, RollupKey, RollupTable,
    StoreError, Stored, Value, landed, number_columns, rollup_deltas, rollup_numbers,
};

/// Connections of the write pool: the collector runs two transactions at once.
const CONNECTIONS: u32 = 4;

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

/// One column of a statement's events: an array of its values.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

/// The events of one statement, one array per column of [`EVENT_COLUMNS`].
struct EventColumns(Vec<Column>);

impl EventColumns {
    fn of(events: &[&UsageEvent]) -> Result<Self, StoreError> {
        let mut columns: Vec<Column> = EVENT_COLUMNS
            .iter()
            .map(|c| match c.sql_type() {
                "text" => Column::Text(Vec::with_capacity(events.len())),
                _ => Column::Int(Vec::with_capacity(events.len())),
            })
            .collect();
        for e in events {
            for (column, spec) in columns.iter_mut().zip(&EVENT_COLUMNS) {
                match (column, spec.value(e)?) {
                    (Column::Text(values), Value::Text(v)) => values.push(v),
                    (Column::Int(values), Value::Int(v)) => values.push(v),
                    _ => {
                        return Err(StoreError::Range(format!(
                            "column {} has a value of another type",
                            spec.name
                        )));
                    }
                }
            }
        }
        Ok(Self(columns))
    }

    /// Insert them; the ids of those that were new.
    async fn insert(self, tx: &mut sqlx::PgConnection) -> Result<HashSet<EventId>, StoreError> {
        // Built from placeholders only; every value is bound.
        let sql = unnest_sql(&EVENTS_INSERT, &event_types(), EVENTS_TAIL);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for column in self.0 {
            q = match column {
                Column::Text(values) => q.bind(values),
                Column::Int(values) => q.bind(values),
            };
        }
        let rows = q.fetch_all(&mut *tx).await?;
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

/// The column types of [`EVENTS_INSERT`], in order.
fn event_types() -> Vec<&'static str> {
    EVENT_COLUMNS.iter().map(|c| c.sql_type()).collect()
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
        &table.insert(),
        &types,
        &table.tail(),
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
    for (table, deltas) in ROLLUP_TABLES
        .into_iter()
        .zip(rollup_deltas(new.iter().copied()))
    {
        upsert(&mut tx, table, deltas).await?;
    }
    tx.commit().await?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_array_per_column() {
        let types = event_types();
        let sql = unnest_sql(&EVENTS_INSERT, &types, EVENTS_TAIL);
        assert!(sql.contains("SELECT * FROM unnest($1::text[], $2::int8[], $3::text[]"));
        assert!(sql.ends_with("$26::text[]) ON CONFLICT (id) DO NOTHING RETURNING id"));
        // As many columns as arrays.
        let columns = EVENTS_INSERT.matches(',').count() + 1;
        assert_eq!(columns, types.len());
    }
}

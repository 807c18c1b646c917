//! The write path on Postgres: a transaction's events go in one
//! `INSERT … SELECT * FROM unnest(…)` of column arrays, and each rollup table's rows
//! in one more. The statements' text does not depend on the batch size, so each is
//! prepared once per connection, and Postgres evaluates one expression per column
//! instead of one per value, which is where multi-row `VALUES` spends its time.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};
use switchyard_core::ids::EventId;
use switchyard_core::usage::UsageEvent;
use switchyard_db::DbError;

use super::labels::{self, Admitted, Candidates};
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

/// One column of a statement's rows: an array of its values.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

impl Column {
    /// An empty array for values like `like`, with room for `n`.
    fn for_value(like: &Value, n: usize) -> Self {
        match like {
            Value::Text(_) => Self::Text(Vec::with_capacity(n)),
            Value::Int(_) => Self::Int(Vec::with_capacity(n)),
        }
    }

    fn sql_type(&self) -> &'static str {
        match self {
            Self::Text(_) => "text",
            Self::Int(_) => "int8",
        }
    }

    /// Append `value`; `false` when it is of another type than the column.
    fn push(&mut self, value: Value) -> bool {
        match (self, value) {
            (Self::Text(values), Value::Text(v)) => values.push(v),
            (Self::Int(values), Value::Int(v)) => values.push(v),
            _ => return false,
        }
        true
    }

    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Self::Text(values) => q.bind(values),
            Self::Int(values) => q.bind(values),
        }
    }
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
                if !column.push(spec.value(e)?) {
                    return Err(mistyped(spec.name));
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
            q = column.bind(q);
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

fn mistyped(column: &str) -> StoreError {
    StoreError::Range(format!("column {column} has a value of another type"))
}

/// Add `deltas` to `table` in one statement; the rows are distinct, which an upsert
/// of several rows requires.
async fn upsert(
    tx: &mut sqlx::PgConnection,
    table: &RollupTable,
    deltas: BTreeMap<RollupKey, RollupDelta>,
) -> Result<(), StoreError> {
    let Some(first) = deltas.keys().next() else {
        return Ok(());
    };
    let n = deltas.len();
    let text = || Column::Text(Vec::with_capacity(n));
    // In the order of `RollupTable::insert`: day, main account, `of`…, model, numbers.
    let mut columns: Vec<Column> = [text(), text()]
        .into_iter()
        .chain(first.of.iter().map(|v| Column::for_value(v, n)))
        .chain([text()])
        .chain((0..number_columns(table)).map(|_| Column::Int(Vec::with_capacity(n))))
        .collect();
    for (key, d) in &deltas {
        let values = [
            Value::Text(Some(key.day.clone())),
            Value::Text(Some(key.main_account.to_string())),
        ]
        .into_iter()
        .chain(key.of.iter().cloned())
        .chain([Value::Text(Some(key.model.clone()))])
        .chain(rollup_numbers(d)?.into_iter().map(|n| Value::Int(Some(n))));
        for (column, value) in columns.iter_mut().zip(values) {
            if !column.push(value) {
                return Err(mistyped(table.name));
            }
        }
    }
    let types: Vec<&str> = columns.iter().map(Column::sql_type).collect();
    // Built from placeholders only; every value is bound.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(unnest_sql(
        &table.insert(),
        &types,
        &table.tail(),
    )));
    for column in columns {
        q = column.bind(q);
    }
    q.execute(&mut *tx).await?;
    Ok(())
}

/// Lock each group's count row (in the order given), creating it at 0, and read it.
/// The lock is held until the transaction ends, so admission for one account, day
/// and kind is decided by one transaction at a time, across every replica.
const LOCK_LABEL_DAYS: &str = "INSERT INTO usage_label_days (account_id, day, kind, admitted) \
     SELECT a, d, k, 0 FROM unnest($1::text[], $2::text[], $3::text[]) AS c(a, d, k) \
     ON CONFLICT (account_id, day, kind) DO UPDATE SET admitted = usage_label_days.admitted \
     RETURNING account_id, day, kind, admitted";

/// Which candidate values their day admitted before (they have an unfolded row).
const KNOWN_LABELS: &str = "SELECT DISTINCT l.account_id, l.day, l.kind, l.label \
     FROM usage_daily_labels l \
     JOIN unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS c(a, d, k, v) \
     ON l.account_id = c.a AND l.day = c.d AND l.kind = c.k AND l.label = c.v \
     WHERE l.folded = 0";

const SAVE_LABEL_DAYS: &str = "UPDATE usage_label_days AS t SET admitted = c.n \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[]) AS c(a, d, k, n) \
     WHERE t.account_id = c.a AND t.day = c.d AND t.kind = c.k";

/// A group as the text columns of `usage_label_days`.
type GroupText = (String, String, &'static str);

fn group_text(group: &labels::LabelGroup) -> GroupText {
    (
        group.account.to_string(),
        group.day.clone(),
        group.kind.as_str(),
    )
}

/// Decide which label values of the batch keep rows of their own (see `labels`):
/// three statements whatever the number of groups.
async fn admit_labels(
    tx: &mut sqlx::PgConnection,
    candidates: &Candidates<'_>,
    cap: u32,
) -> Result<Admitted, StoreError> {
    let mut admitted = Admitted::default();
    if candidates.is_empty() {
        return Ok(admitted);
    }
    let groups: Vec<GroupText> = candidates.keys().map(group_text).collect();
    let column = |pick: fn(&GroupText) -> String| groups.iter().map(pick).collect::<Vec<_>>();
    let rows = sqlx::query(LOCK_LABEL_DAYS)
        .bind(column(|g| g.0.clone()))
        .bind(column(|g| g.1.clone()))
        .bind(column(|g| g.2.to_owned()))
        .fetch_all(&mut *tx)
        .await?;
    let mut counts: HashMap<(String, String, String), u64> = HashMap::new();
    for row in rows {
        let n: i64 = row.try_get(3)?;
        counts.insert(
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?),
            u64::try_from(n).unwrap_or(0),
        );
    }
    let mut asked: [Vec<String>; 4] = Default::default();
    for (group, values) in candidates {
        let (account, day, kind) = group_text(group);
        for value in values {
            asked[0].push(account.clone());
            asked[1].push(day.clone());
            asked[2].push(kind.to_owned());
            asked[3].push((*value).to_owned());
        }
    }
    let [a, d, k, v] = asked;
    let rows = sqlx::query(KNOWN_LABELS)
        .bind(a)
        .bind(d)
        .bind(k)
        .bind(v)
        .fetch_all(&mut *tx)
        .await?;
    let mut known: HashMap<(String, String, String), HashSet<String>> = HashMap::new();
    for row in rows {
        known
            .entry((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
            .or_default()
            .insert(row.try_get(3)?);
    }
    let mut saved: [Vec<String>; 3] = Default::default();
    let mut saved_counts: Vec<i64> = Vec::new();
    for (group, values) in candidates {
        let (account, day, kind) = group_text(group);
        let key = (account, day, kind.to_owned());
        let before = counts.get(&key).copied().unwrap_or(0);
        let held: HashSet<&str> = known
            .get(&key)
            .map(|held| held.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let after = admitted.decide(group, values, &held, cap, before);
        if after != before {
            let (account, day, kind) = key;
            saved[0].push(account);
            saved[1].push(day);
            saved[2].push(kind);
            saved_counts.push(super::int(after)?);
        }
    }
    if !saved_counts.is_empty() {
        let [a, d, k] = saved;
        sqlx::query(SAVE_LABEL_DAYS)
            .bind(a)
            .bind(d)
            .bind(k)
            .bind(saved_counts)
            .execute(&mut *tx)
            .await?;
    }
    Ok(admitted)
}

/// [`super::UsageStore::insert_batches`] on Postgres. An error drops the transaction,
/// which rolls it back.
pub(super) async fn insert(
    pool: &PgPool,
    batches: &[&[UsageEvent]],
    events: &[&UsageEvent],
    label_cap: u32,
) -> Result<Vec<Stored>, StoreError> {
    let mut tx = pool.begin().await?;
    let new_ids = EventColumns::of(events)?.insert(&mut tx).await?;
    let (stored, new) = landed(batches, new_ids);
    let admitted = admit_labels(&mut tx, &labels::candidates(&new), label_cap).await?;
    for (table, deltas) in ROLLUP_TABLES
        .into_iter()
        .zip(rollup_deltas(new.iter().copied(), &admitted))
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
        assert!(sql.ends_with("$30::text[]) ON CONFLICT (id) DO NOTHING RETURNING id"));
        // As many columns as arrays.
        let columns = EVENTS_INSERT.matches(',').count() + 1;
        assert_eq!(columns, types.len());
    }
}

//! The write path on SQLite: one connection on a thread of its own, which runs each
//! transaction whole. Through `sqlx`, every statement was a round trip to the
//! driver's thread and back, about ten per batch; here a batch is one hand-over each
//! way, and each row is a cached prepared statement run in process.

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, OptionalExtension, Statement, Transaction, TransactionBehavior};
use switchyard_core::usage::UsageEvent;
use tokio::sync::oneshot;

use super::labels::{self, Admitted, Candidates};
use super::{
    EVENT_PARAMS, EVENTS_INSERT, EVENTS_TAIL_SILENT, ROLLUP_TABLES, RollupDelta, RollupKey,
    RollupTable, StoreError, Stored, Value, event_row, landed, number_columns, one_row_sql,
    rollup_deltas, rollup_numbers, storable,
};

/// A transaction for the writing thread, and where its outcome goes.
struct Job {
    batches: Vec<Vec<UsageEvent>>,
    label_cap: u32,
    done: oneshot::Sender<Result<Vec<Stored>, StoreError>>,
}

/// The handle of the writing thread; the thread ends when the last handle is dropped.
#[derive(Clone, Debug)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Open the database file (already created and migrated through the pool) and
    /// start the thread that writes to it.
    pub(super) fn start(file: &Path) -> Result<Self, StoreError> {
        let mut conn = open(file)?;
        let sql = Statements::new();
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("usage-sqlite".into())
            .spawn(move || {
                for job in queue {
                    let _ = job
                        .done
                        .send(write(&mut conn, &sql, &job.batches, job.label_cap));
                }
            })
            .map_err(|e| StoreError::Writer(e.to_string()))?;
        Ok(Self { jobs })
    }

    /// Store batches in one transaction (see `UsageStore::insert_batches`).
    pub(super) async fn insert(
        &self,
        batches: &[&[UsageEvent]],
        label_cap: u32,
    ) -> Result<Vec<Stored>, StoreError> {
        let stopped = || StoreError::Writer("the SQLite writer stopped".into());
        let (done, outcome) = oneshot::channel();
        let job = Job {
            batches: batches.iter().map(|b| b.to_vec()).collect(),
            label_cap,
            done,
        };
        self.jobs.send(job).map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

/// The writer's statements, built once; the connection's statement cache prepares
/// each once.
struct Statements {
    event: String,
    /// One per table of `ROLLUP_TABLES`, in its order.
    rollups: [String; 4],
}

impl Statements {
    fn new() -> Self {
        Self {
            event: one_row_sql(&EVENTS_INSERT, EVENT_PARAMS, EVENTS_TAIL_SILENT),
            rollups: ROLLUP_TABLES.map(|t| one_row_sql(&t.insert(), t.params(), &t.tail())),
        }
    }
}

/// A connection with the settings of every other SQLite connection of Switchyard.
fn open(file: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(file)?;
    for (name, value) in switchyard_db::SQLITE_PRAGMAS {
        conn.pragma_update(None, name, value)?;
    }
    Ok(conn)
}

/// One transaction: each event inserted unless its id is held (so the statement's
/// change count says which are new), then the rollups of the new ones. The write lock
/// is taken at `BEGIN IMMEDIATE`; a failure rolls everything back when the
/// transaction is dropped.
fn write(
    conn: &mut Connection,
    sql: &Statements,
    batches: &[Vec<UsageEvent>],
    label_cap: u32,
) -> Result<Vec<Stored>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut new_ids = HashSet::new();
    {
        let mut insert = tx.prepare_cached(&sql.event)?;
        for e in storable(batches) {
            if insert_event(&mut insert, e)? == 1 {
                new_ids.insert(e.id);
            }
            give_way();
        }
    }
    let (stored, new) = landed(batches, new_ids);
    let admitted = admit_labels(&tx, &labels::candidates(&new), label_cap)?;
    let deltas = rollup_deltas(new.into_iter(), &admitted);
    for ((table, statement), deltas) in ROLLUP_TABLES.into_iter().zip(&sql.rollups).zip(deltas) {
        let mut upsert = tx.prepare_cached(statement)?;
        for (key, d) in &deltas {
            upsert_rollup(&mut upsert, key, d, table)?;
            give_way();
        }
    }
    tx.commit()?;
    Ok(stored)
}

/// Decide which label values of the batch keep rows of their own (see `labels`).
/// The transaction holds SQLite's write lock, so no other writer decides meanwhile.
fn admit_labels(
    tx: &Transaction<'_>,
    candidates: &Candidates<'_>,
    cap: u32,
) -> Result<Admitted, StoreError> {
    let mut admitted = Admitted::default();
    if candidates.is_empty() {
        return Ok(admitted);
    }
    let mut count = tx.prepare_cached(
        "SELECT admitted FROM usage_label_days WHERE account_id = ?1 AND day = ?2 AND kind = ?3",
    )?;
    let mut known = tx.prepare_cached(
        "SELECT 1 FROM usage_daily_labels WHERE account_id = ?1 AND day = ?2 AND kind = ?3 \
         AND label = ?4 AND folded = 0 LIMIT 1",
    )?;
    let mut save = tx.prepare_cached(
        "INSERT INTO usage_label_days (account_id, day, kind, admitted) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (account_id, day, kind) DO UPDATE SET admitted = excluded.admitted",
    )?;
    for (group, values) in candidates {
        let (account, day, kind) = (group.account.to_string(), &group.day, group.kind.as_str());
        let before: i64 = count
            .query_row((&account, day, kind), |row| row.get(0))
            .optional()?
            .unwrap_or(0);
        let before = u64::try_from(before).unwrap_or(0);
        let mut held = HashSet::new();
        for value in values {
            if known.exists((&account, day, kind, value))? {
                held.insert(*value);
            }
        }
        let after = admitted.decide(group, values, &held, cap, before);
        if after != before {
            save.execute((&account, day, kind, super::int(after)?))?;
        }
        give_way();
    }
    Ok(admitted)
}

/// Let the threads waiting for this core go first. A transaction of a hundred events
/// is about a millisecond of CPU, and the collector often shares its cores with data
/// planes (the embedded binary, a small node): in one piece, it held up the proxied
/// calls that arrived meanwhile, and set their p99. Yielding gives up a turn, not the
/// thread's fair share, so under load the writer still keeps up; with nothing else
/// runnable it costs one system call.
fn give_way() {
    std::thread::yield_now();
}

/// Insert one event; how many rows went in (0 when its id is held).
fn insert_event(insert: &mut Statement<'_>, e: &UsageEvent) -> Result<usize, StoreError> {
    Ok(insert.execute(rusqlite::params_from_iter(event_row(e)?))?)
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Self::Text(text) => text.to_sql(),
            Self::Int(n) => n.to_sql(),
        }
    }
}

fn upsert_rollup(
    upsert: &mut Statement<'_>,
    key: &RollupKey,
    d: &RollupDelta,
    table: &RollupTable,
) -> Result<(), StoreError> {
    let main_account = key.main_account.to_string();
    let numbers = rollup_numbers(d)?;
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![&key.day, &main_account];
    values.extend(key.of.iter().map(|v| v as &dyn rusqlite::ToSql));
    values.push(&key.model);
    values.extend(
        numbers[..number_columns(table)]
            .iter()
            .map(|n| n as &dyn rusqlite::ToSql),
    );
    upsert.execute(values.as_slice())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writing connection and the pool on the same file report the same settings.
    #[tokio::test]
    async fn the_writer_has_the_settings_of_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
        let store = crate::store::UsageStore::open(&url).await.unwrap();
        let conn = open(&switchyard_db::sqlite_file(&url).unwrap()).unwrap();
        // As SQLite reports them: WAL, 10 s, on, NORMAL.
        let expected = ["wal", "10000", "1", "1"];
        for ((name, _), expected) in switchyard_db::SQLITE_PRAGMAS.into_iter().zip(expected) {
            let sql = format!("SELECT CAST((SELECT * FROM pragma_{name}) AS TEXT)");
            let pooled: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(&store.db.pool)
                .await
                .unwrap();
            let own: String = conn.query_row(&sql, [], |row| row.get(0)).unwrap();
            assert_eq!((name, pooled.as_str()), (name, expected));
            assert_eq!((name, own.as_str()), (name, expected));
        }
    }

    /// An in-memory database lives in the pool's connections; the writing connection
    /// would write where nothing reads.
    #[tokio::test]
    async fn an_in_memory_database_is_refused() {
        for url in ["sqlite::memory:", "sqlite://usage.db?mode=memory"] {
            let err = crate::store::UsageStore::open(url).await.unwrap_err();
            assert!(err.to_string().contains("in-memory SQLite"), "{url}: {err}");
        }
    }
}

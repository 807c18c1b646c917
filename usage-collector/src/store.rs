//! Usage storage: raw events stored once per id, daily rollups updated in the same
//! transaction. Reads (`reads`) and retention run over `sqlx::Any` for Postgres and
//! SQLite; each backend has its own write path (`postgres`, `sqlite`).

use switchyard_core::ids::{AccountId, EventId};
use switchyard_core::usage::{DEFAULT_LABEL_CAP, FOLDED_LABEL, LabelKind, UsageEvent};
use switchyard_db::{Backend, Db, DbError};

mod labels;
mod postgres;
mod quarantine;
mod reads;
mod sqlite;

use labels::Admitted;

pub use quarantine::{QuarantineRow, Quarantined, printable};
pub use reads::{EventFilter, MAX_LISTED_ACCOUNTS, MAX_ROLLUP_ROWS, RollupFilter};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Open(#[from] DbError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Writer(String),
    #[error("a number does not fit the database: {0}")]
    Range(String),
    /// A rollup read would answer more rows than [`MAX_ROLLUP_ROWS`].
    #[error(
        "the answer would hold more than {MAX_ROLLUP_ROWS} rows; ask for fewer days, months instead of days, or one account's subtree"
    )]
    TooManyRows,
}

impl StoreError {
    /// Whether the store refused the data itself, so the same write would fail
    /// again (a value the column cannot hold, a number out of range), rather than
    /// failing for now (connection lost, database away, the writer stopped).
    pub fn is_permanent(&self) -> bool {
        match self {
            // SQLSTATE class 22: data exception (NUL in text, bad encoding, a
            // value out of range); class 23: integrity constraint violation.
            Self::Sql(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::ConstraintViolation
                    | rusqlite::ErrorCode::TooBig
                    | rusqlite::ErrorCode::TypeMismatch
            ),
            Self::Sqlite(
                rusqlite::Error::ToSqlConversionFailure(_)
                | rusqlite::Error::InvalidParameterCount(..),
            ) => true,
            Self::Range(_) => true,
            _ => false,
        }
    }
}

/// How a batch landed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub new: u32,
    pub duplicates: u32,
    /// Events the store refused, set aside in the quarantine.
    pub quarantined: u32,
}

pub use switchyard_core::time::Granularity;

pub use switchyard_core::usage::RollupBy;

#[derive(Clone, Debug)]
pub struct UsageStore {
    /// Reads, retention and migrations, in SQL both backends speak.
    db: Db,
    writes: Writes,
    /// Distinct values of a label kind an account's day keeps in the rollups.
    label_cap: u32,
}

/// Where usage is written: a pool typed to Postgres, which binds column arrays
/// (`sqlx::Any` cannot), or the thread that holds SQLite's writing connection.
#[derive(Clone, Debug)]
enum Writes {
    Postgres(sqlx::PgPool),
    Sqlite(sqlite::Writer),
}

/// One column of `usage_events` and how its value is read off an event: the one
/// place that maps the event to its row. Both write paths (Postgres' column arrays,
/// SQLite's one-row statement) and the read take their column lists from here.
pub(crate) struct EventColumn {
    pub(crate) name: &'static str,
    read: Read,
}

/// How a column's value is read off an event, by the column's kind.
enum Read {
    Text(fn(&UsageEvent) -> Option<String>),
    Int(fn(&UsageEvent) -> Option<i64>),
    /// An unsigned count, refused when it does not fit a BIGINT.
    Count(fn(&UsageEvent) -> u64),
}

/// A column's value in an event's row (or in the key of a rollup row).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

impl EventColumn {
    const fn text(name: &'static str, read: fn(&UsageEvent) -> Option<String>) -> Self {
        Self {
            name,
            read: Read::Text(read),
        }
    }

    const fn int(name: &'static str, read: fn(&UsageEvent) -> Option<i64>) -> Self {
        Self {
            name,
            read: Read::Int(read),
        }
    }

    const fn count(name: &'static str, read: fn(&UsageEvent) -> u64) -> Self {
        Self {
            name,
            read: Read::Count(read),
        }
    }

    /// The column's Postgres type.
    pub(crate) fn sql_type(&self) -> &'static str {
        match self.read {
            Read::Text(_) => "text",
            Read::Int(_) | Read::Count(_) => "int8",
        }
    }

    pub(crate) fn value(&self, e: &UsageEvent) -> Result<Value, StoreError> {
        Ok(match self.read {
            Read::Text(read) => Value::Text(read(e)),
            Read::Int(read) => Value::Int(read(e)),
            Read::Count(read) => Value::Int(Some(int(read(e))?)),
        })
    }
}

/// The columns of `usage_events`, in the order of [`EVENTS_INSERT`].
pub(crate) const EVENT_COLUMNS: [EventColumn; 30] = [
    EventColumn::text("id", |e| Some(e.id.to_string())),
    EventColumn::int("at_ms", |e| Some(e.at_unix_ms)),
    EventColumn::text("day", |e| {
        Some(switchyard_core::time::utc_day(e.at_unix_ms))
    }),
    EventColumn::text("account_id", |e| {
        Some(e.account().map(|a| a.to_string()).unwrap_or_default())
    }),
    EventColumn::text("main_account_id", |e| {
        Some(e.main_account().map(|a| a.to_string()).unwrap_or_default())
    }),
    EventColumn::text("account_chain", |e| {
        Some(
            e.account_chain
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        )
    }),
    EventColumn::text("issued_key_id", |e| Some(e.issued_key.to_string())),
    EventColumn::text("provider_key_id", |e| e.provider_key.map(|p| p.to_string())),
    EventColumn::text("model_requested", |e| Some(e.model_requested.clone())),
    EventColumn::text("model_served", |e| Some(e.model_served.clone())),
    EventColumn::int("level", |e| Some(i64::from(e.level))),
    EventColumn::int("status", |e| Some(i64::from(e.status))),
    EventColumn::int("latency_ms", |e| Some(i64::from(e.latency_ms))),
    EventColumn::int("ttfb_ms", |e| e.ttfb_ms.map(i64::from)),
    EventColumn::count("input_tokens", |e| e.tokens.input),
    EventColumn::count("output_tokens", |e| e.tokens.output),
    EventColumn::count("cached_tokens", |e| e.tokens.cached),
    EventColumn::text("usage_source", |e| Some(e.source.as_str().to_owned())),
    EventColumn::int("cost_nanos", |e| Some(e.cost_nanos)),
    EventColumn::text("path", |e| Some(e.path.clone())),
    EventColumn::text("client_addr", |e| Some(e.client_addr.clone())),
    EventColumn::int("streamed", |e| Some(i64::from(e.streamed))),
    EventColumn::int("billed_nanos", |e| Some(e.billed_nanos)),
    EventColumn::count("price_version", |e| e.price_version),
    EventColumn::count("cache_write_tokens", |e| e.tokens.cache_write),
    EventColumn::text("session", |e| e.session.clone()),
    EventColumn::text("end_user", |e| e.end_user.clone()),
    EventColumn::text("tag", |e| e.tag.clone()),
    EventColumn::text("client_protocol", |e| {
        e.client_protocol.as_deref().map(str::to_owned)
    }),
    EventColumn::text("upstream_protocol", |e| {
        e.upstream_protocol.as_deref().map(str::to_owned)
    }),
];

pub(crate) const EVENT_PARAMS: usize = EVENT_COLUMNS.len();

/// The column names, comma-separated.
fn column_names() -> String {
    EVENT_COLUMNS
        .iter()
        .map(|c| c.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// An event's row: one value per column of [`EVENT_COLUMNS`].
pub(crate) fn event_row(e: &UsageEvent) -> Result<Vec<Value>, StoreError> {
    EVENT_COLUMNS.iter().map(|c| c.value(e)).collect()
}

/// A rollup table: its name, the columns naming whose totals a row holds (between
/// the day and main account and the model, which with them name a row), the
/// conflict target of its upsert, and whether it holds a billed amount.
struct RollupTable {
    name: &'static str,
    of: &'static [&'static str],
    conflict: &'static str,
    billed: bool,
}

/// The numbers a rollup row adds, in the order of [`rollup_numbers`]; the last,
/// the billed amount, only in tables that bill.
const NUMBER_COLUMNS: [&str; 8] = [
    "requests",
    "errors",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "cost_nanos",
    "billed_nanos",
];

impl RollupTable {
    /// Columns after those that name a row.
    fn numbers(&self) -> &'static [&'static str] {
        let n = if self.billed { 8 } else { 7 };
        &NUMBER_COLUMNS[..n]
    }

    fn params(&self) -> usize {
        3 + self.of.len() + self.numbers().len()
    }

    /// `INSERT INTO table (columns)`.
    fn insert(&self) -> String {
        format!(
            "INSERT INTO {} (day, main_account_id, {}, model, {})",
            self.name,
            self.of.join(", "),
            self.numbers().join(", ")
        )
    }

    /// The conflict clause: each number added to the row's.
    fn tail(&self) -> String {
        let sums: Vec<String> = self
            .numbers()
            .iter()
            .map(|c| format!("{c} = {}.{c} + excluded.{c}", self.name))
            .collect();
        format!(
            " ON CONFLICT ({}) DO UPDATE SET {}",
            self.conflict,
            sums.join(", ")
        )
    }
}

const DAILY: RollupTable = RollupTable {
    name: "usage_daily",
    of: &["account_id"],
    conflict: "day, account_id, model",
    billed: true,
};

/// Per provider key: no parent bills a key, so no billed amount.
const DAILY_KEYS: RollupTable = RollupTable {
    name: "usage_daily_keys",
    of: &["provider_key_id"],
    conflict: "main_account_id, day, provider_key_id, model",
    billed: false,
};

/// Per endpoint (route path) across the tree, billed amount included.
const DAILY_ENDPOINTS: RollupTable = RollupTable {
    name: "usage_daily_endpoints",
    of: &["endpoint"],
    conflict: "main_account_id, day, endpoint, model",
    billed: true,
};

/// Per calling account, label kind and value (`''` for none, `other` folded past
/// the cap), billed amount included.
const DAILY_LABELS: RollupTable = RollupTable {
    name: "usage_daily_labels",
    of: &["account_id", "kind", "label", "folded"],
    conflict: "account_id, day, kind, label, folded, model",
    billed: true,
};

/// Every rollup table, in the order [`rollup_deltas`] returns their rows.
const ROLLUP_TABLES: [&RollupTable; 4] = [&DAILY, &DAILY_KEYS, &DAILY_ENDPOINTS, &DAILY_LABELS];

/// `insert VALUES (?, …)` with `params` placeholders, then `tail`: one row.
fn one_row_sql(insert: &str, params: usize, tail: &str) -> String {
    let placeholders = vec!["?"; params].join(", ");
    format!("{insert} VALUES ({placeholders}){tail}")
}

static EVENTS_INSERT: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("INSERT INTO usage_events ({})", column_names()));
/// A replayed event is skipped; the ids returned are the events that were new.
const EVENTS_TAIL: &str = " ON CONFLICT (id) DO NOTHING RETURNING id";
/// [`EVENTS_TAIL`] returning nothing: SQLite's writer inserts one row at a time and
/// reads from the change count whether it was new.
const EVENTS_TAIL_SILENT: &str = " ON CONFLICT (id) DO NOTHING";

/// Where a rollup row lives: `of` holds the values of its table's `of` columns (the
/// calling account in `usage_daily`, the provider key in `usage_daily_keys`, …).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RollupKey {
    day: String,
    main_account: AccountId,
    of: Vec<Value>,
    model: String,
}

fn text(value: impl Into<String>) -> Value {
    Value::Text(Some(value.into()))
}

/// What a batch adds to one rollup row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RollupDelta {
    requests: i64,
    errors: i64,
    input: u64,
    output: u64,
    cached: u64,
    cache_write: u64,
    cost_nanos: i64,
    billed_nanos: i64,
}

impl RollupDelta {
    fn add(&mut self, e: &UsageEvent) {
        self.requests += 1;
        self.errors += i64::from(e.status >= 400);
        self.input = self.input.saturating_add(e.tokens.input);
        self.output = self.output.saturating_add(e.tokens.output);
        self.cached = self.cached.saturating_add(e.tokens.cached);
        self.cache_write = self.cache_write.saturating_add(e.tokens.cache_write);
        self.cost_nanos = self.cost_nanos.saturating_add(e.cost_nanos);
        self.billed_nanos = self.billed_nanos.saturating_add(e.billed_nanos);
    }
}

type Deltas = std::collections::BTreeMap<RollupKey, RollupDelta>;

/// The rollup changes of some new events, one per row touched, so a batch costs one
/// upsert per (day, account, model), per (day, provider key, model), per (day,
/// endpoint, model) and per (day, account, label, model) instead of one per event.
/// Returns the rows of each of [`ROLLUP_TABLES`]: per account, per provider key, per
/// endpoint, per label. A label value `admitted` does not hold folds into
/// [`FOLDED_LABEL`].
fn rollup_deltas<'a>(
    events: impl Iterator<Item = &'a UsageEvent>,
    admitted: &Admitted,
) -> [Deltas; 4] {
    let [mut accounts, mut keys, mut endpoints, mut labels]: [Deltas; 4] = Default::default();
    for e in events {
        let (Some(account), Some(main_account)) = (e.account(), e.main_account()) else {
            continue;
        };
        let day = Granularity::Day.bucket_of_ms(e.at_unix_ms);
        let key = |of: Vec<Value>| RollupKey {
            day: day.clone(),
            main_account,
            of,
            model: e.model_served.clone(),
        };
        if let Some(provider) = e.provider_key {
            keys.entry(key(vec![text(provider.to_string())]))
                .or_default()
                .add(e);
        }
        endpoints
            .entry(key(vec![text(e.path.clone())]))
            .or_default()
            .add(e);
        accounts
            .entry(key(vec![text(account.to_string())]))
            .or_default()
            .add(e);
        for kind in LabelKind::ALL {
            let (label, folded) = match e.label(kind) {
                None => ("", false),
                Some(value) if admitted.holds(account, &day, kind, value) => (value, false),
                Some(_) => (FOLDED_LABEL, true),
            };
            let of = vec![
                text(account.to_string()),
                text(kind.as_str()),
                text(label),
                Value::Int(Some(i64::from(folded))),
            ];
            labels.entry(key(of)).or_default().add(e);
        }
    }
    [accounts, keys, endpoints, labels]
}

/// What a rollup row adds, in the order of the table's columns after the four that
/// name it: requests, errors, input, output, cached, cache writes, cost, and the
/// billed amount (only `usage_daily` has the last).
fn rollup_numbers(d: &RollupDelta) -> Result<[i64; 8], StoreError> {
    Ok([
        d.requests,
        d.errors,
        int(d.input)?,
        int(d.output)?,
        int(d.cached)?,
        int(d.cache_write)?,
        d.cost_nanos,
        d.billed_nanos,
    ])
}

/// Columns a rollup table has after the four that name a row.
fn number_columns(table: &RollupTable) -> usize {
    table.numbers().len()
}

/// The events of `batches` that name an account, in order. An empty chain is refused
/// at the edge and never reaches the store; one that did could not be stored.
fn storable<B: AsRef<[UsageEvent]>>(batches: &[B]) -> impl Iterator<Item = &UsageEvent> {
    batches
        .iter()
        .flat_map(AsRef::as_ref)
        .filter(|e| e.account().is_some())
}

/// How each batch landed, given the ids the insert found new, and the new events in
/// batch order. An id twice in one transaction is new once, where it first appears.
fn landed<B: AsRef<[UsageEvent]>>(
    batches: &[B],
    mut new_ids: std::collections::HashSet<EventId>,
) -> (Vec<Stored>, Vec<&UsageEvent>) {
    let mut stored = Vec::with_capacity(batches.len());
    let mut new = Vec::with_capacity(new_ids.len());
    for batch in batches {
        let mut landed = Stored::default();
        for e in storable(std::slice::from_ref(batch)) {
            if new_ids.remove(&e.id) {
                landed.new += 1;
                new.push(e);
            } else {
                landed.duplicates += 1;
            }
        }
        stored.push(landed);
    }
    (stored, new)
}

fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Range(v.to_string()))
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl UsageStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let migrations = switchyard_db::crate_migrations!();
        // SQLite's file first: a URL its writer cannot open fails before any migration.
        let sqlite_file = match Backend::of_url(url)? {
            Backend::Sqlite => Some(switchyard_db::sqlite_file(url)?),
            Backend::Postgres => None,
        };
        let db = switchyard_db::open(url, &migrations, 8).await?;
        let writes = match sqlite_file {
            Some(file) => Writes::Sqlite(sqlite::Writer::start(&file)?),
            None => Writes::Postgres(postgres::connect(url).await?),
        };
        Ok(Self {
            db,
            writes,
            label_cap: DEFAULT_LABEL_CAP,
        })
    }

    /// The same store keeping at most `cap` distinct values of each label kind per
    /// account and day in the rollups (see `labels`); the rest fold into `other`.
    #[must_use]
    pub fn with_label_cap(mut self, cap: u32) -> Self {
        self.label_cap = cap;
        self
    }

    /// Whether the database answers, within a second (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(switchyard_db::ping(&self.db.pool).await?)
    }

    /// Store a batch in one transaction. Events already held are skipped, and only new
    /// ones touch the rollups, so a replayed batch changes nothing.
    pub async fn insert(&self, events: &[UsageEvent]) -> Result<Stored, StoreError> {
        let stored = self.insert_batches(&[events]).await?;
        Ok(stored.first().copied().unwrap_or_default())
    }

    /// Store several batches in one transaction (see [`Self::insert`]), and say how
    /// each landed. An id in two of them is new in the first only.
    pub async fn insert_batches(
        &self,
        batches: &[&[UsageEvent]],
    ) -> Result<Vec<Stored>, StoreError> {
        match &self.writes {
            Writes::Postgres(pool) => {
                let events: Vec<&UsageEvent> = storable(batches).collect();
                postgres::insert(pool, batches, &events, self.label_cap).await
            }
            Writes::Sqlite(writer) => writer.insert(batches, self.label_cap).await,
        }
    }

    /// Delete the oldest `limit` raw events older than `cutoff_ms` (a few more when
    /// several share the last one's millisecond); rollups stay. Returns how many
    /// went: callers repeat until fewer than `limit`, so no single statement holds
    /// the table for long. Both parts walk the index on time, never the table: a
    /// look that finds nothing old costs one index probe.
    pub async fn forget_events_before(
        &self,
        cutoff_ms: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM usage_events WHERE at_ms < $1 AND at_ms <= COALESCE(\
             (SELECT at_ms FROM usage_events WHERE at_ms < $2 ORDER BY at_ms LIMIT 1 OFFSET $3), $4)",
        )
        .bind(cutoff_ms)
        .bind(cutoff_ms)
        .bind(i64::from(limit.max(1) - 1))
        .bind(cutoff_ms)
        .execute(&self.db.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::usage::{TokenUsage, UsageSource};

    #[test]
    fn one_row_statements_have_a_placeholder_per_value() {
        let sql = one_row_sql(&EVENTS_INSERT, EVENT_PARAMS, EVENTS_TAIL_SILENT);
        assert_eq!(sql.matches('?').count(), EVENT_PARAMS);
        assert!(sql.contains("tag, client_protocol, upstream_protocol) VALUES (?, ?,"));
        assert!(sql.ends_with(", ?, ?) ON CONFLICT (id) DO NOTHING"));
        assert!(
            DAILY
                .tail()
                .ends_with("billed_nanos = usage_daily.billed_nanos + excluded.billed_nanos")
        );
        assert!(!DAILY_KEYS.insert().contains("billed"));
        assert_eq!(
            DAILY_ENDPOINTS.insert(),
            "INSERT INTO usage_daily_endpoints (day, main_account_id, endpoint, model, requests, \
             errors, input_tokens, output_tokens, cached_tokens, cache_write_tokens, cost_nanos, \
             billed_nanos)"
        );
        let sql = one_row_sql(
            &DAILY_KEYS.insert(),
            DAILY_KEYS.params(),
            &DAILY_KEYS.tail(),
        );
        assert_eq!(sql.matches('?').count(), 11);
        assert!(sql.contains(") VALUES (?"));
        assert_eq!(DAILY_LABELS.params(), 15);
        assert!(
            DAILY_LABELS.insert().contains(
                "(day, main_account_id, account_id, kind, label, folded, model, requests,"
            )
        );
    }

    #[test]
    fn deltas_add_up_per_row() {
        let main = AccountId::new();
        let child = AccountId::new();
        let key = switchyard_core::ids::ProviderKeyId::new();
        let event = |chain: Vec<AccountId>, status: u16, at: i64| UsageEvent {
            id: switchyard_core::ids::EventId::new(),
            at_unix_ms: at,
            account_chain: chain,
            issued_key: switchyard_core::ids::IssuedKeyId::new(),
            provider_key: (status != 503).then_some(key),
            model_requested: "m".into(),
            model_served: "m".into(),
            level: 1,
            status,
            latency_ms: 1,
            ttfb_ms: None,
            tokens: TokenUsage {
                input: 3,
                output: 2,
                cached: 1,
                cache_write: 1,
            },
            source: UsageSource::Reported,
            cost_nanos: 5,
            billed_nanos: 6,
            price_version: 3,
            path: "/v1/chat/completions".into(),
            client_addr: String::new(),
            streamed: false,
            session: None,
            end_user: None,
            tag: None,
            client_protocol: None,
            upstream_protocol: None,
        };
        let day = 1_795_219_200_000;
        let events = [
            event(vec![main], 200, day),
            event(vec![main], 500, day + 1),
            event(vec![child, main], 200, day),
            event(vec![main], 200, day + 86_400_000),
            event(vec![], 200, day),
            // Reached no provider key: counted for the account only.
            event(vec![child, main], 503, day),
        ];
        let [accounts, keys, endpoints, labels] =
            rollup_deltas(events.iter(), &Admitted::default());
        assert_eq!(accounts.len(), 3);
        let (row, first) = accounts
            .iter()
            .find(|(k, _)| k.of == [text(main.to_string())])
            .unwrap();
        assert_eq!(row.day, "2026-11-21");
        assert_eq!((first.requests, first.errors, first.input), (2, 1, 6));
        assert_eq!((first.cached, first.cache_write), (2, 2));
        assert_eq!((first.cost_nanos, first.billed_nanos), (10, 12));
        // One key, two days; the whole tree's calls through it on the first.
        assert_eq!(keys.len(), 2);
        let (row, by_key) = keys.iter().next().unwrap();
        assert_eq!(
            (row.of.as_slice(), row.main_account),
            ([text(key.to_string())].as_slice(), main)
        );
        assert_eq!((by_key.requests, by_key.errors, by_key.input), (3, 1, 9));
        // One endpoint, two days, the whole tree; calls that reached no key too.
        assert_eq!(endpoints.len(), 2);
        let (row, by_endpoint) = endpoints.iter().next().unwrap();
        assert_eq!(row.of, [text("/v1/chat/completions")]);
        assert_eq!((by_endpoint.requests, by_endpoint.errors), (4, 2));
        // Without labels: every call under '' once per kind, per account and day.
        assert_eq!(labels.len(), 3 * 3);
        let none: i64 = labels
            .iter()
            .filter(|(k, _)| k.of[1] == text("user"))
            .map(|(k, d)| {
                assert_eq!(k.of[2..], [text(""), Value::Int(Some(0))]);
                d.requests
            })
            .sum();
        assert_eq!(none, 5);
    }
}

//! Reading stored usage back: raw events a page at a time (only the conditions a
//! filter sets, so an index serves each read) and rollups for a tree, bounded.

use std::borrow::Cow;
use std::collections::BTreeMap;

use sqlx::Row;
use switchyard_core::ids::AccountId;
use switchyard_core::time::UtcDay;
use switchyard_core::usage::{RollupRow, TokenUsage, UsageEvent, UsageSource};

use super::{Granularity, RollupBy, StoreError, UsageStore, column_names, uint};

/// The most rows one rollup read answers (about 4 MB as JSON, within a gRPC
/// message): a bigger one is refused, never read whole.
pub const MAX_ROLLUP_ROWS: usize = 20_000;

/// The most listed accounts a rollup read names in its statement (each is a bound
/// parameter; SQLite takes 32,766); a longer list is kept in memory instead.
const MAX_ROLLUP_ACCOUNTS: usize = 30_000;

/// The most listed accounts one statement of a read per child maps (about 80 bytes
/// of its text each); a longer list is read in parts whose sums are added up.
const MAX_MAPPED_ACCOUNTS: usize = 10_000;

/// What to read: a main account's tree (or all of them), some accounts in it (or
/// provider keys of it), a range of days.
#[derive(Clone, Debug)]
pub struct RollupFilter {
    pub main_account: Option<AccountId>,
    /// Only these accounts (or provider keys, when `by` says so); empty: all.
    pub accounts: Vec<AccountId>,
    /// With `by` [`RollupBy::Child`]: the account each of `accounts` is summed under
    /// (the direct child whose subtree holds it), at the same index.
    pub children: Vec<AccountId>,
    pub by: RollupBy,
    pub from_day: UtcDay,
    pub to_day: UtcDay,
    pub granularity: Granularity,
    /// Only rows of this served model.
    pub model: Option<String>,
}

/// The most accounts one read of raw events lists.
pub const MAX_LISTED_ACCOUNTS: usize = 1000;

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
    /// Only events of this client session.
    pub session: Option<String>,
    /// Only events of this end user.
    pub end_user: Option<String>,
    /// Only events of this tag.
    pub tag: Option<String>,
    /// `(at_ms, id)` of the last event of the previous page.
    pub before: Option<(i64, String)>,
    pub limit: u32,
    /// Only events of these accounts (a subtree the caller listed, so the index on
    /// the account serves the read); empty: any.
    pub accounts: Vec<AccountId>,
}

/// A value bound to a placeholder of [`select_events`].
enum Param {
    Text(String),
    Int(i64),
}

/// The conditions of a read and their values, placeholders numbered in order (as
/// SQLite requires).
#[derive(Default)]
struct Conditions {
    sql: Vec<String>,
    params: Vec<Param>,
}

impl Conditions {
    /// The next placeholder, bound to `value`.
    fn param(&mut self, value: Param) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }
}

/// Raw events of a filter, every column of [`EVENT_COLUMNS`], read back by name, and
/// the values to bind. Only the filters set become conditions, so each backend plans
/// with the index that serves them (a `$1 = '' OR …` form hides every index behind
/// the parameter): the main account's events by time, the listed accounts' by
/// account and time. The cursor is `at_ms <= cursor` (a bound the index walks from)
/// and only then the tie on the id, so a page far back starts where the cursor is
/// instead of stepping over every newer event.
fn select_events(f: &EventFilter) -> (String, Vec<Param>) {
    let mut c = Conditions::default();
    let range = format!(
        "at_ms >= {} AND at_ms < {}",
        c.param(Param::Int(f.from_ms)),
        c.param(Param::Int(f.to_ms))
    );
    c.sql.push(range);
    if let Some(main) = f.main_account {
        let main = c.param(Param::Text(main.to_string()));
        // With accounts listed, their index is the narrower: the main account stays
        // a check, never the index walked (`|| ''` keeps it off it).
        c.sql.push(if f.accounts.is_empty() {
            format!("main_account_id = {main}")
        } else {
            format!("(main_account_id || '') = {main}")
        });
    }
    if let Some(within) = f.within {
        let within = c.param(Param::Text(within.to_string()));
        c.sql.push(format!(
            "(',' || account_chain || ',') LIKE ('%,' || {within} || ',%')"
        ));
    }
    if !f.accounts.is_empty() {
        let listed: Vec<String> = f
            .accounts
            .iter()
            .map(|a| c.param(Param::Text(a.to_string())))
            .collect();
        c.sql.push(format!("account_id IN ({})", listed.join(", ")));
    }
    if let Some(model) = &f.model {
        let model = c.param(Param::Text(model.clone()));
        c.sql.push(format!("model_served = {model}"));
    }
    if let Some(status) = f.status {
        let status = c.param(Param::Int(i64::from(status)));
        c.sql.push(format!("status = {status}"));
    }
    if let Some((ms, id)) = &f.before {
        let cursor = format!(
            "at_ms <= {} AND (at_ms < {} OR id < {})",
            c.param(Param::Int(*ms)),
            c.param(Param::Int(*ms)),
            c.param(Param::Text(id.clone()))
        );
        c.sql.push(cursor);
    }
    if let Some(session) = &f.session {
        let session = c.param(Param::Text(session.clone()));
        c.sql.push(format!("session = {session}"));
    }
    if let Some(end_user) = &f.end_user {
        let end_user = c.param(Param::Text(end_user.clone()));
        c.sql.push(format!("end_user = {end_user}"));
    }
    if let Some(tag) = &f.tag {
        let tag = c.param(Param::Text(tag.clone()));
        c.sql.push(format!("tag = {tag}"));
    }
    let limit = c.param(Param::Int(i64::from(f.limit)));
    let sql = format!(
        "SELECT {} FROM usage_events WHERE {} ORDER BY at_ms DESC, id DESC LIMIT {limit}",
        column_names(),
        c.sql.join(" AND ")
    );
    (sql, c.params)
}

/// Daily rows of a main account (`$1`, or every one when empty) between two days.
const SELECT_DAILY: &str = "SELECT day, account_id, model, requests, errors, input_tokens, output_tokens, cached_tokens, \
     cost_nanos, billed_nanos, cache_write_tokens FROM usage_daily \
     WHERE ($1 = '' OR main_account_id = $2) AND day >= $3 AND day <= $4";

/// The same per endpoint.
const SELECT_DAILY_ENDPOINTS: &str = "SELECT day, endpoint, model, requests, errors, input_tokens, output_tokens, \
     cached_tokens, cost_nanos, billed_nanos, cache_write_tokens FROM usage_daily_endpoints \
     WHERE ($1 = '' OR main_account_id = $2) AND day >= $3 AND day <= $4";

/// The same per label value of one kind (`$5`), with the calling account (to keep a
/// subtree's rows) and whether the row gathers values past the cap.
const SELECT_DAILY_LABELS: &str = "SELECT day, label, model, requests, errors, input_tokens, output_tokens, \
     cached_tokens, cost_nanos, billed_nanos, cache_write_tokens, account_id, folded FROM usage_daily_labels \
     WHERE ($1 = '' OR main_account_id = $2) AND day >= $3 AND day <= $4 AND kind = $5";

/// The same per provider key; a key has no parent to bill, so `billed_nanos` is 0.
const SELECT_DAILY_KEYS: &str = "SELECT day, provider_key_id, model, requests, errors, input_tokens, output_tokens, \
     cached_tokens, cost_nanos, 0, cache_write_tokens FROM usage_daily_keys \
     WHERE ($1 = '' OR main_account_id = $2) AND day >= $3 AND day <= $4";

fn parse_text<T: std::str::FromStr>(text: &str, what: &str) -> Result<T, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Range(format!("stored event has a bad {what}")))
}

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<UsageEvent, StoreError> {
    let bad = |what: &str| StoreError::Range(format!("stored event has a bad {what}"));
    let chain: String = r.try_get("account_chain")?;
    let provider: Option<String> = r.try_get("provider_key_id")?;
    let source: String = r.try_get("usage_source")?;
    let narrow = |v: i64, what: &str| u32::try_from(v).map_err(|_| bad(what));
    Ok(UsageEvent {
        id: parse_text(&r.try_get::<String, _>("id")?, "id")?,
        at_unix_ms: r.try_get("at_ms")?,
        account_chain: chain
            .split(',')
            .map(|a| parse_text(a, "account chain"))
            .collect::<Result<_, _>>()?,
        issued_key: parse_text(&r.try_get::<String, _>("issued_key_id")?, "issued key")?,
        provider_key: provider
            .map(|p| parse_text(&p, "provider key"))
            .transpose()?,
        model_requested: r.try_get("model_requested")?,
        model_served: r.try_get("model_served")?,
        level: narrow(r.try_get("level")?, "level")?,
        status: u16::try_from(r.try_get::<i64, _>("status")?).map_err(|_| bad("status"))?,
        latency_ms: narrow(r.try_get("latency_ms")?, "latency")?,
        ttfb_ms: r
            .try_get::<Option<i64>, _>("ttfb_ms")?
            .map(|v| narrow(v, "ttfb"))
            .transpose()?,
        tokens: TokenUsage {
            input: uint(r.try_get("input_tokens")?),
            output: uint(r.try_get("output_tokens")?),
            cached: uint(r.try_get("cached_tokens")?),
            cache_write: uint(r.try_get("cache_write_tokens")?),
        },
        source: UsageSource::parse(&source).ok_or_else(|| bad("usage source"))?,
        cost_nanos: r.try_get("cost_nanos")?,
        path: r.try_get("path")?,
        client_addr: r.try_get("client_addr")?,
        streamed: r.try_get::<i64, _>("streamed")? != 0,
        billed_nanos: r.try_get("billed_nanos")?,
        price_version: uint(r.try_get("price_version")?),
        session: r.try_get("session")?,
        end_user: r.try_get("end_user")?,
        tag: r.try_get("tag")?,
        client_protocol: r
            .try_get::<Option<String>, _>("client_protocol")?
            .map(Cow::Owned),
        upstream_protocol: r
            .try_get::<Option<String>, _>("upstream_protocol")?
            .map(Cow::Owned),
    })
}

impl UsageStore {
    /// Raw events, newest first.
    pub async fn events(&self, f: &EventFilter) -> Result<Vec<UsageEvent>, StoreError> {
        let (sql, params) = select_events(f);
        // The statement is built from fixed text; every value is a parameter.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for p in params {
            query = match p {
                Param::Text(v) => query.bind(v),
                Param::Int(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Rollups for a tree, summed by month when asked, ordered by period, account (or
    /// provider key, endpoint, label), model. Rows per label sum the accounts asked
    /// for (every one of the tree when none are named).
    pub async fn rollups(&self, filter: &RollupFilter) -> Result<Vec<RollupRow>, StoreError> {
        if filter.by == RollupBy::Child {
            return self.rollups_per_child(filter).await;
        }
        let main = filter
            .main_account
            .map(|m| m.to_string())
            .unwrap_or_default();
        let sql = match filter.by {
            RollupBy::Account => SELECT_DAILY,
            RollupBy::ProviderKey => SELECT_DAILY_KEYS,
            RollupBy::Endpoint => SELECT_DAILY_ENDPOINTS,
            RollupBy::User | RollupBy::Session | RollupBy::Tag => SELECT_DAILY_LABELS,
            RollupBy::Child => SELECT_DAILY,
        };
        // The listed accounts (a subtree) are a condition the statement holds, so
        // only their rows are read; the read stops one row past the bound.
        let listed = filter.by != RollupBy::ProviderKey
            && filter.by != RollupBy::Endpoint
            && !filter.accounts.is_empty()
            && filter.accounts.len() <= MAX_ROLLUP_ACCOUNTS;
        let mut first = if filter.by.label().is_some() { 6 } else { 5 };
        let mut statement = sql.to_owned();
        if filter.model.is_some() {
            statement.push_str(&format!(" AND model = ${first}"));
            first += 1;
        }
        if listed {
            let placeholders: Vec<String> = (0..filter.accounts.len())
                .map(|i| format!("${}", first + i))
                .collect();
            statement.push_str(&format!(" AND account_id IN ({})", placeholders.join(", ")));
        }
        statement.push_str(&format!(" LIMIT {}", MAX_ROLLUP_ROWS + 1));
        // Fixed text and numbered placeholders; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.as_str()))
            .bind(main.clone())
            .bind(main)
            .bind(filter.from_day.to_string())
            .bind(filter.to_day.to_string());
        if let Some(kind) = filter.by.label() {
            query = query.bind(kind.as_str());
        }
        if let Some(model) = &filter.model {
            query = query.bind(model.clone());
        }
        if listed {
            for a in &filter.accounts {
                query = query.bind(a.to_string());
            }
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        if rows.len() > MAX_ROLLUP_ROWS {
            return Err(StoreError::TooManyRows);
        }
        let wanted: std::collections::HashSet<String> =
            filter.accounts.iter().map(ToString::to_string).collect();
        let mut out: BTreeMap<RowKey, RollupRow> = BTreeMap::new();
        for r in rows {
            let day: String = r.try_get(0)?;
            let of: String = r.try_get(1)?;
            let (account, folded) = match filter.by.label() {
                Some(_) => (r.try_get::<String, _>(11)?, r.try_get::<i64, _>(12)? != 0),
                None => (of.clone(), false),
            };
            if !wanted.is_empty() && !wanted.contains(&account) {
                continue;
            }
            add_row(&mut out, filter, &r, day, of, folded)?;
        }
        Ok(out.into_values().collect())
    }

    /// Rollups per direct child: the listed accounts' rows summed in the statement
    /// under the child each maps to (sent along as a table of values), so the answer
    /// holds a row per child, period and model however many accounts the subtree
    /// holds; a long list is read in parts, their sums added up. With nothing listed
    /// and no main account, every tree's rows summed per main account.
    async fn rollups_per_child(&self, filter: &RollupFilter) -> Result<Vec<RollupRow>, StoreError> {
        if filter.accounts.len() != filter.children.len() {
            return Err(StoreError::Range(
                "rollups per child map every listed account to one child".into(),
            ));
        }
        if filter.accounts.is_empty() && filter.main_account.is_some() {
            return Err(StoreError::Range(
                "rollups per child of an account list its subtree".into(),
            ));
        }
        let mut out = BTreeMap::new();
        if filter.accounts.is_empty() {
            let rows = self.grouped_rows(filter, &[], &[]).await?;
            for r in &rows {
                add_row(&mut out, filter, r, r.try_get(0)?, r.try_get(1)?, false)?;
            }
        }
        for (accounts, children) in filter
            .accounts
            .chunks(MAX_MAPPED_ACCOUNTS)
            .zip(filter.children.chunks(MAX_MAPPED_ACCOUNTS))
        {
            let rows = self.grouped_rows(filter, accounts, children).await?;
            for r in &rows {
                add_row(&mut out, filter, r, r.try_get(0)?, r.try_get(1)?, false)?;
            }
            if out.len() > MAX_ROLLUP_ROWS {
                return Err(StoreError::TooManyRows);
            }
        }
        if out.len() > MAX_ROLLUP_ROWS {
            return Err(StoreError::TooManyRows);
        }
        Ok(out.into_values().collect())
    }

    /// One statement of [`Self::rollups_per_child`]: the daily rows of `accounts`
    /// summed per period, the child each maps to, and model (per main account when
    /// none are listed), in the columns [`add_row`] reads; one row past the bound.
    async fn grouped_rows(
        &self,
        filter: &RollupFilter,
        accounts: &[AccountId],
        children: &[AccountId],
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        let mut c = Conditions::default();
        let period = match filter.granularity {
            Granularity::Day => "d.day",
            Granularity::Month => "substr(d.day, 1, 7)",
        };
        // The mapping is written out, not bound: an account id's text is a UUID's
        // (hex digits and dashes, from the parsed id), and SQLite looks each named
        // placeholder up in a list, so twenty thousand of them took seconds.
        let mapping: Vec<String> = accounts
            .iter()
            .zip(children)
            .map(|(a, child)| format!("('{a}', '{child}')"))
            .collect();
        // The mapping is walked first (`CROSS JOIN` keeps SQLite's order; Postgres
        // plans it as any join), each account's rows found by its index, rather
        // than the mapping scanned again for every row of the tree.
        let (with, group, from) = if mapping.is_empty() {
            (String::new(), "d.main_account_id", "usage_daily d")
        } else {
            c.sql.push("d.account_id = c.account_id".to_owned());
            (
                format!(
                    "WITH child_of(account_id, child_id) AS (VALUES {}) ",
                    mapping.join(", ")
                ),
                "c.child_id",
                "child_of c CROSS JOIN usage_daily d",
            )
        };
        if let Some(main) = filter.main_account {
            let main = c.param(Param::Text(main.to_string()));
            // With a mapping, each account's index is the narrower: the main account
            // stays a check, never the index walked (`|| ''` keeps it off it).
            c.sql.push(if mapping.is_empty() {
                format!("d.main_account_id = {main}")
            } else {
                format!("(d.main_account_id || '') = {main}")
            });
        }
        let range = format!(
            "d.day >= {} AND d.day <= {}",
            c.param(Param::Text(filter.from_day.to_string())),
            c.param(Param::Text(filter.to_day.to_string()))
        );
        c.sql.push(range);
        if let Some(model) = &filter.model {
            let model = c.param(Param::Text(model.clone()));
            c.sql.push(format!("d.model = {model}"));
        }
        let sum = |column: &str| format!("CAST(SUM(d.{column}) AS BIGINT)");
        let sums: Vec<String> = [
            "requests",
            "errors",
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cost_nanos",
            "billed_nanos",
            "cache_write_tokens",
        ]
        .iter()
        .map(|column| sum(column))
        .collect();
        let statement = format!(
            "{with}SELECT {period}, {group}, d.model, {} FROM {from} WHERE {} \
             GROUP BY {period}, {group}, d.model LIMIT {}",
            sums.join(", "),
            c.sql.join(" AND "),
            MAX_ROLLUP_ROWS + 1
        );
        // Fixed text, account ids and numbered placeholders; every other value is
        // bound. Not kept prepared: each mapping makes a statement of its own.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(statement.as_str())).persistent(false);
        for p in c.params {
            query = match p {
                Param::Text(v) => query.bind(v),
                Param::Int(v) => query.bind(v),
            };
        }
        let rows = query.fetch_all(&self.db.pool).await?;
        if rows.len() > MAX_ROLLUP_ROWS {
            return Err(StoreError::TooManyRows);
        }
        Ok(rows)
    }
}

/// The key rollup rows are summed under: period, whose, folded, model.
type RowKey = (String, String, bool, String);

/// Adds a read row (period or day, the one it is of, model, then the sums in the
/// order of [`SELECT_DAILY`]) to the row of its period, of and model.
fn add_row(
    out: &mut BTreeMap<RowKey, RollupRow>,
    filter: &RollupFilter,
    r: &sqlx::any::AnyRow,
    day: String,
    of: String,
    folded: bool,
) -> Result<(), StoreError> {
    let model: String = r.try_get(2)?;
    let period = filter.granularity.bucket_of_day(day);
    let row = out
        .entry((period.clone(), of.clone(), folded, model.clone()))
        .or_insert_with(|| {
            let mut row = RollupRow {
                period,
                model,
                folded,
                ..RollupRow::default()
            };
            match filter.by {
                RollupBy::Account | RollupBy::Child => row.account_id = of,
                RollupBy::ProviderKey => row.provider_key_id = of,
                RollupBy::Endpoint => row.endpoint = of,
                RollupBy::User | RollupBy::Session | RollupBy::Tag => {
                    row.label = Some(of);
                }
            }
            row
        });
    row.requests += uint(r.try_get(3)?);
    row.errors += uint(r.try_get(4)?);
    row.input_tokens += uint(r.try_get(5)?);
    row.output_tokens += uint(r.try_get(6)?);
    row.cached_tokens += uint(r.try_get(7)?);
    row.cost_nanos += r.try_get::<i64, _>(8)?;
    row.billed_nanos += r.try_get::<i64, _>(9)?;
    row.cache_write_tokens += uint(r.try_get(10)?);
    Ok(())
}

//! Opening a database for a Switchyard store.
//!
//! Stores run one set of SQL over `sqlx::Any`, so Postgres (production) and SQLite
//! (embedded) share every query; only the migrations differ per backend. The SQL
//! sticks to what both speak: `$n` placeholders in ascending order, TEXT ids,
//! BIGINT/INTEGER numbers, `ON CONFLICT`, `RETURNING`, `WITH RECURSIVE`.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, Executor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL must start with postgres:// or sqlite: (got {0:?})")]
    UnsupportedUrl(String),
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error(
        "an in-memory SQLite database is not shared with connections outside its pool; give a file"
    )]
    InMemory,
    #[error("database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// A pool and the backend behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
}

/// The migrations of one store, per backend.
pub struct Migrations {
    pub postgres: &'static Migrator,
    pub sqlite: &'static Migrator,
}

/// The [`Migrations`] of the crate it is used in: its `migrations/postgres` and
/// `migrations/sqlite` folders, embedded at build time.
#[macro_export]
macro_rules! crate_migrations {
    () => {{
        static POSTGRES: ::sqlx::migrate::Migrator = ::sqlx::migrate!("./migrations/postgres");
        static SQLITE: ::sqlx::migrate::Migrator = ::sqlx::migrate!("./migrations/sqlite");
        $crate::Migrations {
            postgres: &POSTGRES,
            sqlite: &SQLITE,
        }
    }};
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(DbError::UnsupportedUrl(redact(url)))
        }
    }
}

/// Every SQLite connection's settings, on the pool and on connections opened beside
/// it. WAL lets readers run beside the writer; the busy timeout makes concurrent
/// writers wait for each other instead of failing with "database is locked".
pub const SQLITE_PRAGMAS: [(&str, &str); 4] = [
    ("journal_mode", "WAL"),
    ("busy_timeout", "10000"),
    ("foreign_keys", "ON"),
    ("synchronous", "NORMAL"),
];

/// The file behind a SQLite URL, for a connection opened outside `sqlx` beside the
/// [`Db`] that [`open`] makes (and migrates) on the same URL. An in-memory database is
/// refused: it lives in the pool's connections only, out of reach of such a one.
pub fn sqlite_file(url: &str) -> Result<PathBuf, DbError> {
    let options = SqliteConnectOptions::from_str(url).map_err(DbError::Connect)?;
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let in_memory = url.contains(":memory:") || query.split('&').any(|kv| kv == "mode=memory");
    if in_memory {
        return Err(DbError::InMemory);
    }
    Ok(options.get_filename().to_path_buf())
}

/// Longest wait for a pooled Postgres connection (a free one, or a new one while the
/// server refuses). It bounds how long a call waits while the database is down before
/// it fails as [`is_unreachable`] (the services answer 503 with `Retry-After`), so an
/// outage answers in seconds rather than holding every caller.
pub const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// SQLite is a local file that cannot be away: a wait for a connection is contention
/// between the pool's own users, given longer.
pub const SQLITE_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`open`] keeps trying a database that cannot be reached yet.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// Longest a readiness check waits for the database: under a second, so a probe
/// learns of an outage in time.
pub const PING_TIMEOUT: Duration = Duration::from_millis(700);

/// The acquire timeout of a backend's pool.
pub fn acquire_timeout(backend: Backend) -> Duration {
    match backend {
        Backend::Postgres => POSTGRES_ACQUIRE_TIMEOUT,
        Backend::Sqlite => SQLITE_ACQUIRE_TIMEOUT,
    }
}

/// Whether an error means the database cannot be reached right now (no connection
/// within the acquire timeout, a connection lost, the server shutting down or
/// refusing connections), as opposed to a failure of the statement itself. Callers
/// answer these with 503 and a retry hint.
pub fn is_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // SQLSTATE classes 08 (connection exception) and 57P (operator intervention:
        // shutdown, cannot connect now), and 53300 (too many connections).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }),
        _ => false,
    }
}

/// `SELECT 1` within [`PING_TIMEOUT`]: a readiness probe's check. A timeout is
/// reported as [`sqlx::Error::PoolTimedOut`], which [`is_unreachable`] recognises.
pub async fn ping(pool: &AnyPool) -> Result<(), sqlx::Error> {
    match tokio::time::timeout(PING_TIMEOUT, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(done) => done.map(drop),
        Err(_) => Err(sqlx::Error::PoolTimedOut),
    }
}

/// Connect and bring the schema up to date.
pub async fn open(url: &str, migrations: &Migrations, max_connections: u32) -> Result<Db, DbError> {
    install_default_drivers();
    let backend = Backend::of_url(url)?;
    let mut options = AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout(backend));
    if backend == Backend::Sqlite {
        options = options.after_connect(|conn, _meta| {
            Box::pin(async move {
                for (name, value) in SQLITE_PRAGMAS {
                    conn.execute(sqlx::AssertSqlSafe(format!("PRAGMA {name} = {value}")))
                        .await?;
                }
                Ok(())
            })
        });
    }
    // A database still starting is waited for as long as before the acquire timeout
    // was cut to fail calls fast during an outage.
    let deadline = std::time::Instant::now() + STARTUP_WAIT;
    let pool = loop {
        match options.clone().connect(url).await {
            Ok(pool) => break pool,
            Err(e) if is_unreachable(&e) && std::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "database not reachable yet; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(DbError::Connect(e)),
        }
    };
    let migrator = match backend {
        Backend::Postgres => migrations.postgres,
        Backend::Sqlite => migrations.sqlite,
    };
    // A migration newer than this binary is tolerated: during a rolling upgrade (or a
    // rollback) the previous version runs on the schema the next one migrated.
    // Migrations are therefore additive: a column or table is dropped only in a
    // release after the last one that used it.
    let tolerant = Migrator {
        migrations: migrator.migrations.clone(),
        ignore_missing: true,
        locking: migrator.locking,
        no_tx: migrator.no_tx,
        table_name: migrator.table_name.clone(),
        create_schemas: migrator.create_schemas.clone(),
    };
    tolerant.run(&pool).await.map_err(DbError::Migrate)?;
    tracing::info!(backend = ?backend, "database ready");
    Ok(Db { pool, backend })
}

/// A database URL without its password, for error messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://*****@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_url() {
        assert_eq!(
            Backend::of_url("postgres://u@h/db").unwrap(),
            Backend::Postgres
        );
        assert_eq!(
            Backend::of_url("sqlite://x.db?mode=rwc").unwrap(),
            Backend::Sqlite
        );
        assert!(Backend::of_url("mysql://u:p@h/db").is_err());
    }

    #[test]
    fn sqlite_files_behind_urls() {
        assert_eq!(
            sqlite_file("sqlite:///var/lib/sy/usage.db?mode=rwc").unwrap(),
            PathBuf::from("/var/lib/sy/usage.db")
        );
        assert_eq!(
            sqlite_file("sqlite://usage.db").unwrap(),
            PathBuf::from("usage.db")
        );
        for memory in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://x.db?mode=memory",
        ] {
            assert!(
                matches!(sqlite_file(memory), Err(DbError::InMemory)),
                "{memory}"
            );
        }
        assert!(sqlite_file("sqlite://x.db?mode=bogus").is_err());
    }

    #[test]
    fn outages_are_told_from_statement_failures() {
        assert!(is_unreachable(&sqlx::Error::PoolTimedOut));
        assert!(is_unreachable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_unreachable(&sqlx::Error::RowNotFound));
        assert!(!is_unreachable(&sqlx::Error::Protocol("bad".into())));
        assert!(acquire_timeout(Backend::Postgres) <= Duration::from_secs(2));
        assert!(PING_TIMEOUT < Duration::from_secs(1));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://*****@h:5432/db"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
        assert!(!format!("{}", DbError::UnsupportedUrl(redact("mysql://u:pw@h"))).contains("pw"));
    }
}

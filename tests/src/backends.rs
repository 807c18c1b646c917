//! One scenario, every backend: a store scenario is written once and run against a
//! fresh SQLite file and a fresh database on a throwaway PostgreSQL server.

use crate::HarnessError;
use crate::pg::PgServer;

/// A database for one scenario; keeps its server or directory alive while in use.
pub struct TestDb {
    pub url: String,
    _pg: Option<PgServer>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub fn sqlite() -> Result<Self, HarnessError> {
        let dir = tempfile::tempdir()?;
        Ok(Self {
            url: format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display()),
            _pg: None,
            _dir: Some(dir),
        })
    }

    pub fn postgres() -> Result<Self, HarnessError> {
        let pg = PgServer::start()?;
        let url = pg.create_database("scenario")?;
        Ok(Self {
            url,
            _pg: Some(pg),
            _dir: None,
        })
    }
}

/// For each scenario `name`, a `sqlite` and a `postgres` test in a module `name`.
/// Each scenario is an `async fn name(url: &str)`.
#[macro_export]
macro_rules! every_backend {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn sqlite() {
                    let db = $crate::backends::TestDb::sqlite().unwrap();
                    super::$scenario(&db.url).await;
                }

                #[tokio::test]
                async fn postgres() {
                    let db = $crate::backends::TestDb::postgres().unwrap();
                    super::$scenario(&db.url).await;
                }
            }
        )+
    };
}

//! A throwaway PostgreSQL server: `initdb` in a temp dir, started on a free loopback
//! port with fsync off, stopped and removed on drop. When running as root (CI), the
//! server runs as the `postgres` user, since `initdb` refuses root.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::{HarnessError, free_port};

pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl`: `$PG_BIN`, or the newest under
/// `/usr/lib/postgresql/*/bin` (Debian's layout).
fn bin_dir() -> Result<PathBuf, HarnessError> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("initdb").exists());
    found.sort();
    found.pop().ok_or_else(|| {
        HarnessError::Missing(
            "PostgreSQL server binaries not found: install Debian's `postgresql` package \
             (scripts/test.sh does this when run as root) or set PG_BIN to the directory holding initdb"
                .into(),
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl PgServer {
    pub fn start() -> Result<Self, HarnessError> {
        let bin = bin_dir()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("switchyard-pg-")
            .tempdir()?;
        let server = |port| Self {
            dir,
            bin,
            port,
            as_postgres,
        };
        let mut pg = server(0);
        if as_postgres {
            pg.run_plain(
                "chown",
                &[
                    "-R",
                    "postgres:postgres",
                    &pg.dir.path().display().to_string(),
                ],
            )?;
        }
        let data = pg.data_dir();
        pg.run_pg(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        let mut last = None;
        for _ in 0..5 {
            pg.port = free_port()?;
            match pg.start_server() {
                Ok(()) => return Ok(pg),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Missing("postgres did not start".into())))
    }

    /// `pg_ctl start` on this server's port, waiting until it accepts connections.
    fn start_server(&self) -> Result<(), HarnessError> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        let data = self.data_dir();
        self.run_pg(
            "pg_ctl",
            &[
                "-D", &data, "-w", "-t", "30", "-l", &log, "-o", &options, "start",
            ],
        )
        .map(drop)
    }

    /// Stop the server (fast shutdown: open connections are closed), keeping its data,
    /// for outage scenarios; [`Self::start_again`] brings it back.
    pub fn stop(&self) -> Result<(), HarnessError> {
        let data = self.data_dir();
        self.run_pg("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .map(drop)
    }

    /// Start a stopped server again on the same port, with the same data.
    pub fn start_again(&self) -> Result<(), HarnessError> {
        self.start_server()
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run_plain(&self, program: &str, args: &[&str]) -> Result<Output, HarnessError> {
        let out = Command::new(program).args(args).output()?;
        check(program, out)
    }

    fn run_pg(&self, tool: &str, args: &[&str]) -> Result<Output, HarnessError> {
        let path = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        // Run from the temp dir: the postgres user may not be able to read the cwd.
        let out = cmd.args(args).current_dir(self.dir.path()).output()?;
        check(tool, out)
    }

    /// A fresh database; returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, HarnessError> {
        let port = self.port.to_string();
        self.run_pg(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", "postgres", name],
        )?;
        Ok(self.url(name))
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Run one SQL statement with `psql` and return its unaligned output.
    pub fn query(&self, database: &str, sql: &str) -> Result<String, HarnessError> {
        let port = self.port.to_string();
        let out = self.run_pg(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                database,
                "-tA",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

fn check(what: &str, out: Output) -> Result<Output, HarnessError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(HarnessError::Command {
            what: what.to_owned(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run_pg("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

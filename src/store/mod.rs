//! The database: one pool over SQLite or PostgreSQL, with the same SQL on both.
//!
//! Queries are checked at run time (`sqlx::query`), written in the dialect both databases
//! accept (`$1` placeholders, `ON CONFLICT`, `RETURNING`), and every one runs in the test
//! suite against both. Where the dialects differ (row locks), [`Db::kind`] says which to use.
//! Instants are integer epoch milliseconds UTC; see [`millis`].

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::config::{redact_url, DatabaseUrl};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

impl DbKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A pool and the dialect behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub kind: DbKind,
}

impl Db {
    /// Opens the database (creating a SQLite file and its folder when missing) and applies the
    /// embedded migrations.
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (kind, conn_url, max) = match url {
            DatabaseUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("creating the data directory {}", dir.display()))?;
                }
                // One writer at a time is SQLite's model; a few readers serve the API meanwhile.
                (DbKind::Sqlite, format!("sqlite://{}?mode=rwc", path.display()), 8)
            }
            DatabaseUrl::Postgres(u) => (DbKind::Postgres, u.clone(), 16),
        };
        let options = AnyConnectOptions::from_str(&conn_url)
            .with_context(|| format!("parsing database URL {}", redact_url(&conn_url)))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        // WAL lets the API read while ingest writes; synchronous=FULL makes a
                        // commit that a logger was told about survive a power cut.
                        conn.execute(
                            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
                             PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON; \
                             PRAGMA cache_size=-65536; PRAGMA temp_store=MEMORY;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the database at {}", redact_url(&conn_url)))?;
        let db = Db { pool, kind };
        db.migrate().await?;
        crate::inventory::catalog::seed(&db).await?;
        Ok(db)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.kind {
            DbKind::Sqlite => &SQLITE_MIGRATIONS,
            DbKind::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.context("applying database migrations")
    }

    /// `FOR UPDATE` where the database has row locks; SQLite serialises writers instead.
    pub fn for_update(&self) -> &'static str {
        match self.kind {
            DbKind::Sqlite => "",
            DbKind::Postgres => " FOR UPDATE",
        }
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// An instant as stored: epoch milliseconds UTC.
pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// An instant as shown: RFC 3339 UTC, with milliseconds only when there are some.
pub fn rfc3339(ms: i64) -> String {
    from_millis(ms).to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub fn now_millis() -> i64 {
    millis(Utc::now())
}

/// Whether an error is a unique-constraint violation (same row inserted twice).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

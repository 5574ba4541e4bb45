//! The database: one pool over SQLite or PostgreSQL, with the same SQL on both.
//!
//! Queries are checked at run time (`sqlx::query`), written in the dialect both databases
//! accept (`$1` placeholders, `ON CONFLICT`, `RETURNING`), and every one runs in the test
//! suite against both. Where the dialects differ (row locks, multi-row parameters, error
//! codes), [`Dialect`] is the one way to ask which database this is — [`Db::dialect`] for a
//! pool, [`Dialect::of`] for a connection — and its methods hold the differences, each with
//! the reason. Instants are integer epoch milliseconds UTC; see [`millis`].

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, Executor};

use crate::config::{redact_url, DatabaseUrl};

pub mod listing;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// Which database, and so which SQL where the two differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The dialect of a connection taken from a pool (or inside a transaction).
    pub fn of(conn: &AnyConnection) -> Self {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Self::Sqlite
        } else {
            Self::Postgres
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }

    /// ` FOR UPDATE` where rows can be locked. SQLite has no row locks: it serialises writers
    /// (one write transaction at a time), which gives the same guarantee to read-then-write.
    pub fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }

    /// ` FOR UPDATE [OF alias] SKIP LOCKED` on PostgreSQL, so several instances taking work
    /// from one table take different rows; nothing on SQLite (one writer at a time).
    pub fn skip_locked(self, of: Option<&str>) -> String {
        match (self, of) {
            (Self::Sqlite, _) => String::new(),
            (Self::Postgres, Some(alias)) => format!(" FOR UPDATE OF {alias} SKIP LOCKED"),
            (Self::Postgres, None) => " FOR UPDATE SKIP LOCKED".into(),
        }
    }

    /// The `n`th (1-based) parameter of a statement with many rows of parameters. SQLite
    /// resolves a numbered parameter by a linear scan of the statement's names, which is
    /// quadratic over a multi-row insert; plain `?` (bound in order) is not. PostgreSQL takes
    /// only numbered ones.
    pub fn param(self, n: usize) -> String {
        match self {
            Self::Sqlite => "?".into(),
            Self::Postgres => format!("${n}"),
        }
    }

    /// Whether a database error may pass by itself (connection, lock, resources) rather than
    /// being about the data: only these are worth retrying.
    pub fn is_transient(self, e: &sqlx::Error) -> bool {
        match e {
            sqlx::Error::Database(d) => {
                let code = d.code().unwrap_or_default();
                match self {
                    // SQLSTATE classes 08 connection, 40 rollback (serialisation, deadlock),
                    // 53 resources, 57 operator intervention (shutdown).
                    Self::Postgres => ["08", "40", "53", "57"].iter().any(|c| code.starts_with(c)),
                    // BUSY (5) and LOCKED (6) with their extended codes.
                    Self::Sqlite => code.parse::<i32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6)),
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => true,
            _ => false,
        }
    }

    /// [`Self::is_transient`] for an error from anywhere: whether its chain holds a passing
    /// database failure, bare or inside [`crate::error::Error::Database`].
    pub fn is_transient_error(self, e: &anyhow::Error) -> bool {
        e.chain().any(|c| {
            c.downcast_ref::<sqlx::Error>().is_some_and(|d| self.is_transient(d))
                || matches!(c.downcast_ref::<crate::error::Error>(), Some(crate::error::Error::Database(d)) if self.is_transient(d))
        })
    }
}

/// A pool and the dialect behind it.
#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    dialect: Dialect,
}

impl Db {
    /// Opens the database (creating a SQLite file and its folder when missing) and applies the
    /// embedded migrations.
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (kind, conn_url, max) = match url {
            DatabaseUrl::Sqlite(path) => {
                // A folder made for it is the service's alone; one that was there is left as it is.
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                    crate::files::private_dir(dir)
                        .with_context(|| format!("creating the data directory {}", dir.display()))?;
                }
                crate::files::touch_private(path)
                    .with_context(|| format!("creating the database file {} (mode 0600)", path.display()))?;
                // One writer at a time is SQLite's model; a few readers serve the API meanwhile.
                (Dialect::Sqlite, format!("sqlite://{}?mode=rwc", path.display()), 8)
            }
            DatabaseUrl::Postgres(u) => (Dialect::Postgres, u.clone(), 16),
        };
        let options = AnyConnectOptions::from_str(&conn_url)
            .with_context(|| format!("parsing database URL {}", redact_url(&conn_url)))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == Dialect::Sqlite {
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
        let db = Db { pool, dialect: kind };
        db.migrate().await?;
        Ok(db)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Begins a transaction that will write. On SQLite it takes the write lock at once (with a
    /// write that matches no row), waiting up to the busy timeout for another writer: a
    /// transaction that read first and wrote later would instead fail with "database is
    /// locked" whenever another writer committed in between — a receipt answered 500 because
    /// readings arrived at the same moment. PostgreSQL locks rows as it goes.
    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        if self.dialect == Dialect::Sqlite {
            sqlx::query("UPDATE _sqlx_migrations SET version = version WHERE version < 0")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await.context("applying database migrations")
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// `$1, $2, …, $n`: the parameters of an `IN (…)` list of `n` values.
pub fn placeholders(n: usize) -> String {
    (1..=n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
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

/// One page of a list: at most `limit` items (1 to [`Page::MAX`]) past the cursor `after` (an
/// id; each list says which way it runs). No list returns everything at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub after: Option<i64>,
    pub limit: i64,
}

impl Page {
    pub const MAX: i64 = 1000;
    pub const DEFAULT: i64 = 100;

    /// The first page of [`Page::DEFAULT`] items.
    pub fn first() -> Page {
        Page {
            after: None,
            limit: Page::DEFAULT,
        }
    }

    /// Keeps `limit` of the `limit + 1` items fetched; the cursor of the next page when more
    /// remain.
    pub fn cut<T>(&self, items: Vec<T>, id: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
        cut(self.limit, items, id)
    }
}

/// [`Page::cut`] for a list whose cursor is not an id (loggers go by serial).
pub fn cut<T, C>(limit: i64, mut items: Vec<T>, cursor: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    if items.len() as i64 > limit {
        items.truncate(limit as usize);
        let next = items.last().map(&cursor);
        (items, next)
    } else {
        (items, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn a_lost_connection_deep_in_an_error_is_passing_and_an_unreadable_row_is_not() {
        let lost = anyhow::Error::from(Error::Database(sqlx::Error::PoolTimedOut)).context("judging unit 7");
        assert!(Dialect::Postgres.is_transient_error(&lost));
        let bare = anyhow::Error::from(sqlx::Error::WorkerCrashed).context("a pass");
        assert!(Dialect::Sqlite.is_transient_error(&bare));
        let unreadable = anyhow::Error::from(Error::unreadable("unit_rules", 7, "not JSON")).context("judging unit 7");
        assert!(!Dialect::Postgres.is_transient_error(&unreadable));
        let missing = anyhow::Error::from(Error::Database(sqlx::Error::RowNotFound));
        assert!(!Dialect::Sqlite.is_transient_error(&missing));
    }
}

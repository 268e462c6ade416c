//! The embedded default store: one SQLite file in WAL mode.
//!
//! Writes go through a single connection so this process never fights itself for the write
//! lock (the original lost audit rows to "database is locked"); reads use a small pool.
//! Other processes (the CLI beside a running server) wait on the busy timeout. The SQL and
//! the row mappings are the shared ones in [`super::sql`]; this file says how SQLite binds,
//! reads, locks and batches.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow,
};
use sqlx::{Row, Sqlite, Transaction};

use super::sql::{
    AUDIT_INSERT, AUDIT_LAST_HASH, Cells, Dialect, Lock, On, SqlStore, Table, Value, audit_values,
};
use super::{AuditRecord, BlockingAudit, chain};

/// The SQLite store.
pub type SqliteStore = SqlStore<SqliteBackend>;

/// The SQLite store's connections: one writer, a few readers, and the file for the audit
/// writer's own connection (see [`AuditWriter`]).
pub struct SqliteBackend {
    writer: SqlitePool,
    reader: SqlitePool,
    path: PathBuf,
}

/// Each connection's page cache, in KiB when negative: 512 KiB instead of SQLite's 2 MiB
/// default. The audit log grows with every request, so the five connections' caches filled
/// up to 10 MiB of the server's memory; the store's writes append at the end of the
/// table, and its reads are small or go through the operating system's file cache anyway.
const PAGE_CACHE: &str = "-512";

/// What every connection to the file sets, the sqlx pools' and the audit writer's alike
/// (the journal mode, WAL, is the file's own and set once by the first).
const PRAGMAS: [(&str, &str); 3] = [
    ("synchronous", "NORMAL"),
    ("foreign_keys", "ON"),
    ("cache_size", PAGE_CACHE),
];

/// How long a writer waits for another's lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The read-only connections' page cache, in KiB when negative: their lookups (registry
/// entries, keys, claims) touch a few index pages each, and four of them at 512 KiB held
/// 2 MiB mostly of audit pages a listing once read.
const READER_PAGE_CACHE: &str = "-256";

/// Rows per multi-row INSERT: keeps a batch under SQLite's limit on parameters.
const ROWS_PER_INSERT: usize = 500;

impl SqliteStore {
    /// Opens (creating if needed) and migrates the file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let options = PRAGMAS.iter().fold(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(BUSY_TIMEOUT),
            |options, (key, value)| options.pragma(*key, *value),
        );
        let pool = |max, options| {
            SqlitePoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(10))
                // A file opened in this process does not go away like a socket: pinging it
                // before each use (sqlx's default) only costs a round trip to its thread.
                .test_before_acquire(false)
                .connect_with(options)
        };
        let context = || format!("opening SQLite store {}", path.display());
        // The writer first: it creates the file the read-only pool then opens.
        let writer = pool(1, options.clone()).await.with_context(context)?;
        let reader = pool(
            4,
            options
                .read_only(true)
                .pragma("cache_size", READER_PAGE_CACHE),
        )
        .await
        .with_context(context)?;
        let store = SqlStore {
            db: SqliteBackend {
                writer,
                reader,
                path: path.to_owned(),
            },
        };
        store.migrate().await?;
        Ok(store)
    }
}

type Query = sqlx::query::Query<'static, Sqlite, SqliteArguments>;

fn bind(query: Query, value: &Value<'_>) -> Query {
    match *value {
        Value::Int(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::Time(v) => query.bind(v.as_ref().map(format_time)),
        Value::Flag(v) => query.bind(i64::from(v)),
        Value::Bytes(v) => query.bind(v),
    }
}

fn query(sql: impl sqlx::SqlSafeStr, args: &[Value<'_>]) -> Query {
    args.iter().fold(sqlx::query(sql), bind)
}

#[async_trait]
impl Dialect for SqliteBackend {
    type Row = SqliteRow;
    type Tx = Transaction<'static, Sqlite>;

    const MIGRATIONS_TABLE: &'static str = "CREATE TABLE IF NOT EXISTS pgua_migrations (
         version INTEGER PRIMARY KEY,
         applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)";
    const MIGRATIONS: &'static [(i64, &'static str)] = &[
        (1, include_str!("migrations/sqlite_001_original.sql")),
        (2, include_str!("migrations/sqlite_002_audit_context.sql")),
        (3, include_str!("migrations/sqlite_003_audit_profile.sql")),
        (4, include_str!("migrations/sqlite_004_audit_chain.sql")),
        (5, include_str!("migrations/sqlite_005_api_keys.sql")),
        (6, include_str!("migrations/sqlite_006_audit_retention.sql")),
        (7, include_str!("migrations/sqlite_007_fingerprint_key.sql")),
        (8, include_str!("migrations/sqlite_008_claims.sql")),
        (9, include_str!("migrations/sqlite_009_sessions.sql")),
    ];
    // The append-only trigger lets a DELETE through while the marker row exists, which is
    // only inside a prune's transaction.
    const ALLOW_PRUNING: &'static str = "INSERT INTO pgua_audit_pruning (marker) VALUES (1)";
    const FORBID_PRUNING: &'static str = "DELETE FROM pgua_audit_pruning";

    async fn begin(&self, _lock: Lock) -> Result<Self::Tx, sqlx::Error> {
        // IMMEDIATE takes the database's write lock at once; it covers every lock.
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    async fn commit(tx: Self::Tx) -> Result<(), sqlx::Error> {
        tx.commit().await
    }

    async fn fetch(
        &self,
        on: On<'_, Self::Tx>,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        let q = query(sql, args);
        match on {
            On::Read => q.fetch_all(&self.reader).await,
            On::Write => q.fetch_all(&self.writer).await,
            On::Tx(tx) => q.fetch_all(&mut **tx).await,
        }
    }

    async fn execute(
        &self,
        on: On<'_, Self::Tx>,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<u64, sqlx::Error> {
        let q = query(sql, args);
        let done = match on {
            On::Read => q.execute(&self.reader).await?,
            On::Write => q.execute(&self.writer).await?,
            On::Tx(tx) => q.execute(&mut **tx).await?,
        };
        Ok(done.rows_affected())
    }

    async fn script(tx: &mut Self::Tx, sql: &'static str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop)
    }

    async fn insert_rows(
        tx: &mut Self::Tx,
        table: &Table,
        with_generated: bool,
        rows: &[Vec<Value<'_>>],
    ) -> anyhow::Result<()> {
        let columns = table.columns(with_generated);
        // Multi-row INSERTs of constant text; every value is a bind parameter. Anonymous
        // `?`s here: SQLite looks a named parameter's name up by a linear search, which for
        // thousands of `$n` would make each bind quadratic.
        let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {}",
                table.name,
                columns.join(", "),
                vec![tuple.as_str(); chunk.len()].join(", ")
            );
            let args: Vec<Value<'_>> = chunk.iter().flatten().copied().collect();
            query(sqlx::AssertSqlSafe(sql), &args)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    fn blocking_audit(&self) -> anyhow::Result<Option<Box<dyn BlockingAudit>>> {
        Ok(Some(Box::new(AuditWriter::open(&self.path)?)))
    }
}

/// The audit log's writer: a connection of its own, driven by the audit queue's thread with
/// plain blocking calls. Through sqlx every statement of a batch (`BEGIN IMMEDIATE`, the
/// chain's end, the insert, `COMMIT`) was a round trip to the connection's worker thread,
/// two thread wake-ups each; those wake-ups cost more CPU than the writing. Other writes stay
/// on the sqlx writer: SQLite serialises the two connections with its write lock, each
/// waiting on the busy timeout, so the chain is read and extended under one lock as before.
struct AuditWriter(rusqlite::Connection);

impl AuditWriter {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = rusqlite::Connection::open(path).with_context(|| {
            format!("opening SQLite store {} for the audit log", path.display())
        })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        for (key, value) in PRAGMAS {
            conn.execute_batch(&format!("PRAGMA {key} = {value}"))?;
        }
        Ok(Self(conn))
    }
}

impl BlockingAudit for AuditWriter {
    fn append(&mut self, records: &mut [AuditRecord]) -> anyhow::Result<()> {
        // Every statement prepared once: the profile showed SQLite parsing them on every batch.
        let conn = &self.0;
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let written = (|| {
            use rusqlite::OptionalExtension;
            let last = conn
                .prepare_cached(AUDIT_LAST_HASH)?
                .query_row([], |row| row.get(0))
                .optional()?;
            chain::chain(last, records);
            let mut insert = conn.prepare_cached(AUDIT_INSERT.get())?;
            for record in records.iter() {
                insert.execute(rusqlite::params_from_iter(audit_values(record)))?;
            }
            conn.prepare_cached("COMMIT")?.execute([])
        })();
        if written.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        written?;
        Ok(())
    }
}

/// A value as [`bind`] gives it to sqlx, for the audit writer's connection.
impl rusqlite::ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, Value as Owned};
        Ok(match *self {
            Value::Int(v) => v.map_or(ToSqlOutput::Owned(Owned::Null), ToSqlOutput::from),
            Value::Text(v) => v.map_or(ToSqlOutput::Owned(Owned::Null), ToSqlOutput::from),
            Value::Time(v) => {
                ToSqlOutput::Owned(v.map_or(Owned::Null, |t| Owned::Text(format_time(&t))))
            }
            Value::Flag(v) => ToSqlOutput::from(i64::from(v)),
            Value::Bytes(v) => ToSqlOutput::from(v),
        })
    }
}

impl Cells for SqliteRow {
    fn opt_int(&self, col: &str) -> anyhow::Result<Option<i64>> {
        Ok(self.try_get(col)?)
    }

    fn opt_text(&self, col: &str) -> anyhow::Result<Option<String>> {
        // UTF-8, U+FFFD for what is not: SQLite keeps whatever bytes a hand-written INSERT
        // gave it, and such a row must still be read (and migrated).
        Ok(self
            .try_get::<Option<Vec<u8>>, _>(col)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn opt_time(&self, col: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(self
            .try_get::<Option<String>, _>(col)?
            .map(|s| parse_time(&s)))
    }

    fn flag(&self, col: &str) -> anyhow::Result<bool> {
        Ok(self.try_get::<i64, _>(col)? != 0)
    }

    fn bytes(&self, col: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self.try_get(col)?)
    }

    fn created_at(&self, col: &str) -> anyhow::Result<String> {
        Ok(self.try_get(col)?)
    }
}

/// Reads our RFC 3339 stamps and the original's `CURRENT_TIMESTAMP` ones.
fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, super::sql::CREATED_AT_FORMAT)
                .map(|t| t.and_utc())
        })
        .unwrap_or_default()
}

/// Sortable UTC stamp with microseconds, so `ORDER BY performed_at` is chronological.
fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connection_gets_the_same_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
        let want = ["1", "1", PAGE_CACHE]; // NORMAL is 1, ON is 1
        let writer = &store.db.writer;
        for ((key, _), want) in PRAGMAS.iter().zip(want) {
            let got: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("PRAGMA {key}")))
                .fetch_one(writer)
                .await
                .unwrap();
            assert_eq!(got.to_string(), want, "sqlx writer: {key}");
        }
        let audit = AuditWriter::open(&store.db.path).unwrap();
        for ((key, _), want) in PRAGMAS.iter().zip(want) {
            let got: i64 = audit
                .0
                .query_row(&format!("PRAGMA {key}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(got.to_string(), want, "audit writer: {key}");
        }
    }
}

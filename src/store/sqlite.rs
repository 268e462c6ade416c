//! The embedded default store: one SQLite file in WAL mode.
//!
//! Writes go through a single connection so this process never fights itself for the write
//! lock (the original lost audit rows to "database is locked"); reads use a small pool.
//! Other processes (the CLI beside a running server) wait on the busy timeout.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use super::{
    ApiKey, AuditFilter, AuditRecord, NewEntry, RegistryEntry, Session, Store, StoreError, chain,
    stored_text,
};

/// Ordered migrations; each runs once, in its own transaction.
const MIGRATIONS: &[(i64, &str)] = &[
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

/// Takes a claim that is free, ran out, or is the holder's own (see [`Store::claim`]).
const CLAIM_SQL: &str = "INSERT INTO claims (namespace, key, holder, until_epoch) VALUES (?, ?, ?, ?)
     ON CONFLICT (namespace, key) DO UPDATE SET holder = excluded.holder, until_epoch = excluded.until_epoch
     WHERE claims.until_epoch <= ? OR claims.holder = excluded.holder";

/// The SQLite store.
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the file at `path`.
    pub async fn open(path: impl AsRef<Path>) -> anyhow::Result<Self> {
        let path = path.as_ref();
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening SQLite store {}", path.display()))?;
        let store = Self {
            reader: SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options.read_only(true))
                .await
                .with_context(|| format!("opening SQLite store {}", path.display()))?,
            writer,
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS pgua_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        )
        .execute(&mut *tx)
        .await?;
        let done: Vec<i64> = sqlx::query_scalar("SELECT version FROM pgua_migrations")
            .fetch_all(&mut *tx)
            .await?;
        for (version, sql) in MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("applying store migration {version}"))?;
            sqlx::query("INSERT INTO pgua_migrations (version) VALUES (?)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn registry_query(
        &self,
        sql: &'static str,
        env: &str,
        db_name: &str,
    ) -> anyhow::Result<Option<RegistryEntry>> {
        let row = sqlx::query(sql)
            .bind(stored_text(env))
            .bind(stored_text(db_name))
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| registry_row(&r)).transpose()
    }
}

/// A text column as UTF-8, U+FFFD for what is not: SQLite keeps whatever bytes a
/// hand-written INSERT gave it, and such a row must still be read (and migrated).
fn lossy_text(row: &SqliteRow, col: &str) -> anyhow::Result<Option<String>> {
    Ok(row
        .try_get::<Option<Vec<u8>>, _>(col)?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn registry_row(row: &SqliteRow) -> anyhow::Result<RegistryEntry> {
    let port: i64 = row.try_get("port")?;
    let sslmode: String = row.try_get("sslmode")?;
    let text =
        |col: &str| -> anyhow::Result<String> { Ok(lossy_text(row, col)?.unwrap_or_default()) };
    Ok(RegistryEntry {
        id: row.try_get("id")?,
        env: text("env")?,
        db_name: text("db_name")?,
        hostname: text("hostname")?,
        port: u16::try_from(port).context("registry port out of range")?,
        active: row.try_get::<i64, _>("active")? != 0,
        notes: lossy_text(row, "notes")?,
        created_at: row.try_get("created_at")?,
        sslmode: sslmode.parse().map_err(anyhow::Error::msg)?,
    })
}

fn key_row(row: &SqliteRow) -> anyhow::Result<ApiKey> {
    let time = |col: &str| -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(row
            .try_get::<Option<String>, _>(col)?
            .map(|s| parse_time(&s)))
    };
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        prefix: row.try_get("prefix")?,
        hash: row.try_get("hash")?,
        scopes: row.try_get("scopes")?,
        created_at: time("created_at")?.unwrap_or_default(),
        expires_at: time("expires_at")?,
        revoked_at: time("revoked_at")?,
    })
}

fn audit_row(row: &SqliteRow) -> anyhow::Result<AuditRecord> {
    let at: String = row.try_get("performed_at")?;
    let lossy = |col: &str| lossy_text(row, col);
    let text = |col: &str| -> anyhow::Result<String> { Ok(lossy(col)?.unwrap_or_default()) };
    Ok(AuditRecord {
        id: row.try_get("id")?,
        performed_at: parse_time(&at),
        request_id: text("request_id")?,
        principal: text("principal")?,
        client_addr: text("client_addr")?,
        env: text("env")?,
        db_name: text("db_name")?,
        pg_username: text("pg_username")?,
        operation: text("operation")?,
        profile: text("profile")?,
        prev_hash: text("prev_hash")?,
        hash: text("hash")?,
        status: text("status")?,
        detail: text("detail")?,
        error: lossy("error")?,
        duration_ms: row.try_get("duration_ms")?,
    })
}

/// Reads our RFC 3339 stamps and the original's `CURRENT_TIMESTAMP` ones.
fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map(|t| t.and_utc())
        })
        .unwrap_or_default()
}

/// Sortable UTC stamp with microseconds, so `ORDER BY performed_at` is chronological.
fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn registry_list(&self) -> anyhow::Result<Vec<RegistryEntry>> {
        let rows = sqlx::query(
            "SELECT id, env, db_name, hostname, port, active, notes, created_at, sslmode
             FROM db_registry ORDER BY env, db_name",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(registry_row).collect()
    }

    async fn registry_get(
        &self,
        env: &str,
        db_name: &str,
    ) -> anyhow::Result<Option<RegistryEntry>> {
        self.registry_query(
            "SELECT id, env, db_name, hostname, port, active, notes, created_at, sslmode
             FROM db_registry WHERE env = ? AND db_name = ?",
            env,
            db_name,
        )
        .await
    }

    async fn registry_add(&self, e: &NewEntry) -> Result<RegistryEntry, StoreError> {
        let e = &e.to_stored();
        let result = sqlx::query(
            "INSERT INTO db_registry (env, db_name, hostname, port, active, notes, sslmode)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             RETURNING id, env, db_name, hostname, port, active, notes, created_at, sslmode",
        )
        .bind(&e.env)
        .bind(&e.db_name)
        .bind(&e.hostname)
        .bind(i64::from(e.port))
        .bind(i64::from(e.active))
        .bind(&e.notes)
        .bind(e.sslmode.as_str())
        .fetch_one(&self.writer)
        .await;
        let row = result.map_err(|err| StoreError::on_insert(err, || StoreError::duplicate(e)))?;
        Ok(registry_row(&row)?)
    }

    async fn registry_set_active(
        &self,
        env: &str,
        db_name: &str,
        active: bool,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query("UPDATE db_registry SET active = ? WHERE env = ? AND db_name = ?")
            .bind(i64::from(active))
            .bind(stored_text(env))
            .bind(stored_text(db_name))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn registry_update(&self, e: &NewEntry) -> anyhow::Result<bool> {
        let e = &e.to_stored();
        let done = sqlx::query(
            "UPDATE db_registry SET hostname = ?, port = ?, active = ?, notes = ?, sslmode = ?
             WHERE env = ? AND db_name = ?",
        )
        .bind(&e.hostname)
        .bind(i64::from(e.port))
        .bind(i64::from(e.active))
        .bind(&e.notes)
        .bind(e.sslmode.as_str())
        .bind(&e.env)
        .bind(&e.db_name)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn claim(
        &self,
        namespace: &str,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let done = sqlx::query(CLAIM_SQL)
            .bind(namespace)
            .bind(key)
            .bind(holder)
            .bind(until.timestamp())
            .bind(Utc::now().timestamp())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn session_put(&self, s: &Session) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, principal, scopes, csrf_hash, created_epoch, \
             last_seen_epoch, expires_epoch) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&s.id_hash)
        .bind(stored_text(&s.principal).as_ref())
        .bind(&s.scopes)
        .bind(&s.csrf_hash)
        .bind(s.created)
        .bind(s.last_seen)
        .bind(s.expires)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session_get(
        &self,
        id_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> anyhow::Result<Option<Session>> {
        let row = sqlx::query(
            "UPDATE sessions SET last_seen_epoch = ? \
             WHERE id_hash = ? AND expires_epoch > ? AND last_seen_epoch >= ? \
             RETURNING id_hash, principal, scopes, csrf_hash, created_epoch, last_seen_epoch, \
             expires_epoch",
        )
        .bind(now)
        .bind(id_hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(&self.writer)
        .await?;
        row.map(|r| {
            Ok(Session {
                id_hash: r.try_get(0)?,
                principal: r.try_get(1)?,
                scopes: r.try_get(2)?,
                csrf_hash: r.try_get(3)?,
                created: r.try_get(4)?,
                last_seen: r.try_get(5)?,
                expires: r.try_get(6)?,
            })
        })
        .transpose()
    }

    async fn session_delete(&self, id_hash: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn sessions_prune(&self, now: i64, idle_since: i64) -> anyhow::Result<u64> {
        let done =
            sqlx::query("DELETE FROM sessions WHERE expires_epoch <= ? OR last_seen_epoch < ?")
                .bind(now)
                .bind(idle_since)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }

    async fn claims_prune(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM claims WHERE until_epoch < ?")
            .bind(before.timestamp())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected())
    }

    async fn audit_prune(
        &self,
        before: DateTime<Utc>,
        key: Option<&[u8]>,
    ) -> anyhow::Result<Option<chain::Checkpoint>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let through: Option<i64> =
            sqlx::query_scalar("SELECT max(id) FROM audit_log WHERE performed_at < ?")
                .bind(format_time(&before))
                .fetch_one(&mut *tx)
                .await?;
        let Some(through_id) = through else {
            return Ok(None);
        };
        let last_hash: Option<String> = sqlx::query_scalar(
            "SELECT hash FROM audit_log WHERE id <= ? AND hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .bind(through_id)
        .fetch_optional(&mut *tx)
        .await?;
        let pruned: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE id <= ?")
            .bind(through_id)
            .fetch_one(&mut *tx)
            .await?;
        let mut cp = chain::Checkpoint {
            id: 0,
            created_at: Utc::now(),
            through_id,
            last_hash: last_hash.unwrap_or_default(),
            pruned,
            signature: String::new(),
        };
        cp.created_at = DateTime::from_timestamp_micros(cp.created_at.timestamp_micros())
            .unwrap_or(cp.created_at);
        cp.signature = chain::sign(key, &cp);
        cp.id = sqlx::query_scalar(
            "INSERT INTO audit_checkpoints (created_at, through_id, last_hash, pruned, signature)
             VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(format_time(&cp.created_at))
        .bind(cp.through_id)
        .bind(&cp.last_hash)
        .bind(cp.pruned)
        .bind(&cp.signature)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO pgua_audit_pruning (marker) VALUES (1)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM audit_log WHERE id <= ?")
            .bind(through_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM pgua_audit_pruning")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(cp))
    }

    async fn audit_checkpoint_latest(&self) -> anyhow::Result<Option<chain::Checkpoint>> {
        let row = sqlx::query(
            "SELECT id, created_at, through_id, last_hash, pruned, signature
             FROM audit_checkpoints ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await?;
        row.map(|r| -> anyhow::Result<chain::Checkpoint> {
            Ok(chain::Checkpoint {
                id: r.try_get("id")?,
                created_at: parse_time(&r.try_get::<String, _>("created_at")?),
                through_id: r.try_get("through_id")?,
                last_hash: r.try_get("last_hash")?,
                pruned: r.try_get("pruned")?,
                signature: r.try_get("signature")?,
            })
        })
        .transpose()
    }

    async fn fingerprint_key(&self, new: &[u8]) -> anyhow::Result<Vec<u8>> {
        sqlx::query("INSERT INTO fingerprint_key (id, key) VALUES (1, ?) ON CONFLICT DO NOTHING")
            .bind(new)
            .execute(&self.writer)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT key FROM fingerprint_key WHERE id = 1")
                .fetch_one(&self.writer)
                .await?,
        )
    }

    async fn key_add(&self, k: &ApiKey) -> Result<ApiKey, StoreError> {
        let k = &k.to_stored();
        let result = sqlx::query(
            "INSERT INTO api_keys (name, owner, prefix, hash, scopes, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             RETURNING id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at",
        )
        .bind(&k.name)
        .bind(&k.owner)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(&k.scopes)
        .bind(format_time(&k.created_at))
        .bind(k.expires_at.as_ref().map(format_time))
        .fetch_one(&self.writer)
        .await;
        let duplicate = || StoreError::DuplicateKey(k.name.clone());
        let row = result.map_err(|err| StoreError::on_insert(err, duplicate))?;
        Ok(key_row(&row)?)
    }

    async fn key_list(&self) -> anyhow::Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at
             FROM api_keys ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(key_row).collect()
    }

    async fn key_by_hash(&self, hash: &str) -> anyhow::Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at
             FROM api_keys WHERE hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(key_row).transpose()
    }

    async fn key_revoke(&self, name: &str) -> anyhow::Result<bool> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL")
                .bind(format_time(&Utc::now()))
                .bind(stored_text(name))
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn registry_remove(&self, env: &str, db_name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM db_registry WHERE env = ? AND db_name = ?")
            .bind(stored_text(env))
            .bind(stored_text(db_name))
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn audit_append(&self, records: &[AuditRecord]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // IMMEDIATE takes the write lock first, so no other process can slip a record in
        // between reading the chain's end and appending to it.
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let last: Option<String> = sqlx::query_scalar(
            "SELECT hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let mut records = records.to_vec();
        chain::chain(last, &mut records);
        // Multi-row INSERTs of constant text; every value is a bind parameter. Chunks keep
        // a batch under SQLite's limit on parameters per statement.
        for chunk in records.chunks(500) {
            let mut sql = String::from(
                "INSERT INTO audit_log (env, db_name, pg_username, operation, status, performed_at,
                     request_id, principal, client_addr, detail, error, duration_ms, profile,
                     prev_hash, hash) VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "" } else { ", " });
                sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                query = query
                    .bind(&r.env)
                    .bind(&r.db_name)
                    .bind(&r.pg_username)
                    .bind(&r.operation)
                    .bind(&r.status)
                    .bind(format_time(&r.performed_at))
                    .bind(&r.request_id)
                    .bind(&r.principal)
                    .bind(&r.client_addr)
                    .bind(&r.detail)
                    .bind(&r.error)
                    .bind(r.duration_ms)
                    .bind(&r.profile)
                    .bind(&r.prev_hash)
                    .bind(&r.hash);
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audit_latest(&self, limit: u32) -> anyhow::Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, env, db_name, pg_username, operation, status, performed_at, request_id,
                    principal, client_addr, detail, error, duration_ms, profile, prev_hash, hash
             FROM audit_log ORDER BY performed_at DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_query(&self, f: &AuditFilter) -> anyhow::Result<Vec<AuditRecord>> {
        let f = &f.to_stored();
        let rows = sqlx::query(
            "SELECT id, env, db_name, pg_username, operation, status, performed_at, request_id,
                    principal, client_addr, detail, error, duration_ms, profile, prev_hash, hash
             FROM audit_log
             WHERE id > ?1
               AND (?2 IS NULL OR performed_at >= ?2) AND (?3 IS NULL OR performed_at < ?3)
               AND (?4 IS NULL OR env = ?4) AND (?5 IS NULL OR db_name = ?5)
               AND (?6 IS NULL OR pg_username = ?6)
               AND (?7 IS NULL OR operation = ?7 OR operation LIKE ?7 || ':%')
               AND (?8 IS NULL OR principal = ?8)
             ORDER BY id LIMIT ?9",
        )
        .bind(f.after_id)
        .bind(f.since.as_ref().map(format_time))
        .bind(f.until.as_ref().map(format_time))
        .bind(&f.env)
        .bind(&f.database)
        .bind(&f.username)
        .bind(&f.operation)
        .bind(&f.principal)
        .bind(i64::from(f.limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(audit_row).collect()
    }
}

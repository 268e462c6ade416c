//! The store for several replicas: one PostgreSQL database shared by all of them.
//!
//! Tables and columns are the SQLite store's, with PostgreSQL types; rows come back exactly
//! as the SQLite backend returns them (`active` as a bool, `created_at` as
//! `YYYY-MM-DD HH:MM:SS` UTC). Migrations run under a transaction-level advisory lock, so
//! replicas starting together apply each one exactly once.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgExecutor, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};

use super::{
    ApiKey, AuditFilter, AuditRecord, NewEntry, RegistryEntry, Session, Store, StoreError, chain,
    redact_url, stored_text,
};

/// Ordered migrations; each runs once, all in one transaction under [`MIGRATION_LOCK`].
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/postgres_001_initial.sql")),
    (2, include_str!("migrations/postgres_002_audit_chain.sql")),
    (3, include_str!("migrations/postgres_003_api_keys.sql")),
    (
        4,
        include_str!("migrations/postgres_004_audit_retention.sql"),
    ),
    (
        5,
        include_str!("migrations/postgres_005_fingerprint_key.sql"),
    ),
    (6, include_str!("migrations/postgres_006_claims.sql")),
    (7, include_str!("migrations/postgres_007_sessions.sql")),
];

/// Takes a claim that is free, ran out, or is the holder's own (see [`Store::claim`]).
const CLAIM_SQL: &str = "INSERT INTO claims (namespace, key, holder, until_epoch) VALUES ($1, $2, $3, $4)
     ON CONFLICT (namespace, key) DO UPDATE SET holder = excluded.holder, until_epoch = excluded.until_epoch
     WHERE claims.until_epoch <= $5 OR claims.holder = excluded.holder";

/// Advisory lock key ("pguachai") held while appending to the audit chain.
const CHAIN_LOCK: i64 = 0x7067_7561_6368_6169;

/// Advisory lock key ("pguamigr") held while migrating; advisory locks are per database, so
/// stores in other databases of the same server never wait on each other.
const MIGRATION_LOCK: i64 = 0x7067_7561_6d69_6772;

/// Connections per process: requests mostly hit the registry cache and the audit queue
/// batches writes, so a few suffice even with many replicas sharing one server.
const POOL_SIZE: u32 = 8;

/// How long to wait for a connection, including establishing a new one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's `CURRENT_TIMESTAMP` format, which `created_at` has always had.
const CREATED_AT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database a `postgres://` URL names and migrates it.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let shown = redact_url(url);
        let mut options = PgConnectOptions::from_str(url)
            .with_context(|| format!("parsing PostgreSQL store URL {shown}"))?;
        if options.get_application_name().is_none() {
            // So DBAs can tell the store's sessions apart in pg_stat_activity.
            options = options.application_name("pg-user-api");
        }
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to PostgreSQL store {shown}"))?;
        let store = Self { pool };
        store
            .migrate()
            .await
            .with_context(|| format!("migrating PostgreSQL store {shown}"))?;
        Ok(store)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        // Taken before anything else, so a second replica waits here instead of racing on
        // CREATE TABLE, and then sees every migration the first one committed.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS pgua_migrations (
                 version    bigint      PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now())",
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
            sqlx::query("INSERT INTO pgua_migrations (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Starts a copy into this store (`store migrate`): locks both tables against writers
    /// and refuses unless both are empty. Nothing is visible until [`Import::commit`].
    pub async fn begin_import(&self) -> anyhow::Result<Import> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(
            "LOCK TABLE db_registry, audit_log, api_keys, audit_checkpoints IN EXCLUSIVE MODE",
        )
        .execute(&mut *tx)
        .await?;
        let (registry, audit, keys): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM db_registry), (SELECT count(*) FROM audit_log),
                    (SELECT count(*) FROM api_keys)",
        )
        .fetch_one(&mut *tx)
        .await?;
        if registry > 0 || audit > 0 || keys > 0 {
            bail!(
                "the target store is not empty ({registry} registry entries, {audit} audit \
                 records, {keys} API keys); refusing to copy into it"
            );
        }
        Ok(Import { tx })
    }
}

/// A copy into an empty PostgreSQL store, inside one transaction; ids are kept as given.
pub struct Import {
    tx: Transaction<'static, Postgres>,
}

impl Import {
    /// Inserts registry entries with their ids and `created_at`.
    pub async fn add_registry(&mut self, entries: &[RegistryEntry]) -> anyhow::Result<()> {
        let created_at = entries
            .iter()
            .map(|e| {
                parse_created_at(&e.created_at).with_context(|| {
                    format!(
                        "registry entry #{} has created_at '{}', not YYYY-MM-DD HH:MM:SS",
                        e.id, e.created_at
                    )
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        sqlx::query(
            "INSERT INTO db_registry
                 (id, env, db_name, hostname, port, active, notes, created_at, sslmode)
             OVERRIDING SYSTEM VALUE
             SELECT id, env, db_name, hostname, port, active, notes, created_at, sslmode
             FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::integer[],
                         $6::boolean[], $7::text[], $8::timestamptz[], $9::text[])
                  AS r(id, env, db_name, hostname, port, active, notes, created_at, sslmode)",
        )
        .bind(entries.iter().map(|e| e.id).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.env.as_str()).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| e.db_name.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .iter()
                .map(|e| e.hostname.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            entries
                .iter()
                .map(|e| i32::from(e.port))
                .collect::<Vec<_>>(),
        )
        .bind(entries.iter().map(|e| e.active).collect::<Vec<_>>())
        .bind(
            entries
                .iter()
                .map(|e| e.notes.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(created_at)
        .bind(
            entries
                .iter()
                .map(|e| e.sslmode.as_str())
                .collect::<Vec<_>>(),
        )
        .execute(&mut *self.tx)
        .await
        .context("copying registry entries")?;
        Ok(())
    }

    /// Inserts audit records with their ids.
    pub async fn add_audit(&mut self, records: &[AuditRecord]) -> anyhow::Result<()> {
        let a = AuditArrays::of(records);
        let query = sqlx::query(
            "INSERT INTO audit_log (id, env, db_name, pg_username, operation, status,
                 performed_at, request_id, principal, client_addr, detail, error, duration_ms,
                 profile, prev_hash, hash)
             OVERRIDING SYSTEM VALUE
             SELECT id, env, db_name, pg_username, operation, status, performed_at,
                    request_id, principal, client_addr, detail, error, duration_ms, profile,
                    nullif(prev_hash, ''), nullif(hash, '')
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[],
                         $16::bigint[])
                  AS r(env, db_name, pg_username, operation, status, performed_at,
                       request_id, principal, client_addr, detail, error, duration_ms, profile,
                       prev_hash, hash, id)",
        );
        a.bind(query)
            .bind(records.iter().map(|r| r.id).collect::<Vec<_>>())
            .execute(&mut *self.tx)
            .await
            .context("copying audit records")?;
        Ok(())
    }

    /// Makes `key` the copy's fingerprint key, so fingerprints in copied records still
    /// match new ones.
    pub async fn set_fingerprint_key(&mut self, key: &[u8]) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO fingerprint_key (id, key) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET key = excluded.key",
        )
        .bind(key)
        .execute(&mut *self.tx)
        .await
        .context("copying the fingerprint key")?;
        Ok(())
    }

    /// The registry as this uncommitted copy holds it.
    pub async fn registry_list(&mut self) -> anyhow::Result<Vec<RegistryEntry>> {
        registry_list(&mut *self.tx).await
    }

    /// Audit records of this uncommitted copy with an id above `after_id`, lowest id first.
    pub async fn audit_after(
        &mut self,
        after_id: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<AuditRecord>> {
        let filter = AuditFilter {
            after_id,
            limit,
            ..AuditFilter::default()
        };
        audit_query(&mut *self.tx, &filter).await
    }

    /// Moves both identities past the copied ids and commits.
    /// Inserts API keys (hashes only, as stored) with their ids and dates.
    pub async fn add_keys(&mut self, keys: &[ApiKey]) -> anyhow::Result<()> {
        for k in keys {
            sqlx::query(
                "INSERT INTO api_keys (id, name, owner, prefix, hash, scopes, created_at,
                     expires_at, revoked_at)
                 OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(k.id)
            .bind(&k.name)
            .bind(&k.owner)
            .bind(&k.prefix)
            .bind(&k.hash)
            .bind(&k.scopes)
            .bind(k.created_at)
            .bind(k.expires_at)
            .bind(k.revoked_at)
            .execute(&mut *self.tx)
            .await
            .context("copying API keys")?;
        }
        Ok(())
    }

    /// Inserts the checkpoint a prune left, so the copied chain verifies from it.
    pub async fn add_checkpoint(&mut self, c: &chain::Checkpoint) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (id, created_at, through_id, last_hash, pruned, signature)
             OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id)
        .bind(c.created_at)
        .bind(c.through_id)
        .bind(&c.last_hash)
        .bind(c.pruned)
        .bind(&c.signature)
        .execute(&mut *self.tx)
        .await
        .context("copying the audit checkpoint")?;
        Ok(())
    }

    /// The API keys as this uncommitted copy holds them.
    pub async fn key_list(&mut self) -> anyhow::Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at
             FROM api_keys ORDER BY id",
        )
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(key_row).collect()
    }

    /// Commits the copy.
    pub async fn commit(mut self) -> anyhow::Result<()> {
        // Without this the next registry_add would reuse id 1 and fail on the primary key.
        for sql in [
            "SELECT setval(pg_get_serial_sequence('db_registry', 'id'),
                           COALESCE(max(id), 0) + 1, false) FROM db_registry",
            "SELECT setval(pg_get_serial_sequence('audit_log', 'id'),
                           COALESCE(max(id), 0) + 1, false) FROM audit_log",
            "SELECT setval(pg_get_serial_sequence('api_keys', 'id'),
                           COALESCE(max(id), 0) + 1, false) FROM api_keys",
            "SELECT setval(pg_get_serial_sequence('audit_checkpoints', 'id'),
                           COALESCE(max(id), 0) + 1, false) FROM audit_checkpoints",
        ] {
            sqlx::query(sql).execute(&mut *self.tx).await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// An audit batch as one array per column, for `unnest`: one statement of constant text
/// whatever the batch size, and no limit on bind parameters.
struct AuditArrays<'a> {
    env: Vec<&'a str>,
    db_name: Vec<&'a str>,
    pg_username: Vec<&'a str>,
    operation: Vec<&'a str>,
    status: Vec<&'a str>,
    performed_at: Vec<DateTime<Utc>>,
    request_id: Vec<&'a str>,
    principal: Vec<&'a str>,
    client_addr: Vec<&'a str>,
    detail: Vec<&'a str>,
    error: Vec<Option<&'a str>>,
    duration_ms: Vec<Option<i64>>,
    profile: Vec<&'a str>,
    prev_hash: Vec<&'a str>,
    hash: Vec<&'a str>,
}

impl<'a> AuditArrays<'a> {
    /// Binds the columns, in this order, as `$1` to `$15`.
    fn bind<'q>(self, q: PgQuery<'q>) -> PgQuery<'q>
    where
        'a: 'q,
    {
        q.bind(self.env)
            .bind(self.db_name)
            .bind(self.pg_username)
            .bind(self.operation)
            .bind(self.status)
            .bind(self.performed_at)
            .bind(self.request_id)
            .bind(self.principal)
            .bind(self.client_addr)
            .bind(self.detail)
            .bind(self.error)
            .bind(self.duration_ms)
            .bind(self.profile)
            .bind(self.prev_hash)
            .bind(self.hash)
    }

    fn of(records: &'a [AuditRecord]) -> Self {
        let col = |f: fn(&'a AuditRecord) -> &'a str| records.iter().map(f).collect::<Vec<_>>();
        Self {
            env: col(|r| &r.env),
            db_name: col(|r| &r.db_name),
            pg_username: col(|r| &r.pg_username),
            operation: col(|r| &r.operation),
            status: col(|r| &r.status),
            performed_at: records.iter().map(|r| r.performed_at).collect(),
            request_id: col(|r| &r.request_id),
            principal: col(|r| &r.principal),
            client_addr: col(|r| &r.client_addr),
            detail: col(|r| &r.detail),
            error: records.iter().map(|r| r.error.as_deref()).collect(),
            duration_ms: records.iter().map(|r| r.duration_ms).collect(),
            profile: col(|r| &r.profile),
            prev_hash: col(|r| &r.prev_hash),
            hash: col(|r| &r.hash),
        }
    }
}

fn parse_created_at(s: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(NaiveDateTime::parse_from_str(s, CREATED_AT_FORMAT)?.and_utc())
}

fn key_row(row: &PgRow) -> anyhow::Result<ApiKey> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        prefix: row.try_get("prefix")?,
        hash: row.try_get("hash")?,
        scopes: row.try_get("scopes")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn registry_row(row: &PgRow) -> anyhow::Result<RegistryEntry> {
    let port: i32 = row.try_get("port")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    let sslmode: String = row.try_get("sslmode")?;
    Ok(RegistryEntry {
        id: row.try_get("id")?,
        env: row.try_get("env")?,
        db_name: row.try_get("db_name")?,
        hostname: row.try_get("hostname")?,
        port: u16::try_from(port).context("registry port out of range")?,
        active: row.try_get("active")?,
        notes: row.try_get("notes")?,
        created_at: created_at.format(CREATED_AT_FORMAT).to_string(),
        sslmode: sslmode.parse().map_err(anyhow::Error::msg)?,
    })
}

fn audit_row(row: &PgRow) -> anyhow::Result<AuditRecord> {
    let text = |col: &str| -> anyhow::Result<String> {
        Ok(row.try_get::<Option<String>, _>(col)?.unwrap_or_default())
    };
    Ok(AuditRecord {
        id: row.try_get("id")?,
        performed_at: row.try_get("performed_at")?,
        request_id: text("request_id")?,
        principal: text("principal")?,
        client_addr: text("client_addr")?,
        env: text("env")?,
        db_name: text("db_name")?,
        pg_username: text("pg_username")?,
        operation: text("operation")?,
        status: text("status")?,
        detail: text("detail")?,
        error: row.try_get("error")?,
        duration_ms: row.try_get("duration_ms")?,
        profile: text("profile")?,
        prev_hash: text("prev_hash")?,
        hash: text("hash")?,
    })
}

/// Sorted bytewise, as SQLite sorts, whatever the database's collation.
async fn registry_list<'e>(db: impl PgExecutor<'e>) -> anyhow::Result<Vec<RegistryEntry>> {
    let rows = sqlx::query(
        r#"SELECT id, env, db_name, hostname, port, active, notes, created_at, sslmode
           FROM db_registry ORDER BY env COLLATE "C", db_name COLLATE "C""#,
    )
    .fetch_all(db)
    .await?;
    rows.iter().map(registry_row).collect()
}

async fn audit_query<'e>(
    db: impl PgExecutor<'e>,
    f: &AuditFilter,
) -> anyhow::Result<Vec<AuditRecord>> {
    let f = &f.to_stored();
    let rows = sqlx::query(
        "SELECT id, env, db_name, pg_username, operation, status, performed_at, request_id,
                principal, client_addr, detail, error, duration_ms, profile, prev_hash, hash
         FROM audit_log
         WHERE id > $1
           AND ($2::timestamptz IS NULL OR performed_at >= $2)
           AND ($3::timestamptz IS NULL OR performed_at < $3)
           AND ($4::text IS NULL OR env = $4) AND ($5::text IS NULL OR db_name = $5)
           AND ($6::text IS NULL OR pg_username = $6)
           AND ($7::text IS NULL OR operation = $7 OR operation LIKE $7 || ':%')
           AND ($8::text IS NULL OR principal = $8)
         ORDER BY id LIMIT $9",
    )
    .bind(f.after_id)
    .bind(f.since)
    .bind(f.until)
    .bind(&f.env)
    .bind(&f.database)
    .bind(&f.username)
    .bind(&f.operation)
    .bind(&f.principal)
    .bind(i64::from(f.limit))
    .fetch_all(db)
    .await?;
    rows.iter().map(audit_row).collect()
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn registry_list(&self) -> anyhow::Result<Vec<RegistryEntry>> {
        registry_list(&self.pool).await
    }

    async fn registry_get(
        &self,
        env: &str,
        db_name: &str,
    ) -> anyhow::Result<Option<RegistryEntry>> {
        let row = sqlx::query(
            "SELECT id, env, db_name, hostname, port, active, notes, created_at, sslmode
             FROM db_registry WHERE env = $1 AND db_name = $2",
        )
        .bind(stored_text(env))
        .bind(stored_text(db_name))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| registry_row(&r)).transpose()
    }

    async fn registry_add(&self, e: &NewEntry) -> Result<RegistryEntry, StoreError> {
        let e = &e.to_stored();
        let result = sqlx::query(
            "INSERT INTO db_registry (env, db_name, hostname, port, active, notes, sslmode)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, env, db_name, hostname, port, active, notes, created_at, sslmode",
        )
        .bind(&e.env)
        .bind(&e.db_name)
        .bind(&e.hostname)
        .bind(i32::from(e.port))
        .bind(e.active)
        .bind(&e.notes)
        .bind(e.sslmode.as_str())
        .fetch_one(&self.pool)
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
        let done =
            sqlx::query("UPDATE db_registry SET active = $1 WHERE env = $2 AND db_name = $3")
                .bind(active)
                .bind(stored_text(env))
                .bind(stored_text(db_name))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn registry_update(&self, e: &NewEntry) -> anyhow::Result<bool> {
        let e = &e.to_stored();
        let done = sqlx::query(
            "UPDATE db_registry SET hostname = $1, port = $2, active = $3, notes = $4, sslmode = $5
             WHERE env = $6 AND db_name = $7",
        )
        .bind(&e.hostname)
        .bind(i32::from(e.port))
        .bind(e.active)
        .bind(&e.notes)
        .bind(e.sslmode.as_str())
        .bind(&e.env)
        .bind(&e.db_name)
        .execute(&self.pool)
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
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn session_put(&self, s: &Session) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, principal, scopes, csrf_hash, created_epoch, \
             last_seen_epoch, expires_epoch) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.id_hash)
        .bind(stored_text(&s.principal).as_ref())
        .bind(&s.scopes)
        .bind(&s.csrf_hash)
        .bind(s.created)
        .bind(s.last_seen)
        .bind(s.expires)
        .execute(&self.pool)
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
            "UPDATE sessions SET last_seen_epoch = $1 \
             WHERE id_hash = $2 AND expires_epoch > $3 AND last_seen_epoch >= $4 \
             RETURNING id_hash, principal, scopes, csrf_hash, created_epoch, last_seen_epoch, \
             expires_epoch",
        )
        .bind(now)
        .bind(id_hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(&self.pool)
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
        let done = sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn sessions_prune(&self, now: i64, idle_since: i64) -> anyhow::Result<u64> {
        let done =
            sqlx::query("DELETE FROM sessions WHERE expires_epoch <= $1 OR last_seen_epoch < $2")
                .bind(now)
                .bind(idle_since)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn claims_prune(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        let done = sqlx::query("DELETE FROM claims WHERE until_epoch < $1")
            .bind(before.timestamp())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn audit_prune(
        &self,
        before: DateTime<Utc>,
        key: Option<&[u8]>,
    ) -> anyhow::Result<Option<chain::Checkpoint>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *tx)
            .await?;
        let through: Option<i64> =
            sqlx::query_scalar("SELECT max(id) FROM audit_log WHERE performed_at < $1")
                .bind(before)
                .fetch_one(&mut *tx)
                .await?;
        let Some(through_id) = through else {
            return Ok(None);
        };
        let last_hash: Option<String> = sqlx::query_scalar(
            "SELECT hash FROM audit_log WHERE id <= $1 AND hash IS NOT NULL
             ORDER BY id DESC LIMIT 1",
        )
        .bind(through_id)
        .fetch_optional(&mut *tx)
        .await?;
        let pruned: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE id <= $1")
            .bind(through_id)
            .fetch_one(&mut *tx)
            .await?;
        let now = Utc::now();
        let mut cp = chain::Checkpoint {
            id: 0,
            created_at: DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now),
            through_id,
            last_hash: last_hash.unwrap_or_default(),
            pruned,
            signature: String::new(),
        };
        cp.signature = chain::sign(key, &cp);
        cp.id = sqlx::query_scalar(
            "INSERT INTO audit_checkpoints (created_at, through_id, last_hash, pruned, signature)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(cp.created_at)
        .bind(cp.through_id)
        .bind(&cp.last_hash)
        .bind(cp.pruned)
        .bind(&cp.signature)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("SET LOCAL pgua.audit_pruning = 'on'")
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM audit_log WHERE id <= $1")
            .bind(through_id)
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
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> anyhow::Result<chain::Checkpoint> {
            Ok(chain::Checkpoint {
                id: r.try_get("id")?,
                created_at: r.try_get("created_at")?,
                through_id: r.try_get("through_id")?,
                last_hash: r.try_get("last_hash")?,
                pruned: r.try_get("pruned")?,
                signature: r.try_get("signature")?,
            })
        })
        .transpose()
    }

    async fn fingerprint_key(&self, new: &[u8]) -> anyhow::Result<Vec<u8>> {
        // Two statements: the read's snapshot then sees a key another replica made meanwhile.
        sqlx::query("INSERT INTO fingerprint_key (id, key) VALUES (1, $1) ON CONFLICT DO NOTHING")
            .bind(new)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT key FROM fingerprint_key WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn key_add(&self, k: &ApiKey) -> Result<ApiKey, StoreError> {
        let k = &k.to_stored();
        let result = sqlx::query(
            "INSERT INTO api_keys (name, owner, prefix, hash, scopes, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at",
        )
        .bind(&k.name)
        .bind(&k.owner)
        .bind(&k.prefix)
        .bind(&k.hash)
        .bind(&k.scopes)
        .bind(k.created_at)
        .bind(k.expires_at)
        .fetch_one(&self.pool)
        .await;
        let duplicate = || StoreError::DuplicateKey(k.name.clone());
        let row = result.map_err(|err| StoreError::on_insert(err, duplicate))?;
        Ok(key_row(&row)?)
    }

    async fn key_list(&self) -> anyhow::Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at
             FROM api_keys ORDER BY name COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_row).collect()
    }

    async fn key_by_hash(&self, hash: &str) -> anyhow::Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, name, owner, prefix, hash, scopes, created_at, expires_at, revoked_at
             FROM api_keys WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_row).transpose()
    }

    async fn key_revoke(&self, name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
        )
        .bind(stored_text(name))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn registry_remove(&self, env: &str, db_name: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM db_registry WHERE env = $1 AND db_name = $2")
            .bind(stored_text(env))
            .bind(stored_text(db_name))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn audit_append(&self, records: &[AuditRecord]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Replicas append one at a time under the chain lock, so ids and links agree.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CHAIN_LOCK)
            .execute(&mut *tx)
            .await?;
        let last: Option<String> = sqlx::query_scalar(
            "SELECT hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let mut records = records.to_vec();
        chain::chain(last, &mut records);
        let a = AuditArrays::of(&records);
        // ORDER BY the ordinality so ids follow the batch order, as SQLite's VALUES list does.
        let query = sqlx::query(
            "INSERT INTO audit_log (env, db_name, pg_username, operation, status, performed_at,
                 request_id, principal, client_addr, detail, error, duration_ms, profile,
                 prev_hash, hash)
             SELECT env, db_name, pg_username, operation, status, performed_at,
                    request_id, principal, client_addr, detail, error, duration_ms, profile,
                    prev_hash, hash
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[],
                         $11::text[], $12::bigint[], $13::text[], $14::text[], $15::text[])
                  WITH ORDINALITY
                  AS r(env, db_name, pg_username, operation, status, performed_at,
                       request_id, principal, client_addr, detail, error, duration_ms, profile,
                       prev_hash, hash, n)
             ORDER BY n",
        );
        a.bind(query).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_latest(&self, limit: u32) -> anyhow::Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT id, env, db_name, pg_username, operation, status, performed_at, request_id,
                    principal, client_addr, detail, error, duration_ms, profile, prev_hash, hash
             FROM audit_log ORDER BY performed_at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_query(&self, filter: &AuditFilter) -> anyhow::Result<Vec<AuditRecord>> {
        audit_query(&self.pool, filter).await
    }
}

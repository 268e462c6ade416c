//! The store for several replicas: one PostgreSQL database shared by all of them.
//!
//! Tables and columns are the SQLite store's, with PostgreSQL types; rows come back exactly
//! as the SQLite backend returns them (`active` as a bool, `created_at` as
//! `YYYY-MM-DD HH:MM:SS` UTC). Migrations run under a transaction-level advisory lock, so
//! replicas starting together apply each one exactly once. The SQL and the row mappings are
//! the shared ones in [`super::sql`]; this file says how PostgreSQL binds, reads, locks and
//! batches, and how `store migrate` copies into it.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Column, Postgres, Row, Transaction, TypeInfo};

use super::sql::{
    self, AUDIT, CHECKPOINTS, Cells, Dialect, KEYS, Lock, On, REGISTRY, SqlStore, Table, Value,
};
use super::{ApiKey, AuditFilter, AuditRecord, NewEntry, RegistryEntry, chain, redact_url};

/// The PostgreSQL store.
pub type PostgresStore = SqlStore<PostgresBackend>;

/// The PostgreSQL store's connection pool.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: PgPool,
}

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
        let store = SqlStore {
            db: PostgresBackend { pool },
        };
        store
            .migrate()
            .await
            .with_context(|| format!("migrating PostgreSQL store {shown}"))?;
        Ok(store)
    }

    /// Starts a copy into this store (`store migrate`): locks both tables against writers
    /// and refuses unless both are empty. Nothing is visible until [`Import::commit`].
    pub async fn begin_import(&self) -> anyhow::Result<Import> {
        let mut tx = self.db.pool.begin().await?;
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
        let store = SqlStore {
            db: self.db.clone(),
        };
        Ok(Import { store, tx })
    }
}

/// A copy into an empty PostgreSQL store, inside one transaction; ids are kept as given.
pub struct Import {
    store: PostgresStore,
    tx: Transaction<'static, Postgres>,
}

impl Import {
    async fn insert(&mut self, table: &Table, rows: &[Vec<Value<'_>>]) -> anyhow::Result<()> {
        PostgresBackend::insert_rows(&mut self.tx, table, true, rows).await
    }

    /// Inserts registry entries with their ids and `created_at`.
    pub async fn add_registry(&mut self, entries: &[RegistryEntry]) -> anyhow::Result<()> {
        let stored: Vec<NewEntry> = entries.iter().map(NewEntry::from).collect();
        let rows = entries
            .iter()
            .zip(&stored)
            .map(|(e, s)| sql::registry_copy_values(e, s))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.insert(&REGISTRY, &rows)
            .await
            .context("copying registry entries")
    }

    /// Inserts audit records with their ids.
    pub async fn add_audit(&mut self, records: &[AuditRecord]) -> anyhow::Result<()> {
        let rows: Vec<_> = records
            .iter()
            .map(|r| with_id(r.id, sql::audit_values(r)))
            .collect();
        self.insert(&AUDIT, &rows)
            .await
            .context("copying audit records")
    }

    /// Inserts API keys (hashes only, as stored) with their ids and dates.
    pub async fn add_keys(&mut self, keys: &[ApiKey]) -> anyhow::Result<()> {
        let rows: Vec<_> = keys
            .iter()
            .map(|k| with_id(k.id, sql::key_values(k)))
            .collect();
        self.insert(&KEYS, &rows).await.context("copying API keys")
    }

    /// Inserts the checkpoint a prune left, so the copied chain verifies from it.
    pub async fn add_checkpoint(&mut self, c: &chain::Checkpoint) -> anyhow::Result<()> {
        let rows = [with_id(c.id, sql::checkpoint_values(c))];
        self.insert(&CHECKPOINTS, &rows)
            .await
            .context("copying the audit checkpoint")
    }

    /// Makes `key` the copy's fingerprint key, so fingerprints in copied records still
    /// match new ones.
    pub async fn set_fingerprint_key(&mut self, key: &[u8]) -> anyhow::Result<()> {
        let sql = "INSERT INTO fingerprint_key (id, key) VALUES (1, $1)
                   ON CONFLICT (id) DO UPDATE SET key = excluded.key";
        let args = [Value::Bytes(key)];
        self.store
            .db
            .execute(On::Tx(&mut self.tx), sql, &args)
            .await
            .context("copying the fingerprint key")?;
        Ok(())
    }

    /// The registry as this uncommitted copy holds it.
    pub async fn registry_list(&mut self) -> anyhow::Result<Vec<RegistryEntry>> {
        self.store.registry_list_on(On::Tx(&mut self.tx)).await
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
        self.store
            .audit_query_on(On::Tx(&mut self.tx), &filter)
            .await
    }

    /// The API keys as this uncommitted copy holds them, lowest id first.
    pub async fn key_list(&mut self) -> anyhow::Result<Vec<ApiKey>> {
        self.store.keys_by_id_on(On::Tx(&mut self.tx)).await
    }

    /// Moves every identity past the copied ids and commits.
    pub async fn commit(mut self) -> anyhow::Result<()> {
        // Without this the next registry_add would reuse id 1 and fail on the primary key.
        for table in [&REGISTRY, &AUDIT, &KEYS, &CHECKPOINTS] {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence('{0}', 'id'), COALESCE(max(id), 0) + 1,
                               false) FROM {0}",
                table.name
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *self.tx)
                .await?;
        }
        self.tx.commit().await?;
        Ok(())
    }
}

/// A copied row: its id, then the values an insert sets.
fn with_id(id: i64, values: Vec<Value<'_>>) -> Vec<Value<'_>> {
    let mut row = vec![Value::Int(Some(id))];
    row.extend(values);
    row
}

type Query = sqlx::query::Query<'static, Postgres, PgArguments>;

fn bind(query: Query, value: &Value<'_>) -> Query {
    match *value {
        Value::Int(v) => query.bind(v),
        Value::Text(v) => query.bind(v),
        Value::Time(v) => query.bind(v),
        Value::Flag(v) => query.bind(v),
        Value::Bytes(v) => query.bind(v),
    }
}

/// One column of a batch, for `unnest`: an array of the column's type.
enum Array<'a> {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<&'a str>>),
    Time(Vec<Option<DateTime<Utc>>>),
    Flag(Vec<bool>),
    Bytes(Vec<&'a [u8]>),
}

impl<'a> Array<'a> {
    /// Column `j` of every row.
    fn of(rows: &[Vec<Value<'a>>], j: usize) -> anyhow::Result<Self> {
        let mut array = match rows[0][j] {
            Value::Int(_) => Array::Int(Vec::with_capacity(rows.len())),
            Value::Text(_) => Array::Text(Vec::with_capacity(rows.len())),
            Value::Time(_) => Array::Time(Vec::with_capacity(rows.len())),
            Value::Flag(_) => Array::Flag(Vec::with_capacity(rows.len())),
            Value::Bytes(_) => Array::Bytes(Vec::with_capacity(rows.len())),
        };
        for row in rows {
            match (&mut array, row[j]) {
                (Array::Int(a), Value::Int(v)) => a.push(v),
                (Array::Text(a), Value::Text(v)) => a.push(v),
                (Array::Time(a), Value::Time(v)) => a.push(v),
                (Array::Flag(a), Value::Flag(v)) => a.push(v),
                (Array::Bytes(a), Value::Bytes(v)) => a.push(v),
                _ => bail!("column {j} of a batch holds values of different kinds"),
            }
        }
        Ok(array)
    }

    fn bind(self, query: Query) -> Query {
        match self {
            Array::Int(a) => query.bind(a),
            Array::Text(a) => query.bind(a),
            Array::Time(a) => query.bind(a),
            Array::Flag(a) => query.bind(a),
            Array::Bytes(a) => query.bind(a),
        }
    }
}

fn query(sql: &'static str, args: &[Value<'_>]) -> Query {
    args.iter().fold(sqlx::query(sql), bind)
}

#[async_trait]
impl Dialect for PostgresBackend {
    type Row = PgRow;
    type Tx = Transaction<'static, Postgres>;

    const MIGRATIONS_TABLE: &'static str = "CREATE TABLE IF NOT EXISTS pgua_migrations (
         version    bigint      PRIMARY KEY,
         applied_at timestamptz NOT NULL DEFAULT now())";
    const MIGRATIONS: &'static [(i64, &'static str)] = &[
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
    // The append-only trigger lets a DELETE through while this is on; SET LOCAL ends with
    // the transaction in any case.
    const ALLOW_PRUNING: &'static str = "SET LOCAL pgua.audit_pruning = 'on'";
    const FORBID_PRUNING: &'static str = "SET LOCAL pgua.audit_pruning = 'off'";

    async fn begin(&self, lock: Lock) -> Result<Self::Tx, sqlx::Error> {
        let key = match lock {
            Lock::Chain => CHAIN_LOCK,
            // Taken before anything else, so a second replica waits here instead of racing
            // on CREATE TABLE, and then sees every migration the first one committed.
            Lock::Migrations => MIGRATION_LOCK,
        };
        // One round trip: `BEGIN` and the lock as one simple query (the key is a constant).
        // What the transaction reads next takes its snapshot after the lock is granted.
        self.pool
            .begin_with(sqlx::AssertSqlSafe(format!(
                "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock({key})"
            )))
            .await
    }

    async fn commit(tx: Self::Tx) -> Result<(), sqlx::Error> {
        tx.commit().await
    }

    async fn fetch(
        &self,
        on: On<'_, Self::Tx>,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let q = query(sql, args);
        match on {
            On::Read | On::Write => q.fetch_all(&self.pool).await,
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
            On::Read | On::Write => q.execute(&self.pool).await?,
            On::Tx(tx) => q.execute(&mut **tx).await?,
        };
        Ok(done.rows_affected())
    }

    async fn script(tx: &mut Self::Tx, sql: &'static str) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(sql).execute(&mut **tx).await.map(drop)
    }

    /// One statement of constant text whatever the batch size, each column bound as one
    /// array for `unnest`: no limit on bind parameters, one plan for every batch.
    async fn insert_rows(
        tx: &mut Self::Tx,
        table: &Table,
        with_generated: bool,
        rows: &[Vec<Value<'_>>],
    ) -> anyhow::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let columns = table.columns(with_generated).join(", ");
        let arrays: Vec<String> = (1..=rows[0].len()).map(|i| format!("${i}")).collect();
        // Only a copy sets the identity columns; ORDER BY the ordinality so ids follow the
        // batch order, as SQLite's VALUES list does.
        let overriding = if with_generated {
            " OVERRIDING SYSTEM VALUE"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO {name} ({columns}){overriding}
             SELECT {columns} FROM unnest({arrays}) WITH ORDINALITY AS r({columns}, pgua_row)
             ORDER BY pgua_row",
            name = table.name,
            arrays = arrays.join(", "),
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for j in 0..rows[0].len() {
            q = Array::of(rows, j)?.bind(q);
        }
        q.execute(&mut **tx).await?;
        Ok(())
    }
}

impl Cells for PgRow {
    fn opt_int(&self, col: &str) -> anyhow::Result<Option<i64>> {
        // `port` is an integer column; every other is a bigint.
        if self.try_column(col)?.type_info().name() == "INT4" {
            return Ok(self.try_get::<Option<i32>, _>(col)?.map(i64::from));
        }
        Ok(self.try_get(col)?)
    }

    fn opt_text(&self, col: &str) -> anyhow::Result<Option<String>> {
        Ok(self.try_get(col)?)
    }

    fn opt_time(&self, col: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
        Ok(self.try_get(col)?)
    }

    fn flag(&self, col: &str) -> anyhow::Result<bool> {
        Ok(self.try_get(col)?)
    }

    fn bytes(&self, col: &str) -> anyhow::Result<Vec<u8>> {
        Ok(self.try_get(col)?)
    }

    fn created_at(&self, col: &str) -> anyhow::Result<String> {
        let at: DateTime<Utc> = self.try_get(col)?;
        Ok(at.format(sql::CREATED_AT_FORMAT).to_string())
    }
}

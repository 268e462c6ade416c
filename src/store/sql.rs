//! The store written once: each table's columns, every statement and every row mapping,
//! over a [`Dialect`] that holds what SQLite and PostgreSQL do differently (how a value is
//! bound and read, how a writer takes the lock, how a batch is inserted, the migrations).
//!
//! Statements use `$n` placeholders, which both drivers bind by number. A new method is
//! written once here, on [`SqlStore`]; a new table is a [`Table`], a `*_values` function in
//! its column order and a `*_row` function, next to the others.

use std::sync::LazyLock;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    ApiKey, AuditFilter, AuditRecord, BlockingAudit, NewEntry, RegistryEntry, Session, Store,
    StoreError, chain, stored_text,
};

/// A value bound to a `$n` placeholder; each [`Dialect`] encodes it in its own types.
#[derive(Clone, Copy, Debug)]
pub enum Value<'a> {
    /// An integer (SQLite INTEGER, PostgreSQL bigint).
    Int(Option<i64>),
    /// Text.
    Text(Option<&'a str>),
    /// A time (SQLite: RFC 3339 text with microseconds; PostgreSQL: timestamptz).
    Time(Option<DateTime<Utc>>),
    /// A flag (SQLite: 1 or 0; PostgreSQL: boolean).
    Flag(bool),
    /// Bytes.
    Bytes(&'a [u8]),
}

/// Where a statement runs.
pub enum On<'a, Tx> {
    /// Any connection, for a read (SQLite: the read-only pool).
    Read,
    /// The writer, outside a transaction.
    Write,
    /// Inside a transaction begun by [`Dialect::begin`].
    Tx(&'a mut Tx),
}

/// Which lock a write transaction takes before its first statement.
#[derive(Clone, Copy, Debug)]
pub enum Lock {
    /// Appending to or pruning the audit chain.
    Chain,
    /// Applying migrations.
    Migrations,
}

/// A result row's columns by name, read as the store's types.
pub trait Cells {
    /// An integer column.
    fn opt_int(&self, col: &str) -> anyhow::Result<Option<i64>>;
    /// A text column.
    fn opt_text(&self, col: &str) -> anyhow::Result<Option<String>>;
    /// A time column.
    fn opt_time(&self, col: &str) -> anyhow::Result<Option<DateTime<Utc>>>;
    /// A flag column.
    fn flag(&self, col: &str) -> anyhow::Result<bool>;
    /// A bytes column.
    fn bytes(&self, col: &str) -> anyhow::Result<Vec<u8>>;
    /// A registry `created_at`, as `YYYY-MM-DD HH:MM:SS` (UTC).
    fn created_at(&self, col: &str) -> anyhow::Result<String>;

    /// An integer column that must not be NULL.
    fn int(&self, col: &str) -> anyhow::Result<i64> {
        self.opt_int(col)?
            .with_context(|| format!("store column {col} is NULL"))
    }
    /// A text column; NULL (which the original's rows may hold) reads as empty.
    fn text(&self, col: &str) -> anyhow::Result<String> {
        Ok(self.opt_text(col)?.unwrap_or_default())
    }
    /// A time column that must not be NULL.
    fn time(&self, col: &str) -> anyhow::Result<DateTime<Utc>> {
        self.opt_time(col)?
            .with_context(|| format!("store column {col} is NULL"))
    }
}

/// What SQLite and PostgreSQL do differently below the shared SQL.
#[async_trait]
pub trait Dialect: Send + Sync + 'static {
    /// A result row.
    type Row: Cells + Send + Sync;
    /// A write transaction.
    type Tx: Send;
    /// Creates the table of applied migrations, if missing.
    const MIGRATIONS_TABLE: &'static str;
    /// Ordered migrations; each runs once.
    const MIGRATIONS: &'static [(i64, &'static str)];
    /// Lets the current transaction delete audit records (the append-only guard's switch).
    const ALLOW_PRUNING: &'static str;
    /// Turns the guard back on before the pruning transaction commits.
    const FORBID_PRUNING: &'static str;

    /// Begins a write transaction holding `lock`: no other writer, in this process or
    /// another, gets it until commit or rollback.
    async fn begin(&self, lock: Lock) -> Result<Self::Tx, sqlx::Error>;
    /// Commits.
    async fn commit(tx: Self::Tx) -> Result<(), sqlx::Error>;
    /// Runs one statement with `args` bound to `$1…`; its rows.
    async fn fetch(
        &self,
        on: On<'_, Self::Tx>,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<Vec<Self::Row>, sqlx::Error>;
    /// Runs one statement with `args` bound to `$1…`; how many rows it changed.
    async fn execute(
        &self,
        on: On<'_, Self::Tx>,
        sql: &'static str,
        args: &[Value<'_>],
    ) -> Result<u64, sqlx::Error>;
    /// Runs a script of several statements without parameters (a migration).
    async fn script(tx: &mut Self::Tx, sql: &'static str) -> Result<(), sqlx::Error>;
    /// See [`Store::blocking_audit`].
    fn blocking_audit(&self) -> anyhow::Result<Option<Box<dyn BlockingAudit>>> {
        Ok(None)
    }
    /// Inserts `rows` (each in the order of `table.columns(with_generated)`) in as few
    /// statements as the backend allows, ids following the order of `rows`.
    async fn insert_rows(
        tx: &mut Self::Tx,
        table: &Table,
        with_generated: bool,
        rows: &[Vec<Value<'_>>],
    ) -> anyhow::Result<()>;
}

/// A table's columns, written once for SELECT, INSERT and the row mappings.
pub struct Table {
    /// Table name.
    pub name: &'static str,
    /// Columns the database fills (ids, defaults); only a copy (`store migrate`) sets them.
    pub generated: &'static [&'static str],
    /// Columns an insert sets, in the order of the table's `*_values` function.
    pub columns: &'static [&'static str],
}

impl Table {
    /// The columns an insert sets, the generated ones first when `with_generated`.
    pub fn columns(&self, with_generated: bool) -> Vec<&'static str> {
        let generated = if with_generated { self.generated } else { &[] };
        generated.iter().chain(self.columns).copied().collect()
    }

    /// Every column, for SELECT and RETURNING.
    fn all(&self) -> String {
        self.columns(true).join(", ")
    }

    /// `SELECT <every column> FROM <table>` followed by `rest`.
    fn select(&self, rest: &str) -> String {
        format!("SELECT {} FROM {}{rest}", self.all(), self.name)
    }

    /// An insert that answers with the whole row.
    fn insert_returning_all(&self) -> String {
        self.insert(&format!(" RETURNING {}", self.all()))
    }

    /// `INSERT INTO <table> (<columns>) VALUES ($1, …)` followed by `rest`.
    fn insert(&self, rest: &str) -> String {
        format!(
            "INSERT INTO {} ({}) VALUES {}{rest}",
            self.name,
            self.columns.join(", "),
            placeholders(0, self.columns.len())
        )
    }
}

/// `($first+1, …, $first+n)`.
fn placeholders(first: usize, n: usize) -> String {
    let list: Vec<String> = (first + 1..=first + n).map(|i| format!("${i}")).collect();
    format!("({})", list.join(", "))
}

/// The registry of target databases.
pub const REGISTRY: Table = Table {
    name: "db_registry",
    generated: &["id", "created_at"],
    // env and db_name first: they are the key `registry_update` finds an entry by.
    columns: &[
        "env", "db_name", "hostname", "port", "active", "notes", "sslmode",
    ],
};

/// The audit log.
pub const AUDIT: Table = Table {
    name: "audit_log",
    generated: &["id"],
    columns: &[
        "env",
        "db_name",
        "pg_username",
        "operation",
        "status",
        "performed_at",
        "request_id",
        "principal",
        "client_addr",
        "detail",
        "error",
        "duration_ms",
        "profile",
        "prev_hash",
        "hash",
    ],
};

/// API keys.
pub const KEYS: Table = Table {
    name: "api_keys",
    generated: &["id"],
    columns: &[
        "name",
        "owner",
        "prefix",
        "hash",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
    ],
};

/// `sessions`: the console's sessions after single sign-on.
pub const SESSIONS: Table = Table {
    name: "sessions",
    generated: &[],
    columns: &[
        "id_hash",
        "principal",
        "scopes",
        "csrf_hash",
        "created_epoch",
        "last_seen_epoch",
        "expires_epoch",
    ],
};

/// Where a pruned audit chain continues.
pub const CHECKPOINTS: Table = Table {
    name: "audit_checkpoints",
    generated: &["id"],
    columns: &[
        "created_at",
        "through_id",
        "last_hash",
        "pruned",
        "signature",
    ],
};

fn registry_values(e: &NewEntry) -> Vec<Value<'_>> {
    vec![
        Value::Text(Some(&e.env)),
        Value::Text(Some(&e.db_name)),
        Value::Text(Some(&e.hostname)),
        Value::Int(Some(i64::from(e.port))),
        Value::Flag(e.active),
        Value::Text(e.notes.as_deref()),
        Value::Text(Some(e.sslmode.as_str())),
    ]
}

/// A registry entry's values for a copy: the generated columns, then [`registry_values`].
pub fn registry_copy_values<'a>(
    e: &RegistryEntry,
    stored: &'a NewEntry,
) -> anyhow::Result<Vec<Value<'a>>> {
    let created_at = chrono::NaiveDateTime::parse_from_str(&e.created_at, CREATED_AT_FORMAT)
        .with_context(|| {
            format!(
                "registry entry #{} has created_at '{}', not YYYY-MM-DD HH:MM:SS",
                e.id, e.created_at
            )
        })?
        .and_utc();
    let mut values = vec![Value::Int(Some(e.id)), Value::Time(Some(created_at))];
    values.extend(registry_values(stored));
    Ok(values)
}

/// The registry's `created_at` format: SQLite's `CURRENT_TIMESTAMP`, which it always had.
pub const CREATED_AT_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

impl From<&RegistryEntry> for NewEntry {
    fn from(e: &RegistryEntry) -> Self {
        Self {
            env: e.env.clone(),
            db_name: e.db_name.clone(),
            hostname: e.hostname.clone(),
            port: e.port,
            active: e.active,
            notes: e.notes.clone(),
            sslmode: e.sslmode,
        }
    }
}

fn registry_row(r: &impl Cells) -> anyhow::Result<RegistryEntry> {
    let port = r.int("port")?;
    Ok(RegistryEntry {
        id: r.int("id")?,
        env: r.text("env")?,
        db_name: r.text("db_name")?,
        hostname: r.text("hostname")?,
        port: u16::try_from(port).context("registry port out of range")?,
        active: r.flag("active")?,
        notes: r.opt_text("notes")?,
        created_at: r.created_at("created_at")?,
        sslmode: r.text("sslmode")?.parse().map_err(anyhow::Error::msg)?,
    })
}

/// An audit record's values; the id is generated. A record the original service wrote has
/// no hashes, kept as NULL.
pub fn audit_values(r: &AuditRecord) -> Vec<Value<'_>> {
    fn hash(h: &str) -> Option<&str> {
        Some(h).filter(|h| !h.is_empty())
    }
    vec![
        Value::Text(Some(&r.env)),
        Value::Text(Some(&r.db_name)),
        Value::Text(Some(&r.pg_username)),
        Value::Text(Some(&r.operation)),
        Value::Text(Some(&r.status)),
        Value::Time(Some(r.performed_at)),
        Value::Text(Some(&r.request_id)),
        Value::Text(Some(&r.principal)),
        Value::Text(Some(&r.client_addr)),
        Value::Text(Some(&r.detail)),
        Value::Text(r.error.as_deref()),
        Value::Int(r.duration_ms),
        Value::Text(Some(&r.profile)),
        Value::Text(hash(&r.prev_hash)),
        Value::Text(hash(&r.hash)),
    ]
}

fn audit_row(r: &impl Cells) -> anyhow::Result<AuditRecord> {
    Ok(AuditRecord {
        id: r.int("id")?,
        performed_at: r.time("performed_at")?,
        request_id: r.text("request_id")?,
        principal: r.text("principal")?,
        client_addr: r.text("client_addr")?,
        env: r.text("env")?,
        db_name: r.text("db_name")?,
        pg_username: r.text("pg_username")?,
        operation: r.text("operation")?,
        profile: r.text("profile")?,
        prev_hash: r.text("prev_hash")?,
        hash: r.text("hash")?,
        status: r.text("status")?,
        detail: r.text("detail")?,
        error: r.opt_text("error")?,
        duration_ms: r.opt_int("duration_ms")?,
    })
}

/// An API key's values; the id is generated.
pub fn key_values(k: &ApiKey) -> Vec<Value<'_>> {
    vec![
        Value::Text(Some(&k.name)),
        Value::Text(Some(&k.owner)),
        Value::Text(Some(&k.prefix)),
        Value::Text(Some(&k.hash)),
        Value::Text(Some(&k.scopes)),
        Value::Time(Some(k.created_at)),
        Value::Time(k.expires_at),
        Value::Time(k.revoked_at),
    ]
}

fn key_row(r: &impl Cells) -> anyhow::Result<ApiKey> {
    Ok(ApiKey {
        id: r.int("id")?,
        name: r.text("name")?,
        owner: r.text("owner")?,
        prefix: r.text("prefix")?,
        hash: r.text("hash")?,
        scopes: r.text("scopes")?,
        created_at: r.opt_time("created_at")?.unwrap_or_default(),
        expires_at: r.opt_time("expires_at")?,
        revoked_at: r.opt_time("revoked_at")?,
    })
}

/// A checkpoint's values; the id is generated.
pub fn checkpoint_values(c: &chain::Checkpoint) -> Vec<Value<'_>> {
    vec![
        Value::Time(Some(c.created_at)),
        Value::Int(Some(c.through_id)),
        Value::Text(Some(&c.last_hash)),
        Value::Int(Some(c.pruned)),
        Value::Text(Some(&c.signature)),
    ]
}

fn checkpoint_row(r: &impl Cells) -> anyhow::Result<chain::Checkpoint> {
    Ok(chain::Checkpoint {
        id: r.int("id")?,
        created_at: r.time("created_at")?,
        through_id: r.int("through_id")?,
        last_hash: r.text("last_hash")?,
        pruned: r.int("pruned")?,
        signature: r.text("signature")?,
    })
}

/// A session's values in [`SESSIONS`]'s column order.
pub fn session_values(s: &Session) -> Vec<Value<'_>> {
    vec![
        Value::Text(Some(&s.id_hash)),
        Value::Text(Some(&s.principal)),
        Value::Text(Some(&s.scopes)),
        Value::Text(Some(&s.csrf_hash)),
        Value::Int(Some(s.created)),
        Value::Int(Some(s.last_seen)),
        Value::Int(Some(s.expires)),
    ]
}

fn session_row(r: &impl Cells) -> anyhow::Result<Session> {
    Ok(Session {
        id_hash: r.text("id_hash")?,
        principal: r.text("principal")?,
        scopes: r.text("scopes")?,
        csrf_hash: r.text("csrf_hash")?,
        created: r.int("created_epoch")?,
        last_seen: r.int("last_seen_epoch")?,
        expires: r.int("expires_epoch")?,
    })
}

/// A statement built once from the tables above: constant text, every value a parameter.
pub(super) struct Sql(LazyLock<String>);

impl Sql {
    const fn new(build: fn() -> String) -> Self {
        Self(LazyLock::new(build))
    }

    pub(super) fn get(&'static self) -> &'static str {
        self.0.as_str()
    }
}

// Lists are sorted in Rust, bytewise as `String` orders, so both backends agree whatever
// the database's collation.
static REGISTRY_LIST: Sql = Sql::new(|| REGISTRY.select(""));
static REGISTRY_GET: Sql = Sql::new(|| REGISTRY.select(" WHERE env = $1 AND db_name = $2"));
static REGISTRY_ADD: Sql = Sql::new(|| REGISTRY.insert_returning_all());
/// Sets every column but the key (the first two) of the entry the key names, so it binds
/// [`registry_values`] as they are.
static REGISTRY_UPDATE: Sql = Sql::new(|| {
    let (key, rest) = REGISTRY.columns.split_at(2);
    let set: Vec<String> = rest
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + key.len() + 1))
        .collect();
    let by: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    format!(
        "UPDATE {} SET {} WHERE {}",
        REGISTRY.name,
        set.join(", "),
        by.join(" AND ")
    )
});
const REGISTRY_SET_ACTIVE: &str =
    "UPDATE db_registry SET active = $1 WHERE env = $2 AND db_name = $3";
const REGISTRY_REMOVE: &str = "DELETE FROM db_registry WHERE env = $1 AND db_name = $2";

/// One audit row, for a backend that inserts a batch row by row with a prepared statement.
pub(super) static AUDIT_INSERT: Sql = Sql::new(|| AUDIT.insert(""));
static AUDIT_LATEST: Sql =
    Sql::new(|| AUDIT.select(" ORDER BY performed_at DESC, id DESC LIMIT $1"));
static AUDIT_QUERY: Sql = Sql::new(|| {
    AUDIT.select(
        " WHERE id > $1
           AND ($2 IS NULL OR performed_at >= $2) AND ($3 IS NULL OR performed_at < $3)
           AND ($4 IS NULL OR env = $4) AND ($5 IS NULL OR db_name = $5)
           AND ($6 IS NULL OR pg_username = $6)
           AND ($7 IS NULL OR operation = $7 OR operation LIKE $7 || ':%')
           AND ($8 IS NULL OR principal = $8)
         ORDER BY id LIMIT $9",
    )
});
pub(super) const AUDIT_LAST_HASH: &str =
    "SELECT hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1";
const PRUNE_THROUGH: &str = "SELECT max(id) AS through_id FROM audit_log WHERE performed_at < $1";
const PRUNE_LAST_HASH: &str = "SELECT hash FROM audit_log WHERE id <= $1 AND hash IS NOT NULL
     ORDER BY id DESC LIMIT 1";
const PRUNE_COUNT: &str = "SELECT count(*) AS pruned FROM audit_log WHERE id <= $1";
const PRUNE_DELETE: &str = "DELETE FROM audit_log WHERE id <= $1";

static CHECKPOINT_ADD: Sql = Sql::new(|| CHECKPOINTS.insert(" RETURNING id"));
static CHECKPOINT_LATEST: Sql = Sql::new(|| CHECKPOINTS.select(" ORDER BY id DESC LIMIT 1"));

static KEY_LIST: Sql = Sql::new(|| KEYS.select(""));
static KEYS_BY_ID: Sql = Sql::new(|| KEYS.select(" ORDER BY id"));
static KEY_BY_HASH: Sql = Sql::new(|| KEYS.select(" WHERE hash = $1"));
static KEY_ADD: Sql = Sql::new(|| KEYS.insert_returning_all());
const KEY_REVOKE: &str =
    "UPDATE api_keys SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL";

const FINGERPRINT_KEY_ADD: &str =
    "INSERT INTO fingerprint_key (id, key) VALUES (1, $1) ON CONFLICT DO NOTHING";
const FINGERPRINT_KEY: &str = "SELECT key FROM fingerprint_key WHERE id = 1";

/// Takes a claim that is free, ran out, or is the holder's own (see [`Store::claim`]).
const CLAIM: &str = "INSERT INTO claims (namespace, key, holder, until_epoch)
     VALUES ($1, $2, $3, $4)
     ON CONFLICT (namespace, key) DO UPDATE
     SET holder = excluded.holder, until_epoch = excluded.until_epoch
     WHERE claims.until_epoch <= $5 OR claims.holder = excluded.holder";
const CLAIMS_PRUNE: &str = "DELETE FROM claims WHERE until_epoch < $1";

static SESSION_PUT: Sql = Sql::new(|| SESSIONS.insert(""));
/// Reads a live session and touches it in one statement, so every replica shares one idle
/// clock: `$1` now, `$2` the id's hash, `$3` the oldest last use still live.
static SESSION_GET: Sql = Sql::new(|| {
    format!(
        "UPDATE sessions SET last_seen_epoch = $1
         WHERE id_hash = $2 AND expires_epoch > $1 AND last_seen_epoch >= $3
         RETURNING {}",
        SESSIONS.columns.join(", ")
    )
});
const SESSION_DELETE: &str = "DELETE FROM sessions WHERE id_hash = $1";
const SESSIONS_PRUNE: &str =
    "DELETE FROM sessions WHERE expires_epoch <= $1 OR last_seen_epoch < $2";

const MIGRATION_DONE: &str = "SELECT version FROM pgua_migrations";
const MIGRATION_ADD: &str = "INSERT INTO pgua_migrations (version) VALUES ($1)";

/// The store over one backend.
pub struct SqlStore<D> {
    /// The backend's connections.
    pub(super) db: D,
}

impl<D: Dialect> SqlStore<D> {
    /// Applies the migrations not applied yet, all in one transaction under the migration
    /// lock, so processes starting together apply each exactly once.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let mut tx = self.db.begin(Lock::Migrations).await?;
        D::script(&mut tx, D::MIGRATIONS_TABLE).await?;
        let done = self.db.fetch(On::Tx(&mut tx), MIGRATION_DONE, &[]).await?;
        let done = done
            .iter()
            .map(|r| r.int("version"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (version, sql) in D::MIGRATIONS {
            if done.contains(version) {
                continue;
            }
            D::script(&mut tx, sql)
                .await
                .with_context(|| format!("applying store migration {version}"))?;
            let args = [Value::Int(Some(*version))];
            self.db
                .execute(On::Tx(&mut tx), MIGRATION_ADD, &args)
                .await?;
        }
        D::commit(tx).await?;
        Ok(())
    }

    /// The registry, ordered by env and database.
    pub async fn registry_list_on(&self, on: On<'_, D::Tx>) -> anyhow::Result<Vec<RegistryEntry>> {
        let rows = self.db.fetch(on, REGISTRY_LIST.get(), &[]).await?;
        let mut entries = rows
            .iter()
            .map(registry_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        entries.sort_by(|a, b| (&a.env, &a.db_name).cmp(&(&b.env, &b.db_name)));
        Ok(entries)
    }

    /// Records matching `f`, lowest id first.
    pub async fn audit_query_on(
        &self,
        on: On<'_, D::Tx>,
        f: &AuditFilter,
    ) -> anyhow::Result<Vec<AuditRecord>> {
        let f = &f.to_stored();
        let args = [
            Value::Int(Some(f.after_id)),
            Value::Time(f.since),
            Value::Time(f.until),
            Value::Text(f.env.as_deref()),
            Value::Text(f.database.as_deref()),
            Value::Text(f.username.as_deref()),
            Value::Text(f.operation.as_deref()),
            Value::Text(f.principal.as_deref()),
            Value::Int(Some(i64::from(f.limit))),
        ];
        let rows = self.db.fetch(on, AUDIT_QUERY.get(), &args).await?;
        rows.iter().map(audit_row).collect()
    }

    /// The API keys, lowest id first.
    pub async fn keys_by_id_on(&self, on: On<'_, D::Tx>) -> anyhow::Result<Vec<ApiKey>> {
        let rows = self.db.fetch(on, KEYS_BY_ID.get(), &[]).await?;
        rows.iter().map(key_row).collect()
    }
}

/// The first row, read by `read`, if there is a row.
fn first<R: Cells, T>(
    rows: &[R],
    read: impl Fn(&R) -> anyhow::Result<T>,
) -> anyhow::Result<Option<T>> {
    rows.first().map(read).transpose()
}

#[async_trait]
impl<D: Dialect> Store for SqlStore<D> {
    async fn ping(&self) -> anyhow::Result<()> {
        self.db.execute(On::Read, "SELECT 1", &[]).await?;
        Ok(())
    }

    async fn registry_list(&self) -> anyhow::Result<Vec<RegistryEntry>> {
        self.registry_list_on(On::Read).await
    }

    async fn registry_get(
        &self,
        env: &str,
        db_name: &str,
    ) -> anyhow::Result<Option<RegistryEntry>> {
        let (env, db_name) = (stored_text(env), stored_text(db_name));
        let args = [Value::Text(Some(&env)), Value::Text(Some(&db_name))];
        let rows = self.db.fetch(On::Read, REGISTRY_GET.get(), &args).await?;
        first(&rows, registry_row)
    }

    async fn registry_add(&self, e: &NewEntry) -> Result<RegistryEntry, StoreError> {
        let e = &e.to_stored();
        let result = self
            .db
            .fetch(On::Write, REGISTRY_ADD.get(), &registry_values(e))
            .await;
        let rows = result.map_err(|err| StoreError::on_insert(err, || StoreError::duplicate(e)))?;
        Ok(first(&rows, registry_row)?.context("INSERT … RETURNING gave no row")?)
    }

    async fn registry_set_active(
        &self,
        env: &str,
        db_name: &str,
        active: bool,
    ) -> anyhow::Result<bool> {
        let (env, db_name) = (stored_text(env), stored_text(db_name));
        let args = [
            Value::Flag(active),
            Value::Text(Some(&env)),
            Value::Text(Some(&db_name)),
        ];
        Ok(self
            .db
            .execute(On::Write, REGISTRY_SET_ACTIVE, &args)
            .await?
            > 0)
    }

    async fn registry_update(&self, e: &NewEntry) -> anyhow::Result<bool> {
        let e = &e.to_stored();
        let done = self
            .db
            .execute(On::Write, REGISTRY_UPDATE.get(), &registry_values(e))
            .await?;
        Ok(done > 0)
    }

    async fn registry_remove(&self, env: &str, db_name: &str) -> anyhow::Result<bool> {
        let (env, db_name) = (stored_text(env), stored_text(db_name));
        let args = [Value::Text(Some(&env)), Value::Text(Some(&db_name))];
        Ok(self.db.execute(On::Write, REGISTRY_REMOVE, &args).await? > 0)
    }

    async fn claim(
        &self,
        namespace: &str,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<bool> {
        let args = [
            Value::Text(Some(namespace)),
            Value::Text(Some(key)),
            Value::Text(Some(holder)),
            Value::Int(Some(whole_seconds_up(until))),
            Value::Int(Some(Utc::now().timestamp())),
        ];
        Ok(self.db.execute(On::Write, CLAIM, &args).await? == 1)
    }

    async fn claims_prune(&self, before: DateTime<Utc>) -> anyhow::Result<u64> {
        let args = [Value::Int(Some(before.timestamp()))];
        Ok(self.db.execute(On::Write, CLAIMS_PRUNE, &args).await?)
    }

    async fn session_put(&self, s: &Session) -> anyhow::Result<()> {
        let s = Session {
            principal: stored_text(&s.principal).into_owned(),
            ..s.clone()
        };
        self.db
            .execute(On::Write, SESSION_PUT.get(), &session_values(&s))
            .await?;
        Ok(())
    }

    async fn session_get(
        &self,
        id_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> anyhow::Result<Option<Session>> {
        let args = [
            Value::Int(Some(now)),
            Value::Text(Some(id_hash)),
            Value::Int(Some(idle_since)),
        ];
        let rows = self.db.fetch(On::Write, SESSION_GET.get(), &args).await?;
        first(&rows, session_row)
    }

    async fn session_delete(&self, id_hash: &str) -> anyhow::Result<bool> {
        let args = [Value::Text(Some(id_hash))];
        Ok(self.db.execute(On::Write, SESSION_DELETE, &args).await? > 0)
    }

    async fn sessions_prune(&self, now: i64, idle_since: i64) -> anyhow::Result<u64> {
        let args = [Value::Int(Some(now)), Value::Int(Some(idle_since))];
        Ok(self.db.execute(On::Write, SESSIONS_PRUNE, &args).await?)
    }

    async fn audit_append(&self, records: &[AuditRecord]) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // The chain lock is taken first, so no other writer (another process, another
        // replica) can slip a record in between reading the chain's end and appending.
        let mut tx = self.db.begin(Lock::Chain).await?;
        let last = self.db.fetch(On::Tx(&mut tx), AUDIT_LAST_HASH, &[]).await?;
        let mut records = records.to_vec();
        chain::chain(first(&last, |r| r.text("hash"))?, &mut records);
        let rows: Vec<_> = records.iter().map(audit_values).collect();
        D::insert_rows(&mut tx, &AUDIT, false, &rows).await?;
        D::commit(tx).await?;
        Ok(())
    }

    fn blocking_audit(&self) -> anyhow::Result<Option<Box<dyn BlockingAudit>>> {
        self.db.blocking_audit()
    }

    async fn audit_latest(&self, limit: u32) -> anyhow::Result<Vec<AuditRecord>> {
        let args = [Value::Int(Some(i64::from(limit)))];
        let rows = self.db.fetch(On::Read, AUDIT_LATEST.get(), &args).await?;
        rows.iter().map(audit_row).collect()
    }

    async fn audit_query(&self, filter: &AuditFilter) -> anyhow::Result<Vec<AuditRecord>> {
        self.audit_query_on(On::Read, filter).await
    }

    async fn audit_prune(
        &self,
        before: DateTime<Utc>,
        key: Option<&[u8]>,
    ) -> anyhow::Result<Option<chain::Checkpoint>> {
        let mut tx = self.db.begin(Lock::Chain).await?;
        let before = [Value::Time(Some(before))];
        let through = self
            .db
            .fetch(On::Tx(&mut tx), PRUNE_THROUGH, &before)
            .await?;
        let Some(through_id) = first(&through, |r| r.opt_int("through_id"))?.flatten() else {
            return Ok(None);
        };
        let through = [Value::Int(Some(through_id))];
        let last = self
            .db
            .fetch(On::Tx(&mut tx), PRUNE_LAST_HASH, &through)
            .await?;
        let count = self
            .db
            .fetch(On::Tx(&mut tx), PRUNE_COUNT, &through)
            .await?;
        let now = Utc::now();
        let mut cp = chain::Checkpoint {
            id: 0,
            // Stores keep microseconds; sign exactly what is stored.
            created_at: DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now),
            through_id,
            last_hash: first(&last, |r| r.text("hash"))?.unwrap_or_default(),
            pruned: first(&count, |r| r.int("pruned"))?.unwrap_or_default(),
            signature: String::new(),
        };
        cp.signature = chain::sign(key, &cp);
        let id = self
            .db
            .fetch(
                On::Tx(&mut tx),
                CHECKPOINT_ADD.get(),
                &checkpoint_values(&cp),
            )
            .await?;
        cp.id = first(&id, |r| r.int("id"))?.context("INSERT … RETURNING gave no row")?;
        self.db
            .execute(On::Tx(&mut tx), D::ALLOW_PRUNING, &[])
            .await?;
        self.db
            .execute(On::Tx(&mut tx), PRUNE_DELETE, &through)
            .await?;
        self.db
            .execute(On::Tx(&mut tx), D::FORBID_PRUNING, &[])
            .await?;
        D::commit(tx).await?;
        Ok(Some(cp))
    }

    async fn audit_checkpoint_latest(&self) -> anyhow::Result<Option<chain::Checkpoint>> {
        let rows = self
            .db
            .fetch(On::Read, CHECKPOINT_LATEST.get(), &[])
            .await?;
        first(&rows, checkpoint_row)
    }

    async fn fingerprint_key(&self, new: &[u8]) -> anyhow::Result<Vec<u8>> {
        // Two statements: the read then sees a key another replica made meanwhile.
        let args = [Value::Bytes(new)];
        self.db
            .execute(On::Write, FINGERPRINT_KEY_ADD, &args)
            .await?;
        let rows = self.db.fetch(On::Write, FINGERPRINT_KEY, &[]).await?;
        first(&rows, |r| r.bytes("key"))?.context("the fingerprint key was not stored")
    }

    async fn key_add(&self, k: &ApiKey) -> Result<ApiKey, StoreError> {
        let k = &k.to_stored();
        let result = self
            .db
            .fetch(On::Write, KEY_ADD.get(), &key_values(k))
            .await;
        let duplicate = || StoreError::DuplicateKey(k.name.clone());
        let rows = result.map_err(|err| StoreError::on_insert(err, duplicate))?;
        Ok(first(&rows, key_row)?.context("INSERT … RETURNING gave no row")?)
    }

    async fn key_list(&self) -> anyhow::Result<Vec<ApiKey>> {
        let rows = self.db.fetch(On::Read, KEY_LIST.get(), &[]).await?;
        let mut keys = rows
            .iter()
            .map(key_row)
            .collect::<anyhow::Result<Vec<_>>>()?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    async fn key_by_hash(&self, hash: &str) -> anyhow::Result<Option<ApiKey>> {
        let args = [Value::Text(Some(hash))];
        let rows = self.db.fetch(On::Read, KEY_BY_HASH.get(), &args).await?;
        first(&rows, key_row)
    }

    async fn key_revoke(&self, name: &str) -> anyhow::Result<bool> {
        let name = stored_text(name);
        let args = [Value::Time(Some(Utc::now())), Value::Text(Some(&name))];
        Ok(self.db.execute(On::Write, KEY_REVOKE, &args).await? > 0)
    }
}

/// A claim's end in whole seconds, rounded up, so that it never ends before the time it
/// was given: rounded down, a job's claim for two intervals of one second could run out
/// after little more than one, and a second replica take the job while its holder was
/// still running it (seen in CI as `jobs::a_one_replica_job_runs_on_one_replica_…`).
fn whole_seconds_up(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_ends_no_earlier_than_asked() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let whole = at("2026-12-03T12:00:02Z");
        assert_eq!(whole_seconds_up(whole), whole.timestamp());
        assert_eq!(
            whole_seconds_up(at("2026-12-03T12:00:01.001Z")),
            whole.timestamp()
        );
        assert_eq!(
            whole_seconds_up(at("2026-12-03T12:00:01.999999999Z")),
            whole.timestamp()
        );
    }

    #[test]
    fn every_values_function_fills_its_tables_columns() {
        let entry = NewEntry {
            env: "dev".into(),
            db_name: "d".into(),
            hostname: "h".into(),
            port: 5432,
            active: true,
            notes: None,
            sslmode: Default::default(),
        };
        assert_eq!(registry_values(&entry).len(), REGISTRY.columns.len());
        let record = AuditRecord::default();
        assert_eq!(audit_values(&record).len(), AUDIT.columns.len());
        let key = ApiKey::default();
        assert_eq!(key_values(&key).len(), KEYS.columns.len());
        let cp = chain::Checkpoint::default();
        assert_eq!(checkpoint_values(&cp).len(), CHECKPOINTS.columns.len());
    }

    #[test]
    fn registry_update_sets_all_but_the_key_and_binds_the_values_in_order() {
        assert_eq!(
            REGISTRY_UPDATE.get(),
            "UPDATE db_registry SET hostname = $3, port = $4, active = $5, notes = $6, \
             sslmode = $7 WHERE env = $1 AND db_name = $2"
        );
    }
}

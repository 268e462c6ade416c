//! The service's own data: registry of target databases and the audit log.
//!
//! One interface, [`Store`]; the embedded SQLite backend is the default, PostgreSQL lets
//! several replicas share one store. [`sql`] holds what both backends share: the column
//! list of each table, the statements and the row mappings.

pub mod audit_queue;
pub mod chain;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How to talk TLS to a target, per registry entry; the libpq names.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without certificate checks (libpq's default).
    #[default]
    Prefer,
    /// TLS always, without certificate checks.
    Require,
    /// TLS always, certificate chain and host name verified.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SslMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "unknown sslmode '{other}': use disable, prefer, require or verify-full"
            )),
        }
    }
}

/// A target database as the registry knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RegistryEntry {
    /// Row id.
    pub id: i64,
    /// Environment name (dev, qa, uat, prod, …).
    pub env: String,
    /// Database name on the target server.
    pub db_name: String,
    /// Target server host.
    pub hostname: String,
    /// Target server port.
    pub port: u16,
    /// Inactive entries are listed but never operated on; 1 or 0 as in the original.
    #[serde(serialize_with = "as_int")]
    #[schema(value_type = u8, minimum = 0, maximum = 1)]
    pub active: bool,
    /// Free text.
    pub notes: Option<String>,
    /// When the entry was added (UTC).
    pub created_at: String,
    /// TLS mode towards the target.
    pub sslmode: SslMode,
}

fn as_int<S: serde::Serializer>(b: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(i64::from(*b))
}

/// A registry entry to add.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    /// Environment name.
    pub env: String,
    /// Database name.
    #[serde(alias = "database")]
    pub db_name: String,
    /// Target server host.
    #[serde(alias = "host")]
    pub hostname: String,
    /// Target server port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Whether operations may use it.
    #[serde(default = "default_true")]
    pub active: bool,
    /// Free text.
    #[serde(default)]
    pub notes: Option<String>,
    /// TLS mode towards the target.
    #[serde(default)]
    pub sslmode: SslMode,
}

fn default_port() -> u16 {
    5432
}

fn default_true() -> bool {
    true
}

impl NewEntry {
    /// Checks what PostgreSQL and the registry need; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        // A control character would be stored escaped (see [`stored_text`]) and the entry
        // could then not be found by the name it was given.
        let name_ok = |s: &str| !s.is_empty() && s.len() <= 63 && !s.chars().any(char::is_control);
        if !name_ok(&self.env) || self.env.chars().any(char::is_whitespace) {
            return Err(format!(
                "env '{}' must be 1-63 bytes without spaces",
                self.env
            ));
        }
        if !name_ok(&self.db_name) {
            return Err(format!(
                "database '{}' must be 1-63 bytes without control characters",
                self.db_name
            ));
        }
        let host_ok = !self.hostname.is_empty()
            && self.hostname.len() <= 253
            && self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'));
        if !host_ok {
            return Err(format!(
                "host '{}' is not a host name or address",
                self.hostname
            ));
        }
        if self.port == 0 {
            return Err("port must be 1-65535".into());
        }
        Ok(())
    }
}

/// The phase of an audited operation.
pub mod status {
    /// Written before any DDL runs.
    pub const INTENT: &str = "intent";
    /// The operation completed (including "user already exists").
    pub const SUCCESS: &str = "success";
    /// The operation failed or was refused.
    pub const FAILURE: &str = "failure";
}

/// One audit log row. Never holds a password or a verifier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Row id (0 before it is stored).
    pub id: i64,
    /// When it happened (UTC).
    pub performed_at: DateTime<Utc>,
    /// The request's id, also in the `x-request-id` header.
    pub request_id: String,
    /// Who called.
    pub principal: String,
    /// From where.
    pub client_addr: String,
    /// Target environment.
    pub env: String,
    /// Target database.
    pub db_name: String,
    /// Role concerned.
    pub pg_username: String,
    /// Operation (create:app, reset, find, …).
    pub operation: String,
    /// Profile and version of a create (`app@1a2b3c4d`), else empty.
    pub profile: String,
    /// The hash of the record before it (empty before the chain began).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this record's fields (see [`chain`]).
    pub hash: String,
    /// `intent`, `success` or `failure`.
    pub status: String,
    /// Outcome text (`user created`, `password reset`, …).
    pub detail: String,
    /// Error text shown to the caller, if any.
    pub error: Option<String>,
    /// Time from intent to outcome.
    pub duration_ms: Option<i64>,
}

/// An API key as stored: never the secret, only its SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    /// Row id.
    pub id: i64,
    /// Unique name (`ci-dev`, `portal`, …).
    pub name: String,
    /// Who is responsible for it.
    pub owner: String,
    /// The first characters of the secret, to recognise it in lists.
    pub prefix: String,
    /// SHA-256 (hex) of the whole secret.
    #[serde(skip)]
    pub hash: String,
    /// Scopes as JSON (see `service::scopes`).
    pub scopes: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it stops working, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A console session after single sign-on, as stored: never the id or the CSRF token, only
/// their SHA-256. Times are Unix seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 (hex) of the random session id in the cookie.
    pub id_hash: String,
    /// `oidc:<email or sub>`.
    pub principal: String,
    /// Scopes as JSON, fixed at sign-in.
    pub scopes: String,
    /// SHA-256 (hex) of the session's CSRF token.
    pub csrf_hash: String,
    /// Sign-in time.
    pub created: i64,
    /// Last use.
    pub last_seen: i64,
    /// Absolute end.
    pub expires: i64,
}

/// Which audit records to read: every condition given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// Environment.
    pub env: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// Role name.
    pub username: Option<String>,
    /// Operation; `create` also matches `create:<profile>`.
    pub operation: Option<String>,
    /// Caller.
    pub principal: Option<String>,
    /// Only records with a higher id (paging cursor).
    pub after_id: i64,
    /// At most this many.
    pub limit: u32,
}

/// Failures of the store; `Duplicate` and `NotFound` are the caller's to handle.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A registry entry with the same env and database exists.
    #[error("a registry entry for env='{env}' database='{db_name}' already exists")]
    Duplicate { env: String, db_name: String },
    /// An API key with that name exists.
    #[error("an API key named '{0}' already exists")]
    DuplicateKey(String),
    /// Anything else.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl StoreError {
    /// An insert's failure: `duplicate` when it broke a unique constraint, else `Other`.
    fn on_insert(err: sqlx::Error, duplicate: impl FnOnce() -> Self) -> Self {
        match err {
            sqlx::Error::Database(db) if db.is_unique_violation() => duplicate(),
            other => Self::Other(other.into()),
        }
    }

    /// A registry entry that exists already.
    fn duplicate(e: &NewEntry) -> Self {
        Self::Duplicate {
            env: e.env.clone(),
            db_name: e.db_name.clone(),
        }
    }
}

/// Appends audit batches with blocking calls, as [`Store::audit_append`] does.
pub trait BlockingAudit: Send {
    /// Appends `records` atomically, chained after the last one (their `prev_hash` and
    /// `hash` are set on the way).
    fn append(&mut self, records: &mut [AuditRecord]) -> anyhow::Result<()>;
}

/// The persistence the service needs; SQLite today, PostgreSQL to scale out.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the store answers a trivial query.
    async fn ping(&self) -> anyhow::Result<()>;
    /// All registry entries, ordered by env and database.
    async fn registry_list(&self) -> anyhow::Result<Vec<RegistryEntry>>;
    /// The entry for env and database, active or not.
    async fn registry_get(&self, env: &str, db_name: &str)
    -> anyhow::Result<Option<RegistryEntry>>;
    /// Adds an entry.
    async fn registry_add(&self, entry: &NewEntry) -> Result<RegistryEntry, StoreError>;
    /// Sets `active`; false when no such entry.
    async fn registry_set_active(
        &self,
        env: &str,
        db_name: &str,
        active: bool,
    ) -> anyhow::Result<bool>;
    /// Removes an entry; false when no such entry.
    async fn registry_remove(&self, env: &str, db_name: &str) -> anyhow::Result<bool>;
    /// Appends audit records atomically, chained after the last one (see [`chain`]).
    async fn audit_append(&self, records: &[AuditRecord]) -> anyhow::Result<()>;
    /// A writer of its own for [`Store::audit_append`]'s work where the store's writes are
    /// blocking calls (SQLite): the audit queue then runs it on a thread, with no hop to an
    /// async driver's worker per statement. `None` where writes are async (PostgreSQL).
    fn blocking_audit(&self) -> anyhow::Result<Option<Box<dyn BlockingAudit>>> {
        Ok(None)
    }
    /// The latest records, newest first.
    async fn audit_latest(&self, limit: u32) -> anyhow::Result<Vec<AuditRecord>>;
    /// The store's random key for fingerprints of what callers sent that might be a secret;
    /// `new` becomes it when the store has none yet.
    async fn fingerprint_key(&self, new: &[u8]) -> anyhow::Result<Vec<u8>>;
    /// Stores a new API key; `Duplicate` when the name is taken.
    async fn key_add(&self, key: &ApiKey) -> Result<ApiKey, StoreError>;
    /// Every key, revoked ones included, by name.
    async fn key_list(&self) -> anyhow::Result<Vec<ApiKey>>;
    /// The key whose secret hashes to `hash`.
    async fn key_by_hash(&self, hash: &str) -> anyhow::Result<Option<ApiKey>>;
    /// Marks a key revoked now; false when there is no such unrevoked key.
    async fn key_revoke(&self, name: &str) -> anyhow::Result<bool>;
    /// Changes host, port, notes, sslmode and active of an entry; false when there is none.
    async fn registry_update(&self, entry: &NewEntry) -> anyhow::Result<bool>;
    /// Removes the records older than `before` and stores a checkpoint (signed with `key`)
    /// where the chain continues; nothing when no record is that old.
    async fn audit_prune(
        &self,
        before: DateTime<Utc>,
        key: Option<&[u8]>,
    ) -> anyhow::Result<Option<chain::Checkpoint>>;
    /// The latest checkpoint, if records were ever pruned.
    async fn audit_checkpoint_latest(&self) -> anyhow::Result<Option<chain::Checkpoint>>;
    /// Records matching `filter`, lowest id first, from `filter.after_id` on.
    async fn audit_query(&self, filter: &AuditFilter) -> anyhow::Result<Vec<AuditRecord>>;
    /// Claims `key` in `namespace` for `holder` until `until`: true when the key was free,
    /// its claim had run out, or `holder` already held it (then it is extended). One row per
    /// key, written atomically, so across every replica of the store exactly one holder has
    /// a key at a time: a background job's run, a single-use token's id.
    async fn claim(
        &self,
        namespace: &str,
        key: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> anyhow::Result<bool>;
    /// Forgets the claims that ran out before `before`; how many.
    async fn claims_prune(&self, before: DateTime<Utc>) -> anyhow::Result<u64>;
    /// Stores a new session.
    async fn session_put(&self, session: &Session) -> anyhow::Result<()>;
    /// The session `id_hash` names, unless it ended: its absolute end is at or before `now`,
    /// or it was last used before `idle_since`. A live one is touched (`last_seen = now`) in
    /// the same statement, so every replica sees the same idle clock.
    async fn session_get(
        &self,
        id_hash: &str,
        now: i64,
        idle_since: i64,
    ) -> anyhow::Result<Option<Session>>;
    /// Ends a session on every replica; false when there was none.
    async fn session_delete(&self, id_hash: &str) -> anyhow::Result<bool>;
    /// Forgets the sessions that ended (as [`Store::session_get`] judges); how many.
    async fn sessions_prune(&self, now: i64, idle_since: i64) -> anyhow::Result<u64>;
    /// Records with an id above `after_id`, lowest id first: pages through the whole log.
    async fn audit_after(&self, after_id: i64, limit: u32) -> anyhow::Result<Vec<AuditRecord>> {
        self.audit_query(&AuditFilter {
            after_id,
            limit,
            ..AuditFilter::default()
        })
        .await
    }
}

/// Every text the store keeps, as it keeps it: each control character (NUL, the other C0
/// controls, DEL and the C1 controls) written as `\uXXXX`, everything else as given.
/// PostgreSQL cannot hold NUL, and a log read in a terminal or a spreadsheet must not carry
/// escape sequences or line breaks; the escape still shows what was sent. Backslashes are
/// kept as they are: so the rule is idempotent (text stored once is never escaped again,
/// whichever version wrote it), at the price of `\u0000` reading the same whether a NUL or
/// those six characters were sent. Both backends apply it to every text they write and to
/// every text they look up by, so a name is found by the spelling it was given.
pub fn stored_text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_control() {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`stored_text`] in place, on each of `fields`.
fn store_texts<'a>(fields: impl IntoIterator<Item = &'a mut String>) {
    for s in fields {
        if let Cow::Owned(escaped) = stored_text(s) {
            *s = escaped;
        }
    }
}

impl AuditRecord {
    /// The fields that hold text from callers or targets (not the hex hashes).
    pub(crate) fn texts_mut(&mut self) -> impl Iterator<Item = &mut String> {
        [
            &mut self.request_id,
            &mut self.principal,
            &mut self.client_addr,
            &mut self.env,
            &mut self.db_name,
            &mut self.pg_username,
            &mut self.operation,
            &mut self.profile,
            &mut self.status,
            &mut self.detail,
        ]
        .into_iter()
        .chain(self.error.as_mut())
    }
}

impl NewEntry {
    /// This entry as the store keeps it ([`stored_text`]).
    pub fn to_stored(&self) -> Self {
        let mut e = self.clone();
        store_texts([&mut e.env, &mut e.db_name, &mut e.hostname]);
        store_texts(e.notes.as_mut());
        e
    }
}

impl RegistryEntry {
    /// This entry as the store keeps it ([`stored_text`]).
    pub fn to_stored(&self) -> Self {
        let mut e = self.clone();
        store_texts([&mut e.env, &mut e.db_name, &mut e.hostname]);
        store_texts(e.notes.as_mut());
        e
    }
}

impl ApiKey {
    /// This key as the store keeps it ([`stored_text`]).
    pub fn to_stored(&self) -> Self {
        let mut k = self.clone();
        store_texts([&mut k.name, &mut k.owner, &mut k.prefix, &mut k.scopes]);
        k
    }
}

impl AuditFilter {
    /// This filter spelled as the store keeps text ([`stored_text`]).
    pub fn to_stored(&self) -> Self {
        let mut f = self.clone();
        store_texts(
            [
                &mut f.env,
                &mut f.database,
                &mut f.username,
                &mut f.operation,
                &mut f.principal,
            ]
            .into_iter()
            .flatten(),
        );
        f
    }
}

/// Whether a store URL names a PostgreSQL store.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store a URL names: `sqlite://PATH` (or a bare path) or `postgres://…`.
/// Creates and migrates it.
pub async fn open(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    if is_postgres_url(url) {
        return Ok(Arc::new(postgres::PostgresStore::open(url).await?));
    }
    Ok(Arc::new(sqlite::SqliteStore::open(sqlite_path(url)).await?))
}

/// The file a `sqlite://PATH`, `sqlite:PATH` or bare-path store URL names.
pub fn sqlite_path(url: &str) -> &str {
    url.strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url)
}

/// Shown instead of a password.
const REDACTED: &str = "REDACTED";

/// A store URL fit for logs and error messages: any password, in the user info or as a
/// `password=` query parameter, replaced by `REDACTED`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    // The last '@' ends the user info even when an unencoded password holds '/', '?' or
    // '@'; masking too much is harmless, showing a password is not.
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
            None => rest.to_owned(),
        },
        None => rest.to_owned(),
    };
    let Some((base, query)) = rest.split_once('?') else {
        return format!("{scheme}://{rest}");
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                format!("{key}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{scheme}://{base}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redact_url_hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            redact_url("postgres://pgua:s3cret@db.example.com:5432/pgua?sslmode=require"),
            "postgres://pgua:REDACTED@db.example.com:5432/pgua?sslmode=require"
        );
        assert_eq!(
            redact_url("postgresql://pgua:p%40ss@h/db"),
            "postgresql://pgua:REDACTED@h/db"
        );
    }

    #[test]
    fn redact_url_hides_unencoded_passwords_with_url_delimiters() {
        let shown = redact_url("postgres://u:a/b?c@d@host/db");
        assert_eq!(shown, "postgres://u:REDACTED@host/db");
    }

    #[test]
    fn redact_url_hides_a_password_query_parameter() {
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=disable&password=hunter2"),
            "postgres://u@h/db?sslmode=disable&password=REDACTED"
        );
    }

    #[test]
    fn redact_url_leaves_urls_without_passwords_alone() {
        for url in [
            "sqlite://pg_registry.db",
            "pg_registry.db",
            "postgres://u@h:5432/db",
            "postgres://h/db",
        ] {
            assert_eq!(redact_url(url), url);
        }
    }
}

//! Connections to target databases: one bounded pool per registry entry, admin sessions
//! with timeouts, TLS per entry, and SQLSTATEs turned into domain errors.

pub mod admin;
pub mod catalog;
pub mod tls;
pub mod tx;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;
use crate::store::{RegistryEntry, SslMode};

/// The PostgreSQL role that runs the DDL (`PG_ADMIN_USER` / `PG_ADMIN_PASS`).
#[derive(Clone)]
pub struct AdminCredentials {
    /// Role name.
    pub user: String,
    /// Its password; none when the target trusts the connection.
    pub password: Option<SecretString>,
}

/// Limits for admin sessions on targets.
#[derive(Clone, Debug)]
pub struct TargetSettings {
    /// How long to wait for a new connection.
    pub connect_timeout: Duration,
    /// `statement_timeout` of admin sessions.
    pub statement_timeout: Duration,
    /// `lock_timeout` of admin sessions.
    pub lock_timeout: Duration,
    /// Connections per registry entry at most for calls that need one of their own; the
    /// pool holds one more, which lookups share ([`Targets::shared`]).
    pub pool_size: usize,
    /// Extra CA bundle for `verify-full`.
    pub ssl_root_cert: Option<PathBuf>,
}

impl Default for TargetSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            lock_timeout: Duration::from_secs(5),
            pool_size: 8,
            ssl_root_cert: None,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    hostname: String,
    port: u16,
    db_name: String,
    sslmode: SslMode,
}

/// Pools of admin connections, created on first use of each registry entry.
pub struct Targets {
    admin: AdminCredentials,
    settings: TargetSettings,
    pools: Mutex<HashMap<PoolKey, Pool>>,
    /// Per target, one of its pool's connections that single-statement reads share.
    shared: Mutex<HashMap<PoolKey, Arc<Object>>>,
    /// The last connection error per target, cleared by the next success.
    degraded: Mutex<HashMap<String, String>>,
}

/// One pool's state, for metrics.
pub struct PoolStats {
    /// `host:port/database`.
    pub target: String,
    /// Open connections.
    pub size: usize,
    /// Idle connections.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl PoolKey {
    fn of(entry: &RegistryEntry) -> Self {
        Self {
            hostname: entry.hostname.clone(),
            port: entry.port,
            db_name: entry.db_name.clone(),
            sslmode: entry.sslmode,
        }
    }

    fn label(&self) -> String {
        format!("{}:{}/{}", self.hostname, self.port, self.db_name)
    }
}

impl Targets {
    /// Pools for the given admin role and settings.
    pub fn new(admin: AdminCredentials, settings: TargetSettings) -> Self {
        Self {
            admin,
            settings,
            pools: Mutex::default(),
            shared: Mutex::default(),
            degraded: Mutex::default(),
        }
    }

    /// A connection to the entry's database that concurrent reads share: each of them one
    /// statement outside any transaction (a lookup in `pg_roles`), sent as it comes and
    /// answered in order on the one session (tokio-postgres pipelines the requests of a
    /// shared client), so twenty concurrent lookups neither queue for the pool nor cost a
    /// system call each way apiece. It is taken from the pool (which holds `pool_size` + 1
    /// connections for it) and kept out of it while it is open; a closed one is replaced
    /// at the next read. A lookup waits behind the ones sent before it: only statements
    /// that answer in microseconds go here, never a list or a report.
    pub async fn shared(&self, entry: &RegistryEntry) -> Result<Arc<Object>, Error> {
        let key = PoolKey::of(entry);
        let open = |shared: &HashMap<PoolKey, Arc<Object>>| {
            shared.get(&key).filter(|c| !c.is_closed()).cloned()
        };
        if let Some(conn) = open(&self.shared.lock().expect("shared map poisoned")) {
            return Ok(conn);
        }
        let conn = Arc::new(self.connect(entry).await?);
        let mut shared = self.shared.lock().expect("shared map poisoned");
        // Of reads that raced to open it, the first one's connection stays shared.
        Ok(open(&shared).unwrap_or_else(|| {
            shared.insert(key, conn.clone());
            conn
        }))
    }

    /// Every pool's state.
    pub fn pool_stats(&self) -> Vec<PoolStats> {
        let pools = self.pools.lock().expect("pool map poisoned");
        pools
            .iter()
            .map(|(key, pool)| {
                let s = pool.status();
                PoolStats {
                    target: key.label(),
                    size: s.size,
                    available: s.available,
                    waiting: s.waiting,
                }
            })
            .collect()
    }

    /// Targets whose last connection attempt failed, with the error.
    pub fn degraded(&self) -> Vec<(String, String)> {
        let mut out: Vec<_> = self
            .degraded
            .lock()
            .expect("degraded map poisoned")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.sort();
        out
    }

    /// The admin role's name; it is a protected role.
    pub fn admin_user(&self) -> &str {
        &self.admin.user
    }

    /// A pooled admin connection to the entry's database.
    pub async fn connect(&self, entry: &RegistryEntry) -> Result<Object, Error> {
        let pool = self.pool(entry)?;
        let label = || format!("{}:{}/{}", entry.hostname, entry.port, entry.db_name);
        let result = pool.get().await;
        {
            let mut degraded = self.degraded.lock().expect("degraded map poisoned");
            match &result {
                Ok(_) if degraded.is_empty() => {}
                Ok(_) => {
                    degraded.remove(&label());
                }
                Err(e) => {
                    metrics::counter!("pgua_target_connect_errors_total", "target" => label())
                        .increment(1);
                    degraded.insert(label(), e.to_string());
                }
            }
        }
        result.map_err(|e| match e {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) => Error::TargetUnavailable(format!(
                "no connection to {}:{} within the timeout",
                entry.hostname, entry.port
            )),
            other => Error::TargetUnavailable(other.to_string()),
        })
    }

    fn pool(&self, entry: &RegistryEntry) -> Result<Pool, Error> {
        let key = PoolKey::of(entry);
        let mut pools = self.pools.lock().expect("pool map poisoned");
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let pool = self.build_pool(&key).map_err(Error::Internal)?;
        pools.insert(key, pool.clone());
        Ok(pool)
    }

    /// How every admin session to this target connects: pooled or probed.
    fn pg_config(&self, key: &PoolKey) -> tokio_postgres::Config {
        let s = &self.settings;
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&key.hostname)
            .port(key.port)
            .dbname(&key.db_name)
            .user(&self.admin.user)
            .application_name("pg-user-api")
            .connect_timeout(s.connect_timeout)
            .options(format!(
                "-c statement_timeout={} -c lock_timeout={}",
                s.statement_timeout.as_millis(),
                s.lock_timeout.as_millis()
            ))
            .ssl_mode(match key.sslmode {
                SslMode::Disable => tokio_postgres::config::SslMode::Disable,
                SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
                SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            });
        if let Some(pw) = &self.admin.password {
            cfg.password(pw.expose_secret());
        }
        cfg
    }

    fn tls(&self, key: &PoolKey) -> anyhow::Result<MakeRustlsConnect> {
        Ok(MakeRustlsConnect::new(match key.sslmode {
            SslMode::VerifyFull => tls::verified(self.settings.ssl_root_cert.as_deref())?,
            _ => tls::unverified()?,
        }))
    }

    fn build_pool(&self, key: &PoolKey) -> anyhow::Result<Pool> {
        let s = &self.settings;
        let manager = Manager::from_config(
            self.pg_config(key),
            self.tls(key)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Ok(Pool::builder(manager)
            .max_size(s.pool_size + 1)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(s.connect_timeout))
            .wait_timeout(Some(s.statement_timeout))
            .build()?)
    }
}

/// True when PostgreSQL says the object being created exists already (42710, or 23505 when
/// two creates race past the catalog check into the unique index).
pub fn is_duplicate(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::DUPLICATE_OBJECT || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// `?` on a target's error gives the domain error the caller should see: the one place
/// where [`classify`] is applied.
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        classify(&e)
    }
}

/// Turns a PostgreSQL error into the domain error the caller should see.
pub fn classify(e: &tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        // Connection-level: refused, reset, TLS failure, timeout. The text holds no secret.
        return Error::TargetUnavailable(e.to_string());
    };
    let code = db.code();
    let msg = db.message().to_owned();
    if *code == SqlState::QUERY_CANCELED {
        Error::TargetTimeout(format!(
            "statement timeout reached, nothing was changed ({msg})"
        ))
    } else if *code == SqlState::LOCK_NOT_AVAILABLE {
        Error::TargetTimeout(format!("lock timeout reached, nothing was changed ({msg})"))
    } else if *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    {
        Error::TargetRefused("the target rejected the admin role's credentials".into())
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        Error::TargetRefused(format!("the admin role lacks a privilege: {msg}"))
    } else if code.code().starts_with("53")
        || code.code().starts_with("57P")
        || code.code().starts_with("08")
    {
        Error::TargetUnavailable(msg)
    } else {
        Error::TargetRefused(format!("{msg} (SQLSTATE {})", code.code()))
    }
}

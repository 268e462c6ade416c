//! Typed configuration: TOML file (`--config` / `PGUA_CONFIG`), then environment, then flags.
//!
//! Secrets never live in the file: API and admin passwords come from the environment
//! (`PG_API_PASS`, `PG_ADMIN_PASS`) or from files those variables name (`…_FILE`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::auth::Scopes;
use crate::auth::oidc::OidcConfig;
use crate::notify::NotifyConfig;
use crate::plan::profile::{Attribute, ProfileConfig};
use crate::plan::{NamePolicy, Profiles};
use crate::target::{AdminCredentials, TargetSettings};

/// Default listen address, as the original's Flask port.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:5000";
/// Default store: the original's SQLite file name.
pub const DEFAULT_STORE: &str = "sqlite://pg_registry.db";

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the HTTP server listens on (`PGUA_LISTEN`, `--listen`).
    pub listen: String,
    /// Store URL: `sqlite://PATH` or `postgres://…` (`PGUA_STORE`, `--store`).
    pub store: String,
    /// `text` or `json` (`PGUA_LOG_FORMAT`, `--log-format`).
    pub log_format: LogFormat,
    /// How admin sessions on target databases behave.
    pub targets: TargetsConfig,
    /// What callers may do and name.
    pub policy: PolicyConfig,
    /// User profiles by endpoint name, laid over the built-in ones (see
    /// `src/plan/builtin_profiles.toml` for the format).
    pub profiles: BTreeMap<String, ProfileConfig>,
    /// Who may call the API besides API keys.
    pub auth: AuthConfig,
    /// How long audit records are kept.
    pub audit: AuditConfig,
    /// Notifications: delivery settings and channels (`[notify]`, `[[notify.channels]]`).
    pub notify: NotifyConfig,
    /// Limits on HTTP connections and request heads.
    pub http: HttpConfig,
}

/// `[http]`: what one client connection may hold of the server's memory, and how many.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request line and headers, in bytes (at least 8192): a larger head gets 431
    /// and its connection is closed. Each connection's read buffer grows to at most this.
    pub max_header_bytes: usize,
    /// Seconds a client has to send a whole request head, idle keep-alive time included;
    /// then its connection is closed.
    pub header_read_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Threads that run requests (the runtime's workers). One by default: requests mostly
    /// wait for PostgreSQL, and the CPU-heavy work (verifiers, argon2, the audit log's
    /// writes) runs on threads of its own, so one worker serves some 15,000 finds a second;
    /// a second worker added about 10 µs of CPU to each find and 80 µs to each create on two
    /// cores, in wake-ups between the two (README › *Performance*). More help only where
    /// many large lists are served at once.
    pub worker_threads: usize,
}

/// The most runtime workers `http.worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 64;

/// hyper's smallest read buffer: a head limit below it cannot be enforced.
pub const MIN_HEADER_BYTES: usize = 8192;

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            header_read_timeout_secs: 10,
            max_connections: 256,
            worker_threads: 1,
        }
    }
}

/// `[audit]`: retention. Pruning leaves a checkpoint, signed with `PGUA_AUDIT_KEY` (or the
/// file `PGUA_AUDIT_KEY_FILE` names) when set, so the rest of the chain stays verifiable.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Records older than this many days are pruned hourly by the server; none keeps all.
    pub retention_days: Option<u32>,
}

/// The key that signs audit checkpoints, if configured.
pub fn audit_key() -> anyhow::Result<Option<SecretString>> {
    secret_from_env("PGUA_AUDIT_KEY")
}

/// `[auth]`: Basic users and failed-authentication limits (API keys live in the store).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Accept `PG_API_USER` / `PG_API_PASS` (all scopes), as the original did.
    pub basic_enabled: bool,
    /// Extra Basic users with argon2 hashes (`pg-user-api hash-password`) and scopes.
    pub users: Vec<BasicUser>,
    /// Failures of one claimed principal from one address before its attempts slow down.
    pub slowdown_after_failures: u32,
    /// Failures of one claimed principal from one address before it gets 429 there.
    pub lockout_after_failures: u32,
    /// Failures of one claimed principal from any address before it gets 429 everywhere.
    pub principal_lockout_after_failures: u32,
    /// How long a lockout lasts, and the window failures are counted in, in seconds.
    pub lockout_secs: u64,
    /// Seconds per window of refusal records: past the first few, refusals are summed into
    /// one record per address and window.
    pub failure_summary_secs: u64,
    /// Proxies (CIDRs or addresses) whose client-address header is believed.
    pub trusted_proxies: Vec<Network>,
    /// The header trusted proxies name the client in.
    pub client_address_header: ClientAddressHeader,
    /// JWT bearer tokens from trusted issuers (`[[auth.jwt.issuers]]`, `[[auth.jwt.bindings]]`).
    pub jwt: crate::auth::jwt::JwtConfig,
    /// Single sign-on for the web console (`[auth.oidc]`); off when absent.
    pub oidc: Option<OidcConfig>,
}

/// Where trusted proxies put the client's address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddressHeader {
    /// `X-Forwarded-For: client, proxy1, …` (nginx, HAProxy, cloud load balancers).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// A network in CIDR notation, or one address, as `auth.trusted_proxies` lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Network(pub ipnet::IpNet);

impl TryFrom<String> for Network {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let s = s.trim();
        s.parse::<ipnet::IpNet>()
            .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map(Network)
            .map_err(|_| format!("'{s}' is neither a CIDR nor an address"))
    }
}

impl From<Network> for String {
    fn from(n: Network) -> Self {
        n.0.to_string()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            basic_enabled: true,
            users: Vec::new(),
            slowdown_after_failures: 5,
            lockout_after_failures: 20,
            principal_lockout_after_failures: 100,
            lockout_secs: 300,
            failure_summary_secs: 60,
            trusted_proxies: Vec::new(),
            client_address_header: ClientAddressHeader::default(),
            jwt: Default::default(),
            oidc: None,
        }
    }
}

/// `[[auth.users]]`: one extra Basic user.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicUser {
    /// User name.
    pub name: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// What the user may do.
    pub scopes: Scopes,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            store: DEFAULT_STORE.into(),
            log_format: LogFormat::Text,
            targets: TargetsConfig::default(),
            policy: PolicyConfig::default(),
            profiles: BTreeMap::new(),
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            notify: NotifyConfig::default(),
            http: HttpConfig::default(),
        }
    }
}

/// `[targets]`: admin sessions on target databases.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetsConfig {
    /// Seconds to wait for a connection to a target (the original waited 60).
    pub connect_timeout_secs: u64,
    /// `statement_timeout` of admin sessions, in milliseconds.
    pub statement_timeout_ms: u64,
    /// `lock_timeout` of admin sessions, in milliseconds.
    pub lock_timeout_ms: u64,
    /// Admin connections per registry entry at most for calls that need one of their own,
    /// plus one that lookups share (see `target::Targets::shared`).
    pub pool_size: usize,
    /// Extra PEM CA bundle trusted for `sslmode = verify-full`.
    pub ssl_root_cert: Option<PathBuf>,
    /// Servers worked on at once when one call names several targets.
    pub fan_out_parallelism: usize,
}

impl Default for TargetsConfig {
    fn default() -> Self {
        let d = TargetSettings::default();
        Self {
            connect_timeout_secs: d.connect_timeout.as_secs(),
            statement_timeout_ms: d.statement_timeout.as_millis() as u64,
            lock_timeout_ms: d.lock_timeout.as_millis() as u64,
            pool_size: d.pool_size,
            ssl_root_cert: None,
            fan_out_parallelism: 4,
        }
    }
}

impl TargetsConfig {
    /// The settings the target pools use.
    pub fn settings(&self) -> TargetSettings {
        TargetSettings {
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            statement_timeout: Duration::from_millis(self.statement_timeout_ms),
            lock_timeout: Duration::from_millis(self.lock_timeout_ms),
            pool_size: self.pool_size,
            ssl_root_cert: self.ssl_root_cert.clone(),
        }
    }
}

/// `[policy]`: names and places callers may use.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Environments that count as production (no individual developer accounts there).
    pub production_envs: Vec<String>,
    /// Allow `devqa` and `devlead` users in production environments anyway.
    pub developer_accounts_in_production: bool,
    /// Regular expression every folded user and schema name must match.
    pub name_pattern: String,
    /// Roles nobody may create, reset, alter or drop, beyond the built-in list.
    pub protected_roles: Vec<String>,
    /// Privileged role attributes (SUPERUSER, REPLICATION, BYPASSRLS) profiles may set.
    pub privileged_attributes: Vec<Attribute>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            production_envs: vec!["prod".into()],
            developer_accounts_in_production: false,
            name_pattern: crate::plan::naming::DEFAULT_NAME_PATTERN.into(),
            protected_roles: Vec::new(),
            privileged_attributes: Vec::new(),
        }
    }
}

impl Config {
    /// Reads a config file; unknown keys and bad values are errors with line numbers.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        config.validate()?;
        Ok(config)
    }

    /// The file's settings, or the defaults when no file is named.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        match path {
            Some(p) => Self::from_file(p),
            None => Ok(Self::default()),
        }
    }

    /// The built-in profiles with this configuration's laid over them, validated.
    pub fn profiles(&self) -> Result<Profiles, String> {
        let names = NamePolicy::new(&self.policy.name_pattern).map_err(|e| e.to_string())?;
        Profiles::load(&self.profiles, &names, &self.policy.privileged_attributes)
    }

    /// Checks what serde cannot: the name pattern compiles, numbers are sane, profiles hold.
    pub fn validate(&self) -> anyhow::Result<()> {
        NamePolicy::new(&self.policy.name_pattern)
            .with_context(|| format!("policy.name_pattern '{}'", self.policy.name_pattern))?;
        self.profiles().map_err(anyhow::Error::msg)?;
        if self.targets.pool_size == 0 {
            bail!("targets.pool_size must be at least 1");
        }
        if self.targets.connect_timeout_secs == 0 {
            bail!("targets.connect_timeout_secs must be at least 1");
        }
        if self.http.max_header_bytes < MIN_HEADER_BYTES {
            bail!("http.max_header_bytes must be at least {MIN_HEADER_BYTES}");
        }
        if self.http.header_read_timeout_secs == 0 {
            bail!("http.header_read_timeout_secs must be at least 1");
        }
        if self.http.max_connections == 0 {
            bail!("http.max_connections must be at least 1");
        }
        if !(1..=MAX_WORKER_THREADS).contains(&self.http.worker_threads) {
            bail!("http.worker_threads must be 1 to {MAX_WORKER_THREADS}");
        }
        self.notify.validate()?;
        self.auth.jwt.validate().map_err(anyhow::Error::msg)?;
        if let Some(oidc) = &self.auth.oidc {
            oidc.validate()?;
        }
        Ok(())
    }
}

/// Reads a secret from `VAR`, or from the file `VAR_FILE` names (trailing newline dropped).
pub fn secret_from_env(var: &str) -> anyhow::Result<Option<SecretString>> {
    if let Ok(v) = std::env::var(var)
        && !v.is_empty()
    {
        return Ok(Some(SecretString::from(v)));
    }
    let file_var = format!("{var}_FILE");
    if let Ok(path) = std::env::var(&file_var) {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("reading {file_var}={path}"))?;
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            bail!("{file_var}={path} is empty");
        }
        return Ok(Some(SecretString::from(text.to_owned())));
    }
    Ok(None)
}

/// The OIDC client secret: `PGUA_OIDC_CLIENT_SECRET`, or the file
/// `PGUA_OIDC_CLIENT_SECRET_FILE` names; required when `[auth.oidc]` is configured.
pub fn oidc_client_secret() -> anyhow::Result<SecretString> {
    secret_from_env("PGUA_OIDC_CLIENT_SECRET")?.context(
        "[auth.oidc] is configured but PGUA_OIDC_CLIENT_SECRET (or PGUA_OIDC_CLIENT_SECRET_FILE) \
         is not set; the client secret is never read from the config file",
    )
}

/// Who may call the API over HTTP Basic (`PG_API_USER` / `PG_API_PASS`).
#[derive(Clone)]
pub struct ApiCredentials {
    /// User name.
    pub user: String,
    /// Password.
    pub password: SecretString,
}

impl ApiCredentials {
    /// From the environment; the server refuses to start without them.
    pub fn from_env() -> anyhow::Result<Self> {
        let user = std::env::var("PG_API_USER").unwrap_or_default();
        let password = secret_from_env("PG_API_PASS")?;
        match (user.is_empty(), password) {
            (false, Some(password)) => Ok(Self { user, password }),
            _ => bail!(
                "refusing to start without API credentials: set PG_API_USER and PG_API_PASS \
                 (or PG_API_PASS_FILE); there is no built-in default"
            ),
        }
    }
}

impl AdminCredentials {
    /// From `PG_ADMIN_USER` and `PG_ADMIN_PASS` / `PG_ADMIN_PASS_FILE`.
    pub fn from_env() -> anyhow::Result<Self> {
        let user = std::env::var("PG_ADMIN_USER").unwrap_or_default();
        if user.is_empty() {
            bail!("PG_ADMIN_USER is not set: name the PostgreSQL role that runs the DDL");
        }
        Ok(Self {
            user,
            password: secret_from_env("PG_ADMIN_PASS")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_rejected_with_a_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:1\"\n[policy]\nprod_envs = []\n",
        )
        .unwrap();
        let err = format!("{:#}", Config::from_file(&path).unwrap_err());
        assert!(err.contains("prod_envs") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let c: Config = toml::from_str("[targets]\npool_size = 3\n").unwrap();
        assert_eq!(c.targets.pool_size, 3);
        assert_eq!(c.targets.connect_timeout_secs, 5);
        assert_eq!(c.policy.production_envs, ["prod"]);
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        let c: Config =
            toml::from_str("[auth]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.1\"]\n").unwrap();
        let shown: Vec<String> = c
            .auth
            .trusted_proxies
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.1/32"]);
        let err = toml::from_str::<Config>("[auth]\ntrusted_proxies = [\"nonsense\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'nonsense' is neither a CIDR nor an address"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_name_pattern_is_rejected() {
        let mut c = Config::default();
        c.policy.name_pattern = "([".into();
        assert!(c.validate().is_err());
    }
}

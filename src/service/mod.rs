//! Operations: what happens, in what order. Resolve the target, check policy, write the
//! audit intent, run the plan, write the outcome.

pub mod adopt;
pub mod audit;
pub mod doctor;
pub mod fanout;
pub mod grants;
pub mod jobs;
pub mod keys;
pub mod lifecycle;
pub mod ops;
pub mod params;
pub mod passwords;
pub mod registry;
pub mod reminders;
pub mod users;

use std::sync::Arc;

use crate::config::{ApiCredentials, Config};
use crate::error::{Error, Result};
use crate::notify::Notifier;
use crate::plan::admin::{AdminFacts, Missing};
use crate::plan::{NamePolicy, Profile, Profiles, RoleName};
use crate::store::audit_queue::AuditQueue;
use crate::store::{RegistryEntry, Store};
use crate::target::{AdminCredentials, Targets};
use registry::RegistryCache;

/// Roles that exist on managed clouds and must never be touched.
const CLOUD_ADMIN_ROLES: &[&str] = &[
    "rds_superuser",
    "rds_admin",
    "rdsadmin",
    "rds_replication",
    "rds_password",
    "rdstopmgr",
    "rds_iam",
    "cloudsqlsuperuser",
    "cloudsqladmin",
    "cloudsqlagent",
    "cloudsqlreplica",
    "cloudsqlimportexport",
    "azure_pg_admin",
    "azuresu",
    "azure_superuser",
    "alloydbsuperuser",
    "alloydbadmin",
    "supabase_admin",
    "neon_superuser",
    "cloud_admin",
];

/// Everything an operation needs; shared by all requests.
pub struct App {
    /// Registry and audit log.
    pub store: Arc<dyn Store>,
    /// Group-committing writer of audit records.
    pub audit: AuditQueue,
    /// Recent snapshot of the registry.
    pub registry: RegistryCache,
    /// Admin connection pools.
    pub targets: Targets,
    /// Names and environments policy.
    pub policy: Policy,
    /// The compatibility Basic user (all scopes), unless turned off.
    pub api: Option<ApiCredentials>,
    /// Extra Basic users from configuration.
    pub basic_users: keys::BasicUsers,
    /// Failed-authentication limits per client address and claimed principal.
    pub throttle: keys::Throttle,
    /// Fingerprints under the store's key, recorded instead of what might be a secret.
    pub fingerprints: keys::Fingerprints,
    /// Peers whose client-address header is believed, and that header.
    pub proxies: (Vec<ipnet::IpNet>, crate::config::ClientAddressHeader),
    /// User profiles: built-in and configured.
    pub profiles: Profiles,
    /// Servers worked on at once by a call with several targets.
    pub fan_out_parallelism: usize,
    /// Notification queues and channels.
    pub notifier: Notifier,
    /// Background jobs, and this replica's name as the holder of their claims.
    pub jobs: jobs::Jobs,
    /// Verifier of JWT bearer tokens from the configured issuers.
    pub jwt: crate::auth::jwt::Verifier,
    /// Single sign-on for the console, when `[auth.oidc]` is configured.
    pub sso: Option<crate::auth::oidc::RelyingParty>,
}

impl App {
    /// Wires the parts together from configuration; reads (or makes) the store's
    /// fingerprint key.
    pub async fn open(
        config: &Config,
        store: Arc<dyn Store>,
        api: Option<ApiCredentials>,
        admin: AdminCredentials,
    ) -> anyhow::Result<Self> {
        let fingerprint_key = keys::fingerprint_key(store.as_ref())
            .await
            .map_err(|e| e.context("reading the store's fingerprint key"))?;
        let names = NamePolicy::new(&config.policy.name_pattern)?;
        let profiles = config.profiles().map_err(anyhow::Error::msg)?;
        let mut protected = config.policy.protected_roles.clone();
        protected.push(admin.user.to_ascii_lowercase());
        Ok(Self {
            audit: AuditQueue::spawn(store.clone())?,
            registry: RegistryCache::default(),
            store,
            targets: Targets::new(admin, config.targets.settings()),
            policy: Policy {
                names,
                production_envs: config.policy.production_envs.clone(),
                developer_accounts_in_production: config.policy.developer_accounts_in_production,
                protected,
            },
            api: api.filter(|_| config.auth.basic_enabled),
            basic_users: keys::BasicUsers::new(&config.auth.users)?,
            throttle: keys::Throttle::new(&config.auth),
            fingerprints: keys::Fingerprints::new(fingerprint_key),
            proxies: (
                config.auth.trusted_proxies.iter().map(|n| n.0).collect(),
                config.auth.client_address_header,
            ),
            profiles,
            fan_out_parallelism: config.targets.fan_out_parallelism.max(1),
            notifier: Notifier::new(&config.notify)?,
            jobs: jobs::Jobs::default(),
            jwt: crate::auth::jwt::Verifier::new(&config.auth.jwt)?,
            sso: match &config.auth.oidc {
                Some(oidc) => {
                    let secret = match &oidc.client_secret {
                        Some(s) => s.clone(),
                        None => crate::config::oidc_client_secret()?,
                    };
                    Some(crate::auth::oidc::RelyingParty::new(oidc, secret)?)
                }
                None => None,
            },
        })
    }

    /// The active registry entry for env and database, or the original's 404 message.
    /// Reads a snapshot at most [`registry::REGISTRY_CACHE_TTL`] old.
    pub async fn resolve(&self, env: &str, database: &str) -> Result<RegistryEntry> {
        match self
            .registry
            .get(self.store.as_ref(), env, database)
            .await
            .map_err(Error::StoreUnavailable)?
        {
            Some(entry) if entry.active => Ok(entry),
            _ => Err(Error::NoRegistryEntry {
                env: env.to_owned(),
                database: database.to_owned(),
            }),
        }
    }
}

/// What callers may name and where.
pub struct Policy {
    /// The pattern names must match.
    pub names: NamePolicy,
    /// Environments counted as production.
    pub production_envs: Vec<String>,
    /// Whether developer accounts may exist in production.
    pub developer_accounts_in_production: bool,
    /// Configured protected roles plus the admin role.
    pub protected: Vec<String>,
}

impl Policy {
    /// Refuses roles nobody may create or change through the API. Superusers are refused
    /// separately, from the target's catalog.
    pub fn check_not_protected(&self, role: &RoleName) -> Result<()> {
        let name = role.as_str();
        let why = if name == "postgres" {
            Some("the bootstrap superuser")
        } else if name.starts_with("pg_") {
            Some("a PostgreSQL system role (pg_ prefix)")
        } else if CLOUD_ADMIN_ROLES.contains(&name) {
            Some("a cloud provider's administrative role")
        } else if self.protected.iter().any(|p| p.eq_ignore_ascii_case(name)) {
            Some("protected by configuration")
        } else if name.starts_with(crate::plan::groups::GROUP_PREFIX) {
            Some("the pgua_ prefix is reserved for the group roles pg-user-api manages")
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::Forbidden(format!(
                "role '{name}' is protected ({why}); pg-user-api will not touch it"
            ))),
            None => Ok(()),
        }
    }

    /// Refuses a profile outside its environments, and developer profiles in production
    /// unless configured.
    pub fn check_profile_env(&self, profile: &Profile, env: &str) -> Result<()> {
        if !profile.environments.is_empty() && !profile.environments.iter().any(|e| e == env) {
            return Err(Error::Forbidden(format!(
                "{} users are not allowed in environment '{env}' (only {})",
                profile.name,
                profile.environments.join(", ")
            )));
        }
        let production = self.production_envs.iter().any(|e| e == env);
        if production && profile.non_production_only && !self.developer_accounts_in_production {
            return Err(Error::Forbidden(format!(
                "{} users are not allowed in production environment '{env}'",
                profile.name
            )));
        }
        Ok(())
    }
}

/// Who is calling, for the audit log and scope checks.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Request id (also in `x-request-id`).
    pub request_id: String,
    /// Authenticated principal.
    pub principal: String,
    /// Client address.
    pub client_addr: String,
    /// What the principal may do (none before authentication).
    pub scopes: Option<std::sync::Arc<crate::auth::Scopes>>,
    /// The verified token behind a JWT caller (issuer, `sub`, `jti`, binding).
    pub identity: Option<crate::auth::Identity>,
}

impl Caller {
    /// The principal as audit records show it: a JWT caller's with its token's identity,
    /// `github:acme/web@refs/heads/main (jwt iss=… sub=… jti=… binding=…)`.
    pub fn audit_principal(&self) -> String {
        match &self.identity {
            Some(i) => format!("{} ({})", self.principal, i.audit_text()),
            None => self.principal.clone(),
        }
    }
}

impl Caller {
    /// Refuses with 403 when the caller's scopes do not cover the call on `target` (its
    /// environment or comma-separated environments; `None` for calls on no target).
    pub fn authorize(
        &self,
        op: crate::auth::Operation,
        target: Option<&params::Target>,
        profile: Option<&str>,
    ) -> Result<()> {
        let envs = target.map_or("", |t| t.env.as_str());
        match &self.scopes {
            Some(s) => s.check(&self.principal, op, envs, profile),
            None => Err(Error::Forbidden("not authenticated".into())),
        }
    }
}

/// Refuses (403, nothing changed) when the admin role lacks anything, naming each missing
/// privilege and the statement that gives it.
fn refuse_missing(facts: &AdminFacts, missing: impl IntoIterator<Item = Missing>) -> Result<()> {
    let messages: Vec<String> = missing
        .into_iter()
        .map(|m| m.message(&facts.role))
        .collect();
    if messages.is_empty() {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "nothing was changed: {}",
        messages.join(" ")
    )))
}

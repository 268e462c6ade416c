//! Who may call what: scopes, API keys (stored as SHA-256 only) and the principals that
//! authentication produces.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::input::Input;
use crate::error::{Error, Result};
use crate::store::{ApiKey, Store, StoreError};

/// When a new key expires: `expires` (RFC 3339 or a date) or `days` from now; neither: never.
pub fn expiry(input: &Input) -> Result<Option<DateTime<Utc>>> {
    if input.get("expires").is_some() && input.get("days").is_some() {
        return Err(Error::Invalid("give expires or days, not both".into()));
    }
    let days = input.number("days", 1..=3650u32)?;
    let later = days.map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    Ok(input.time("expires")?.or(later))
}

/// Every API key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "pgua_";

/// Operations a scope can allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Registry list, profiles, find, all, privileges.
    Read,
    /// Create users (of the allowed profiles).
    Create,
    /// Reset passwords.
    Reset,
    /// Grant, revoke, search-path, alter.
    Grant,
    /// Lock, unlock, expire, renew.
    Lock,
    /// Drop users.
    Drop,
    /// Change the registry and manage API keys.
    RegistryAdmin,
    /// Read and export the audit log.
    AuditRead,
}

impl Operation {
    /// All operations.
    pub const ALL: [Operation; 8] = [
        Operation::Read,
        Operation::Create,
        Operation::Reset,
        Operation::Grant,
        Operation::Lock,
        Operation::Drop,
        Operation::RegistryAdmin,
        Operation::AuditRead,
    ];

    /// The kebab-case name used in scopes and messages.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Create => "create",
            Operation::Reset => "reset",
            Operation::Grant => "grant",
            Operation::Lock => "lock",
            Operation::Drop => "drop",
            Operation::RegistryAdmin => "registry-admin",
            Operation::AuditRead => "audit-read",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == s.trim())
    }
}

/// What a principal may do: which environments, operations and profiles (`*`: all).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scopes {
    /// Environments, or `["*"]`.
    pub environments: Vec<String>,
    /// Operations.
    pub operations: Vec<Operation>,
    /// Profiles `create` may use, or `["*"]`.
    pub profiles: Vec<String>,
}

impl Scopes {
    /// Everything: the compatibility Basic user.
    pub fn all() -> Self {
        Self {
            environments: vec!["*".into()],
            operations: Operation::ALL.to_vec(),
            profiles: vec!["*".into()],
        }
    }

    fn allows(list: &[String], item: &str) -> bool {
        list.iter().any(|x| x == "*" || x == item)
    }

    /// Whether an environment is in scope.
    pub fn allows_env(&self, env: &str) -> bool {
        Self::allows(&self.environments, env)
    }

    /// Refuses with 403 naming the missing scope: the operation, any environment the call
    /// names (every one of a list), or the profile of a create.
    pub fn check(
        &self,
        who: &str,
        op: Operation,
        input: &Input,
        profile: Option<&str>,
    ) -> Result<()> {
        let missing = if !self.operations.contains(&op) {
            Some(format!("operation '{}'", op.name()))
        } else if let Some(env) = input
            .get("env")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .find(|e| !e.is_empty() && !self.allows_env(e))
        {
            Some(format!("environment '{env}'"))
        } else {
            profile
                .filter(|p| !Self::allows(&self.profiles, p))
                .map(|p| format!("profile '{p}'"))
        };
        match missing {
            Some(what) => Err(Error::Forbidden(format!(
                "'{who}' lacks the scope for {what}"
            ))),
            None => Ok(()),
        }
    }

    /// Reads scopes from call parameters: `environments`, `operations`, `profiles`, each a
    /// comma-separated list (`*` for all; operations default to `read`).
    pub fn from_input(input: &Input) -> Result<Self> {
        let list = |name: &str, default: &str| -> Vec<String> {
            input
                .get(name)
                .unwrap_or(default)
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let operations = list("operations", "read")
            .iter()
            .map(|o| {
                if o == "*" {
                    return Ok(Operation::ALL.to_vec());
                }
                Operation::parse(o).map(|o| vec![o]).ok_or_else(|| {
                    let names: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
                    Error::Invalid(format!(
                        "unknown operation '{o}' (known: {})",
                        names.join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?
            .concat();
        let environments = list("environments", "");
        if environments.is_empty() {
            return Err(Error::MissingParam("environments".into()));
        }
        Ok(Self {
            environments,
            operations,
            profiles: list("profiles", "*"),
        })
    }
}

/// An authenticated caller and what it may do.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Basic user name, or `key:<name>` for an API key.
    pub name: String,
    /// Its scopes.
    pub scopes: Scopes,
}

/// SHA-256 (hex) of a key secret; keys are 256 random bits, so no slow hash is needed.
pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new key secret: the prefix and 256 bits from the OS CSPRNG.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Creates a key; returns it and its secret, which is never stored nor shown again.
pub async fn create(
    store: &dyn Store,
    name: &str,
    owner: &str,
    scopes: &Scopes,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(ApiKey, String)> {
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !name_ok {
        return Err(Error::Invalid(format!(
            "key name '{name}' must be 1-63 letters, digits, '-', '_' or '.'"
        )));
    }
    if owner.trim().is_empty() {
        return Err(Error::MissingParam("owner".into()));
    }
    let secret = new_secret();
    let key = ApiKey {
        id: 0,
        name: name.to_owned(),
        owner: owner.trim().to_owned(),
        prefix: secret[..KEY_PREFIX.len() + 6].to_owned(),
        hash: hash_secret(&secret),
        scopes: serde_json::to_string(scopes).map_err(|e| Error::Internal(e.into()))?,
        created_at: Utc::now(),
        expires_at,
        revoked_at: None,
    };
    match store.key_add(&key).await {
        Ok(stored) => Ok((stored, secret)),
        Err(StoreError::DuplicateKey(n)) => Err(Error::Conflict(format!(
            "an API key named '{n}' already exists"
        ))),
        Err(other) => Err(Error::Internal(other.into())),
    }
}

/// Why a bearer token was refused (logged and audited; the caller only sees 401).
#[derive(Debug, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key has that secret.
    Unknown,
    /// The key was revoked.
    Revoked,
    /// The key expired.
    Expired,
}

/// The principal of a bearer token, read from the store on every call so that a
/// revocation takes effect at once on every replica.
pub async fn authenticate(
    store: &dyn Store,
    token: &str,
) -> anyhow::Result<std::result::Result<Principal, (KeyRefusal, String)>> {
    let Some(key) = store.key_by_hash(&hash_secret(token)).await? else {
        return Ok(Err((KeyRefusal::Unknown, String::new())));
    };
    if key.revoked_at.is_some() {
        return Ok(Err((KeyRefusal::Revoked, key.name)));
    }
    if key.expires_at.is_some_and(|t| t <= Utc::now()) {
        return Ok(Err((KeyRefusal::Expired, key.name)));
    }
    let scopes: Scopes = serde_json::from_str(&key.scopes)?;
    Ok(Ok(Principal {
        name: format!("key:{}", key.name),
        scopes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> Input {
        Input::from_pairs(pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())))
    }

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }

    #[test]
    fn scopes_name_what_is_missing() {
        let s = Scopes {
            environments: vec!["dev".into(), "qa".into()],
            operations: vec![Operation::Read, Operation::Create],
            profiles: vec!["devqa".into()],
        };
        let ok = input(&[("env", "dev,qa")]);
        assert!(s.check("ci", Operation::Create, &ok, Some("devqa")).is_ok());
        let prod = input(&[("env", "dev, prod")]);
        let e = s
            .check("ci", Operation::Create, &prod, Some("devqa"))
            .unwrap_err();
        assert!(e.to_string().contains("environment 'prod'"), "{e}");
        let e = s.check("ci", Operation::Drop, &ok, None).unwrap_err();
        assert!(e.to_string().contains("operation 'drop'"));
        let e = s
            .check("ci", Operation::Create, &ok, Some("dba"))
            .unwrap_err();
        assert!(e.to_string().contains("profile 'dba'"));
    }

    #[test]
    fn scopes_from_parameters() {
        let s = Scopes::from_input(&input(&[
            ("environments", "dev,qa"),
            ("operations", "read, create"),
            ("profiles", "devqa"),
        ]))
        .unwrap();
        assert_eq!(s.operations, [Operation::Read, Operation::Create]);
        assert!(
            Scopes::from_input(&input(&[("environments", "dev"), ("operations", "god")])).is_err()
        );
        assert!(Scopes::from_input(&input(&[("operations", "read")])).is_err());
        let all =
            Scopes::from_input(&input(&[("environments", "*"), ("operations", "*")])).unwrap();
        assert_eq!(all, Scopes::all());
    }
}

/// Added to the answer per failure beyond the slow-down threshold (at most 8 steps).
const SLOWDOWN_STEP: std::time::Duration = std::time::Duration::from_millis(250);

/// Failed authentication per client address: after `slowdown_after` failures within the
/// window each further failure is answered more slowly; after `lockout_after` the address
/// gets 429 for `lockout` (kept per replica: a shared limit would need the store on every
/// failure, which is what an attacker would want).
pub struct Throttle {
    slowdown_after: u32,
    lockout_after: u32,
    lockout: std::time::Duration,
    state: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    since: std::time::Instant,
    locked_until: Option<std::time::Instant>,
}

impl Throttle {
    /// A throttle with these limits; `lockout` is also the window failures are counted in.
    pub fn new(slowdown_after: u32, lockout_after: u32, lockout: std::time::Duration) -> Self {
        Self {
            slowdown_after,
            lockout_after,
            lockout,
            state: Default::default(),
        }
    }

    /// How long the address is still locked out, if it is.
    pub fn locked(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        let now = std::time::Instant::now();
        let state = self.state.lock().expect("throttle poisoned");
        state
            .get(&ip)
            .and_then(|f| f.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Counts a failure; returns how long to hold the answer back.
    pub fn failed(&self, ip: std::net::IpAddr) -> std::time::Duration {
        let now = std::time::Instant::now();
        let mut state = self.state.lock().expect("throttle poisoned");
        if state.len() > 100_000 {
            // Bounded memory under a spray of addresses: forget quiet ones.
            state.retain(|_, f| now.duration_since(f.since) < self.lockout);
        }
        let f = state.entry(ip).or_insert(Failures {
            count: 0,
            since: now,
            locked_until: None,
        });
        if now.duration_since(f.since) > self.lockout {
            *f = Failures {
                count: 0,
                since: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.lockout_after {
            f.locked_until = Some(now + self.lockout);
        }
        let over = f.count.saturating_sub(self.slowdown_after);
        SLOWDOWN_STEP * over.min(8)
    }
}

/// Extra Basic users from configuration, each with an argon2 hash and scopes.
#[derive(Default)]
pub struct BasicUsers {
    users: Vec<(String, String, Scopes)>,
    /// Verified (user, SHA-256 of password) pairs: argon2 is slow by design, and a client
    /// sending the same credentials on every call should not pay for it every time.
    verified: std::sync::Mutex<std::collections::HashMap<(String, [u8; 32]), std::time::Instant>>,
}

/// How long a verified Basic password is remembered.
const VERIFIED_FOR: std::time::Duration = std::time::Duration::from_secs(60);

impl BasicUsers {
    /// From configuration; every hash must be a valid argon2 PHC string.
    pub fn new(users: &[crate::config::BasicUser]) -> anyhow::Result<Self> {
        for u in users {
            argon2::PasswordHash::new(&u.password_hash)
                .map_err(|e| anyhow::anyhow!("auth.users '{}': password_hash: {e}", u.name))?;
        }
        Ok(Self {
            users: users
                .iter()
                .map(|u| (u.name.clone(), u.password_hash.clone(), u.scopes.clone()))
                .collect(),
            verified: Default::default(),
        })
    }

    /// The user's scopes when the password is right.
    pub fn verify(&self, user: &str, pass: &str) -> Option<Scopes> {
        use argon2::PasswordVerifier;
        let (_, hash, scopes) = self.users.iter().find(|(n, _, _)| n == user)?;
        let key = (user.to_owned(), Sha256::digest(pass.as_bytes()).into());
        let now = std::time::Instant::now();
        let mut verified = self.verified.lock().expect("basic users poisoned");
        if verified
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < VERIFIED_FOR)
        {
            return Some(scopes.clone());
        }
        let parsed = argon2::PasswordHash::new(hash).ok()?;
        argon2::Argon2::default()
            .verify_password(pass.as_bytes(), &parsed)
            .ok()?;
        verified.retain(|_, at| now.duration_since(*at) < VERIFIED_FOR);
        verified.insert(key, now);
        Some(scopes.clone())
    }
}

/// An argon2id PHC hash of a password, for `auth.users` in the configuration.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string())
}

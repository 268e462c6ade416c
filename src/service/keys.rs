//! Who may call what: scopes, API keys (stored as SHA-256 only) and the principals that
//! authentication produces.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::TryRngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};

use super::audit::AuditScope;
use super::params::{KeyScopes, parse_time_param};
use super::{App, Caller};
use crate::auth::{Operation, Principal, Scopes};
use crate::error::{Error, Result};
use crate::store::{ApiKey, Store, StoreError};

/// When a new key expires: `expires` (RFC 3339 or a date) or `days` from now; neither: never.
pub fn expiry(k: &KeyScopes) -> Result<Option<DateTime<Utc>>> {
    if k.expires.is_some() && k.days.is_some() {
        return Err(Error::Invalid("give expires or days, not both".into()));
    }
    let later = k
        .days
        .map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    let expires = k.expires.as_deref();
    Ok(expires
        .map(|raw| parse_time_param("expires", raw))
        .transpose()?
        .or(later))
}

/// Every API key starts with this, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "pgua_";

/// The scopes a new key asks for: `environments`, `operations`, `profiles`, each a
/// comma-separated list (`*` for all; operations default to `read`).
pub fn scopes(k: &KeyScopes) -> Result<Scopes> {
    let list = |value: Option<&str>, default: &str| -> Vec<String> {
        value
            .unwrap_or(default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let operations = list(k.operations.as_deref(), "read")
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
    if operations.is_empty() {
        // A key that may do nothing is a mistake in the call, not a key anyone wants.
        return Err(Error::Invalid(
            "operations must name at least one operation (or *)".into(),
        ));
    }
    let environments = list(Some(&k.environments), "");
    if environments.is_empty() {
        return Err(Error::MissingParam("environments".into()));
    }
    Ok(Scopes {
        environments,
        operations,
        profiles: list(k.profiles.as_deref(), "*"),
    })
}

/// SHA-256 (hex) of a key secret; keys are 256 random bits, so no slow hash is needed.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 256 bits from the OS CSPRNG.
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    bytes
}

/// A new key secret: the prefix and 256 random bits.
fn new_secret() -> String {
    format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random_bytes()))
}

/// How much of a key secret is public (stored and listed as its prefix): `pgua_` and 6 more.
const SHOWN_LEN: usize = KEY_PREFIX.len() + 6;

/// The public prefix of a token shaped like a key secret; none for anything else, of which
/// nothing may be shown.
pub fn key_prefix(token: &str) -> Option<&str> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let shaped = rest.len() == 43
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
    shaped.then(|| &token[..SHOWN_LEN])
}

/// The store's fingerprint key, made (from the OS CSPRNG) the first time it is asked for.
pub async fn fingerprint_key(store: &dyn crate::store::Store) -> anyhow::Result<Vec<u8>> {
    store.fingerprint_key(&random_bytes()).await
}

/// Short keyed fingerprints of caller text that might be a secret (an unknown user name, a
/// malformed token): equal texts get equal fingerprints, but without the store's key
/// nothing of the text can be learnt from them, not even by trying candidates.
pub struct Fingerprints(Vec<u8>);

impl Fingerprints {
    /// Fingerprints under the store's key.
    pub fn new(key: Vec<u8>) -> Self {
        Self(key)
    }

    /// `marker#` and 8 hex digits of HMAC-SHA256 over `text`; the marker is hashed too, so
    /// different kinds of text never share a fingerprint.
    pub fn label(&self, marker: &str, text: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.0).expect("any key length");
        mac.update(marker.as_bytes());
        mac.update(&[0]);
        mac.update(text.as_bytes());
        let digest = mac.finalize().into_bytes();
        format!("{marker}#{}", hex::encode(&digest[..4]))
    }
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
        prefix: secret[..SHOWN_LEN].to_owned(),
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
        scopes: scopes.into(),
        identity: None,
    }))
}

/// The principal of a JWT bearer token: verified and bound by `verifier`; a single-use
/// binding's `jti` is claimed in the store until the token expires (plus leeway), so a
/// replay is refused on every replica.
pub async fn authenticate_jwt(
    store: &dyn Store,
    verifier: &crate::auth::jwt::Verifier,
    token: &str,
) -> anyhow::Result<std::result::Result<Principal, crate::auth::jwt::Refusal>> {
    let verified = match verifier.authenticate(token).await {
        Ok(v) => v,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if verified.single_use
        && let Some(id) = &verified.principal.identity
    {
        let jti = id.jti.as_deref().unwrap_or_default();
        let until = verified.expires_at + verified.leeway_secs as i64;
        let until = DateTime::from_timestamp(until, 0).unwrap_or_else(Utc::now);
        let holder = URL_SAFE_NO_PAD.encode(random_bytes());
        let key = format!("{}\n{jti}", id.issuer);
        if !store.claim("jti", &key, &holder, until).await? {
            return Ok(Err(crate::auth::jwt::Refusal {
                check: "replay",
                reason: format!(
                    "single-use token (jti '{jti}') was already used; binding '{}'",
                    id.binding
                ),
            }));
        }
    }
    Ok(Ok(verified.principal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(pairs: &[(&str, &str)]) -> Result<KeyScopes> {
        crate::service::params::from_params(
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        )
    }

    fn scopes_from(pairs: &[(&str, &str)]) -> Result<Scopes> {
        scopes(&input(pairs)?)
    }

    #[test]
    fn secrets_are_prefixed_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert!(a.starts_with(KEY_PREFIX) && a.len() == KEY_PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }

    fn throttle(slowdown: u32, lockout: u32, principal: u32) -> Throttle {
        Throttle::new(&crate::config::AuthConfig {
            slowdown_after_failures: slowdown,
            lockout_after_failures: lockout,
            principal_lockout_after_failures: principal,
            ..Default::default()
        })
    }

    #[test]
    fn failures_hold_back_only_the_principal_they_claim() {
        let t = throttle(2, 4, 10);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        for _ in 0..2 {
            t.failed(a, "portal");
        }
        assert_eq!(t.gate(a, "portal"), Gate::Open);
        t.failed(a, "portal");
        assert_eq!(t.gate(a, "portal"), Gate::Slow(SLOWDOWN_STEP));
        t.failed(a, "portal");
        assert!(matches!(t.gate(a, "portal"), Gate::Locked(_)));
        assert_eq!(
            t.gate(a, "ops"),
            Gate::Open,
            "another name at the same address"
        );
        assert_eq!(t.gate(b, "portal"), Gate::Open, "the same name elsewhere");
        // Enough failures from anywhere lock the principal everywhere.
        for i in 0..6u8 {
            t.failed(IpAddr::from([198, 51, 100, i]), "portal");
        }
        assert!(matches!(t.gate(b, "portal"), Gate::Locked(_)));
        assert_eq!(t.gate(b, "ops"), Gate::Open);
        // A success forgets the failures of its own pair only.
        let t = throttle(1, 9, 99);
        t.failed(a, "ops");
        t.failed(a, "ops");
        t.succeeded(a, "ops");
        assert_eq!(t.gate(a, "ops"), Gate::Open);
    }

    #[test]
    fn counters_stay_bounded_under_a_spray_and_keep_their_locks() {
        let t = throttle(1, 2, 1_000_000);
        let victim: IpAddr = "192.0.2.1".parse().unwrap();
        t.failed(victim, "portal");
        t.failed(victim, "portal");
        for i in 0..(MAX_COUNTERS as u32 + 10) {
            t.failed(IpAddr::from(i.to_be_bytes()), "sprayed");
        }
        assert!(t.pairs.lock().unwrap().len() <= MAX_COUNTERS);
        assert!(
            matches!(t.gate(victim, "portal"), Gate::Locked(_)),
            "a spray cannot lift a lock"
        );
    }

    #[test]
    fn a_spray_of_one_off_names_does_not_reset_a_guessers_count() {
        let t = throttle(100, 5, 1_000_000);
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..4 {
            t.failed(guesser, "portal");
        }
        for i in 0..(3 * MAX_COUNTERS as u32) {
            t.failed(IpAddr::from(i.to_be_bytes()), &format!("sprayed{i}"));
        }
        for map in [&t.pairs, &t.principals] {
            let map = map.lock().unwrap();
            assert!(map.len() <= MAX_COUNTERS);
            // At most 32,768 buckets of 33 bytes: about a MiB, however long the spray.
            assert!(map.capacity() <= 32_768 * 7 / 8, "{}", map.capacity());
        }
        assert_eq!(std::mem::size_of::<(u64, Failures)>(), 32);
        assert_eq!(t.gate(guesser, "portal"), Gate::Open);
        t.failed(guesser, "portal");
        assert!(
            matches!(t.gate(guesser, "portal"), Gate::Locked(_)),
            "the four failures before the spray still count"
        );
    }

    #[test]
    fn refusals_past_the_first_few_are_summed_per_address() {
        let t = throttle(5, 20, 100);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let own = (0..50)
            .filter(|_| t.record_each(a, "portal", false))
            .count();
        assert_eq!(own, RECORDED_PER_PAIR as usize);
        assert!(
            t.record_each(a, "portal", true),
            "the first 429 gets its own record"
        );
        let spray = (0..1000)
            .filter(|i| t.record_each(a, &format!("unknown-user#{i}"), false))
            .count();
        assert_eq!(own + 1 + spray, RECORDED_PER_WINDOW as usize);
        for i in 0..(SUMMED_ADDRESSES as u32 + 5) {
            t.record_each(IpAddr::from(i.to_be_bytes()), "x", false);
        }
        assert!(t.due_summaries().is_empty(), "not before the window ends");
        t.records.lock().unwrap().start -= t.summary_every;
        let summaries = t.due_summaries();
        assert_eq!(summaries.len(), SUMMED_ADDRESSES + 1);
        let of_a = summaries.iter().find(|s| s.addr == Some(a)).unwrap();
        assert_eq!(of_a.count, 50 + 1 + 1000 - RECORDED_PER_WINDOW);
        let total: u32 = summaries.iter().map(|s| s.count).sum();
        assert_eq!(
            total,
            1051 + SUMMED_ADDRESSES as u32 + 5 - RECORDED_PER_WINDOW
        );
        assert!(t.due_summaries().is_empty(), "a new window");
        assert!(t.record_each(a, "portal", false));
    }

    #[test]
    fn only_key_shaped_tokens_show_a_prefix_and_fingerprints_are_keyed() {
        let secret = new_secret();
        assert_eq!(key_prefix(&secret), Some(&secret[..SHOWN_LEN]));
        assert_eq!(key_prefix("pgua_hunter2"), None);
        let f = Fingerprints::new(vec![7; 32]);
        let label = f.label("unknown-user", "hunter2");
        assert!(label.starts_with("unknown-user#") && label.len() == "unknown-user#".len() + 8);
        assert_eq!(label, f.label("unknown-user", "hunter2"));
        assert_ne!(label, f.label("unknown-user", "hunter3"));
        assert_ne!(label[13..], f.label("bearer", "hunter2")[7..]);
        assert_ne!(
            label,
            Fingerprints::new(vec![8; 32]).label("unknown-user", "hunter2")
        );
    }

    #[test]
    fn scopes_from_parameters() {
        let s = scopes_from(&[
            ("environments", "dev,qa"),
            ("operations", "read, create"),
            ("profiles", "devqa"),
        ])
        .unwrap();
        assert_eq!(s.operations, [Operation::Read, Operation::Create]);
        assert!(scopes_from(&[("environments", "dev"), ("operations", "god")]).is_err());
        assert!(scopes_from(&[("operations", "read")]).is_err());
        let all = scopes_from(&[("environments", "*"), ("operations", "*")]).unwrap();
        assert_eq!(all, Scopes::all());
    }
}

/// Added to the answer per failure beyond the slow-down threshold (at most 8 steps).
const SLOWDOWN_STEP: Duration = Duration::from_millis(250);

/// Failure counters kept per map at most; a spray of addresses or names cannot grow past it.
/// Its table settles at 32,768 buckets (the removals of evictions leave tombstones, and the
/// table doubles once to clear them instead of rehashing in place), 33 bytes each with the
/// compact entries below: about 1 MiB per map, whatever a spray sends (it was 2.3 and 1.6
/// MiB with the address and `Instant`s in each entry).
const MAX_COUNTERS: usize = 14_000;

/// Unlocked counters dropped at once when a full map has no quiet one left: an eighth, so a
/// spray pays for one sort per many failures, not one scan per failure.
const EVICT_BATCH: usize = MAX_COUNTERS / 8;

/// Refusals of one (address, claimed principal) pair recorded one by one per window.
const RECORDED_PER_PAIR: u32 = 5;

/// Refusals recorded one by one per window, whatever their address.
const RECORDED_PER_WINDOW: u32 = 100;

/// Addresses whose further refusals are summed per window; the rest share one sum.
const SUMMED_ADDRESSES: usize = 1_000;

/// What an attempt's own counters allow before its credentials are looked at.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Check the credentials now.
    Open,
    /// Check them after this pause.
    Slow(Duration),
    /// Refuse without checking them, for this long still.
    Locked(Duration),
}

/// Failed authentication, counted per (client address, claimed principal) and per claimed
/// principal, never per address alone: failures under one name do not hold back another
/// name, and a valid API key is never held back at all. After `slowdown_after` failures of a
/// pair within the window its attempts wait before being checked; after `lockout_after` (or
/// `principal_lockout_after` of a principal from anywhere) they get 429 for `lockout`.
/// Kept per replica: a shared limit would need the store on every failure, which is what an
/// attacker would want.
pub struct Throttle {
    slowdown_after: u32,
    lockout_after: u32,
    principal_lockout_after: u32,
    /// How long a lockout lasts, and the window failures are counted in, in milliseconds
    /// (the counters' unit).
    lockout_ms: u64,
    summary_every: Duration,
    /// Counters are keyed by a keyed 64-bit hash (SipHash, a random key per process) of the
    /// claimed principal, and of the address with it for a pair, not by their text: a
    /// counter stays the same size whatever a caller sends, and without the key nobody can
    /// pick two claims that share one (by chance, 1 in 2^64).
    claim_keys: RandomState,
    /// Counters keep their times as milliseconds since this.
    epoch: Instant,
    pairs: Mutex<HashMap<u64, Failures>>,
    principals: Mutex<HashMap<u64, Failures>>,
    records: Mutex<RecordWindow>,
}

/// The failures under one key, in 24 bytes: times are milliseconds since the throttle's
/// epoch.
#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    /// When the window began.
    since: u64,
    /// Locked until then; at or before now, not locked.
    locked_until: u64,
}

impl Failures {
    fn new(now: u64) -> Self {
        Self {
            count: 0,
            since: now,
            locked_until: 0,
        }
    }

    fn locked(&self, now: u64) -> Option<Duration> {
        (self.locked_until > now).then(|| Duration::from_millis(self.locked_until - now))
    }
}

/// Counts a failure under `key` at `now`, locking it at `limit` for `window` (both in
/// milliseconds). When the map is full, quiet
/// counters go first (their window is over and they hold no lock), then the [`EVICT_BATCH`]
/// unlocked counters with the fewest failures, so a spray of one-off names displaces other
/// one-offs, not a guesser's count that is close to its lock. A lock is never dropped: that
/// would lift a lockout in the attacker's favour. The price, if a map ever holds only
/// locks, is that new failures go uncounted until one expires; filling it so takes
/// [`MAX_COUNTERS`] × the lockout threshold failures within one lockout period.
fn count(map: &mut HashMap<u64, Failures>, key: u64, limit: u32, window: u64, now: u64) {
    if map.len() >= MAX_COUNTERS && !map.contains_key(&key) {
        map.retain(|_, f| now.saturating_sub(f.since) < window || f.locked(now).is_some());
        if map.len() >= MAX_COUNTERS {
            let mut unlocked: Vec<(u32, u64)> = map
                .iter()
                .filter(|(_, f)| f.locked(now).is_none())
                .map(|(k, f)| (f.count, *k))
                .collect();
            let n = EVICT_BATCH.min(unlocked.len());
            if n > 0 {
                unlocked.select_nth_unstable_by_key(n - 1, |(count, _)| *count);
                for (_, k) in &unlocked[..n] {
                    map.remove(k);
                }
            }
        }
        if map.len() >= MAX_COUNTERS {
            return;
        }
    }
    let f = map.entry(key).or_insert(Failures::new(now));
    if now.saturating_sub(f.since) > window && f.locked(now).is_none() {
        *f = Failures::new(now);
    }
    f.count += 1;
    if f.count >= limit && f.locked_until <= now {
        f.locked_until = now + window;
    }
}

/// Which refusals of the current window got a record of their own and which were summed.
struct RecordWindow {
    start: Instant,
    started_at: DateTime<Utc>,
    /// Records of their own per (address, claimed principal, locked out).
    recorded: HashMap<(IpAddr, String, bool), u32>,
    total: u32,
    /// Refusals summed per address, and beyond [`SUMMED_ADDRESSES`] addresses in one sum.
    summed: HashMap<IpAddr, u32>,
    overflow: u32,
}

impl RecordWindow {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            started_at: Utc::now(),
            recorded: HashMap::new(),
            total: 0,
            summed: HashMap::new(),
            overflow: 0,
        }
    }
}

/// Refusals of a finished window that got no record of their own.
#[derive(Debug, PartialEq, Eq)]
pub struct FailureSummary {
    /// Their client address; none for the addresses beyond those summed one by one.
    pub addr: Option<IpAddr>,
    /// How many.
    pub count: u32,
    /// When the window began.
    pub since: DateTime<Utc>,
}

impl Throttle {
    /// A throttle with the configured limits.
    pub fn new(config: &crate::config::AuthConfig) -> Self {
        Self {
            slowdown_after: config.slowdown_after_failures,
            lockout_after: config.lockout_after_failures,
            principal_lockout_after: config.principal_lockout_after_failures,
            lockout_ms: config.lockout_secs.saturating_mul(1000),
            summary_every: Duration::from_secs(config.failure_summary_secs.max(1)),
            claim_keys: RandomState::new(),
            epoch: Instant::now(),
            pairs: Default::default(),
            principals: Default::default(),
            records: Mutex::new(RecordWindow::new()),
        }
    }

    /// The keys of `claim` from `ip`: its pair's and its principal's.
    fn keys(&self, ip: IpAddr, claim: &str) -> (u64, u64) {
        let keys = &self.claim_keys;
        (keys.hash_one((ip, claim)), keys.hash_one(claim))
    }

    /// Now, in milliseconds since the epoch.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// What the counters of `claim` from `ip` allow now.
    pub fn gate(&self, ip: IpAddr, claim: &str) -> Gate {
        let now = self.now();
        let (pair, principal) = self.keys(ip, claim);
        let pair = self
            .pairs
            .lock()
            .expect("throttle poisoned")
            .get(&pair)
            .copied();
        let principal = self
            .principals
            .lock()
            .expect("throttle poisoned")
            .get(&principal)
            .and_then(|f| f.locked(now));
        if let Some(wait) = pair.and_then(|f| f.locked(now)).max(principal) {
            return Gate::Locked(wait);
        }
        let recent = pair.filter(|f| now.saturating_sub(f.since) <= self.lockout_ms);
        match recent.map_or(0, |f| f.count.saturating_sub(self.slowdown_after)) {
            0 => Gate::Open,
            over => Gate::Slow(SLOWDOWN_STEP * over.min(8)),
        }
    }

    /// Counts a failure of `claim` from `ip`.
    pub fn failed(&self, ip: IpAddr, claim: &str) {
        let now = self.now();
        let (pair, principal) = self.keys(ip, claim);
        let mut pairs = self.pairs.lock().expect("throttle poisoned");
        count(&mut pairs, pair, self.lockout_after, self.lockout_ms, now);
        drop(pairs);
        let mut principals = self.principals.lock().expect("throttle poisoned");
        let limit = self.principal_lockout_after;
        count(&mut principals, principal, limit, self.lockout_ms, now);
    }

    /// Forgets the failures of `claim` from `ip` once it proved itself there.
    pub fn succeeded(&self, ip: IpAddr, claim: &str) {
        let (pair, _) = self.keys(ip, claim);
        self.pairs.lock().expect("throttle poisoned").remove(&pair);
    }

    /// Whether a refusal of `claim` from `ip` gets an audit record of its own: the first
    /// [`RECORDED_PER_PAIR`] 401s and the first as many 429s of each pair per window do, up
    /// to [`RECORDED_PER_WINDOW`] in all; the rest are counted into the window's
    /// [`FailureSummary`]s.
    pub fn record_each(&self, ip: IpAddr, claim: &str, locked: bool) -> bool {
        let mut guard = self.records.lock().expect("throttle poisoned");
        let w = &mut *guard;
        let key = (ip, claim.to_owned(), locked);
        let own = w.recorded.get(&key).copied().unwrap_or(0);
        if own < RECORDED_PER_PAIR && w.total < RECORDED_PER_WINDOW {
            *w.recorded.entry(key).or_default() += 1;
            w.total += 1;
            return true;
        }
        if w.summed.len() < SUMMED_ADDRESSES || w.summed.contains_key(&ip) {
            *w.summed.entry(ip).or_default() += 1;
        } else {
            w.overflow += 1;
        }
        false
    }

    /// The summaries of the window once it is over (and a new window), else nothing.
    pub fn due_summaries(&self) -> Vec<FailureSummary> {
        let mut w = self.records.lock().expect("throttle poisoned");
        if w.start.elapsed() < self.summary_every {
            return Vec::new();
        }
        let done = std::mem::replace(&mut *w, RecordWindow::new());
        let since = done.started_at;
        let mut summaries: Vec<FailureSummary> = done
            .summed
            .into_iter()
            .map(|(ip, count)| FailureSummary {
                addr: Some(ip),
                count,
                since,
            })
            .collect();
        if done.overflow > 0 {
            summaries.push(FailureSummary {
                addr: None,
                count: done.overflow,
                since,
            });
        }
        summaries
    }

    /// How often summaries fall due.
    pub fn summary_every(&self) -> Duration {
        self.summary_every
    }
}

/// Writes the summaries of finished windows of refusals (see [`Throttle::record_each`]).
pub async fn write_summaries(app: &App) {
    for s in app.throttle.due_summaries() {
        let addr = s.addr.map_or_else(|| "*".to_owned(), |a| a.to_string());
        let message = format!(
            "{} more authentication refusals from {} since {} not recorded one by one",
            s.count,
            if s.addr.is_some() {
                "this address"
            } else {
                "other addresses"
            },
            s.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        audit_refusal(app, String::new(), "-".into(), addr, message).await;
    }
}

/// Stores the `auth` failure record of one refusal (or of a summary of refusals).
pub async fn audit_refusal(
    app: &App,
    request_id: String,
    principal: String,
    client_addr: String,
    message: String,
) {
    let caller = Caller {
        request_id,
        principal,
        client_addr,
        scopes: None,
        identity: None,
    };
    let scope = AuditScope::new(app, &caller, "auth", None, "");
    let failed: Result<()> = Err(Error::Forbidden(message));
    scope.outcome(&failed, |_| String::new()).await;
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

    /// Whether a user of that name is configured.
    pub fn knows(&self, user: &str) -> bool {
        self.users.iter().any(|(n, _, _)| n == user)
    }

    /// The user's scopes when the password is right.
    pub fn verify(&self, user: &str, pass: &str) -> Option<Scopes> {
        use argon2::PasswordVerifier;
        let (_, hash, scopes) = self.users.iter().find(|(n, _, _)| n == user)?;
        let key = (user.to_owned(), Sha256::digest(pass.as_bytes()).into());
        let now = std::time::Instant::now();
        let remembered = self
            .verified
            .lock()
            .expect("basic users poisoned")
            .get(&key)
            .is_some_and(|at| now.duration_since(*at) < VERIFIED_FOR);
        if remembered {
            return Some(scopes.clone());
        }
        // Not under the lock: one slow check must not hold up every other Basic caller.
        let parsed = argon2::PasswordHash::new(hash).ok()?;
        argon2::Argon2::default()
            .verify_password(pass.as_bytes(), &parsed)
            .ok()?;
        let mut verified = self.verified.lock().expect("basic users poisoned");
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

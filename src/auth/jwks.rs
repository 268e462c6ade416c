//! An issuer's signing keys: fetched over HTTPS (OpenID discovery or a JWKS URL), cached,
//! and looked up by `kid` without any network call while cached. Machine tokens
//! ([`super::jwt`]) and the console's sign-in ([`super::oidc`]) share it; plain HTTP is
//! allowed only for an issuer on a loopback address (a provider on the same host).
//!
//! - Fresh for the response's `Cache-Control: max-age`, clamped to the issuer's floor and
//!   ceiling (no max-age, `no-cache` or `no-store`: the floor). Past that, a lookup still
//!   answers from the cache and starts one refresh in the background.
//! - A `kid` not in the cache causes one refetch, at most one per cooldown whatever the
//!   number of callers (single flight: the others wait for it, then look again), so a flood
//!   of made-up `kid`s costs the issuer one request per cooldown.
//! - While the issuer is unreachable the cached keys stay in use, until they are
//!   `keys_max_stale_secs` older than the last successful fetch. A successful fetch replaces
//!   the whole set: a key the issuer removed stops working once the cache has been refreshed.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;

/// Key families a JWKS can hold that we accept (never symmetric keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
    /// Ed25519 (`OKP`); only the console's sign-in allows EdDSA.
    Okp,
}

fn family_of(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Some(Family::Rsa),
        ES256 | ES384 => Some(Family::Ec),
        EdDSA => Some(Family::Okp),
        _ => None,
    }
}

struct Key {
    kid: Option<String>,
    family: Family,
    /// The algorithm the key is published for, if the JWKS says: a token naming another
    /// one does not match it (RFC 8725 §3.1).
    alg: Option<KeyAlgorithm>,
    key: Arc<DecodingKey>,
}

/// Whether `url` is `https`, or `http` on a loopback address.
pub fn secure_or_loopback(url: &Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

#[derive(Default)]
struct State {
    keys: Vec<Key>,
    /// The last successful fetch.
    fetched: Option<Instant>,
    /// Until when the set is fresh.
    fresh_until: Option<Instant>,
    /// The last fetch started (successful or not): the cooldown runs from here.
    attempted: Option<Instant>,
    /// Why the last fetch failed, if it did.
    error: Option<String>,
}

/// The answer of a lookup.
pub enum KeyLookup {
    /// Candidate keys (one, unless the token names no `kid`).
    Found(Vec<Arc<DecodingKey>>),
    /// Why there is none, for the refusal.
    Missing(String),
}

/// One issuer's key cache.
pub struct Jwks {
    issuer: String,
    jwks_url: Option<String>,
    http: reqwest::Client,
    policy: CachePolicy,
    state: RwLock<State>,
    fetching: tokio::sync::Mutex<()>,
}

/// The `max-age` of a `Cache-Control` value; `no-cache`/`no-store` count as zero.
fn max_age(value: &str) -> Option<Duration> {
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            age = n.trim_matches('"').parse().ok().map(Duration::from_secs);
        }
    }
    age
}

/// How long the key cache of an issuer keeps and refreshes keys.
#[derive(Clone, Copy, Debug)]
pub struct CachePolicy {
    /// Floor of the `Cache-Control` max-age.
    pub min: Duration,
    /// Ceiling of the `Cache-Control` max-age.
    pub max: Duration,
    /// At most one unknown-`kid` refetch per this long.
    pub cooldown: Duration,
    /// Keys age out this long after the last successful fetch.
    pub max_stale: Duration,
}

/// Where an issuer's keys come from and how they are cached.
#[derive(Clone, Debug)]
pub struct KeySource {
    /// The exact `iss`; discovery is read from it when there is no `jwks_url`.
    pub issuer: String,
    /// The JWKS address, when not discovered.
    pub jwks_url: Option<String>,
    /// An extra CA (PEM) for the issuer's HTTPS, besides the system roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long a fetch may take.
    pub fetch_timeout: Duration,
    /// How keys are kept and refreshed.
    pub policy: CachePolicy,
}

impl Jwks {
    /// An empty cache for an issuer, with its HTTPS client (system roots plus `ca_file`).
    pub fn new(config: KeySource) -> anyhow::Result<Self> {
        let tls = crate::target::tls::verified(config.ca_file.as_deref())
            .with_context(|| format!("TLS for issuer {}", config.issuer))?;
        let loopback = Url::parse(&config.issuer).is_ok_and(|u| u.scheme() == "http")
            && Self::allowed(&config.issuer);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(!loopback)
            .timeout(config.fetch_timeout)
            .user_agent(concat!("pg-user-api/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the JWKS HTTP client")?;
        Ok(Self {
            issuer: config.issuer,
            jwks_url: config.jwks_url,
            http,
            policy: config.policy,
            state: RwLock::default(),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether keys may be fetched from `url`: see [`secure_or_loopback`].
    fn allowed(url: &str) -> bool {
        Url::parse(url).is_ok_and(|u| secure_or_loopback(&u))
    }

    fn matching(state: &State, kid: Option<&str>, alg: Algorithm) -> Vec<Arc<DecodingKey>> {
        let family = family_of(alg);
        // KeyAlgorithm and Algorithm name the same algorithms the same way.
        let same_alg = |k: &KeyAlgorithm| format!("{k:?}") == format!("{alg:?}");
        state
            .keys
            .iter()
            .filter(|k| Some(k.family) == family && k.alg.as_ref().is_none_or(same_alg))
            .filter(|k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid)))
            .map(|k| k.key.clone())
            .collect()
    }

    /// Keys for a token's `kid` and `alg`: from the cache, else after one refetch.
    pub async fn keys(self: &Arc<Self>, kid: Option<&str>, alg: Algorithm) -> KeyLookup {
        if family_of(alg).is_none() {
            return KeyLookup::Missing(format!("no key type for algorithm {alg:?}"));
        }
        let now = Instant::now();
        let (found, refresh, cooled, attempted) = {
            let s = self.state.read().expect("jwks poisoned");
            let usable = s
                .fetched
                .is_some_and(|t| now.duration_since(t) <= self.policy.max_stale);
            let found = if usable {
                Self::matching(&s, kid, alg)
            } else {
                Vec::new()
            };
            let due = s.fresh_until.is_none_or(|t| now >= t);
            let cooled = s
                .attempted
                .is_none_or(|t| now.duration_since(t) >= self.policy.cooldown);
            (found, due && cooled, cooled, s.attempted)
        };
        if !found.is_empty() {
            if refresh {
                let this = self.clone();
                tokio::spawn(async move { this.refetch(attempted).await });
            }
            return KeyLookup::Found(found);
        }
        let shown = kid.map_or_else(|| "no kid".to_owned(), |k| format!("kid '{k}'"));
        if self.fetching.try_lock().is_err() {
            // A fetch is under way (the first one, a refresh, a refetch): its keys may be
            // the ones wanted, so wait for it rather than refuse.
            drop(self.fetching.lock().await);
            return self.after_fetch(kid, alg, &shown);
        }
        if !cooled {
            let s = self.state.read().expect("jwks poisoned");
            let ago = s.attempted.map_or(0, |t| now.duration_since(t).as_secs());
            return KeyLookup::Missing(match &s.error {
                Some(e) => format!(
                    "{shown}: the issuer's keys could not be fetched {ago} s ago ({e}); next try \
                     after the {} s cooldown",
                    self.policy.cooldown.as_secs()
                ),
                None => format!(
                    "unknown {shown}: not among the issuer's keys, fetched {ago} s ago (next \
                     refetch after the {} s cooldown)",
                    self.policy.cooldown.as_secs()
                ),
            });
        }
        self.refetch(attempted).await;
        self.after_fetch(kid, alg, &shown)
    }

    /// The lookup once a fetch has been made: the keys, or why there are none.
    fn after_fetch(&self, kid: Option<&str>, alg: Algorithm, shown: &str) -> KeyLookup {
        let s = self.state.read().expect("jwks poisoned");
        let usable = s
            .fetched
            .is_some_and(|t| Instant::now().duration_since(t) <= self.policy.max_stale);
        let found = if usable {
            Self::matching(&s, kid, alg)
        } else {
            Vec::new()
        };
        if !found.is_empty() {
            return KeyLookup::Found(found);
        }
        KeyLookup::Missing(match (&s.error, usable) {
            (Some(e), _) => format!("{shown}: the issuer's keys could not be fetched ({e})"),
            (None, false) => format!("{shown}: the issuer's keys have aged out"),
            (None, true) => format!("unknown {shown}, also after refetching the issuer's keys"),
        })
    }

    /// Fetches unless another caller started a fetch since `seen` (then waits for it).
    async fn refetch(&self, seen: Option<Instant>) {
        let _one = self.fetching.lock().await;
        if self.state.read().expect("jwks poisoned").attempted != seen {
            return;
        }
        let started = Instant::now();
        self.state.write().expect("jwks poisoned").attempted = Some(started);
        metrics::counter!("pgua_jwks_fetches_total").increment(1);
        let result = self.download().await;
        let mut s = self.state.write().expect("jwks poisoned");
        match result {
            Ok((keys, age)) => {
                let age = age
                    .unwrap_or(self.policy.min)
                    .clamp(self.policy.min, self.policy.max);
                s.keys = keys;
                s.fetched = Some(started);
                s.fresh_until = Some(started + age);
                s.error = None;
            }
            Err(e) => {
                let e = format!("{e:#}");
                tracing::warn!(issuer = %self.issuer, error = %e, "fetching the issuer's keys failed");
                s.error = Some(e);
            }
        }
    }

    /// The issuer's keys and the response's max-age.
    async fn download(&self) -> anyhow::Result<(Vec<Key>, Option<Duration>)> {
        let url = match &self.jwks_url {
            Some(url) => url.clone(),
            None => self.discover().await?,
        };
        let res = self.get(&url).await?;
        let age = res
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let set: JwkSet = res
            .json()
            .await
            .with_context(|| format!("GET {url}: not a JWKS"))?;
        let keys: Vec<Key> = set
            .keys
            .iter()
            .filter(|jwk| jwk.common.public_key_use != Some(PublicKeyUse::Encryption))
            .filter_map(|jwk| {
                let family = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Family::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                    AlgorithmParameters::OctetKeyPair(_) => Family::Okp,
                    // Symmetric keys are never used.
                    _ => return None,
                };
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    family,
                    alg: jwk.common.key_algorithm,
                    key: Arc::new(key),
                })
            })
            .collect();
        Ok((keys, age))
    }

    /// A successful response to `GET url`.
    async fn get(&self, url: &str) -> anyhow::Result<reqwest::Response> {
        if !Self::allowed(url) {
            bail!("GET {url}: keys are fetched over https (http only on a loopback address)");
        }
        let res = self
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        if !res.status().is_success() {
            bail!("GET {url}: HTTP {}", res.status());
        }
        Ok(res)
    }

    /// `jwks_uri` from the issuer's OpenID configuration, which must name the same issuer.
    async fn discover(&self) -> anyhow::Result<String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let res = self.get(&url).await?;
        let doc: serde_json::Value = res
            .json()
            .await
            .with_context(|| format!("GET {url}: not JSON"))?;
        if doc.get("issuer").and_then(|v| v.as_str()) != Some(self.issuer.as_str()) {
            bail!("{url} names another issuer");
        }
        doc.get("jwks_uri")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .with_context(|| format!("{url} has no jwks_uri"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=3600"),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
    }
}

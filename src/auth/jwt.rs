//! Machine identity: JWT bearer tokens from trusted issuers (`[[auth.jwt.issuers]]`) turned
//! into a principal and scopes by bindings (`[[auth.jwt.bindings]]`).
//!
//! A token is checked in a fixed order, and the first check that fails is the refusal:
//! shape, `alg` against the issuer's allowlist (`none` and HMAC can never be configured),
//! `iss` against the configured issuers, the signature with a key from the issuer's JWKS
//! (see [`super::jwks`]), then `exp`, `nbf`, `iat` (each with the issuer's leeway) and `aud`.
//! Bindings of that issuer are matched last. When several bindings match, the one listing
//! the most claims wins; a tie between the most specific ones is refused as ambiguous, so
//! adding a binding can never silently widen another's callers.
//!
//! Single-use tokens (`single_use = true` on the binding) are claimed in the store by the
//! caller of [`Verifier::authenticate`] (auth is a leaf and knows nothing of the store).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::jwks::{CachePolicy, Jwks, KeyLookup, KeySource};
use super::{Identity, Principal, Scopes};

/// `[auth.jwt]`: trusted issuers and the bindings that turn their tokens into principals.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtConfig {
    /// Issuers whose tokens are verified.
    pub issuers: Vec<IssuerConfig>,
    /// Bindings from verified claims to a principal and scopes.
    pub bindings: Vec<BindingConfig>,
}

/// `[[auth.jwt.issuers]]`: one trusted issuer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` of its tokens (an `https://` URL).
    pub issuer: String,
    /// Read `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// The JWKS URL, when discovery is off.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Accepted `aud` values; a token naming none of them is refused. Required.
    pub audiences: Vec<String>,
    /// Accepted signature algorithms (default RS256 and ES256).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Extra PEM CA bundle trusted for the issuer's HTTPS (beside the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Keys are cached at least this long, whatever `Cache-Control` says, in seconds.
    #[serde(default = "default_min_cache")]
    pub keys_min_cache_secs: u64,
    /// Keys are cached at most this long before a refresh, in seconds.
    #[serde(default = "default_max_cache")]
    pub keys_max_cache_secs: u64,
    /// At most one refetch for an unknown `kid` per this many seconds.
    #[serde(default = "default_cooldown")]
    pub refetch_cooldown_secs: u64,
    /// Keys stay usable this long after the last successful fetch while the issuer is
    /// unreachable, in seconds; then they age out.
    #[serde(default = "default_max_stale")]
    pub keys_max_stale_secs: u64,
    /// Time limit of one discovery or JWKS fetch, in seconds.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_secs: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_leeway() -> u64 {
    60
}
fn default_min_cache() -> u64 {
    300
}
fn default_max_cache() -> u64 {
    86_400
}
fn default_cooldown() -> u64 {
    30
}
fn default_max_stale() -> u64 {
    7 * 86_400
}
fn default_fetch_timeout() -> u64 {
    5
}

/// `[[auth.jwt.bindings]]`: which tokens of an issuer become which principal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    /// Unique name, shown by `/api/v1/me` and `auth check-token`.
    pub name: String,
    /// The issuer (`iss`) it applies to; one of `auth.jwt.issuers`.
    pub issuer: String,
    /// Claim name → exact value or glob (`*` matches any run of characters); every listed
    /// claim must match; a list-valued claim matches when one element does. Non-empty.
    pub claims: BTreeMap<String, String>,
    /// The principal, a template over claims: `"github:{repository}@{ref}"`.
    pub principal: String,
    /// What its callers may do, as for API keys.
    pub scopes: Scopes,
    /// Refuse a second use of the same `jti` (on every replica) within the token's lifetime.
    #[serde(default)]
    pub single_use: bool,
}

/// Algorithms that may be allowed: asymmetric ones whose keys a JWKS can publish.
const ALLOWED: [(&str, Algorithm); 8] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

fn algorithm(name: &str) -> Option<Algorithm> {
    ALLOWED.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

impl JwtConfig {
    /// Checks what serde cannot: every issuer usable, every binding pointing at one.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = Vec::new();
        for i in &self.issuers {
            let at = format!("auth.jwt.issuers '{}'", i.issuer);
            if !i.issuer.starts_with("https://") {
                return Err(format!("{at}: issuer must be an https:// URL"));
            }
            if seen.contains(&&i.issuer) {
                return Err(format!("{at}: configured twice"));
            }
            seen.push(&i.issuer);
            match (&i.jwks_url, i.discovery) {
                (Some(_), true) => {
                    return Err(format!("{at}: give jwks_url or discovery = true, not both"));
                }
                (None, false) => return Err(format!("{at}: give jwks_url or discovery = true")),
                (Some(url), false) if !url.starts_with("https://") => {
                    return Err(format!("{at}: jwks_url must be an https:// URL"));
                }
                _ => {}
            }
            if i.audiences.iter().all(|a| a.trim().is_empty()) {
                return Err(format!("{at}: audiences must name at least one audience"));
            }
            if i.algorithms.is_empty() {
                return Err(format!("{at}: algorithms must not be empty"));
            }
            for a in &i.algorithms {
                if a.eq_ignore_ascii_case("none") || a.to_ascii_uppercase().starts_with("HS") {
                    return Err(format!(
                        "{at}: algorithm '{a}' can never be enabled: unsigned and shared-secret \
                         (HMAC) tokens cannot prove which issuer made them"
                    ));
                }
                if algorithm(a).is_none() {
                    let known: Vec<&str> = ALLOWED.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "{at}: unknown algorithm '{a}' (known: {})",
                        known.join(", ")
                    ));
                }
            }
            if i.keys_min_cache_secs > i.keys_max_cache_secs {
                return Err(format!(
                    "{at}: keys_min_cache_secs exceeds keys_max_cache_secs"
                ));
            }
        }
        let mut names = Vec::new();
        for b in &self.bindings {
            let at = format!("auth.jwt.bindings '{}'", b.name);
            if b.name.trim().is_empty() {
                return Err("auth.jwt.bindings: every binding needs a name".into());
            }
            if names.contains(&&b.name) {
                return Err(format!("{at}: name used twice"));
            }
            names.push(&b.name);
            if !self.issuers.iter().any(|i| i.issuer == b.issuer) {
                return Err(format!(
                    "{at}: issuer '{}' is not in auth.jwt.issuers",
                    b.issuer
                ));
            }
            if b.claims.is_empty() {
                return Err(format!(
                    "{at}: claims must list at least one claim (else every token of the issuer \
                     would match)"
                ));
            }
            template_claims(&b.principal).map_err(|e| format!("{at}: principal: {e}"))?;
        }
        Ok(())
    }
}

/// The claim names a principal template uses, or why it is malformed.
fn template_claims(template: &str) -> Result<Vec<&str>, String> {
    if template.trim().is_empty() {
        return Err("must not be empty".into());
    }
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("unbalanced '}}' in '{template}'"));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in '{template}'"))?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("bad claim reference in '{template}'"));
        }
        names.push(name);
        rest = &after[close + 1..];
    }
    Ok(names)
}

/// Whether a bearer token has the shape of a JWT: three base64url segments.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut parts = 0;
    for part in token.split('.') {
        parts += 1;
        let ok = part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        if !ok || (parts < 3 && part.is_empty()) {
            return false;
        }
    }
    parts == 3
}

/// Which check refused a token; the caller sees only 401, the log and the audit see this.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The check: `shape`, `algorithm`, `issuer`, `key`, `signature`, `exp`, `nbf`, `iat`,
    /// `aud`, `binding`, `principal`, `replay`.
    pub check: &'static str,
    /// What was wrong, with the claim values concerned (never the token).
    pub reason: String,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JWT refused ({}): {}", self.check, self.reason)
    }
}

fn refuse(check: &'static str, reason: impl Into<String>) -> Refusal {
    Refusal {
        check,
        reason: reason.into(),
    }
}

/// A verified token's identity and the binding it matched.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The principal (template filled), its scopes and identity.
    pub principal: Principal,
    /// When the token expires (seconds since the epoch), for a single-use claim.
    pub expires_at: i64,
    /// The issuer's leeway in seconds.
    pub leeway_secs: u64,
    /// Whether the binding asks for single use (the caller claims the `jti`).
    pub single_use: bool,
}

/// Why one binding did or did not match, for `auth check-token`.
#[derive(Clone, Debug, Serialize)]
pub struct BindingReport {
    /// The binding.
    pub name: String,
    /// Whether all its claims matched.
    pub matched: bool,
    /// The first claim that did not match, with its value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<String>,
}

/// What `auth check-token` says of a token.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Explanation {
    /// Whether the token would be accepted (its audience aside, see `audience`).
    pub accepted: bool,
    /// The refusal, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub refused: Option<Refusal>,
    /// The header's `alg` and `kid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub header: Option<Value>,
    /// The claims (shown only after the signature verified).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub claims: Option<Map<String, Value>>,
    /// Whether `aud` names one of the issuer's audiences (not required to explain a token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Every binding of the issuer, matched or why not.
    #[schema(value_type = Vec<Object>)]
    pub bindings: Vec<BindingReport>,
    /// The binding that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
    /// The principal it yields.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Its scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub scopes: Option<Scopes>,
    /// Whether the binding makes the token single-use.
    pub single_use: bool,
}

/// One configured issuer with its key cache.
struct Issuer {
    config: IssuerConfig,
    algorithms: Vec<Algorithm>,
    keys: Arc<Jwks>,
}

/// Verifies tokens of the configured issuers and binds them; shared by all requests.
pub struct Verifier {
    issuers: Vec<Issuer>,
    bindings: Vec<BindingConfig>,
}

/// Reads a base64url JSON segment.
fn segment(part: &str) -> Option<Map<String, Value>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn time_claim(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, Refusal> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|n| Some(n as i64))
            .ok_or_else(|| refuse(name, format!("claim '{name}' is not a number: {v}"))),
    }
}

fn shown_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.to_rfc3339())
}

/// A claim's value as text, for matching and templates: strings as they are, other scalars
/// as JSON (`true`, `42`).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}

/// `*`-glob match over the whole text.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Why a binding does not match the claims, or `None` when it does.
fn mismatch(binding: &BindingConfig, claims: &Map<String, Value>) -> Option<String> {
    for (name, pattern) in &binding.claims {
        let Some(value) = claims.get(name) else {
            return Some(format!("claim '{name}' is missing (wanted '{pattern}')"));
        };
        let matches = match value {
            Value::Array(items) => items
                .iter()
                .filter_map(scalar)
                .any(|item| glob(pattern, &item)),
            other => scalar(other).is_some_and(|s| glob(pattern, &s)),
        };
        if !matches {
            return Some(format!("claim '{name}' is {value}, wanted '{pattern}'"));
        }
    }
    None
}

/// Fills a principal template; a claim it names must be a scalar the token has.
fn principal_of(template: &str, claims: &Map<String, Value>) -> Result<String, String> {
    let mut out = template.to_owned();
    for name in template_claims(template)? {
        let value = claims
            .get(name)
            .and_then(scalar)
            .ok_or_else(|| format!("the principal template names claim '{name}', which the token lacks or is not a string"))?;
        out = out.replace(&format!("{{{name}}}"), &value);
    }
    Ok(capped(out))
}

/// Claim text is the token's, not ours: principals made of it stay bounded in the audit.
fn capped(mut s: String) -> String {
    const MAX: usize = 200;
    if s.len() > MAX {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl Verifier {
    /// Verifiers of the configured issuers (validated), with empty key caches.
    pub fn new(config: &JwtConfig) -> anyhow::Result<Self> {
        config.validate().map_err(anyhow::Error::msg)?;
        let issuers = config
            .issuers
            .iter()
            .map(|c| {
                Ok(Issuer {
                    algorithms: c.algorithms.iter().filter_map(|a| algorithm(a)).collect(),
                    keys: Arc::new(Jwks::new(c.key_source())?),
                    config: c.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            issuers,
            bindings: config.bindings.clone(),
        })
    }

    /// Whether any issuer is configured (else bearer tokens are API keys only).
    pub fn enabled(&self) -> bool {
        !self.issuers.is_empty()
    }

    /// Who a token claims to be (unverified), as its failures are counted and recorded:
    /// `jwt:<iss> sub=<sub>` when `iss` is a configured issuer, so one failing pipeline
    /// slows down only itself; `None` for anything else, which only a fingerprint may name.
    pub fn claimed(&self, token: &str) -> Option<String> {
        let payload = segment(token.split('.').nth(1)?)?;
        let iss = payload.get("iss")?.as_str()?;
        if !self.issuers.iter().any(|i| i.config.issuer == iss) {
            return None;
        }
        let sub = payload.get("sub").and_then(scalar).unwrap_or_default();
        Some(capped(format!("jwt:{iss} sub={sub}")))
    }

    /// Verifies a token and binds it; the first failing check is the refusal.
    pub async fn authenticate(&self, token: &str) -> Result<Verified, Refusal> {
        let (issuer, claims) = self.verify(token, true).await?;
        let binding = self.bind(issuer, &claims)?;
        self.verified(issuer, binding, &claims)
    }

    /// Explains what happens to a token, its audience aside: which check fails, or which
    /// binding matches and what it allows.
    pub async fn explain(&self, token: &str) -> Explanation {
        let mut out = Explanation {
            accepted: false,
            refused: None,
            header: token.split('.').next().and_then(segment).map(|h| {
                let keep = |k: &str| h.get(k).map(|v| (k.to_owned(), v.clone()));
                Value::Object(["alg", "kid", "typ"].into_iter().filter_map(keep).collect())
            }),
            claims: None,
            audience: None,
            bindings: Vec::new(),
            binding: None,
            principal: None,
            scopes: None,
            single_use: false,
        };
        let (issuer, claims) = match self.verify(token, false).await {
            Ok(v) => v,
            Err(e) => {
                out.refused = Some(e);
                return out;
            }
        };
        out.audience = Some(match audience_mismatch(&issuer.config, &claims) {
            None => "matches one of the issuer's audiences".into(),
            Some(why) => format!("{why} (ignored here: the service itself would refuse it)"),
        });
        out.bindings = self
            .bindings
            .iter()
            .filter(|b| b.issuer == issuer.config.issuer)
            .map(|b| {
                let why = mismatch(b, &claims);
                BindingReport {
                    name: b.name.clone(),
                    matched: why.is_none(),
                    mismatch: why,
                }
            })
            .collect();
        let bound = self
            .bind(issuer, &claims)
            .and_then(|b| self.verified(issuer, b, &claims));
        out.claims = Some(claims);
        match bound {
            Ok(v) => {
                out.accepted = true;
                out.single_use = v.single_use;
                out.binding = v.principal.identity.as_ref().map(|i| i.binding.clone());
                out.principal = Some(v.principal.name);
                out.scopes = Some(Scopes::clone(&v.principal.scopes));
            }
            Err(e) => out.refused = Some(e),
        }
        out
    }

    /// Shape, algorithm, issuer, signature and times; the audience too when asked.
    async fn verify(
        &self,
        token: &str,
        check_audience: bool,
    ) -> Result<(&Issuer, Map<String, Value>), Refusal> {
        if !looks_like_jwt(token) {
            return Err(refuse("shape", "not three base64url segments"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload)) = (
            parts.next().and_then(segment),
            parts.next().and_then(segment),
        ) else {
            return Err(refuse("shape", "header or payload is not base64url JSON"));
        };
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let iss = payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or_else(|| refuse("issuer", "the token has no 'iss' claim"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| refuse("issuer", format!("issuer '{iss}' is not trusted")))?;
        self.verify_with(issuer, token, &header, &alg, check_audience)
            .await
            .map(|claims| (issuer, claims))
    }

    async fn verify_with(
        &self,
        issuer: &Issuer,
        token: &str,
        header: &Map<String, Value>,
        alg: &str,
        check_audience: bool,
    ) -> Result<Map<String, Value>, Refusal> {
        let config = &issuer.config;
        let allowed = algorithm(alg).filter(|a| issuer.algorithms.contains(a));
        let Some(alg) = allowed else {
            return Err(refuse(
                "algorithm",
                format!(
                    "algorithm '{alg}' is not allowed for issuer '{}' (allowed: {})",
                    config.issuer,
                    config.algorithms.join(", ")
                ),
            ));
        };
        let kid = header.get("kid").and_then(Value::as_str);
        let keys = match issuer.keys.keys(kid, alg).await {
            KeyLookup::Found(keys) => keys,
            KeyLookup::Missing(why) => return Err(refuse("key", why)),
        };
        let mut validation = Validation::new(alg);
        // Times and audience are checked below, with values in the refusal.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let mut last = None;
        for key in keys.iter() {
            match jsonwebtoken::decode::<Map<String, Value>>(token, key.as_ref(), &validation) {
                Ok(data) => {
                    last = Some(Ok(data.claims));
                    break;
                }
                Err(e) => last = Some(Err(e)),
            }
        }
        let claims = match last {
            Some(Ok(claims)) => claims,
            Some(Err(e)) => {
                let why = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                        "the signature does not verify with the issuer's key".to_owned()
                    }
                    other => format!("the token does not verify: {other:?}"),
                };
                return Err(refuse("signature", why));
            }
            None => return Err(refuse("key", "no key of the issuer fits the algorithm")),
        };
        let now = now_secs();
        let leeway = config.leeway_secs as i64;
        let exp = time_claim(&claims, "exp")?
            .ok_or_else(|| refuse("exp", "the token has no 'exp' claim"))?;
        if exp + leeway <= now {
            return Err(refuse(
                "exp",
                format!(
                    "expired at {} (now {}, leeway {leeway} s)",
                    shown_time(exp),
                    shown_time(now)
                ),
            ));
        }
        if let Some(nbf) = time_claim(&claims, "nbf")?
            && nbf - leeway > now
        {
            return Err(refuse(
                "nbf",
                format!(
                    "not valid before {} (now {}, leeway {leeway} s)",
                    shown_time(nbf),
                    shown_time(now)
                ),
            ));
        }
        if let Some(iat) = time_claim(&claims, "iat")?
            && iat - leeway > now
        {
            return Err(refuse(
                "iat",
                format!(
                    "issued in the future, at {} (now {}, leeway {leeway} s)",
                    shown_time(iat),
                    shown_time(now)
                ),
            ));
        }
        if check_audience && let Some(why) = audience_mismatch(config, &claims) {
            return Err(refuse("aud", why));
        }
        Ok(claims)
    }

    /// The one binding of the issuer that matches: the most specific, unless tied.
    fn bind<'a>(
        &'a self,
        issuer: &Issuer,
        claims: &Map<String, Value>,
    ) -> Result<&'a BindingConfig, Refusal> {
        let of_issuer: Vec<&BindingConfig> = self
            .bindings
            .iter()
            .filter(|b| b.issuer == issuer.config.issuer)
            .collect();
        let matching: Vec<&BindingConfig> = of_issuer
            .iter()
            .copied()
            .filter(|b| mismatch(b, claims).is_none())
            .collect();
        let most = matching.iter().map(|b| b.claims.len()).max().unwrap_or(0);
        let best: Vec<&BindingConfig> = matching
            .into_iter()
            .filter(|b| b.claims.len() == most)
            .collect();
        let sub = claims
            .get("sub")
            .map_or_else(|| "none".into(), Value::to_string);
        match best.as_slice() {
            [one] => Ok(one),
            [] => {
                let closest = of_issuer
                    .iter()
                    .filter_map(|b| mismatch(b, claims).map(|why| format!("'{}': {why}", b.name)))
                    .collect::<Vec<_>>();
                let why = if closest.is_empty() {
                    format!(
                        "no binding is configured for issuer '{}'",
                        issuer.config.issuer
                    )
                } else {
                    format!("no binding matches (sub {sub}); {}", closest.join("; "))
                };
                Err(refuse("binding", why))
            }
            tied => {
                let names: Vec<&str> = tied.iter().map(|b| b.name.as_str()).collect();
                Err(refuse(
                    "binding",
                    format!(
                        "ambiguous: bindings {} match equally specifically (sub {sub})",
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    fn verified(
        &self,
        issuer: &Issuer,
        binding: &BindingConfig,
        claims: &Map<String, Value>,
    ) -> Result<Verified, Refusal> {
        let name = principal_of(&binding.principal, claims).map_err(|e| refuse("principal", e))?;
        let text = |k: &str| claims.get(k).and_then(scalar);
        let jti = text("jti");
        if binding.single_use && jti.is_none() {
            return Err(refuse(
                "replay",
                format!(
                    "binding '{}' is single-use but the token has no 'jti' claim",
                    binding.name
                ),
            ));
        }
        Ok(Verified {
            principal: Principal {
                name,
                scopes: Arc::new(binding.scopes.clone()),
                identity: Some(Identity {
                    issuer: issuer.config.issuer.clone(),
                    subject: text("sub").unwrap_or_default(),
                    jti,
                    binding: binding.name.clone(),
                }),
            },
            expires_at: claims.get("exp").and_then(Value::as_f64).unwrap_or(0.0) as i64,
            leeway_secs: issuer.config.leeway_secs,
            single_use: binding.single_use,
        })
    }
}

/// Why `aud` names none of the issuer's audiences, or `None` when it names one.
fn audience_mismatch(config: &IssuerConfig, claims: &Map<String, Value>) -> Option<String> {
    let given: Vec<String> = match claims.get("aud") {
        None => return Some("the token has no 'aud' claim".into()),
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(other) => scalar(other).into_iter().collect(),
    };
    if given.iter().any(|a| config.audiences.contains(a)) {
        return None;
    }
    Some(format!(
        "audience {} is none of {}",
        claims.get("aud").map(Value::to_string).unwrap_or_default(),
        config.audiences.join(", ")
    ))
}

impl IssuerConfig {
    /// Where and how this issuer's keys are fetched and cached.
    pub fn key_source(&self) -> KeySource {
        KeySource {
            issuer: self.issuer.clone(),
            jwks_url: self.jwks_url.clone(),
            ca_file: self.ca_file.clone(),
            fetch_timeout: Duration::from_secs(self.fetch_timeout_secs.max(1)),
            policy: CachePolicy {
                min: Duration::from_secs(self.keys_min_cache_secs),
                max: Duration::from_secs(self.keys_max_cache_secs),
                cooldown: Duration::from_secs(self.refetch_cooldown_secs),
                max_stale: Duration::from_secs(self.keys_max_stale_secs),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(claims: &[(&str, &str)]) -> BindingConfig {
        BindingConfig {
            name: "b".into(),
            issuer: "https://issuer.example".into(),
            claims: claims
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            principal: "ci:{repository}@{ref}".into(),
            scopes: Scopes::all(),
            single_use: false,
        }
    }

    #[test]
    fn globs_match_the_whole_text() {
        assert!(glob("refs/heads/*", "refs/heads/main"));
        assert!(glob(
            "repo:acme/*:ref:*",
            "repo:acme/web:ref:refs/heads/main"
        ));
        assert!(glob("*", ""));
        assert!(!glob("refs/heads/*", "refs/tags/v1"));
        assert!(!glob("a*a", "a"));
        assert!(glob("main", "main") && !glob("main", "main2"));
    }

    #[test]
    fn claims_match_exactly_by_glob_or_any_list_element() {
        let claims: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "repository": "acme/web", "ref": "refs/heads/main", "ref_protected": true,
            "groups": ["dev", "ops"], "repository_id": 42
        }))
        .unwrap();
        assert_eq!(
            mismatch(&binding(&[("ref", "refs/heads/*")]), &claims),
            None
        );
        assert_eq!(mismatch(&binding(&[("groups", "ops")]), &claims), None);
        assert_eq!(
            mismatch(&binding(&[("ref_protected", "true")]), &claims),
            None
        );
        assert_eq!(
            mismatch(&binding(&[("repository_id", "42")]), &claims),
            None
        );
        let why = mismatch(&binding(&[("ref", "refs/tags/*")]), &claims).unwrap();
        assert_eq!(
            why,
            "claim 'ref' is \"refs/heads/main\", wanted 'refs/tags/*'"
        );
        let why = mismatch(&binding(&[("environment", "prod")]), &claims).unwrap();
        assert!(why.contains("'environment' is missing"), "{why}");
        assert_eq!(
            principal_of("ci:{repository}@{ref}", &claims).unwrap(),
            "ci:acme/web@refs/heads/main"
        );
        assert!(principal_of("ci:{nope}", &claims).is_err());
    }

    #[test]
    fn templates_must_be_balanced() {
        assert_eq!(template_claims("a{b}c{d}").unwrap(), ["b", "d"]);
        assert!(template_claims("a{b").is_err());
        assert!(template_claims("a}b").is_err());
        assert!(template_claims("a{}").is_err());
        assert!(template_claims(" ").is_err());
    }

    #[test]
    fn jwt_shape_is_three_base64url_segments() {
        assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
        assert!(
            looks_like_jwt("eyJh.eyJi."),
            "alg none has an empty signature"
        );
        assert!(!looks_like_jwt("pgua_abc"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a+.b.c"));
    }

    fn issuer(algorithms: &[&str]) -> IssuerConfig {
        toml::from_str::<IssuerConfig>(&format!(
            "issuer = \"https://issuer.example\"\njwks_url = \"https://issuer.example/jwks\"\n\
             audiences = [\"pgua\"]\nalgorithms = {algorithms:?}\n"
        ))
        .unwrap()
    }

    #[test]
    fn none_and_hmac_can_never_be_configured() {
        for alg in ["none", "HS256", "hs512"] {
            let c = JwtConfig {
                issuers: vec![issuer(&[alg])],
                bindings: Vec::new(),
            };
            let err = c.validate().unwrap_err();
            assert!(err.contains("can never be enabled"), "{err}");
        }
        let ok = JwtConfig {
            issuers: vec![issuer(&["RS256", "ES256"])],
            bindings: vec![binding(&[("sub", "x")])],
        };
        assert_eq!(ok.validate(), Ok(()));
        let mut no_aud = ok.clone();
        no_aud.issuers[0].audiences.clear();
        assert!(no_aud.validate().unwrap_err().contains("audiences"));
        let mut stray = ok;
        stray.bindings[0].issuer = "https://other.example".into();
        assert!(
            stray
                .validate()
                .unwrap_err()
                .contains("not in auth.jwt.issuers")
        );
    }
}

//! Single sign-on for people: an OpenID Connect relying party (authorization code flow with
//! PKCE S256, `state` and `nonce`) and its configuration, `[auth.oidc]`.
//!
//! The provider is found by discovery (`<issuer>/.well-known/openid-configuration`), read on
//! first use and kept. The ID token is checked like a machine token: its signature against
//! the issuer's keys, kept in the same cache as machine tokens' ([`super::jwks::Jwks`]:
//! refetched once when a token names an unknown `kid`, at most every
//! [`KEY_REFETCH_COOLDOWN`]), `iss`, `aud` (and `azp`), `exp`, `iat` not in the future,
//! and the `nonce` of the login it answers. The person's groups pick their scopes through
//! `[[auth.oidc.groups]]`. HTTP routes and the session live elsewhere (`http::sso`,
//! [`super::session`]); this module knows nothing of either.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::Scopes;
use super::jwks::{CachePolicy, Jwks, KeyLookup, KeySource, secure_or_loopback};
use super::session::random_token;

/// The least time between two JWKS fetches caused by unknown `kid`s, so a flood of forged
/// tokens cannot make us hammer the provider.
pub const KEY_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);

/// How the provider's keys are cached: as a machine-token issuer's by default.
const KEY_CACHE: CachePolicy = CachePolicy {
    min: Duration::from_secs(300),
    max: Duration::from_secs(86_400),
    cooldown: KEY_REFETCH_COOLDOWN,
    max_stale: Duration::from_secs(7 * 86_400),
};

/// Time limit of one request to the provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a started sign-in may take at the provider before its callback is refused.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// Signature algorithms an ID token may use: asymmetric only (`none` and HMAC never, since
/// a client secret shared with the provider must not be able to mint identities).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// `[auth.oidc]`: sign-in through the company's OpenID Provider for the web console.
/// The client secret is never in this file: `PGUA_OIDC_CLIENT_SECRET`, or the file
/// `PGUA_OIDC_CLIENT_SECRET_FILE` names.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's name on the console's button: "Sign in with <provider_name>".
    #[serde(default = "default_provider_name")]
    pub provider_name: String,
    /// The issuer URL, exactly as the provider writes it in `iss`; its discovery document
    /// is read from `<issuer>/.well-known/openid-configuration`. `https`, or `http` on a
    /// loopback address only.
    pub issuer: String,
    /// The client id registered at the provider; ID tokens must name it in `aud`.
    pub client_id: String,
    /// This service's callback as the browser reaches it, registered at the provider:
    /// `https://<public host>/auth/oidc/callback`.
    pub redirect_url: String,
    /// OAuth scopes asked for; `openid` is always added.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim holding the person's groups (a list of strings, or one string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group to scopes, first match wins: list the most privileged mapping first. A person
    /// in none of these groups cannot sign in.
    #[serde(default)]
    pub groups: Vec<GroupScopes>,
    /// A session unused for this many seconds ends.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// A session ends this many seconds after sign-in, however busy.
    #[serde(default = "default_absolute_timeout")]
    pub absolute_timeout_secs: u64,
    /// Whether the session cookie is `Secure`; by default it is exactly when
    /// `redirect_url` is `https` (the browser reaches the service over TLS, whether the
    /// service or a proxy in front of it ends it).
    #[serde(default)]
    pub secure_cookie: Option<bool>,
    /// Extra PEM CA bundle trusted for the provider (besides the system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Clock skew allowed on `exp` and `iat`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The client secret when code sets it (tests, embedding); never read from the file, so
    /// the server reads `PGUA_OIDC_CLIENT_SECRET` instead.
    #[serde(skip)]
    pub client_secret: Option<SecretString>,
}

/// `[[auth.oidc.groups]]`: members of `group` get `scopes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupScopes {
    /// A value of the groups claim.
    pub group: String,
    /// What its members may do.
    pub scopes: Scopes,
}

fn default_provider_name() -> String {
    "single sign-on".into()
}
fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_idle_timeout() -> u64 {
    30 * 60
}
fn default_absolute_timeout() -> u64 {
    12 * 3600
}
fn default_leeway() -> u64 {
    60
}

impl OidcConfig {
    /// Checks what serde cannot: URLs, timeouts, a non-empty group mapping.
    pub fn validate(&self) -> anyhow::Result<()> {
        let issuer = Url::parse(&self.issuer).context("auth.oidc.issuer is not a URL")?;
        if !secure_or_loopback(&issuer) {
            anyhow::bail!("auth.oidc.issuer must be https (http only on a loopback address)");
        }
        let redirect = Url::parse(&self.redirect_url).context("auth.oidc.redirect_url")?;
        if !matches!(redirect.scheme(), "https" | "http") {
            anyhow::bail!("auth.oidc.redirect_url must be an http(s) URL");
        }
        if self.client_id.is_empty() {
            anyhow::bail!("auth.oidc.client_id is empty");
        }
        if self.groups.is_empty() {
            anyhow::bail!(
                "auth.oidc.groups is empty: map at least one group to scopes, or nobody can sign in"
            );
        }
        if self.idle_timeout_secs == 0 || self.absolute_timeout_secs < self.idle_timeout_secs {
            anyhow::bail!(
                "auth.oidc: idle_timeout_secs must be at least 1 and at most absolute_timeout_secs"
            );
        }
        Ok(())
    }

    /// Whether the session cookie is `Secure` (see [`OidcConfig::secure_cookie`]).
    pub fn cookie_secure(&self) -> bool {
        self.secure_cookie
            .unwrap_or_else(|| self.redirect_url.starts_with("https://"))
    }

    /// The scopes of the first mapped group the person is in, and that group.
    pub fn scopes_for(&self, groups: &[String]) -> Option<&GroupScopes> {
        self.groups.iter().find(|g| groups.contains(&g.group))
    }
}

/// Why a sign-in was refused. The text names the failed check, never a token.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached or answered nonsense.
    #[error("identity provider unavailable: {0}")]
    Provider(String),
    /// The callback does not belong to a sign-in this browser started.
    #[error("sign-in refused: {0}")]
    Login(String),
    /// The ID token failed a check.
    #[error("ID token refused: {0}")]
    Token(String),
    /// The person is in no mapped group.
    #[error("'{0}' is in no group that may use pg-user-api")]
    NoGroup(String),
}

/// What a started sign-in must remember until its callback: kept in the browser (a short,
/// `HttpOnly` cookie), so the callback may reach any replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingLogin {
    /// Echoed by the provider; binds the callback to this browser.
    pub state: String,
    /// Must come back in the ID token.
    pub nonce: String,
    /// PKCE: its SHA-256 went to the provider, the verifier itself goes with the code.
    pub verifier: String,
    /// When it was started (Unix seconds).
    pub started: i64,
}

impl PendingLogin {
    /// The cookie value: base64url JSON.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("plain fields serialise"))
    }

    /// From a cookie value.
    pub fn decode(value: &str) -> Option<Self> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(value).ok()?).ok()
    }
}

/// A person the provider vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `oidc:<email>`, or `oidc:<sub>` without a usable email.
    pub principal: String,
    /// The provider's subject identifier.
    pub subject: String,
    /// The values of the groups claim.
    pub groups: Vec<String>,
}

/// The part of the discovery document this client uses.
#[derive(Clone, Debug, Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    end_session_endpoint: Option<String>,
}

/// The relying party: this service as the provider's client.
pub struct RelyingParty {
    config: OidcConfig,
    secret: SecretString,
    http: reqwest::Client,
    metadata: OnceCell<Metadata>,
    keys: Arc<Jwks>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
    #[serde(default)]
    access_token: Option<String>,
}

impl RelyingParty {
    /// A client for the provider `config` names, authenticating with `secret`
    /// (`client_secret_basic`). Reads nothing from the network yet.
    pub fn new(config: &OidcConfig, secret: SecretString) -> anyhow::Result<Self> {
        config.validate()?;
        let keys = Jwks::new(KeySource {
            issuer: config.issuer.clone(),
            jwks_url: None,
            ca_file: config.ca_file.clone(),
            fetch_timeout: PROVIDER_TIMEOUT,
            policy: KEY_CACHE,
        })?;
        let mut builder = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pg-user-api/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading auth.oidc.ca_file {}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("auth.oidc.ca_file {}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Self {
            config: config.clone(),
            secret,
            http: builder.build().context("building the OIDC HTTP client")?,
            metadata: OnceCell::new(),
            keys: Arc::new(keys),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, OidcError> {
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("GET {url}: {e}")))?;
        if !res.status().is_success() {
            return Err(OidcError::Provider(format!("GET {url}: {}", res.status())));
        }
        res.json()
            .await
            .map_err(|e| OidcError::Provider(format!("GET {url}: {e}")))
    }

    async fn metadata(&self) -> Result<&Metadata, OidcError> {
        self.metadata
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let m: Metadata = self.get_json(&url).await?;
                // OIDC Discovery §4.3: a document for another issuer is not this one's.
                if m.issuer != self.config.issuer {
                    return Err(OidcError::Provider(format!(
                        "discovery names issuer '{}', not the configured '{}'",
                        m.issuer, self.config.issuer
                    )));
                }
                Ok(m)
            })
            .await
    }

    /// Starts a sign-in: the provider's authorization URL to send the browser to, and what
    /// the callback must find in the browser's login cookie.
    pub async fn begin(&self) -> Result<(String, PendingLogin), OidcError> {
        let m = self.metadata().await?;
        let pending = PendingLogin {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            started: chrono::Utc::now().timestamp(),
        };
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(pending.verifier.as_bytes()));
        let mut scopes = vec!["openid".to_owned()];
        scopes.extend(
            self.config
                .scopes
                .iter()
                .filter(|s| *s != "openid")
                .cloned(),
        );
        let mut url = Url::parse(&m.authorization_endpoint)
            .map_err(|e| OidcError::Provider(format!("authorization_endpoint: {e}")))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_url)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok((url.into(), pending))
    }

    /// Finishes a sign-in: checks the callback's `state` against the browser's pending
    /// login, exchanges the code, validates the ID token and reads the person's identity
    /// (groups from the userinfo endpoint when the ID token lacks them).
    pub async fn finish(
        &self,
        pending: &PendingLogin,
        state: &str,
        code: &str,
    ) -> Result<Identity, OidcError> {
        let same_state: bool =
            subtle::ConstantTimeEq::ct_eq(state.as_bytes(), pending.state.as_bytes()).into();
        if !same_state {
            return Err(OidcError::Login(
                "state does not match the sign-in this browser started".into(),
            ));
        }
        if chrono::Utc::now().timestamp() - pending.started > LOGIN_TTL.as_secs() as i64 {
            return Err(OidcError::Login(
                "the sign-in took too long; start again".into(),
            ));
        }
        let m = self.metadata().await?;
        let res = self
            .http
            .post(&m.token_endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.secret.expose_secret())),
            )
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.config.redirect_url),
                ("code_verifier", &pending.verifier),
            ])
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint: {e}")))?;
        if !res.status().is_success() {
            let status = res.status();
            let body: Value = res.json().await.unwrap_or_default();
            // The provider's error code says why (invalid_grant: code reused or expired).
            let why = body["error"].as_str().unwrap_or("no error code");
            return Err(OidcError::Login(format!(
                "the provider refused the code exchange ({status}, {why})"
            )));
        }
        let tokens: TokenResponse = res
            .json()
            .await
            .map_err(|e| OidcError::Provider(format!("token endpoint answer: {e}")))?;
        let mut claims = self
            .validate_id_token(&tokens.id_token, &pending.nonce)
            .await?;
        let groups_claim = &self.config.groups_claim;
        let wants_userinfo = !claims.contains_key(groups_claim) || !claims.contains_key("email");
        if let (true, Some(url), Some(access)) =
            (wants_userinfo, &m.userinfo_endpoint, &tokens.access_token)
        {
            let info = self.userinfo(url, access).await?;
            // OIDC Core §5.3.2: userinfo of another subject must not be used.
            if info.get("sub") != claims.get("sub") {
                return Err(OidcError::Token(
                    "userinfo is about another subject than the ID token".into(),
                ));
            }
            for (k, v) in info {
                claims.entry(k).or_insert(v);
            }
        }
        Ok(identity(&claims, groups_claim))
    }

    async fn userinfo(&self, url: &str, access: &str) -> Result<Map<String, Value>, OidcError> {
        let res = self
            .http
            .get(url)
            .bearer_auth(access)
            .send()
            .await
            .map_err(|e| OidcError::Provider(format!("userinfo: {e}")))?;
        if !res.status().is_success() {
            return Err(OidcError::Provider(format!("userinfo: {}", res.status())));
        }
        res.json()
            .await
            .map_err(|e| OidcError::Provider(format!("userinfo answer: {e}")))
    }

    /// The provider's logout URL for a browser leaving, if it offers one.
    pub async fn end_session_url(&self) -> Option<String> {
        let m = self.metadata().await.ok()?;
        let mut url = Url::parse(m.end_session_endpoint.as_deref()?).ok()?;
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id);
        Some(url.into())
    }

    async fn validate_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| OidcError::Token(format!("unreadable header: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(OidcError::Token(format!(
                "algorithm {:?} is not allowed",
                header.alg
            )));
        }
        let keys = match self.keys.keys(header.kid.as_deref(), header.alg).await {
            KeyLookup::Found(keys) => keys,
            KeyLookup::Missing(why) => return Err(OidcError::Token(why)),
        };
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.config.issuer]);
        v.set_audience(&[&self.config.client_id]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        v.leeway = self.config.leeway_secs;
        v.validate_nbf = true;
        // Without a `kid` every key of the algorithm's family is a candidate.
        let mut decoded = keys
            .iter()
            .map(|key| jsonwebtoken::decode::<Map<String, Value>>(token, key, &v));
        let first = decoded.next().expect("a lookup finds at least one key");
        let claims = match first {
            Ok(data) => data.claims,
            Err(e) => {
                decoded
                    .find_map(Result::ok)
                    .ok_or_else(|| OidcError::Token(token_error(&e)))?
                    .claims
            }
        };
        let now = chrono::Utc::now().timestamp();
        let iat = claims["iat"].as_i64().unwrap_or(i64::MAX);
        if iat > now + self.config.leeway_secs as i64 {
            return Err(OidcError::Token("iat is in the future".into()));
        }
        let same_nonce = claims
            .get("nonce")
            .and_then(Value::as_str)
            .is_some_and(|n| subtle::ConstantTimeEq::ct_eq(n.as_bytes(), nonce.as_bytes()).into());
        if !same_nonce {
            return Err(OidcError::Token(
                "nonce does not match the sign-in this browser started".into(),
            ));
        }
        // OIDC Core §3.1.3.7: an authorized party, when named, must be this client.
        if let Some(azp) = claims.get("azp").and_then(Value::as_str)
            && azp != self.config.client_id
        {
            return Err(OidcError::Token(format!("azp '{azp}' is not this client")));
        }
        Ok(claims)
    }
}

/// `application/x-www-form-urlencoded` of a client id or secret, as `client_secret_basic`
/// wants it inside the Basic header (RFC 6749 §2.3.1).
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A token error in words that name the check, never the token.
fn token_error(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "expired (exp)".into(),
        ErrorKind::ImmatureSignature => "not yet valid (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer (iss)".into(),
        ErrorKind::InvalidAudience => "not for this client (aud)".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim {c}"),
        other => format!("{other:?}"),
    }
}

/// The person in verified claims: `oidc:<email>` unless the provider says the email is not
/// verified (then, or without one, `oidc:<sub>`), and the groups claim's values.
fn identity(claims: &Map<String, Value>, groups_claim: &str) -> Identity {
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let email = claims
        .get("email")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .filter(|_| claims.get("email_verified") != Some(&Value::Bool(false)));
    let groups = match claims.get(groups_claim) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    };
    Identity {
        principal: format!("oidc:{}", email.unwrap_or(&subject)),
        subject,
        groups,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Operation;

    fn config() -> OidcConfig {
        toml::from_str(
            r#"
            issuer = "https://login.example.com"
            client_id = "pgua"
            redirect_url = "https://pgua.example.com/auth/oidc/callback"
            [[groups]]
            group = "dba"
            scopes = { environments = ["*"], operations = ["read", "create", "drop"], profiles = ["*"] }
            [[groups]]
            group = "dev"
            scopes = { environments = ["dev"], operations = ["read"], profiles = [] }
            "#,
        )
        .unwrap()
    }

    #[test]
    fn the_first_mapped_group_decides_the_scopes() {
        let c = config();
        c.validate().unwrap();
        let both = ["dev".to_owned(), "dba".to_owned()];
        assert_eq!(c.scopes_for(&both).unwrap().group, "dba");
        let dev = c.scopes_for(&["dev".to_owned()]).unwrap();
        assert_eq!(dev.scopes.operations, [Operation::Read]);
        assert!(c.scopes_for(&["other".to_owned()]).is_none());
    }

    #[test]
    fn the_cookie_is_secure_when_the_browser_uses_tls() {
        let mut c = config();
        assert!(c.cookie_secure());
        c.redirect_url = "http://127.0.0.1:5000/auth/oidc/callback".into();
        assert!(!c.cookie_secure());
        c.secure_cookie = Some(true);
        assert!(c.cookie_secure());
    }

    #[test]
    fn a_plain_http_issuer_is_refused_unless_on_loopback() {
        let mut c = config();
        c.issuer = "http://login.example.com".into();
        assert!(c.validate().is_err());
        c.issuer = "http://127.0.0.1:9000".into();
        c.validate().unwrap();
    }

    #[test]
    fn the_principal_is_the_verified_email_or_the_subject() {
        let claims = |v: Value| v.as_object().unwrap().clone();
        let id = identity(
            &claims(
                serde_json::json!({"sub": "u1", "email": "ann@example.com", "groups": ["dba", 3]}),
            ),
            "groups",
        );
        assert_eq!(id.principal, "oidc:ann@example.com");
        assert_eq!(id.groups, ["dba"]);
        let id = identity(
            &claims(
                serde_json::json!({"sub": "u1", "email": "ann@example.com", "email_verified": false, "roles": "dev"}),
            ),
            "roles",
        );
        assert_eq!(id.principal, "oidc:u1");
        assert_eq!(id.groups, ["dev"]);
    }

    #[tokio::test]
    async fn symmetric_and_unsigned_id_tokens_are_refused_before_any_key_is_fetched() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The issuer does not exist: a refusal that needed its keys would say "unavailable".
        let rp = RelyingParty::new(&config(), SecretString::from("secret")).unwrap();
        let claims = serde_json::json!({"iss": "https://login.example.com", "aud": "pgua",
            "sub": "u1", "exp": 4_000_000_000_i64, "iat": 1, "nonce": "n"});
        let hs256 = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"secret"),
        )
        .unwrap();
        let e = rp.validate_id_token(&hs256, "n").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "ID token refused: algorithm HS256 is not allowed"
        );
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        let e = rp.validate_id_token(&none, "n").await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ID token refused: unreadable header"),
            "{e}"
        );
    }

    #[test]
    fn a_pending_login_round_trips_through_its_cookie_value() {
        let p = PendingLogin {
            state: random_token(),
            nonce: random_token(),
            verifier: random_token(),
            started: 1,
        };
        let back = PendingLogin::decode(&p.encode()).unwrap();
        assert_eq!(
            (back.state, back.nonce, back.verifier),
            (p.state, p.nonce, p.verifier)
        );
        assert!(PendingLogin::decode("not base64 json").is_none());
    }
}

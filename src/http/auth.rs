//! Authentication: API keys (`Authorization: Bearer pgua_…`), JWTs from trusted issuers
//! (`Authorization: Bearer <three base64url segments>`, see [`crate::auth::jwt`]), the
//! compatibility Basic user (`PG_API_USER` / `PG_API_PASS`, all scopes), extra Basic users
//! with argon2 hashes, and the console's single sign-on session cookie (see [`super::sso`]).
//! Repeated failures of one claimed principal are slowed down, then refused with 429 for a
//! while (see [`keys::Throttle`]); refusals are audited, past the first few as summaries.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ClientAddr;
use super::error::json_error;
use crate::auth::{Principal, Scopes, jwt};
use crate::service::App;
use crate::service::keys::{self, audit_refusal, write_summaries};

/// Compares digests so neither content nor length leaks through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

enum Credentials {
    Basic(String, String),
    Bearer(String),
    None,
}

fn credentials(req: &Request) -> Credentials {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credentials::None;
    };
    let Some((scheme, rest)) = value.split_once(' ') else {
        return Credentials::None;
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.trim().to_owned());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::None;
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, pass)) => Credentials::Basic(user.to_owned(), pass.to_owned()),
        None => Credentials::None,
    }
}

/// The compatibility user's principal, if these are its credentials: two digests, cheap
/// enough for the request thread.
fn compat_principal(app: &App, user: &str, pass: &str) -> Option<Principal> {
    let api = app.api.as_ref()?;
    // Evaluate both comparisons always, so a wrong user costs as much as a wrong password.
    let user_ok = same(user.as_bytes(), api.user.as_bytes());
    let pass_ok = same(pass.as_bytes(), api.password.expose_secret().as_bytes());
    (user_ok & pass_ok).then(|| Principal {
        name: user.to_owned(),
        scopes: Scopes::shared_all(),
        identity: None,
    })
}

/// The principal of a configured Basic user (argon2: slow by design), if these are its
/// credentials.
fn hashed_principal(app: &App, user: &str, pass: &str) -> Option<Principal> {
    app.basic_users.verify(user, pass).map(|scopes| Principal {
        name: user.to_owned(),
        scopes: scopes.into(),
        identity: None,
    })
}

/// Who an attempt claims to be, as recorded and counted: a configured user name as is, a
/// key by its name or public prefix, and anything that might be a secret (an unknown user
/// name may be a password typed in the wrong field) only as a keyed fingerprint.
fn claimed(app: &App, c: &Credentials, key_name: Option<&str>) -> String {
    match c {
        Credentials::Basic(user, _) => {
            let compat = app
                .api
                .as_ref()
                .is_some_and(|api| same(user.as_bytes(), api.user.as_bytes()));
            if compat || app.basic_users.knows(user) {
                user.clone()
            } else {
                app.fingerprints.label("unknown-user", user)
            }
        }
        Credentials::Bearer(token) => match (key_name, keys::key_prefix(token)) {
            (Some(name), _) => format!("key:{name}"),
            (None, Some(prefix)) => format!("key:{prefix}…"),
            (None, None) => app.fingerprints.label("bearer", token),
        },
        Credentials::None => String::new(),
    }
}

/// Rejects the request with 401 unless it carries valid credentials, and with 429 while the
/// principal it claims is locked out (from its address, or everywhere) after repeated
/// failures. A valid API key is never held back; other claims wait or are refused before
/// their credentials are checked, so neither the pause nor the 429 depends on them.
pub async fn require_auth(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    // Set by the router; the unspecified address stands in when served without connect info.
    let ip = req
        .extensions()
        .get::<ClientAddr>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0);
    let creds = credentials(&req);
    let mut key_name = None;
    let mut refusal: std::borrow::Cow<str> = "wrong user or password".into();
    let mut jwt_claim = None;
    if let Credentials::Bearer(token) = &creds
        && app.jwt.enabled()
        && jwt::looks_like_jwt(token)
    {
        // Nobody forges a signature either: a valid token never waits for a lock, and a
        // failing one is counted under its issuer (or a fingerprint), never under a name
        // another caller's valid token would need.
        match keys::authenticate_jwt(app.store.as_ref(), &app.jwt, token).await {
            Ok(Ok(principal)) => {
                req.extensions_mut().insert(principal);
                return next.run(req).await;
            }
            Ok(Err(why)) => {
                jwt_claim = Some(
                    app.jwt
                        .claimed(token)
                        .unwrap_or_else(|| app.fingerprints.label("jwt", token)),
                );
                refusal = why.to_string().into();
            }
            Err(e) => {
                tracing::error!(error = %e, "store unavailable for a single-use token");
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authentication unavailable",
                );
            }
        }
    } else if let Credentials::Bearer(token) = &creds {
        // 256 random bits: nobody guesses a key, so a valid one never waits for a lock.
        match keys::authenticate(app.store.as_ref(), token).await {
            Ok(Ok(principal)) => {
                req.extensions_mut().insert(principal);
                return next.run(req).await;
            }
            Ok(Err((why, name))) => {
                refusal = match why {
                    keys::KeyRefusal::Revoked => "API key revoked",
                    keys::KeyRefusal::Expired => "API key expired",
                    keys::KeyRefusal::Unknown => "unknown API key",
                }
                .into();
                key_name = Some(name).filter(|n| !n.is_empty());
            }
            Err(e) => {
                tracing::error!(error = %e, "store unavailable for key lookup");
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authentication unavailable",
                );
            }
        }
    }
    if matches!(creds, Credentials::None)
        && let Some(session) =
            super::sso::authenticate(&app, req.method(), req.uri().path(), req.headers()).await
    {
        // A console session from single sign-on (see `sso`): checked there, CSRF included.
        return match session {
            Ok((principal, session)) => {
                req.extensions_mut().insert(principal);
                req.extensions_mut().insert(session);
                next.run(req).await
            }
            Err(refusal) => refusal,
        };
    }
    if matches!(creds, Credentials::None) {
        // Not an attempt but the first step of Basic: browsers ask before they send.
        return challenge();
    }
    let claim = jwt_claim.unwrap_or_else(|| claimed(&app, &creds, key_name.as_deref()));
    let request_id = req
        .headers()
        .get(super::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let refuse = async |locked: bool, message: String| {
        write_summaries(&app).await;
        if app.throttle.record_each(ip, &claim, locked) {
            audit_refusal(
                &app,
                request_id.clone(),
                claim.clone(),
                ip.to_string(),
                message,
            )
            .await;
        }
    };
    match app.throttle.gate(ip, &claim) {
        keys::Gate::Locked(wait) => {
            tracing::info!("authentication refused: locked out");
            metrics::counter!("pgua_auth_failures_total").increment(1);
            refuse(
                true,
                format!(
                    "authentication refused: locked out for {} s after repeated failures",
                    wait.as_secs().max(1)
                ),
            )
            .await;
            let mut res = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "too many failed authentication attempts; try again later",
            );
            res.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
            return res;
        }
        keys::Gate::Slow(pause) => tokio::time::sleep(pause).await,
        keys::Gate::Open => {}
    }
    if let Credentials::Basic(user, pass) = &creds
        && let Some(principal) = match compat_principal(&app, user, pass) {
            Some(principal) => Some(principal),
            None => {
                // argon2 is slow by design: off the request threads, or it stalls every
                // request.
                let (app, user, pass) = (app.clone(), user.clone(), pass.clone());
                tokio::task::spawn_blocking(move || hashed_principal(&app, &user, &pass))
                    .await
                    .unwrap_or_default()
            }
        }
    {
        app.throttle.succeeded(ip, &claim);
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    }
    tracing::info!(reason = %refusal, "authentication failed");
    metrics::counter!("pgua_auth_failures_total").increment(1);
    app.throttle.failed(ip, &claim);
    refuse(false, format!("authentication failed: {refusal}")).await;
    challenge()
}

/// 401 with the Basic challenge.
fn challenge() -> Response {
    let mut res = json_error(StatusCode::UNAUTHORIZED, "authentication required");
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"pg-user-api\", charset=\"UTF-8\""),
    );
    res
}

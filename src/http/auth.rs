//! Authentication: API keys (`Authorization: Bearer pgua_…`), the compatibility Basic user
//! (`PG_API_USER` / `PG_API_PASS`, all scopes) and extra Basic users with argon2 hashes.
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
use crate::auth::{Principal, Scopes};
use crate::service::audit::AuditScope;
use crate::service::keys;
use crate::service::{App, Caller};

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

/// The principal behind Basic credentials, if they are right.
fn basic_principal(app: &App, user: &str, pass: &str) -> Option<Principal> {
    if let Some(api) = &app.api {
        // Evaluate both comparisons always, so a wrong user costs as much as a wrong password.
        let user_ok = same(user.as_bytes(), api.user.as_bytes());
        let pass_ok = same(pass.as_bytes(), api.password.expose_secret().as_bytes());
        if user_ok & pass_ok {
            return Some(Principal {
                name: user.to_owned(),
                scopes: Scopes::all(),
            });
        }
    }
    app.basic_users.verify(user, pass).map(|scopes| Principal {
        name: user.to_owned(),
        scopes,
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

/// Writes the summaries of finished windows of refusals (see [`keys::Throttle::record_each`]).
async fn write_summaries(app: &App) {
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

/// Writes summaries as their windows end, also when the refusals that filled them stopped.
pub fn spawn_failure_summaries(app: &Arc<App>) {
    let every = app.throttle.summary_every();
    let app = Arc::downgrade(app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            write_summaries(&app).await;
        }
    });
}

/// Stores the `auth` failure record of one refusal (or of a summary of refusals).
async fn audit_refusal(
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
    };
    let scope = AuditScope::new(app, &caller, "auth", None, "");
    let failed: crate::error::Result<()> = Err(crate::error::Error::Forbidden(message));
    scope.outcome(&failed, |_| String::new()).await;
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
    let mut refusal = "wrong user or password";
    if let Credentials::Bearer(token) = &creds {
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
                };
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
    if matches!(creds, Credentials::None) {
        // Not an attempt but the first step of Basic: browsers ask before they send.
        return challenge();
    }
    let claim = claimed(&app, &creds, key_name.as_deref());
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
        && let Some(principal) = {
            // argon2 is slow by design: off the request threads, or it stalls every request.
            let (app, user, pass) = (app.clone(), user.clone(), pass.clone());
            tokio::task::spawn_blocking(move || basic_principal(&app, &user, &pass))
                .await
                .unwrap_or_default()
        }
    {
        app.throttle.succeeded(ip, &claim);
        req.extensions_mut().insert(principal);
        return next.run(req).await;
    }
    tracing::info!(reason = refusal, "authentication failed");
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

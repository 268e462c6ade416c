//! Authentication: API keys (`Authorization: Bearer pgua_…`), the compatibility Basic user
//! (`PG_API_USER` / `PG_API_PASS`, all scopes) and extra Basic users with argon2 hashes.
//! Repeated failures from one address are slowed down, then refused with 429 for a while.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::json_error;
use crate::service::audit::AuditScope;
use crate::service::input::Input;
use crate::service::keys::{self, KEY_PREFIX, Principal, Scopes};
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

/// Who tried, for the audit record: never the secret.
fn attempted(c: &Credentials) -> String {
    match c {
        Credentials::Basic(user, _) => user.chars().take(64).collect(),
        Credentials::Bearer(t) if t.starts_with(KEY_PREFIX) => {
            format!("key:{}…", &t[..t.len().min(KEY_PREFIX.len() + 6)])
        }
        Credentials::Bearer(_) => "bearer token".into(),
        Credentials::None => String::new(),
    }
}

/// Rejects the request with 401 unless it carries valid credentials, and with 429 while its
/// address is locked out after repeated failures.
pub async fn require_auth(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let ip: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(wait) = ip.and_then(|ip| app.throttle.locked(ip)) {
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
    let creds = credentials(&req);
    let outcome = match &creds {
        Credentials::Basic(user, pass) => {
            basic_principal(&app, user, pass).ok_or("wrong user or password")
        }
        Credentials::Bearer(token) => match keys::authenticate(app.store.as_ref(), token).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err((keys::KeyRefusal::Revoked, _))) => Err("API key revoked"),
            Ok(Err((keys::KeyRefusal::Expired, _))) => Err("API key expired"),
            Ok(Err((keys::KeyRefusal::Unknown, _))) => Err("unknown API key"),
            Err(e) => {
                tracing::error!(error = %e, "store unavailable for key lookup");
                return json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "authentication unavailable",
                );
            }
        },
        Credentials::None => Err("no credentials"),
    };
    match outcome {
        Ok(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        Err(reason) => {
            tracing::info!(reason, "authentication failed");
            metrics::counter!("pgua_auth_failures_total").increment(1);
            let delay = ip.map(|ip| app.throttle.failed(ip)).unwrap_or_default();
            if !matches!(creds, Credentials::None) {
                let caller = Caller {
                    request_id: req
                        .headers()
                        .get(super::REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    principal: attempted(&creds),
                    client_addr: ip.map(|i| i.to_string()).unwrap_or_default(),
                    scopes: None,
                };
                let scope = AuditScope::new(&app, &caller, "auth", &Input::default());
                let failed: crate::error::Result<()> = Err(crate::error::Error::Forbidden(
                    format!("authentication failed: {reason}"),
                ));
                scope.outcome(&failed, |_| String::new()).await;
            }
            tokio::time::sleep(delay).await;
            let mut res = json_error(StatusCode::UNAUTHORIZED, "authentication required");
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pg-user-api\", charset=\"UTF-8\""),
            );
            res
        }
    }
}

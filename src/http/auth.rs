//! HTTP Basic authentication against `PG_API_USER` / `PG_API_PASS`, in constant time.

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

use super::error::json_error;
use crate::service::App;

/// The authenticated caller, put into request extensions for handlers.
#[derive(Clone, Debug)]
pub struct Principal(pub String);

/// Compares digests so neither content nor length leaks through timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a).ct_eq(&Sha256::digest(b)).into()
}

fn basic_credentials(req: &Request) -> Option<(String, String)> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Rejects the request with 401 unless it carries the configured Basic credentials.
pub async fn require_auth(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let ok = basic_credentials(&req).filter(|(user, pass)| {
        // Evaluate both comparisons always, so a wrong user costs as much as a wrong password.
        let user_ok = same(user.as_bytes(), app.api.user.as_bytes());
        let pass_ok = same(pass.as_bytes(), app.api.password.expose_secret().as_bytes());
        user_ok & pass_ok
    });
    match ok {
        Some((user, _)) => {
            req.extensions_mut().insert(Principal(user));
            next.run(req).await
        }
        None => {
            tracing::info!("authentication failed");
            let mut res = json_error(StatusCode::UNAUTHORIZED, "authentication required");
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"pg-user-api\", charset=\"UTF-8\""),
            );
            res
        }
    }
}

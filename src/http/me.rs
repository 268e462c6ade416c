//! `/api/v1/me`: who the caller is and what its scopes allow, so a client (the web console)
//! offers only what it may do; for a JWT caller also the token's issuer, `sub`, `jti` and
//! the binding that matched. Any authenticated caller may ask; it needs no scope and,
//! as it changes and reveals nothing of a target, it is not audited.

use axum::Json;
use axum::extract::Extension;
use serde_json::{Value, json};

use super::openapi;
use super::sso::SessionAuth;
use crate::auth::Principal;

/// `{"principal", "scopes": {"environments", "operations", "profiles"}}`, `identity` for a
/// JWT caller, and for a single sign-on session its `csrf_token`, which every other call
/// with the cookie must carry.
#[utoipa::path(
    method(get, post), path = "/api/v1/me", tag = "keys",
    responses((status = 200, description = "the caller", body = openapi::MeBody)),
)]
pub async fn me(
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionAuth>>,
) -> Json<Value> {
    let mut body = json!({ "principal": principal.name, "scopes": principal.scopes });
    if let Some(Extension(s)) = session {
        body["csrf_token"] = s.csrf_token.into();
    }
    if let Some(identity) = &principal.identity {
        body["identity"] = json!(identity);
    }
    Json(body)
}

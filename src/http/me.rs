//! `/api/v1/me`: who the caller is and what its scopes allow, so a client (the web console)
//! offers only what it may do; for a JWT caller also the token's issuer, `sub`, `jti` and
//! the binding that matched. Any authenticated caller may ask; it needs no scope and,
//! as it changes and reveals nothing of a target, it is not audited.

use axum::extract::Extension;
use serde::Serialize;
use utoipa::ToSchema;

use super::answer::Answer;
use super::sso::SessionAuth;
use crate::auth::{Identity, Principal, Scopes};

/// Who the caller is and what it may do.
#[derive(Serialize, ToSchema)]
pub struct MeBody {
    /// Basic user name, `key:<name>`, a JWT binding's principal or `oidc:<email or sub>`.
    principal: String,
    /// Environments, operations and profiles.
    #[schema(value_type = Object)]
    scopes: Scopes,
    /// JWT callers only: `issuer`, `subject`, `jti` and the `binding` that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    identity: Option<Identity>,
    /// Only for a single sign-on session: the token its other calls carry in `x-csrf-token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf_token: Option<String>,
}

/// `{"principal", "scopes": {"environments", "operations", "profiles"}}`, `identity` for a
/// JWT caller, and for a single sign-on session its `csrf_token`, which every other call
/// with the cookie must carry.
#[utoipa::path(
    method(get, post), path = "/api/v1/me", tag = "keys",
    responses((status = 200, description = "the caller", body = MeBody)),
)]
pub async fn me(
    Extension(principal): Extension<Principal>,
    session: Option<Extension<SessionAuth>>,
) -> Answer<MeBody> {
    Answer(MeBody {
        principal: principal.name,
        scopes: Scopes::clone(&principal.scopes),
        identity: principal.identity,
        csrf_token: session.map(|Extension(s)| s.csrf_token),
    })
}

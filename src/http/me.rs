//! `/api/v1/me`: who the caller is and what its scopes allow, so a client (the web console)
//! offers only what it may do. Any authenticated caller may ask; it needs no scope and,
//! as it changes and reveals nothing of a target, it is not audited.

use axum::extract::Extension;
use serde::Serialize;
use utoipa::ToSchema;

use super::answer::Answer;
use crate::auth::{Principal, Scopes};

/// Who the caller is and what it may do.
#[derive(Serialize, ToSchema)]
pub struct MeBody {
    /// Basic user name, or `key:<name>`.
    principal: String,
    /// Environments, operations and profiles.
    #[schema(value_type = Object)]
    scopes: Scopes,
}

/// `{"principal", "scopes": {"environments", "operations", "profiles"}}`.
#[utoipa::path(
    method(get, post), path = "/api/v1/me", tag = "keys",
    responses((status = 200, description = "the caller", body = MeBody)),
)]
pub async fn me(Extension(principal): Extension<Principal>) -> Answer<MeBody> {
    Answer(MeBody {
        principal: principal.name,
        scopes: principal.scopes,
    })
}

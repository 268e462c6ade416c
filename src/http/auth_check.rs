//! `/api/v1/auth/check`: explains what the service makes of a JWT (which check refuses it,
//! or which binding matches and what it allows), for operators setting up CI federation.
//! Needs the registry-admin scope; the token's audience need not be the service's own.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::params::Call;
use super::users::authorize;
use crate::auth::Operation;
use crate::auth::jwt::Explanation;
use crate::error::{Error, Result};
use crate::service::{App, Caller};

/// The token to explain.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckToken {
    /// The JWT (send it in the body: a token in a URL ends up in access logs).
    #[schema(min_length = 1)]
    token: String,
}

/// Explains `token`.
#[utoipa::path(
    post, path = "/api/v1/auth/check", tag = "keys",
    request_body = CheckToken,
    responses((status = 200, description = "the explanation", body = Explanation)),
)]
pub async fn check(
    State(app): State<Arc<App>>,
    caller: Caller,
    call: Call<CheckToken>,
) -> Result<Json<Explanation>> {
    authorize(
        &app,
        &caller,
        Operation::RegistryAdmin,
        "auth:check",
        None,
        "",
    )
    .await?;
    let p = call.parsed?;
    if !app.jwt.enabled() {
        return Err(Error::Invalid(
            "no JWT issuer is configured ([[auth.jwt.issuers]])".into(),
        ));
    }
    Ok(Json(app.jwt.explain(p.token.trim()).await))
}

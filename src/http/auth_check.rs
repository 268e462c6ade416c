//! `/api/v1/auth/check`: explains what the service makes of a JWT (which check refuses it,
//! or which binding matches and what it allows), for operators setting up CI federation.
//! Needs the registry-admin scope; the token's audience need not be the service's own.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::openapi;
use super::params::Params;
use super::users::authorize;
use crate::auth::Operation;
use crate::auth::jwt::Explanation;
use crate::error::{Error, Result};
use crate::service::input::Input;
use crate::service::{App, Caller};

/// Explains `token` (POST body only: a token in a URL ends up in access logs).
#[utoipa::path(
    post, path = "/api/v1/auth/check", tag = "keys",
    request_body = openapi::CheckFields,
    responses((status = 200, description = "the explanation", body = openapi::CheckBody)),
)]
pub async fn check(
    State(app): State<Arc<App>>,
    caller: Caller,
    p: Params,
) -> Result<Json<Explanation>> {
    let input = Input::default();
    authorize(
        &app,
        &caller,
        Operation::RegistryAdmin,
        "auth:check",
        &input,
        None,
    )
    .await?;
    let token = p.0.required("token")?.trim();
    if !app.jwt.enabled() {
        return Err(Error::Invalid(
            "no JWT issuer is configured ([[auth.jwt.issuers]])".into(),
        ));
    }
    Ok(Json(app.jwt.explain(token).await))
}

//! `/api/v1/registry`: the databases this service manages.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use utoipa::IntoParams;

use super::openapi;
use super::params::Params;
use crate::auth::Operation;
use crate::error::Result;
use crate::service::doctor::CheckReport;
use crate::service::input::Input;
use crate::service::{self, App, Caller};

/// Lists every registry entry, as the original: `{count, databases}`.
/// A key scoped to some environments sees only their entries.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry", tag = "registry",
    responses((status = 200, description = "the answer", body = openapi::RegistryBody)),
)]
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Json<Value>> {
    let none = Input::default();
    super::users::authorize(&app, &caller, Operation::Read, "registry:list", &none, None).await?;
    let mut entries = service::registry::list(&app, &caller).await?;
    if let Some(scopes) = &caller.scopes {
        entries.retain(|e| scopes.allows_env(&e.env));
    }
    Ok(Json(
        json!({ "count": entries.len(), "databases": entries }),
    ))
}

async fn change(
    app: Arc<App>,
    caller: Caller,
    params: Params,
    action: &str,
) -> Result<Json<Value>> {
    let operation = format!("registry:{action}");
    let input = &params.0;
    super::users::authorize(
        &app,
        &caller,
        Operation::RegistryAdmin,
        &operation,
        input,
        None,
    )
    .await?;
    let c = service::registry::change(&app, &caller, action, input).await?;
    Ok(Json(json!({ "status": c.status, "entry": c.entry })))
}

/// Adds an entry: env, database, host, [port, notes, active, sslmode].
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/add", tag = "registry",
    params(openapi::RegistryKey, openapi::RegistryFields),
    responses((status = 200, description = "done", body = openapi::RegistryChangeBody)),
)]
pub async fn add(State(a): State<Arc<App>>, c: Caller, p: Params) -> Result<Json<Value>> {
    change(a, c, p, "add").await
}

/// Changes host, port, notes, active or sslmode of an entry.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/update", tag = "registry",
    params(openapi::RegistryKey, openapi::RegistryFields),
    responses((status = 200, description = "done", body = openapi::RegistryChangeBody)),
)]
pub async fn update(State(a): State<Arc<App>>, c: Caller, p: Params) -> Result<Json<Value>> {
    change(a, c, p, "update").await
}

/// Deactivates an entry: it stays listed, nothing runs against it.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/deactivate", tag = "registry",
    params(openapi::RegistryKey),
    responses((status = 200, description = "done", body = openapi::RegistryChangeBody)),
)]
pub async fn deactivate(State(a): State<Arc<App>>, c: Caller, p: Params) -> Result<Json<Value>> {
    change(a, c, p, "deactivate").await
}

/// Removes an entry.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/remove", tag = "registry",
    params(openapi::RegistryKey),
    responses((status = 200, description = "done", body = openapi::RegistryChangeBody)),
)]
pub async fn remove(State(a): State<Arc<App>>, c: Caller, p: Params) -> Result<Json<Value>> {
    change(a, c, p, "remove").await
}

/// Which registry entries a check covers: all, or those of env and/or database.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckFilter {
    /// Only entries of this environment.
    pub env: Option<String>,
    /// Only entries of this database name.
    pub database: Option<String>,
}

/// The doctor: per active entry, at once and within the connect timeout, whether it answers
/// (and why not), its version and TLS, the admin role's attributes and memberships, and for
/// each profile, lock and drop what the admin role lacks there with the statement that
/// fixes it. The same JSON as `pg-user-api doctor --format json`.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/check", tag = "registry",
    params(CheckFilter),
    responses((status = 200, description = "the findings", body = CheckReport)),
)]
pub async fn check(
    State(app): State<Arc<App>>,
    caller: Caller,
    params: Params,
) -> Result<Json<CheckReport>> {
    let input = &params.0;
    super::users::authorize(
        &app,
        &caller,
        Operation::RegistryAdmin,
        "registry:check",
        input,
        None,
    )
    .await?;
    let mut entries =
        service::doctor::select(&app, input.get("env"), input.get("database")).await?;
    if let Some(scopes) = &caller.scopes {
        entries.retain(|e| scopes.allows_env(&e.env));
    }
    Ok(Json(service::doctor::check(&app, entries).await))
}

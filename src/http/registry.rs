//! `/api/v1/registry`: the databases this service manages.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::answer::Answer;
use super::params::Params;
use crate::auth::Operation;
use crate::error::Result;
use crate::service::doctor::CheckReport;
use crate::service::params::{CheckFilter, Entry, RegistryFields, Target};
use crate::service::{self, App, Caller};
use crate::store::RegistryEntry;

/// The registry.
#[derive(Serialize, ToSchema)]
pub struct RegistryBody {
    /// Entries listed.
    count: usize,
    /// The entries.
    databases: Vec<RegistryEntry>,
}

/// A registry change.
#[derive(Serialize, ToSchema)]
pub struct RegistryChangeBody {
    /// What was done: `added`, `updated`, `deactivated`, `removed`.
    status: &'static str,
    /// The entry after the change (before it, for a removal).
    entry: RegistryEntry,
}

/// Lists every registry entry, as the original: `{count, databases}`.
/// A key scoped to some environments sees only their entries.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry", tag = "registry",
    responses((status = 200, description = "the answer", body = RegistryBody)),
)]
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Answer<RegistryBody>> {
    super::users::authorize(&app, &caller, Operation::Read, "registry:list", None, "").await?;
    let mut entries = service::registry::list(&app, &caller).await?;
    if let Some(scopes) = &caller.scopes {
        entries.retain(|e| scopes.allows_env(&e.env));
    }
    Ok(Answer(RegistryBody {
        count: entries.len(),
        databases: entries,
    }))
}

async fn change(
    app: Arc<App>,
    caller: Caller,
    entry: Entry,
    action: &str,
) -> Result<Answer<RegistryChangeBody>> {
    let operation = format!("registry:{action}");
    let key = Target::new(entry.env.clone(), entry.database.clone());
    let admin = Operation::RegistryAdmin;
    super::users::authorize(&app, &caller, admin, &operation, Some(&key), "").await?;
    let c = service::registry::change(&app, &caller, action, &entry).await?;
    Ok(Answer(RegistryChangeBody {
        status: c.status,
        entry: c.entry,
    }))
}

/// Adds an entry: env, database, host, [port, notes, active, sslmode].
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/add", tag = "registry",
    params(Entry, RegistryFields),
    responses((status = 200, description = "done", body = RegistryChangeBody)),
)]
pub async fn add(
    State(a): State<Arc<App>>,
    c: Caller,
    Params(e): Params<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, e, "add").await
}

/// Changes host, port, notes, active or sslmode of an entry.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/update", tag = "registry",
    params(Entry, RegistryFields),
    responses((status = 200, description = "done", body = RegistryChangeBody)),
)]
pub async fn update(
    State(a): State<Arc<App>>,
    c: Caller,
    Params(e): Params<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, e, "update").await
}

/// Deactivates an entry: it stays listed, nothing runs against it.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/deactivate", tag = "registry",
    params(Entry),
    responses((status = 200, description = "done", body = RegistryChangeBody)),
)]
pub async fn deactivate(
    State(a): State<Arc<App>>,
    c: Caller,
    Params(e): Params<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, e, "deactivate").await
}

/// Removes an entry.
#[utoipa::path(
    method(get, post), path = "/api/v1/registry/remove", tag = "registry",
    params(Entry),
    responses((status = 200, description = "done", body = RegistryChangeBody)),
)]
pub async fn remove(
    State(a): State<Arc<App>>,
    c: Caller,
    Params(e): Params<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, e, "remove").await
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
    Params(filter): Params<CheckFilter>,
) -> Result<Json<CheckReport>> {
    let key = filter
        .env
        .as_ref()
        .map(|env| Target::new(env.clone(), filter.database.clone().unwrap_or_default()));
    let admin = Operation::RegistryAdmin;
    super::users::authorize(&app, &caller, admin, "registry:check", key.as_ref(), "").await?;
    let (env, database) = (filter.env.as_deref(), filter.database.as_deref());
    let mut entries = service::doctor::select(&app, env, database).await?;
    if let Some(scopes) = &caller.scopes {
        entries.retain(|e| scopes.allows_env(&e.env));
    }
    Ok(Json(service::doctor::check(&app, entries).await))
}

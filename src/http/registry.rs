//! `/api/v1/registry`: the databases this service manages.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::answer::Answer;
use super::params::Call;
use super::users::{audited, authorize};
use crate::auth::Operation;
use crate::error::Result;
use crate::service::audit::AuditScope;
use crate::service::doctor::CheckReport;
use crate::service::params::{CheckFilter, Entry, RegistryFields};
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
    authorize(&app, &caller, Operation::Read, "registry:list", None, "").await?;
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
    call: Call<Entry>,
    action: &str,
) -> Result<Answer<RegistryChangeBody>> {
    let operation = format!("registry:{action}");
    let key = Some(&call.target);
    authorize(&app, &caller, Operation::RegistryAdmin, &operation, key, "").await?;
    let entry = audited(call.parsed, || {
        AuditScope::new(&app, &caller, &operation, key, "")
    })
    .await?;
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
    call: Call<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, call, "add").await
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
    call: Call<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, call, "update").await
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
    call: Call<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, call, "deactivate").await
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
    call: Call<Entry>,
) -> Result<Answer<RegistryChangeBody>> {
    change(a, c, call, "remove").await
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
    call: Call<CheckFilter>,
) -> Result<Json<CheckReport>> {
    let admin = Operation::RegistryAdmin;
    authorize(
        &app,
        &caller,
        admin,
        "registry:check",
        Some(&call.target),
        "",
    )
    .await?;
    let filter = call.parsed?;
    let (env, database) = (filter.env.as_deref(), filter.database.as_deref());
    let mut entries = service::doctor::select(&app, env, database).await?;
    if let Some(scopes) = &caller.scopes {
        entries.retain(|e| scopes.allows_env(&e.env));
    }
    Ok(Json(service::doctor::check(&app, entries).await))
}

//! `/api/v1/keys`: API keys, for callers with the registry-admin scope.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::openapi;
use super::params::Params;
use super::users::authorize;
use crate::auth::{Operation, Scopes};
use crate::error::{Error, Result};
use crate::service::audit::AuditScope;
use crate::service::keys;
use crate::service::params::{KeyName, KeyScopes, NewKey};
use crate::service::{App, Caller};
use crate::store::ApiKey;

/// A key may only hand out what its creator has: no escalation through key creation.
fn within(new: &Scopes, creator: &Scopes) -> bool {
    let covers = |mine: &[String], theirs: &[String]| {
        mine.iter().any(|m| m == "*") || theirs.iter().all(|t| t != "*" && mine.contains(t))
    };
    covers(&creator.environments, &new.environments)
        && covers(&creator.profiles, &new.profiles)
        && new
            .operations
            .iter()
            .all(|o| creator.operations.contains(o))
}

fn shown(k: &ApiKey) -> serde_json::Value {
    json!({
        "name": k.name,
        "owner": k.owner,
        "prefix": k.prefix,
        "scopes": serde_json::from_str::<serde_json::Value>(&k.scopes).unwrap_or_default(),
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
    })
}

/// Creates a key: `name`, `owner`, `environments`, `operations`, `profiles`, [`expires` |
/// `days`]. The secret is in this response only.
#[utoipa::path(
    method(get, post), path = "/api/v1/keys/create", tag = "keys",
    params(NewKey, KeyScopes),
    responses((status = 200, description = "done", body = openapi::KeyBody)),
)]
pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    Params(new): Params<NewKey>,
) -> Result<Response> {
    authorize(
        &app,
        &caller,
        Operation::RegistryAdmin,
        "keys:create",
        None,
        "",
    )
    .await?;
    let scope = AuditScope::new(&app, &caller, "keys:create", None, "");
    let result = async {
        let scopes = keys::scopes(&new.scopes)?;
        if !caller
            .scopes
            .as_ref()
            .is_some_and(|mine| within(&scopes, mine))
        {
            return Err(Error::Forbidden(format!(
                "'{}' cannot create a key with scopes beyond its own",
                caller.principal
            )));
        }
        let expiry = keys::expiry(&new.scopes)?;
        keys::create(app.store.as_ref(), &new.name, &new.owner, &scopes, expiry).await
    }
    .await;
    scope
        .outcome(&result, |(k, _)| format!("key '{}' created", k.name))
        .await;
    let (key, secret) = result?;
    let mut body = shown(&key);
    body["key"] = json!(secret);
    let mut res = Json(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Lists keys: names, owners, prefixes, scopes and dates; never a secret or a hash.
#[utoipa::path(
    method(get, post), path = "/api/v1/keys", tag = "keys",
    responses((status = 200, description = "the answer", body = openapi::KeysBody)),
)]
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Response> {
    authorize(
        &app,
        &caller,
        Operation::RegistryAdmin,
        "keys:list",
        None,
        "",
    )
    .await?;
    let keys = app.store.key_list().await?;
    let list: Vec<_> = keys.iter().map(shown).collect();
    Ok(Json(json!({ "count": list.len(), "keys": list })).into_response())
}

/// Revokes a key by `name`; every replica refuses it from the next call on.
#[utoipa::path(
    method(get, post), path = "/api/v1/keys/revoke", tag = "keys",
    params(KeyName),
    responses((status = 200, description = "done", body = openapi::RevokedBody)),
)]
pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    Params(KeyName { name }): Params<KeyName>,
) -> Result<Response> {
    authorize(
        &app,
        &caller,
        Operation::RegistryAdmin,
        "keys:revoke",
        None,
        "",
    )
    .await?;
    let scope = AuditScope::new(&app, &caller, "keys:revoke", None, "");
    let result = async {
        let name = name.as_str();
        if app.store.key_revoke(name).await? {
            Ok(name.to_owned())
        } else {
            Err(Error::Invalid(format!("no active API key named '{name}'")))
        }
    }
    .await;
    scope
        .outcome(&result, |n| format!("key '{n}' revoked"))
        .await;
    let name = result?;
    Ok(Json(json!({ "name": name, "status": "revoked" })).into_response())
}

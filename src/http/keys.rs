//! `/api/v1/keys`: API keys, for callers with the registry-admin scope.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::answer::Answer;
use super::params::Call;
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

/// An API key as listed: never its secret or hash.
#[derive(Serialize, ToSchema)]
pub struct KeyBody {
    /// Unique name.
    name: String,
    /// Who answers for it.
    owner: String,
    /// The secret's first characters.
    prefix: String,
    /// Environments, operations and profiles.
    #[schema(value_type = Object)]
    scopes: serde_json::Value,
    /// When it was made.
    created_at: DateTime<Utc>,
    /// When it stops working.
    expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    revoked_at: Option<DateTime<Utc>>,
    /// The secret: only in the answer to create.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    key: Option<String>,
}

impl From<&ApiKey> for KeyBody {
    fn from(k: &ApiKey) -> Self {
        Self {
            name: k.name.clone(),
            owner: k.owner.clone(),
            prefix: k.prefix.clone(),
            scopes: serde_json::from_str(&k.scopes).unwrap_or_default(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            key: None,
        }
    }
}

/// The API keys.
#[derive(Serialize, ToSchema)]
pub struct KeysBody {
    /// Keys listed.
    count: usize,
    /// The keys.
    keys: Vec<KeyBody>,
}

/// A revoked key.
#[derive(Serialize, ToSchema)]
pub struct RevokedBody {
    /// The key's name.
    name: String,
    /// `revoked`.
    status: &'static str,
}

/// Creates a key: `name`, `owner`, `environments`, `operations`, `profiles`, [`expires` |
/// `days`]. The secret is in this response only.
#[utoipa::path(
    method(get, post), path = "/api/v1/keys/create", tag = "keys",
    params(NewKey, KeyScopes),
    responses((status = 200, description = "done", body = KeyBody)),
)]
pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    call: Call<NewKey>,
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
        let new = call.parsed?;
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
    let body = KeyBody {
        key: Some(secret),
        ..KeyBody::from(&key)
    };
    let mut res = Answer(body).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Lists keys: names, owners, prefixes, scopes and dates; never a secret or a hash.
#[utoipa::path(
    method(get, post), path = "/api/v1/keys", tag = "keys",
    responses((status = 200, description = "the answer", body = KeysBody)),
)]
pub async fn list(State(app): State<Arc<App>>, caller: Caller) -> Result<Answer<KeysBody>> {
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
    let keys: Vec<KeyBody> = keys.iter().map(KeyBody::from).collect();
    Ok(Answer(KeysBody {
        count: keys.len(),
        keys,
    }))
}

/// Revokes a key by `name`; every replica refuses it from the next call on.
#[utoipa::path(
    method(get, post), path = "/api/v1/keys/revoke", tag = "keys",
    params(KeyName),
    responses((status = 200, description = "done", body = RevokedBody)),
)]
pub async fn revoke(
    State(app): State<Arc<App>>,
    caller: Caller,
    call: Call<KeyName>,
) -> Result<Answer<RevokedBody>> {
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
        let KeyName { name } = call.parsed?;
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
    Ok(Answer(RevokedBody {
        name,
        status: "revoked",
    }))
}

//! `/api/v1/users/*`: create by profile, reset, search-path, find, all.

use std::future::Future;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::answer::Answer;
use super::bodies::{
    FindBody, MultiBody, Planned, PrivilegesBody, SearchPathBody, TargetKeys, UserBody, UserEntry,
    UsersBody,
};
use super::error::json_error;
use super::openapi;
use super::params::Call;
use crate::auth::Operation;
use crate::error::Result;
use crate::service::audit::AuditScope;
use crate::service::fanout::{self, Outcome};
use crate::service::ops::UserOp;
use crate::service::params::{self as p, CreateUser, Lookup, Nothing, On, RoleChange, Target};
use crate::service::users::{self as ops, UserResult, V1Role, status};
use crate::service::{App, Caller};
use crate::service::{grants, lifecycle};

/// Response header naming the profile and version that created a user.
pub const PROFILE_HEADER: &str = "x-pgua-profile";

/// The v1 body of one result, its status, and whether it carries a password; a dry run
/// adds `dry_run` and the statements that would run.
fn user_body(r: &UserResult) -> Rendered<'_> {
    let target = TargetKeys::from(&r.entry);
    let (body, carries_password) = match &r.schema {
        Some(schema) => {
            let body = SearchPathBody {
                username: r.username.clone(),
                schema: schema.clone(),
                status: r.status.clone(),
                hostname: target.hostname,
                database: target.database,
                port: target.port,
                env: target.env,
                plan: Planned::of(r),
            };
            (Body::SearchPath(body), false)
        }
        None => {
            let body = UserBody {
                username: r.username.clone(),
                password: r.password.as_ref().map(|p| p.expose().to_owned()),
                status: r.status.clone(),
                target,
                sessions_terminated: r.sessions_terminated,
                plan: Planned::of(r),
            };
            let carries_password = body.password.is_some();
            (Body::User(body), carries_password)
        }
    };
    if r.plan.is_some() {
        return (StatusCode::OK, body, false);
    }
    let code = if r.status == status::NOT_FOUND {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    };
    (code, body, carries_password)
}

fn respond(code: StatusCode, body: impl Serialize, carries_password: bool) -> Response {
    let mut res = (code, Answer(body)).into_response();
    if carries_password {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// A rendered result: status, body, whether the body carries a password.
type Rendered<'r> = (StatusCode, Body<'r>, bool);

/// The body of one target's answer, written straight from its type (see `super::answer`).
#[derive(Serialize)]
#[serde(untagged)]
enum Body<'r> {
    User(UserBody),
    SearchPath(SearchPathBody),
    Find(FindBody),
    Users(UsersBody<'r>),
    Privileges(PrivilegesBody<'r>),
}

/// A target's rendered result for a call with several targets; only its status and
/// whether it carries a password are kept beside the body, as a `Value` to add keys to.
type RenderedValue = (StatusCode, serde_json::Value, bool);

/// `rendered` as a `Value`, to go into a fan-out's `results`.
fn to_value((code, body, pw): Rendered<'_>) -> Result<RenderedValue> {
    let body = serde_json::to_value(body).map_err(|e| crate::error::Error::Internal(e.into()))?;
    Ok((code, body, pw))
}

/// One result per target, and an overall status: 200 when every target succeeded, 207
/// when some did, otherwise the targets' common failure status (502 when they differ).
fn multi_response(outcomes: Vec<Outcome<RenderedValue>>) -> Response {
    let mut any_password = false;
    let mut codes = Vec::new();
    let results: Vec<serde_json::Value> = outcomes
        .into_iter()
        .map(|o| {
            let (code, mut body) = match o.result {
                Ok((code, body, pw)) => {
                    any_password |= pw;
                    (code, body)
                }
                Err(e) => {
                    if e.status().is_server_error() {
                        tracing::warn!(env = %o.env, database = %o.database, error = %e, "target failed");
                    }
                    (e.status(), json!({ "error": e.to_string() }))
                }
            };
            codes.push(code);
            body["env"] = json!(o.env);
            body["database"] = json!(o.database);
            body["http_status"] = json!(code.as_u16());
            body
        })
        .collect();
    let succeeded = codes.iter().filter(|c| c.is_success()).count();
    let overall = if succeeded == codes.len() {
        StatusCode::OK
    } else if succeeded > 0 {
        StatusCode::MULTI_STATUS
    } else if codes.iter().all(|c| *c == codes[0]) {
        codes[0]
    } else {
        StatusCode::BAD_GATEWAY
    };
    let body = MultiBody {
        results,
        succeeded,
        failed: codes.len() - succeeded,
    };
    respond(overall, body, any_password)
}

fn rendered<T>(
    outcomes: Vec<Outcome<T>>,
    render: fn(&T) -> Rendered<'_>,
) -> Vec<Outcome<RenderedValue>> {
    outcomes
        .into_iter()
        .map(|o| Outcome {
            env: o.env,
            database: o.database,
            result: o.result.and_then(|r| to_value(render(&r))),
        })
        .collect()
}

/// Checks the caller's scopes for a call on `target` (or none); a refusal is audited like
/// any failed operation.
pub(super) async fn authorize(
    app: &App,
    caller: &Caller,
    op: Operation,
    operation: &str,
    target: Option<&Target>,
    username: &str,
) -> Result<()> {
    audited(caller.authorize(op, target, None), || {
        AuditScope::new(app, caller, operation, target, username)
    })
    .await
}

/// `result`, its failure first stored as the outcome of the trail `audit` starts.
pub(super) async fn audited<'a, T>(
    result: Result<T>,
    audit: impl FnOnce() -> AuditScope<'a>,
) -> Result<T> {
    if result.is_err() {
        audit().outcome(&result, |_| String::new()).await;
    }
    result
}

/// Runs a read (audited as `name`) on the one target a call names, or on each of several.
async fn read<P, T, F, Fut>(
    app: Arc<App>,
    caller: Caller,
    call: Call<On<P>>,
    name: &str,
    op: F,
    render: fn(&T) -> Rendered<'_>,
) -> Result<Response>
where
    P: Clone,
    F: Fn(Arc<App>, Caller, On<P>) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let (target, username) = (&call.target, call.username.as_str());
    authorize(
        &app,
        &caller,
        Operation::Read,
        "read",
        Some(target),
        username,
    )
    .await?;
    let audit = || AuditScope::for_read(&app, &caller, name, Some(target), username);
    let call = audited(call.parsed, audit).await?;
    match fanout::split(&call) {
        None => {
            let result = op(app, caller, call).await?;
            let (code, body, pw) = render(&result);
            Ok(respond(code, body, pw))
        }
        Some(inputs) => {
            let each = |input| op(app.clone(), caller.clone(), input);
            let outcomes = fanout::run_each(&app, inputs, each).await;
            Ok(multi_response(rendered(outcomes, render)))
        }
    }
}

/// Runs a user operation on the one target a call names, or on each of several
/// (`env=dev,qa` and/or `database=a,b`).
async fn run<P, F, Fut>(
    app: Arc<App>,
    caller: Caller,
    call: Call<On<P>>,
    operation: UserOp,
    op: F,
) -> Result<Response>
where
    P: Clone,
    F: Fn(Arc<App>, Caller, On<P>, bool) -> Fut,
    Fut: Future<Output = Result<UserResult>>,
{
    let (target, username) = (&call.target, call.username.as_str());
    let allowed = caller.authorize(operation.scope(), Some(target), operation.profile());
    let audit = || AuditScope::for_op(&app, &caller, &operation, target, username);
    audited(allowed, audit).await?;
    let call = audited(call.parsed, || {
        let mut scope = audit();
        if let Some(profile) = operation.profile().and_then(|p| app.profiles.get(p)) {
            scope.set_profile(&profile.label());
        }
        scope
    })
    .await?;
    match fanout::split(&call) {
        None => {
            let result = op(app, caller, call, false).await?;
            let (code, body, pw) = user_body(&result);
            Ok(respond(code, body, pw))
        }
        Some(inputs) => {
            let each = |input, same_server| op(app.clone(), caller.clone(), input, same_server);
            let outcomes = fanout::run(&app, &caller, inputs, &operation, each).await;
            Ok(multi_response(rendered(outcomes, user_body)))
        }
    }
}

/// Creates a user of the profile the path names (`/api/v1/users/app`, …); the response
/// keeps the v1 keys and names the profile version in `x-pgua-profile`.
#[utoipa::path(
    method(get, post), path = "/api/v1/users/{profile}", tag = "users",
    params(("profile" = String, Path, description = "The profile"), Target, CreateUser),
    responses(openapi::UserChange),
)]
pub async fn create(
    State(app): State<Arc<App>>,
    Path(profile): Path<String>,
    caller: Caller,
    // An unknown profile is a 404 whatever the parameters: they are read only after it.
    call: std::result::Result<Call<On<CreateUser>>, Response>,
) -> Result<Response> {
    let Some(profile) = app.profiles.get(&profile) else {
        return Ok(json_error(
            StatusCode::NOT_FOUND,
            format!("no such endpoint or profile: {profile}"),
        ));
    };
    let call = match call {
        Ok(call) => call,
        Err(refused) => return Ok(refused),
    };
    let label = profile.label();
    let operation = UserOp::Create(profile.name.clone());
    let mut res = run(app, caller, call, operation, move |a, c, i, same| {
        let profile = profile.clone();
        async move {
            if same {
                ops::create_on_same_server(&a, &c, &profile, &i).await
            } else {
                ops::create(&a, &c, &profile, &i).await
            }
        }
    })
    .await?;
    if let Ok(v) = HeaderValue::from_str(&label) {
        res.headers_mut().insert(PROFILE_HEADER, v);
    }
    Ok(res)
}

/// The profiles.
#[derive(Serialize, ToSchema)]
pub struct ProfilesBody<'a> {
    /// Profiles listed.
    count: usize,
    /// Each profile's parameters, attributes, grants, settings and version.
    #[schema(value_type = Vec<Object>)]
    profiles: Vec<&'a crate::plan::Profile>,
}

/// Lists the profiles: parameters, attributes, grants, settings and version.
#[utoipa::path(
    get, path = "/api/v1/profiles", tag = "users",
    responses((status = 200, description = "the answer", body = ProfilesBody)),
)]
pub async fn profiles(State(app): State<Arc<App>>, caller: Caller) -> Result<Response> {
    authorize(&app, &caller, Operation::Read, "profiles", None, "").await?;
    let profiles: Vec<_> = app.profiles.iter().map(|p| p.as_ref()).collect();
    Ok(Answer(ProfilesBody {
        count: profiles.len(),
        profiles,
    })
    .into_response())
}

/// Gives a user a new generated password.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/reset",
    tag = "users",
    params(Target, RoleChange),
    responses(openapi::UserChange)
)]
pub async fn reset(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<RoleChange>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Reset, |a, c, i, _| async move {
        ops::reset(&a, &c, &i).await
    })
    .await
}

/// Sets a user's search_path in the target database.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/search-path",
    tag = "users",
    params(Target, p::SearchPath),
    responses(openapi::SearchPathChange)
)]
pub async fn search_path(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<p::SearchPath>>,
) -> Result<Response> {
    run(a, c, call, UserOp::SearchPath, |a, c, i, _| async move {
        ops::search_path(&a, &c, &i).await
    })
    .await
}

/// Locks a user (NOLOGIN) and ends its open sessions.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/lock",
    tag = "users",
    params(Target, RoleChange),
    responses(openapi::UserChange)
)]
pub async fn lock(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<RoleChange>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Lock, |a, c, i, _| async move {
        lifecycle::lock(&a, &c, &i).await
    })
    .await
}

/// Unlocks a user (LOGIN).
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/unlock",
    tag = "users",
    params(Target, RoleChange),
    responses(openapi::UserChange)
)]
pub async fn unlock(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<RoleChange>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Unlock, |a, c, i, _| async move {
        lifecycle::unlock(&a, &c, &i).await
    })
    .await
}

/// Ends a user's password validity at `valid_until` (default now).
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/expire",
    tag = "users",
    params(Target, p::Expire),
    responses(openapi::UserChange)
)]
pub async fn expire(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<p::Expire>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Expire, |a, c, i, _| async move {
        lifecycle::expire(&a, &c, &i).await
    })
    .await
}

/// Extends a user's password validity (`valid_until`, `days`, or forever).
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/renew",
    tag = "users",
    params(Target, p::Renew),
    responses(openapi::UserChange)
)]
pub async fn renew(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<p::Renew>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Renew, |a, c, i, _| async move {
        lifecycle::renew(&a, &c, &i).await
    })
    .await
}

/// Changes a user's connection limit or alterable attributes.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/alter",
    tag = "users",
    params(Target, p::Alter),
    responses(openapi::UserChange)
)]
pub async fn alter(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<p::Alter>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Alter, |a, c, i, _| async move {
        lifecycle::alter(&a, &c, &i).await
    })
    .await
}

/// Drops a user: reassigns and drops what it owns in every database, ends its sessions.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/drop",
    tag = "users",
    params(Target, p::Drop),
    responses(openapi::UserChange)
)]
pub async fn drop(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<p::Drop>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Drop, |a, c, i, _| async move {
        lifecycle::drop(&a, &c, &i).await
    })
    .await
}

/// Grants privileges or membership to a user.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/grant",
    tag = "users",
    params(Target, p::Grant),
    responses(openapi::UserChange)
)]
pub async fn grant(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<p::Grant>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Grant, |a, c, i, _| async move {
        grants::grant(&a, &c, &i).await
    })
    .await
}

/// Revokes privileges or membership from a user.
#[utoipa::path(
    method(get, post),
    path = "/api/v1/users/revoke",
    tag = "users",
    params(Target, p::Grant),
    responses(openapi::UserChange)
)]
pub async fn revoke(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<p::Grant>>,
) -> Result<Response> {
    run(a, c, call, UserOp::Revoke, |a, c, i, _| async move {
        grants::revoke(&a, &c, &i).await
    })
    .await
}

/// What a user can do in the target database.
#[utoipa::path(
    method(get, post), path = "/api/v1/users/privileges", tag = "users",
    params(Target, Lookup),
    responses((status = 200, description = "done", body = openapi::PrivilegesResponse), (status = 404, description = "no such entry, profile or user", body = openapi::PrivilegesResponse)),
)]
pub async fn privileges(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<Lookup>>,
) -> Result<Response> {
    let op =
        |a: Arc<App>, c: Caller, i: On<Lookup>| async move { grants::report(&a, &c, &i).await };
    read(a, c, call, "privileges", op, |r| {
        let body = PrivilegesBody {
            found: r.report.is_some(),
            username: r.username.clone(),
            target: (&r.entry).into(),
            report: r.report.as_ref(),
        };
        let code = if body.found {
            StatusCode::OK
        } else {
            StatusCode::NOT_FOUND
        };
        (code, Body::Privileges(body), false)
    })
    .await
}

/// Looks a user up: `{found, username, attributes, hostname, database, port, env}`.
#[utoipa::path(
    method(get, post), path = "/api/v1/users/find", tag = "users",
    params(Target, Lookup),
    responses((status = 200, description = "the answer", body = openapi::FindResponse)),
)]
pub async fn find(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<Lookup>>,
) -> Result<Response> {
    let op = |a: Arc<App>, c: Caller, i: On<Lookup>| async move { ops::find(&a, &c, &i).await };
    read(a, c, call, "find", op, |r| {
        let body = FindBody {
            found: r.role.is_some(),
            username: r.username.clone(),
            attributes: r.role.as_ref().map(V1Role::find_attributes),
            target: (&r.entry).into(),
        };
        (StatusCode::OK, Body::Find(body), false)
    })
    .await
}

/// Lists the target's users (the roles that can log in): `{env, hostname, database, port, users}`.
#[utoipa::path(
    method(get, post), path = "/api/v1/users/all", tag = "users",
    params(Target, Nothing),
    responses((status = 200, description = "the answer", body = openapi::UsersResponse)),
)]
pub async fn all(
    State(a): State<Arc<App>>,
    c: Caller,
    call: Call<On<Nothing>>,
) -> Result<Response> {
    let op = |a: Arc<App>, c: Caller, i: On<Nothing>| async move { ops::list(&a, &c, &i).await };
    read(a, c, call, "list", op, |r| {
        let users = r.users.iter().map(|u| UserEntry {
            username: &u.username,
            attributes: u.attributes(),
        });
        let body = UsersBody {
            target: (&r.entry).into(),
            users: users.collect(),
        };
        (StatusCode::OK, Body::Users(body), false)
    })
    .await
}

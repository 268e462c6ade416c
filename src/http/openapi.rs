//! The OpenAPI 3.1 document.
//!
//! The router is built from the handlers' `#[utoipa::path]` annotations (see [`super::routes`]),
//! so a route cannot exist without its documentation nor the other way round. [`document`]
//! then states what the annotations cannot: GET takes the query string and POST the same
//! fields as a body, every `/api` call can fail with the common errors, and each profile of
//! this configuration is a path of its own with its own parameters.
//!
//! The types below describe parameters and bodies; handlers read parameters through
//! [`super::params::Params`] and shape most bodies with `json!` (find, all and search-path
//! answer with the very types documented, in `super::bodies`), and the committed
//! `openapi.json` plus the schemathesis run in CI check that the two agree.
#![allow(dead_code)] // described, never built

use serde::Serialize;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, ContentBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder,
    schema::{ObjectBuilder, Schema, Type},
};
use utoipa::{IntoParams, Modify, ToSchema};

use crate::plan::NamePolicy;
use crate::plan::profile::{ParamKind, Profiles};

/// The document's fixed part; paths come from the router.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "pg-user-api",
        description = "Safe, idempotent, audited PostgreSQL user provisioning over HTTP. \
            Every /api endpoint takes GET with a query string or POST with the same fields \
            as a JSON or form body.",
        license(name = "MIT", identifier = "MIT"),
    ),
    modifiers(&Security),
    components(schemas(ErrorBody, TargetError, MultiBody, UserResponse, UserNotFound, SearchPathResponse, SearchPathNotFound)),
    tags(
        (name = "users", description = "Create, find, change and drop PostgreSQL users"),
        (name = "registry", description = "The databases this service manages"),
        (name = "keys", description = "API keys"),
        (name = "audit", description = "The audit log"),
        (name = "service", description = "Health, readiness and the banner"),
        (name = "sso", description = "Single sign-on for the web console (OpenID Connect)"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pgua_… API key, or a JWT from a trusted issuer")
                    .build(),
            ),
        );
    }
}

/// Every error: `{"error": "…"}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub error: String,
}

/// The error statuses any authenticated call may answer, and what each means.
const API_ERRORS: [(u16, &str); 10] = [
    (
        400,
        "a required parameter is missing, the body is not valid JSON or form, or a GET has a body",
    ),
    (
        401,
        "missing or wrong credentials, a revoked or expired key",
    ),
    (
        403,
        "a protected role, a refused profile or environment, or a missing scope",
    ),
    (404, "no such registry entry, profile or user"),
    (
        409,
        "a conflict: a duplicate entry or key, or a drop that cannot be done safely",
    ),
    (413, "the request body is too large"),
    (422, "a name or value that fails validation"),
    (
        429,
        "too many failed authentication attempts as the principal the credentials name",
    ),
    (502, "the target refused the statement"),
    (
        503,
        "the target is unreachable, or the audit log or store cannot be written",
    ),
];

/// Error statuses of calls that run statements on a target.
const TARGET_ERRORS: [(u16, &str); 1] = [(
    504,
    "the statement or lock timeout ended the operation; nothing was changed",
)];

/// Error statuses of calls that take a body (POST).
const BODY_ERRORS: [(u16, &str); 1] = [(
    415,
    "the body is neither application/json nor application/x-www-form-urlencoded",
)];

/// Finishes the router's document for the configured profiles and name policy.
pub fn document(mut api: OpenApi, profiles: &Profiles, names: &NamePolicy) -> OpenApi {
    api.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let mut paths = std::mem::take(&mut api.paths.paths);
    if let Some(template) = paths.remove("/api/v1/users/{profile}") {
        for profile in profiles.iter() {
            let mut item = template.clone();
            for op in operations(&mut item) {
                op.summary = Some(format!("Create a user of profile '{}'", profile.name));
                op.description = Some(profile.description.clone());
                let params = op.parameters.get_or_insert_with(Vec::new);
                params.retain(|p| param(p).is_none_or(|p| p.name != "profile"));
                for (name, kind) in &profile.params {
                    params.push(RefOr::T(query_param(name, *kind, names)));
                }
                op.operation_id = Some(format!("create_{}", profile.name.replace('-', "_")));
            }
            paths.insert(format!("/api/v1/users/{}", profile.name), item);
        }
    }
    // The shared responses, once each, referred to from every operation.
    let responses = &mut api
        .components
        .get_or_insert_with(Default::default)
        .responses;
    for schema in ["ErrorBody", "TargetError"] {
        for (code, why) in API_ERRORS.iter().chain(&TARGET_ERRORS).chain(&BODY_ERRORS) {
            responses.insert(format!("{schema}{code}"), response(why, schema));
        }
    }
    responses.insert(
        "MultiStatus".into(),
        response("some targets succeeded, some failed", "MultiBody"),
    );
    let shared = |name: String| RefOr::Ref(Ref::new(format!("#/components/responses/{name}")));
    for (path, item) in &mut paths {
        let authenticated = path.starts_with("/api/v1/");
        // User endpoints may name several targets: any failure may carry every target's.
        let on_target = path.starts_with("/api/v1/users/");
        let error_schema = if on_target {
            "TargetError"
        } else {
            "ErrorBody"
        };
        for op in operations(item) {
            let params = op.parameters.iter_mut().flatten();
            for p in params.filter_map(|p| param_mut(p)) {
                // The role a user endpoint acts on; elsewhere (the audit filter) any text.
                if on_target && p.name == "username" {
                    p.schema = Some(name_schema(names).into());
                }
            }
        }
        split_get_and_post(item);
        if let Some(post) = item.post.as_mut().filter(|_| authenticated) {
            for (code, _) in &BODY_ERRORS {
                let body_error = shared(format!("{error_schema}{code}"));
                post.responses
                    .responses
                    .insert(code.to_string(), body_error);
            }
        }
        for op in operations(item) {
            if authenticated {
                op.security = Some(vec![
                    SecurityRequirement::new("basic", Vec::<String>::new()),
                    SecurityRequirement::new("api_key", Vec::<String>::new()),
                ]);
                let errors =
                    API_ERRORS
                        .iter()
                        .chain(if on_target { &TARGET_ERRORS[..] } else { &[] });
                for (code, _) in errors {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| shared(format!("{error_schema}{code}")));
                }
                if on_target {
                    let multi = shared("MultiStatus".into());
                    op.responses.responses.insert("207".into(), multi);
                }
            }
        }
    }
    api.paths.paths = paths;
    api
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.post].into_iter().flatten()
}

/// GET reads the query string and has no body; POST reads a JSON or form body (the server
/// also merges a query string into it, which the document leaves out).
fn split_get_and_post(item: &mut PathItem) {
    if let Some(get) = &mut item.get {
        let body = get.request_body.take();
        if let Some(post) = &mut item.post {
            let params = post.parameters.take().unwrap_or_default();
            let (query, path): (Vec<_>, Vec<_>) = params
                .into_iter()
                .partition(|p| param(p).is_some_and(|p| p.parameter_in == ParameterIn::Query));
            post.parameters = (!path.is_empty()).then_some(path);
            post.request_body = body.or_else(|| body_from(&query).map(RefOr::T));
            let id = post.operation_id.clone().unwrap_or_default();
            post.operation_id = Some(format!("{id}_post"));
        }
    }
}

fn param(p: &RefOr<Parameter>) -> Option<&Parameter> {
    match p {
        RefOr::T(p) => Some(p),
        RefOr::Ref(_) => None,
    }
}

fn param_mut(p: &mut RefOr<Parameter>) -> Option<&mut Parameter> {
    match p {
        RefOr::T(p) => Some(p),
        RefOr::Ref(_) => None,
    }
}

/// A role name: what the name policy accepts once folded to lower case.
fn name_schema(names: &NamePolicy) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(63))
        .pattern(Some(names.pattern()))
        .description(Some(
            "a role name; folded to lower case, it must match the pattern (at most 63 bytes)",
        ))
        .into()
}

/// A JSON or form body whose fields are the given query parameters.
fn body_from(query: &[RefOr<Parameter>]) -> Option<RequestBody> {
    let query: Vec<&Parameter> = query.iter().filter_map(param).collect();
    if query.is_empty() {
        return None;
    }
    let mut object = ObjectBuilder::new().schema_type(Type::Object);
    for p in &query {
        if let Some(mut schema) = p.schema.clone() {
            if let RefOr::T(Schema::Object(o)) = &mut schema {
                o.description.clone_from(&p.description);
            }
            object = object.property(&p.name, schema);
        }
        if p.required == Required::True {
            object = object.required(&p.name);
        }
    }
    let schema: RefOr<Schema> = object.build().into();
    let required = query.iter().any(|p| p.required == Required::True);
    Some(
        utoipa::openapi::request_body::RequestBodyBuilder::new()
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(schema.clone())).build(),
            )
            .content(
                "application/x-www-form-urlencoded",
                ContentBuilder::new().schema(Some(schema)).build(),
            )
            .required(Some(if required {
                Required::True
            } else {
                Required::False
            }))
            .build(),
    )
}

fn response(description: &str, schema: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(schema))),
        )
        .build()
        .into()
}

/// A profile parameter as a required query parameter.
fn query_param(name: &str, kind: ParamKind, names: &NamePolicy) -> Parameter {
    let schema = match kind {
        ParamKind::Port => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(65535))
            .into(),
        ParamKind::Name => name_schema(names),
        ParamKind::NamePart => ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[A-Za-z0-9_.-]+$"))
            .description(Some("part of the role name: letters, digits, _ . -"))
            .into(),
    };
    utoipa::openapi::path::ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::True)
        .schema(Some(schema))
        .build()
}

// ---- parameters: handlers list the groups they take -----------------------------------

/// One or several targets: `env=dev,qa` and/or `database=a,b` run on each pair.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Target {
    /// Environment, or a comma-separated list.
    pub env: String,
    /// Database name, or a comma-separated list.
    pub database: String,
}

/// The user concerned.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Username {
    /// The role.
    pub username: String,
}

/// Every change accepts `dry_run`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DryRun {
    /// Return the SQL that would run (passwords redacted), change nothing.
    pub dry_run: Option<bool>,
}

/// search-path.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchPath {
    /// Schemas, comma-separated (`$user` allowed); default `public`.
    pub schema: Option<String>,
}

/// expire.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Expire {
    /// RFC 3339, `YYYY-MM-DD`, `now` (default) or `infinity`.
    pub valid_until: Option<String>,
}

/// renew: `valid_until` or `days`; neither: forever.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Renew {
    /// RFC 3339, `YYYY-MM-DD` or `infinity`.
    pub valid_until: Option<String>,
    /// Days from now.
    #[param(minimum = 1, maximum = 36500)]
    pub days: Option<u32>,
}

/// alter.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Alter {
    /// -1 (no limit) to 10000.
    #[param(minimum = -1, maximum = 10000)]
    pub connection_limit: Option<i32>,
    /// Comma-separated: CREATEDB, NOCREATEDB, INHERIT, NOINHERIT.
    pub attributes: Option<String>,
}

/// drop.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Drop {
    /// The role that receives what the dropped one owns; default: each database's owner.
    pub successor: Option<String>,
}

/// grant and revoke: privileges (`on` = database, schema, tables, sequences, functions) or
/// membership (`on=role`).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Grant {
    /// What the privileges are on, or `role` for membership.
    #[param(inline)]
    pub on: GrantOn,
    /// Schemas, comma-separated, or `*`.
    pub schema: Option<String>,
    /// Object names in that one schema; empty: all.
    pub objects: Option<String>,
    /// Comma-separated privileges from the closed set of that kind.
    pub privileges: Option<String>,
    /// Also objects created later (default privileges).
    pub future: Option<bool>,
    /// With `future`: only objects this role creates.
    pub owner: Option<String>,
    /// With `on=role`: the group role.
    pub role: Option<String>,
    /// With `on=role`: WITH ADMIN.
    pub admin: Option<bool>,
    /// With `on=role`: WITH INHERIT (PostgreSQL 16).
    pub inherit: Option<bool>,
    /// With `on=role`: WITH SET (PostgreSQL 16).
    pub set: Option<bool>,
}

/// What a grant is on.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum GrantOn {
    /// CONNECT, CREATE, TEMPORARY on the database.
    Database,
    /// USAGE, CREATE on schemas.
    Schema,
    /// Tables and views.
    Tables,
    /// Sequences.
    Sequences,
    /// Functions and procedures.
    Functions,
    /// Membership of `role`.
    Role,
}

/// What the audit export returns.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// `{records, next_after_id}`.
    Json,
    /// Spreadsheet-safe CSV with a header row.
    Csv,
}

/// One registry entry.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistryKey {
    /// Environment.
    pub env: String,
    /// Database name.
    pub database: String,
}

/// A registry entry's settings.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RegistryFields {
    /// Server host name (required to add).
    pub host: Option<String>,
    /// Server port; default 5432.
    #[param(minimum = 1, maximum = 65535)]
    pub port: Option<u16>,
    /// Free text.
    pub notes: Option<String>,
    /// Whether operations may run against it.
    pub active: Option<bool>,
    /// disable, prefer, require or verify-full.
    pub sslmode: Option<String>,
}

/// A new API key and its scopes (no more than the creator's own).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyFields {
    /// Unique name.
    #[param(pattern = r"^[A-Za-z0-9_.-]{1,63}$")]
    pub name: String,
    /// Who answers for it.
    pub owner: String,
    /// Comma-separated environments, or `*`.
    pub environments: String,
    /// Comma-separated: read, create, reset, grant, lock, drop, registry-admin, audit-read,
    /// or `*`; default `read`.
    #[param(
        pattern = r"^\s*(\*|read|create|reset|grant|lock|drop|registry-admin|audit-read)(\s*,\s*(\*|read|create|reset|grant|lock|drop|registry-admin|audit-read))*\s*$"
    )]
    pub operations: Option<String>,
    /// Profiles `create` may use, comma-separated, or `*`; default `*`.
    pub profiles: Option<String>,
    /// Expiry: RFC 3339 or `YYYY-MM-DD`.
    pub expires: Option<String>,
    /// Expiry in days from now.
    #[param(minimum = 1, maximum = 3650)]
    pub days: Option<u32>,
}

/// The key to revoke.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeyName {
    /// The key's name.
    pub name: String,
}

/// Audit filters and paging.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// json (default) or csv.
    #[param(inline)]
    pub format: Option<Format>,
    /// From this time (RFC 3339 or `YYYY-MM-DD`).
    pub since: Option<String>,
    /// Until this time (RFC 3339 or `YYYY-MM-DD`).
    pub until: Option<String>,
    /// Environment.
    pub env: Option<String>,
    /// Database.
    pub database: Option<String>,
    /// Role.
    pub username: Option<String>,
    /// Operation (create:app, reset, …).
    pub operation: Option<String>,
    /// Caller.
    pub principal: Option<String>,
    /// Records after this id (the `x-next-after-id` of the previous page).
    pub after_id: Option<i64>,
    /// Page size.
    pub limit: Option<u32>,
}

// ---- bodies --------------------------------------------------------------------------

/// The v1 body of a user change: exactly the original's keys.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// The role.
    pub username: String,
    /// The generated password, on create and reset only; shown in this response only.
    pub password: Option<String>,
    /// `user created`, `user already exists`, `password reset`, `user not found`, …
    pub status: String,
    /// Target server.
    pub hostname: String,
    /// Target database.
    pub database: String,
    /// Target port, as text (as the original).
    pub port: String,
    /// Target environment.
    pub env: String,
    /// Lock and drop: sessions ended.
    #[schema(nullable = false)]
    pub sessions_terminated: Option<u64>,
}

/// A dry run: the v1 keys, and the statements that would run (passwords redacted).
#[derive(Serialize, ToSchema)]
pub struct DryRunBody {
    /// Always true.
    pub dry_run: bool,
    /// The role.
    pub username: String,
    /// Never a password.
    pub password: Option<String>,
    /// What would happen.
    pub status: String,
    /// The SQL, in order.
    pub sql: Vec<serde_json::Value>,
}

/// A call with several targets: one result per (env, database), whatever the status.
#[derive(Serialize, ToSchema)]
pub struct MultiBody {
    /// Each target's body (or `error`) with `env`, `database` and `http_status`.
    pub results: Vec<serde_json::Value>,
    /// Targets that succeeded.
    pub succeeded: u32,
    /// Targets that failed.
    pub failed: u32,
}

/// What a user can do in the target database: attributes, profile, memberships, database
/// privileges, per schema usage and table counts, default privileges, settings.
#[derive(Serialize, ToSchema)]
pub struct PrivilegesBody {
    /// Whether the role exists.
    pub found: bool,
    /// The role.
    pub username: String,
    /// Target environment.
    pub env: String,
    /// Target database.
    pub database: String,
}

/// The answer of a user change: one target, a dry run, or several targets.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UserResponse {
    /// One target.
    One(UserBody),
    /// A dry run.
    DryRun(DryRunBody),
    /// Several targets.
    Many(MultiBody),
}

/// What a user change answers besides the common errors.
pub struct UserChange;

impl utoipa::IntoResponses for UserChange {
    fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
        let done = response("done, or what a dry run would do", "UserResponse");
        let missing = response("no such registry entry, profile or user", "UserNotFound");
        [("200".to_owned(), done), ("404".to_owned(), missing)].into()
    }
}

/// The answer of search-path: one target, a dry run, or several targets.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SearchPathResponse {
    /// One target.
    One(super::bodies::SearchPathBody),
    /// A dry run.
    DryRun(DryRunBody),
    /// Several targets.
    Many(MultiBody),
}

/// No such registry entry, or (`status: user not found`) no such user.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SearchPathNotFound {
    /// No such entry.
    Error(ErrorBody),
    /// No such user.
    One(super::bodies::SearchPathBody),
    /// Several targets.
    Many(MultiBody),
}

/// What search-path answers besides the common errors.
pub struct SearchPathChange;

impl utoipa::IntoResponses for SearchPathChange {
    fn responses() -> std::collections::BTreeMap<String, RefOr<Response>> {
        let done = response("done, or what a dry run would do", "SearchPathResponse");
        let missing = response("no such registry entry or user", "SearchPathNotFound");
        [("200".to_owned(), done), ("404".to_owned(), missing)].into()
    }
}

/// No such registry entry or profile, or (`status: user not found`) no such user.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UserNotFound {
    /// No such entry or profile.
    Error(ErrorBody),
    /// No such user.
    One(UserBody),
    /// Several targets.
    Many(MultiBody),
}

/// A failure of a call that may name several targets.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum TargetError {
    /// One target.
    Error(ErrorBody),
    /// Several targets, all failed.
    Many(MultiBody),
}

/// A lookup on one target or several.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum FindResponse {
    /// One target.
    One(super::bodies::FindBody),
    /// Several targets.
    Many(MultiBody),
}

/// The users of one target or several.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsersResponse {
    /// One target.
    One(super::bodies::UsersBody),
    /// Several targets.
    Many(MultiBody),
}

/// A user's privileges on one target or several; 404 carries `found: false`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum PrivilegesResponse {
    /// No such registry entry.
    Error(ErrorBody),
    /// One target.
    One(PrivilegesBody),
    /// Several targets.
    Many(MultiBody),
}
/// The registry.
#[derive(Serialize, ToSchema)]
pub struct RegistryBody {
    /// Entries listed.
    pub count: u32,
    /// The entries.
    pub databases: Vec<crate::store::RegistryEntry>,
}

/// A registry change.
#[derive(Serialize, ToSchema)]
pub struct RegistryChangeBody {
    /// What was done.
    pub status: String,
    /// The entry after the change.
    pub entry: Option<crate::store::RegistryEntry>,
}

/// The profiles.
#[derive(Serialize, ToSchema)]
pub struct ProfilesBody {
    /// Profiles listed.
    pub count: u32,
    /// Each profile's parameters, attributes, grants, settings and version.
    pub profiles: Vec<serde_json::Value>,
}

/// An API key as listed: never its secret.
#[derive(Serialize, ToSchema)]
pub struct KeyBody {
    /// Unique name.
    pub name: String,
    /// Who answers for it.
    pub owner: String,
    /// The secret's first characters.
    pub prefix: String,
    /// Environments, operations and profiles.
    pub scopes: serde_json::Value,
    /// When it was made.
    pub created_at: String,
    /// When it stops working.
    pub expires_at: Option<String>,
    /// When it was revoked.
    pub revoked_at: Option<String>,
    /// The secret: only in the answer to create.
    #[schema(nullable = false)]
    pub key: Option<String>,
}

/// The API keys.
#[derive(Serialize, ToSchema)]
pub struct KeysBody {
    /// Keys listed.
    pub count: u32,
    /// The keys.
    pub keys: Vec<KeyBody>,
}

/// A revoked key.
#[derive(Serialize, ToSchema)]
pub struct RevokedBody {
    /// The key's name.
    pub name: String,
    /// `revoked`.
    pub status: String,
}

/// A page of audit records (or CSV with `format=csv`).
#[derive(Serialize, ToSchema)]
pub struct AuditBody {
    /// The records, oldest first.
    pub records: Vec<crate::store::AuditRecord>,
    /// The cursor of the next page, when there may be one.
    pub next_after_id: Option<i64>,
}

/// Who the caller is and what it may do.
#[derive(Serialize, ToSchema)]
pub struct MeBody {
    /// Basic user name, `key:<name>`, or a JWT binding's principal.
    pub principal: String,
    /// Environments, operations and profiles.
    pub scopes: serde_json::Value,
    /// JWT callers only: `issuer`, `subject`, `jti` and the `binding` that matched.
    pub identity: Option<serde_json::Value>,
    /// Only for a single sign-on session: the token its other calls carry in `x-csrf-token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

/// The token `/api/v1/auth/check` explains.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the request body; Params reads it
pub struct CheckFields {
    /// The JWT, in the body only.
    pub token: String,
}

/// What `/api/v1/auth/check` (and `pg-user-api auth check-token`) says of a token.
#[derive(Serialize, ToSchema)]
pub struct CheckBody {
    /// Whether the service would accept it (its audience aside).
    pub accepted: bool,
    /// The first failing check: `{"check", "reason"}`, with the claim values concerned.
    pub refused: Option<serde_json::Value>,
    /// The header's `alg`, `kid` and `typ`.
    pub header: Option<serde_json::Value>,
    /// The claims, once the signature verified.
    pub claims: Option<serde_json::Value>,
    /// Whether `aud` names one of the issuer's audiences (not required here).
    pub audience: Option<String>,
    /// Every binding of the issuer: `{"name", "matched", "mismatch"}`.
    pub bindings: Vec<serde_json::Value>,
    /// The binding that matched.
    pub binding: Option<String>,
    /// The principal it yields.
    pub principal: Option<String>,
    /// Its scopes.
    pub scopes: Option<serde_json::Value>,
    /// Whether a second use of the token would be refused.
    pub single_use: bool,
}

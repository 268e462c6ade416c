//! The OpenAPI 3.1 document.
//!
//! The router is built from the handlers' `#[utoipa::path]` annotations (see [`super::routes`]),
//! so a route cannot exist without its documentation nor the other way round. [`document`]
//! then states what the annotations cannot: GET takes the query string and POST the same
//! fields as a body, every `/api` call can fail with the common errors, and each profile of
//! this configuration is a path of its own with its own parameters.
//!
//! Parameters are the service's typed parameters ([`crate::service::params`]), which the
//! handlers deserialise, and bodies the typed answers the handlers return (`super::users`,
//! `super::registry`, …). What stays here is what no single type says: the shared error
//! responses, and the unions below, one per endpoint that answers in one of several of those
//! shapes (one target, several targets, an error); the committed `openapi.json` and the
//! schemathesis run (coverage and fuzzing phases) check that document and server agree.
#![allow(dead_code)] // the unions only describe which of the real bodies an answer is

use serde::Serialize;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    Content, ContentBuilder, OpenApi, Ref, RefOr, Required, Response, ResponseBuilder,
    schema::{ObjectBuilder, Schema, SchemaType, Type},
};
use utoipa::{Modify, ToSchema};

use super::bodies::{FindBody, MultiBody, PrivilegesBody, SearchPathBody, UserBody, UsersBody};
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
                    // The part that starts the name must start it as the policy requires:
                    // `servername=0&port=1` would make `0_1`, which the server refuses.
                    let leading = profile.template.starts_with(&format!("{{{name}}}"));
                    params.push(RefOr::T(query_param(name, *kind, leading, names)));
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
                // The role a user endpoint acts on, and drop's successor; elsewhere (the
                // audit filter) any text.
                if on_target && (p.name == "username" || p.name == "successor") {
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

/// The name policy's pattern for text as callers send it: the server folds names to lower
/// case first, so upper-case letters are allowed wherever lower-case ones are.
fn unfolded(pattern: &str) -> String {
    if pattern.contains("A-Z") {
        pattern.to_owned()
    } else {
        pattern.replace("a-z", "A-Za-z")
    }
}

/// The first character class of the name policy's pattern (`[a-z_]` by default), as
/// callers may send it, when the pattern starts with one.
fn leading_class(names: &NamePolicy) -> Option<String> {
    let pattern = unfolded(names.pattern());
    let rest = pattern.strip_prefix("^[")?;
    let end = rest.find(']')?;
    Some(format!("[{}]", &rest[..end]))
}

/// A role name: what the name policy accepts once folded to lower case.
fn name_schema(names: &NamePolicy) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(63))
        .pattern(Some(unfolded(names.pattern())))
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
    let required = query.iter().any(|p| p.required == Required::True);
    Some(
        utoipa::openapi::request_body::RequestBodyBuilder::new()
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(body_schema(&query, true)))
                    .build(),
            )
            .content(
                "application/x-www-form-urlencoded",
                ContentBuilder::new()
                    .schema(Some(body_schema(&query, false)))
                    .build(),
            )
            .required(Some(if required {
                Required::True
            } else {
                Required::False
            }))
            .build(),
    )
}

/// The JSON types besides strings a text field accepts: numbers and booleans are read as
/// their text, so with a pattern, booleans only when `true` and `false` match it (numbers
/// are left out: which of them match cannot be listed).
fn scalars_read_as_text(pattern: Option<&str>) -> Vec<Type> {
    match pattern.map(regex::Regex::new) {
        None => vec![Type::Number, Type::Boolean],
        Some(Ok(re)) if re.is_match("true") && re.is_match("false") => vec![Type::Boolean],
        Some(_) => Vec::new(),
    }
}

/// The body's object: the parameters as fields; in JSON (`json`) an optional field may be
/// `null`, which the server takes as absent (in a form, `null` is just text).
fn body_schema(query: &[&Parameter], json: bool) -> RefOr<Schema> {
    // Other fields are accepted (and ignored) as long as they are scalars, as v1 callers
    // send them.
    let mut scalars = vec![Type::String, Type::Number, Type::Boolean];
    if json {
        scalars.push(Type::Null);
    }
    let scalar = ObjectBuilder::new().schema_type(SchemaType::from_iter(scalars));
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(scalar));
    for p in query {
        if let Some(mut schema) = p.schema.clone() {
            let nullable = json && p.required != Required::True;
            match &mut schema {
                RefOr::T(Schema::Object(o)) => {
                    o.description.clone_from(&p.description);
                    if let SchemaType::Type(t) = o.schema_type.clone() {
                        // JSON numbers and booleans are read as their text.
                        let mut types = vec![t.clone()];
                        if json && t == Type::String {
                            types.extend(scalars_read_as_text(o.pattern.as_deref()));
                        }
                        // Flags also take 1 and 0 (and yes/no, on/off, which no type says).
                        if t == Type::Boolean {
                            types.push(Type::Integer);
                        }
                        if nullable {
                            types.push(Type::Null);
                        }
                        if types.len() > 1 {
                            o.schema_type = SchemaType::from_iter(types);
                        }
                    }
                }
                RefOr::T(Schema::OneOf(one)) if nullable => {
                    let null = ObjectBuilder::new().schema_type(Type::Null).build();
                    one.items.push(null.into());
                }
                _ => {}
            }
            object = object.property(&p.name, schema);
        }
        if p.required == Required::True {
            object = object.required(&p.name);
        }
    }
    object.build().into()
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

/// A profile parameter as a required query parameter; `leading` when it starts the name.
fn query_param(name: &str, kind: ParamKind, leading: bool, names: &NamePolicy) -> Parameter {
    let schema = match kind {
        ParamKind::Port => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(65535))
            .into(),
        ParamKind::Name => name_schema(names),
        ParamKind::NamePart => {
            let (pattern, description) = match leading_class(names).filter(|_| leading) {
                Some(first) => (
                    format!("^{first}[A-Za-z0-9_.-]*$"),
                    "the start of the role name: letters, digits, _ . -, first as names start",
                ),
                None => (
                    "^[A-Za-z0-9_.-]+$".to_owned(),
                    "part of the role name: letters, digits, _ . -",
                ),
            };
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(63))
                .pattern(Some(pattern))
                .description(Some(description))
                .into()
        }
    };
    utoipa::openapi::path::ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::True)
        .schema(Some(schema))
        .build()
}

// ---- bodies --------------------------------------------------------------------------

/// The answer of a user change: one target (or its dry run), or several targets.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UserResponse {
    /// One target.
    One(UserBody),
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

/// The answer of search-path: one target (or its dry run), or several targets.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum SearchPathResponse {
    /// One target.
    One(SearchPathBody),
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
    One(SearchPathBody),
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
    One(FindBody),
    /// Several targets.
    Many(MultiBody),
}

/// The users of one target or several.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum UsersResponse {
    /// One target.
    One(UsersBody<'static>),
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
    One(PrivilegesBody<'static>),
    /// Several targets.
    Many(MultiBody),
}

/// Where the document is served, and where the Swagger UI at `/docs` reads it.
pub const PATH: &str = "/api/openapi.json";

/// The route serving `api` at [`PATH`], serialised once here. Kept as utoipa's structures
/// (as `SwaggerUi::url` keeps it, serialising it again for every call) the document held
/// 1.6 MiB of heap for the server's life; its JSON is a fraction of that.
pub fn route<S: Clone + Send + Sync + 'static>(api: &OpenApi) -> axum::Router<S> {
    let json = serde_json::to_vec(api).expect("the document serialises");
    // Its own size: the buffer grew by doubling.
    let json = axum::body::Bytes::from(json.into_boxed_slice());
    axum::Router::new().route(
        PATH,
        axum::routing::get(move || {
            let json = json.clone();
            async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    json,
                )
            }
        }),
    )
}

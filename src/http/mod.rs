//! The HTTP surface: routing, authentication, parameters, JSON errors.
//!
//! Handlers are thin: parse, call the service, shape the response. Each resource has its
//! own file; `/api/v1/users/reset` lives in `users.rs` as `reset`.

pub mod audit;
pub mod auth;
pub mod error;
pub mod health;
pub mod keys;
pub mod me;
pub mod metrics;
pub mod params;
pub mod registry;
pub mod ui;
pub mod users;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::service::keys::Principal;
use crate::service::{App, Caller};
use error::json_error;

/// The request id header, set when the client sent none and echoed on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// The whole application router.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/v1/me", get(me::me).post(me::me))
        .route("/api/v1/registry", get(registry::list).post(registry::list))
        .route(
            "/api/v1/registry/add",
            get(registry::add).post(registry::add),
        )
        .route(
            "/api/v1/registry/update",
            get(registry::update).post(registry::update),
        )
        .route(
            "/api/v1/registry/deactivate",
            get(registry::deactivate).post(registry::deactivate),
        )
        .route(
            "/api/v1/registry/remove",
            get(registry::remove).post(registry::remove),
        )
        .route("/api/v1/keys", get(keys::list).post(keys::list))
        .route("/api/v1/keys/create", get(keys::create).post(keys::create))
        .route("/api/v1/keys/revoke", get(keys::revoke).post(keys::revoke))
        .route("/api/v1/profiles", get(users::profiles))
        .route("/api/v1/audit", get(audit::export).post(audit::export))
        .route("/api/v1/users/all", get(users::all).post(users::all))
        .route("/api/v1/users/reset", get(users::reset).post(users::reset))
        .route(
            "/api/v1/users/search-path",
            get(users::search_path).post(users::search_path),
        )
        .route("/api/v1/users/find", get(users::find).post(users::find))
        .route("/api/v1/users/lock", get(users::lock).post(users::lock))
        .route(
            "/api/v1/users/unlock",
            get(users::unlock).post(users::unlock),
        )
        .route(
            "/api/v1/users/expire",
            get(users::expire).post(users::expire),
        )
        .route("/api/v1/users/renew", get(users::renew).post(users::renew))
        .route("/api/v1/users/alter", get(users::alter).post(users::alter))
        .route("/api/v1/users/drop", get(users::drop).post(users::drop))
        .route("/api/v1/users/grant", get(users::grant).post(users::grant))
        .route(
            "/api/v1/users/revoke",
            get(users::revoke).post(users::revoke),
        )
        .route(
            "/api/v1/users/privileges",
            get(users::privileges).post(users::privileges),
        )
        // Profiles: app, app-k8s, devqa, devlead, readonly, dba and configured ones. The
        // fixed routes above take precedence; profile names cannot shadow them.
        .route(
            "/api/v1/users/{profile}",
            get(users::create).post(users::create),
        )
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            auth::require_auth,
        ));
    let request_id = axum::http::HeaderName::from_static(REQUEST_ID);
    Router::new()
        .route("/", get(health::root))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::render))
        .merge(ui::routes())
        .merge(api)
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; use GET or POST",
            )
        })
        .layer(middleware::from_fn(metrics::track))
        .with_state(app)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}

/// A span per request, labelled by route pattern (never the raw URI, which names users).
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %req.method(), route, request_id = id)
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            request_id: parts
                .headers
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            principal: parts
                .extensions
                .get::<Principal>()
                .map(|p| p.name.clone())
                .unwrap_or_default(),
            scopes: parts
                .extensions
                .get::<Principal>()
                .map(|p| p.scopes.clone()),
            client_addr: parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string())
                .unwrap_or_default(),
        })
    }
}

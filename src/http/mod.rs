//! The HTTP surface: routing, authentication, parameters, JSON errors.
//!
//! Handlers are thin: parse, call the service, shape the response. Each resource has its
//! own file; `/api/v1/users/reset` lives in `users.rs` as `reset`.

pub mod answer;
pub mod audit;
pub mod auth;
pub mod auth_check;
pub mod bodies;
pub mod error;
pub mod health;
pub mod keys;
pub mod me;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod registry;
pub mod serve;
pub mod sso;
pub mod ui;
pub mod users;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::auth::Principal;
use crate::config::ClientAddressHeader;
use crate::plan::NamePolicy;
use crate::plan::profile::Profiles;
use crate::service::{App, Caller};
use error::json_error;

/// The request id header, set when the client sent none and echoed on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// Every route with its documentation: the authenticated API, the public endpoints, and
/// the OpenAPI document of both (before [`openapi::document`] finishes it).
fn routes() -> (Router<Arc<App>>, Router<Arc<App>>, utoipa::openapi::OpenApi) {
    let (api, api_doc) = OpenApiRouter::new()
        .routes(routes!(me::me))
        .routes(routes!(auth_check::check))
        .routes(routes!(registry::list))
        .routes(routes!(registry::add))
        .routes(routes!(registry::update))
        .routes(routes!(registry::deactivate))
        .routes(routes!(registry::remove))
        .routes(routes!(registry::check))
        .routes(routes!(keys::list))
        .routes(routes!(keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(users::profiles))
        .routes(routes!(audit::export))
        .routes(routes!(users::all))
        .routes(routes!(users::reset))
        .routes(routes!(users::search_path))
        .routes(routes!(users::find))
        .routes(routes!(users::lock))
        .routes(routes!(users::unlock))
        .routes(routes!(users::expire))
        .routes(routes!(users::renew))
        .routes(routes!(users::alter))
        .routes(routes!(users::drop))
        .routes(routes!(users::grant))
        .routes(routes!(users::revoke))
        .routes(routes!(users::privileges))
        // Profiles: app, app-k8s, devqa, devlead, readonly, dba and configured ones. The
        // fixed routes above take precedence; profile names cannot shadow them.
        .routes(routes!(users::create))
        .split_for_parts();
    let (public, mut doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::root))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::render))
        .routes(routes!(sso::info))
        .split_for_parts();
    doc.merge(api_doc);
    (api, public, doc)
}

/// The OpenAPI document for these profiles, as `/api/openapi.json` serves it.
pub fn openapi(profiles: &Profiles, names: &NamePolicy) -> utoipa::openapi::OpenApi {
    openapi::document(routes().2, profiles, names)
}

/// The whole application router.
pub fn router(app: Arc<App>) -> Router {
    let (api, public, doc) = routes();
    let doc = openapi::document(doc, &app.profiles, &app.policy.names);
    let api = api
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            auth::require_auth,
        ))
        .route_layer(middleware::from_fn(detached));
    let request_id = axum::http::HeaderName::from_static(REQUEST_ID);
    public
        .merge(ui::routes())
        .merge(sso::routes())
        .merge(api)
        .merge(openapi::route(&doc))
        .merge(SwaggerUi::new("/docs").config(Config::new([openapi::PATH])))
        .fallback(|| async { json_error(StatusCode::NOT_FOUND, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; use GET or POST",
            )
        })
        .layer(middleware::from_fn(metrics::track))
        .layer(middleware::from_fn_with_state(app.clone(), client_addr))
        .with_state(app)
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), TimeOrderedId))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}

/// Runs each API request in a task of its own, so that a client hanging up or timing out
/// does not cancel it halfway: an operation once begun ends as it would have, its
/// transaction committed or rolled back and its outcome in the audit log. (A handler's
/// future is dropped when its connection closes; dropped in the middle of a create, it
/// left the intent without an outcome and could leave its transaction open on the pooled
/// connection.)
async fn detached(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    // In the request's span, so what the handler logs still names the request.
    match tokio::spawn(next.run(req).in_current_span()).await {
        Ok(res) => res,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Request ids for requests that bring none: UUIDv7, ordered by time, so the audit log's
/// index on them grows at its end like the log itself. With random (v4) ids each record's
/// entry lands on a random page of that index: once the index outgrows the page cache, one
/// more page read and written per record.
#[derive(Clone, Copy)]
struct TimeOrderedId;

impl MakeRequestId for TimeOrderedId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::now_v7().hyphenated().to_string();
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
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

/// The address a request comes from: the TCP peer, or the client a trusted proxy names.
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

/// Finds the request's [`ClientAddr`] once, for authentication and the audit alike.
async fn client_addr(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    if let Some(peer) = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    {
        let (proxies, header) = &app.proxies;
        let addr = forwarded_client(peer, req.headers(), proxies, *header);
        req.extensions_mut().insert(ClientAddr(addr));
    }
    next.run(req).await
}

/// The client behind a chain of trusted proxies: walking the header's hops from the right
/// (the one the nearest proxy added), the first address that is not a trusted proxy. The
/// header counts only when the peer itself is trusted; an unreadable hop ends the walk at
/// the last address known, since anything left of it may be the client's invention.
fn forwarded_client(
    peer: IpAddr,
    headers: &HeaderMap,
    proxies: &[ipnet::IpNet],
    header: ClientAddressHeader,
) -> IpAddr {
    let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let name = match header {
        ClientAddressHeader::XForwardedFor => "x-forwarded-for",
        ClientAddressHeader::Forwarded => "forwarded",
    };
    let hops: Vec<&str> = headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let addr = match header {
            ClientAddressHeader::XForwardedFor => hop_addr(hop),
            ClientAddressHeader::Forwarded => hop
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, v)| hop_addr(v)),
        };
        let Some(addr) = addr else { break };
        client = addr;
        if !trusted(&addr) {
            break;
        }
    }
    client
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`,
/// `[2001:db8::1]:80`, optionally quoted.
fn hop_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
        })
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
            identity: parts
                .extensions
                .get::<Principal>()
                .and_then(|p| p.identity.clone()),
            client_addr: parts
                .extensions
                .get::<ClientAddr>()
                .map(|c| c.0.to_string())
                .unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_hop_behind_a_trusted_peer() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let xff = ClientAddressHeader::XForwardedFor;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let h = headers("x-forwarded-for", &["6.6.6.6, 192.0.2.7", "10.1.1.1"]);
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &h, &proxies, xff),
            ip("192.0.2.7")
        );
        // An untrusted peer's header is its own invention.
        assert_eq!(
            forwarded_client(ip("192.0.2.9"), &h, &proxies, xff),
            ip("192.0.2.9")
        );
        let junk = headers("x-forwarded-for", &["6.6.6.6, nonsense, 10.2.2.2"]);
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &junk, &proxies, xff),
            ip("10.2.2.2")
        );
        let fwd = headers(
            "forwarded",
            &["for=6.6.6.6, for=\"[2001:db8::17]:4711\";proto=https, for=10.3.3.3"],
        );
        let got = forwarded_client(
            ip("10.0.0.2"),
            &fwd,
            &proxies,
            ClientAddressHeader::Forwarded,
        );
        assert_eq!(got, ip("2001:db8::17"));
        // The other header is not read: a proxy passes on what the client made up there.
        assert_eq!(
            forwarded_client(ip("10.0.0.2"), &fwd, &proxies, xff),
            ip("10.0.0.2")
        );
    }
}

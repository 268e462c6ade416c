//! Single sign-on for the web console: `/auth/oidc/login` sends the browser to the provider
//! (PKCE S256, `state`, `nonce`), `/auth/oidc/callback` turns its answer into a server-side
//! session in the store and a cookie, `/auth/oidc/logout` ends the session on every
//! replica. [`authenticate`] is the session branch of the API's authentication.
//!
//! Cookie-authenticated calls are held to more than the cookie: each must carry the
//! session's CSRF token in `x-csrf-token` (the page gets it from `/api/v1/me`, the one call
//! that needs none), and a request the browser marks as coming from another site
//! (`Sec-Fetch-Site`, `Origin`) is refused outright. Every v1 endpoint changes state on GET
//! too, so the token is required whatever the method.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq;

use super::ClientAddr;
use super::error::json_error;
use crate::auth::oidc::{LOGIN_TTL, OidcError, PendingLogin, RelyingParty};
use crate::auth::session::{self, CSRF_HEADER, LOGIN_COOKIE, LOGIN_COOKIE_PATH};
use crate::auth::{Principal, Scopes};
use crate::error::Error;
use crate::service::audit::AuditScope;
use crate::service::{App, Caller};
use crate::store::Session;

/// The browser's routes of single sign-on: sign-in, callback, sign-out. Not in the OpenAPI
/// document: they are redirects for a browser and its cookies, not an API for clients.
pub fn routes() -> axum::Router<Arc<App>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/auth/oidc/login", get(login))
        .route("/auth/oidc/callback", get(callback))
        .route("/auth/oidc/logout", post(logout))
}

/// A request authenticated by its session cookie, with the token the page must echo.
#[derive(Clone, Debug)]
pub struct SessionAuth {
    /// The CSRF token of this session, for `/api/v1/me` to hand to the page.
    pub csrf_token: String,
}

/// `GET /auth/oidc`: whether single sign-on is configured, and the provider's name.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SsoInfo {
    /// `[auth.oidc]` is configured.
    pub enabled: bool,
    /// The name for "Sign in with …", when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Where the browser starts signing in, when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_url: Option<String>,
    /// Whether the request's session cookie names a live session, when enabled: the page
    /// cannot see its `HttpOnly` cookie, and asking `/api/v1/me` blindly would make the
    /// browser offer its own Basic prompt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_in: Option<bool>,
}

/// `GET /auth/oidc`: tells the console whether to offer "Sign in with <provider>", and
/// whether it is signed in already (after the callback, or a reload).
#[utoipa::path(
    get, path = "/auth/oidc", tag = "sso",
    responses((status = 200, description = "whether single sign-on is offered", body = SsoInfo)),
)]
pub async fn info(State(app): State<Arc<App>>, headers: HeaderMap) -> Json<SsoInfo> {
    let Some(rp) = &app.sso else {
        return Json(SsoInfo {
            enabled: false,
            provider: None,
            login_url: None,
            signed_in: None,
        });
    };
    let signed_in = match session_cookie(rp, &headers) {
        Some(id) => {
            let now = chrono::Utc::now().timestamp();
            let idle_since = now - rp.config().idle_timeout_secs as i64;
            matches!(
                app.store
                    .session_get(&session::digest_hex(id), now, idle_since)
                    .await,
                Ok(Some(_))
            )
        }
        None => false,
    };
    Json(SsoInfo {
        enabled: true,
        provider: Some(rp.config().provider_name.clone()),
        login_url: Some("/auth/oidc/login".into()),
        signed_in: Some(signed_in),
    })
}

/// The console with a sign-in outcome code (`sso_error`) it shows as a fixed text.
fn back_to_console(code: Option<&str>) -> Response {
    let to = match code {
        Some(code) => format!("/ui/?sso_error={code}"),
        None => "/ui/".to_owned(),
    };
    let mut res = StatusCode::SEE_OTHER.into_response();
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::try_from(to).expect("ASCII path"),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn add_cookie(res: &mut Response, cookie: String) {
    res.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::try_from(cookie).expect("cookie values are base64url"),
    );
}

fn not_configured() -> Response {
    json_error(
        StatusCode::NOT_FOUND,
        "single sign-on is not configured ([auth.oidc])",
    )
}

/// `GET /auth/oidc/login`: redirects to the provider; the login cookie remembers the state,
/// nonce and PKCE verifier until the callback.
pub async fn login(State(app): State<Arc<App>>) -> Response {
    let Some(rp) = app.sso.as_ref() else {
        return not_configured();
    };
    let (url, pending) = match rp.begin().await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(error = %e, "single sign-on could not start");
            return back_to_console(Some("provider"));
        }
    };
    let mut res = StatusCode::SEE_OTHER.into_response();
    match HeaderValue::try_from(url) {
        Ok(v) => res.headers_mut().insert(header::LOCATION, v),
        Err(_) => return back_to_console(Some("provider")),
    };
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Lax, not Strict: the callback is a navigation from the provider's site, on which a
    // Strict cookie would not be sent. It holds nothing that signs anyone in by itself.
    add_cookie(
        &mut res,
        session::set_cookie(
            LOGIN_COOKIE,
            &pending.encode(),
            LOGIN_COOKIE_PATH,
            "Lax",
            rp.config().cookie_secure(),
            LOGIN_TTL.as_secs(),
        ),
    );
    res
}

/// What the provider sends back to the callback.
#[derive(Deserialize)]
pub struct CallbackParams {
    /// The authorization code.
    code: Option<String>,
    /// The state the login sent.
    state: Option<String>,
    /// An error code instead of a code (`access_denied`, …).
    error: Option<String>,
}

fn caller_of(headers: &HeaderMap, addr: Option<&ClientAddr>, principal: &str) -> Caller {
    Caller {
        request_id: headers
            .get(super::REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        principal: principal.to_owned(),
        client_addr: addr.map(|a| a.0.to_string()).unwrap_or_default(),
        scopes: None,
        identity: None,
    }
}

/// `GET /auth/oidc/callback`: validates the provider's answer, stores a session and sets
/// its cookie, then returns to the console (with `?sso_error=` when refused).
pub async fn callback(
    State(app): State<Arc<App>>,
    addr: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let Some(rp) = app.sso.as_ref() else {
        return not_configured();
    };
    let secure = rp.config().cookie_secure();
    let pending = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| session::read_cookie(c, LOGIN_COOKIE))
        .and_then(PendingLogin::decode);
    let outcome = match (&pending, &params) {
        (_, CallbackParams { error: Some(e), .. }) => Err(OidcError::Login(format!(
            "the provider answered '{}'",
            e.chars().take(64).collect::<String>()
        ))),
        (None, _) => Err(OidcError::Login(
            "no sign-in was started in this browser (or it expired)".into(),
        )),
        (
            Some(p),
            CallbackParams {
                code: Some(code),
                state: Some(state),
                ..
            },
        ) => rp.finish(p, state, code).await,
        _ => Err(OidcError::Login("code or state missing".into())),
    };
    let addr = addr.map(|Extension(a)| a);
    let claimed = match &outcome {
        Ok(id) => id.principal.clone(),
        Err(_) => "-".to_owned(),
    };
    let scope = AuditScope::new(
        &app,
        &caller_of(&headers, addr.as_ref(), &claimed),
        "sso-sign-in",
        None,
        "",
    );
    let signed_in = match outcome {
        Ok(id) => match rp.config().scopes_for(&id.groups) {
            Some(g) => start_session(&app, rp, &id.principal, &g.scopes)
                .await
                .map(|sid| (sid, g.group.clone())),
            None => Err(Error::Forbidden(
                OidcError::NoGroup(id.principal).to_string(),
            )),
        },
        Err(e) => {
            tracing::info!(error = %e, "single sign-on refused");
            Err(match e {
                OidcError::Provider(_) => Error::TargetUnavailable(e.to_string()),
                other => Error::Forbidden(other.to_string()),
            })
        }
    };
    let code = match &signed_in {
        Ok(_) => None,
        Err(Error::Forbidden(m)) if m.contains("in no group") => Some("no-group"),
        Err(Error::Forbidden(_)) => Some("refused"),
        Err(_) => Some("unavailable"),
    };
    scope
        .outcome(&signed_in, |(_, group)| {
            format!("signed in as member of '{group}'")
        })
        .await;
    let mut res = back_to_console(code);
    add_cookie(
        &mut res,
        session::set_cookie(LOGIN_COOKIE, "", LOGIN_COOKIE_PATH, "Lax", secure, 0),
    );
    if let Ok((sid, _)) = signed_in {
        add_cookie(
            &mut res,
            session::set_cookie(
                session::cookie_name(secure),
                &sid,
                "/",
                "Strict",
                secure,
                rp.config().absolute_timeout_secs,
            ),
        );
    }
    res
}

/// Stores a new session; its id, which only the cookie holds.
async fn start_session(
    app: &App,
    rp: &RelyingParty,
    principal: &str,
    scopes: &Scopes,
) -> crate::error::Result<String> {
    let id = session::random_token();
    let now = chrono::Utc::now().timestamp();
    let s = Session {
        id_hash: session::digest_hex(&id),
        principal: principal.to_owned(),
        scopes: serde_json::to_string(scopes).map_err(|e| Error::Internal(e.into()))?,
        csrf_hash: session::digest_hex(&session::csrf_token(&id)),
        created: now,
        last_seen: now,
        expires: now + rp.config().absolute_timeout_secs as i64,
    };
    app.store
        .session_put(&s)
        .await
        .map_err(Error::StoreUnavailable)?;
    Ok(id)
}

/// The session id in the request's cookie, if single sign-on is on and it has one.
fn session_cookie<'a>(rp: &RelyingParty, headers: &'a HeaderMap) -> Option<&'a str> {
    let name = session::cookie_name(rp.config().cookie_secure());
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| session::read_cookie(c, name))
}

/// Whether the browser says the request comes from a page of another site.
fn cross_site(rp: &RelyingParty, headers: &HeaderMap) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    if !matches!(fetch_site, "same-origin" | "none") {
        return true;
    }
    let own = url::Url::parse(&rp.config().redirect_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| origin != own)
}

/// 401 for a session that ended, with the cookie cleared.
fn ended(rp: &RelyingParty) -> Response {
    let mut res = json_error(
        StatusCode::UNAUTHORIZED,
        "session ended or unknown; sign in again",
    );
    clear_session_cookie(rp, &mut res);
    res
}

fn clear_session_cookie(rp: &RelyingParty, res: &mut Response) {
    let secure = rp.config().cookie_secure();
    add_cookie(
        res,
        session::set_cookie(session::cookie_name(secure), "", "/", "Strict", secure, 0),
    );
}

/// The session branch of authentication: `None` when the request has no session cookie
/// (or single sign-on is off); else the principal, or the refusal to send: 401 when the
/// session ended, 403 when the call came from another site or lacks the CSRF token.
pub async fn authenticate(
    app: &App,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Option<Result<(Principal, SessionAuth), Response>> {
    let rp = app.sso.as_ref()?;
    let id = session_cookie(rp, headers)?;
    Some(check_session(app, rp, method, path, headers, id).await)
}

async fn check_session(
    app: &App,
    rp: &RelyingParty,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    id: &str,
) -> Result<(Principal, SessionAuth), Response> {
    if cross_site(rp, headers) {
        tracing::warn!("cross-site request with a session cookie refused");
        metrics::counter!("pgua_auth_failures_total").increment(1);
        return Err(json_error(
            StatusCode::FORBIDDEN,
            "cross-site request refused",
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let idle_since = now - rp.config().idle_timeout_secs as i64;
    let s = match app
        .store
        .session_get(&session::digest_hex(id), now, idle_since)
        .await
    {
        Ok(Some(s)) => s,
        Ok(None) => return Err(ended(rp)),
        Err(e) => {
            tracing::error!(error = %e, "store unavailable for session lookup");
            return Err(json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "authentication unavailable",
            ));
        }
    };
    let reads_me = path == "/api/v1/me" && matches!(*method, Method::GET | Method::HEAD);
    let token_ok = headers
        .get(CSRF_HEADER)
        .map(|v| session::digest_hex(v.to_str().unwrap_or_default()))
        .is_some_and(|h| bool::from(h.as_bytes().ct_eq(s.csrf_hash.as_bytes())));
    if !reads_me && !token_ok {
        tracing::warn!("session call without a valid CSRF token refused");
        metrics::counter!("pgua_auth_failures_total").increment(1);
        return Err(json_error(
            StatusCode::FORBIDDEN,
            format!(
                "missing or wrong {CSRF_HEADER} header: a call with the session cookie must carry the session's CSRF token"
            ),
        ));
    }
    let scopes: Scopes = serde_json::from_str(&s.scopes).map_err(|e| {
        tracing::error!(error = %e, "a stored session has unreadable scopes");
        ended(rp)
    })?;
    Ok((
        Principal {
            name: s.principal,
            scopes: scopes.into(),
            identity: None,
        },
        SessionAuth {
            csrf_token: session::csrf_token(id),
        },
    ))
}

/// `POST /auth/oidc/logout`: ends the session in the store (so on every replica) and
/// clears the cookie; needs the CSRF token. Answers where the provider's own sign-out is.
pub async fn logout(
    State(app): State<Arc<App>>,
    addr: Option<Extension<ClientAddr>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let Some(rp) = app.sso.as_ref() else {
        return not_configured();
    };
    let Some(id) = session_cookie(rp, &headers) else {
        return ended(rp);
    };
    let principal = match check_session(&app, rp, &method, "/auth/oidc/logout", &headers, id).await
    {
        Ok((p, _)) => p,
        Err(res) => return res,
    };
    let addr = addr.map(|Extension(a)| a);
    let scope = AuditScope::new(
        &app,
        &caller_of(&headers, addr.as_ref(), &principal.name),
        "sso-sign-out",
        None,
        "",
    );
    let done = app
        .store
        .session_delete(&session::digest_hex(id))
        .await
        .map_err(Error::StoreUnavailable);
    scope.outcome(&done, |_| "signed out".into()).await;
    if let Err(e) = done {
        return e.into_response();
    }
    let provider_logout = rp.end_session_url().await;
    let mut res =
        Json(json!({ "status": "signed out", "provider_logout": provider_logout })).into_response();
    clear_session_cookie(rp, &mut res);
    res
}

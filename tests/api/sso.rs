//! Single sign-on for the console against a real OpenID Provider (`oidc-provider` from npm,
//! `tests/oidc/provider.mjs`): sign-in through its login and consent pages as a browser does
//! (cookies and redirects by hand), the session's scopes from the person's group, CSRF and
//! cross-site refusals, sign-out across replicas on the PostgreSQL store, idle and absolute
//! timeouts, and callbacks with a wrong state or nonce.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pgua::config::Config;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::support::{
    TestApp, closed_port, found, fresh_postgres_store_url, spawn_app_with, spawn_app_with_store,
    unique,
};

/// The secret the test provider and the service share.
pub const CLIENT_SECRET: &str = "test-client-secret-not-for-production";

/// A running test OpenID Provider; killed when dropped.
pub struct Provider {
    /// Its issuer URL.
    pub issuer: String,
    _child: Child,
}

/// The provider's directory, with `npm ci` run when its packages are missing.
async fn provider_dir() -> PathBuf {
    assert!(
        found("node") && found("npm"),
        "node and npm are missing: the SSO tests need Node.js (apt-get install nodejs npm)"
    );
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc");
    if !dir.join("node_modules/oidc-provider").exists() {
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "npm ci in tests/oidc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// Starts the provider with a client whose redirect URIs are `redirects`.
pub async fn start_provider(redirects: &[String]) -> Provider {
    let dir = provider_dir().await;
    let mut child = Command::new("node")
        .arg(dir.join("provider.mjs"))
        .env("PGUA_OIDC_CLIENT_ID", "pgua")
        .env("PGUA_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("PGUA_OIDC_REDIRECT_URIS", redirects.join(","))
        .current_dir(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node provider.mjs starts");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the provider starts within 30 s")
        .unwrap()
        .expect("the provider prints its issuer");
    let issuer = serde_json::from_str::<Value>(&first).unwrap()["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    // Keep reading, so the provider never writes into a closed pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Provider {
        issuer,
        _child: child,
    }
}

/// `[auth.oidc]` for the test provider, with the app listening on `port`; the dev-group
/// reads and creates `devqa` users in dev, the DBA group may do everything.
pub fn sso_config(issuer: &str, port: u16, idle: u64, absolute: u64) -> Config {
    let mut oidc: pgua::auth::oidc::OidcConfig = toml::from_str(&format!(
        r#"
        provider_name = "Test IdP"
        issuer = "{issuer}"
        client_id = "pgua"
        redirect_url = "http://127.0.0.1:{port}/auth/oidc/callback"
        scopes = ["openid", "email", "groups"]
        idle_timeout_secs = {idle}
        absolute_timeout_secs = {absolute}
        [[groups]]
        group = "pgua-dba"
        scopes = {{ environments = ["*"], operations = ["read", "create", "reset", "lock", "audit-read"], profiles = ["*"] }}
        [[groups]]
        group = "pgua-dev"
        scopes = {{ environments = ["dev"], operations = ["read", "create"], profiles = ["devqa"] }}
        "#
    ))
    .unwrap();
    oidc.client_secret = Some(SecretString::from(CLIENT_SECRET));
    let mut config = Config {
        listen: format!("127.0.0.1:{port}"),
        ..Config::default()
    };
    config.auth.oidc = Some(oidc);
    config
}

/// A provider and one app (SQLite store) wired to it.
async fn setup(idle: u64, absolute: u64) -> (Provider, TestApp) {
    let port = closed_port();
    let provider = start_provider(&[callback_url(port)]).await;
    let app = spawn_app_with(sso_config(&provider.issuer, port, idle, absolute)).await;
    (provider, app)
}

fn callback_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/auth/oidc/callback")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The `name=value` pairs a response sets, and their full `Set-Cookie` lines.
fn set_cookies(res: &reqwest::Response) -> Vec<(String, String, String)> {
    res.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| {
            let line = v.to_str().unwrap().to_owned();
            let pair = line.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            (k.trim().to_owned(), v.to_owned(), line)
        })
        .collect()
}

/// How a sign-in ended.
pub struct SignIn {
    /// Where the callback sent the browser (`/ui/`, or `/ui/?sso_error=…`).
    pub location: String,
    /// The session cookie's value, when one was set.
    pub session: Option<String>,
    /// The session cookie's `Set-Cookie` line.
    pub set_cookie: String,
}

/// A started sign-in: the provider URL to visit and the login cookie's value.
async fn begin(app: &TestApp) -> (String, String) {
    let res = no_redirects()
        .get(format!("{}/auth/oidc/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let login = set_cookies(&res)
        .into_iter()
        .find(|(k, _, _)| k == "pgua_oidc_login")
        .expect("a login cookie");
    assert!(
        login.2.contains("HttpOnly")
            && login.2.contains("SameSite=Lax")
            && login.2.contains("Path=/auth/oidc/callback"),
        "{}",
        login.2
    );
    let to = res.headers()[LOCATION].to_str().unwrap().to_owned();
    (to, login.1)
}

/// Goes through the provider's login (as `user`) and consent pages from `authorize`;
/// the callback URL it sends the browser to.
async fn at_provider(issuer: &str, authorize: &str, user: &str) -> String {
    let http = no_redirects();
    let mut jar: BTreeMap<String, String> = BTreeMap::new();
    let cookie = |jar: &BTreeMap<String, String>| {
        jar.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut url = authorize.to_owned();
    for _ in 0..12 {
        if url.contains("/auth/oidc/callback") {
            return url;
        }
        let res = http
            .get(&url)
            .header(COOKIE, cookie(&jar))
            .send()
            .await
            .unwrap();
        for (k, v, _) in set_cookies(&res) {
            jar.insert(k, v);
        }
        if res.status().is_redirection() {
            url = absolute(issuer, res.headers()[LOCATION].to_str().unwrap());
            continue;
        }
        let page = res.text().await.unwrap();
        let form = if page.contains(r#"name="prompt" value="login""#) {
            vec![("prompt", "login"), ("login", user), ("password", "any")]
        } else if page.contains(r#"name="prompt" value="consent""#) {
            vec![("prompt", "consent")]
        } else {
            panic!("unexpected provider page at {url}: {page}");
        };
        let res = http
            .post(&url)
            .header(COOKIE, cookie(&jar))
            .form(&form)
            .send()
            .await
            .unwrap();
        for (k, v, _) in set_cookies(&res) {
            jar.insert(k, v);
        }
        assert!(res.status().is_redirection(), "{}", res.status());
        url = absolute(issuer, res.headers()[LOCATION].to_str().unwrap());
    }
    panic!("the provider never sent the browser back");
}

fn absolute(issuer: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_owned()
    } else {
        format!("{issuer}{location}")
    }
}

/// Calls the callback as the browser would, with the login cookie.
async fn callback(app: &TestApp, url: &str, login_cookie: &str) -> SignIn {
    let res = no_redirects()
        .get(url)
        .header(COOKIE, format!("pgua_oidc_login={login_cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SEE_OTHER, "{}", app.base);
    let cookies = set_cookies(&res);
    let session = cookies
        .iter()
        .find(|(k, v, _)| k == "pgua_session" && !v.is_empty());
    SignIn {
        location: res.headers()[LOCATION].to_str().unwrap().to_owned(),
        session: session.map(|s| s.1.clone()),
        set_cookie: session.map(|s| s.2.clone()).unwrap_or_default(),
    }
}

/// Signs `user` in through the provider.
pub async fn sign_in(app: &TestApp, issuer: &str, user: &str) -> SignIn {
    let (authorize, login) = begin(app).await;
    let back = at_provider(issuer, &authorize, user).await;
    callback(app, &back, &login).await
}

/// A call with the session cookie, and the CSRF token when given.
async fn with_session(
    app: &TestApp,
    path: &str,
    session: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let url = format!("{}{path}", app.base);
    let mut req = match &body {
        Some(b) => app.client.post(url).json(b),
        None => app.client.get(url),
    };
    req = req.header(COOKIE, format!("pgua_session={session}"));
    if let Some(token) = csrf {
        req = req.header("x-csrf-token", token);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn me(app: &TestApp, session: &str) -> (StatusCode, Value) {
    with_session(app, "/api/v1/me", session, None, None).await
}

#[tokio::test]
async fn sso_info_says_whether_sign_in_is_offered() {
    let plain = crate::support::spawn_app().await;
    let r = plain.get_as("/auth/oidc", None).await;
    assert_eq!(
        (r.status, &r.body),
        (StatusCode::OK, &json!({"enabled": false}))
    );
    let r = plain.get_as("/auth/oidc/login", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    let (provider, app) = setup(600, 3600).await;
    let r = app.get_as("/auth/oidc", None).await;
    assert_eq!(
        r.body,
        json!({"enabled": true, "provider": "Test IdP", "login_url": "/auth/oidc/login", "signed_in": false})
    );
    let session = sign_in(&app, &provider.issuer, "alice")
        .await
        .session
        .unwrap();
    let res = app
        .client
        .get(format!("{}/auth/oidc", app.base))
        .header(COOKIE, format!("pgua_session={session}"))
        .send()
        .await
        .unwrap();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["signed_in"], true);
}

#[tokio::test]
async fn a_signed_in_person_works_within_the_groups_scopes_with_the_csrf_token() {
    let (provider, app) = setup(600, 3600).await;
    let s = sign_in(&app, &provider.issuer, "alice").await;
    assert_eq!(s.location, "/ui/");
    let session = s.session.expect("a session cookie");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
        assert!(s.set_cookie.contains(attr), "{attr} in {}", s.set_cookie);
    }
    assert!(
        !s.set_cookie.contains("Secure"),
        "plain HTTP: {}",
        s.set_cookie
    );

    let (status, body) = me(&app, &session).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["principal"], "oidc:alice@example.com");
    assert_eq!(
        body["scopes"],
        json!({"environments": ["dev"], "operations": ["read", "create"], "profiles": ["devqa"]})
    );
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    let name = unique("sso");
    let create = json!({"env": "dev", "database": "dev", "username": name});
    let (status, body) = with_session(
        &app,
        "/api/v1/users/devqa",
        &session,
        Some(&csrf),
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "user created");
    assert!(app.dev_role_exists(&name).await);

    // Out of the group's scopes: 403 naming what is missing.
    let prod = json!({"env": "prod", "database": "prod", "username": unique("sso")});
    let (status, body) = with_session(
        &app,
        "/api/v1/users/devqa",
        &session,
        Some(&csrf),
        Some(prod),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["error"],
        "'oidc:alice@example.com' lacks the scope for environment 'prod'"
    );

    // Without the token, with a wrong one, even as a GET: refused, nothing created.
    let other = unique("sso");
    let query = format!("/api/v1/users/devqa?env=dev&database=dev&username={other}");
    for csrf in [None, Some("wrong"), Some(session.as_str())] {
        let (status, body) = with_session(&app, &query, &session, csrf, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?}");
        assert!(
            body["error"].as_str().unwrap().contains("x-csrf-token"),
            "{body}"
        );
    }
    let (status, _) = with_session(&app, "/api/v1/users/devqa", &session, None, Some(create)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!app.dev_role_exists(&other).await);

    // A request the browser marks cross-site is refused even with the token.
    let res = app
        .client
        .get(format!("{}{query}", app.base))
        .header(COOKIE, format!("pgua_session={session}"))
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let res = app
        .client
        .get(format!("{}{query}", app.base))
        .header(COOKIE, format!("pgua_session={session}"))
        .header("x-csrf-token", &csrf)
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(!app.dev_role_exists(&other).await);

    // The audit names the person, for the sign-in and for the create.
    let audit = app.audit().await;
    assert!(audit.iter().any(|r| r.operation == "sso-sign-in"
        && r.status == "success"
        && r.principal == "oidc:alice@example.com"
        && r.detail.contains("pgua-dev")));
    assert!(audit.iter().any(|r| r.operation == "create:devqa"
        && r.status == "success"
        && r.pg_username == name
        && r.principal == "oidc:alice@example.com"));
    assert!(
        audit.iter().all(|r| !format!("{r:?}").contains(&session)),
        "the session id is never in the audit"
    );
}

#[tokio::test]
async fn a_person_in_no_mapped_group_cannot_sign_in() {
    let (provider, app) = setup(600, 3600).await;
    let s = sign_in(&app, &provider.issuer, "carol").await;
    assert_eq!(s.location, "/ui/?sso_error=no-group");
    assert!(s.session.is_none());
    let refused = app
        .audit()
        .await
        .into_iter()
        .find(|r| r.operation == "sso-sign-in")
        .unwrap();
    assert_eq!(refused.status, "failure");
    assert_eq!(refused.principal, "oidc:carol@example.com");
    assert_eq!(
        refused.error.as_deref(),
        Some("'oidc:carol@example.com' is in no group that may use pg-user-api")
    );
}

#[tokio::test]
async fn a_callback_with_a_wrong_state_or_nonce_is_refused() {
    let (provider, app) = setup(600, 3600).await;
    // The state the provider echoes is not the one this browser's login cookie holds.
    let (authorize, _) = begin(&app).await;
    let (_, other_login) = begin(&app).await;
    let back = at_provider(&provider.issuer, &authorize, "alice").await;
    let s = callback(&app, &back, &other_login).await;
    assert_eq!(s.location, "/ui/?sso_error=refused");
    assert!(s.session.is_none());

    // The state matches but the nonce is another sign-in's: the ID token is refused.
    let (authorize, login) = begin(&app).await;
    let (_, other) = begin(&app).await;
    let decode =
        |v: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(v).unwrap()).unwrap() };
    let mut forged = decode(&login);
    forged["nonce"] = decode(&other)["nonce"].clone();
    let forged = URL_SAFE_NO_PAD.encode(forged.to_string());
    let back = at_provider(&provider.issuer, &authorize, "alice").await;
    let s = callback(&app, &back, &forged).await;
    assert_eq!(s.location, "/ui/?sso_error=refused");
    assert!(s.session.is_none());

    // No login cookie at all, and a provider error.
    let s = callback(&app, &back, "").await;
    assert_eq!(s.location, "/ui/?sso_error=refused");
    let denied = format!(
        "{}/auth/oidc/callback?error=access_denied&state=x",
        app.base
    );
    let s = callback(&app, &denied, &login).await;
    assert_eq!(s.location, "/ui/?sso_error=refused");

    let errors: Vec<String> = app
        .audit()
        .await
        .into_iter()
        .filter(|r| r.operation == "sso-sign-in")
        .map(|r| r.error.unwrap_or_default())
        .collect();
    assert_eq!(
        errors,
        [
            "sign-in refused: state does not match the sign-in this browser started",
            "ID token refused: nonce does not match the sign-in this browser started",
            "sign-in refused: no sign-in was started in this browser (or it expired)",
            "sign-in refused: the provider answered 'access_denied'",
        ]
    );
}

#[tokio::test]
async fn sign_out_on_one_replica_ends_the_session_on_the_other() {
    let store_url = fresh_postgres_store_url().await;
    let port = closed_port();
    let provider = start_provider(&[callback_url(port)]).await;
    let config = sso_config(&provider.issuer, port, 600, 3600);
    let a = spawn_app_with_store(config.clone(), &store_url).await;
    let mut second = config;
    second.listen = pgua::config::DEFAULT_LISTEN.into();
    let b = spawn_app_with_store(second, &store_url).await;

    let session = sign_in(&a, &provider.issuer, "bob").await.session.unwrap();
    let (status, body) = me(&b, &session).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the other replica knows the session"
    );
    assert_eq!(body["principal"], "oidc:bob@example.com");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();

    let logout = |app: &TestApp, csrf: Option<String>| {
        let mut req = app
            .client
            .post(format!("{}/auth/oidc/logout", app.base))
            .header(COOKIE, format!("pgua_session={session}"));
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        req.send()
    };
    let res = logout(&b, None).await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::FORBIDDEN,
        "sign-out needs the token"
    );
    assert_eq!(me(&a, &session).await.0, StatusCode::OK);

    let res = logout(&b, Some(csrf.clone())).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let cleared = set_cookies(&res);
    assert!(
        cleared
            .iter()
            .any(|(k, v, line)| k == "pgua_session" && v.is_empty() && line.contains("Max-Age=0"))
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "signed out");
    assert!(
        body["provider_logout"]
            .as_str()
            .unwrap()
            .starts_with(&provider.issuer)
    );

    let (status, body) = me(&a, &session).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "session ended or unknown; sign in again");
    let (status, _) = with_session(&a, "/api/v1/registry", &session, Some(&csrf), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let audit = a.audit().await;
    assert!(audit.iter().any(|r| r.operation == "sso-sign-out"
        && r.status == "success"
        && r.principal == "oidc:bob@example.com"));
}

#[tokio::test]
async fn sessions_end_after_the_idle_and_the_absolute_timeout() {
    let (provider, app) = setup(2, 5).await;
    // Idle: unused for longer than 2 s.
    let idle = sign_in(&app, &provider.issuer, "alice")
        .await
        .session
        .unwrap();
    assert_eq!(me(&app, &idle).await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(me(&app, &idle).await.0, StatusCode::UNAUTHORIZED);

    // Absolute: used more often than the idle timeout, it still ends 5 s after sign-in.
    let busy = sign_in(&app, &provider.issuer, "alice")
        .await
        .session
        .unwrap();
    let started = std::time::Instant::now();
    let ended = loop {
        let status = me(&app, &busy).await.0;
        let at = started.elapsed();
        if status == StatusCode::UNAUTHORIZED {
            break at;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(
            at < Duration::from_secs(7),
            "the session outlived its absolute end"
        );
        tokio::time::sleep(Duration::from_millis(900)).await;
    };
    assert!(
        ended > Duration::from_millis(3800),
        "ended early, after {ended:?}"
    );

    // Ended sessions are pruned from the store.
    let now = chrono::Utc::now().timestamp();
    let pruned = app.store.sessions_prune(now, now - 2).await.unwrap();
    assert_eq!(pruned, 2);
}

//! Who may call what: API keys and their scopes, revocation and expiry, Basic users with
//! argon2 hashes, failed-authentication throttling, registry administration over HTTP.

use pgua::auth::{Operation, Scopes};
use pgua::config::{BasicUser, Config};
use pgua::service::keys::hash_password;

use std::time::{Duration, Instant};

use pgua::store::AuditRecord;

use crate::support::{
    TestApp, fresh_postgres_store_url, spawn_app, spawn_app_with, spawn_app_with_store, unique,
};

const ALL_BUT: &str = "read,create,reset,grant,lock,drop,registry-admin,audit-read";

async fn user(app: &TestApp) -> String {
    let name = unique("acc");
    app.get(
        "/api/v1/users/devqa",
        &[("env", "dev"), ("database", "dev"), ("username", &name)],
    )
    .await;
    name
}

#[tokio::test]
async fn every_operation_needs_its_scope() {
    let app = spawn_app().await;
    for op in Operation::ALL {
        let victim = user(&app).await;
        let fresh = unique("made");
        let registry_env = unique("zz");
        let (path, query): (&str, Vec<(&str, &str)>) = match op {
            Operation::Read => (
                "/api/v1/users/find",
                vec![("env", "dev"), ("database", "dev"), ("username", &victim)],
            ),
            Operation::Create => (
                "/api/v1/users/devqa",
                vec![("env", "dev"), ("database", "dev"), ("username", &fresh)],
            ),
            Operation::Reset => (
                "/api/v1/users/reset",
                vec![("env", "dev"), ("database", "dev"), ("username", &victim)],
            ),
            Operation::Grant => (
                "/api/v1/users/grant",
                vec![
                    ("env", "dev"),
                    ("database", "dev"),
                    ("username", &victim),
                    ("on", "schema"),
                    ("schema", "public"),
                    ("privileges", "USAGE"),
                ],
            ),
            Operation::Lock => (
                "/api/v1/users/lock",
                vec![("env", "dev"), ("database", "dev"), ("username", &victim)],
            ),
            Operation::Drop => (
                "/api/v1/users/drop",
                vec![("env", "dev"), ("database", "dev"), ("username", &victim)],
            ),
            Operation::RegistryAdmin => (
                "/api/v1/registry/add",
                vec![("env", &registry_env), ("database", "x"), ("host", "h")],
            ),
            Operation::AuditRead => ("/api/v1/audit", vec![]),
        };
        let without: Vec<&str> = ALL_BUT.split(',').filter(|o| *o != op.name()).collect();
        let lacking = app.key("*", &without.join(","), "*").await;
        let r = app.get_bearer(&lacking, path, &query).await;
        assert_eq!(r.status, 403, "{}: {}", op.name(), r.body);
        assert!(
            r.str("error")
                .contains(&format!("operation '{}'", op.name())),
            "{}",
            r.body
        );
        let having = app.key("*", op.name(), "*").await;
        let r = app.get_bearer(&having, path, &query).await;
        assert_eq!(r.status, 200, "{}: {}", op.name(), r.body);
    }
    let denied = app
        .audit()
        .await
        .into_iter()
        .filter(|a| a.principal.starts_with("key:") && a.status == "failure")
        .count();
    assert_eq!(denied, Operation::ALL.len(), "every refusal is audited");
}

#[tokio::test]
async fn environment_and_profile_scopes_are_enforced() {
    let app = spawn_app().await;
    let ci = app.key("dev,qa", "read,create", "devqa").await;
    let name = unique("ci");
    let ok = app
        .get_bearer(
            &ci,
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let r = app
        .get_bearer(
            &ci,
            "/api/v1/users/dba",
            &[("env", "prod"), ("database", "prod"), ("username", &name)],
        )
        .await;
    assert_eq!(r.status, 403);
    assert!(r.str("error").contains("environment 'prod'"), "{}", r.body);
    let r = app
        .get_bearer(
            &ci,
            "/api/v1/users/readonly",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert!(r.str("error").contains("profile 'readonly'"), "{}", r.body);
    let r = app
        .get_bearer(
            &ci,
            "/api/v1/users/find",
            &[
                ("env", "dev,prod"),
                ("database", "dev"),
                ("username", &name),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "every target of a fan-out must be in scope");
    // The registry shows only what the key may touch.
    let r = app.get_bearer(&ci, "/api/v1/registry", &[]).await;
    let envs: Vec<&str> = r.body["databases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["env"].as_str().unwrap())
        .collect();
    assert!(envs.iter().all(|e| *e == "dev" || *e == "qa"), "{envs:?}");
}

#[tokio::test]
async fn revoked_expired_and_unknown_keys_are_refused_and_secrets_are_not_stored() {
    let app = spawn_app().await;
    let admin = app.key("*", "*", "*").await;
    let r = app
        .get_bearer(
            &admin,
            "/api/v1/keys/create",
            &[
                ("name", "portal"),
                ("owner", "web team"),
                ("environments", "dev"),
                ("operations", "read"),
                ("days", "30"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let portal = r.str("key").to_owned();
    assert!(portal.starts_with("pgua_"));
    assert_eq!(
        app.get_bearer(&portal, "/api/v1/registry", &[])
            .await
            .status,
        200
    );
    let listed = app.get_bearer(&admin, "/api/v1/keys", &[]).await;
    assert!(
        !listed.body.to_string().contains(&portal),
        "list shows no secret"
    );

    // The store holds only a hash.
    let dump = std::fs::read(app.store_url.trim_start_matches("sqlite://")).unwrap();
    let wal = std::fs::read(format!(
        "{}-wal",
        app.store_url.trim_start_matches("sqlite://")
    ))
    .unwrap_or_default();
    for bytes in [&dump, &wal] {
        assert!(
            !bytes.windows(portal.len()).any(|w| w == portal.as_bytes()),
            "secret in the store"
        );
    }
    let hash = pgua::service::keys::hash_secret(&portal);
    assert!(app.store.key_by_hash(&hash).await.unwrap().is_some());

    let r = app
        .get_bearer(&admin, "/api/v1/keys/revoke", &[("name", "portal")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        app.get_bearer(&portal, "/api/v1/registry", &[])
            .await
            .status,
        401,
        "revoked at once"
    );

    let scopes = Scopes::all();
    let past = chrono::Utc::now() - chrono::Duration::seconds(1);
    let (_, expired) =
        pgua::service::keys::create(app.store.as_ref(), "old", "tests", &scopes, Some(past))
            .await
            .unwrap();
    assert_eq!(
        app.get_bearer(&expired, "/api/v1/registry", &[])
            .await
            .status,
        401
    );
    assert_eq!(
        app.get_bearer("pgua_made-up", "/api/v1/registry", &[])
            .await
            .status,
        401
    );

    // A key cannot mint a broader key than itself.
    let dev_admin = app.key("dev", "registry-admin", "*").await;
    let r = app
        .get_bearer(
            &dev_admin,
            "/api/v1/keys/create",
            &[
                ("name", "sneaky"),
                ("owner", "x"),
                ("environments", "prod"),
                ("operations", "registry-admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
}

#[tokio::test]
async fn basic_users_from_config_and_turning_the_compatibility_user_off() {
    let mut config = Config::default();
    config.auth.basic_enabled = false;
    config.auth.users = vec![BasicUser {
        name: "portal".into(),
        password_hash: hash_password("correct horse").unwrap(),
        scopes: Scopes {
            environments: vec!["dev".into()],
            operations: vec![Operation::Read],
            profiles: vec![],
        },
    }];
    let app = spawn_app_with(config).await;
    assert_eq!(
        app.get_as("/api/v1/registry", Some((&app.user, &app.pass)))
            .await
            .status,
        401
    );
    let r = app
        .get_as("/api/v1/registry", Some(("portal", "correct horse")))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        app.get_as("/api/v1/registry", Some(("portal", "wrong")))
            .await
            .status,
        401
    );
    let res = app
        .client
        .get(format!("{}/api/v1/users/devqa", app.base))
        .basic_auth("portal", Some("correct horse"))
        .query(&[("env", "dev"), ("database", "dev"), ("username", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn repeated_failures_are_slowed_then_refused_and_audited() {
    let mut config = Config::default();
    config.auth.slowdown_after_failures = 1;
    config.auth.lockout_after_failures = 3;
    config.auth.lockout_secs = 60;
    let app = spawn_app_with(config).await;
    for _ in 0..3 {
        let r = app
            .get_as("/api/v1/registry", Some(("tester", "guess-123")))
            .await;
        assert_eq!(r.status, 401);
    }
    let r = app
        .get_as("/api/v1/registry", Some((&app.user, &app.pass)))
        .await;
    assert_eq!(r.status, 429, "locked out even with the right password");
    assert!(r.headers.contains_key("retry-after"));
    let audit = app.audit().await;
    let failures: Vec<_> = audit.iter().filter(|a| a.operation == "auth").collect();
    assert_eq!(failures.len(), 4, "three failures and the 429");
    assert_eq!(failures[0].principal, "tester");
    assert!(failures[3].error.as_deref().unwrap().contains("locked out"));
    assert!(
        !format!("{audit:?}").contains("guess-123"),
        "no attempted secret in the audit log"
    );
}

#[tokio::test]
async fn registry_is_administered_over_http() {
    let app = spawn_app().await;
    let env = unique("stage");
    let add = app
        .get(
            "/api/v1/registry/add",
            &[
                ("env", &env),
                ("database", "dev"),
                ("host", "127.0.0.1"),
                ("port", &app.clusters.dev.port.to_string()),
                ("sslmode", "disable"),
            ],
        )
        .await;
    assert_eq!(
        (add.status.as_u16(), add.str("status")),
        (200, "added"),
        "{}",
        add.body
    );
    let dup = app
        .get(
            "/api/v1/registry/add",
            &[("env", &env), ("database", "dev"), ("host", "h")],
        )
        .await;
    assert_eq!(dup.status, 409);
    let name = unique("reg");
    let q = [
        ("env", env.as_str()),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    assert_eq!(
        app.get("/api/v1/users/devqa", &q).await.status,
        200,
        "usable at once"
    );
    let upd = app
        .get(
            "/api/v1/registry/update",
            &[("env", &env), ("database", "dev"), ("notes", "moved")],
        )
        .await;
    assert_eq!(upd.body["entry"]["notes"], "moved");
    assert_eq!(upd.body["entry"]["port"], app.clusters.dev.port);
    let off = app
        .get(
            "/api/v1/registry/deactivate",
            &[("env", &env), ("database", "dev")],
        )
        .await;
    assert_eq!(off.body["entry"]["active"], 0);
    assert_eq!(
        app.get("/api/v1/users/find", &q).await.status,
        404,
        "inactive at once"
    );
    let bad = app
        .get(
            "/api/v1/registry/update",
            &[("env", &env), ("database", "dev"), ("sslmode", "maybe")],
        )
        .await;
    assert_eq!(bad.status, 422);
    let gone = app
        .get(
            "/api/v1/registry/remove",
            &[("env", &env), ("database", "dev")],
        )
        .await;
    assert_eq!(gone.str("status"), "removed");
    assert_eq!(
        app.get(
            "/api/v1/registry/remove",
            &[("env", &env), ("database", "dev")]
        )
        .await
        .status,
        404
    );
    let dev_admin = app.key("dev", "registry-admin", "*").await;
    let r = app
        .get_bearer(
            &dev_admin,
            "/api/v1/registry/add",
            &[("env", "prod"), ("database", "x"), ("host", "h")],
        )
        .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn me_names_the_caller_and_its_scopes_without_needing_one_or_auditing() {
    let app = spawn_app().await;
    let before = app.audit().await.len();

    let r = app.get("/api/v1/me", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body,
        serde_json::json!({
            "principal": "tester",
            "scopes": {
                "environments": ["*"],
                "operations": ALL_BUT.split(',').collect::<Vec<_>>(),
                "profiles": ["*"],
            },
        })
    );
    assert_eq!(
        app.post_json("/api/v1/me", serde_json::json!({}))
            .await
            .body,
        r.body
    );

    // A key with the least scope there is may still ask who it is.
    let key = app.key("dev", "read", "devqa").await;
    let r = app.get_bearer(&key, "/api/v1/me", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.str("principal").starts_with("key:key_"), "{}", r.body);
    assert_eq!(
        r.body["scopes"],
        serde_json::json!({"environments": ["dev"], "operations": ["read"], "profiles": ["devqa"]})
    );

    assert_eq!(app.get_as("/api/v1/me", None).await.status, 401);
    assert_eq!(
        app.audit().await.len(),
        before,
        "asking who one is leaves no audit record"
    );
}

/// GET `/api/v1/registry` as if from `from` (behind a trusted proxy) with this
/// `Authorization`; the status.
async fn from_addr(app: &TestApp, from: &str, authorization: &str) -> u16 {
    app.client
        .get(format!("{}/api/v1/registry", app.base))
        .header("x-forwarded-for", from)
        .header("authorization", authorization)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine;
    let pair = format!("{user}:{pass}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// How many refusals the `auth` records of `addr` stand for: one each, or a summary's count.
fn refusals_recorded(audit: &[AuditRecord], addr: &str) -> (usize, u64) {
    let mine = audit
        .iter()
        .filter(|a| a.operation == "auth" && a.client_addr == addr);
    let rows = mine.clone().count();
    let stood_for = mine
        .map(|a| match a.principal.as_str() {
            "-" => a
                .error
                .as_deref()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap(),
            _ => 1,
        })
        .sum();
    (rows, stood_for)
}

#[tokio::test]
async fn failures_from_one_address_hold_back_only_what_they_claim_and_are_audited_in_few_rows() {
    let mut config = Config::default();
    config.auth.trusted_proxies = vec!["127.0.0.1".to_owned().try_into().unwrap()];
    config.auth.failure_summary_secs = 2;
    // Few password checks before the lockout: argon2 is slow by design (and unoptimised here).
    config.auth.slowdown_after_failures = 3;
    config.auth.lockout_after_failures = 5;
    config.auth.users = vec![BasicUser {
        name: "portal".into(),
        password_hash: hash_password("portal pass").unwrap(),
        scopes: Scopes::all(),
    }];
    let app = spawn_app_with(config).await;
    let key = app.key("*", "read", "*").await;
    let (a, b) = ("203.0.113.7", "198.51.100.9");

    // 1,000 failures from one address: wrong passwords of a configured user, unknown names,
    // an unknown key guessed at, tokens that are no keys.
    let attempts: Vec<String> = (0..1000)
        .map(|i| match i % 4 {
            0 => basic("portal", &format!("guess-{i}")),
            1 => basic(&format!("name-{i}"), "x"),
            2 => format!("Bearer pgua_AAAAAA{:037}", i),
            _ => format!("Bearer not-a-key-{i}"),
        })
        .collect();
    let started = Instant::now();
    for chunk in attempts.chunks(25) {
        let answers =
            futures_util::future::join_all(chunk.iter().map(|h| from_addr(&app, a, h))).await;
        assert!(
            answers.iter().all(|s| *s == 401 || *s == 429),
            "{answers:?}"
        );
    }
    let flood = started.elapsed();

    // Valid credentials from the same address get through at once.
    for authorization in [basic(&app.user, &app.pass), format!("Bearer {key}")] {
        let t = Instant::now();
        assert_eq!(from_addr(&app, a, &authorization).await, 200);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    // The user whose password was guessed at is locked out there (refused, and audited),
    // not elsewhere; nothing else is held back at the second address.
    let portal = basic("portal", "portal pass");
    assert_eq!(from_addr(&app, a, &portal).await, 429);
    assert_eq!(from_addr(&app, b, &portal).await, 200);
    assert_eq!(from_addr(&app, b, &basic(&app.user, &app.pass)).await, 200);
    assert_eq!(from_addr(&app, b, &basic("portal", "wrong")).await, 401);

    // Every refusal is accounted for, most of them in summaries written as windows end.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (rows, stood_for) = loop {
        let got = refusals_recorded(&app.audit().await, a);
        if got.1 >= 1001 || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stood_for, 1001, "1,000 failures and one 429 ({rows} rows)");
    // At most 100 records of their own and a summary per 2 s window.
    let windows = flood.as_secs() as usize / 2 + 2;
    assert!(
        rows <= windows * 101 && rows < 1000,
        "{rows} rows in {flood:?}"
    );
    let audit = app.audit().await;
    let locked = audit.iter().find(|r| {
        r.client_addr == a
            && r.principal == "portal"
            && r.error.as_deref().unwrap().contains("locked out")
    });
    assert!(locked.is_some(), "the lockout of a named user is audited");
    assert_eq!(refusals_recorded(&audit, b), (1, 1));
}

#[tokio::test]
async fn the_client_address_comes_from_x_forwarded_for_only_behind_a_trusted_proxy() {
    for (trusted, expected) in [("10.0.0.0/8", "127.0.0.1"), ("127.0.0.0/8", "192.0.2.44")] {
        let mut config = Config::default();
        config.auth.trusted_proxies = [trusted, "2001:db8::/32"]
            .map(|n| n.to_owned().try_into().unwrap())
            .to_vec();
        let app = spawn_app_with(config).await;
        assert_eq!(
            from_addr(&app, "6.6.6.6, 192.0.2.44", &basic("tester", "nope")).await,
            401
        );
        let r = app
            .client
            .get(format!("{}/api/v1/audit", app.base))
            .basic_auth(&app.user, Some(&app.pass))
            .header("x-forwarded-for", "6.6.6.6, 192.0.2.44, 127.0.0.2")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let audit = app.audit().await;
        let addrs: Vec<&str> = audit.iter().map(|a| a.client_addr.as_str()).collect();
        assert_eq!(addrs, [expected, expected], "{trusted}: {audit:?}");
    }
}

/// Everything the store holds, as text, to search for what must not be there.
async fn raw_store(app: &TestApp) -> String {
    use sqlx::Connection;
    if app.store_url.starts_with("sqlite://") {
        let path = app.store_url.trim_start_matches("sqlite://");
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    let mut c = sqlx::PgConnection::connect(&app.store_url).await.unwrap();
    sqlx::query_scalar("SELECT string_agg(a::text, ' ') FROM audit_log a")
        .fetch_one(&mut c)
        .await
        .unwrap()
}

async fn no_secret_in_the_audit_log(app: TestApp) {
    let password = format!("Sw4pped-{}", unique("pw"));
    let token = format!("hunter2-{}", unique("tok"));
    let key_tail = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQ";
    let key = format!("pgua_Zx9Zx9{key_tail}");
    for _ in 0..2 {
        // The fields swapped: the password where the user name goes.
        assert_eq!(
            app.get_as("/api/v1/registry", Some((&password, &app.user)))
                .await
                .status,
            401
        );
    }
    assert_eq!(
        app.get_as("/api/v1/registry", Some((&app.user, &password)))
            .await
            .status,
        401
    );
    assert_eq!(
        app.get_bearer(&token, "/api/v1/registry", &[]).await.status,
        401
    );
    assert_eq!(
        app.get_bearer(&key, "/api/v1/registry", &[]).await.status,
        401
    );

    let audit = app.audit().await;
    let principals: Vec<&str> = audit
        .iter()
        .filter(|a| a.operation == "auth")
        .map(|a| a.principal.as_str())
        .collect();
    assert_eq!(principals.len(), 5, "{principals:?}");
    assert!(principals[0].starts_with("unknown-user#") && principals[0].len() == 21);
    assert_eq!(
        principals[0], principals[1],
        "equal attempts share a fingerprint"
    );
    assert_eq!(principals[2], "tester", "a configured user is named");
    assert!(principals[3].starts_with("bearer#"), "{}", principals[3]);
    assert_eq!(principals[4], "key:pgua_Zx9Zx9…");

    let json = app.get("/api/v1/audit", &[]).await.body.to_string();
    let csv = app
        .client
        .get(format!("{}/api/v1/audit", app.base))
        .basic_auth(&app.user, Some(&app.pass))
        .query(&[("format", "csv")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(json.contains(principals[0]) && csv.contains(principals[0]));
    let raw = raw_store(&app).await;
    for (place, text) in [
        ("records", &format!("{audit:?}")),
        ("JSON", &json),
        ("CSV", &csv),
        ("store", &raw),
    ] {
        for secret in [password.as_str(), token.as_str(), key_tail] {
            assert!(!text.contains(secret), "{secret} in the {place}");
        }
    }
}

#[tokio::test]
async fn no_attempted_secret_reaches_the_audit_log_on_sqlite() {
    no_secret_in_the_audit_log(spawn_app().await).await;
}

#[tokio::test]
async fn no_attempted_secret_reaches_the_audit_log_on_postgres() {
    let url = fresh_postgres_store_url().await;
    no_secret_in_the_audit_log(spawn_app_with_store(Config::default(), &url).await).await;
}

/// An endpoint, its extra parameters, and the one scope that allows it.
type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn each_user_operation_needs_the_scope_the_readme_names() {
    let app = spawn_app().await;
    let victim = user(&app).await;
    let fresh = unique("made");
    let grant = [
        ("on", "schema"),
        ("schema", "public"),
        ("privileges", "USAGE"),
    ];
    // The README's table: endpoint, extra parameters, the one scope that allows it.
    let table: [Row; 11] = [
        ("devqa", &[], "create"),
        ("reset", &[], "reset"),
        ("search-path", &[("schema", "app,public")], "grant"),
        ("lock", &[], "lock"),
        ("unlock", &[], "lock"),
        ("expire", &[], "lock"),
        ("renew", &[], "lock"),
        ("alter", &[("connection_limit", "5")], "grant"),
        ("drop", &[], "drop"),
        ("grant", &grant, "grant"),
        ("revoke", &grant, "grant"),
    ];
    let user_scopes = ["create", "reset", "grant", "lock", "drop"];
    for (endpoint, extra, scope) in table {
        let username = if endpoint == "devqa" { &fresh } else { &victim };
        let mut query = vec![
            ("env", "dev"),
            ("database", "dev"),
            ("username", username.as_str()),
            ("dry_run", "true"),
        ];
        query.extend_from_slice(extra);
        let path = format!("/api/v1/users/{endpoint}");
        for other in user_scopes.iter().filter(|s| **s != scope) {
            let key = app.key("*", &format!("read,{other}"), "*").await;
            let r = app.get_bearer(&key, &path, &query).await;
            assert_eq!(r.status, 403, "{endpoint} with only {other}: {}", r.body);
            assert!(
                r.str("error").contains(&format!("operation '{scope}'")),
                "{endpoint}: {}",
                r.body
            );
        }
        let key = app.key("*", scope, "*").await;
        let r = app.get_bearer(&key, &path, &query).await;
        assert_eq!(
            (r.status.as_u16(), &r.body["dry_run"]),
            (200, &serde_json::json!(true)),
            "{endpoint} with {scope}: {}",
            r.body
        );
    }
    assert!(app.dev_role_exists(&victim).await, "dry runs only");
    assert!(!app.dev_role_exists(&fresh).await, "dry runs only");
}

/// A call whose parameters do not fit, and how it is refused with and without the scope.
struct Misfit<'a> {
    path: &'a str,
    query: Vec<(&'a str, &'a str)>,
    /// The one scope the call needs.
    scope: &'a str,
    /// The operation a refusal for lack of scope is audited as.
    refused_as: &'a str,
    /// The operation the misfit is audited as, when it is.
    misfit_as: Option<&'a str>,
    /// What a caller with the scope gets: status and error.
    answer: (u16, &'a str),
}

#[tokio::test]
async fn scope_is_checked_before_the_parameters_and_both_refusals_are_audited() {
    let app = spawn_app().await;
    let env = unique("zz");
    let target = || vec![("env", env.as_str()), ("database", "dev")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut q = target();
        q.extend_from_slice(extra);
        q
    };
    let missing_username = (400, "missing parameter: username");
    let table = [
        Misfit {
            path: "/api/v1/users/reset",
            query: target(),
            scope: "reset",
            refused_as: "reset",
            misfit_as: Some("reset"),
            answer: missing_username,
        },
        Misfit {
            path: "/api/v1/users/devqa",
            query: with(&[("username", "misfit"), ("dry_run", "maybe")]),
            scope: "create",
            refused_as: "create:devqa",
            misfit_as: Some("create:devqa"),
            answer: (422, "dry_run must be true or false, not 'maybe'"),
        },
        Misfit {
            path: "/api/v1/users/find",
            query: target(),
            scope: "read",
            refused_as: "read",
            misfit_as: Some("find"),
            answer: missing_username,
        },
        Misfit {
            path: "/api/v1/users/grant",
            query: with(&[("username", "misfit"), ("on", "schema"), ("future", "")]),
            scope: "grant",
            refused_as: "grant",
            misfit_as: Some("grant"),
            answer: (422, "future must be true or false, not ''"),
        },
        Misfit {
            path: "/api/v1/registry/add",
            query: with(&[("host", "h"), ("port", "abc")]),
            scope: "registry-admin",
            refused_as: "registry:add",
            misfit_as: Some("registry:add"),
            answer: (422, "port 'abc' must be a number 1-65535"),
        },
        Misfit {
            path: "/api/v1/keys/create",
            query: vec![("owner", "o"), ("environments", "*")],
            scope: "registry-admin",
            refused_as: "keys:create",
            misfit_as: Some("keys:create"),
            answer: (400, "missing parameter: name"),
        },
        // As before typed parameters: the export's own filters are not audited.
        Misfit {
            path: "/api/v1/audit",
            query: vec![("limit", "abc")],
            scope: "audit-read",
            refused_as: "audit:read",
            misfit_as: None,
            answer: (422, "limit 'abc' must be a number 0-10000"),
        },
    ];
    // The one scope no row needs.
    let lacking = app.key("*", "lock", "*").await;
    for m in table {
        let (path, scope) = (m.path, m.scope);
        let r = app.get_bearer(&lacking, path, &m.query).await;
        assert_eq!(r.status, 403, "{path} without {scope}: {}", r.body);
        let refusal = format!("lacks the scope for operation '{scope}'");
        assert!(r.str("error").contains(&refusal), "{path}: {}", r.body);
        let having = app.key("*", scope, "*").await;
        let r = app.get_bearer(&having, path, &m.query).await;
        let (status, error) = m.answer;
        assert_eq!(
            (r.status.as_u16(), r.str("error")),
            m.answer,
            "{path} with {scope}: {}",
            r.body
        );
        let audit = app.audit().await;
        let recorded = |op: &str, error: &str| {
            audit.iter().rev().find(|a| {
                a.operation == op
                    && a.status == "failure"
                    && a.principal.starts_with("key:")
                    && a.error.as_deref().is_some_and(|e| e.contains(error))
            })
        };
        let refused = recorded(m.refused_as, &refusal);
        assert_eq!(refused.map(|a| a.detail.as_str()), Some("403"), "{path}");
        let misfit = recorded(m.misfit_as.unwrap_or(m.refused_as), error);
        assert_eq!(
            misfit.map(|a| a.detail.as_str()),
            m.misfit_as.map(|_| status.to_string()).as_deref(),
            "{path}: the {status} is audited exactly when the operation is"
        );
        if let (Some(record), true) = (misfit, path.starts_with("/api/v1/users/")) {
            assert_eq!(record.env, env, "{path}: with the target as sent");
            let profile = path.strip_suffix("/devqa").map(|_| "devqa@");
            assert_eq!(
                profile.is_some(),
                record.profile.starts_with("devqa@"),
                "{path}: a create names its profile: {}",
                record.profile
            );
        }
    }
    assert!(!app.dev_role_exists("misfit").await);
}

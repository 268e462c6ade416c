//! Hostile input, protected roles, authentication, unreachable targets, audit completeness.

use std::time::{Duration, Instant};

use crate::support::{spawn_app, unique};

#[tokio::test]
async fn hostile_names_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let before = app.dev_roles().await;
    let long = "a".repeat(64);
    let hostile = [
        "bob'; DROP ROLE postgres; --",
        "a\"b",
        "semi;colon",
        "has space",
        "naïve",
        "😀",
        long.as_str(),
        "pg_x",
        "postgres",
        "public",
        "PUBLIC",
        "none",
        "current_user",
        "pgua_admin",
        "rds_superuser",
        "",
        "1starts_with_digit",
        "new\nline",
    ];
    for endpoint in ["devqa", "devlead", "readonly", "dba"] {
        for name in hostile {
            let r = app
                .get(
                    &format!("/api/v1/users/{endpoint}"),
                    &[("env", "dev"), ("database", "dev"), ("username", name)],
                )
                .await;
            assert!(
                r.status.is_client_error(),
                "{endpoint} {name:?} gave {} {}",
                r.status,
                r.body
            );
            assert!(!r.str("error").is_empty(), "{name:?}: {}", r.body);
        }
        // Missing username.
        let r = app
            .get(
                &format!("/api/v1/users/{endpoint}"),
                &[("env", "dev"), ("database", "dev")],
            )
            .await;
        assert_eq!(r.status, 400);
        assert_eq!(r.str("error"), "missing parameter: username");
    }
    for (server, port) in [
        ("web;x", "80"),
        ("web", "0"),
        ("web", "65536"),
        ("web", "80; DROP"),
        ("", "80"),
        ("pg", "1"),
    ] {
        let r = app
            .get(
                "/api/v1/users/app",
                &[
                    ("env", "dev"),
                    ("database", "dev"),
                    ("servername", server),
                    ("port", port),
                ],
            )
            .await;
        assert!(
            r.status.is_client_error(),
            "{server:?} {port:?}: {}",
            r.body
        );
    }
    for schema in ["public; CREATE ROLE x", "a b", "pg'x", "", "public,,x"] {
        let r = app
            .get(
                "/api/v1/users/search-path",
                &[
                    ("env", "dev"),
                    ("database", "dev"),
                    ("username", "whoever"),
                    ("schema", schema),
                ],
            )
            .await;
        assert_eq!(r.status, 422, "{schema:?}: {}", r.body);
    }
    // Other tests create roles meanwhile, so look for what these requests could have made.
    let after = app.dev_roles().await;
    let made: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
    for name in hostile.iter().chain(&["x", "web;x_80", "web_0", "pg_1"]) {
        let folded = name.to_ascii_lowercase();
        assert!(!made.contains(&&folded), "{name:?} was created");
    }
    assert!(
        !made.iter().any(|m| m.contains([';', '\'', ' ', '"'])),
        "{made:?}"
    );
}

#[tokio::test]
async fn sixty_three_byte_names_work_and_sixty_four_are_refused() {
    let app = spawn_app().await;
    let base = unique("n");
    let name = format!("{base}{}", "x".repeat(63 - base.len()));
    assert_eq!(name.len(), 63);
    let ok = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(app.dev_role_exists(&name).await);
    let too_long = format!("{name}y");
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &too_long)],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.str("error").contains("63"));
}

#[tokio::test]
async fn reset_of_protected_roles_is_forbidden() {
    let app = spawn_app().await;
    let su = unique("super");
    let c = app.clusters.dev.superuser("postgres").await;
    c.batch_execute(&format!("CREATE ROLE {su} SUPERUSER LOGIN"))
        .await
        .unwrap();
    for name in [
        "postgres",
        "pgua_admin",
        "PGUA_ADMIN",
        "pg_monitor",
        "rds_superuser",
        su.as_str(),
    ] {
        for endpoint in ["reset", "search-path"] {
            let r = app
                .get(
                    &format!("/api/v1/users/{endpoint}"),
                    &[("env", "dev"), ("database", "dev"), ("username", name)],
                )
                .await;
            assert_eq!(r.status, 403, "{endpoint} of {name}: {}", r.body);
        }
    }
}

#[tokio::test]
async fn reset_of_a_missing_role_is_404_with_the_user_body() {
    let app = spawn_app().await;
    let r = app
        .get(
            "/api/v1/users/reset",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", "does_not_exist"),
            ],
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.str("status"), "user not found");
    assert!(r.body["password"].is_null());
    assert_eq!(r.str("username"), "does_not_exist");
    let r = app
        .get(
            "/api/v1/users/search-path",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", "does_not_exist"),
            ],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (404, "user not found")
    );
}

#[tokio::test]
async fn unknown_or_inactive_registry_entry_is_404_with_the_original_message() {
    let app = spawn_app().await;
    for (env, db) in [("dev", "nope"), ("dev", "archive"), ("staging", "dev")] {
        let r = app
            .get(
                "/api/v1/users/devqa",
                &[("env", env), ("database", db), ("username", "someone")],
            )
            .await;
        assert_eq!(r.status, 404);
        assert_eq!(
            r.str("error"),
            format!("No registry entry found for env='{env}' database='{db}'")
        );
    }
}

#[tokio::test]
async fn target_down_is_503_fast_and_other_targets_keep_working() {
    let app = spawn_app().await;
    let started = Instant::now();
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[
                ("env", "qa"),
                ("database", "down"),
                ("username", &unique("qa")),
            ],
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.str("error").contains("unavailable"), "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "longer than the connect timeout"
    );
    let find = app
        .get(
            "/api/v1/users/find",
            &[("env", "qa"), ("database", "down"), ("username", "x")],
        )
        .await;
    assert_eq!(find.status, 503);
    let ok = app
        .get(
            "/api/v1/users/devqa",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", &unique("ok")),
            ],
        )
        .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn wrong_or_missing_credentials_get_401_with_a_challenge() {
    let app = spawn_app().await;
    let path = "/api/v1/registry";
    let wrong_pass = app.get_as(path, Some(("tester", "wrong"))).await;
    let wrong_user = app.get_as(path, Some(("someone", &app.pass))).await;
    let missing = app.get_as(path, None).await;
    for r in [&wrong_pass, &wrong_user, &missing] {
        assert_eq!(r.status, 401);
        assert_eq!(r.str("error"), "authentication required");
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
    }
    let bearer = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth("nothing")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 401);
}

#[tokio::test]
async fn bad_bodies_and_unknown_routes_get_json_errors() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(format!("{}/api/v1/users/devqa", app.base))
        .basic_auth(&app.user, Some(&app.pass))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("JSON"));
    let r = app.get("/api/v1/users/nonsense", &[]).await;
    assert_eq!(r.status, 404);
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", "x"),
                ("dry_run", "maybe"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused_before_it_is_sent() {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", app.user, app.pass));
    let addr = app.base.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    // 10 MiB announced, not a byte of it sent: only a refusal that reads nothing can answer.
    let head = format!(
        "POST /api/v1/users/find HTTP/1.1\r\nhost: {addr}\r\nauthorization: Basic {auth}\r\n\
         content-type: application/json\r\ncontent-length: 10485760\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&answer).contains("too large") {
            let n = conn.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_ok(),
        "no answer while the body was withheld: {answer:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains(r#"{"error":"request body too large"}"#),
        "{answer}"
    );
}

#[tokio::test]
async fn every_operation_leaves_audit_records_without_secrets() {
    let app = spawn_app().await;
    let name = unique("audited");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let created = app.get("/api/v1/users/devqa", &q).await;
    let reset = app.get("/api/v1/users/reset", &q).await;
    app.get("/api/v1/users/find", &q).await;
    app.get("/api/v1/users/search-path", &q).await;
    app.get("/api/v1/users/all", &[("env", "dev"), ("database", "dev")])
        .await;
    app.get(
        "/api/v1/users/devqa",
        &[
            ("env", "dev"),
            ("database", "dev"),
            ("username", "bad name"),
        ],
    )
    .await;
    app.get(
        "/api/v1/users/reset",
        &[
            ("env", "dev"),
            ("database", "dev"),
            ("username", "postgres"),
        ],
    )
    .await;
    app.get(
        "/api/v1/users/devqa",
        &[("env", "qa"), ("database", "down"), ("username", &name)],
    )
    .await;
    app.get("/api/v1/registry", &[]).await;
    let records = app.audit().await;
    let outcomes: Vec<_> = records.iter().filter(|r| r.status != "intent").collect();
    let ops: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|r| (r.operation.as_str(), r.status.as_str()))
        .collect();
    assert_eq!(
        ops,
        [
            ("create:devqa", "success"),
            ("reset", "success"),
            ("find", "success"),
            ("search-path", "success"),
            ("list", "success"),
            ("create:devqa", "failure"),
            ("reset", "failure"),
            ("create:devqa", "failure"),
            ("registry:list", "success"),
        ]
    );
    // Intents precede the DDL of the three changing calls that reached a target.
    let intents = records.iter().filter(|r| r.status == "intent").count();
    assert_eq!(
        intents, 4,
        "create, reset, search-path and the create on the down target"
    );
    for r in &records {
        assert_eq!(r.principal, "tester");
        assert_eq!(r.client_addr, "127.0.0.1");
        assert_eq!(r.request_id.len(), 36);
    }
    assert_eq!(outcomes[0].detail, "user created");
    assert_eq!(
        outcomes[6]
            .error
            .as_deref()
            .map(|e| e.contains("protected")),
        Some(true)
    );
    let text = format!("{records:?}");
    for secret in [
        created.str("password"),
        reset.str("password"),
        "SCRAM-SHA-256",
    ] {
        assert!(!secret.is_empty());
        assert!(!text.contains(secret), "secret in the audit log");
    }
}

//! Every v1 endpoint's happy path, checked on the target by logging in.

use serde_json::json;

use crate::support::{connect, spawn_app, unique};

const USER_KEYS: [&str; 7] = [
    "username", "password", "status", "hostname", "database", "port", "env",
];

fn assert_v1_keys(body: &serde_json::Value) {
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = USER_KEYS.to_vec();
    expected.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, expected, "body {body}");
}

#[tokio::test]
async fn root_healthz_and_readyz_need_no_auth() {
    let app = spawn_app().await;
    let root = app.get_as("/", None).await;
    assert_eq!(root.status, 200);
    assert_eq!(root.str("service"), "PostgreSQL User Management API");
    assert_eq!(app.get_as("/healthz", None).await.status, 200);
    let ready = app.get_as("/readyz", None).await;
    assert_eq!((ready.status.as_u16(), ready.str("store")), (200, "ok"));
}

#[tokio::test]
async fn app_user_is_created_and_logs_in_with_the_returned_password() {
    let app = spawn_app().await;
    let server = unique("web");
    let r = app
        .get(
            "/api/v1/users/app",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("servername", &server),
                ("port", "8080"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_v1_keys(&r.body);
    let name = format!("{server}_8080");
    assert_eq!(r.str("username"), name);
    assert_eq!(r.str("status"), "user created");
    assert_eq!(r.str("port"), app.clusters.dev.port.to_string());
    assert_eq!(
        (r.str("env"), r.str("database"), r.str("hostname")),
        ("dev", "dev", "127.0.0.1")
    );
    assert_eq!(r.headers["cache-control"], "no-store");
    let password = r.str("password");
    assert!(password.len() >= 22);
    let client = connect(app.clusters.dev.port, "dev", &name, password)
        .await
        .unwrap();
    let row = client
        .query_one(
            "SELECT rolconnlimit, current_setting('search_path') FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 200);
    assert_eq!(row.get::<_, String>(1), "public");
}

#[tokio::test]
async fn app_k8s_user_is_named_prefix_farm() {
    let app = spawn_app().await;
    let farm = unique("farm");
    let r = app
        .post_json(
            "/api/v1/users/app-k8s",
            json!({"env": "dev", "database": "dev", "env_prefix": "K8S", "farmname": farm}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_v1_keys(&r.body);
    let name = format!("k8s_{farm}");
    assert_eq!(r.str("username"), name);
    connect(app.clusters.dev.port, "dev", &name, r.str("password"))
        .await
        .unwrap();
}

#[tokio::test]
async fn devqa_devlead_and_dba_get_their_attributes() {
    let app = spawn_app().await;
    for (endpoint, status, limit, createdb) in [
        ("devqa", "user created", 20, false),
        ("devlead", "user created", 20, false),
        ("dba", "dba user created", 20, true),
    ] {
        let name = unique(endpoint);
        let r = app
            .post_form(
                &format!("/api/v1/users/{endpoint}"),
                &[("env", "dev"), ("database", "dev"), ("username", &name)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_v1_keys(&r.body);
        assert_eq!(r.str("status"), status);
        let client = connect(app.clusters.dev.port, "dev", &name, r.str("password"))
            .await
            .unwrap();
        let row = client
            .query_one(
                "SELECT rolconnlimit, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, i32>(0), limit);
        assert_eq!(row.get::<_, bool>(1), createdb);
        assert_eq!(row.get::<_, bool>(2), createdb);
    }
}

#[tokio::test]
async fn creating_an_existing_user_reports_it_and_returns_no_password() {
    let app = spawn_app().await;
    let name = unique("twice");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let first = app.get("/api/v1/users/devqa", &q).await;
    assert_eq!(first.str("status"), "user created");
    let second = app.get("/api/v1/users/devqa", &q).await;
    assert_eq!(second.status, 200);
    assert_eq!(second.str("status"), "user already exists");
    assert!(second.body["password"].is_null());
    assert_v1_keys(&second.body);
    // The first password still works: nothing changed.
    connect(app.clusters.dev.port, "dev", &name, first.str("password"))
        .await
        .unwrap();
}

#[tokio::test]
async fn names_are_folded_to_lower_case_everywhere() {
    let app = spawn_app().await;
    let name = unique("Alice");
    let created = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(created.str("username"), name.to_lowercase());
    let found = app
        .get(
            "/api/v1/users/find",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", &name.to_uppercase()),
            ],
        )
        .await;
    assert_eq!(found.body["found"], true);
    assert_eq!(found.str("username"), name.to_lowercase());
}

#[tokio::test]
async fn reset_replaces_the_password_at_once() {
    let app = spawn_app().await;
    let name = unique("rotate");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let created = app.get("/api/v1/users/devqa", &q).await;
    let old = created.str("password").to_owned();
    let r = app.get("/api/v1/users/reset", &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_v1_keys(&r.body);
    assert_eq!(r.str("status"), "password reset");
    assert_eq!(r.headers["cache-control"], "no-store");
    let new = r.str("password");
    assert_ne!(new, old);
    connect(app.clusters.dev.port, "dev", &name, new)
        .await
        .unwrap();
    assert!(
        connect(app.clusters.dev.port, "dev", &name, &old)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn search_path_is_set_in_the_target_database() {
    let app = spawn_app().await;
    let name = unique("sp");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let password = app
        .get("/api/v1/users/devqa", &q)
        .await
        .str("password")
        .to_owned();
    let r = app
        .post_json(
            "/api/v1/users/search-path",
            json!({"env": "dev", "database": "dev", "username": name, "schema": "$user, Sales, public"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_v1_keys(&r.body);
    assert_eq!(r.str("status"), "search_path set to $user, sales, public");
    assert!(r.body["password"].is_null());
    let client = connect(app.clusters.dev.port, "dev", &name, &password)
        .await
        .unwrap();
    let row = client.query_one("SHOW search_path", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "\"$user\", sales, public");
    // Default schema is public.
    let r = app.get("/api/v1/users/search-path", &q).await;
    assert_eq!(r.str("status"), "search_path set to public");
}

#[tokio::test]
async fn find_reports_attributes_and_absence() {
    let app = spawn_app().await;
    let name = unique("findme");
    app.get(
        "/api/v1/users/dba",
        &[("env", "dev"), ("database", "dev"), ("username", &name)],
    )
    .await;
    let r = app
        .get(
            "/api/v1/users/find",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["found"], true);
    let attrs: Vec<&str> = r.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        attrs.contains(&"Create DB") && attrs.contains(&"Create role"),
        "{attrs:?}"
    );
    assert!(attrs.contains(&"20 connections"), "{attrs:?}");
    for key in ["hostname", "database", "port", "env"] {
        assert!(r.body.get(key).is_some(), "missing {key}");
    }
    let missing = app
        .get(
            "/api/v1/users/find",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", "nobody_here"),
            ],
        )
        .await;
    assert_eq!(missing.status, 200);
    assert_eq!(missing.body["found"], false);
}

#[tokio::test]
async fn all_lists_users_without_system_roles() {
    let app = spawn_app().await;
    let name = unique("listed");
    app.get(
        "/api/v1/users/devqa",
        &[("env", "dev"), ("database", "dev"), ("username", &name)],
    )
    .await;
    let r = app
        .get("/api/v1/users/all", &[("env", "dev"), ("database", "dev")])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let names: Vec<&str> = r.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(names.contains(&name.as_str()));
    assert!(names.contains(&"postgres"));
    assert!(!names.iter().any(|n| n.starts_with("pg_")));
    assert_eq!(r.str("port"), app.clusters.dev.port.to_string());
}

#[tokio::test]
async fn registry_lists_every_entry_like_the_original() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/registry", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["count"], 4);
    let first = &r.body["databases"][0];
    for key in [
        "id",
        "env",
        "db_name",
        "hostname",
        "port",
        "active",
        "notes",
        "created_at",
    ] {
        assert!(first.get(key).is_some(), "missing {key} in {first}");
    }
    let archive = r.body["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["db_name"] == "archive")
        .unwrap();
    assert_eq!(archive["active"], 0);
}

#[tokio::test]
async fn readonly_user_reads_old_and_new_tables_and_cannot_write() {
    let app = spawn_app().await;
    let name = unique("ro");
    let r = app
        .get(
            "/api/v1/users/readonly",
            &[("env", "prod"), ("database", "prod"), ("username", &name)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let port = app.clusters.prod.port;
    // The owner creates a table after the user exists.
    let owner = app.clusters.prod.superuser("prod").await;
    let later = unique("later");
    owner
        .batch_execute(&format!("SET ROLE app_owner; CREATE TABLE public.{later} (x int); INSERT INTO public.{later} VALUES (1)"))
        .await
        .unwrap();
    let ro = connect(port, "prod", &name, r.str("password"))
        .await
        .unwrap();
    ro.query("SELECT * FROM public.orders", &[]).await.unwrap();
    let n: i64 = ro
        .query_one(&format!("SELECT count(*) FROM public.{later}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    for write in [
        "INSERT INTO public.orders (item) VALUES ('x')".to_owned(),
        "UPDATE public.orders SET item = 'y'".to_owned(),
        "DELETE FROM public.orders".to_owned(),
        "CREATE TABLE public.mine (x int)".to_owned(),
        format!("INSERT INTO public.{later} VALUES (2)"),
    ] {
        assert!(ro.batch_execute(&write).await.is_err(), "{write} succeeded");
    }
    // Even with the read-only default switched off, privileges still refuse writes.
    assert!(
        ro.batch_execute(
            "SET default_transaction_read_only = off; INSERT INTO public.orders (item) VALUES ('x')"
        )
        .await
        .is_err()
    );
}

#[tokio::test]
async fn dry_run_returns_the_plan_redacted_and_changes_nothing() {
    let app = spawn_app().await;
    let name = unique("dry");
    let r = app
        .get(
            "/api/v1/users/readonly",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", &name),
                ("dry_run", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["dry_run"], true);
    assert!(r.body["password"].is_null());
    let sql: Vec<&str> = r.body["sql"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sql"].as_str().unwrap())
        .collect();
    assert!(
        sql[0].starts_with(&format!("CREATE ROLE \"{name}\"")),
        "{sql:?}"
    );
    assert!(sql[0].ends_with("PASSWORD '********'"));
    assert!(!r.body.to_string().contains("SCRAM-SHA-256"));
    assert!(!app.dev_role_exists(&name).await);
    // Reset and search-path dry runs change nothing either.
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let created = app.get("/api/v1/users/devqa", &q).await;
    let dry_reset = app
        .get(
            "/api/v1/users/reset",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", &name),
                ("dry_run", "1"),
            ],
        )
        .await;
    assert_eq!(dry_reset.body["dry_run"], true);
    connect(app.clusters.dev.port, "dev", &name, created.str("password"))
        .await
        .unwrap();
}

#[tokio::test]
async fn devqa_and_devlead_are_refused_in_production_but_dba_is_not() {
    let app = spawn_app().await;
    for endpoint in ["devqa", "devlead"] {
        let name = unique(endpoint);
        let r = app
            .get(
                &format!("/api/v1/users/{endpoint}"),
                &[("env", "prod"), ("database", "prod"), ("username", &name)],
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.str("error").contains("production"));
    }
    let r = app
        .get(
            "/api/v1/users/dba",
            &[
                ("env", "prod"),
                ("database", "prod"),
                ("username", &unique("proddba")),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn request_id_is_echoed_or_generated() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "abc-123");
    let res = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"].len(), 36);
}

#[tokio::test]
async fn no_plaintext_password_reaches_the_target_log() {
    let app = spawn_app().await;
    let name = unique("logged");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let created = app.get("/api/v1/users/devqa", &q).await;
    let reset = app.get("/api/v1/users/reset", &q).await;
    let log = std::fs::read_to_string(&app.clusters.dev.log_path).unwrap();
    assert!(
        log.contains(&format!("CREATE ROLE \"{name}\"")),
        "log_statement=all is on"
    );
    for password in [created.str("password"), reset.str("password")] {
        assert!(!password.is_empty());
        assert!(
            !log.contains(password),
            "plaintext password in the server log"
        );
    }
}

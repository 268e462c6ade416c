//! Every v1 endpoint's happy path, checked on the target by logging in.

use serde_json::json;

use crate::support::{TestApp, connect, spawn_app, unique};

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
    // The original's keys exactly: the schema list as set, and no password key.
    let expected = json!({
        "username": name, "schema": "$user,sales,public",
        "status": "search_path set to $user, sales, public", "hostname": "127.0.0.1",
        "database": "dev", "port": app.clusters.dev.port.to_string(), "env": "dev",
    });
    assert_eq!(r.body, expected);
    let client = connect(app.clusters.dev.port, "dev", &name, &password)
        .await
        .unwrap();
    let row = client.query_one("SHOW search_path", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "\"$user\", sales, public");
    // Default schema is public.
    let r = app.get("/api/v1/users/search-path", &q).await;
    assert_eq!(r.str("status"), "search_path set to public");
    assert_eq!(r.str("schema"), "public");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", "nobody_here"),
    ];
    let r = app.get("/api/v1/users/search-path", &q).await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (404, "user not found")
    );
    assert_eq!(r.body.get("password"), None, "{}", r.body);
}

/// The raw text of an authenticated GET: the v1 answers are pinned byte for byte.
async fn get_text(app: &TestApp, path: &str, query: &[(&str, &str)]) -> (u16, String) {
    let res = app
        .client
        .get(format!("{}{path}", app.base))
        .basic_auth(&app.user, Some(&app.pass))
        .query(query)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// Creates `name` of `profile` in dev/dev.
async fn create_on_dev(app: &TestApp, profile: &str, name: &str) {
    let q = [("env", "dev"), ("database", "dev"), ("username", name)];
    let r = app.get(&format!("/api/v1/users/{profile}"), &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn find_answers_the_originals_attribute_string() {
    let app = spawn_app().await;
    let port = app.clusters.dev.port.to_string();
    let (dba, devqa) = (unique("finddba"), unique("findqa"));
    for (profile, name) in [("dba", &dba), ("devqa", &devqa)] {
        create_on_dev(&app, profile, name).await;
    }
    for (name, attributes) in [
        (dba.as_str(), "create database"),
        ("postgres", "superuser, create database"),
        (devqa.as_str(), "standard"),
    ] {
        let q = [("env", "dev"), ("database", "dev"), ("username", name)];
        let (status, text) = get_text(&app, "/api/v1/users/find", &q).await;
        let expected = json!({
            "attributes": attributes, "database": "dev", "env": "dev", "found": true,
            "hostname": "127.0.0.1", "port": port, "username": name,
        });
        assert_eq!((status, text), (200, expected.to_string()), "{name}");
    }
    // A missing role: no attributes key at all.
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", "nobody_here"),
    ];
    let (status, text) = get_text(&app, "/api/v1/users/find", &q).await;
    let expected = json!({
        "database": "dev", "env": "dev", "found": false,
        "hostname": "127.0.0.1", "port": port, "username": "nobody_here",
    });
    assert_eq!((status, text), (200, expected.to_string()));
}

#[tokio::test]
async fn all_lists_login_roles_by_name_with_the_originals_attribute_string() {
    let app = spawn_app().await;
    let (dba, devqa, locked) = (unique("alldba"), unique("allqa"), unique("alllocked"));
    for (profile, name) in [("dba", &dba), ("devqa", &devqa), ("devqa", &locked)] {
        create_on_dev(&app, profile, name).await;
    }
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", locked.as_str()),
    ];
    assert_eq!(app.get("/api/v1/users/lock", &q).await.status, 200);
    let (status, text) = get_text(
        &app,
        "/api/v1/users/all",
        &[("env", "dev"), ("database", "dev")],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    let port = app.clusters.dev.port.to_string();
    let users = body["users"].as_array().unwrap();
    let mut rest = body.clone();
    rest.as_object_mut().unwrap().remove("users");
    assert_eq!(
        rest,
        json!({"database": "dev", "env": "dev", "hostname": "127.0.0.1", "port": port})
    );
    let entry = |name: &str| users.iter().find(|u| u["username"] == name).cloned();
    // The admin role: CREATEROLE, which the original never reports, and from 16 on CREATEDB
    // (set up as the README says, to create dba users).
    let admin = if app.clusters.dev.server_version_num().await >= 160000 {
        "create database"
    } else {
        ""
    };
    for (name, attributes) in [
        (dba.as_str(), "create database"),
        ("postgres", "superuser, create database"),
        (devqa.as_str(), ""),
        ("pgua_admin", admin),
    ] {
        let expected = json!({"username": name, "attributes": attributes});
        assert_eq!(entry(name), Some(expected.clone()), "{name}");
        assert!(
            text.contains(&expected.to_string()),
            "{name} not byte-exact in {text}"
        );
    }
    // Roles that cannot log in are not users: a locked one, the owner role, pg_*.
    for absent in [locked.as_str(), "app_owner", "pg_monitor"] {
        assert_eq!(entry(absent), None, "{absent} listed");
    }
    let names: Vec<&str> = users
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "not in name order");
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

/// A raw authenticated request to a user endpoint: method, content type and body as given.
async fn send_raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> crate::support::Reply {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .basic_auth(&app.user, Some(&app.pass))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    crate::support::Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn a_body_of_another_content_type_is_refused_with_415_and_changes_nothing() {
    let app = spawn_app().await;
    let post = reqwest::Method::POST;
    for content_type in [Some("text/plain"), Some("application/xml"), None] {
        let name = unique("ctype");
        let form = format!("env=dev&database=dev&username={name}");
        let r = send_raw(
            &app,
            post.clone(),
            "/api/v1/users/devqa",
            content_type,
            &form,
        )
        .await;
        assert_eq!(r.status, 415, "{content_type:?}: {}", r.body);
        assert!(r.str("error").contains("application/json"), "{}", r.body);
        assert!(
            !app.dev_role_exists(&name).await,
            "{content_type:?} created {name}"
        );
    }
    // The two accepted types, with parameters.
    let name = unique("ctype");
    let form = format!("env=dev&database=dev&username={name}");
    let ct = Some("application/x-www-form-urlencoded; charset=UTF-8");
    let r = send_raw(&app, post.clone(), "/api/v1/users/devqa", ct, &form).await;
    assert_eq!((r.status.as_u16(), r.str("status")), (200, "user created"));
    let json = json!({"env": "dev", "database": "dev", "username": name}).to_string();
    let ct = Some("Application/JSON;charset=utf-8");
    let r = send_raw(&app, post.clone(), "/api/v1/users/find", ct, &json).await;
    assert_eq!((r.status.as_u16(), &r.body["found"]), (200, &json!(true)));
    // No body and no content type: the query string alone.
    let path = format!("/api/v1/users/find?env=dev&database=dev&username={name}");
    let r = send_raw(&app, post, &path, None, "").await;
    assert_eq!((r.status.as_u16(), &r.body["found"]), (200, &json!(true)));
}

#[tokio::test]
async fn a_get_with_a_body_is_refused_rather_than_half_read() {
    let app = spawn_app().await;
    let name = unique("getbody");
    // The body's dry_run would be ignored and the create be real: refuse the call instead.
    let path = format!("/api/v1/users/devqa?env=dev&database=dev&username={name}");
    let ct = Some("application/x-www-form-urlencoded");
    let r = send_raw(&app, reqwest::Method::GET, &path, ct, "dry_run=true").await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.str("error").contains("GET"), "{}", r.body);
    assert!(!app.dev_role_exists(&name).await);
}

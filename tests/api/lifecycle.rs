//! Lock, unlock, expire, renew, alter and drop, checked by logging in as the role.

use crate::support::{TestApp, connect, spawn_app, unique};

/// Creates a devqa user on dev/dev; returns its name and password.
async fn new_user(app: &TestApp, endpoint: &str) -> (String, String) {
    let name = unique(endpoint);
    let r = app
        .get(
            &format!("/api/v1/users/{endpoint}"),
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    (name, r.str("password").to_owned())
}

fn q<'a>(name: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut v = vec![("env", "dev"), ("database", "dev"), ("username", name)];
    v.extend_from_slice(extra);
    v
}

#[tokio::test]
async fn lock_ends_open_sessions_and_refuses_logins_until_unlock() {
    let app = spawn_app().await;
    let port = app.clusters.dev.port;
    let (name, pw) = new_user(&app, "devqa").await;
    let session = connect(port, "dev", &name, &pw).await.unwrap();
    let r = app.get("/api/v1/users/lock", &q(&name, &[])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("status"), "user locked");
    assert_eq!(r.body["sessions_terminated"], 1);
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "session survived the lock"
    );
    assert!(
        connect(port, "dev", &name, &pw).await.is_err(),
        "locked user logged in"
    );
    let r = app.get("/api/v1/users/unlock", &q(&name, &[])).await;
    assert_eq!(r.str("status"), "user unlocked");
    connect(port, "dev", &name, &pw).await.unwrap();
}

#[tokio::test]
async fn expire_and_renew_control_the_password_validity() {
    let app = spawn_app().await;
    let port = app.clusters.dev.port;
    let (name, pw) = new_user(&app, "devqa").await;
    let r = app
        .get(
            "/api/v1/users/expire",
            &q(&name, &[("valid_until", "2001-01-01")]),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("status"), "user expires 2001-01-01T00:00:00Z");
    assert!(
        connect(port, "dev", &name, &pw).await.is_err(),
        "expired password worked"
    );
    let r = app
        .get("/api/v1/users/renew", &q(&name, &[("days", "30")]))
        .await;
    assert!(
        r.str("status").starts_with("user renewed until 20"),
        "{}",
        r.body
    );
    connect(port, "dev", &name, &pw).await.unwrap();
    let found = app.get("/api/v1/users/privileges", &q(&name, &[])).await;
    let attrs = found.body["attributes"].to_string();
    assert!(attrs.contains("Password valid until"), "{attrs}");
    let r = app.get("/api/v1/users/renew", &q(&name, &[])).await;
    assert_eq!(r.str("status"), "user renewed until infinity");
    for bad in [("valid_until", "soon"), ("days", "0"), ("days", "x")] {
        let r = app.get("/api/v1/users/renew", &q(&name, &[bad])).await;
        assert_eq!(r.status, 422, "{bad:?}: {}", r.body);
    }
}

#[tokio::test]
async fn alter_changes_only_allowed_attributes() {
    let app = spawn_app().await;
    let (name, _) = new_user(&app, "dba").await;
    let r = app
        .get(
            "/api/v1/users/alter",
            &q(
                &name,
                &[
                    ("connection_limit", "3"),
                    ("attributes", "nocreatedb, noinherit"),
                ],
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let su = app.clusters.dev.superuser("postgres").await;
    let row = su
        .query_one(
            "SELECT rolconnlimit, rolcreatedb, rolinherit FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (3, false, false)
    );
    for attr in [
        "SUPERUSER",
        "replication",
        "BYPASSRLS",
        "CREATEROLE",
        "LOGIN; DROP",
    ] {
        let r = app
            .get("/api/v1/users/alter", &q(&name, &[("attributes", attr)]))
            .await;
        assert_eq!(r.status, 403, "{attr}: {}", r.body);
    }
    let r = app.get("/api/v1/users/alter", &q(&name, &[])).await;
    assert_eq!(r.status, 400);
    let r = app
        .get(
            "/api/v1/users/alter",
            &q(&name, &[("connection_limit", "-5")]),
        )
        .await;
    assert_eq!(r.status, 422);
}

async fn owner(c: &tokio_postgres::Client, rel: &str) -> String {
    c.query_one(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = $1::text::regclass",
        &[&rel],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test]
async fn drop_reassigns_objects_in_every_database_and_ends_sessions() {
    let app = spawn_app().await;
    let port = app.clusters.dev.port;
    let (name, pw) = new_user(&app, "devqa").await;
    // Two databases of its own, so that what the role owns never sits in the shared one.
    let (first_db, other_db) = (unique("firstdb"), unique("otherdb"));
    let su = app.clusters.dev.superuser("postgres").await;
    for db in [&first_db, &other_db] {
        su.batch_execute(&format!("CREATE DATABASE {db} OWNER app_owner"))
            .await
            .unwrap();
    }
    su.batch_execute(&format!("GRANT CREATE ON DATABASE {first_db} TO {name}"))
        .await
        .unwrap();
    // The role owns a schema and a table in one database and a table in the other.
    let own = connect(port, &first_db, &name, &pw).await.unwrap();
    own.batch_execute(&format!(
        "CREATE SCHEMA {name}_s; CREATE TABLE {name}_s.t (x int); INSERT INTO {name}_s.t VALUES (1)"
    ))
    .await
    .unwrap();
    let su_other = app.clusters.dev.superuser(&other_db).await;
    su_other
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {other_db} TO {name};
             CREATE SCHEMA s AUTHORIZATION {name};"
        ))
        .await
        .unwrap();
    let live = connect(port, &other_db, &name, &pw).await.unwrap();
    live.batch_execute("CREATE TABLE s.kept (y int)")
        .await
        .unwrap();

    let dry = app
        .get("/api/v1/users/drop", &q(&name, &[("dry_run", "true")]))
        .await;
    assert_eq!(dry.body["dry_run"], true, "{}", dry.body);
    assert!(
        dry.body["sql"]
            .to_string()
            .contains(&format!("\\\\connect \\\"{other_db}\\\"")),
        "{}",
        dry.body
    );
    assert!(app.dev_role_exists(&name).await);

    let r = app.get("/api/v1/users/drop", &q(&name, &[])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("status"), "user dropped");
    assert_eq!(r.body["sessions_terminated"], 2);
    assert!(!app.dev_role_exists(&name).await);
    assert!(
        live.simple_query("SELECT 1").await.is_err(),
        "session survived the drop"
    );
    let su_dev = app.clusters.dev.superuser(&first_db).await;
    assert_eq!(owner(&su_dev, &format!("{name}_s.t")).await, "app_owner");
    assert_eq!(owner(&su_other, "s.kept").await, "app_owner");
    let n: i64 = su_dev
        .query_one(&format!("SELECT count(*) FROM {name}_s.t"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "the data survived");
}

#[tokio::test]
async fn drop_is_refused_with_409_and_changes_nothing_when_the_role_owns_a_database() {
    let app = spawn_app().await;
    let port = app.clusters.dev.port;
    let (name, pw) = new_user(&app, "devqa").await;
    let su = app.clusters.dev.superuser("postgres").await;
    let db = unique("ownsdb");
    su.batch_execute(&format!("CREATE DATABASE {db} OWNER {name}"))
        .await
        .unwrap();
    let session = connect(port, "dev", &name, &pw).await.unwrap();
    let r = app.get("/api/v1/users/drop", &q(&name, &[])).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.str("error").contains(&format!("owns database '{db}'")),
        "{}",
        r.body
    );
    assert!(app.dev_role_exists(&name).await);
    session.simple_query("SELECT 1").await.unwrap();
    connect(port, "dev", &name, &pw).await.unwrap();
}

#[tokio::test]
async fn lifecycle_of_protected_or_missing_roles_is_refused() {
    let app = spawn_app().await;
    for endpoint in ["lock", "unlock", "expire", "renew", "drop"] {
        for name in ["postgres", "pgua_admin", "pg_monitor"] {
            let r = app
                .get(&format!("/api/v1/users/{endpoint}"), &q(name, &[]))
                .await;
            assert_eq!(r.status, 403, "{endpoint} {name}: {}", r.body);
        }
        let r = app
            .get(
                &format!("/api/v1/users/{endpoint}"),
                &q("nobody_at_all", &[]),
            )
            .await;
        assert_eq!(
            (r.status.as_u16(), r.str("status")),
            (404, "user not found"),
            "{endpoint}"
        );
    }
    let audit = app.audit().await;
    assert!(
        audit
            .iter()
            .any(|r| r.operation == "drop" && r.status == "failure")
    );
}

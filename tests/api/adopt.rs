//! `pg-user-api adopt`: users made under per-user grants (the statements the plan produced
//! before group roles, sent as raw SQL) move to membership in their profile's group with
//! nothing lost; users made the new way beside them pass the same checks.

use std::process::Command;

use pgua::plan::sql::literal;
use pgua::plan::{NamePolicy, Password, Profiles};
use serde_json::Value;

use crate::support::{TestApp, connect, spawn_app, unique};

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

/// Runs `adopt` on `env`/`db` against the app's store, as the clusters' admin role.
fn adopt(app: &TestApp, env: &str, db: &str, apply: bool) -> Value {
    let mut args = vec![
        "adopt",
        "--env",
        env,
        "--database",
        db,
        "--format",
        "json",
        "--store",
    ];
    args.push(&app.store_url);
    if apply {
        args.push("--apply");
    }
    let out = Command::new(BIN)
        .args(&args)
        .env("PG_ADMIN_USER", "pgua_admin")
        .env("PG_ADMIN_PASS", &app.clusters.dev.admin_password)
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The doctor's adoption section for `env`/`db`: per group, how many users it would move.
fn doctor_adoption(app: &TestApp, env: &str, db: &str) -> Vec<(String, u64)> {
    let out = Command::new(BIN)
        .args([
            "doctor",
            "--env",
            env,
            "--database",
            db,
            "--format",
            "json",
            "--store",
        ])
        .arg(&app.store_url)
        .env("PG_ADMIN_USER", "pgua_admin")
        .env("PG_ADMIN_PASS", &app.clusters.dev.admin_password)
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &report["entries"][0];
    assert!(entry["adoption_error"].is_null(), "{entry}");
    entry["adoption"]["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no adoption section: {entry}"))
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_owned(),
                g["users"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The outcome `adopt` reports for `user`, if it lists it.
fn outcome(report: &Value, user: &str) -> Option<String> {
    report[0]["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == user)
        .map(|u| u["outcome"].as_str().unwrap().to_owned())
}

/// Creates `user` as today's per-user plan did for `profile`, as the admin role would.
async fn old_scheme_user(app: &TestApp, db: &str, profile: &str, user: &str, password: &str) {
    let profiles = Profiles::load(&Default::default(), &NamePolicy::default(), &[]).unwrap();
    let label = profiles.get(profile).unwrap().label();
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let dev = &app.clusters.dev;
    let admin = connect(dev.port, db, "pgua_admin", &dev.admin_password)
        .await
        .unwrap();
    let mut sql = format!(
        "CREATE ROLE {user} WITH LOGIN CONNECTION LIMIT 20 PASSWORD {};
         COMMENT ON ROLE {user} IS {};
         GRANT CONNECT ON DATABASE {db} TO {user};",
        literal(&verifier),
        literal(&format!("created by pg-user-api, profile {label}")),
    );
    if profile == "readonly" {
        sql.push_str(&format!(
            "GRANT USAGE ON SCHEMA public TO {user};
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user};
             ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA public GRANT SELECT ON TABLES TO {user};
             GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {user};
             ALTER DEFAULT PRIVILEGES FOR ROLE app_owner IN SCHEMA public GRANT SELECT ON SEQUENCES TO {user};
             ALTER ROLE {user} IN DATABASE {db} SET default_transaction_read_only TO 'on';"
        ));
    }
    sql.push_str(&format!(
        "ALTER ROLE {user} IN DATABASE {db} SET search_path TO public;"
    ));
    admin.batch_execute(&sql).await.unwrap();
}

/// What a role can do, from the privileges report: attributes, database and schema
/// privileges, settings (memberships and direct default ACLs are how, not what).
async fn abilities(app: &TestApp, env: &str, db: &str, user: &str) -> Value {
    let r = app
        .get(
            "/api/v1/users/privileges",
            &[("env", env), ("database", db), ("username", user)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    serde_json::json!({
        "attributes": r.body["attributes"],
        "database_privileges": r.body["database_privileges"],
        "schemas": r.body["schemas"],
        "settings": r.body["settings"],
    })
}

/// Per-user entries in the database's ACL and in the table's.
async fn acl_mentions(app: &TestApp, db: &str, user: &str) -> (bool, bool) {
    let su = app.clusters.dev.superuser(db).await;
    let row = su
        .query_one(
            "SELECT coalesce((SELECT datacl::text FROM pg_database WHERE datname = $1), ''),
                    coalesce((SELECT relacl::text FROM pg_class WHERE relname = 'items'), '')",
            &[&db],
        )
        .await
        .unwrap();
    let (datacl, relacl): (String, String) = (row.get(0), row.get(1));
    (
        datacl.contains(&format!("{user}=")),
        relacl.contains(&format!("{user}=")),
    )
}

/// Logs in as `user`: reads `items` and `later`, cannot write (readonly); connects (devqa).
async fn passes_login_checks(app: &TestApp, db: &str, user: &str, password: &str, readonly: bool) {
    let me = connect(app.clusters.dev.port, db, user, password)
        .await
        .unwrap_or_else(|e| panic!("{user} logs in: {e}"));
    if !readonly {
        return;
    }
    for table in ["items", "later"] {
        me.query(&format!("SELECT * FROM {table}"), &[])
            .await
            .unwrap_or_else(|e| panic!("{user} reads {table}: {e}"));
    }
    let write = me.batch_execute("INSERT INTO items (v) VALUES ('x')").await;
    assert!(write.is_err(), "{user} must not write");
}

#[tokio::test]
async fn adopt_moves_old_scheme_users_to_memberships_with_nothing_lost() {
    let app = spawn_app().await;
    let env = unique("adopt");
    let db = app.fresh_database(&env).await;
    let su = app.clusters.dev.superuser(&db).await;
    su.batch_execute("SET ROLE app_owner; CREATE TABLE items (id serial PRIMARY KEY, v text)")
        .await
        .unwrap();
    let (ro_old, dev_old) = (unique("ro_old"), unique("dev_old"));
    let (ro_pw, dev_pw) = (Password::generate(), Password::generate());
    old_scheme_user(&app, &db, "readonly", &ro_old, ro_pw.expose()).await;
    old_scheme_user(&app, &db, "devqa", &dev_old, dev_pw.expose()).await;
    let mut new_users = Vec::new();
    for profile in ["readonly", "devqa"] {
        let name = unique(&format!("{profile}_new"));
        let r = app
            .get(
                &format!("/api/v1/users/{profile}"),
                &[("env", &env), ("database", &db), ("username", &name)],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        new_users.push((name, r.str("password").to_owned(), profile == "readonly"));
    }
    su.batch_execute("SET ROLE app_owner; CREATE TABLE later (id int)")
        .await
        .unwrap();
    let mut all: Vec<(String, String, bool)> = vec![
        (ro_old.clone(), ro_pw.expose().to_owned(), true),
        (dev_old.clone(), dev_pw.expose().to_owned(), false),
    ];
    all.extend(new_users.iter().cloned());
    let mut before = Vec::new();
    for (user, password, readonly) in &all {
        passes_login_checks(&app, &db, user, password, *readonly).await;
        before.push(abilities(&app, &env, &db, user).await);
    }
    assert_eq!(acl_mentions(&app, &db, &ro_old).await, (true, true));

    let found = doctor_adoption(&app, &env, &db);
    assert_eq!(
        found.len(),
        2,
        "the readonly group and the CONNECT-only group: {found:?}"
    );
    assert!(
        found.iter().all(|(g, n)| g.starts_with("pgua_") && *n == 1),
        "{found:?}"
    );

    let dry = adopt(&app, &env, &db, false);
    for user in [&ro_old, &dev_old] {
        assert_eq!(outcome(&dry, user).as_deref(), Some("would_move"), "{dry}");
    }
    for (user, ..) in &new_users {
        assert_eq!(
            outcome(&dry, user),
            None,
            "new-scheme users have nothing to move: {dry}"
        );
    }
    assert_eq!(
        acl_mentions(&app, &db, &ro_old).await,
        (true, true),
        "a dry run changes nothing"
    );
    assert!(acl_mentions(&app, &db, &dev_old).await.0);

    let applied = adopt(&app, &env, &db, true);
    for user in [&ro_old, &dev_old] {
        assert_eq!(
            outcome(&applied, user).as_deref(),
            Some("moved"),
            "{applied}"
        );
    }
    assert_eq!(acl_mentions(&app, &db, &ro_old).await, (false, false));
    assert!(!acl_mentions(&app, &db, &dev_old).await.0);
    let defaults: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_default_acl d, aclexplode(d.defaclacl) a
             WHERE a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $1)",
            &[&ro_old],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(defaults, 0, "the default privileges moved to the group");

    su.batch_execute("SET ROLE app_owner; DROP TABLE later; CREATE TABLE later (id int)")
        .await
        .unwrap();
    for ((user, password, readonly), was) in all.iter().zip(&before) {
        passes_login_checks(&app, &db, user, password, *readonly).await;
        assert_eq!(&abilities(&app, &env, &db, user).await, was, "{user}");
    }

    assert_eq!(doctor_adoption(&app, &env, &db), []);
    let again = adopt(&app, &env, &db, true);
    assert_eq!(
        again[0]["users"],
        Value::Array(vec![]),
        "a second run does nothing: {again}"
    );
    assert!(again[0]["error"].is_null(), "{again}");

    let records = app.audit().await;
    for user in [&ro_old, &dev_old] {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.operation == "adopt" && &r.pg_username == user)
            .map(|r| r.status.as_str())
            .collect();
        assert_eq!(mine, ["intent", "success"], "{user}");
    }
}

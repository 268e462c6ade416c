//! What the admin role lacks, per server version: the doctor (CLI and
//! `/api/v1/registry/check`) names it with the fixing statement, and the operations refuse
//! before changing anything. Tests whose behaviour differs by version read the server's
//! version and assert what that version does.

use std::process::Command;
use std::time::{Duration, Instant};

use pgua::config::Config;
use pgua::plan::Password;
use pgua::plan::sql::literal;
use pgua::target::AdminCredentials;
use secrecy::SecretString;
use serde_json::Value;

use crate::support::{
    ClusterInfo, closed_port, connect, local_entry, spawn_app, spawn_app_as, unique,
};

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

/// A new admin role on `cluster`, set up as the README's non-superuser admin role (with
/// `extra` attributes), member of the databases' owner and of pg_signal_backend, with ADMIN
/// OPTION on the managed groups another admin role created (16+ needs it to grant them).
async fn admin_role(cluster: &ClusterInfo, name: &str, password: &str, extra: &str) {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    cluster
        .superuser("postgres")
        .await
        .batch_execute(&format!(
            "CREATE ROLE {name} LOGIN CREATEROLE {extra} PASSWORD {};
             GRANT app_owner TO {name};
             GRANT pg_signal_backend TO {name};
             DO $$ DECLARE g text; BEGIN
               FOR g IN SELECT r.rolname FROM pg_roles r JOIN pg_shdescription d
                          ON d.objoid = r.oid WHERE starts_with(d.description, {})
               LOOP EXECUTE format('GRANT %I TO %I WITH ADMIN OPTION', g, {}); END LOOP;
             END $$;",
            literal(&verifier),
            literal(pgua::plan::groups::GROUP_COMMENT),
            literal(name),
        ))
        .await
        .unwrap();
}

/// A test app whose admin role is `admin`.
async fn app_as(admin: &str, password: &Password) -> crate::support::TestApp {
    spawn_app_as(
        Config::default(),
        AdminCredentials {
            user: admin.to_owned(),
            password: Some(SecretString::from(password.expose().to_owned())),
        },
    )
    .await
}

fn operation<'a>(check: &'a Value, name: &str) -> &'a Value {
    check["entries"][0]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == name)
        .unwrap_or_else(|| panic!("no {name} in {check}"))
}

#[tokio::test]
async fn dba_needs_createdb_from_16_on_and_the_doctor_prints_the_fix() {
    let dev = &crate::support::clusters().dev;
    let version = dev.server_version_num().await;
    let admin = unique("adm_nocreatedb");
    let password = Password::generate();
    admin_role(dev, &admin, password.expose(), "").await;
    let app = app_as(&admin, &password).await;
    let reader = app.key("*", "read", "*").await;
    let refused = app
        .get_bearer(&reader, "/api/v1/registry/check", &[("env", "dev")])
        .await;
    assert_eq!(refused.status, 403, "the check needs registry-admin");

    let q = [("env", "dev"), ("database", "dev")];
    let check = app.get("/api/v1/registry/check", &q).await;
    assert_eq!(check.status, 200, "{}", check.body);
    assert_eq!(
        check.body["entries"][0]["reachable"], true,
        "{}",
        check.body
    );
    let dba = operation(&check.body, "create dba");
    let name = unique("boss");
    let create = |name: String| {
        let app = &app;
        async move {
            app.get(
                "/api/v1/users/dba",
                &[("env", "dev"), ("database", "dev"), ("username", &name)],
            )
            .await
        }
    };
    let fix = format!("ALTER ROLE \"{admin}\" CREATEDB;");
    if version < 160_000 {
        // PostgreSQL 15: CREATEROLE may give CREATEDB.
        assert_eq!(dba["ok"], true, "{}", check.body);
        assert_eq!(create(name.clone()).await.status, 200);
        assert!(app.dev_role_exists(&name).await);
        return;
    }
    assert_eq!(dba["ok"], false, "{}", check.body);
    assert_eq!(dba["missing"][0]["privilege"], "CREATEDB");
    assert_eq!(dba["missing"][0]["fix"], fix.as_str());
    assert_eq!(operation(&check.body, "create devqa")["ok"], true);
    assert_eq!(check.body["summary"]["problems"], 1);

    let r = create(name.clone()).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let error = r.str("error");
    assert!(
        error.contains(&format!(
            "the admin role {admin} lacks CREATEDB, which PostgreSQL 16+ requires to create users with CREATEDB; fix: {fix}"
        )),
        "{error}"
    );
    assert!(!app.dev_role_exists(&name).await, "no half-made user");

    dev.superuser("postgres")
        .await
        .batch_execute(&fix)
        .await
        .unwrap();
    let check = app.get("/api/v1/registry/check", &q).await;
    assert_eq!(
        operation(&check.body, "create dba")["ok"],
        true,
        "{}",
        check.body
    );
    let r = create(name.clone()).await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (200, "dba user created"),
        "{}",
        r.body
    );
    let createdb: bool = dev
        .superuser("postgres")
        .await
        .query_one(
            "SELECT rolcreatedb FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert!(createdb);
}

#[tokio::test]
async fn membership_without_admin_option_is_refused_from_16_on_with_the_grant_that_fixes_it() {
    let app = spawn_app().await;
    let dev = &app.clusters.dev;
    let version = dev.server_version_num().await;
    let group = unique("grp");
    let su = dev.superuser("dev").await;
    su.batch_execute(&format!("CREATE ROLE {group} NOLOGIN"))
        .await
        .unwrap();
    let name = unique("member");
    let created = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
        ("on", "role"),
        ("role", group.as_str()),
    ];
    let grant = || app.get("/api/v1/users/grant", &q);
    if version >= 160_000 {
        let r = grant().await;
        assert_eq!(r.status, 403, "{}", r.body);
        let fix = format!("GRANT \"{group}\" TO \"pgua_admin\" WITH ADMIN OPTION;");
        assert!(r.str("error").contains(&fix), "{}", r.body);
        assert!(r.str("error").contains("nothing was changed"), "{}", r.body);
        su.batch_execute(&fix).await.unwrap();
    }
    // On 15, CREATEROLE suffices: the first grant works.
    let r = grant().await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (200, "membership granted"),
        "{}",
        r.body
    );
    let me = connect(dev.port, "dev", &name, created.str("password"))
        .await
        .unwrap();
    me.batch_execute(&format!("SET ROLE {group}"))
        .await
        .unwrap();
    let now: String = me
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(now, group);
}

/// Accepts connections and never answers, like a server behind a dead proxy.
fn hanging_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    port
}

#[tokio::test]
async fn doctor_tells_refused_hanging_bad_password_and_healthy_apart_within_the_timeout() {
    let clusters = crate::support::clusters();
    let admin = unique("adm_doctor");
    let password = Password::generate();
    // Healthy on dev (CREATEDB: every built-in profile works on every version); another
    // password on prod, so the one the doctor uses fails there.
    admin_role(&clusters.dev, &admin, password.expose(), "CREATEDB").await;
    admin_role(
        &clusters.prod,
        &admin,
        Password::generate().expose(),
        "CREATEDB",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("r.db").display());
    let store = pgua::store::open(&store_url).await.unwrap();
    for (env, db, port) in [
        ("ok", "dev", clusters.dev.port),
        ("closed", "dev", closed_port()),
        ("hangs", "dev", hanging_port()),
        ("badpw", "prod", clusters.prod.port),
    ] {
        store
            .registry_add(&local_entry(env, db, port))
            .await
            .unwrap();
    }
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[targets]\nconnect_timeout_secs = 2\n").unwrap();
    let doctor = |format: &str| {
        Command::new(BIN)
            .args([
                "doctor", "--format", format, "--store", &store_url, "--config",
            ])
            .arg(&config)
            .env("PG_ADMIN_USER", &admin)
            .env("PG_ADMIN_PASS", password.expose())
            .env_remove("PGUA_CONFIG")
            .output()
            .unwrap()
    };
    let started = Instant::now();
    let out = doctor("json");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2) + Duration::from_millis(2500),
        "took {took:?}"
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = |env: &str| {
        report["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["entry"]["env"] == env)
            .unwrap()
            .clone()
    };
    let healthy = entry("ok");
    assert_eq!(
        (&healthy["ok"], &healthy["reachable"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{healthy}"
    );
    assert!(healthy["server_version"].as_str().unwrap().len() >= 2);
    assert_eq!(healthy["tls"]["in_use"], false);
    assert_eq!(healthy["admin"]["role"], admin.as_str());
    assert_eq!(healthy["admin"]["createdb"], true);
    assert_eq!(healthy["admin"]["member_of_database_owner"], true);
    for (env, kind) in [
        ("closed", "refused"),
        ("hangs", "timeout"),
        ("badpw", "authentication"),
    ] {
        let e = entry(env);
        assert_eq!(e["ok"], false, "{e}");
        assert_eq!(e["reachable"], false, "{e}");
        assert_eq!(e["unreachable"]["kind"], kind, "{e}");
    }
    assert_eq!(report["summary"]["problems"], 3);
    assert_eq!(report["summary"]["ok"], 1);

    let text = doctor("text");
    assert_eq!(text.status.code(), Some(1));
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(text.contains("FAIL  unreachable (refused)"), "{text}");
    assert!(text.contains("FAIL  unreachable (timeout)"), "{text}");
    assert!(
        text.contains("FAIL  unreachable (authentication)"),
        "{text}"
    );
    assert!(text.contains("ok    create dba"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("summary: 4 entries: 1 ok, 3 with problems"),
        "{text}"
    );
}

#[tokio::test]
async fn a_second_admin_without_admin_option_on_a_group_is_told_the_fix_on_16_and_later() {
    let dev = &crate::support::clusters().dev;
    if dev.server_version_num().await < 160_000 {
        return; // CREATEROLE may grant any non-superuser role on 15.
    }
    let admin = unique("adm_nogroup");
    let password = Password::generate();
    admin_role(dev, &admin, password.expose(), "").await;
    let profiles =
        pgua::plan::Profiles::load(&Default::default(), &pgua::plan::NamePolicy::default(), &[])
            .unwrap();
    let group = pgua::plan::groups::Group::for_profile(&profiles.get("devqa").unwrap(), "dev");
    let group = pgua::plan::sql::ident(group.name().as_str());
    let fix = format!("GRANT {group} TO \"{admin}\" WITH ADMIN OPTION;");
    let superuser = dev.superuser("postgres").await;
    superuser
        .batch_execute(&format!("REVOKE {group} FROM \"{admin}\""))
        .await
        .unwrap();
    let app = app_as(&admin, &password).await;
    let name = unique("nogrp");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let r = app.get("/api/v1/users/devqa", &q).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.str("error").ends_with(&fix), "{}", r.body);
    assert!(!app.dev_role_exists(&name).await, "no half-made user");
    superuser.batch_execute(&fix).await.unwrap();
    let r = app.get("/api/v1/users/devqa", &q).await;
    assert_eq!(r.str("status"), "user created", "{}", r.body);
}

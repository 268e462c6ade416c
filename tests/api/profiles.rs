//! A custom profile from a config file, created and checked end to end by logging in.

use pgua::config::Config;

use crate::support::{connect, spawn_app_with, unique};

const CONFIG: &str = r#"
[profiles.devlead]
enabled = false

[profiles.etl]
description = "Batch jobs of a team"
params = { team = "name-part", job = "name-part" }
name = "etl_{team}_{job}"
attributes = ["LOGIN", "NOINHERIT"]
connection_limit = 5
password_valid_days = 30
environments = ["dev"]
member_of = ["etl_group"]
database_settings = { search_path = "etl, public", statement_timeout = "5s" }
role_settings = { work_mem = "8MB" }

[[profiles.etl.grants]]
on = "schema"
schemas = ["etl"]
privileges = ["USAGE", "CREATE"]

[[profiles.etl.grants]]
on = "tables"
schemas = ["etl"]
privileges = ["SELECT", "INSERT"]
future = true

[[profiles.etl.grants]]
on = "database"
privileges = ["TEMPORARY"]
"#;

fn config() -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg-user-api.toml");
    std::fs::write(&path, CONFIG).unwrap();
    Config::from_file(&path).unwrap()
}

#[tokio::test]
async fn a_custom_profile_from_config_works_end_to_end() {
    let app = spawn_app_with(config()).await;
    // Its own database: the etl user will own a table, which must not sit in the shared one.
    let db = app.fresh_database("dev").await;
    let su = app.clusters.dev.superuser(&db).await;
    su.batch_execute(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'etl_group') THEN
             CREATE ROLE etl_group NOLOGIN;
           END IF;
         END $$;
         -- As the README sets up a role users are to join (needed on 16+).
         GRANT etl_group TO pgua_admin WITH ADMIN OPTION;
         CREATE SCHEMA IF NOT EXISTS etl AUTHORIZATION app_owner;
         SET ROLE app_owner;
         CREATE TABLE IF NOT EXISTS etl.jobs (id int, note text);",
    )
    .await
    .unwrap();
    let job = unique("Nightly");
    let r = app
        .get(
            "/api/v1/users/etl",
            &[
                ("env", "dev"),
                ("database", &db),
                ("team", "Data"),
                ("job", &job),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let name = format!("etl_data_{}", job.to_lowercase());
    assert_eq!(r.str("username"), name);
    let label = r.headers["x-pgua-profile"].to_str().unwrap().to_owned();
    assert!(label.starts_with("etl@"), "{label}");

    let profiles = app.get("/api/v1/profiles", &[]).await;
    let etl = profiles.body["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "etl")
        .unwrap();
    assert_eq!(format!("etl@{}", etl["version"].as_str().unwrap()), label);
    assert_eq!(etl["grants"][1]["privileges"][1], "INSERT");

    let me = connect(app.clusters.dev.port, &db, &name, r.str("password"))
        .await
        .unwrap();
    let show = |what: &'static str| {
        let me = &me;
        async move {
            me.query_one(&format!("SHOW {what}"), &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    assert_eq!(show("search_path").await, "etl, public");
    assert_eq!(show("statement_timeout").await, "5s");
    assert_eq!(show("work_mem").await, "8MB");
    me.batch_execute("INSERT INTO etl.jobs VALUES (1, 'x'); SELECT * FROM jobs")
        .await
        .unwrap();
    assert!(
        me.batch_execute("UPDATE etl.jobs SET note = 'y'")
            .await
            .is_err()
    );
    assert!(me.batch_execute("DELETE FROM etl.jobs").await.is_err());
    me.batch_execute(&format!(
        "CREATE TABLE etl.{name}_own (x int); CREATE TEMP TABLE t (x int)"
    ))
    .await
    .unwrap();
    // A table the schema owner creates later is covered by the default privileges.
    let later = unique("later");
    su.batch_execute(&format!(
        "SET ROLE app_owner; CREATE TABLE etl.{later} (x int)"
    ))
    .await
    .unwrap();
    me.batch_execute(&format!("INSERT INTO etl.{later} VALUES (1)"))
        .await
        .unwrap();

    let row = su
        .query_one(
            "SELECT rolconnlimit, rolinherit, rolvaliduntil > now() + interval '29 days',
                    rolvaliduntil < now() + interval '31 days',
                    pg_has_role(rolname, 'etl_group', 'MEMBER'),
                    shobj_description(oid, 'pg_authid')
             FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 5);
    assert!(!row.get::<_, bool>(1), "NOINHERIT");
    assert!(
        row.get::<_, bool>(2) && row.get::<_, bool>(3),
        "valid for 30 days"
    );
    assert!(row.get::<_, bool>(4), "member of etl_group");
    assert!(row.get::<_, String>(5).ends_with(&label));

    let audit = app.audit().await;
    let created = audit
        .iter()
        .find(|a| a.status == "success" && a.pg_username == name)
        .unwrap();
    assert_eq!(
        (created.operation.as_str(), created.profile.as_str()),
        ("create:etl", label.as_str())
    );

    // Outside its environments, and a removed built-in.
    let r = app
        .get(
            "/api/v1/users/etl",
            &[
                ("env", "prod"),
                ("database", "prod"),
                ("team", "x"),
                ("job", "y"),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = app
        .get(
            "/api/v1/users/devlead",
            &[("env", "dev"), ("database", "dev"), ("username", "z")],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .get(
            "/api/v1/users/etl",
            &[("env", "dev"), ("database", "dev"), ("team", "x")],
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.str("error")),
        (400, "missing parameter: job")
    );
}

#[tokio::test]
async fn a_profile_joining_a_superuser_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[profiles.sneaky]\nparams = { username = \"name\" }\nname = \"{username}\"\nattributes = [\"LOGIN\"]\nmember_of = [\"postgres\"]\n",
    )
    .unwrap();
    let app = spawn_app_with(Config::from_file(&path).unwrap()).await;
    let name = unique("sneaky");
    let r = app
        .get(
            "/api/v1/users/sneaky",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(!app.dev_role_exists(&name).await);
}

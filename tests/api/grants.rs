//! Grant and revoke, each checked by logging in as the role; the privileges report.

use std::sync::Arc;

use futures_util::future::join_all;

use crate::support::{TestApp, connect, spawn_app, unique};

/// A new devqa user on dev/dev and a session of it.
pub(crate) async fn user(app: &TestApp) -> (String, tokio_postgres::Client) {
    let name = unique("g");
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    let c = connect(app.clusters.dev.port, "dev", &name, r.str("password"))
        .await
        .unwrap();
    (name, c)
}

/// Calls the user endpoint `op` for `name` on dev/dev.
pub(crate) async fn call(
    app: &TestApp,
    op: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> crate::support::Reply {
    let mut q = vec![("env", "dev"), ("database", "dev"), ("username", name)];
    q.extend_from_slice(extra);
    app.get(&format!("/api/v1/users/{op}"), &q).await
}

/// Whether `sql` succeeds in that session.
pub(crate) async fn works(c: &tokio_postgres::Client, sql: &str) -> bool {
    c.batch_execute(sql).await.is_ok()
}

#[tokio::test]
async fn table_privileges_are_granted_and_revoked() {
    let app = spawn_app().await;
    let (name, me) = user(&app).await;
    assert!(!works(&me, "SELECT * FROM public.orders").await);
    let r = call(
        &app,
        "grant",
        &name,
        &[
            ("on", "tables"),
            ("schema", "public"),
            ("privileges", "select"),
        ],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (200, "privileges granted"),
        "{}",
        r.body
    );
    assert!(works(&me, "SELECT * FROM public.orders").await);
    assert!(!works(&me, "INSERT INTO public.orders (item) VALUES ('x')").await);
    let r = call(
        &app,
        "grant",
        &name,
        &[
            ("on", "tables"),
            ("schema", "public"),
            ("objects", "orders"),
            ("privileges", "INSERT"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The sequence behind bigserial needs USAGE for the insert to work.
    call(
        &app,
        "grant",
        &name,
        &[
            ("on", "sequences"),
            ("schema", "*"),
            ("privileges", "USAGE"),
        ],
    )
    .await;
    assert!(works(&me, "INSERT INTO public.orders (item) VALUES ('x')").await);
    let r = call(
        &app,
        "revoke",
        &name,
        &[
            ("on", "tables"),
            ("schema", "public"),
            ("privileges", "SELECT,INSERT"),
        ],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (200, "privileges revoked")
    );
    assert!(!works(&me, "SELECT * FROM public.orders").await);
}

#[tokio::test]
async fn future_grants_cover_tables_the_owner_creates_later() {
    let app = spawn_app().await;
    let (name, me) = user(&app).await;
    let r = call(
        &app,
        "grant",
        &name,
        &[
            ("on", "tables"),
            ("schema", "public"),
            ("privileges", "SELECT"),
            ("future", "true"),
            ("owner", "app_owner"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let later = unique("future");
    let su = app.clusters.dev.superuser("dev").await;
    su.batch_execute(&format!(
        "SET ROLE app_owner; CREATE TABLE public.{later} (x int)"
    ))
    .await
    .unwrap();
    assert!(works(&me, &format!("SELECT * FROM public.{later}")).await);
    let report = call(&app, "privileges", &name, &[]).await;
    let defaults = report.body["default_privileges"].to_string();
    assert!(
        defaults.contains("app_owner") && defaults.contains("SELECT"),
        "{defaults}"
    );
    call(
        &app,
        "revoke",
        &name,
        &[
            ("on", "tables"),
            ("schema", "public"),
            ("privileges", "SELECT"),
            ("future", "true"),
        ],
    )
    .await;
    let later2 = unique("future");
    su.batch_execute(&format!(
        "SET ROLE app_owner; CREATE TABLE public.{later2} (x int)"
    ))
    .await
    .unwrap();
    assert!(!works(&me, &format!("SELECT * FROM public.{later2}")).await);
}

#[tokio::test]
async fn schema_database_and_function_privileges() {
    // Objects the user creates here would belong to it: keep them out of the shared database.
    let app = spawn_app().await;
    let db = app.fresh_database("gt").await;
    let name = unique("g");
    let created = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "gt"), ("database", &db), ("username", &name)],
        )
        .await;
    let me = connect(app.clusters.dev.port, &db, &name, created.str("password"))
        .await
        .unwrap();
    let call = |op: &'static str, extra: Vec<(&'static str, String)>| {
        let (app, db, name) = (&app, db.clone(), name.clone());
        async move {
            let mut q: Vec<(&str, String)> =
                vec![("env", "gt".into()), ("database", db), ("username", name)];
            q.extend(extra);
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.get(&format!("/api/v1/users/{op}"), &q).await
        }
    };
    let schema = unique("sch");
    assert!(!works(&me, &format!("CREATE SCHEMA {schema}")).await);
    call(
        "grant",
        vec![("on", "database".into()), ("privileges", "CREATE".into())],
    )
    .await;
    assert!(works(&me, &format!("CREATE SCHEMA {schema}")).await);
    call(
        "revoke",
        vec![("on", "database".into()), ("privileges", "CREATE".into())],
    )
    .await;
    assert!(!works(&me, &format!("CREATE SCHEMA {schema}_2")).await);

    assert!(!works(&me, "CREATE TABLE public.mine (x int)").await);
    let r = call(
        "grant",
        vec![
            ("on", "schema".into()),
            ("schema", "public".into()),
            ("privileges", "CREATE".into()),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(works(&me, "CREATE TABLE public.mine (x int)").await);

    let f = unique("fn");
    let su = app.clusters.dev.superuser(&db).await;
    su.batch_execute(&format!(
        "SET ROLE app_owner; CREATE SCHEMA lib; CREATE FUNCTION lib.{f}() RETURNS int LANGUAGE sql AS 'SELECT 1';
         REVOKE EXECUTE ON FUNCTION lib.{f}() FROM PUBLIC; GRANT USAGE ON SCHEMA lib TO PUBLIC"
    ))
    .await
    .unwrap();
    assert!(!works(&me, &format!("SELECT lib.{f}()")).await);
    let r = call(
        "grant",
        vec![
            ("on", "functions".into()),
            ("schema", "lib".into()),
            ("objects", f.clone()),
            ("privileges", "EXECUTE".into()),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(works(&me, &format!("SELECT lib.{f}()")).await);
}

#[tokio::test]
async fn membership_is_granted_for_safe_roles_only() {
    let app = spawn_app().await;
    let (name, me) = user(&app).await;
    assert!(!works(&me, "SELECT * FROM public.orders").await);
    let r = call(
        &app,
        "grant",
        &name,
        &[("on", "role"), ("role", "pg_read_all_data")],
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (200, "membership granted"),
        "{}",
        r.body
    );
    assert!(works(&me, "SELECT * FROM public.orders").await);
    let report = call(&app, "privileges", &name, &[]).await;
    assert_eq!(
        report.body["member_of"][0]["role"], "pg_read_all_data",
        "{}",
        report.body
    );
    call(
        &app,
        "revoke",
        &name,
        &[("on", "role"), ("role", "pg_read_all_data")],
    )
    .await;
    assert!(!works(&me, "SELECT * FROM public.orders").await);
    for group in [
        "postgres",
        "pgua_admin",
        "pg_execute_server_program",
        "pg_write_server_files",
    ] {
        let r = call(&app, "grant", &name, &[("on", "role"), ("role", group)]).await;
        assert_eq!(r.status, 403, "{group}: {}", r.body);
    }
    let r = call(
        &app,
        "grant",
        &name,
        &[("on", "role"), ("role", "app_owner"), ("admin", "true")],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn privilege_keywords_come_from_a_closed_set() {
    let app = spawn_app().await;
    let (name, _) = user(&app).await;
    for (on, privileges) in [
        ("tables", "DROP"),
        ("tables", "SELECT; DROP TABLE x"),
        ("schema", "SELECT"),
        ("database", "EXECUTE"),
        ("everything", "ALL"),
        ("tables", "ALL"),
    ] {
        let r = call(
            &app,
            "grant",
            &name,
            &[("on", on), ("schema", "public"), ("privileges", privileges)],
        )
        .await;
        assert_eq!(r.status, 422, "{on} {privileges}: {}", r.body);
    }
    let r = call(
        &app,
        "grant",
        &name,
        &[
            ("on", "tables"),
            ("schema", "nope"),
            ("privileges", "SELECT"),
        ],
    )
    .await;
    assert_eq!(r.status, 422);
    assert!(r.str("error").contains("does not exist"));
    let r = call(
        &app,
        "grant",
        &name,
        &[
            ("on", "tables"),
            ("schema", "public"),
            ("privileges", "SELECT"),
            ("dry_run", "true"),
        ],
    )
    .await;
    assert_eq!(
        r.body["sql"][1]["sql"],
        format!("GRANT SELECT ON ALL TABLES IN SCHEMA \"public\" TO \"{name}\"")
    );
}

#[tokio::test]
async fn privileges_report_describes_the_role() {
    let app = spawn_app().await;
    let name = unique("rep");
    app.get(
        "/api/v1/users/readonly",
        &[("env", "dev"), ("database", "dev"), ("username", &name)],
    )
    .await;
    let r = call(&app, "privileges", &name, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.str("profile").starts_with("readonly@"), "{}", r.body);
    assert_eq!(r.body["database_privileges"][0], "CONNECT");
    assert_eq!(r.str("database"), "dev");
    let public = r.body["schemas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["schema"] == "public")
        .unwrap();
    assert_eq!(public["usage"], true);
    assert_eq!(public["create"], false);
    assert_eq!(public["select"], public["tables"]);
    assert_eq!(public["insert"], 0);
    let settings = r.body["settings"]["database"].to_string();
    assert!(
        settings.contains("default_transaction_read_only=on")
            && settings.contains("search_path=public"),
        "{settings}"
    );
    let missing = call(&app, "privileges", "nobody_here", &[]).await;
    assert_eq!(
        (missing.status.as_u16(), missing.body["found"].as_bool()),
        (404, Some(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_grants_on_one_schema_all_succeed() {
    let app = Arc::new(spawn_app().await);
    let mut names = Vec::new();
    for _ in 0..30 {
        names.push(user(&app).await.0);
    }
    let calls = names.iter().cloned().map(|name| {
        let app = app.clone();
        tokio::spawn(async move {
            call(
                &app,
                "grant",
                &name,
                &[
                    ("on", "schema"),
                    ("schema", "public"),
                    ("privileges", "USAGE,CREATE"),
                ],
            )
            .await
        })
    });
    for r in join_all(calls).await {
        let r = r.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

#[tokio::test]
async fn schema_grants_need_only_the_schema_owner_after_the_grantee_created_a_table() {
    let app = spawn_app().await;
    // A database of its own: the grantee's table would otherwise stand in the way of
    // other tests' grants on every schema.
    let db = app.fresh_database("own").await;
    let schema = unique("own");
    let su = app.clusters.dev.superuser(&db).await;
    su.batch_execute(&format!("CREATE SCHEMA {schema} AUTHORIZATION app_owner"))
        .await
        .unwrap();
    let name = unique("g");
    let target = [("env", "own"), ("database", db.as_str())];
    let mut q = target.to_vec();
    q.push(("username", &name));
    let created = app.get("/api/v1/users/devqa", &q).await;
    assert_eq!(created.status, 200, "{}", created.body);
    let me = connect(app.clusters.dev.port, &db, &name, created.str("password"))
        .await
        .unwrap();
    let on_schema = |op: &'static str, privileges: &'static str| {
        let mut q = q.clone();
        q.extend([
            ("on", "schema"),
            ("schema", schema.as_str()),
            ("privileges", privileges),
        ]);
        let app = &app;
        async move { app.get(&format!("/api/v1/users/{op}"), &q).await }
    };
    let r = on_schema("grant", "USAGE,CREATE").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(works(&me, &format!("CREATE TABLE {schema}.mine (x int)")).await);
    // The grantee now owns a table there, which the admin role is no member of: a schema
    // privilege does not touch it.
    let r = on_schema("revoke", "CREATE").await;
    assert_eq!(
        (r.status.as_u16(), r.str("status")),
        (200, "privileges revoked"),
        "{}",
        r.body
    );
    assert!(!works(&me, &format!("CREATE TABLE {schema}.more (x int)")).await);
    let r = on_schema("grant", "CREATE").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(works(&me, &format!("CREATE TABLE {schema}.again (x int)")).await);
}

#[tokio::test]
async fn maintain_is_granted_from_17_on_and_refused_before_with_the_version_it_needs() {
    let app = spawn_app().await;
    let (name, me) = user(&app).await;
    let lock = "BEGIN; LOCK TABLE public.orders IN ACCESS EXCLUSIVE MODE; ROLLBACK";
    assert!(!works(&me, lock).await);
    me.batch_execute("ROLLBACK").await.unwrap();
    let maintain = [
        ("on", "tables"),
        ("schema", "public"),
        ("objects", "orders"),
        ("privileges", "MAINTAIN"),
    ];
    let r = call(&app, "grant", &name, &maintain).await;
    if app.clusters.dev.server_version_num().await >= 170000 {
        assert_eq!(
            (r.status.as_u16(), r.str("status")),
            (200, "privileges granted"),
            "{}",
            r.body
        );
        assert!(works(&me, lock).await, "MAINTAIN lets it lock the table");
    } else {
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(
            r.str("error")
                .contains("MAINTAIN privilege needs PostgreSQL 17"),
            "{}",
            r.body
        );
        me.batch_execute("ROLLBACK").await.unwrap();
        assert!(!works(&me, lock).await, "nothing was granted");
    }
}

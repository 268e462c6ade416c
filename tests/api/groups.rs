//! Privileges through group roles: users cost a membership row, not an entry in shared ACLs.

use std::sync::Arc;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use pgua::cli::demo::DEMO_ADMIN;
use pgua::config::Config;

use crate::support::{
    Reply, TestApp, connect, fresh_postgres_store_url, local_entry, spawn_app,
    spawn_app_with_store, unique,
};

/// The query of a create of `profile` for `name` in `env`/`db`.
fn create_query<'a>(
    profile: &str,
    env: &'a str,
    db: &'a str,
    name: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut q = vec![("env", env), ("database", db)];
    match profile {
        "app" => q.extend([("servername", name), ("port", "5432")]),
        "app-k8s" => q.extend([("env_prefix", "k"), ("farmname", name)]),
        _ => q.push(("username", name)),
    }
    q
}

/// The role name a create of `profile` for `name` makes.
fn role_of(profile: &str, name: &str) -> String {
    match profile {
        "app" => format!("{name}_5432"),
        "app-k8s" => format!("k_{name}"),
        _ => name.to_owned(),
    }
}

async fn create(app: &TestApp, profile: &str, env: &str, db: &str, name: &str) -> Reply {
    app.get(
        &format!("/api/v1/users/{profile}"),
        &create_query(profile, env, db, name),
    )
    .await
}

/// A database with a few tables and a sequence owned by `app_owner`, registered as `env`.
async fn database_with_tables(app: &TestApp, env: &str) -> String {
    let db = app.fresh_database(env).await;
    let su = app.clusters.dev.superuser(&db).await;
    su.batch_execute(
        "SET ROLE app_owner;
         CREATE TABLE public.orders (id serial PRIMARY KEY, item text);
         CREATE TABLE public.items (x int);
         CREATE TABLE public.audit (y int);
         INSERT INTO public.orders (item) VALUES ('a');",
    )
    .await
    .unwrap();
    db
}

/// Entries in the database's ACL, in every relation's ACL and in the default ACLs.
async fn acl_sizes(app: &TestApp, db: &str) -> (i32, i64, i64) {
    let su = app.clusters.dev.superuser(db).await;
    let row = su
        .query_one(
            "SELECT (SELECT coalesce(cardinality(datacl), 0) FROM pg_database
                     WHERE datname = current_database()),
                    (SELECT coalesce(sum(cardinality(relacl)), 0)::int8 FROM pg_class
                     WHERE relnamespace = 'public'::regnamespace),
                    (SELECT coalesce(sum(cardinality(defaclacl)), 0)::int8 FROM pg_default_acl)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// The members of the managed groups whose names start with `prefix`, per group.
async fn members(app: &TestApp, prefix: &str) -> Vec<(String, i64)> {
    let su = app.clusters.dev.superuser("postgres").await;
    // On 16+ the admin role holds ADMIN on the groups it created: not a user.
    su.query(
        "SELECT g.rolname::text, count(u.oid)
         FROM pg_roles g
         LEFT JOIN pg_auth_members m ON m.roleid = g.oid
         LEFT JOIN pg_roles u ON u.oid = m.member AND u.rolname <> $2
         WHERE starts_with(g.rolname, $1) GROUP BY 1 ORDER BY 1",
        &[&prefix, &DEMO_ADMIN],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn group_prefix(db: &str) -> String {
    format!("pgua_{db}_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_acls_do_not_grow_with_users_of_any_builtin_profile() {
    let app = Arc::new(spawn_app().await);
    let db = database_with_tables(&app, "dev").await;
    for profile in ["app", "app-k8s", "devqa", "devlead", "readonly", "dba"] {
        let first = unique("acl1");
        let r = create(&app, profile, "dev", &db, &first).await;
        assert_eq!(r.status, 200, "{profile}: {}", r.body);
        let after_one = acl_sizes(&app, &db).await;
        let names: Vec<String> = (1..200).map(|_| unique("acl")).collect();
        let replies: Vec<Reply> = stream::iter(names.iter())
            .map(|n| {
                let (app, db) = (app.clone(), db.clone());
                async move { create(&app, profile, "dev", &db, n).await }
            })
            .buffer_unordered(10)
            .collect()
            .await;
        for r in &replies {
            assert_eq!(r.status, 200, "{profile}: {}", r.body);
        }
        assert_eq!(
            acl_sizes(&app, &db).await,
            after_one,
            "{profile}: datacl, relacl or default ACL entries grew with 199 more users"
        );
        // The users did get their privileges: through the membership.
        let last = names.last().unwrap();
        let pw = replies
            .iter()
            .find(|r| r.str("username") == role_of(profile, last))
            .map(|r| r.str("password").to_owned())
            .unwrap();
        let c = connect(app.clusters.dev.port, &db, &role_of(profile, last), &pw)
            .await
            .unwrap_or_else(|e| panic!("{profile} user cannot connect: {e}"));
        let reads = c.query("SELECT * FROM public.orders", &[]).await.is_ok();
        assert_eq!(reads, profile == "readonly", "{profile} reads orders");
    }
    // readonly has its own group; the other five share the CONNECT-only one.
    let groups = members(&app, &group_prefix(&db)).await;
    let counts: Vec<i64> = groups.iter().map(|(_, n)| *n).collect();
    assert_eq!(groups.len(), 2, "{groups:?}");
    assert!(
        counts.contains(&200) && counts.contains(&1000),
        "{groups:?}"
    );
}

#[tokio::test]
async fn dropping_a_user_removes_only_its_membership() {
    let app = spawn_app().await;
    let db = app.fresh_database("dev").await;
    let (a, b) = (unique("keep"), unique("gone"));
    for name in [&a, &b] {
        let r = create(&app, "devqa", "dev", &db, name).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let groups = members(&app, &group_prefix(&db)).await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0].1, 2, "{groups:?}");
    let r = app
        .get(
            "/api/v1/users/drop",
            &[("env", "dev"), ("database", &db), ("username", &b)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.str("status"), "user dropped");
    assert!(!app.dev_role_exists(&b).await);
    let after = members(&app, &group_prefix(&db)).await;
    assert_eq!(after, vec![(groups[0].0.clone(), 1)], "the group stays");
    let su = app.clusters.dev.superuser("postgres").await;
    let member: Option<String> = su
        .query_opt(
            "SELECT u.rolname::text FROM pg_auth_members m JOIN pg_roles u ON u.oid = m.member
             JOIN pg_roles g ON g.oid = m.roleid WHERE g.rolname = $1 AND u.rolname <> $2",
            &[&groups[0].0, &DEMO_ADMIN],
        )
        .await
        .unwrap()
        .map(|r| r.get(0));
    assert_eq!(member.as_deref(), Some(a.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_on_two_replicas_create_the_group_once() {
    let url = fresh_postgres_store_url().await;
    let db = unique("gdb");
    let port = crate::support::clusters().dev.port;
    let su = crate::support::clusters().dev.superuser("postgres").await;
    su.batch_execute(&format!("CREATE DATABASE {db} OWNER app_owner;"))
        .await
        .unwrap();
    crate::support::clusters()
        .dev
        .superuser(&db)
        .await
        .batch_execute("SET ROLE app_owner; CREATE TABLE public.orders (item text)")
        .await
        .unwrap();
    let store = pgua::store::open(&url).await.unwrap();
    store
        .registry_add(&local_entry("grp", &db, port))
        .await
        .unwrap();
    let replicas = Arc::new([
        spawn_app_with_store(Config::default(), &url).await,
        spawn_app_with_store(Config::default(), &url).await,
    ]);
    let names: Vec<String> = (0..50).map(|_| unique("race_ro")).collect();
    let calls = names.iter().enumerate().map(|(i, name)| {
        let (replicas, db, name) = (replicas.clone(), db.clone(), name.clone());
        tokio::spawn(async move { create(&replicas[i % 2], "readonly", "grp", &db, &name).await })
    });
    let replies: Vec<Reply> = join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for r in &replies {
        assert_eq!(
            (r.status.as_u16(), r.str("status")),
            (200, "user created"),
            "{}",
            r.body
        );
    }
    let groups = members(&replicas[0], &group_prefix(&db)).await;
    assert_eq!(groups.len(), 1, "one group: {groups:?}");
    assert_eq!(groups[0].1, 50, "every user is a member: {groups:?}");
    for r in replies.iter().take(3) {
        let c = connect(port, &db, r.str("username"), r.str("password"))
            .await
            .unwrap();
        c.query("SELECT * FROM public.orders", &[]).await.unwrap();
    }
}

#[tokio::test]
async fn managed_groups_are_out_of_reach_of_the_user_endpoints() {
    let app = spawn_app().await;
    let db = app.fresh_database("dev").await;
    let member = unique("member");
    let r = create(&app, "devqa", "dev", &db, &member).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let group = members(&app, &group_prefix(&db)).await[0].0.clone();
    // A role carrying a group's comment under another name is protected by the comment.
    let lookalike = unique("lookalike");
    let su = app.clusters.dev.superuser("postgres").await;
    su.batch_execute(&format!(
        "CREATE ROLE {lookalike} NOLOGIN;
         COMMENT ON ROLE {lookalike} IS 'managed by pg-user-api: group of database x'"
    ))
    .await
    .unwrap();
    for name in [group.as_str(), lookalike.as_str()] {
        for op in ["reset", "lock", "drop", "unlock"] {
            let r = app
                .get(
                    &format!("/api/v1/users/{op}"),
                    &[("env", "dev"), ("database", &db), ("username", name)],
                )
                .await;
            assert_eq!(r.status, 403, "{op} of {name}: {}", r.body);
            assert!(
                r.str("error").contains("pg-user-api manages"),
                "{op} of {name}: {}",
                r.body
            );
        }
        assert!(app.dev_role_exists(name).await);
    }
    let r = create(&app, "devqa", "dev", &db, "pgua_x").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.str("error").contains("pgua_"), "{}", r.body);
    assert!(!app.dev_role_exists("pgua_x").await);
    let r = app
        .get(
            "/api/v1/users/grant",
            &[
                ("env", "dev"),
                ("database", &db),
                ("username", &member),
                ("on", "role"),
                ("role", &lookalike),
            ],
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.str("error").contains("pg-user-api manages"), "{}", r.body);
}

#[tokio::test]
async fn a_dry_run_shows_the_group_it_would_create_and_creates_nothing() {
    let app = spawn_app().await;
    let db = app.fresh_database("dev").await;
    let name = unique("dry_ro");
    let r = app
        .get(
            "/api/v1/users/readonly",
            &[
                ("env", "dev"),
                ("database", &db),
                ("username", &name),
                ("dry_run", "true"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sql = r.body["sql"].to_string();
    let prefix = group_prefix(&db);
    assert!(sql.contains(&format!("CREATE ROLE \\\"{prefix}")), "{sql}");
    assert!(sql.contains("GRANT SELECT ON ALL TABLES"), "{sql}");
    assert!(sql.contains("WITH NOLOGIN"), "{sql}");
    assert!(members(&app, &prefix).await.is_empty());
    assert!(!app.dev_role_exists(&name).await);
}

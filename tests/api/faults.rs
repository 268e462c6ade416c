//! Faults that must be survived: a target that goes down and comes back, a slow target, a
//! store that goes away, SIGKILL in the middle of a burst, SIGTERM with calls in flight and
//! with reads' audit records still queued.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pgua::cluster::{ClusterOptions, TempCluster};
use pgua::config::Config;
use pgua::store::{NewEntry, SslMode};
use sqlx::Connection;

use crate::support::{
    clusters, spawn_app, spawn_app_with, spawn_app_with_store, start_prepared_cluster, unique,
    wait_for_port,
};

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

#[tokio::test]
async fn a_target_that_goes_down_fails_fast_and_recovers_without_a_restart() {
    let app = spawn_app().await;
    let mut target =
        start_prepared_cluster(ClusterOptions::default(), &clusters().dev.admin_password);
    app.register("flaky", "dev", target.port()).await;
    // A create goes over one of the pool's connections, a find over the one lookups share.
    let call = |path: &'static str, name: String| {
        let app = &app;
        async move {
            let q = [("env", "flaky"), ("database", "dev"), ("username", &name)];
            app.get(path, &q).await
        }
    };
    let get = |name| call("/api/v1/users/devqa", name);
    let find = |name| call("/api/v1/users/find", name);
    // The pool holds connections to it.
    let up = unique("up");
    assert_eq!(get(up.clone()).await.status, 200);
    assert!(find(up.clone()).await.body["found"].as_bool().unwrap());
    target.stop().unwrap();
    let started = Instant::now();
    let r = get(unique("down")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.str("error").contains("unavailable"), "{}", r.body);
    let r = find(up.clone()).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    let other = app
        .get(
            "/api/v1/users/devqa",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", &unique("fine")),
            ],
        )
        .await;
    assert_eq!(other.status, 200, "other targets are unaffected");
    target.restart().unwrap();
    let back = get(unique("back")).await;
    assert_eq!(back.status, 200, "{}", back.body);
    // The shared connection that went down with the target is replaced.
    let r = find(up).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["found"].as_bool().unwrap(), "{}", r.body);
}

#[tokio::test]
async fn a_statement_timeout_ends_the_call_with_nothing_half_applied() {
    let mut config = Config::default();
    config.targets.statement_timeout_ms = 300;
    config.targets.lock_timeout_ms = 0;
    let app = spawn_app_with(config).await;
    let db = app.fresh_database("slow").await;
    let holder = app.clusters.dev.superuser(&db).await;
    holder
        .batch_execute("SELECT pg_advisory_lock(hashtext('pg-user-api:grants'))")
        .await
        .unwrap();
    let name = unique("slow");
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "slow"), ("database", &db), ("username", &name)],
        )
        .await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.str("error").contains("statement timeout"), "{}", r.body);
    assert!(!app.dev_role_exists(&name).await, "rolled back");
}

#[tokio::test]
async fn without_the_store_changes_are_refused_reads_go_on_and_service_resumes() {
    let mut store_cluster = TempCluster::start(ClusterOptions::default()).unwrap();
    store_cluster
        .psql("postgres", "CREATE DATABASE store")
        .unwrap();
    let url = format!(
        "postgres://postgres:{}@127.0.0.1:{}/store",
        store_cluster.superuser_password(),
        store_cluster.port()
    );
    let app = spawn_app_with_store(Config::default(), &url).await;
    let name = unique("st");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    assert_eq!(app.get("/api/v1/users/devqa", &q).await.status, 200);

    store_cluster.stop().unwrap();
    let r = app.get("/api/v1/users/find", &q).await;
    assert_eq!(
        (r.status.as_u16(), &r.body["found"]),
        (200, &serde_json::json!(true)),
        "{}",
        r.body
    );
    let fresh = unique("st");
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &fresh)],
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.str("error").contains("audit log unavailable"),
        "{}",
        r.body
    );
    assert!(!app.dev_role_exists(&fresh).await, "nothing done unaudited");
    assert_eq!(app.get_as("/readyz", None).await.status, 503);

    store_cluster.restart().unwrap();
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &fresh)],
        )
        .await;
    assert_eq!(r.status, 200, "resumes by itself: {}", r.body);
    assert_eq!(app.get_as("/readyz", None).await.status, 200);
}

/// The real server as a child process on a SQLite store with a dev entry.
struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(store: &std::path::Path) -> Self {
        // For the tests' own reqwest clients, when no in-process server installed it yet.
        pgua::tls::install_crypto_provider();
        let port = crate::support::closed_port();
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("PG_API_USER", "u")
            .env("PG_API_PASS", "p")
            .env("PG_ADMIN_USER", "pgua_admin")
            .env("PG_ADMIN_PASS", &clusters().dev.admin_password)
            .env("PGUA_STORE", format!("sqlite://{}", store.display()))
            .env_remove("PGUA_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

/// A GET of `path` on the server at `base` as its Basic user, for `username` on the target
/// `env`/`database`.
fn get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    (env, database, username): (&str, &str, &str),
) -> reqwest::RequestBuilder {
    client
        .get(format!("{base}{path}"))
        .basic_auth("u", Some("p"))
        .query(&[("env", env), ("database", database), ("username", username)])
}

async fn store_with(entries: &[(&str, &str)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = pgua::store::open(path.to_str().unwrap()).await.unwrap();
    for (env, db) in entries {
        store
            .registry_add(&NewEntry {
                env: (*env).into(),
                db_name: (*db).into(),
                hostname: "127.0.0.1".into(),
                port: clusters().dev.port,
                active: true,
                notes: None,
                sslmode: SslMode::Disable,
            })
            .await
            .unwrap();
    }
    (dir, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_in_a_burst_leaves_an_intact_store_and_an_intent_for_every_role() {
    let (_dir, path) = store_with(&[("dev", "dev")]).await;
    let mut server = Server::start(&path);
    let prefix = unique("kill");
    let client = reqwest::Client::new();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls: Vec<_> = (0..60)
        .map(|i| {
            let (client, base, name, done) = (
                client.clone(),
                server.base.clone(),
                format!("{prefix}_{i}"),
                done.clone(),
            );
            tokio::spawn(async move {
                let r = get(&client, &base, "/api/v1/users/devqa", ("dev", "dev", &name))
                    .send()
                    .await;
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                r.map(|r| r.status().as_u16()).unwrap_or(0)
            })
        })
        .collect();
    while done.load(std::sync::atomic::Ordering::Relaxed) < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.signal(libc::SIGKILL);
    server.child.wait().unwrap();
    for c in calls {
        c.await.unwrap();
    }

    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let check: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(check, "ok");
    let intents: Vec<String> =
        sqlx::query_scalar("SELECT pg_username FROM audit_log WHERE status = 'intent'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    let su = clusters().dev.superuser("postgres").await;
    let roles: Vec<String> = su
        .query(
            "SELECT rolname::text FROM pg_roles WHERE rolname LIKE $1",
            &[&format!("{prefix}\\_%")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!roles.is_empty());
    for role in &roles {
        assert!(
            intents.contains(role),
            "{role} exists without an intent record"
        );
    }
    // Restarted on the same store, the chain still verifies and the service works.
    let server = Server::start(&path);
    let verify = Command::new(BIN)
        .args(["audit", "verify"])
        .env("PGUA_STORE", format!("sqlite://{}", path.display()))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let r = get(
        &client,
        &server.base,
        "/api/v1/users/find",
        ("dev", "dev", &roles[0]),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    server.signal(libc::SIGTERM);
}

#[tokio::test]
async fn sigterm_drains_calls_in_flight() {
    let app = spawn_app().await;
    let db = app.fresh_database("unused").await;
    let (_dir, path) = store_with(&[("drain", &db)]).await;
    let mut server = Server::start(&path);
    let holder = clusters().dev.superuser(&db).await;
    holder
        .batch_execute("SELECT pg_advisory_lock(hashtext('pg-user-api:grants'))")
        .await
        .unwrap();
    let name = unique("drain");
    let call = {
        let (base, name, db) = (server.base.clone(), name.clone(), db.clone());
        tokio::spawn(async move {
            let target = ("drain", db.as_str(), name.as_str());
            get(
                &reqwest::Client::new(),
                &base,
                "/api/v1/users/devqa",
                target,
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(server.child.try_wait().unwrap().is_none(), "still draining");
    holder
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    assert_eq!(call.await.unwrap(), 200, "the call in flight completed");
    let status = server.child.wait().unwrap();
    assert!(status.success());
}

/// A read's outcome record is queued, not waited for by its call: a graceful stop right
/// after the answers must still store every one of them.
#[tokio::test]
async fn sigterm_right_after_reads_stores_every_reads_record() {
    let (_dir, path) = store_with(&[("dev", "dev")]).await;
    let mut server = Server::start(&path);
    let name = unique("queued");
    let client = reqwest::Client::new();
    let finds: Vec<_> = (0..40)
        .map(|_| {
            let (client, base, name) = (client.clone(), server.base.clone(), name.clone());
            tokio::spawn(async move {
                let r = get(&client, &base, "/api/v1/users/find", ("dev", "dev", &name))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    for f in finds {
        assert_eq!(f.await.unwrap(), 200);
    }
    server.signal(libc::SIGTERM);
    assert!(server.child.wait().unwrap().success());

    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE operation = 'find' AND pg_username = ?",
    )
    .bind(&name)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(stored, 40, "every find answered before the stop is audited");
}

//! A held catalog lock ends the call at the lock timeout, with nothing half-applied.

use std::time::{Duration, Instant};

use pgua::config::Config;
use pgua::store::{NewEntry, SslMode};

use crate::support::{spawn_app_with, unique};

#[tokio::test]
async fn a_held_lock_ends_at_the_lock_timeout_and_leaves_nothing_behind() {
    let mut config = Config::default();
    config.targets.lock_timeout_ms = 300;
    let app = spawn_app_with(config).await;
    let db = unique("locked");
    let su = app.clusters.dev.superuser("postgres").await;
    su.batch_execute(&format!("CREATE DATABASE {db} OWNER app_owner"))
        .await
        .unwrap();
    app.store
        .registry_add(&NewEntry {
            env: "lock".into(),
            db_name: db.clone(),
            hostname: "127.0.0.1".into(),
            port: app.clusters.dev.port,
            active: true,
            notes: None,
            sslmode: SslMode::Disable,
        })
        .await
        .unwrap();
    // Someone else is changing grants in that database and does not let go.
    let holder = app.clusters.dev.superuser(&db).await;
    holder
        .batch_execute("SELECT pg_advisory_lock(hashtext('pg-user-api:grants'))")
        .await
        .unwrap();
    let name = unique("blocked");
    let started = Instant::now();
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "lock"), ("database", &db), ("username", &name)],
        )
        .await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert!(r.str("error").contains("lock timeout"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    // CREATE ROLE ran before the lock wait, in the same transaction: it is gone too.
    assert!(!app.dev_role_exists(&name).await);
    holder
        .batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();
    let r = app
        .get(
            "/api/v1/users/devqa",
            &[("env", "lock"), ("database", &db), ("username", &name)],
        )
        .await;
    assert_eq!(r.str("status"), "user created", "{}", r.body);
    let audit = app.audit().await;
    let failed = audit
        .iter()
        .find(|a| a.status == "failure" && a.pg_username == name)
        .expect("the timed-out call is audited");
    assert_eq!(failed.detail, "504");
}

//! Races: many callers at once on one name, and on many names.

use std::sync::Arc;

use futures_util::future::join_all;

use crate::support::{connect, eventually, spawn_app, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_of_one_name_create_it_once() {
    let app = Arc::new(spawn_app().await);
    let name = unique("race");
    let calls = (0..50).map(|_| {
        let app = app.clone();
        let name = name.clone();
        tokio::spawn(async move {
            app.get(
                "/api/v1/users/app-k8s",
                &[
                    ("env", "dev"),
                    ("database", "dev"),
                    ("env_prefix", "r"),
                    ("farmname", &name),
                ],
            )
            .await
        })
    });
    let replies: Vec<_> = join_all(calls)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let created = replies
        .iter()
        .filter(|r| r.str("status") == "user created")
        .count();
    let exists = replies
        .iter()
        .filter(|r| r.str("status") == "user already exists")
        .count();
    assert!(
        replies.iter().all(|r| r.status == 200),
        "{:?}",
        replies.iter().map(|r| &r.body).collect::<Vec<_>>()
    );
    assert_eq!((created, exists), (1, 49));
    let outcomes = app
        .audit()
        .await
        .into_iter()
        .filter(|r| r.status != "intent")
        .count();
    assert_eq!(outcomes, 50, "one audit outcome per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_creates_of_distinct_names_all_succeed_and_log_in() {
    let app = Arc::new(spawn_app().await);
    let names: Vec<String> = (0..50).map(|_| unique("many")).collect();
    let calls = names.iter().cloned().map(|name| {
        let app = app.clone();
        // readonly grants touch shared catalog rows (schema ACLs, default privileges).
        tokio::spawn(async move {
            app.get(
                "/api/v1/users/readonly",
                &[("env", "dev"), ("database", "dev"), ("username", &name)],
            )
            .await
        })
    });
    let replies: Vec<_> = join_all(calls)
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
    // Their verifiers were hashed several at a time: each password opens its own user.
    for (name, r) in names.iter().zip(&replies) {
        assert_eq!(r.str("username"), name);
        let login = connect(app.clusters.dev.port, "dev", name, r.str("password")).await;
        assert!(login.is_ok(), "{name} cannot log in: {login:?}");
    }
    let audit = app.audit().await;
    assert_eq!(audit.iter().filter(|r| r.status == "intent").count(), 50);
    assert_eq!(audit.iter().filter(|r| r.status == "success").count(), 50);
}

/// A client that hangs up while its create waits inside the transaction does not cut the
/// create short: it finishes, its outcome is audited, and the pooled connection it used is
/// clean for the next callers (before, the handler was dropped with `BEGIN` sent and the
/// transaction left open on the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_client_hangs_up_finishes_and_is_audited() {
    let app = Arc::new(spawn_app().await);
    let name = unique("hangup");
    // Hold the name's advisory lock, so the create waits for it inside its transaction.
    let holder = app.clusters.dev.superuser("dev").await;
    let key = format!("pg-user-api:role:{name}");
    holder
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&key])
        .await
        .unwrap();
    let call = {
        let app = app.clone();
        let name = name.clone();
        tokio::spawn(async move {
            app.get(
                "/api/v1/users/devqa",
                &[("env", "dev"), ("database", "dev"), ("username", &name)],
            )
            .await
        })
    };
    let waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted";
    eventually("the create never waited for the lock", || async {
        let n: i64 = holder.query_one(waiting, &[]).await.unwrap().get(0);
        (n > 0).then_some(())
    })
    .await;
    // The client hangs up: its request future, and so its connection, is dropped.
    call.abort();
    assert!(call.await.is_err_and(|e| e.is_cancelled()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !app.dev_role_exists(&name).await,
        "created before the lock was released"
    );
    holder
        .execute("SELECT pg_advisory_unlock(hashtext($1))", &[&key])
        .await
        .unwrap();
    eventually("the create was cancelled with its client", || async {
        app.dev_role_exists(&name).await.then_some(())
    })
    .await;
    let outcome = eventually("the create's outcome is audited", || async {
        app.audit()
            .await
            .into_iter()
            .find(|r| r.pg_username == name && r.status != "intent")
    })
    .await;
    assert_eq!(outcome.status, "success", "{outcome:?}");
    // Every pooled connection is usable: no transaction was left open on one.
    for i in 0..12 {
        let other = format!("{name}_{i}");
        let reply = app
            .get(
                "/api/v1/users/devqa",
                &[("env", "dev"), ("database", "dev"), ("username", &other)],
            )
            .await;
        assert_eq!(reply.str("status"), "user created", "{:?}", reply.body);
    }
}

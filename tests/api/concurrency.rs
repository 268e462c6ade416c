//! Races: many callers at once on one name, and on many names.

use std::sync::Arc;

use futures_util::future::join_all;

use crate::support::{spawn_app, unique};

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
async fn fifty_concurrent_creates_of_distinct_names_all_succeed() {
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
    for name in &names {
        assert!(app.dev_role_exists(name).await);
    }
    let audit = app.audit().await;
    assert_eq!(audit.iter().filter(|r| r.status == "intent").count(), 50);
    assert_eq!(audit.iter().filter(|r| r.status == "success").count(), 50);
}

//! `/metrics` labels by route pattern and known environments only; `/readyz` names degraded
//! targets without failing.

use crate::support::{spawn_app, unique};

#[tokio::test]
async fn metrics_use_bounded_labels_only() {
    let app = spawn_app().await;
    let name = unique("metric_user");
    let odd_env = unique("odd_env");
    app.get(
        "/api/v1/users/devqa",
        &[("env", "dev"), ("database", "dev"), ("username", &name)],
    )
    .await;
    app.get(
        "/api/v1/users/find",
        &[("env", &odd_env), ("database", "x"), ("username", &name)],
    )
    .await;
    app.get(&format!("/api/v1/no-such/{name}"), &[]).await;
    // Any token is a method to HTTP: an invented one is counted, as `other`.
    let method = unique("FROB").to_uppercase();
    let odd = app
        .client
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}/healthz", app.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 405);
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "pgua_http_requests_total{",
        "route=\"/api/v1/users/{profile}\"",
        "route=\"unmatched\"",
        "pgua_http_request_duration_seconds_bucket",
        "pgua_operations_total{",
        "operation=\"create:devqa\"",
        "env=\"other\"",
        "pgua_store_write_seconds",
        // Counts of records, not seconds: the first bucket is one record.
        "pgua_audit_batch_size_bucket{le=\"1\"}",
        "pgua_target_pool_connections{target=\"127.0.0.1:",
        "pgua_notify_dropped_total",
        "method=\"other\"",
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }
    assert!(!text.contains(&name), "a user name became a label");
    assert!(!text.contains(&odd_env), "caller text became a label");
    assert!(!text.contains(&method), "a method became a label");
}

#[tokio::test]
async fn readyz_lists_degraded_targets_and_stays_ready() {
    let app = spawn_app().await;
    let r = app
        .get(
            "/api/v1/users/find",
            &[("env", "qa"), ("database", "down"), ("username", "x")],
        )
        .await;
    assert_eq!(r.status, 503);
    let ready = app.get_as("/readyz", None).await;
    assert_eq!(ready.status, 200);
    let degraded = ready.body["degraded_targets"].as_array().unwrap();
    assert_eq!(degraded.len(), 1, "{}", ready.body);
    assert!(degraded[0]["target"].as_str().unwrap().ends_with("/down"));
}

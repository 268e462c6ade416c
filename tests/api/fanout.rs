//! One call, many targets: two clusters with one stopped, and two entries on one server.

use pgua::cluster::ClusterOptions;

use crate::support::{clusters, connect, spawn_app, start_prepared_cluster, unique};

#[tokio::test]
async fn fan_out_reports_each_target_and_survives_a_stopped_cluster() {
    let app = spawn_app().await;
    let mut stage =
        start_prepared_cluster(ClusterOptions::default(), &clusters().dev.admin_password);
    app.register("stage", "dev", stage.port()).await;
    stage.stop().unwrap();

    let name = unique("fan");
    let q = [
        ("env", "dev, stage"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    let r = app.get("/api/v1/users/devqa", &q).await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(
        (r.body["succeeded"].as_u64(), r.body["failed"].as_u64()),
        (Some(1), Some(1))
    );
    let dev = &r.body["results"][0];
    let down = &r.body["results"][1];
    assert_eq!(
        (dev["env"].as_str(), dev["http_status"].as_u64()),
        (Some("dev"), Some(200))
    );
    assert_eq!(dev["status"], "user created");
    assert_eq!(
        (down["env"].as_str(), down["http_status"].as_u64()),
        (Some("stage"), Some(503))
    );
    assert!(
        down["error"].as_str().unwrap().contains("unavailable"),
        "{down}"
    );
    assert_eq!(r.headers["cache-control"], "no-store");

    // The target comes back; the pool recovers without a restart of the service.
    stage.restart().unwrap();
    let r = app.get("/api/v1/users/devqa", &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][0]["status"], "user already exists");
    assert_eq!(r.body["results"][1]["status"], "user created");
    let pw = r.body["results"][1]["password"].as_str().unwrap();
    connect(stage.port(), "dev", &name, pw).await.unwrap();

    let audit = app.audit().await;
    // Targets run in parallel, so compare without order.
    let mut outcomes: Vec<(&str, &str)> = audit
        .iter()
        .filter(|a| a.pg_username == name && a.status != "intent")
        .map(|a| (a.env.as_str(), a.status.as_str()))
        .collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        [
            ("dev", "success"),
            ("dev", "success"),
            ("stage", "failure"),
            ("stage", "success")
        ]
    );
}

#[tokio::test]
async fn two_entries_on_one_server_share_the_role_and_each_get_their_grants() {
    let app = spawn_app().await;
    let port = app.clusters.dev.port;
    app.register("multi", "dev", port).await;
    app.register("multi", "prod", port).await;
    let name = unique("shared");
    let q = [
        ("env", "multi"),
        ("database", "dev,prod"),
        ("username", name.as_str()),
    ];
    let r = app.get("/api/v1/users/readonly", &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (first, second) = (&r.body["results"][0], &r.body["results"][1]);
    assert_eq!(first["status"], "user created");
    assert_eq!(second["status"], "user already exists");
    assert!(second["password"].is_null());
    let pw = first["password"].as_str().unwrap().to_owned();
    // The second database got its own grants and settings.
    let prod = connect(port, "prod", &name, &pw).await.unwrap();
    prod.query("SELECT * FROM public.orders", &[])
        .await
        .unwrap();
    let ro: String = prod
        .query_one("SHOW default_transaction_read_only", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ro, "on");

    // A role-wide change happens once per server: one new password for both entries.
    let r = app.get("/api/v1/users/reset", &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (a, b) = (&r.body["results"][0], &r.body["results"][1]);
    assert_eq!(
        (a["status"].as_str(), b["status"].as_str()),
        (Some("password reset"), Some("password reset"))
    );
    assert_eq!(a["password"], b["password"]);
    connect(port, "dev", &name, a["password"].as_str().unwrap())
        .await
        .unwrap();

    // An unknown target fails alone.
    let r = app
        .get(
            "/api/v1/users/lock",
            &[
                ("env", "multi"),
                ("database", "dev,nope"),
                ("username", &name),
            ],
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.body);
    assert_eq!(r.body["results"][0]["status"], "user locked");
    assert_eq!(r.body["results"][1]["http_status"], 404);

    // Reads fan out too.
    let r = app.get("/api/v1/users/find", &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][1]["found"], true);
    let r = app.get("/api/v1/users/privileges", &q).await;
    assert_eq!(
        r.body["results"][1]["database_privileges"][0], "CONNECT",
        "{}",
        r.body
    );

    let r = app.get("/api/v1/users/drop", &q).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["results"][1]["status"], "user dropped");
    assert!(!app.dev_role_exists(&name).await);
    let audit = app.audit().await;
    let resets = audit
        .iter()
        .filter(|a| a.operation == "reset" && a.pg_username == name && a.status == "success")
        .count();
    assert_eq!(resets, 2, "each target has its own audit record");
}

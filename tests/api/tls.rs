//! sslmode per registry entry, against a cluster that serves TLS with a private CA.

use pgua::cluster::ClusterOptions;
use pgua::config::Config;
use pgua::store::{NewEntry, SslMode};

use crate::support::{ClusterInfo, clusters, spawn_app_with, start_prepared, unique};

/// A prepared cluster serving TLS with a certificate for `localhost` from a new private
/// CA, whose certificate is written to `ca_path`.
fn tls_cluster(ca_path: &std::path::Path) -> ClusterInfo {
    let pki = crate::support::issuer::localhost_pki();
    std::fs::write(ca_path, &pki.ca_pem).unwrap();
    start_prepared(
        ClusterOptions {
            settings: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), "server.crt".into()),
                ("ssl_key_file".into(), "server.key".into()),
            ],
            files: vec![
                ("server.crt".into(), pki.cert_pem.into_bytes()),
                ("server.key".into(), pki.key_pem.into_bytes()),
            ],
            ..Default::default()
        },
        &clusters().dev.admin_password,
    )
}

#[tokio::test]
async fn sslmode_is_honoured_per_registry_entry() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let tls = tls_cluster(&ca_path);
    let mut config = Config::default();
    config.targets.ssl_root_cert = Some(ca_path);
    let app = spawn_app_with(config).await;
    for (db, host, sslmode) in [
        ("required", "127.0.0.1", SslMode::Require),
        ("verified", "localhost", SslMode::VerifyFull),
        ("wrong_host", "127.0.0.1", SslMode::VerifyFull),
        ("plain", "127.0.0.1", SslMode::Disable),
    ] {
        app.store
            .registry_add(&NewEntry {
                env: "tls".into(),
                db_name: db.into(),
                hostname: host.into(),
                port: tls.port,
                active: true,
                notes: None,
                sslmode,
            })
            .await
            .unwrap();
    }
    // The registry entry names the database to connect to; give each one.
    let su = tls.superuser("postgres").await;
    for db in ["required", "verified", "wrong_host", "plain"] {
        su.batch_execute(&format!("CREATE DATABASE {db} OWNER app_owner"))
            .await
            .unwrap();
    }
    let create = |db: &'static str| {
        let app = &app;
        async move {
            app.get(
                "/api/v1/users/dba",
                &[
                    ("env", "tls"),
                    ("database", db),
                    ("username", &unique("tls")),
                ],
            )
            .await
        }
    };
    for db in ["required", "verified", "plain"] {
        let r = create(db).await;
        assert_eq!(r.status, 200, "{db}: {}", r.body);
    }
    // A certificate for "localhost" does not match the address 127.0.0.1.
    let r = create("wrong_host").await;
    assert_eq!(r.status, 503, "{}", r.body);
    // The pooled admin connections are still open: check how each one is connected.
    let rows = su
        .query(
            "SELECT a.datname::text, s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.usename = 'pgua_admin' ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(seen.contains(&("required".into(), true)), "{seen:?}");
    assert!(seen.contains(&("verified".into(), true)), "{seen:?}");
    assert!(seen.contains(&("plain".into(), false)), "{seen:?}");
}

#[tokio::test]
async fn postgres_store_verifies_the_server_certificate_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let tls = tls_cluster(&ca_path);
    let url = |host: &str| {
        format!(
            "postgres://postgres:{}@{host}:{}/postgres?sslmode=verify-full&sslrootcert={}",
            tls.superuser_password,
            tls.port,
            ca_path.display()
        )
    };
    let store = pgua::store::open(&url("localhost")).await.unwrap();
    store.ping().await.unwrap();
    let su = tls.superuser("postgres").await;
    let encrypted: bool = su
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'pg-user-api'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted, "the store's sessions use TLS");
    let wrong_name = pgua::store::open(&url("127.0.0.1")).await;
    assert!(
        wrong_name.is_err(),
        "a certificate for localhost is refused for 127.0.0.1"
    );
    let shown = format!("{:#}", wrong_name.err().unwrap());
    assert!(shown.contains("certificate"), "{shown}");
    assert!(!shown.contains(&tls.superuser_password), "{shown}");
}

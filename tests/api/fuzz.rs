//! Property-based fuzzing of the whole API from its own OpenAPI document, with schemathesis
//! (from PyPI; installed into `target/schemathesis` on first use): no 5xx, every status,
//! content type and body as documented, and no role created that should not be.
//!
//! The calls go to a cluster of this test's own, through keys scoped to its environment
//! `fuzz`, so the rest of the suite is out of reach. `PGUA_FUZZ_SEED` and
//! `PGUA_FUZZ_EXAMPLES` change the seed (default fixed, for repeatable runs) and the number
//! of cases per operation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pgua::cluster::{ClusterOptions, TempCluster};

use pgua::config::Config;

use crate::support::{TestApp, clusters, connect, spawn_app_with, start_prepared_cluster};

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,negative_data_rejection,ignored_auth";
/// The coverage phase sends the boundaries of what the document allows and refuses (empty
/// strings, missing required parameters, extra fields, values just outside a pattern), so
/// a document that refuses what the server accepts fails here.
const PHASES: &str = "examples,coverage,fuzzing";

/// `st` from `target/schemathesis`, made with the machine's python3 when missing.
fn schemathesis() -> PathBuf {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis");
    let st = venv.join("bin/st");
    if !st.exists() {
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap_or_else(|e| {
                panic!("cannot run {cmd:?}: {e}; the fuzz test needs python3 with venv and pip")
            });
            assert!(
                out.status.success(),
                "{cmd:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", SCHEMATHESIS]));
    }
    st
}

/// Every role with the attributes and password verifier that matter, as a superuser sees it.
async fn roles(cluster: &TempCluster) -> BTreeMap<String, String> {
    let su = connect(
        cluster.port(),
        "postgres",
        cluster.superuser(),
        cluster.superuser_password(),
    )
    .await
    .unwrap();
    su.query(
        "SELECT rolname, concat_ws(' ', rolsuper, rolcanlogin, rolcreaterole, rolcreatedb,
                rolconnlimit, rolvaliduntil, rolpassword) FROM pg_authid",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Runs schemathesis with a bearer key (and `extra` arguments); panics with its report when
/// it finds anything.
fn fuzz(app: &TestApp, key: &str, seed: &str, extra: &[&str]) {
    let examples = std::env::var("PGUA_FUZZ_EXAMPLES").unwrap_or_else(|_| "10".into());
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml");
    let out = Command::new(schemathesis())
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{}/api/openapi.json", app.base))
        .args([
            "--checks",
            CHECKS,
            "--max-examples",
            &examples,
            "--seed",
            seed,
            "--phases",
            PHASES,
        ])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--no-color", "--workers", "1"])
        .args(extra)
        // It keeps a cache of what it found where it runs.
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/target"))
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems (seed {seed}):\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_no_spec_violation_and_no_unwanted_role() {
    let seed = std::env::var("PGUA_FUZZ_SEED").unwrap_or_else(|_| "20261129".into());
    // schemathesis also sends wrong credentials; keep its address from being locked out.
    let mut config = Config::default();
    config.auth.slowdown_after_failures = 1_000_000;
    config.auth.lockout_after_failures = 1_000_000;
    let app = spawn_app_with(config).await;
    let admin_password = clusters().dev.admin_password.clone();
    let target = tokio::task::spawn_blocking(move || {
        start_prepared_cluster(ClusterOptions::default(), &admin_password)
    })
    .await
    .unwrap();
    app.register("fuzz", "dev", target.port()).await;
    let before = roles(&target).await;

    // A read-only key: whatever it sends, no role appears and none changes.
    let reader = app.key("fuzz", "read,audit-read", "*").await;
    let fuzz_as = |key: String, extra: &'static [&'static str]| {
        let (app, seed) = (&app, seed.clone());
        async move { tokio::task::block_in_place(|| fuzz(app, &key, &seed, extra)) }
    };
    fuzz_as(reader, &[]).await;
    assert_eq!(
        roles(&target).await,
        before,
        "a read-only key changed roles"
    );

    // A key for every user operation (not the registry or keys) in `fuzz`.
    let writer = app
        .key("fuzz", "read,create,reset,grant,lock,drop,audit-read", "*")
        .await;
    fuzz_as(writer, &[]).await;
    let after = roles(&target).await;

    // Roles that were there are as they were: superuser, admin role, owner, predefined.
    for (name, row) in &before {
        assert_eq!(after.get(name), Some(row), "{name} was changed or dropped");
    }
    // Every new role was made by an audited create of its own name, and is a name the
    // policy allows.
    let audit = app.audit().await;
    let created: Vec<&str> = audit
        .iter()
        .filter(|r| r.operation.starts_with("create:") && r.status == "success")
        .filter(|r| r.detail.contains("created"))
        .map(|r| r.pg_username.as_str())
        .collect();
    let new: Vec<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();
    assert!(!new.is_empty(), "the fuzzer never reached a create");
    for name in new {
        assert!(
            created.contains(&name.as_str()),
            "{name} has no audited create"
        );
        assert!(
            app.state.policy.names.role(name).is_ok() && !name.starts_with("pg_"),
            "{name} is not an allowed name"
        );
    }

    // Last, the registry and keys with a key that may change them: no 5xx, nothing off the
    // document. (Only those paths: a registry entry pointed at a random host would make
    // every later user call a legitimate 503. With env and database fixed, `add` meets the
    // existing entry until `remove` has taken it away.)
    let admin = app.key("*", "*", "*").await;
    fuzz_as(admin, &["--include-path-regex", "^/api/v1/(registry|keys)"]).await;
    // It got past validation to real changes (with env and database fixed, the entry is
    // updated, deactivated or removed; whether a generated key passes every rule depends
    // on the seed).
    let changed = |r: &pgua::store::AuditRecord| {
        r.operation.starts_with("registry:")
            && r.operation != "registry:list"
            && r.status == "success"
    };
    assert!(
        app.audit().await.iter().any(changed),
        "the fuzzer never changed the registry"
    );
}

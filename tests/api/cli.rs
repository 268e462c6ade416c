//! The command line, run as the real binary.

use std::process::{Command, Output, Stdio};

use sqlx::Connection;

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

fn run(store: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("PGUA_STORE", format!("sqlite://{}", store.display()))
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn serve_refuses_to_start_without_api_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("PG_API_USER")
        .env_remove("PG_API_PASS")
        .env_remove("PG_API_PASS_FILE")
        .env("PG_ADMIN_USER", "x")
        .env(
            "PGUA_STORE",
            format!("sqlite://{}", dir.path().join("s.db").display()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("refusing to start without API credentials"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn seed_is_idempotent_and_prints_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("pg_registry.db");
    let first = run(&store, &["seed"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert_eq!(stdout(&first).matches("inserted").count(), 10);
    let second = run(&store, &["seed"]);
    assert_eq!(stdout(&second).matches("skipped").count(), 10);
    let list = stdout(&run(&store, &["registry", "list"]));
    for db in [
        "app_dev_main",
        "app_qa_inttest",
        "app_uat_reports",
        "app_prod_archive",
    ] {
        assert!(list.contains(db), "{list}");
    }
    assert_eq!(
        list.lines().filter(|l| l.contains(" no ")).count(),
        2,
        "two inactive entries\n{list}"
    );
}

#[test]
fn registry_add_set_active_remove_and_store_flag_after_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("r.db");
    let url = format!("sqlite://{}", store.display());
    let add = Command::new(BIN)
        .args([
            "registry",
            "add",
            "--env",
            "dev",
            "--database",
            "myapp_dev",
            "--host",
            "pg1.example.com",
            "--sslmode",
            "verify-full",
            "--notes",
            "hi",
            "--store",
            &url,
        ])
        .output()
        .unwrap();
    assert!(add.status.success(), "{}", stderr(&add));
    let dup = run(
        &store,
        &[
            "registry",
            "add",
            "--env",
            "dev",
            "--database",
            "myapp_dev",
            "--host",
            "pg1",
        ],
    );
    assert!(!dup.status.success());
    assert!(
        stderr(&dup).contains("already registered"),
        "{}",
        stderr(&dup)
    );
    // The refusal's outcome is only queued by the service; the command stores it before
    // it exits.
    let audit = stdout(&run(&store, &["audit", "list", "--limit", "5"]));
    assert!(
        audit.contains("registry:add") && audit.contains("failure"),
        "{audit}"
    );
    let bad = run(
        &store,
        &[
            "registry",
            "add",
            "--env",
            "dev",
            "--database",
            "x",
            "--host",
            "bad host;",
        ],
    );
    assert!(!bad.status.success());
    let list = stdout(&run(&store, &["registry", "list"]));
    assert!(
        list.contains("myapp_dev") && list.contains("verify-full") && list.contains("yes"),
        "{list}"
    );
    assert!(
        run(
            &store,
            &[
                "registry",
                "set-active",
                "--env",
                "dev",
                "--database",
                "myapp_dev",
                "--active",
                "false"
            ]
        )
        .status
        .success()
    );
    assert!(stdout(&run(&store, &["registry", "list"])).contains(" no "));
    assert!(
        run(
            &store,
            &[
                "registry",
                "remove",
                "--env",
                "dev",
                "--database",
                "myapp_dev"
            ]
        )
        .status
        .success()
    );
    let gone = run(
        &store,
        &[
            "registry",
            "remove",
            "--env",
            "dev",
            "--database",
            "myapp_dev",
        ],
    );
    assert!(!gone.status.success());
    assert!(!stdout(&run(&store, &["registry", "list"])).contains("myapp_dev"));
}

#[test]
fn registry_import_takes_csv_and_toml_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("i.db");
    let csv = dir.path().join("dbs.csv");
    std::fs::write(&csv, "env,db_name,hostname,port,active,notes,sslmode\ndev,a,h1,5432,1,,\nqa,b,h2,6543,0,\"note, with comma\",require\n").unwrap();
    let ok = run(&store, &["registry", "import", csv.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let toml = dir.path().join("dbs.toml");
    std::fs::write(&toml, "[[database]]\nenv = \"uat\"\ndb_name = \"c\"\nhostname = \"h3\"\n\n[[database]]\nenv = \"dev\"\ndb_name = \"a\"\nhostname = \"h1\"\n").unwrap();
    let dup = run(&store, &["registry", "import", toml.to_str().unwrap()]);
    assert!(!dup.status.success());
    assert!(
        stderr(&dup).contains("entry 2") && stderr(&dup).contains("already registered"),
        "{}",
        stderr(&dup)
    );
    let list = stdout(&run(&store, &["registry", "list"]));
    assert!(
        !list.contains(" uat "),
        "nothing imported from a file with a bad row\n{list}"
    );
    assert!(
        list.contains("note, with comma") && list.contains("6543"),
        "{list}"
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "env,db_name,hostname,port\ndev,x,h,notaport\ndev,y,h,5432,extra\n",
    )
    .unwrap();
    let out = run(&store, &["registry", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("row 2"), "{}", stderr(&out));
}

#[tokio::test]
async fn the_originals_sqlite_one_liners_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("pg_registry.db");
    assert!(run(&store, &["seed"]).status.success());
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", store.display()))
        .await
        .unwrap();
    sqlx::query("INSERT INTO db_registry (env, db_name, hostname, port, active, notes) VALUES ('dev', 'legacy_db', 'pg-legacy', 5433, 1, 'by hand')")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO audit_log (env, db_name, pg_username, operation, status) VALUES ('dev', 'legacy_db', 'bob', 'create', 'success')")
        .execute(&mut db)
        .await
        .unwrap();
    let rows = sqlx::query("SELECT * FROM audit_log ORDER BY performed_at DESC LIMIT 10")
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let list = stdout(&run(&store, &["registry", "list"]));
    assert!(
        list.contains("legacy_db") && list.contains("5433"),
        "{list}"
    );
    let audit = stdout(&run(&store, &["audit", "list", "--limit", "5"]));
    assert!(
        audit.contains("bob") && audit.contains("success"),
        "{audit}"
    );
}

#[test]
fn check_config_rejects_unknown_keys_and_prints_the_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[policy]\nproduction_envs = [\"prod\", \"live\"]\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("\"live\""));
    assert!(
        text.contains("readonly@") && text.contains("GRANT SELECT ON ALL TABLES"),
        "{text}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[targets]\nconect_timeout_secs = 3\n").unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("conect_timeout_secs"),
        "{}",
        stderr(&out)
    );
}

/// `serve` on a free port with JSON logs on a pipe (API user `u`, password `p`), a SQLite
/// store in `dir`; returns once it listens.
fn serve_with_json_logs(dir: &std::path::Path) -> (std::process::Child, u16) {
    let port = crate::support::closed_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("PG_API_USER", "u")
        .env("PG_API_PASS", "p")
        .env("PG_ADMIN_USER", "admin")
        .env(
            "PGUA_STORE",
            format!("sqlite://{}", dir.join("s.db").display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for_port(port);
    (child, port)
}

#[test]
fn sigterm_stops_the_server_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let (child, _port) = serve_with_json_logs(dir.path());
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    assert!(
        log.lines()
            .any(|l| l.starts_with('{') && l.contains("draining")),
        "{log}"
    );
}

pub fn run_store_migrate(from: &str, to: &str) -> Output {
    Command::new(BIN)
        .args(["store", "migrate", "--from", from, "--to", to])
        .env_remove("PGUA_STORE")
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn store_migrate_copies_sqlite_to_postgres_exactly_and_only_into_an_empty_store() {
    use pgua::store::{AuditRecord, Store};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pg_registry.db");
    let from = format!("sqlite://{}", path.display());
    assert!(run(&path, &["seed"]).status.success());
    let source = pgua::store::open(&from).await.unwrap();
    // A gap in the ids, which the copy must keep.
    assert!(
        source
            .registry_remove("dev", "app_dev_reports")
            .await
            .unwrap()
    );
    let records: Vec<AuditRecord> = (0..2000)
        .map(|n| AuditRecord {
            id: 0,
            performed_at: chrono::Utc::now(),
            request_id: format!("req-{n}"),
            principal: "ci".into(),
            client_addr: "192.0.2.1".into(),
            env: "dev".into(),
            db_name: "app_dev_main".into(),
            pg_username: format!("u{n}"),
            operation: "create:devqa".into(),
            status: "success".into(),
            detail: "user created".into(),
            error: (n % 7 == 0).then(|| "boom".into()),
            duration_ms: (n % 2 == 0).then_some(n),
            profile: if n % 3 == 0 {
                "devqa@0fdb482f".into()
            } else {
                String::new()
            },

            prev_hash: String::new(),
            hash: String::new(),
        })
        .collect();
    source.audit_append(&records).await.unwrap();
    // A row as the original service wrote it: NULLs and CURRENT_TIMESTAMP text.
    let mut db = sqlx::SqliteConnection::connect(&from).await.unwrap();
    sqlx::query("INSERT INTO audit_log (env, db_name, pg_username, operation, status) VALUES ('dev', 'legacy_db', 'bob', 'create', 'success')")
        .execute(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();

    let scopes = pgua::auth::Scopes::all();
    let (_, ci_secret) =
        pgua::service::keys::create(source.as_ref(), "ci", "platform", &scopes, None)
            .await
            .unwrap();
    pgua::service::keys::create(source.as_ref(), "old", "platform", &scopes, None)
        .await
        .unwrap();
    assert!(source.key_revoke("old").await.unwrap());

    let fingerprints = source.fingerprint_key(&[1; 32]).await.unwrap();

    let to = crate::support::fresh_postgres_store_url().await;
    let password = crate::support::clusters().prod.superuser_password.clone();
    let out = run_store_migrate(&from, &to);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("copied and verified 9 registry entries, 2 API keys and 2001 audit records"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains(&password) && !stderr(&out).contains(&password));

    let target = pgua::store::open(&to).await.unwrap();
    assert_eq!(
        target.registry_list().await.unwrap(),
        source.registry_list().await.unwrap()
    );
    let all = |s: std::sync::Arc<dyn Store>| async move {
        s.audit_after(i64::MIN, u32::MAX).await.unwrap()
    };
    let copied = all(target.clone()).await;
    assert_eq!(copied.len(), 2001);
    assert_eq!(copied, all(source.clone()).await);
    assert_eq!(copied.last().unwrap().pg_username, "bob");
    assert_eq!(
        target.key_list().await.unwrap(),
        source.key_list().await.unwrap()
    );
    let who = pgua::service::keys::authenticate(target.as_ref(), &ci_secret)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(who.name, "key:ci", "keys keep working after the move");
    assert_eq!(
        target.fingerprint_key(&[2; 32]).await.unwrap(),
        fingerprints,
        "fingerprints in copied records match new ones"
    );

    // New rows continue after the copied ids.
    let max_id = source
        .registry_list()
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .max()
        .unwrap();
    let added = target
        .registry_add(&pgua::store::NewEntry {
            env: "dev".into(),
            db_name: "after_copy".into(),
            hostname: "h".into(),
            port: 5432,
            active: true,
            notes: None,
            sslmode: Default::default(),
        })
        .await
        .unwrap();
    assert!(added.id > max_id, "{} > {max_id}", added.id);

    let again = run_store_migrate(&from, &to);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("not empty"), "{}", stderr(&again));
    assert!(!stderr(&again).contains(&password), "{}", stderr(&again));
    assert_eq!(target.registry_list().await.unwrap().len(), 10);

    let backwards = run_store_migrate(&to, &from);
    assert!(!backwards.status.success());
    assert!(
        !stderr(&backwards).contains(&password),
        "{}",
        stderr(&backwards)
    );
    let missing = run_store_migrate(
        &format!("sqlite://{}", dir.path().join("nope.db").display()),
        &to,
    );
    assert!(
        stderr(&missing).contains("no SQLite store"),
        "{}",
        stderr(&missing)
    );
    assert!(!dir.path().join("nope.db").exists());
}

#[test]
fn store_errors_and_logs_never_show_the_store_password() {
    let url = format!(
        "postgres://pgua:very-secret-pw@127.0.0.1:{}/pgua",
        crate::support::closed_port()
    );
    let out = Command::new(BIN)
        .args(["registry", "list", "--store", &url])
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("pgua:REDACTED@127.0.0.1"), "{err}");
    assert!(!err.contains("very-secret-pw"), "{err}");
    let config = Command::new(BIN)
        .args(["check-config", "--store", &url])
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap();
    assert!(config.status.success(), "{}", stderr(&config));
    assert!(stdout(&config).contains("REDACTED"), "{}", stdout(&config));
    assert!(!stdout(&config).contains("very-secret-pw"));
}

#[test]
fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("k.db");
    let created = run(
        &store,
        &[
            "keys",
            "create",
            "--name",
            "ci-dev",
            "--owner",
            "platform",
            "--environments",
            "dev,qa",
            "--operations",
            "read,create",
            "--profiles",
            "devqa",
            "--days",
            "90",
        ],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let secret = stdout(&created).trim().to_owned();
    assert!(secret.starts_with("pgua_") && secret.len() > 40, "{secret}");
    assert!(stderr(&created).contains("not shown again"));
    let dup = run(
        &store,
        &[
            "keys",
            "create",
            "--name",
            "ci-dev",
            "--owner",
            "x",
            "--environments",
            "dev",
        ],
    );
    assert!(!dup.status.success());
    let bad = run(
        &store,
        &[
            "keys",
            "create",
            "--name",
            "x",
            "--owner",
            "x",
            "--environments",
            "dev",
            "--operations",
            "everything",
        ],
    );
    assert!(
        stderr(&bad).contains("unknown operation"),
        "{}",
        stderr(&bad)
    );
    let list = stdout(&run(&store, &["keys", "list"]));
    assert!(
        list.contains("ci-dev") && list.contains("platform") && !list.contains(&secret),
        "{list}"
    );
    assert!(
        run(&store, &["keys", "revoke", "--name", "ci-dev"])
            .status
            .success()
    );
    assert!(
        !run(&store, &["keys", "revoke", "--name", "ci-dev"])
            .status
            .success()
    );
    let list = stdout(&run(&store, &["keys", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("ci-dev") && l.contains(" yes ")),
        "{list}"
    );
}

#[test]
fn hash_password_prints_an_argon2_hash() {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("$argon2id$"), "{}", stdout(&out));
}

#[test]
fn the_example_configuration_is_valid_and_names_every_setting() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pg-user-api.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", path])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("etl@"),
        "the example profile is shown"
    );
    let example = std::fs::read_to_string(path).unwrap();
    let defaults = toml::to_string(&pgua::config::Config::default()).unwrap();
    for line in defaults.lines() {
        let key = line
            .split([' ', '='])
            .next()
            .unwrap_or("")
            .trim_matches(['[', ']']);
        if !key.is_empty() {
            assert!(
                example.contains(key),
                "the example does not mention '{key}'"
            );
        }
    }
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = stdout(&out);
        assert!(
            text.contains("pg-user-api") && text.contains("check-config"),
            "{shell}"
        );
    }
    let man = Command::new(BIN).arg("man").output().unwrap();
    assert!(man.status.success());
    let text = stdout(&man);
    assert!(
        text.contains(".TH pg-user-api 1") && text.contains("serve"),
        "{text}"
    );
}

#[tokio::test]
async fn store_migrate_copies_rows_with_raw_nul_and_control_bytes_and_the_chain_verifies() {
    use pgua::store::{AuditRecord, chain};

    let dir = tempfile::tempdir().unwrap();
    let from = format!("sqlite://{}", dir.path().join("old.db").display());
    let source = pgua::store::open(&from).await.unwrap();
    // A chained record as pg-user-api wrote it before stored text was escaped: raw NUL and
    // control bytes, a backslash and a literal "\u0001", its hash over exactly those bytes.
    let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
    let mut old = AuditRecord {
        id: 0,
        performed_at: at,
        request_id: "req\u{1b}[2J".into(),
        principal: "tester".into(),
        client_addr: "127.0.0.1".into(),
        env: "dev".into(),
        db_name: "dev".into(),
        pg_username: "acc\0x".into(),
        operation: "find".into(),
        profile: String::new(),
        prev_hash: chain::GENESIS.into(),
        hash: String::new(),
        status: "failure".into(),
        detail: "422".into(),
        error: Some(r"invalid name 'acc\x' or \u0001 and a raw ".to_owned() + "\u{1}\u{7f}"),
        duration_ms: Some(3),
    };
    old.hash = chain::link(&old.prev_hash, &old);
    let mut db = sqlx::SqliteConnection::connect(&from).await.unwrap();
    // Rows written by hand the old way, before the chain began: NUL, ESC and bytes that are not UTF-8.
    sqlx::raw_sql(
        "INSERT INTO audit_log (env, db_name, pg_username, operation, status)
             VALUES ('dev', 'legacy' || char(0), CAST(X'ff41' AS TEXT), 'create', 'success');
         INSERT INTO db_registry (env, db_name, hostname, port, active, notes)
             VALUES ('dev', 'nul' || char(0) || 'db', 'h', 5432, 1, 'n' || char(0) || char(27) || CAST(X'ff' AS TEXT));",
    )
    .execute(&mut db)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit_log (env, db_name, pg_username, operation, status, performed_at,
             request_id, principal, client_addr, detail, error, duration_ms, profile,
             prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&old.env)
    .bind(&old.db_name)
    .bind(&old.pg_username)
    .bind(&old.operation)
    .bind(&old.status)
    .bind(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    .bind(&old.request_id)
    .bind(&old.principal)
    .bind(&old.client_addr)
    .bind(&old.detail)
    .bind(&old.error)
    .bind(old.duration_ms)
    .bind(&old.profile)
    .bind(&old.prev_hash)
    .bind(&old.hash)
    .execute(&mut db)
    .await
    .unwrap();
    db.close().await.unwrap();
    // The service goes on after the old record, chaining to it.
    let mut next = old.clone();
    next.pg_username = "after".into();
    next.error = None;
    source.audit_append(&[next]).await.unwrap();
    assert_eq!(
        chain::verify(source.as_ref(), None).await.unwrap().broken,
        None
    );

    let to = crate::support::fresh_postgres_store_url().await;
    let out = run_store_migrate(&from, &to);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 registry entries, 0 API keys and 3 audit records"),
        "{}",
        stdout(&out)
    );
    let verify = Command::new(BIN)
        .args(["audit", "verify", "--store", &to])
        .env_remove("PGUA_CONFIG")
        .env_remove("PGUA_AUDIT_KEY")
        .output()
        .unwrap();
    assert!(verify.status.success(), "{}", stderr(&verify));
    assert!(
        stdout(&verify).contains("2 records chained; 1 older"),
        "{}",
        stdout(&verify)
    );

    let target = pgua::store::open(&to).await.unwrap();
    let copied = target.audit_after(i64::MIN, 10).await.unwrap();
    assert_eq!(copied[0].db_name, r"legacy\u0000");
    assert_eq!(copied[0].pg_username, "\u{fffd}A");
    assert_eq!(copied[1].pg_username, r"acc\u0000x");
    assert_eq!(copied[1].request_id, r"req\u001b[2J");
    assert_eq!(copied[1].hash, old.hash, "the copy keeps the original hash");
    let entry = &target.registry_list().await.unwrap()[0];
    assert_eq!(
        (entry.db_name.as_str(), entry.notes.as_deref()),
        (r"nul\u0000db", Some("n\\u0000\\u001b\u{fffd}"))
    );
}

#[tokio::test]
async fn every_registry_subcommand_leaves_one_audit_record_as_http_does() {
    use pgua::store::AuditRecord;

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("audited.db");
    let os_user = Command::new("id").arg("-un").output().unwrap();
    let principal = format!("cli:{}", String::from_utf8_lossy(&os_user.stdout).trim());
    let key = ["--env", "dev", "--database", "cli_db"];
    let import = dir.path().join("one.csv");
    std::fs::write(
        &import,
        "env,db_name,hostname,port,notes\ndev,imported,h2,5434,from csv\n",
    )
    .unwrap();
    let steps: [Vec<&str>; 5] = [
        [
            "registry", "add", "--host", "h1", "--port", "5433", "--notes", "n",
        ]
        .into(),
        ["registry", "set-active", "--active", "false"].into(),
        ["registry", "set-active", "--active", "true"].into(),
        ["registry", "remove"].into(),
        ["registry", "import", import.to_str().unwrap()].into(),
    ];
    let url = format!("sqlite://{}", store.display());
    let mut cli_records = Vec::new();
    for (n, step) in steps.iter().enumerate() {
        let mut args = step.clone();
        if n < 4 {
            args.extend(key);
        }
        let out = run(&store, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let s = pgua::store::open(&url).await.unwrap();
        let all = s.audit_after(i64::MIN, 100).await.unwrap();
        assert_eq!(
            all.len(),
            n + 1,
            "{args:?} leaves exactly one record: {all:#?}"
        );
        cli_records.push(all[n].clone());
    }
    assert!(
        cli_records.iter().all(|r| r.principal == principal),
        "{cli_records:#?}"
    );

    // The same changes through HTTP leave the same records but for who and from where.
    let app = crate::support::spawn_app().await;
    let key = [("env", "dev"), ("database", "cli_db")];
    let http_steps: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "add",
            vec![("host", "h1"), ("port", "5433"), ("notes", "n")],
        ),
        ("deactivate", vec![]),
        ("update", vec![("active", "1")]),
        ("remove", vec![]),
        (
            "add",
            vec![("host", "h2"), ("port", "5434"), ("notes", "from csv")],
        ),
    ];
    let before = app.audit().await.len();
    for (n, (action, mut params)) in http_steps.into_iter().enumerate() {
        if n < 4 {
            params.extend(key);
        } else {
            params.extend([("env", "dev"), ("database", "imported")]);
        }
        let res = app
            .get(&format!("/api/v1/registry/{action}"), &params)
            .await;
        assert_eq!(res.status, 200, "{action}: {}", res.body);
    }
    let http_records = app.audit().await.split_off(before);
    let what = |r: &AuditRecord| {
        (
            r.operation.clone(),
            r.status.clone(),
            r.env.clone(),
            r.db_name.clone(),
            r.pg_username.clone(),
            r.detail.clone(),
            r.error.clone(),
        )
    };
    assert_eq!(
        cli_records.iter().map(what).collect::<Vec<_>>(),
        http_records.iter().map(what).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn demo_moves_to_a_free_port_when_its_own_is_taken_and_prints_the_real_one() {
    use std::io::BufRead;
    // The test holds the port it asks for, standing in for a busy 5000.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().to_string();
    let mut demo = Stopped(
        Command::new(BIN)
            .args(["demo", "--listen", &taken])
            .env_remove("PGUA_CONFIG")
            .env_remove("PGUA_STORE")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut banner = String::new();
    // Read on to the end: a closed pipe would fail the demo's last words.
    let mut lines = std::io::BufReader::new(demo.0.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    assert!(
        banner.contains(&format!("{taken} is in use")),
        "the asked-for address was not tried first: {banner}"
    );
    let base = banner
        .lines()
        .find_map(|l| l.strip_prefix("pg-user-api demo is running at "))
        .unwrap_or_else(|| panic!("no address in {banner}"))
        .to_owned();
    assert_ne!(base, format!("http://{taken}"));
    assert!(
        banner.contains(&format!("'{base}/api/v1/registry'")),
        "the curl lines do not use the real port: {banner}"
    );
    pgua::tls::install_crypto_provider();
    let root = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(root.status(), 200);
    assert!(demo.stop().success(), "the demo did not stop cleanly");
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert!(
        rest.iter().any(|l| l.contains("everything removed")),
        "{rest:?}"
    );
    drop(held);
}

/// A child process that is stopped with SIGTERM (and waited for) however the test ends,
/// so a failed assertion leaves no demo cluster running.
struct Stopped(std::process::Child);

impl Stopped {
    fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().unwrap()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.stop();
        }
    }
}

/// What a request's handlers log names the request (its span's `request_id`), although each
/// request runs in a task of its own.
#[test]
fn what_a_request_logs_names_its_request_id() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (child, port) = serve_with_json_logs(dir.path());
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    // "u:wrong": the failed authentication is logged from inside the request.
    conn.write_all(
        b"GET /api/v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dTp3cm9uZw==\r\n\
          x-request-id: trace-me-4711\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let log = stderr(&out);
    assert!(
        log.lines()
            .any(|l| l.contains("authentication failed") && l.contains("trace-me-4711")),
        "{log}"
    );
}

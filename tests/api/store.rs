//! The store contract, written once and run against both backends: SQLite in a temp file and
//! PostgreSQL in a fresh database on a throw-away cluster.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use pgua::store::{AuditRecord, NewEntry, SslMode, Store, StoreError, chain};
use serde_json::json;

use crate::support::{TestApp, fresh_postgres_store_url, spawn_app_with_store, unique};

/// A store under test and the URL to open it again.
struct TestStore {
    store: Arc<dyn Store>,
    url: String,
    backend: Backend,
    _dir: Option<tempfile::TempDir>,
}

impl TestStore {
    /// SQL straight at the store, as someone with access to the database file or server.
    async fn raw(&self, sql: &str) -> Result<(), sqlx::Error> {
        use sqlx::Connection;
        let sql = sqlx::AssertSqlSafe(sql.to_owned());
        match self.backend {
            Backend::Sqlite => {
                let mut c = sqlx::SqliteConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await.map(drop)
            }
            Backend::Postgres => {
                let mut c = sqlx::PgConnection::connect(&self.url).await?;
                sqlx::raw_sql(sql).execute(&mut c).await.map(drop)
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    async fn fresh(self) -> TestStore {
        let (url, dir) = match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("store.db").display());
                (url, Some(dir))
            }
            Backend::Postgres => (fresh_postgres_store_url().await, None),
        };
        TestStore {
            store: pgua::store::open(&url).await.unwrap(),
            url,
            backend: self,
            _dir: dir,
        }
    }
}

/// One test per backend from one body: `store::<name>::sqlite` and `store::<name>::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite.fresh().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres.fresh().await).await;
            }
        }
    )*};
}

on_both_backends!(
    migrations_are_idempotent,
    registry_add_get_list_set_active_remove,
    duplicate_registry_entry_is_reported_as_duplicate,
    audit_batch_keeps_order_and_every_field,
    audit_latest_is_newest_first_with_limit,
    audit_after_pages_through_the_whole_log,
    audit_log_is_an_append_only_verifiable_chain,
    pruning_leaves_a_signed_checkpoint_and_a_verifiable_chain,
    hostile_text_is_stored_escaped_found_by_its_raw_spelling_and_chained,
    hostile_bytes_in_every_parameter_are_audited_and_the_log_migrates_and_verifies,
    the_fingerprint_key_is_made_once_and_kept,
    a_claim_has_one_holder_until_it_runs_out,
    a_session_is_touched_while_live_and_gone_once_ended,
);

/// Bytes a hostile caller sends: NUL, C0 and C1 controls, ESC, DEL, quotes, backslashes.
const HOSTILE: &str = "n\0l\u{1}e\u{1b}[31md\u{7f}c\u{85}'q\"b\\s";

async fn the_fingerprint_key_is_made_once_and_kept(t: TestStore) {
    let first = t.store.fingerprint_key(&[1; 32]).await.unwrap();
    assert_eq!(first, [1; 32]);
    assert_eq!(t.store.fingerprint_key(&[2; 32]).await.unwrap(), first);
    let reopened = pgua::store::open(&t.url).await.unwrap();
    assert_eq!(reopened.fingerprint_key(&[3; 32]).await.unwrap(), first);
}

async fn a_claim_has_one_holder_until_it_runs_out(t: TestStore) {
    let s = &t.store;
    let soon = Utc::now() + chrono::Duration::seconds(60);
    assert!(s.claim("job", "prune", "replica-a", soon).await.unwrap());
    assert!(!s.claim("job", "prune", "replica-b", soon).await.unwrap());
    assert!(
        s.claim(
            "job",
            "prune",
            "replica-a",
            soon + chrono::Duration::seconds(60)
        )
        .await
        .unwrap(),
        "the holder extends its own claim"
    );
    assert!(
        s.claim("jti", "prune", "replica-b", soon).await.unwrap(),
        "namespaces are apart"
    );
    let reopened = pgua::store::open(&t.url).await.unwrap();
    assert!(
        !reopened
            .claim("job", "prune", "replica-b", soon)
            .await
            .unwrap()
    );

    let past = Utc::now() - chrono::Duration::seconds(5);
    assert!(s.claim("job", "gone", "replica-a", past).await.unwrap());
    assert!(
        s.claim("job", "gone", "replica-b", soon).await.unwrap(),
        "a claim that ran out is taken over"
    );
    assert!(s.claim("jti", "old", "x", past).await.unwrap());
    assert_eq!(s.claims_prune(Utc::now()).await.unwrap(), 1);
    assert!(s.claim("jti", "old", "y", soon).await.unwrap());
}

async fn a_session_is_touched_while_live_and_gone_once_ended(t: TestStore) {
    use pgua::store::Session;
    let s = &t.store;
    let session = |id: &str, created: i64, expires: i64| Session {
        id_hash: id.to_owned(),
        principal: format!("oidc:{id}@example.com"),
        scopes: r#"{"environments":["dev"],"operations":["read"],"profiles":[]}"#.into(),
        csrf_hash: format!("csrf-{id}"),
        created,
        last_seen: created,
        expires,
    };
    let live = session("live", 1000, 5000);
    s.session_put(&live).await.unwrap();
    s.session_put(&session("idle", 1000, 5000)).await.unwrap();
    s.session_put(&session("over", 1000, 2000)).await.unwrap();

    // Used at 1500 with an idle cutoff of 900: found, and last-seen moves to 1500.
    let got = s.session_get("live", 1500, 900).await.unwrap().unwrap();
    assert_eq!(
        got,
        Session {
            last_seen: 1500,
            ..live.clone()
        }
    );
    // At 2200 with a cutoff of 1400: "live" was seen at 1500, "idle" at 1000 only.
    let again = pgua::store::open(&t.url).await.unwrap();
    assert!(
        again
            .session_get("live", 2200, 1400)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        again
            .session_get("idle", 2200, 1400)
            .await
            .unwrap()
            .is_none()
    );
    // Past its absolute end, however recently used.
    assert!(s.session_get("over", 2000, 0).await.unwrap().is_none());
    assert!(s.session_get("unknown", 1500, 0).await.unwrap().is_none());

    assert_eq!(
        s.sessions_prune(2200, 1400).await.unwrap(),
        2,
        "idle and over"
    );
    assert!(s.session_delete("live").await.unwrap());
    assert!(!s.session_delete("live").await.unwrap());
    assert!(again.session_get("live", 2300, 0).await.unwrap().is_none());
}

async fn pruning_leaves_a_signed_checkpoint_and_a_verifiable_chain(t: TestStore) {
    let s = &t.store;
    let key: &[u8] = b"audit-test-key";
    let old: Vec<_> = (0..4).map(|n| record(n, at(n, 1))).collect();
    s.audit_append(&old).await.unwrap();
    let recent: Vec<_> = (4..7).map(|n| record(n, Utc::now())).collect();
    s.audit_append(&recent).await.unwrap();
    let cutoff = Utc::now() - chrono::Duration::days(1);
    assert!(
        t.raw("DELETE FROM audit_log").await.is_err(),
        "no pruning around the service"
    );

    let cp = s.audit_prune(cutoff, Some(key)).await.unwrap().unwrap();
    assert_eq!(cp.pruned, 4);
    assert!(cp.signature.starts_with("hmac-sha256:"));
    assert!(
        s.audit_prune(cutoff, Some(key)).await.unwrap().is_none(),
        "nothing left to prune"
    );
    let left = s.audit_after(i64::MIN, 100).await.unwrap();
    assert_eq!(left.len(), 3);
    assert_eq!(left[0].prev_hash, cp.last_hash);

    let v = chain::verify(s.as_ref(), Some(key)).await.unwrap();
    assert_eq!(
        (v.chained, &v.broken, &v.trust),
        (3, &None, &chain::CheckpointTrust::Verified)
    );
    let v = chain::verify(s.as_ref(), None).await.unwrap();
    assert_eq!(
        (&v.broken, &v.trust),
        (&None, &chain::CheckpointTrust::NotChecked)
    );
    let v = chain::verify(s.as_ref(), Some(b"another key"))
        .await
        .unwrap();
    assert!(v.broken.unwrap().reason.contains("forged"));

    // Hiding one more record behind a made-up checkpoint does not pass with the key.
    let (next, hash) = (left[0].id, left[0].hash.clone());
    let forged = format!(
        "INSERT INTO audit_checkpoints (created_at, through_id, last_hash, pruned, signature)
         VALUES ('2030-01-01T00:00:00Z', {next}, '{hash}', 5, 'unsigned')"
    );
    t.raw(&forged).await.unwrap();
    let v = chain::verify(s.as_ref(), Some(key)).await.unwrap();
    assert!(v.broken.unwrap().reason.contains("unsigned"));
}

async fn audit_log_is_an_append_only_verifiable_chain(t: TestStore) {
    let s = &t.store;
    // A row written the original service's way, before pg-user-api's first record.
    t.raw("INSERT INTO audit_log (env, db_name, pg_username, operation, status) VALUES ('dev', 'd', 'bob', 'create', 'success')")
        .await
        .unwrap();
    let batch = |r: std::ops::Range<i64>| r.map(|n| record(n, at(n, 7))).collect::<Vec<_>>();
    s.audit_append(&batch(0..5)).await.unwrap();
    s.audit_append(&batch(5..8)).await.unwrap();
    let v = chain::verify(s.as_ref(), None).await.unwrap();
    assert_eq!((v.chained, v.legacy, v.broken), (8, 1, None));

    let ids: Vec<i64> = s
        .audit_after(i64::MIN, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    let (third, fifth, sixth) = (ids[3], ids[5], ids[6]);
    assert!(
        t.raw(&format!(
            "UPDATE audit_log SET detail = 'x' WHERE id = {third}"
        ))
        .await
        .is_err()
    );
    assert!(
        t.raw(&format!("DELETE FROM audit_log WHERE id = {third}"))
            .await
            .is_err()
    );

    // Someone with direct access removes the guard and forges a record: verify finds it.
    let unguard = match t.backend {
        Backend::Sqlite => {
            "DROP TRIGGER audit_log_append_only_update; DROP TRIGGER audit_log_append_only_delete"
        }
        Backend::Postgres => "DROP TRIGGER audit_log_append_only ON audit_log",
    };
    t.raw(unguard).await.unwrap();
    t.raw(&format!(
        "UPDATE audit_log SET detail = 'user already exists' WHERE id = {third}"
    ))
    .await
    .unwrap();
    let broken = chain::verify(s.as_ref(), None)
        .await
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(broken.id, third);
    assert!(broken.reason.contains("altered"), "{}", broken.reason);
    t.raw(&format!(
        "UPDATE audit_log SET detail = 'detail 2 — ünïcode' WHERE id = {third}"
    ))
    .await
    .unwrap();
    assert_eq!(chain::verify(s.as_ref(), None).await.unwrap().broken, None);
    // A removed record breaks the link of the one after it.
    t.raw(&format!("DELETE FROM audit_log WHERE id = {fifth}"))
        .await
        .unwrap();
    let broken = chain::verify(s.as_ref(), None)
        .await
        .unwrap()
        .broken
        .unwrap();
    assert_eq!(broken.id, sixth);
    assert!(broken.reason.contains("removed"), "{}", broken.reason);
}

fn entry(env: &str, db: &str) -> NewEntry {
    NewEntry {
        env: env.into(),
        db_name: db.into(),
        hostname: "pg-01.example.com".into(),
        port: 6432,
        active: true,
        notes: Some("first".into()),
        sslmode: SslMode::VerifyFull,
    }
}

/// A timestamp with whole microseconds, the precision both backends keep.
fn at(secs: i64, micros: u32) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, micros * 1000)
        .unwrap()
}

fn record(n: i64, at: DateTime<Utc>) -> AuditRecord {
    AuditRecord {
        id: 0,
        performed_at: at,
        request_id: format!("req-{n}"),
        principal: "tester".into(),
        client_addr: "192.0.2.7".into(),
        env: "dev".into(),
        db_name: format!("db_{n}"),
        pg_username: format!("user_{n}"),
        operation: "create:devqa".into(),
        status: if n % 2 == 0 { "intent" } else { "success" }.into(),
        detail: format!("detail {n} — ünïcode"),
        error: (n % 3 == 0).then(|| format!("error {n}")),
        duration_ms: (n % 2 == 1).then_some(n * 10),
        profile: if n % 2 == 1 {
            format!("p{n}@abcd1234")
        } else {
            String::new()
        },
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// The records as stored, ids and chain links cleared, for comparing with what was
/// appended (the chain itself is checked by `audit_log_is_a_verifiable_chain`).
fn without_ids(mut records: Vec<AuditRecord>) -> Vec<AuditRecord> {
    for r in &mut records {
        r.id = 0;
        r.prev_hash.clear();
        r.hash.clear();
    }
    records
}

async fn migrations_are_idempotent(t: TestStore) {
    t.store.registry_add(&entry("dev", "kept")).await.unwrap();
    drop(t.store);
    let again = pgua::store::open(&t.url).await.unwrap();
    let third = pgua::store::open(&t.url).await.unwrap();
    again.ping().await.unwrap();
    assert_eq!(third.registry_list().await.unwrap().len(), 1);
    assert!(again.registry_get("dev", "kept").await.unwrap().is_some());
}

async fn registry_add_get_list_set_active_remove(t: TestStore) {
    let s = &t.store;
    let added = s.registry_add(&entry("qa", "b")).await.unwrap();
    assert!(added.id > 0);
    assert_eq!(
        (
            added.env.as_str(),
            added.db_name.as_str(),
            added.hostname.as_str(),
            added.port,
            added.active,
            added.notes.as_deref(),
            added.sslmode,
        ),
        (
            "qa",
            "b",
            "pg-01.example.com",
            6432,
            true,
            Some("first"),
            SslMode::VerifyFull
        )
    );
    // SQLite's CURRENT_TIMESTAMP format, which clients of the registry endpoint see.
    assert!(
        chrono::NaiveDateTime::parse_from_str(&added.created_at, "%Y-%m-%d %H:%M:%S").is_ok(),
        "{}",
        added.created_at
    );
    let mut inactive = entry("dev", "z");
    inactive.active = false;
    inactive.notes = None;
    inactive.sslmode = SslMode::Prefer;
    s.registry_add(&inactive).await.unwrap();
    s.registry_add(&entry("dev", "a")).await.unwrap();

    assert_eq!(
        s.registry_get("qa", "b").await.unwrap(),
        Some(added.clone())
    );
    assert_eq!(s.registry_get("qa", "nope").await.unwrap(), None);
    let z = s.registry_get("dev", "z").await.unwrap().unwrap();
    assert_eq!(
        (z.active, z.notes, z.sslmode),
        (false, None, SslMode::Prefer)
    );

    let listed: Vec<(String, String)> = s
        .registry_list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.env, e.db_name))
        .collect();
    let pair = |e: &str, d: &str| (e.to_owned(), d.to_owned());
    assert_eq!(
        listed,
        [pair("dev", "a"), pair("dev", "z"), pair("qa", "b")],
        "ordered by env, then database"
    );

    assert!(s.registry_set_active("qa", "b", false).await.unwrap());
    assert!(!s.registry_get("qa", "b").await.unwrap().unwrap().active);
    assert!(s.registry_set_active("qa", "b", true).await.unwrap());
    assert!(s.registry_get("qa", "b").await.unwrap().unwrap().active);
    assert!(!s.registry_set_active("qa", "nope", true).await.unwrap());

    assert!(s.registry_remove("qa", "b").await.unwrap());
    assert!(!s.registry_remove("qa", "b").await.unwrap());
    assert_eq!(s.registry_get("qa", "b").await.unwrap(), None);
    assert_eq!(s.registry_list().await.unwrap().len(), 2);
}

async fn duplicate_registry_entry_is_reported_as_duplicate(t: TestStore) {
    t.store.registry_add(&entry("dev", "app")).await.unwrap();
    let mut again = entry("dev", "app");
    again.hostname = "elsewhere".into();
    match t.store.registry_add(&again).await {
        Err(StoreError::Duplicate { env, db_name }) => {
            assert_eq!((env.as_str(), db_name.as_str()), ("dev", "app"));
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    let kept = t.store.registry_get("dev", "app").await.unwrap().unwrap();
    assert_eq!(kept.hostname, "pg-01.example.com");
    // Same database name in another environment is a different entry.
    t.store.registry_add(&entry("qa", "app")).await.unwrap();
}

async fn audit_batch_keeps_order_and_every_field(t: TestStore) {
    // All with one timestamp, so only the batch order tells them apart.
    let batch: Vec<AuditRecord> = (1..=50).map(|n| record(n, at(0, 123_456))).collect();
    t.store.audit_append(&batch).await.unwrap();
    t.store.audit_append(&[]).await.unwrap();
    let stored = t.store.audit_after(i64::MIN, 1000).await.unwrap();
    assert!(
        stored.windows(2).all(|w| w[0].id < w[1].id),
        "ids follow the batch order"
    );
    assert_eq!(without_ids(stored), batch);
}

async fn audit_latest_is_newest_first_with_limit(t: TestStore) {
    let older = record(1, at(0, 1));
    let newest = record(2, at(60, 0));
    let middle = record(3, at(30, 999_999));
    t.store
        .audit_append(&[older.clone(), newest.clone(), middle.clone()])
        .await
        .unwrap();
    // Same timestamp as `newest`, appended later: the higher id comes first.
    let tie = record(4, at(60, 0));
    t.store
        .audit_append(std::slice::from_ref(&tie))
        .await
        .unwrap();
    let latest = without_ids(t.store.audit_latest(3).await.unwrap());
    assert_eq!(latest, [tie, newest, middle]);
    assert_eq!(t.store.audit_latest(100).await.unwrap().len(), 4);
    assert_eq!(
        without_ids(t.store.audit_latest(100).await.unwrap())[3],
        older
    );
}

async fn audit_after_pages_through_the_whole_log(t: TestStore) {
    let batch: Vec<AuditRecord> = (0..25).map(|n| record(n, at(n, 0))).collect();
    t.store.audit_append(&batch).await.unwrap();
    let mut seen = Vec::new();
    let mut last = i64::MIN;
    loop {
        let page = t.store.audit_after(last, 10).await.unwrap();
        let Some(tail) = page.last() else { break };
        assert!(page.len() <= 10);
        last = tail.id;
        seen.extend(page);
    }
    assert_eq!(without_ids(seen), batch);
}

#[tokio::test]
async fn concurrent_opens_of_a_fresh_postgres_store_all_succeed() {
    let url = fresh_postgres_store_url().await;
    let opens: Vec<_> = (0..5)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { pgua::store::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        stores.push(open.await.unwrap().expect("every replica opens the store"));
    }
    let first = stores[0]
        .registry_add(&entry("dev", "shared"))
        .await
        .unwrap();
    for s in &stores {
        assert_eq!(
            s.registry_get("dev", "shared").await.unwrap(),
            Some(first.clone())
        );
    }
    let (user, pass, port, db) = parse_test_url(&url);
    let c = crate::support::connect(port, &db, &user, &pass)
        .await
        .unwrap();
    let versions: Vec<i64> = c
        .query("SELECT version FROM pgua_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (1..=versions.len() as i64).collect();
    assert_eq!(versions, expected, "each migration applied exactly once");
    assert!(versions.len() >= 4);
}

/// Pulls user, password, port and database out of a URL from `fresh_postgres_store_url`.
fn parse_test_url(url: &str) -> (String, String, u16, String) {
    let rest = url.strip_prefix("postgres://").unwrap();
    let (userinfo, hostpart) = rest.split_once('@').unwrap();
    let (user, pass) = userinfo.split_once(':').unwrap();
    let (hostport, db) = hostpart.split_once('/').unwrap();
    let port = hostport.rsplit_once(':').unwrap().1.parse().unwrap();
    (user.into(), pass.into(), port, db.into())
}

#[tokio::test]
async fn service_works_end_to_end_on_a_shared_postgres_store() {
    let url = fresh_postgres_store_url().await;
    // Two replicas behind one load balancer, sharing the store.
    let a = spawn_app_with_store(pgua::config::Config::default(), &url).await;
    let b = spawn_app_with_store(pgua::config::Config::default(), &url).await;

    let ready = a.get_as("/readyz", None).await;
    assert_eq!((ready.status.as_u16(), ready.str("store")), (200, "ok"));
    let registry = b.get("/api/v1/registry", &[]).await;
    assert_eq!(registry.status, 200, "{}", registry.body);
    assert_eq!(registry.body["count"], json!(4), "{}", registry.body);

    let name = unique("pgstore");
    let created = a
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.body);
    assert_eq!(created.str("status"), "user created");
    let again = b
        .get(
            "/api/v1/users/devqa",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(again.str("status"), "user already exists");
    let found = b
        .get(
            "/api/v1/users/find",
            &[("env", "dev"), ("database", "dev"), ("username", &name)],
        )
        .await;
    assert_eq!(found.body["found"], json!(true), "{}", found.body);
    assert!(a.dev_role_exists(&name).await);

    // Both replicas' records are in the one audit log, intent before outcome.
    let mine: Vec<AuditRecord> = a
        .audit()
        .await
        .into_iter()
        .filter(|r| r.pg_username == name && r.operation == "create:devqa")
        .collect();
    let phases: Vec<(&str, &str)> = mine
        .iter()
        .map(|r| (r.status.as_str(), r.detail.as_str()))
        .collect();
    assert_eq!(phases.len(), 4, "{phases:?}");
    assert_eq!(phases[0].0, "intent");
    assert_eq!(phases[1], ("success", "user created"));
    assert_eq!(phases[2].0, "intent");
    assert_eq!(phases[3], ("success", "user already exists"));
    assert!(mine.iter().all(|r| r.principal == "tester"));
}

/// [`HOSTILE`] as every store keeps it: each control character as `\uXXXX`, the rest as sent.
const HOSTILE_STORED: &str = r#"n\u0000l\u0001e\u001b[31md\u007fc\u0085'q"b\s"#;

async fn hostile_text_is_stored_escaped_found_by_its_raw_spelling_and_chained(t: TestStore) {
    let s = &t.store;
    let mut r = record(1, at(1, 1));
    for field in [
        &mut r.request_id,
        &mut r.principal,
        &mut r.client_addr,
        &mut r.env,
        &mut r.db_name,
        &mut r.pg_username,
        &mut r.operation,
        &mut r.profile,
        &mut r.status,
        &mut r.detail,
    ] {
        *field = HOSTILE.to_owned();
    }
    r.error = Some(HOSTILE.to_owned());
    s.audit_append(&[r.clone(), record(2, at(2, 2))])
        .await
        .expect("a record with NUL is stored, not lost");
    let stored = s.audit_after(i64::MIN, 10).await.unwrap();
    assert_eq!(stored.len(), 2);
    let got = &stored[0];
    for field in [
        &got.request_id,
        &got.principal,
        &got.client_addr,
        &got.env,
        &got.db_name,
        &got.pg_username,
        &got.operation,
        &got.profile,
        &got.status,
        &got.detail,
    ] {
        assert_eq!(field, HOSTILE_STORED);
    }
    assert_eq!(got.error.as_deref(), Some(HOSTILE_STORED));
    let v = chain::verify(s.as_ref(), None).await.unwrap();
    assert_eq!(
        (v.chained, v.broken),
        (2, None),
        "the hash covers what is stored"
    );
    // A filter spelled as the caller sent it finds the record.
    let found = s
        .audit_query(&pgua::store::AuditFilter {
            username: Some(HOSTILE.into()),
            principal: Some(HOSTILE.into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(found.len(), 1);

    let mut e = entry("dev", "notes");
    e.notes = Some(HOSTILE.into());
    assert_eq!(
        s.registry_add(&e).await.unwrap().notes.as_deref(),
        Some(HOSTILE_STORED)
    );
    e.notes = Some(format!("again {HOSTILE}"));
    assert!(s.registry_update(&e).await.unwrap());
    let got = s.registry_get("dev", "notes").await.unwrap().unwrap();
    assert_eq!(got.notes, Some(format!("again {HOSTILE_STORED}")));
    // Looking up a name PostgreSQL could not hold answers "none", not an error.
    assert_eq!(s.registry_get(HOSTILE, HOSTILE).await.unwrap(), None);
    assert!(!s.registry_remove(HOSTILE, HOSTILE).await.unwrap());
    assert!(!s.registry_set_active(HOSTILE, "x", true).await.unwrap());

    let scopes = pgua::auth::Scopes::all();
    let (key, _) = pgua::service::keys::create(s.as_ref(), "hostile", HOSTILE, &scopes, None)
        .await
        .unwrap();
    assert_eq!(key.owner, HOSTILE_STORED);
    assert_eq!(s.key_list().await.unwrap()[0].owner, HOSTILE_STORED);
}

/// Parameter values as a client sends them, percent-encoded: NUL, a C0 control, ESC, DEL,
/// invalid UTF-8, quotes, a backslash.
const HOSTILE_PARAMS: [&str; 7] = [
    "acc%00x",
    "a%01b",
    "e%1B%5B31m",
    "d%7Fl",
    "bad%FF%FEutf8",
    "q%27%22uote",
    "back%5Cslash",
];

/// Sends every hostile value in every parameter of a few endpoints; the request ids.
async fn send_hostile_requests(app: &TestApp) -> Vec<String> {
    let mut sent = Vec::new();
    let mut send = async |path: &str, query: String| {
        let res = app
            .client
            .get(format!("{}{path}?{query}", app.base))
            .basic_auth(&app.user, Some(&app.pass))
            .send()
            .await
            .unwrap();
        sent.push(res.headers()["x-request-id"].to_str().unwrap().to_owned());
    };
    for path in [
        "/api/v1/users/find",
        "/api/v1/users/devqa",
        "/api/v1/users/reset",
    ] {
        for param in ["env", "database", "username"] {
            for bad in HOSTILE_PARAMS {
                let query = [
                    ("env", "dev"),
                    ("database", "dev"),
                    ("username", "hostile_ok"),
                ]
                .map(|(k, v)| format!("{k}={}", if k == param { bad } else { v }))
                .join("&");
                send(path, query).await;
            }
        }
    }
    for bad in HOSTILE_PARAMS {
        let fields = format!("env=dev&database={bad}&host=127.0.0.1&port=5432");
        send("/api/v1/registry/add", format!("{fields}&sslmode={bad}")).await;
        send("/api/v1/registry/remove", fields).await;
        let notes = format!("env=dev&database={}&host=h&notes={bad}", unique("notes"));
        send("/api/v1/registry/add", notes).await;
    }
    // A JSON string holds a NUL as well.
    let res = app
        .post_json(
            "/api/v1/users/find",
            json!({"env": "dev", "database": "dev", "username": "json\0nul"}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
    sent.push(res.headers["x-request-id"].to_str().unwrap().to_owned());
    sent
}

async fn hostile_bytes_in_every_parameter_are_audited_and_the_log_migrates_and_verifies(
    t: TestStore,
) {
    let app = spawn_app_with_store(pgua::config::Config::default(), &t.url).await;
    let sent = send_hostile_requests(&app).await;
    let records = app.audit().await;
    for id in &sent {
        assert!(
            records
                .iter()
                .any(|r| &r.request_id == id && r.status != "intent"),
            "request {id} has its outcome's audit record"
        );
    }
    let shown = |r: &AuditRecord| {
        [&r.env, &r.db_name, &r.pg_username, &r.detail]
            .into_iter()
            .chain(&r.error)
            .any(|f| f.contains(r"acc\u0000x"))
    };
    assert!(records.iter().any(shown), "the record shows what was sent");
    assert!(
        records.iter().all(|r| {
            [&r.env, &r.db_name, &r.pg_username, &r.detail]
                .into_iter()
                .chain(&r.error)
                .all(|f| !f.chars().any(char::is_control))
        }),
        "no control character is stored"
    );
    let entries = app.store.registry_list().await.unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.notes.as_deref() == Some(r"acc\u0000x"))
    );
    assert!(entries.iter().all(|e| {
        !e.notes
            .as_deref()
            .unwrap_or_default()
            .contains(char::is_control)
    }));

    let verify = |url: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pg-user-api"))
            .args(["audit", "verify", "--store", url])
            .env_remove("PGUA_CONFIG")
            .env_remove("PGUA_AUDIT_KEY")
            .output()
            .unwrap()
    };
    let out = verify(&t.url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Backend::Sqlite = t.backend {
        let to = fresh_postgres_store_url().await;
        let out = crate::cli::run_store_migrate(&t.url, &to);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = verify(&to);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let copied = pgua::store::open(&to).await.unwrap();
        assert_eq!(
            copied.audit_latest(100_000).await.unwrap().len(),
            records.len()
        );
    }
}

#[tokio::test]
async fn an_entry_inserted_with_plain_sql_while_the_server_runs_is_found_at_once() {
    use sqlx::Connection;
    let app = crate::support::spawn_app().await;
    let db = unique("bysql");
    let su = app.clusters.dev.superuser("postgres").await;
    su.batch_execute(&format!("CREATE DATABASE {db}"))
        .await
        .unwrap();
    let find = [
        ("env", "dev"),
        ("database", db.as_str()),
        ("username", "nobody_here"),
    ];
    // The first call reads the registry into the snapshot.
    let warm = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", "nobody_here"),
    ];
    assert_eq!(app.get("/api/v1/users/find", &warm).await.status, 200);

    // The original's documented way: sqlite3 pg_registry.db "INSERT INTO db_registry …".
    let mut c = sqlx::SqliteConnection::connect(&app.store_url)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO db_registry (env, db_name, hostname, port, active, notes, sslmode)
         VALUES ('dev', ?, '127.0.0.1', ?, 1, 'by hand', 'disable')",
    )
    .bind(&db)
    .bind(i64::from(app.clusters.dev.port))
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();

    let after = app.get("/api/v1/users/find", &find).await;
    assert_eq!(
        after.status, 200,
        "found without waiting for the snapshot: {}",
        after.body
    );
    assert_eq!(after.body["found"], json!(false), "{}", after.body);
}

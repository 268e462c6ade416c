//! The audit trail: export as JSON and CSV compared with the store, filters and paging,
//! and `audit verify` catching a record altered in the store.

use std::process::Command;

use pgua::service::audit::CSV_HEADER;
use sqlx::Connection;

use crate::support::{TestApp, spawn_app, unique};

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

async fn some_history(app: &TestApp) -> String {
    let name = unique("aud");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", name.as_str()),
    ];
    app.get("/api/v1/users/devqa", &q).await;
    app.get("/api/v1/users/reset", &q).await;
    app.get("/api/v1/users/find", &q).await;
    app.get(
        "/api/v1/users/devqa",
        &[
            ("env", "dev"),
            ("database", "dev"),
            ("username", "=cmd|' /C calc'!A0"),
        ],
    )
    .await;
    // The find's and the refusal's outcomes are queued, not waited for by their calls.
    app.flush_audit().await;
    name
}

fn audit_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["audit"])
        .args(args)
        .env("PGUA_STORE", &app.store_url)
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap()
}

#[tokio::test]
async fn json_and_csv_exports_match_the_store() {
    let app = spawn_app().await;
    some_history(&app).await;
    let stored = app.store.audit_after(i64::MIN, 10_000).await.unwrap();
    assert_eq!(
        stored.len(),
        6,
        "create and reset (intent, outcome), find, a refused create"
    );

    let r = app.get("/api/v1/audit", &[("format", "json")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["records"], serde_json::to_value(&stored).unwrap());
    assert!(r.body["next_after_id"].is_null());

    let res = app
        .client
        .get(format!("{}/api/v1/audit?format=csv", app.base))
        .basic_auth(&app.user, Some(&app.pass))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
    let text = res.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(header, CSV_HEADER);
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.len(),
        stored.len() + 1,
        "the JSON export was audited in between"
    );
    for (row, rec) in rows.iter().zip(&stored) {
        assert_eq!(row[0], rec.id.to_string());
        assert_eq!(
            &row[1],
            rec.performed_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        );
        assert!(row[1].ends_with('Z'), "UTC");
        assert_eq!(
            (&row[8], &row[10], &row[15]),
            (
                rec.operation.as_str(),
                rec.status.as_str(),
                rec.hash.as_str()
            )
        );
        assert_eq!(row[6], rec.db_name);
    }
    // The hostile name is stored as sent, but the cell cannot run as a formula.
    assert!(rows.iter().any(|r| r[7].starts_with("'=cmd")), "{text}");
}

/// A read's record is queued, not waited for by the read; an export stores what is queued
/// first, so a caller always finds its own reads.
#[tokio::test]
async fn an_export_right_after_reads_holds_their_records() {
    let app = spawn_app().await;
    let name = unique("own");
    for n in 1..=5 {
        let q = [
            ("env", "dev"),
            ("database", "dev"),
            ("username", name.as_str()),
        ];
        assert_eq!(app.get("/api/v1/users/find", &q).await.status, 200);
        let r = app
            .get("/api/v1/audit", &[("username", name.as_str())])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let finds = r.body["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["operation"] == "find")
            .count();
        assert_eq!(finds, n, "{}", r.body);
    }
}

#[tokio::test]
async fn exports_filter_and_page() {
    let app = spawn_app().await;
    let name = some_history(&app).await;
    let r = app
        .get(
            "/api/v1/audit",
            &[("operation", "create"), ("username", &name)],
        )
        .await;
    let ops: Vec<&str> = r.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["create:devqa", "create:devqa"], "intent and outcome");
    let r = app.get("/api/v1/audit", &[("since", "2999-01-01")]).await;
    assert_eq!(r.body["records"].as_array().unwrap().len(), 0);
    let r = app
        .get("/api/v1/audit", &[("principal", "tester"), ("limit", "2")])
        .await;
    assert_eq!(r.body["records"].as_array().unwrap().len(), 2);
    let next = r.headers["x-next-after-id"].to_str().unwrap().to_owned();
    assert_eq!(r.body["next_after_id"].to_string(), next);
    let page2 = app
        .get("/api/v1/audit", &[("after_id", &next), ("limit", "2")])
        .await;
    assert!(page2.body["records"][0]["id"].as_i64().unwrap() > next.parse::<i64>().unwrap());
    for bad in [
        ("format", "xml"),
        ("since", "yesterday"),
        ("limit", "100000"),
    ] {
        assert_eq!(
            app.get("/api/v1/audit", &[bad]).await.status,
            422,
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn audit_verify_passes_then_catches_an_altered_record() {
    let app = spawn_app().await;
    some_history(&app).await;
    let ok = audit_cli(&app, &["verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("audit chain intact"));

    let out_file = tempfile::NamedTempFile::new().unwrap();
    let export = audit_cli(
        &app,
        &[
            "export",
            "--format",
            "csv",
            "--output",
            out_file.path().to_str().unwrap(),
        ],
    );
    assert!(export.status.success());
    let mut reader = csv::Reader::from_path(out_file.path()).unwrap();
    let hashes: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[15].to_owned())
        .collect();
    let stored = app.store.audit_after(i64::MIN, 10_000).await.unwrap();
    assert_eq!(
        hashes,
        stored.iter().map(|r| r.hash.clone()).collect::<Vec<_>>()
    );

    // Someone with write access to the file changes an outcome after the fact.
    let victim = stored
        .iter()
        .find(|r| r.detail == "password reset")
        .unwrap()
        .id;
    let mut db = sqlx::SqliteConnection::connect(&app.store_url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TRIGGER audit_log_append_only_update;
         UPDATE audit_log SET principal = 'someone-else' WHERE id = {victim}"
    )))
    .execute(&mut db)
    .await
    .unwrap();
    let bad = audit_cli(&app, &["verify"]);
    assert!(!bad.status.success());
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(
        msg.contains(&format!("broken at record #{victim}")),
        "{msg}"
    );
}

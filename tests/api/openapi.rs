//! The OpenAPI document: served, committed, and true to the router.

use reqwest::StatusCode;
use serde_json::Value;

use pgua::config::Config;

use crate::support::{spawn_app, spawn_app_with};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

/// The served document is the committed one, so every API change shows in review.
/// `PGUA_BLESS=1 cargo test openapi` rewrites the file after an intended change.
#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app().await;
    let res = app
        .client
        .get(format!("{}/api/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let served: Value = res.json().await.unwrap();
    assert_eq!(served["openapi"], "3.1.0");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("PGUA_BLESS").is_some() {
        std::fs::write(COMMITTED, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == pretty,
        "the served OpenAPI document differs from openapi.json; if the change is intended, \
         run `PGUA_BLESS=1 cargo test openapi` and commit the file"
    );

    // The CLI prints the same document for the same configuration.
    let out = std::process::Command::new(BIN)
        .arg("openapi")
        .env_remove("PGUA_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, served);
}

/// Every documented operation is routed (public ones answer, the API asks for credentials),
/// and every profile has its own path with its own parameters.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    // Every unauthenticated call counts as a failure; keep them from being slowed down.
    let mut config = Config::default();
    config.auth.slowdown_after_failures = 1000;
    config.auth.lockout_after_failures = 1000;
    let app = spawn_app_with(config).await;
    let doc = app.get("/api/openapi.json", &[]).await.body;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{} paths", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        for method in ["get", "post"] {
            let Some(op) = item.get(method) else { continue };
            let res = app
                .client
                .request(
                    method.to_ascii_uppercase().parse().unwrap(),
                    format!("{}{path}", app.base),
                )
                .send()
                .await
                .unwrap();
            let expected = if op.get("security").is_some() {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::OK
            };
            assert_eq!(res.status(), expected, "{method} {path}");
            let documented = op["responses"]
                .as_object()
                .unwrap()
                .contains_key(res.status().as_str());
            assert!(documented, "{method} {path} answers an undocumented status");
            checked += 1;
        }
    }
    assert!(checked >= 55, "{checked} operations");

    let app_k8s = &paths["/api/v1/users/app-k8s"]["get"]["parameters"];
    let names: Vec<&str> = app_k8s
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["env", "database", "env_prefix", "farmname", "dry_run"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(!paths.contains_key("/api/v1/users/{profile}"));
    // POST takes the fields as a body, GET as the query string.
    let post = &paths["/api/v1/users/reset"]["post"];
    assert!(post.get("parameters").is_none());
    let body = &post["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(
        body["required"],
        serde_json::json!(["env", "database", "username"])
    );
}

/// The documentation page works offline: served from the binary, nothing fetched elsewhere.
#[tokio::test]
async fn the_documentation_page_is_served_from_the_binary() {
    let app = spawn_app().await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.base)).send();
    let page = get("/docs/").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in [
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-initializer.js",
    ] {
        assert!(html.contains(asset), "{asset} not in the page");
        let res = get(&format!("/docs/{asset}")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{asset}");
        let text = res.text().await.unwrap();
        assert!(text.len() > 100, "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(text.contains("/api/openapi.json"), "{text}");
        }
    }
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
}

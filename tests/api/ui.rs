//! The web console at `/ui`: its assets and headers over plain HTTP, then the whole page
//! driven in a real headless browser (Debian's chromium through playwright-core, see
//! `tests/ui/console.mjs`), which saves a screenshot of each page in
//! `target/ui-screenshots/console`; and single sign-on through a real OpenID Provider
//! (`tests/ui/sso.mjs`, screenshots in `target/ui-screenshots/sso`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::sso::{sso_config, start_provider};
use crate::support::{TestApp, closed_port, found, spawn_app, spawn_app_with};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[tokio::test]
async fn console_assets_are_served_with_a_strict_policy_and_no_auth() {
    let app = spawn_app().await;
    for (path, content_type) in [
        ("/ui", "text/html; charset=utf-8"),
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/style.css", "text/css; charset=utf-8"),
    ] {
        let res = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let header = |name: &str| {
            res.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("content-type"), content_type, "{path}");
        assert_eq!(header("content-security-policy"), CSP, "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{path} links outside"
        );
        if content_type.starts_with("text/html") {
            assert!(body.contains(r#"<script type="module" src="/ui/app.js"></script>"#));
            assert!(
                !body.contains("<script>") && !body.contains("style="),
                "inline code in {path}"
            );
        }
    }
    let js = app
        .client
        .get(format!("{}/ui/app.js", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for forbidden in [
        "innerHTML",
        "localStorage",
        "sessionStorage",
        "document.cookie",
    ] {
        assert!(!js.contains(forbidden), "app.js uses {forbidden}");
    }
}

async fn run(cmd: &mut Command, what: &str, limit: Duration) -> std::process::Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
        .unwrap()
}

fn show(output: &std::process::Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Held while a browser runs: two Chromiums at once on a small machine slow each other past
/// the page timeouts.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a browser test needs: Chromium's path, `tests/ui` with its packages installed, and
/// an emptied screenshot directory `target/ui-screenshots/<name>`.
async fn browser_test(name: &str) -> (String, PathBuf, PathBuf) {
    let chromium =
        std::env::var("PGUA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: the browser test needs Debian's chromium \
         (apt-get install chromium), or PGUA_CHROMIUM naming another Chromium"
    );
    assert!(
        found("node") && found("npm"),
        "node and npm are missing: the browser test needs Node.js (apt-get install nodejs npm)"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scripts = root.join("tests/ui");
    if !scripts.join("node_modules/playwright-core").exists() {
        let out = run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&scripts),
            "npm ci",
            Duration::from_secs(300),
        )
        .await;
        assert!(out.status.success(), "npm ci failed\n{}", show(&out));
    }
    let shots = root.join("target/ui-screenshots").join(name);
    std::fs::create_dir_all(&shots).unwrap();
    for old in std::fs::read_dir(&shots).unwrap() {
        let old = old.unwrap().path();
        if old.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(old).unwrap();
        }
    }
    (chromium, scripts, shots)
}

/// Runs `tests/ui/<script>` against `app`, one browser at a time, and checks that it
/// passed and saved each of `screenshots`.
async fn drive(script: &str, app: &TestApp, screenshots: &[&str]) {
    let name = script.trim_end_matches(".mjs");
    let (chromium, scripts, shots) = browser_test(name).await;
    let _browser = ONE_BROWSER.lock().await;
    let started = Instant::now();
    let out = run(
        Command::new("node")
            .arg(scripts.join(script))
            .env("PGUA_UI_BASE_URL", &app.base)
            .env("PGUA_UI_USER", &app.user)
            .env("PGUA_UI_PASS", &app.pass)
            .env("PGUA_UI_SCREENSHOTS", &shots)
            .env("PGUA_CHROMIUM", &chromium)
            .current_dir(&scripts),
        script,
        Duration::from_secs(180),
    )
    .await;
    assert!(out.status.success(), "{script} failed\n{}", show(&out));
    println!("{script} took {:?}\n{}", started.elapsed(), show(&out));
    for name in screenshots {
        let png = std::fs::read(shots.join(format!("{name}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}.png is a PNG");
    }
}

#[tokio::test]
async fn console_works_in_a_real_browser() {
    let app = spawn_app().await;
    drive(
        "console.mjs",
        &app,
        &[
            "01-sign-in",
            "02-registry",
            "03-create-password-shown",
            "04-user-lookup",
            "05-audit",
            "06-read-only",
            "07-api-docs",
        ],
    )
    .await;
}

#[tokio::test]
async fn console_signs_in_through_single_sign_on_in_a_real_browser() {
    let port = closed_port();
    let provider = start_provider(&[format!("http://127.0.0.1:{port}/auth/oidc/callback")]).await;
    let app = spawn_app_with(sso_config(&provider.issuer, port, 600, 3600)).await;
    drive(
        "sso.mjs",
        &app,
        &[
            "08-sso-offered",
            "09-sso-signed-in",
            "10-sso-created",
            "11-sso-signed-out",
        ],
    )
    .await;
    let audit = app.audit().await;
    assert!(
        audit
            .iter()
            .any(|r| r.operation == "create:devqa" && r.principal == "oidc:alice@example.com"),
        "the create is audited as the person"
    );
}

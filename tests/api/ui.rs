//! The web console at `/ui`: its assets and headers over plain HTTP.

use crate::support::spawn_app;

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

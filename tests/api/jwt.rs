//! Machine identity: JWT bearer tokens from the tests' own HTTPS issuer, bound to
//! principals and scopes; every refusal precise in the audit and in `auth check-token`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pgua::config::Config;
use serde_json::{Value, json};

use crate::support::issuer::{SigningKey, TestIssuer};
use crate::support::{
    TestApp, fresh_postgres_store_url, spawn_app_with, spawn_app_with_store, unique,
};

const AUD: &str = "pg-user-api";

/// A configuration trusting `issuer` (by discovery) with two bindings for `acme/web`: its
/// main branch (read and create devqa users in dev) and its release tags, plus `extra` TOML
/// lines for the issuer.
fn config(issuer: &TestIssuer, extra: &str) -> Config {
    let text = format!(
        r#"
[auth]
slowdown_after_failures = 1000
lockout_after_failures = 1000
principal_lockout_after_failures = 1000

[[auth.jwt.issuers]]
issuer = "{url}"
discovery = true
audiences = ["{AUD}"]
ca_file = "{ca}"
{extra}

[[auth.jwt.bindings]]
name = "web-main"
issuer = "{url}"
claims = {{ repository = "acme/web", ref = "refs/heads/main" }}
principal = "ci:{{repository}}@{{ref}}"
scopes = {{ environments = ["dev"], operations = ["read", "create"], profiles = ["devqa"] }}

[[auth.jwt.bindings]]
name = "web-release"
issuer = "{url}"
claims = {{ repository = "acme/web", ref = "refs/tags/v*" }}
principal = "ci:{{repository}}@{{ref}}"
scopes = {{ environments = ["dev"], operations = ["read"], profiles = [] }}

[[auth.jwt.bindings]]
name = "deploy-once"
issuer = "{url}"
claims = {{ repository = "acme/deploy" }}
principal = "deploy:{{sub}}"
scopes = {{ environments = ["dev"], operations = ["read"], profiles = [] }}
single_use = true
"#,
        url = issuer.url,
        ca = issuer.ca_file.display(),
    );
    let config: Config = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config
}

fn main_branch(issuer: &TestIssuer, sub: &str) -> Value {
    issuer.claims(
        AUD,
        json!({"sub": sub, "repository": "acme/web", "ref": "refs/heads/main"}),
    )
}

/// A `find` in dev: in the scope of every binding here.
const FIND: [(&str, &str); 3] = [
    ("env", "dev"),
    ("database", "dev"),
    ("username", "nobody_here"),
];

/// The audit error recorded for the latest refusal of `sub`'s token.
async fn refusal_of(app: &TestApp, sub: &str) -> String {
    let records = app.audit().await;
    let mine = records
        .iter()
        .rev()
        .find(|r| r.operation == "auth" && r.principal.ends_with(&format!(" sub={sub}")));
    let mine = mine.unwrap_or_else(|| panic!("no refusal record for {sub}: {records:?}"));
    mine.error.clone().unwrap_or_default()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// The refusal cases the issue names: (sub, token, what the refusal must say).
fn bad_tokens(
    issuer: &TestIssuer,
    rsa: &SigningKey,
    ghost: &SigningKey,
) -> Vec<(String, String, String)> {
    let now = chrono::Utc::now().timestamp();
    let case = |name: &str, edit: &dyn Fn(&mut Value)| {
        let sub = unique(name);
        let mut claims = main_branch(issuer, &sub);
        edit(&mut claims);
        (sub, claims)
    };
    let mut out = Vec::new();
    let (sub, c) = case("expired", &|c| {
        c["exp"] = json!(now - 3600);
        c["iat"] = json!(now - 7200);
    });
    out.push((
        sub,
        rsa.sign(&c),
        "JWT refused (exp): expired at".to_owned(),
    ));
    let (sub, c) = case("early", &|c| c["nbf"] = json!(now + 3600));
    out.push((
        sub,
        rsa.sign(&c),
        "JWT refused (nbf): not valid before".to_owned(),
    ));
    let (sub, c) = case("future", &|c| c["iat"] = json!(now + 3600));
    out.push((
        sub,
        rsa.sign(&c),
        "JWT refused (iat): issued in the future".to_owned(),
    ));
    let (sub, c) = case("wrongaud", &|c| c["aud"] = json!("someone-else"));
    out.push((
        sub,
        rsa.sign(&c),
        format!("JWT refused (aud): audience \"someone-else\" is none of {AUD}"),
    ));
    let (sub, c) = case("noaud", &|c| {
        c.as_object_mut().unwrap().remove("aud");
    });
    out.push((
        sub,
        rsa.sign(&c),
        "JWT refused (aud): the token has no 'aud' claim".to_owned(),
    ));
    let (sub, c) = case("otherrepo", &|c| c["repository"] = json!("acme/other"));
    out.push((
        sub,
        rsa.sign(&c),
        "JWT refused (binding): no binding matches".to_owned(),
    ));
    let (sub, c) = case("badtag", &|c| c["ref"] = json!("refs/tags/x1"));
    out.push((
        sub,
        rsa.sign(&c),
        "claim 'ref' is \"refs/tags/x1\", wanted 'refs/tags/v*'".to_owned(),
    ));
    let (sub, c) = case("algnone", &|_| {});
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&c)
    );
    out.push((
        sub,
        none,
        "JWT refused (algorithm): algorithm 'none' is not allowed".to_owned(),
    ));
    let (sub, c) = case("hmac", &|_| {});
    // The classic confusion attack: the issuer's public key used as an HMAC secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(rsa.kid.clone());
    let secret = EncodingKey::from_secret(rsa.jwk.to_string().as_bytes());
    out.push((
        sub,
        jsonwebtoken::encode(&header, &c, &secret).unwrap(),
        "JWT refused (algorithm): algorithm 'HS256' is not allowed".to_owned(),
    ));
    let (sub, c) = case("tampered", &|_| {});
    let signed = rsa.sign(&c);
    let parts: Vec<&str> = signed.split('.').collect();
    let mut forged = c.clone();
    forged["ref"] = json!("refs/heads/main");
    forged["repository"] = json!("acme/web");
    forged["environment"] = json!("production");
    let tampered = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
    out.push((
        sub,
        tampered,
        "JWT refused (signature): the signature does not verify".to_owned(),
    ));
    let (sub, c) = case("ghost", &|_| {});
    out.push((
        sub,
        ghost.sign(&c),
        format!(
            "JWT refused (key): unknown kid '{}', also after refetching",
            ghost.kid
        ),
    ));
    out
}

#[tokio::test]
async fn a_bound_token_gets_exactly_its_bindings_scopes_and_is_audited_by_identity() {
    let (rsa, ec) = (SigningKey::rsa("rsa-1"), SigningKey::ec("ec-1"));
    let issuer = TestIssuer::start(&[&rsa, &ec]).await;
    let app = spawn_app_with(config(&issuer, "")).await;

    for key in [&rsa, &ec] {
        let sub = unique("repo");
        let token = key.sign(&main_branch(&issuer, &sub));
        let found = app.get_bearer(&token, "/api/v1/users/find", &FIND).await;
        assert_eq!(found.status, 200, "{:?}: {}", key.alg, found.body);

        let me = app.get_bearer(&token, "/api/v1/me", &[]).await;
        assert_eq!(me.status, 200, "{}", me.body);
        assert_eq!(me.body["principal"], "ci:acme/web@refs/heads/main");
        assert_eq!(me.body["identity"]["binding"], "web-main");
        assert_eq!(me.body["identity"]["subject"], sub.as_str());
        assert_eq!(me.body["identity"]["issuer"], issuer.url.as_str());

        let name = unique("jwtdev");
        let created = app
            .get_bearer(
                &token,
                "/api/v1/users/devqa",
                &[("env", "dev"), ("database", "dev"), ("username", &name)],
            )
            .await;
        assert_eq!(created.status, 200, "{}", created.body);
        // Out of scope: 403 naming the scope, as for an API key.
        for (path, env, missing) in [
            ("/api/v1/users/find", "prod", "environment 'prod'"),
            ("/api/v1/users/drop", "dev", "operation 'drop'"),
        ] {
            let q = [("env", env), ("database", env), ("username", name.as_str())];
            let r = app.get_bearer(&token, path, &q).await;
            assert_eq!(r.status, 403, "{path}: {}", r.body);
            let error = r.body["error"].as_str().unwrap();
            assert!(
                error.contains(&format!("lacks the scope for {missing}")),
                "{error}"
            );
        }

        let jti = token_claim(&token, "jti");
        let records = app.audit().await;
        let create = records
            .iter()
            .find(|r| r.pg_username == name && r.status == "success")
            .expect("the create is audited");
        assert_eq!(
            create.principal,
            format!(
                "ci:acme/web@refs/heads/main (jwt iss={} sub={sub} jti={jti} binding=web-main)",
                issuer.url
            )
        );
        assert!(
            !format!("{records:?}").contains(&token),
            "the token is never recorded"
        );
    }

    // A release tag matches the other binding, which may only read.
    let tag = rsa.sign(&issuer.claims(
        AUD,
        json!({"sub": "tagger", "repository": "acme/web", "ref": "refs/tags/v1.2"}),
    ));
    let me = app.get_bearer(&tag, "/api/v1/me", &[]).await;
    assert_eq!(me.body["identity"]["binding"], "web-release", "{}", me.body);
    assert_eq!(me.body["scopes"]["operations"], json!(["read"]));
}

fn token_claim(token: &str, name: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims[name].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_bad_token_is_refused_with_401_and_a_precise_audited_reason() {
    let (rsa, ghost) = (SigningKey::rsa("rsa-1"), SigningKey::rsa("ghost"));
    let issuer = TestIssuer::start(&[&rsa]).await;
    // No cooldown here: the unknown kid gets its one refetch at once.
    let app = spawn_app_with(config(&issuer, "refetch_cooldown_secs = 0")).await;
    let good = rsa.sign(&main_branch(&issuer, "warmup"));
    assert_eq!(app.get_bearer(&good, "/api/v1/me", &[]).await.status, 200);
    let fetched = issuer.jwks_fetches();

    for (sub, token, reason) in bad_tokens(&issuer, &rsa, &ghost) {
        let r = app.get_bearer(&token, "/api/v1/users/find", &FIND).await;
        assert_eq!(r.status, 401, "{sub}: {}", r.body);
        assert_eq!(r.body, json!({"error": "authentication required"}), "{sub}");
        let recorded = refusal_of(&app, &sub).await;
        assert!(
            recorded.contains(&reason),
            "{sub}: {recorded:?} lacks {reason:?}"
        );
        assert!(!recorded.contains(&token));
    }
    assert_eq!(
        issuer.jwks_fetches(),
        fetched + 1,
        "only the unknown kid made the service refetch"
    );

    // A token from an issuer nobody trusts is counted under a fingerprint, not its claims.
    let evil = rsa.sign(
        &json!({"iss": "https://evil.example", "aud": AUD, "sub": "x",
        "exp": chrono::Utc::now().timestamp() + 60}),
    );
    let r = app.get_bearer(&evil, "/api/v1/me", &[]).await;
    assert_eq!(r.status, 401);
    let records = app.audit().await;
    let last = records
        .iter()
        .rev()
        .find(|r| r.operation == "auth")
        .unwrap();
    assert!(last.principal.starts_with("jwt#"), "{last:?}");
    assert!(
        last.error
            .as_deref()
            .unwrap()
            .contains("JWT refused (issuer): issuer 'https://evil.example' is not trusted"),
        "{last:?}"
    );

    // Failures counted under one pipeline do not hold back a valid token of the issuer.
    assert_eq!(app.get_bearer(&good, "/api/v1/me", &[]).await.status, 200);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_makes_at_most_one_fetch_per_cooldown() {
    let rsa = SigningKey::rsa("rsa-1");
    let issuer = TestIssuer::start(&[&rsa]).await;
    let app = spawn_app_with(config(&issuer, "refetch_cooldown_secs = 3600")).await;
    let good = rsa.sign(&main_branch(&issuer, "warm"));
    // The first callers all wait for the one first fetch instead of being refused.
    let first: Vec<_> = (0..20)
        .map(|_| {
            let (client, base, token) = (app.client.clone(), app.base.clone(), good.clone());
            tokio::spawn(async move {
                let r = client.get(format!("{base}/api/v1/me")).bearer_auth(token);
                r.send().await.unwrap().status()
            })
        })
        .collect();
    for call in first {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(issuer.jwks_fetches(), 1, "one fetch for all of them");
    let fetched = issuer.jwks_fetches();
    let mut calls = Vec::new();
    for i in 0..30 {
        let token = rsa.sign_as(
            &main_branch(&issuer, &format!("flood{i}")),
            Some(&format!("bogus-{i}")),
        );
        let (client, base) = (app.client.clone(), app.base.clone());
        calls.push(tokio::spawn(async move {
            client
                .get(format!("{base}/api/v1/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap(), 401);
    }
    assert_eq!(
        issuer.jwks_fetches(),
        fetched,
        "the first fetch is within the cooldown"
    );
    assert_eq!(app.get_bearer(&good, "/api/v1/me", &[]).await.status, 200);
}

#[tokio::test]
async fn keys_rotate_without_restart_and_a_removed_key_ages_out() {
    let (old, new) = (SigningKey::rsa("old"), SigningKey::ec("new"));
    let issuer = TestIssuer::start(&[&old]).await;
    issuer.cache_control("max-age=1");
    let app = spawn_app_with(config(
        &issuer,
        "keys_min_cache_secs = 1\nrefetch_cooldown_secs = 1",
    ))
    .await;
    let old_token = old.sign(&main_branch(&issuer, "before"));
    assert_eq!(
        app.get_bearer(&old_token, "/api/v1/me", &[]).await.status,
        200
    );

    issuer.publish(&[&new]);
    // Still cached: the old key keeps working until the cache is refreshed.
    assert_eq!(
        app.get_bearer(&old_token, "/api/v1/me", &[]).await.status,
        200
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let new_token = new.sign(&main_branch(&issuer, "after"));
    let r = app.get_bearer(&new_token, "/api/v1/me", &[]).await;
    assert_eq!(
        r.status, 200,
        "the new kid is fetched without a restart: {}",
        r.body
    );
    let mut status = 200;
    for _ in 0..50 {
        status = app
            .get_bearer(&old_token, "/api/v1/me", &[])
            .await
            .status
            .as_u16();
        if status == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status, 401,
        "the removed key stops working once refreshed away"
    );
    let records = app.audit().await;
    let refusal = records
        .iter()
        .rev()
        .find(|r| r.operation == "auth")
        .unwrap();
    assert!(
        refusal
            .error
            .as_deref()
            .unwrap()
            .contains("unknown kid 'old'"),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_issuer_is_down() {
    let rsa = SigningKey::rsa("rsa-1");
    let issuer = TestIssuer::start(&[&rsa]).await;
    issuer.cache_control("max-age=1");
    let app = spawn_app_with(config(
        &issuer,
        "keys_min_cache_secs = 1\nrefetch_cooldown_secs = 1",
    ))
    .await;
    let token = rsa.sign(&main_branch(&issuer, "steady"));
    assert_eq!(app.get_bearer(&token, "/api/v1/me", &[]).await.status, 200);
    issuer.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Stale and the refresh fails: the cached key is still used, without waiting.
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let r = app.get_bearer(&token, "/api/v1/me", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let stranger = SigningKey::ec("stranger").sign(&main_branch(&issuer, "lost"));
    assert_eq!(
        app.get_bearer(&stranger, "/api/v1/me", &[]).await.status,
        401
    );
    let recorded = refusal_of(&app, "lost").await;
    assert!(
        recorded.contains("kid 'stranger'") && recorded.contains("could not be fetched"),
        "{recorded}"
    );
}

#[tokio::test]
async fn a_single_use_token_replayed_on_another_replica_is_refused() {
    let rsa = SigningKey::rsa("rsa-1");
    let issuer = TestIssuer::start(&[&rsa]).await;
    let url = fresh_postgres_store_url().await;
    let a = spawn_app_with_store(config(&issuer, ""), &url).await;
    let b = spawn_app_with_store(config(&issuer, ""), &url).await;
    let once =
        rsa.sign(&issuer.claims(AUD, json!({"sub": "deployer", "repository": "acme/deploy"})));
    let first = a.get_bearer(&once, "/api/v1/me", &[]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["principal"], "deploy:deployer");
    assert_eq!(b.get_bearer(&once, "/api/v1/me", &[]).await.status, 401);
    assert_eq!(a.get_bearer(&once, "/api/v1/me", &[]).await.status, 401);
    let recorded = refusal_of(&b, "deployer").await;
    assert!(recorded.contains("JWT refused (replay)"), "{recorded}");
    // Tokens of bindings that do not ask for it may be used again.
    let reusable = rsa.sign(&main_branch(&issuer, "reuse"));
    assert_eq!(a.get_bearer(&reusable, "/api/v1/me", &[]).await.status, 200);
    assert_eq!(b.get_bearer(&reusable, "/api/v1/me", &[]).await.status, 200);
}

// The CLI runs as a child process while this runtime serves its issuer: two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_token_explains_each_refusal_and_the_binding_that_matches() {
    let (rsa, ghost) = (SigningKey::rsa("rsa-1"), SigningKey::rsa("ghost"));
    let issuer = TestIssuer::start(&[&rsa]).await;
    let config = config(&issuer, "refetch_cooldown_secs = 0");
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("pgua.toml");
    std::fs::write(&config_file, toml::to_string(&config).unwrap()).unwrap();
    let check = |token: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pg-user-api"))
            .args(["auth", "check-token", "--config"])
            .arg(&config_file)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(token.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        (
            out.status.success(),
            report,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    // A token for another audience is explained all the same: operators debug with it.
    let foreign = rsa.sign(&issuer.claims(
        "https://github.com/acme",
        json!({"sub": "repo:acme/web", "repository": "acme/web", "ref": "refs/heads/main"}),
    ));
    let (ok, report, _) = check(&foreign);
    assert!(ok, "{report}");
    assert_eq!(report["accepted"], true);
    assert_eq!(report["binding"], "web-main");
    assert_eq!(report["principal"], "ci:acme/web@refs/heads/main");
    assert_eq!(report["scopes"]["operations"], json!(["read", "create"]));
    assert!(
        report["audience"]
            .as_str()
            .unwrap()
            .contains("ignored here"),
        "{report}"
    );
    let release = report["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "web-release")
        .unwrap();
    assert_eq!(
        release["mismatch"],
        "claim 'ref' is \"refs/heads/main\", wanted 'refs/tags/v*'"
    );

    for (sub, token, reason) in bad_tokens(&issuer, &rsa, &ghost) {
        if reason.contains("(aud)") {
            continue; // the audience is not required to explain a token
        }
        let (ok, report, stderr) = check(&token);
        assert!(!ok, "{sub}: {report}");
        assert_eq!(report["accepted"], false);
        let shown = format!(
            "JWT refused ({}): {}",
            report["refused"]["check"].as_str().unwrap(),
            report["refused"]["reason"].as_str().unwrap()
        );
        assert!(shown.contains(&reason), "{sub}: {shown:?} lacks {reason:?}");
        assert!(stderr.contains(&reason), "{sub}: {stderr}");
    }

    // The same over HTTP, for callers with the registry-admin scope only.
    let app = spawn_app_with(config.clone()).await;
    let r = app
        .post_json("/api/v1/auth/check", json!({"token": foreign}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["binding"], "web-main");
    let reader = app.key("dev", "read", "*").await;
    let denied = app
        .client
        .post(format!("{}/api/v1/auth/check", app.base))
        .bearer_auth(&reader)
        .json(&json!({"token": foreign}))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body: Value = denied.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("operation 'registry-admin'"),
        "{body}"
    );
}

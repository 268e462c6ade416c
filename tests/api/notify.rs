//! Notifications, received for real: an HTTP receiver and an SMTP server on loopback, in
//! this process, record what each channel delivers.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use pgua::config::Config;
use pgua::notify::config::{
    ChannelConfig, EmailConfig, SlackConfig, SmtpTls, WebexConfig, WebhookConfig,
};
use pgua::notify::{EventKind, NotifyConfig};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use crate::support::{TestApp, localhost_tls, spawn_app_with, unique};

/// How long a test waits for something to arrive.
const PATIENCE: Duration = Duration::from_secs(15);

/// One request the receiver answered with 200.
#[derive(Clone)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.path, self.all_text())
    }
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// Headers and body as one text, for looking for what must not be there.
    fn all_text(&self) -> String {
        let mut s = String::from_utf8_lossy(&self.body).into_owned();
        for (k, v) in &self.headers {
            s.push_str(&format!("\n{k}: {}", String::from_utf8_lossy(v.as_bytes())));
        }
        s
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Mutex<Vec<Received>>,
    attempts: AtomicUsize,
    fail_first: AtomicUsize,
    /// When set, each request waits for a permit before it is answered.
    gate: Option<Semaphore>,
}

/// An HTTP server on 127.0.0.1 that records every request.
struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.attempts.fetch_add(1, Ordering::SeqCst);
    if let Some(gate) = &state.gate {
        gate.acquire().await.unwrap().forget();
    }
    let failing = state
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    state.received.lock().unwrap().push(Received {
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
    });
    StatusCode::OK
}

impl Receiver {
    async fn start() -> Self {
        Self::start_with(ReceiverState::default()).await
    }

    /// A receiver that answers the first `n` requests with 500.
    async fn failing_first(n: usize) -> Self {
        let state = ReceiverState::default();
        state.fail_first.store(n, Ordering::SeqCst);
        Self::start_with(state).await
    }

    /// A receiver that answers nothing until [`Receiver::release`].
    async fn held() -> Self {
        Self::start_with(ReceiverState {
            gate: Some(Semaphore::new(0)),
            ..Default::default()
        })
        .await
    }

    async fn start_with(state: ReceiverState) -> Self {
        let state = Arc::new(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(record)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { url, state }
    }

    fn release(&self) {
        if let Some(gate) = &self.state.gate {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    fn attempts(&self) -> usize {
        self.state.attempts.load(Ordering::SeqCst)
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Waits until `n` requests to `path` that mention `needle` have arrived.
    async fn wait_for(&self, path: &str, needle: &str, n: usize) -> Vec<Received> {
        wait_until(
            || {
                let got: Vec<Received> = self
                    .received()
                    .into_iter()
                    .filter(|r| r.path == path && r.all_text().contains(needle))
                    .collect();
                (got.len() >= n).then_some(got)
            },
            || {
                format!(
                    "{n} requests to {path} with {needle}: {:?}",
                    self.received()
                )
            },
        )
        .await
    }
}

/// One message the SMTP server accepted.
#[derive(Clone, Debug, Default)]
struct Mail {
    from: String,
    to: Vec<String>,
    /// `\0user\0password` from AUTH PLAIN, if the client authenticated.
    auth: Option<String>,
    data: String,
    /// Whether the session was encrypted.
    tls: bool,
}

/// How the test SMTP server talks.
#[derive(Clone)]
enum SmtpMode {
    Plain,
    /// TLS from the first byte.
    Implicit(Arc<rustls::ServerConfig>),
    /// Plain until the client says STARTTLS.
    Starttls(Arc<rustls::ServerConfig>),
}

/// Enough of an SMTP server (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT), plain
/// text, on 127.0.0.1.
struct SmtpServer {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpServer {
    /// A plain server that turns the first `busy` connections away with 421.
    async fn start(busy: usize) -> Self {
        Self::start_with(busy, SmtpMode::Plain).await
    }

    async fn start_with(busy: usize, mode: SmtpMode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new(AtomicUsize::new(busy));
        let sink = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let refuse = busy
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                let sink = sink.clone();
                let mode = mode.clone();
                tokio::spawn(async move {
                    let _ = match mode {
                        SmtpMode::Plain => smtp_session(stream, refuse, true, false, sink).await,
                        SmtpMode::Implicit(config) => {
                            let tls = TlsAcceptor::from(config).accept(stream).await?;
                            smtp_session(tls, refuse, true, true, sink).await
                        }
                        SmtpMode::Starttls(config) => {
                            let stream = starttls_prelude(stream).await?;
                            let tls = TlsAcceptor::from(config).accept(stream).await?;
                            smtp_session(tls, refuse, false, true, sink).await
                        }
                    };
                    std::io::Result::Ok(())
                });
            }
        });
        Self { port, mails }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    async fn wait_for(&self, needle: &str, n: usize) -> Vec<Mail> {
        wait_until(
            || {
                let got: Vec<Mail> = self
                    .mails()
                    .into_iter()
                    .filter(|m| m.data.contains(needle))
                    .collect();
                (got.len() >= n).then_some(got)
            },
            || format!("{n} mails with {needle}: {:?}", self.mails()),
        )
        .await
    }
}

/// The plain part of a STARTTLS session: greeting, EHLO, STARTTLS; then TLS takes over.
async fn starttls_prelude(stream: TcpStream) -> std::io::Result<TcpStream> {
    let mut reader = BufReader::new(stream);
    reader
        .get_mut()
        .write_all(b"220 test ESMTP ready\r\n")
        .await?;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-test\r\n250 STARTTLS\r\n"
        } else if upper == "STARTTLS" {
            b"220 go ahead\r\n"
        } else {
            b"530 issue STARTTLS first\r\n"
        };
        reader.get_mut().write_all(reply).await?;
        if upper == "STARTTLS" {
            // The client waits for the 220 before its handshake: nothing is buffered.
            return Ok(reader.into_inner());
        }
    }
}

async fn smtp_session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    refuse: bool,
    greet: bool,
    tls: bool,
    sink: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = tokio::io::split(stream);
    let mut read = BufReader::new(read);
    if refuse {
        write
            .write_all(b"421 test server busy, try later\r\n")
            .await?;
        return Ok(());
    }
    if greet {
        write.write_all(b"220 test ESMTP ready\r\n").await?;
    }
    let mut mail = Mail {
        tls,
        ..Mail::default()
    };
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            "250-test\r\n250-AUTH PLAIN\r\n250 8BITMIME".to_owned()
        } else if upper.starts_with("HELO") || upper == "NOOP" {
            "250 test".to_owned()
        } else if upper.starts_with("AUTH PLAIN") {
            let mut encoded = command[10..].trim().to_owned();
            if encoded.is_empty() {
                write.write_all(b"334 \r\n").await?;
                read.read_line(&mut encoded).await?;
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap_or_default();
            mail.auth = Some(String::from_utf8_lossy(&decoded).into_owned());
            "235 authenticated".to_owned()
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = address(&command[10..]);
            "250 ok".to_owned()
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(address(&command[8..]));
            "250 ok".to_owned()
        } else if upper == "DATA" {
            write.write_all(b"354 end with .\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            let mut done = mail.clone();
            done.data = data;
            mail.to.clear();
            sink.lock().unwrap().push(done);
            "250 queued".to_owned()
        } else if upper == "RSET" {
            "250 ok".to_owned()
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "502 not implemented".to_owned()
        };
        write.write_all(format!("{reply}\r\n").as_bytes()).await?;
    }
}

/// The `<address>` of a MAIL or RCPT argument, without ESMTP parameters.
fn address(arg: &str) -> String {
    arg.split_whitespace().next().unwrap_or_default().to_owned()
}

/// Polls `check` until it gives a value, or fails the test with `describe` after a while.
async fn wait_until<T>(check: impl Fn() -> Option<T>, describe: impl Fn() -> String) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "timed out waiting for {}",
            describe()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Files holding channel secrets, as an operator would mount them.
struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str, content: &str) -> Option<PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, format!("{content}\n")).unwrap();
        Some(path)
    }
}

/// Delivery settings for tests: quick retries, short timeouts.
fn notify_config(channels: Vec<ChannelConfig>) -> Config {
    Config {
        notify: NotifyConfig {
            max_attempts: 4,
            retry_base_delay_ms: 5,
            retry_max_delay_ms: 50,
            timeout_secs: 5,
            channels,
            ..NotifyConfig::default()
        },
        ..Config::default()
    }
}

fn webhook(url: String, secrets: &Secrets, key: &str) -> WebhookConfig {
    WebhookConfig {
        name: None,
        events: Vec::new(),
        environments: Vec::new(),
        url,
        secret_env: None,
        secret_file: secrets.file(&unique("hook_key"), key),
    }
}

fn hmac_hex(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn q<'a>(env: &'a str, db: &'a str, name: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("env", env), ("database", db), ("username", name)]
}

/// Creates a devqa user on dev/dev; returns its password and the request id.
async fn create_devqa(app: &TestApp, name: &str) -> (String, String) {
    let r = app.get("/api/v1/users/devqa", &q("dev", "dev", name)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let request_id = r.headers["x-request-id"].to_str().unwrap().to_owned();
    (r.str("password").to_owned(), request_id)
}

fn assert_no_password(texts: &[String], passwords: &[&str]) {
    for pw in passwords {
        assert!(pw.len() >= 16, "not a generated password: {pw:?}");
        for text in texts {
            assert!(!text.contains(pw), "a password was sent: {text}");
        }
    }
}

#[tokio::test]
async fn every_channel_delivers_create_and_reset_without_the_password() {
    let http = Receiver::start().await;
    let smtp = SmtpServer::start(0).await;
    let secrets = Secrets::new();
    let token = "webex-bot-token-123";
    let key = "hmac-key-456";
    let config = notify_config(vec![
        ChannelConfig::Slack(SlackConfig {
            name: None,
            events: Vec::new(),
            environments: Vec::new(),
            url_env: None,
            url_file: secrets.file("slack_url", &format!("{}/slack/T0/B0/x", http.url)),
        }),
        ChannelConfig::Webex(WebexConfig {
            name: None,
            events: Vec::new(),
            environments: Vec::new(),
            base_url: http.url.clone(),
            room_id: "room-42".into(),
            token_env: None,
            token_file: secrets.file("webex_token", token),
        }),
        ChannelConfig::Webhook(webhook(format!("{}/hook", http.url), &secrets, key)),
        ChannelConfig::Email(EmailConfig {
            name: None,
            events: Vec::new(),
            environments: Vec::new(),
            host: "127.0.0.1".into(),
            port: Some(smtp.port),
            tls: SmtpTls::None,
            ca_file: None,
            from: "pg-user-api <pgua@example.com>".into(),
            to: vec!["dba@example.com".into(), "oncall@example.com".into()],
            username: Some("mailer".into()),
            password_env: None,
            password_file: secrets.file("smtp_pass", "smtp-pass-789"),
        }),
    ]);
    let app = spawn_app_with(config).await;
    let name = unique("notified");
    let (created_pw, create_id) = create_devqa(&app, &name).await;
    let r = app
        .get("/api/v1/users/reset", &q("dev", "dev", &name))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reset_pw = r.str("password").to_owned();
    let find = app.get("/api/v1/users/find", &q("dev", "dev", &name)).await;
    assert_eq!(find.status, 200);

    let slack = http.wait_for("/slack/T0/B0/x", &name, 2).await;
    let text = slack[0].json()["text"].as_str().unwrap().to_owned();
    for part in [
        "create:devqa succeeded",
        &format!("role {name} on dev/dev"),
        "principal: tester",
        &format!("request id: {create_id}"),
        "detail: user created",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert!(
        slack[1].json()["text"]
            .as_str()
            .unwrap()
            .contains("reset succeeded")
    );

    let webex = http.wait_for("/v1/messages", "room-42", 2).await;
    assert_eq!(webex[0].header("authorization"), format!("Bearer {token}"));
    let body = webex[0].json();
    assert_eq!(body["roomId"], "room-42");
    let markdown = body["markdown"].as_str().unwrap();
    assert!(markdown.starts_with("**"), "{markdown}");
    assert!(markdown.contains("create:devqa succeeded"), "{markdown}");
    // Markdown is escaped: `_` in a role name does not start italics.
    assert!(markdown.contains(&name.replace('_', "\\_")), "{markdown}");

    let hooks = http.wait_for("/hook", &name, 2).await;
    for hook in &hooks {
        let signature = hook.header("x-pgua-signature");
        assert_eq!(signature, format!("sha256={}", hmac_hex(key, &hook.body)));
        assert_eq!(hook.header("content-type"), "application/json");
    }
    let event = hooks[0].json();
    assert_eq!(event["event"], "create");
    assert_eq!(event["operation"], "create:devqa");
    assert_eq!(event["outcome"], "success");
    assert_eq!(event["env"], "dev");
    assert_eq!(event["database"], "dev");
    assert_eq!(event["role"], name.as_str());
    assert_eq!(event["principal"], "tester");
    assert_eq!(event["request_id"], create_id.as_str());
    assert!(event["time"].as_str().unwrap().starts_with("20"), "{event}");
    assert_eq!(hooks[1].json()["event"], "reset");
    assert_eq!(hooks[1].header("x-pgua-event"), "reset");

    let mails = smtp.wait_for(&name, 2).await;
    let mail = &mails[0];
    assert_eq!(mail.auth.as_deref(), Some("\0mailer\0smtp-pass-789"));
    assert_eq!(mail.from, "<pgua@example.com>");
    assert_eq!(mail.to, ["<dba@example.com>", "<oncall@example.com>"]);
    // Long header lines may be folded; unfold them as a mail reader would.
    let unfolded = mail.data.replace("\r\n ", " ");
    assert!(
        unfolded.contains(&format!(
            "Subject: [pg-user-api] create:devqa succeeded: role {name}"
        )),
        "{}",
        mail.data
    );
    assert!(mail.data.contains(&format!("request id: {create_id}")));

    // Reads never notify: only the create and the reset arrived anywhere.
    let all: Vec<String> = http
        .received()
        .iter()
        .map(Received::all_text)
        .chain(smtp.mails().iter().map(|m| m.data.clone()))
        .collect();
    assert_eq!(all.len(), 8, "{all:#?}");
    assert!(all.iter().all(|t| !t.contains("find")), "{all:#?}");
    assert_no_password(&all, &[&created_pw, &reset_pw]);
}

#[tokio::test]
async fn a_failing_receiver_gets_the_message_on_a_retry() {
    let http = Receiver::failing_first(2).await;
    let smtp = SmtpServer::start(2).await;
    let secrets = Secrets::new();
    let config = notify_config(vec![
        ChannelConfig::Webhook(webhook(format!("{}/hook", http.url), &secrets, "k")),
        ChannelConfig::Email(EmailConfig {
            name: None,
            events: Vec::new(),
            environments: Vec::new(),
            host: "127.0.0.1".into(),
            port: Some(smtp.port),
            tls: SmtpTls::None,
            ca_file: None,
            from: "pgua@example.com".into(),
            to: vec!["dba@example.com".into()],
            username: None,
            password_env: None,
            password_file: None,
        }),
    ]);
    let app = spawn_app_with(config).await;
    let name = unique("retried");
    let (pw, _) = create_devqa(&app, &name).await;

    let hooks = http.wait_for("/hook", &name, 1).await;
    assert_eq!(http.attempts(), 3, "two 500s, then delivered");
    assert_eq!(hooks[0].json()["event"], "create");
    let mails = smtp.wait_for(&name, 1).await;
    assert_eq!(mails[0].auth, None);
    wait_until(
        || (app.state.notifier.delivered() == 2).then_some(()),
        || format!("2 delivered, got {}", app.state.notifier.delivered()),
    )
    .await;
    assert_eq!(app.state.notifier.failed(), 0);
    assert_no_password(&[hooks[0].all_text(), mails[0].data.clone()], &[&pw]);
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_given_up_on_after_max_attempts() {
    let http = Receiver::failing_first(usize::MAX).await;
    let secrets = Secrets::new();
    let config = notify_config(vec![ChannelConfig::Webhook(webhook(
        format!("{}/hook", http.url),
        &secrets,
        "k",
    ))]);
    let app = spawn_app_with(config).await;
    create_devqa(&app, &unique("given_up")).await;
    wait_until(
        || (app.state.notifier.failed() == 1).then_some(()),
        || format!("1 failed, got {}", app.state.notifier.failed()),
    )
    .await;
    assert_eq!(http.attempts(), 4, "max_attempts = 4");
    assert_eq!(app.state.notifier.delivered(), 0);
}

#[tokio::test]
async fn channels_get_only_the_events_and_environments_they_ask_for() {
    let http = Receiver::start().await;
    let secrets = Secrets::new();
    let mut drops_in_dev = webhook(format!("{}/dev-drops", http.url), &secrets, "k");
    drops_in_dev.events = vec![EventKind::Drop];
    drops_in_dev.environments = vec!["dev".into()];
    let mut prod = webhook(format!("{}/prod", http.url), &secrets, "k");
    prod.environments = vec!["prod".into()];
    let config = notify_config(vec![
        ChannelConfig::Webhook(drops_in_dev),
        ChannelConfig::Webhook(prod),
    ]);
    let app = spawn_app_with(config).await;
    let name = unique("filtered");
    create_devqa(&app, &name).await;
    let refused = app
        .get("/api/v1/users/devqa", &q("prod", "prod", &name))
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let missing = app
        .get("/api/v1/users/reset", &q("dev", "dev", &unique("nobody")))
        .await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let dropped = app.get("/api/v1/users/drop", &q("dev", "dev", &name)).await;
    assert_eq!(dropped.status, 200, "{}", dropped.body);

    let drops = http.wait_for("/dev-drops", &name, 1).await;
    assert_eq!(drops[0].json()["event"], "drop");
    let failures = http.wait_for("/prod", &name, 1).await;
    let failure = failures[0].json();
    assert_eq!(failure["event"], "failure");
    assert_eq!(failure["outcome"], "failure");
    assert_eq!(failure["env"], "prod");
    assert_eq!(failure["detail"], "403");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("not allowed in production"),
        "{failure}"
    );
    // Whatever else was going to arrive has had time to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths: Vec<String> = http.received().into_iter().map(|r| r.path).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
}

#[tokio::test]
async fn a_full_queue_drops_messages_without_holding_up_the_api() {
    let http = Receiver::held().await;
    let secrets = Secrets::new();
    let mut config = notify_config(vec![ChannelConfig::Webhook(webhook(
        format!("{}/hook", http.url),
        &secrets,
        "k",
    ))]);
    config.notify.queue_capacity = 1;
    let app = spawn_app_with(config).await;
    let name = unique("flooded");
    let started = Instant::now();
    create_devqa(&app, &name).await;
    for op in ["lock", "unlock", "lock", "unlock"] {
        let r = app
            .get(&format!("/api/v1/users/{op}"), &q("dev", "dev", &name))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Five events: at most one is being delivered (held by the receiver) and one waits in
    // the queue; the calls returned all the same.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "API calls waited"
    );
    assert!(http.received().is_empty());
    let dropped = app.state.notifier.dropped();
    assert!(dropped >= 3, "dropped {dropped}");
    http.release();
    let delivered = 5 - dropped as usize;
    http.wait_for("/hook", &name, delivered).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(http.received().len(), delivered);
}

#[tokio::test]
async fn a_password_about_to_expire_is_reminded_once() {
    let http = Receiver::start().await;
    let secrets = Secrets::new();
    let mut reminders = webhook(format!("{}/reminders", http.url), &secrets, "k");
    reminders.events = vec![EventKind::Expiring];
    let mut config = notify_config(vec![ChannelConfig::Webhook(reminders)]);
    config.notify.expiry_reminder_days = Some(2);
    config.notify.expiry_check_interval_secs = 1;
    let app = spawn_app_with(config).await;
    let name = unique("expiring");
    let (pw, _) = create_devqa(&app, &name).await;
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let r = app
        .get(
            "/api/v1/users/expire",
            &[
                ("env", "dev"),
                ("database", "dev"),
                ("username", &name),
                ("valid_until", &tomorrow),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);

    let got = http.wait_for("/reminders", &name, 1).await;
    let event = got[0].json();
    assert_eq!(event["event"], "expiring");
    assert_eq!(event["outcome"], "reminder");
    assert_eq!(event["env"], "dev");
    assert_eq!(event["role"], name.as_str());
    assert!(
        event["detail"]
            .as_str()
            .unwrap()
            .starts_with("password valid until 20"),
        "{event}"
    );
    // Two more looks at the server; the role is not reminded again today.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let again: Vec<Received> = http
        .received()
        .into_iter()
        .filter(|r| r.all_text().contains(&name))
        .collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_no_password(&[again[0].all_text()], &[&pw]);
}

#[tokio::test]
async fn email_goes_over_implicit_tls_and_starttls_verified_against_a_private_ca() {
    let (server_tls, ca_pem) = localhost_tls();
    let implicit = SmtpServer::start_with(0, SmtpMode::Implicit(server_tls.clone())).await;
    let starttls = SmtpServer::start_with(0, SmtpMode::Starttls(server_tls)).await;
    let secrets = Secrets::new();
    let ca_file = secrets.file("ca.pem", &ca_pem);
    let password_file = secrets.file("smtp_pass", "smtp-pass-tls");
    let email = |port, tls| {
        ChannelConfig::Email(EmailConfig {
            name: None,
            events: Vec::new(),
            environments: Vec::new(),
            host: "localhost".into(),
            port: Some(port),
            tls,
            ca_file: ca_file.clone(),
            from: "pgua@example.com".into(),
            to: vec!["dba@example.com".into()],
            username: Some("mailer".into()),
            password_env: None,
            password_file: password_file.clone(),
        })
    };
    let config = notify_config(vec![
        email(implicit.port, SmtpTls::Implicit),
        email(starttls.port, SmtpTls::Starttls),
    ]);
    let app = spawn_app_with(config).await;
    let name = unique("tls_mail");
    let (pw, _) = create_devqa(&app, &name).await;
    for server in [&implicit, &starttls] {
        let mails = server.wait_for(&name, 1).await;
        assert!(mails[0].tls, "sent in the clear");
        assert_eq!(mails[0].auth.as_deref(), Some("\0mailer\0smtp-pass-tls"));
        assert!(mails[0].data.contains("create:devqa succeeded"));
        assert_no_password(&[mails[0].data.clone()], &[&pw]);
    }
}

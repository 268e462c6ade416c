//! Load benchmark: the real server (release binary, its own process) against a throw-away
//! PostgreSQL cluster, side by side with the raw ceiling — the same SQL sent straight to
//! PostgreSQL over N kept-open connections — in the same run. Prints ratios, not just times.
//!
//! It runs the service on each store kind with one and with two replicas (separate
//! processes sharing the store, requests spread over them), and on two replicas over one
//! PostgreSQL store checks the scale-out guarantees: one `user created` in a same-name race,
//! 1,000 distinct creates each done once, and a complete, verifiable audit log.
//!
//! It also compares credentials on one server: `find` and `create` through an API key and
//! through a JWT (RS256, keys cached from the bench's own HTTPS issuer), with the server's
//! CPU time per request. `--credentials-only` runs just that comparison.
//!
//! ```sh
//! cargo bench --bench load -- --concurrency 20 --seconds 5
//! cargo bench --bench load -- --credentials-only --concurrency 20 --seconds 3
//! cargo bench --bench load -- --memory --requests 1000000
//! ```
//!
//! `--memory` runs only the memory check: one server on a SQLite store gets `--requests`
//! mixed calls (see [`MIX`]) at concurrency 20, then as many at concurrency 100, and the
//! server's resident and peak resident memory are printed idle and after each.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgua::cli::demo::{DEMO_ADMIN, prepare_cluster};
use pgua::cluster::{ClusterOptions, TempCluster};
use pgua::plan::{self, NamePolicy, Password, Profiles, Statement};
use pgua::store::chain;
use pgua::store::{NewEntry, SslMode};

// The tests' issuer; the bench uses only part of what it offers.
#[allow(dead_code)]
#[path = "../tests/api/support/issuer.rs"]
mod issuer;

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

struct Args {
    concurrency: usize,
    seconds: u64,
    race_requests: usize,
    audit_concurrency: usize,
    audit_requests: usize,
    distinct_creates: usize,
    credentials_only: bool,
    memory: bool,
    requests: usize,
}

fn args() -> Args {
    let mut a = Args {
        concurrency: 20,
        seconds: 5,
        race_requests: 200,
        audit_concurrency: 100,
        audit_requests: 1000,
        distinct_creates: 1000,
        credentials_only: false,
        memory: false,
        requests: 1_000_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .and_then(|v| v.parse().ok())
                .expect("flag needs a number")
        };
        match flag.as_str() {
            "--concurrency" => a.concurrency = value() as usize,
            "--seconds" => a.seconds = value(),
            "--race-requests" => a.race_requests = value() as usize,
            "--audit-concurrency" => a.audit_concurrency = value() as usize,
            "--audit-requests" => a.audit_requests = value() as usize,
            "--distinct-creates" => a.distinct_creates = value() as usize,
            "--credentials-only" => a.credentials_only = true,
            "--memory" => a.memory = true,
            "--requests" => a.requests = value() as usize,
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Requests/s and latency percentiles of one phase.
struct Stats {
    count: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// Runs `op(task, i)` from `n` concurrent tasks for `secs` seconds.
async fn drive<F, Fut>(n: usize, secs: u64, op: F) -> Stats
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let errors = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..n)
        .map(|t| {
            let op = op.clone();
            let errors = errors.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if !op(t, i).await {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    lat.push(t0.elapsed());
                    i += 1;
                }
                lat
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Stats {
        count: latencies.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
        latencies,
    }
}

/// CPU time (user + system) a process has used, from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz.max(1))
}

/// Peak resident set size of a process, from /proc.
fn peak_rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}

/// One number of `/proc/<pid>/status` (the kB ones in KiB), 0 when it cannot be read.
fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One server process.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

const USER: &str = "bench";

async fn start_server(store_url: &str, admin_password: &str, pass: &str) -> Server {
    start_server_with(store_url, admin_password, pass, None).await
}

async fn start_server_with(
    store_url: &str,
    admin_password: &str,
    pass: &str,
    config: Option<&std::path::Path>,
) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(BIN);
    if let Some(path) = config {
        command.arg("--config").arg(path);
    }
    let child = command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PG_API_USER", USER)
        .env("PG_API_PASS", pass)
        .env("PG_ADMIN_USER", DEMO_ADMIN)
        .env("PG_ADMIN_PASS", admin_password)
        .env("PGUA_STORE", store_url)
        // Default logging (an access log line per request), as in production.
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Server { child, base }
}

/// The replicas of one configuration; calls are spread over them.
struct Api {
    servers: Vec<Server>,
    pass: String,
    client: reqwest::Client,
}

impl Api {
    /// Status code and `status` field of one call, sent to replica `i % n`.
    async fn call(&self, i: usize, path: &str, q: &[(&str, &str)]) -> (u16, String) {
        let base = &self.servers[i % self.servers.len()].base;
        match self
            .client
            .get(format!("{base}{path}"))
            .basic_auth(USER, Some(&self.pass))
            .query(q)
            .send()
            .await
        {
            Ok(res) => {
                let code = res.status().as_u16();
                let body: serde_json::Value = res.json().await.unwrap_or_default();
                (code, body["status"].as_str().unwrap_or_default().to_owned())
            }
            Err(_) => (0, String::new()),
        }
    }

    fn cpu(&self) -> Duration {
        self.servers.iter().map(|s| cpu_time(s.child.id())).sum()
    }

    fn peak_rss_mib(&self) -> f64 {
        self.servers
            .iter()
            .map(|s| peak_rss_kib(s.child.id()))
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }
}

async fn raw_clients(port: u16, password: &str, n: usize) -> Vec<Arc<tokio_postgres::Client>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (c, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(port)
            .dbname("dev")
            .user(DEMO_ADMIN)
            .password(password)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        out.push(Arc::new(c));
    }
    out
}

const FIND_SQL: &str = "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
        rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text
 FROM pg_catalog.pg_roles WHERE rolname = $1";
const LIST_SQL: &str = "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
        rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text
 FROM pg_catalog.pg_roles WHERE rolname !~ '^pg_' ORDER BY rolname";

/// The statements the service runs for one change, in one transaction, with its locks.
async fn raw_change(c: &tokio_postgres::Client, name: &str, plan: &[Statement]) -> bool {
    let key = format!("pg-user-api:role:{name}");
    let body = async {
        c.batch_execute("BEGIN").await?;
        c.execute(
            "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))",
            &[&key],
        )
        .await?;
        c.query_opt(
            "SELECT rolsuper OR rolname = current_user FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await?;
        c.batch_execute(&plan::batch(plan)).await?;
        c.batch_execute("COMMIT").await
    };
    let ok = body.await.is_ok();
    if !ok {
        let _ = c.batch_execute("ROLLBACK").await;
    }
    ok
}

/// The raw PostgreSQL ceiling of one operation: the same SQL over N kept-open connections.
#[derive(Clone, Copy)]
enum RawOp {
    List,
    Create,
    Find,
    Reset,
}

async fn ceiling(
    raw: &[Arc<tokio_postgres::Client>],
    op: RawOp,
    tag: &str,
    n: usize,
    secs: u64,
) -> Stats {
    let verifier = Arc::new(Password::generate().scram_verifier());
    let policy = NamePolicy::default();
    let devqa = Profiles::load(&Default::default(), &policy, &[])
        .unwrap()
        .get("devqa")
        .unwrap();
    let (raw, tag) = (raw.to_vec(), tag.to_owned());
    drive(n, secs, move |t, i| {
        let (c, verifier, policy, devqa) = (
            raw[t].clone(),
            verifier.clone(),
            policy.clone(),
            devqa.clone(),
        );
        let tag = tag.clone();
        async move {
            match op {
                RawOp::List => c.query(LIST_SQL, &[]).await.is_ok(),
                RawOp::Create => {
                    let name = policy.role(&format!("raw{tag}_{t}_{i}")).unwrap();
                    let plan =
                        plan::create_user(&devqa, &name, "dev", &verifier, &Default::default())
                            .unwrap();
                    raw_change(&c, name.as_str(), &plan).await
                }
                RawOp::Find => {
                    let name = format!("raw{tag}_{t}_0");
                    c.query_opt(FIND_SQL, &[&name])
                        .await
                        .is_ok_and(|r| r.is_some())
                }
                RawOp::Reset => {
                    let name = policy.role(&format!("raw{tag}_{t}_0")).unwrap();
                    raw_change(&c, name.as_str(), &plan::reset_password(&name, &verifier)).await
                }
            }
        }
    })
    .await
}

fn row(op: &str, api: &Stats, raw: &Stats, server_cpu: Duration) {
    let cpu_us = server_cpu.as_micros() as f64 / api.count.max(1) as f64;
    println!(
        "{op:<7} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>10.0} {:>9.0} {:>8.0}%",
        api.rate(),
        api.pct(0.50).as_secs_f64() * 1e3,
        api.pct(0.99).as_secs_f64() * 1e3,
        api.errors,
        cpu_us,
        raw.rate(),
        100.0 * api.rate() / raw.rate().max(f64::MIN_POSITIVE),
    );
}

/// Runs the four operations against `api`, each right after its raw ceiling in the same
/// state of the cluster, and prints one row each.
async fn phases(
    api: &Arc<Api>,
    raw: &[Arc<tokio_postgres::Client>],
    tag: &str,
    n: usize,
    secs: u64,
) {
    type Query = fn(&str, usize, usize) -> Vec<(&'static str, String)>;
    let steps: [(&str, RawOp, &'static str, Query, &'static str); 4] = [
        (
            "list",
            RawOp::List,
            "/api/v1/users/all",
            |_, _, _| vec![("env", "dev".into()), ("database", "dev".into())],
            "",
        ),
        (
            "create",
            RawOp::Create,
            "/api/v1/users/devqa",
            |tag, t, i| {
                vec![
                    ("env", "dev".into()),
                    ("database", "dev".into()),
                    ("username", format!("{tag}_{t}_{i}")),
                ]
            },
            "user created",
        ),
        // find and reset work on users the create phase made (each task made at least one).
        (
            "find",
            RawOp::Find,
            "/api/v1/users/find",
            |tag, t, _| {
                vec![
                    ("env", "dev".into()),
                    ("database", "dev".into()),
                    ("username", format!("{tag}_{t}_0")),
                ]
            },
            "",
        ),
        (
            "reset",
            RawOp::Reset,
            "/api/v1/users/reset",
            |tag, t, _| {
                vec![
                    ("env", "dev".into()),
                    ("database", "dev".into()),
                    ("username", format!("{tag}_{t}_0")),
                ]
            },
            "password reset",
        ),
    ];
    for (name, raw_op, path, query, ok) in steps {
        let raw_stats = ceiling(raw, raw_op, tag, n, secs).await;
        let cpu0 = api.cpu();
        let stats = {
            let (api, tag) = (api.clone(), tag.to_owned());
            drive(n, secs, move |t, i| {
                let (api, tag) = (api.clone(), tag.clone());
                async move {
                    let q = query(&tag, t, i);
                    let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let (code, status) = api.call(t + i, path, &q).await;
                    code == 200 && (ok.is_empty() || status == ok)
                }
            })
            .await
        };
        row(name, &stats, &raw_stats, api.cpu() - cpu0);
    }
}

/// `n` calls at most `concurrency` at a time; returns each call's (code, status).
async fn burst(
    api: &Arc<Api>,
    n: usize,
    concurrency: usize,
    path: &'static str,
    q: impl Fn(usize) -> Vec<(&'static str, String)>,
) -> Vec<(u16, String)> {
    let sem = Arc::new(tokio::sync::Semaphore::new(concurrency));
    futures_util::future::join_all((0..n).map(|i| {
        let (api, sem, q) = (api.clone(), sem.clone(), q(i));
        async move {
            let _permit = sem.acquire().await.unwrap();
            let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.call(i, path, &q).await
        }
    }))
    .await
}

/// Registers the cluster's `dev` database as env `dev`.
async fn register_dev(store: &dyn pgua::store::Store, port: u16) {
    store
        .registry_add(&NewEntry {
            env: "dev".into(),
            db_name: "dev".into(),
            hostname: "127.0.0.1".into(),
            port,
            active: true,
            notes: None,
            sslmode: SslMode::Disable,
        })
        .await
        .unwrap();
}

/// `find` and `create` through an API key and through a JWT on one server (SQLite store),
/// alternating, with the server's CPU time per request and the JWT/key ratios.
async fn credentials(
    cluster: &TempCluster,
    admin_pw: &str,
    dir: &std::path::Path,
    n: usize,
    secs: u64,
) {
    use serde_json::json;
    let key = issuer::SigningKey::rsa("bench-rs256");
    let issuer = issuer::TestIssuer::start(&[&key]).await;
    let config_path = dir.join("credentials.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[[auth.jwt.issuers]]
issuer = "{url}"
discovery = true
audiences = ["pg-user-api"]
ca_file = "{ca}"

[[auth.jwt.bindings]]
name = "bench"
issuer = "{url}"
claims = {{ repository = "acme/bench", ref = "refs/heads/main" }}
principal = "ci:{{repository}}@{{ref}}"
scopes = {{ environments = ["dev"], operations = ["read", "create"], profiles = ["*"] }}
"#,
            url = issuer.url,
            ca = issuer.ca_file.display()
        ),
    )
    .unwrap();
    let store_url = format!("sqlite://{}", dir.join("credentials.db").display());
    let store = pgua::store::open(&store_url).await.unwrap();
    register_dev(store.as_ref(), cluster.port()).await;
    let pass = Password::generate().expose().to_owned();
    let server = start_server_with(&store_url, admin_pw, &pass, Some(&config_path)).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()
        .unwrap();
    let created: serde_json::Value = client
        .post(format!("{}/api/v1/keys/create", server.base))
        .basic_auth(USER, Some(&pass))
        .json(
            &json!({"name": "bench", "owner": "bench", "environments": "dev",
            "operations": "read,create", "profiles": "*"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let api_key = created["key"]
        .as_str()
        .unwrap_or_else(|| panic!("no key secret in {created}"))
        .to_owned();
    let jwt = key.sign(&issuer.claims(
        "pg-user-api",
        json!({"sub": "repo:acme/bench:ref:refs/heads/main", "repository": "acme/bench",
            "ref": "refs/heads/main", "exp": chrono::Utc::now().timestamp() + 86_400}),
    ));
    println!("\ncredentials, sqlite store, 1 replica (JWT: RS256, key cached):");
    println!(
        "{:<7} {:<4} {:>9} {:>8} {:>8} {:>7} {:>10} {:>11}",
        "op", "via", "req/s", "p50 ms", "p99 ms", "errors", "cpu µs/req", "cpu vs key"
    );
    let pid = server.child.id();
    let base = server.base.clone();
    for (op, path, ok) in [
        ("create", "/api/v1/users/devqa", "user created"),
        ("find", "/api/v1/users/find", ""),
    ] {
        let mut key_cpu = 0.0;
        let rounds = [
            ("key", &api_key),
            ("jwt", &jwt),
            ("key", &api_key),
            ("jwt", &jwt),
        ];
        for (round, (via, token)) in rounds.into_iter().enumerate() {
            let cpu0 = cpu_time(pid);
            let (client, base, token) = (client.clone(), base.clone(), token.clone());
            let stats = drive(n, secs, move |t, i| {
                let (client, base, token) = (client.clone(), base.clone(), token.clone());
                async move {
                    // find looks up a user the first create round made (each task made one).
                    let name = match op {
                        "create" => format!("cred_{via}{round}_{t}_{i}"),
                        _ => format!("cred_key0_{t}_0"),
                    };
                    let res = client
                        .get(format!("{base}{path}"))
                        .bearer_auth(&token)
                        .query(&[("env", "dev"), ("database", "dev"), ("username", &name)])
                        .send()
                        .await;
                    match res {
                        Ok(r) if r.status() == 200 => {
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            match op {
                                "find" => body["found"] == true,
                                _ => body["status"] == ok,
                            }
                        }
                        _ => false,
                    }
                }
            })
            .await;
            let cpu_us = (cpu_time(pid) - cpu0).as_micros() as f64 / stats.count.max(1) as f64;
            if via == "key" {
                key_cpu = cpu_us;
            }
            let vs = if via == "key" {
                String::new()
            } else {
                format!(
                    "{:+.1}%",
                    100.0 * (cpu_us / key_cpu.max(f64::MIN_POSITIVE) - 1.0)
                )
            };
            println!(
                "{op:<7} {via:<4} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>10.0} {:>11}",
                stats.rate(),
                stats.pct(0.50).as_secs_f64() * 1e3,
                stats.pct(0.99).as_secs_f64() * 1e3,
                stats.errors,
                cpu_us,
                vs
            );
        }
    }
    println!(
        "peak server RSS: {:.1} MiB",
        peak_rss_kib(pid) as f64 / 1024.0
    );
}

/// One kind of call of the memory mode.
#[derive(Clone, Copy, Debug)]
enum Call {
    /// `users/devqa` of a new name.
    Create,
    /// `users/all`.
    List,
    /// `users/find` of a user that exists (and, every other time, of one that does not).
    Find,
    /// A query string that does not decode (bad escapes, invalid UTF-8, empty names).
    MalformedQuery,
    /// A POST whose JSON body is cut off or not an object.
    BadJson,
    /// A POST declaring and sending 100 KiB, past the server's limit.
    OversizedBody,
    /// Names made to break out of SQL quoting, or too long.
    InjectionName,
    /// An env and database that no registry entry has, new each time.
    UnknownTarget,
    /// A user name nobody configured, or an API key nobody issued, new each time.
    BadCredentials,
    /// Paths no route has.
    UnknownPath,
    /// NUL and control bytes in the parameters.
    ControlBytes,
    /// A valid find with 4–32 KiB of extra header.
    LongHeader,
}

/// The memory mode's calls per 1,000, in this order.
const MIX: [(Call, usize); 12] = [
    (Call::Create, 2),
    (Call::List, 10),
    (Call::Find, 688),
    (Call::MalformedQuery, 40),
    (Call::BadJson, 40),
    (Call::OversizedBody, 20),
    (Call::InjectionName, 40),
    (Call::UnknownTarget, 30),
    (Call::BadCredentials, 40),
    (Call::UnknownPath, 30),
    (Call::ControlBytes, 30),
    (Call::LongHeader, 30),
];

/// The kind of the `i`-th call of a round (an index into [`MIX`]).
fn mix_slot(i: usize) -> usize {
    let mut at = i % 1000;
    MIX.iter()
        .position(|(_, n)| {
            let here = at < *n;
            at = at.saturating_sub(*n);
            here
        })
        .unwrap_or(2)
}

/// Sends the `i`-th call of round `round`; its status, 0 when the connection failed.
async fn memory_call(
    client: &reqwest::Client,
    base: &str,
    pass: &str,
    round: usize,
    i: usize,
) -> u16 {
    let target = [("env", "dev"), ("database", "dev")];
    let known = format!("mem_{}", i % 20);
    let get = |path: &str| {
        client
            .get(format!("{base}{path}"))
            .basic_auth(USER, Some(pass))
    };
    let request = match MIX[mix_slot(i)].0 {
        Call::Create => get("/api/v1/users/devqa")
            .query(&target)
            .query(&[("username", format!("mem{round}_{i}"))]),
        Call::List => get("/api/v1/users/all").query(&target),
        Call::Find if i.is_multiple_of(2) => get("/api/v1/users/find")
            .query(&target)
            .query(&[("username", &known)]),
        Call::Find => get("/api/v1/users/find")
            .query(&target)
            .query(&[("username", format!("absent_{i}"))]),
        Call::MalformedQuery => get(&format!(
            "/api/v1/users/find?env=dev&database=dev&username=%ff%fe{i}%zz&=&&%"
        )),
        Call::BadJson => client
            .post(format!("{base}/api/v1/users/devqa"))
            .basic_auth(USER, Some(pass))
            .header("content-type", "application/json")
            .body(match i % 3 {
                0 => format!(r#"{{"env": "dev", "database": "dev", "username": "x{i}"#),
                1 => format!("[1, 2, {i}]"),
                _ => format!(r#"{{"env": {{"nested": [{i}]}}}}"#),
            }),
        Call::OversizedBody => client
            .post(format!("{base}/api/v1/users/find"))
            .basic_auth(USER, Some(pass))
            .header("content-type", "application/json")
            .body(vec![b' '; 100 * 1024]),
        Call::InjectionName => get("/api/v1/users/find").query(&target).query(&[(
            "username",
            match i % 3 {
                0 => format!("x{i}'; DROP ROLE postgres; --"),
                1 => format!("\"{i}\" OR 1=1 /*"),
                _ => format!("n{i}{}", "a".repeat(200)),
            },
        )]),
        Call::UnknownTarget => get("/api/v1/users/find").query(&[
            ("env", format!("env{i}")),
            ("database", format!("db{round}_{i}")),
            ("username", known),
        ]),
        Call::BadCredentials if i.is_multiple_of(2) => client
            .get(format!("{base}/api/v1/users/find"))
            .basic_auth(format!("intruder{round}_{i}"), Some("guess"))
            .query(&target),
        Call::BadCredentials => client
            .get(format!("{base}/api/v1/users/find"))
            .bearer_auth(format!("pgua_{round}_{i}_not_a_key"))
            .query(&target),
        Call::UnknownPath => get(&format!("/api/v1/users/nothing{i}/x/../../%2e%2e/{round}")),
        Call::ControlBytes => get(&format!(
            "/api/v1/users/find?env=dev%00&database=dev%0d%0a&username=a%00b%01%1b%7f{i}"
        )),
        Call::LongHeader => get("/api/v1/users/find")
            .query(&target)
            .query(&[("username", &known)])
            .header("x-filler", "f".repeat(4096 << (i % 4))),
    };
    match request.send().await {
        Ok(res) => {
            let code = res.status().as_u16();
            // Read the whole answer, as a client does, so the connection can be reused.
            let _ = res.bytes().await;
            code
        }
        Err(_) => 0,
    }
}

/// How the calls of one kind were answered: 2xx, 4xx, 5xx, other statuses, no answer.
type Tally = [[usize; 5]; MIX.len()];

/// `total` calls of the mix from `n` concurrent keep-alive clients; the time it took and how
/// each kind was answered.
async fn memory_round(
    base: &str,
    pass: &str,
    round: usize,
    n: usize,
    total: usize,
) -> (Duration, Tally) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, next) = (client.clone(), next.clone());
            let (base, pass) = (base.to_owned(), pass.to_owned());
            tokio::spawn(async move {
                let mut tally: Tally = [[0; 5]; MIX.len()];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return tally;
                    }
                    let class = match memory_call(&client, &base, &pass, round, i).await {
                        0 => 4,
                        200..=299 => 0,
                        400..=499 => 1,
                        500..=599 => 2,
                        _ => 3,
                    };
                    tally[mix_slot(i)][class] += 1;
                }
            })
        })
        .collect();
    let mut tally: Tally = [[0; 5]; MIX.len()];
    for t in tasks {
        for (sum, got) in tally.iter_mut().zip(t.await.unwrap()) {
            for (s, g) in sum.iter_mut().zip(got) {
                *s += g;
            }
        }
    }
    (start.elapsed(), tally)
}

/// The server's resident memory now and at its peak, and its threads, as one line.
fn memory_line(pid: u32) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    format!(
        "RSS {:.1} MiB (anon {:.1}, file {:.1}), peak RSS (VmHWM) {:.1} MiB, {} threads",
        mib(status_field(pid, "VmRSS:")),
        mib(status_field(pid, "RssAnon:")),
        mib(status_field(pid, "RssFile:")),
        mib(peak_rss_kib(pid)),
        status_field(pid, "Threads:"),
    )
}

/// `--memory`: one server on a SQLite store, `requests` calls of [`MIX`] at concurrency 20
/// and then as many at concurrency 100, with its memory idle and after each round.
async fn memory(cluster: &TempCluster, admin_pw: &str, dir: &std::path::Path, requests: usize) {
    let store_url = format!("sqlite://{}", dir.join("memory.db").display());
    let store = pgua::store::open(&store_url).await.unwrap();
    register_dev(store.as_ref(), cluster.port()).await;
    drop(store);
    let pass = Password::generate().expose().to_owned();
    let server = start_server(&store_url, admin_pw, &pass).await;
    let pid = server.child.id();
    let api = Arc::new(Api {
        servers: vec![server],
        pass: pass.clone(),
        client: reqwest::Client::new(),
    });
    let made = burst(&api, 20, 20, "/api/v1/users/devqa", |i| {
        vec![
            ("env", "dev".into()),
            ("database", "dev".into()),
            ("username", format!("mem_{i}")),
        ]
    })
    .await;
    assert!(made.iter().all(|(code, _)| *code == 200), "setup: {made:?}");
    let base = api.servers[0].base.clone();
    println!("memory: one server, SQLite store, {requests} calls per round; per 1,000 calls:");
    for (call, n) in MIX {
        println!("  {n:>3} {call:?}");
    }
    println!("idle (after 20 creates): {}", memory_line(pid));
    for (round, n) in [20, 100].into_iter().enumerate() {
        let cpu0 = cpu_time(pid);
        let (elapsed, tally) = memory_round(&base, &pass, round, n, requests).await;
        println!(
            "\nconcurrency {n}: {requests} calls in {:.0} s ({:.0}/s, server CPU {:.0} µs/call)",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64(),
            (cpu_time(pid) - cpu0).as_micros() as f64 / requests.max(1) as f64
        );
        println!(
            "  {:<15} {:>8} {:>8} {:>6} {:>6} {:>10}",
            "call", "2xx", "4xx", "5xx", "other", "no answer"
        );
        for ((call, _), [ok, refused, failed, other, lost]) in MIX.iter().zip(tally) {
            println!(
                "  {:<15} {ok:>8} {refused:>8} {failed:>6} {other:>6} {lost:>10}",
                format!("{call:?}")
            );
        }
        println!("  after: {}", memory_line(pid));
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    pgua::tls::install_crypto_provider();
    let cluster = TempCluster::start(ClusterOptions::default()).expect("cluster");
    let admin_password = Password::generate();
    prepare_cluster(&cluster, admin_password.expose()).expect("prepare");
    let admin_pw = admin_password.expose().to_owned();
    let n = a.concurrency;
    let secs = a.seconds;
    println!(
        "pg-user-api load benchmark: concurrency {n}, {secs} s per phase, {} cores, PostgreSQL {} on 127.0.0.1:{}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        cluster
            .psql("postgres", "SHOW server_version")
            .unwrap_or_default(),
        cluster.port()
    );
    let dir = tempfile::tempdir().unwrap();
    if a.memory {
        memory(&cluster, &admin_pw, dir.path(), a.requests).await;
        return;
    }
    credentials(&cluster, &admin_pw, dir.path(), n, secs).await;
    if a.credentials_only {
        return;
    }
    let raw_conns = raw_clients(cluster.port(), &admin_pw, n).await;
    for (k, (kind, replicas)) in [
        ("sqlite", 1),
        ("sqlite", 2),
        ("postgres", 1),
        ("postgres", 2),
    ]
    .into_iter()
    .enumerate()
    {
        let store_url = if kind == "sqlite" {
            format!(
                "sqlite://{}",
                dir.path().join(format!("store{k}.db")).display()
            )
        } else {
            cluster
                .psql("postgres", &format!("CREATE DATABASE store{k}"))
                .unwrap();
            format!(
                "postgres://postgres:{}@127.0.0.1:{}/store{k}",
                cluster.superuser_password(),
                cluster.port()
            )
        };
        let store = pgua::store::open(&store_url).await.unwrap();
        register_dev(store.as_ref(), cluster.port()).await;
        let pass = Password::generate().expose().to_owned();
        let mut servers = Vec::new();
        for _ in 0..replicas {
            servers.push(start_server(&store_url, &admin_pw, &pass).await);
        }
        let api = Arc::new(Api {
            servers,
            pass,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(n.max(a.audit_concurrency))
                .build()
                .unwrap(),
        });
        println!("\n{kind} store, {replicas} replica(s):");
        println!(
            "{:<7} {:>9} {:>8} {:>8} {:>7} {:>10} {:>9} {:>9}",
            "op", "api req/s", "p50 ms", "p99 ms", "errors", "cpu µs/req", "raw req/s", "api/raw"
        );
        let tag = format!("c{k}");
        phases(&api, &raw_conns, &tag, n, secs).await;

        let race = format!("race{k}");
        let outcomes = burst(&api, a.race_requests, n, "/api/v1/users/devqa", |_| {
            vec![
                ("env", "dev".into()),
                ("database", "dev".into()),
                ("username", race.clone()),
            ]
        })
        .await;
        let created = outcomes.iter().filter(|o| o.1 == "user created").count();
        let exists = outcomes
            .iter()
            .filter(|o| o.1 == "user already exists")
            .count();
        let errors = outcomes.iter().filter(|o| o.0 != 200).count();
        println!(
            "same-name race: {} creates of one name → {created} created, {exists} already exists, {errors} errors",
            a.race_requests
        );

        if replicas == 2 {
            let before = store.audit_after(i64::MIN, u32::MAX).await.unwrap().len();
            let t0 = Instant::now();
            let outcomes = burst(
                &api,
                a.distinct_creates,
                a.audit_concurrency,
                "/api/v1/users/devqa",
                |i| {
                    vec![
                        ("env", "dev".into()),
                        ("database", "dev".into()),
                        ("username", format!("spread{k}_{i}")),
                    ]
                },
            )
            .await;
            let elapsed = t0.elapsed();
            let created = outcomes.iter().filter(|o| o.1 == "user created").count();
            let records = store.audit_after(i64::MIN, u32::MAX).await.unwrap().len() - before;
            let verified = chain::verify(store.as_ref(), None).await.unwrap();
            println!(
                "{} distinct creates over both replicas at concurrency {}: {created} created once ({:.0}/s), {records} audit records (intent + outcome each), chain {}",
                a.distinct_creates,
                a.audit_concurrency,
                a.distinct_creates as f64 / elapsed.as_secs_f64(),
                match verified.broken {
                    None => format!("verified ({} records)", verified.chained),
                    Some(b) => format!("BROKEN at #{}: {}", b.id, b.reason),
                }
            );
        } else {
            let before = store.audit_after(i64::MIN, u32::MAX).await.unwrap().len();
            let outcomes = burst(
                &api,
                a.audit_requests,
                a.audit_concurrency,
                "/api/v1/users/find",
                |i| {
                    vec![
                        ("env", "dev".into()),
                        ("database", "dev".into()),
                        ("username", format!("{tag}_0_{i}")),
                    ]
                },
            )
            .await;
            let ok = outcomes.iter().filter(|o| o.0 == 200).count();
            let records = store.audit_after(i64::MIN, u32::MAX).await.unwrap().len() - before;
            println!(
                "audit at concurrency {}: {} finds ({ok} ok), {records} audit records, {} lost",
                a.audit_concurrency,
                a.audit_requests,
                a.audit_requests.saturating_sub(records)
            );
        }
        println!("peak server RSS: {:.1} MiB", api.peak_rss_mib());
    }
}

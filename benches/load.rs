//! Load benchmark: the real server (release binary, its own process) against a throw-away
//! PostgreSQL cluster, side by side with the raw ceiling — the same SQL sent straight to
//! PostgreSQL over N kept-open connections — in the same run. Prints ratios, not just times.
//!
//! ```sh
//! cargo bench --bench load -- --concurrency 20 --seconds 5
//! ```

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgua::cli::demo::{DEMO_ADMIN, prepare_cluster};
use pgua::cluster::{ClusterOptions, TempCluster};
use pgua::plan::{self, NamePolicy, Password, Profiles, Statement};
use pgua::store::{NewEntry, SslMode};

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

struct Args {
    concurrency: usize,
    seconds: u64,
    race_requests: usize,
    audit_concurrency: usize,
    audit_requests: usize,
}

fn args() -> Args {
    let mut a = Args {
        concurrency: 20,
        seconds: 5,
        race_requests: 200,
        audit_concurrency: 100,
        audit_requests: 1000,
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
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

struct Server {
    child: Child,
    base: String,
    user: String,
    pass: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

async fn start_server(store: &std::path::Path, admin_password: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pass = Password::generate().expose().to_owned();
    let child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("PG_API_USER", "bench")
        .env("PG_API_PASS", &pass)
        .env("PG_ADMIN_USER", DEMO_ADMIN)
        .env("PG_ADMIN_PASS", admin_password)
        .env("PGUA_STORE", format!("sqlite://{}", store.display()))
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
    Server {
        child,
        base,
        user: "bench".into(),
        pass,
    }
}

/// The server's answer to one call: HTTP status and `status` field.
async fn call(
    client: &reqwest::Client,
    s: &(String, String, String),
    path: &str,
    q: &[(&str, &str)],
) -> (u16, String) {
    match client
        .get(format!("{}{path}", s.0))
        .basic_auth(&s.1, Some(&s.2))
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

fn row(op: &str, api: &Stats, raw: &Stats, server_cpu: Duration) {
    let cpu_us = server_cpu.as_micros() as f64 / api.count.max(1) as f64;
    println!(
        "{op:<7} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>10.0} {:>9.0} {:>8.2} {:>8.2} {:>7.0}%",
        api.rate(),
        api.pct(0.50).as_secs_f64() * 1e3,
        api.pct(0.99).as_secs_f64() * 1e3,
        api.errors,
        cpu_us,
        raw.rate(),
        raw.pct(0.50).as_secs_f64() * 1e3,
        raw.pct(0.99).as_secs_f64() * 1e3,
        100.0 * api.rate() / raw.rate().max(f64::MIN_POSITIVE),
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    pgua::startup::install_crypto_provider();
    let cluster = TempCluster::start(ClusterOptions::default()).expect("cluster");
    let admin_password = Password::generate();
    prepare_cluster(&cluster, admin_password.expose()).expect("prepare");
    let admin_pw = admin_password.expose().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("pg_registry.db");
    let store = pgua::store::open(store_path.to_str().unwrap())
        .await
        .unwrap();
    store
        .registry_add(&NewEntry {
            env: "dev".into(),
            db_name: "dev".into(),
            hostname: "127.0.0.1".into(),
            port: cluster.port(),
            active: true,
            notes: None,
            sslmode: SslMode::Disable,
        })
        .await
        .unwrap();
    let server = start_server(&store_path, &admin_pw).await;
    let pid = server.child.id();
    let s = Arc::new((
        server.base.clone(),
        server.user.clone(),
        server.pass.clone(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency.max(a.audit_concurrency))
        .build()
        .unwrap();
    let n = a.concurrency;
    let secs = a.seconds;
    let raw = raw_clients(cluster.port(), &admin_pw, n).await;
    let verifier = Arc::new(Password::generate().scram_verifier());
    let policy = NamePolicy::default();

    println!(
        "pg-user-api load benchmark: concurrency {n}, {secs} s per phase, {} cores, PostgreSQL on 127.0.0.1:{}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        cluster.port()
    );
    println!(
        "{:<7} {:>9} {:>8} {:>8} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8}",
        "op",
        "api req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cpu µs/req",
        "raw req/s",
        "p50 ms",
        "p99 ms",
        "api/raw"
    );

    // list
    let cpu0 = cpu_time(pid);
    let api = {
        let (client, s) = (client.clone(), s.clone());
        drive(n, secs, move |_, _| {
            let (client, s) = (client.clone(), s.clone());
            async move {
                call(
                    &client,
                    &s,
                    "/api/v1/users/all",
                    &[("env", "dev"), ("database", "dev")],
                )
                .await
                .0 == 200
            }
        })
        .await
    };
    let cpu = cpu_time(pid) - cpu0;
    let raw_stats = {
        let raw = raw.clone();
        drive(n, secs, move |t, _| {
            let c = raw[t].clone();
            async move { c.query(LIST_SQL, &[]).await.is_ok() }
        })
        .await
    };
    row("list", &api, &raw_stats, cpu);

    // create
    let created = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let cpu0 = cpu_time(pid);
    let api = {
        let (client, s, created) = (client.clone(), s.clone(), created.clone());
        drive(n, secs, move |t, i| {
            let (client, s, created) = (client.clone(), s.clone(), created.clone());
            async move {
                let name = format!("api_{t}_{i}");
                let (code, status) = call(
                    &client,
                    &s,
                    "/api/v1/users/devqa",
                    &[("env", "dev"), ("database", "dev"), ("username", &name)],
                )
                .await;
                created.lock().unwrap().push(name);
                code == 200 && status == "user created"
            }
        })
        .await
    };
    let cpu = cpu_time(pid) - cpu0;
    let raw_stats = {
        let (raw, verifier, policy) = (raw.clone(), verifier.clone(), policy.clone());
        let devqa = Profiles::load(&Default::default(), &policy, &[])
            .unwrap()
            .get("devqa")
            .unwrap();
        drive(n, secs, move |t, i| {
            let (c, verifier, policy, devqa) = (
                raw[t].clone(),
                verifier.clone(),
                policy.clone(),
                devqa.clone(),
            );
            async move {
                let name = policy.role(&format!("raw_{t}_{i}")).unwrap();
                let plan = plan::create_user(&devqa, &name, "dev", &verifier, &Default::default())
                    .unwrap();
                raw_change(&c, name.as_str(), &plan).await
            }
        })
        .await
    };
    row("create", &api, &raw_stats, cpu);

    let names = Arc::new(created.lock().unwrap().clone());
    // find
    let cpu0 = cpu_time(pid);
    let api = {
        let (client, s, names) = (client.clone(), s.clone(), names.clone());
        drive(n, secs, move |t, i| {
            let (client, s, names) = (client.clone(), s.clone(), names.clone());
            async move {
                let name = &names[(t * 7919 + i) % names.len()];
                let (code, _) = call(
                    &client,
                    &s,
                    "/api/v1/users/find",
                    &[("env", "dev"), ("database", "dev"), ("username", name)],
                )
                .await;
                code == 200
            }
        })
        .await
    };
    let cpu = cpu_time(pid) - cpu0;
    let raw_stats = {
        let (raw, names) = (raw.clone(), names.clone());
        drive(n, secs, move |t, i| {
            let (c, names) = (raw[t].clone(), names.clone());
            async move {
                let name = &names[(t * 7919 + i) % names.len()];
                c.query_opt(FIND_SQL, &[name])
                    .await
                    .is_ok_and(|r| r.is_some())
            }
        })
        .await
    };
    row("find", &api, &raw_stats, cpu);

    // reset
    let cpu0 = cpu_time(pid);
    let api = {
        let (client, s, names) = (client.clone(), s.clone(), names.clone());
        drive(n, secs, move |t, i| {
            let (client, s, names) = (client.clone(), s.clone(), names.clone());
            async move {
                let name = &names[(t * 7919 + i) % names.len()];
                let (code, status) = call(
                    &client,
                    &s,
                    "/api/v1/users/reset",
                    &[("env", "dev"), ("database", "dev"), ("username", name)],
                )
                .await;
                code == 200 && status == "password reset"
            }
        })
        .await
    };
    let cpu = cpu_time(pid) - cpu0;
    let raw_stats = {
        let (raw, names, verifier, policy) =
            (raw.clone(), names.clone(), verifier.clone(), policy.clone());
        drive(n, secs, move |t, i| {
            let (c, names, verifier, policy) = (
                raw[t].clone(),
                names.clone(),
                verifier.clone(),
                policy.clone(),
            );
            async move {
                let name = policy.role(&names[(t * 7919 + i) % names.len()]).unwrap();
                let plan = plan::reset_password(&name, &verifier);
                raw_change(&c, name.as_str(), &plan).await
            }
        })
        .await
    };
    row("reset", &api, &raw_stats, cpu);

    // Same-name race at the same concurrency.
    let race = format!("race_{}", std::process::id());
    let sem = Arc::new(tokio::sync::Semaphore::new(n));
    let outcomes: Vec<(u16, String)> =
        futures_util::future::join_all((0..a.race_requests).map(|_| {
            let (client, s, race, sem) = (client.clone(), s.clone(), race.clone(), sem.clone());
            async move {
                let _permit = sem.acquire().await.unwrap();
                call(
                    &client,
                    &s,
                    "/api/v1/users/devqa",
                    &[("env", "dev"), ("database", "dev"), ("username", &race)],
                )
                .await
            }
        }))
        .await;
    let created_once = outcomes.iter().filter(|o| o.1 == "user created").count();
    let exists = outcomes
        .iter()
        .filter(|o| o.1 == "user already exists")
        .count();
    let failures = outcomes.iter().filter(|o| o.0 != 200).count();
    println!(
        "\nsame-name race: {} concurrent creates of one name → {created_once} created, {exists} already exists, {failures} errors",
        a.race_requests
    );

    // Audit completeness at high concurrency.
    let before = store.audit_latest(u32::MAX).await.unwrap().len();
    let sem = Arc::new(tokio::sync::Semaphore::new(a.audit_concurrency));
    let t0 = Instant::now();
    let outcomes: Vec<(u16, String)> =
        futures_util::future::join_all((0..a.audit_requests).map(|i| {
            let (client, s, sem) = (client.clone(), s.clone(), sem.clone());
            async move {
                let _permit = sem.acquire().await.unwrap();
                call(
                    &client,
                    &s,
                    "/api/v1/users/find",
                    &[
                        ("env", "dev"),
                        ("database", "dev"),
                        ("username", &format!("api_0_{i}")),
                    ],
                )
                .await
            }
        }))
        .await;
    let elapsed = t0.elapsed();
    let ok = outcomes.iter().filter(|o| o.0 == 200).count();
    let records = store.audit_latest(u32::MAX).await.unwrap().len() - before;
    println!(
        "audit at concurrency {}: {} finds ({ok} ok) in {:.2} s, {records} audit records written, {} lost",
        a.audit_concurrency,
        a.audit_requests,
        elapsed.as_secs_f64(),
        a.audit_requests.saturating_sub(records)
    );
    println!(
        "peak server RSS: {:.1} MiB",
        peak_rss_kib(pid) as f64 / 1024.0
    );
    drop(server);
}

//! Load benchmark: the real server (release binary, its own process) against a throw-away
//! PostgreSQL cluster, side by side with the raw ceiling — the same SQL sent straight to
//! PostgreSQL over N kept-open connections — in the same run. Prints ratios, not just times.
//!
//! It runs the service on each store kind with one and with two replicas (separate
//! processes sharing the store, requests spread over them), and on two replicas over one
//! PostgreSQL store checks the scale-out guarantees: one `user created` in a same-name race,
//! 1,000 distinct creates each done once, and a complete, verifiable audit log.
//!
//! A create's ratio to the minimal-SQL ceiling is taken over `--ratio-rounds` (3) pairs of
//! phases, each API phase right before its ceiling, and printed with the pairs' median:
//! two phases seconds apart move by ±25 % on a shared machine.
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

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgua::cli::demo::DEMO_ADMIN;
use pgua::cluster::{PgBinaries, TempCluster};
use pgua::plan::sql::{ident, literal};
use pgua::plan::{self, NamePolicy, Password, Profiles, RoleName, Statement, Verifier};
use pgua::service::passwords;
use pgua::store::chain;

// The tests' issuer; the bench uses only part of what it offers.
#[allow(dead_code)]
#[path = "../tests/api/support/issuer.rs"]
mod issuer;
// Shared with the growth bench; each uses part of it.
#[allow(dead_code)]
mod support;

use support::{
    Api, PgCpu, Stats, USER, admin_client, burst, children_cpu, client_cpu, cpu_time, demo_cluster,
    drive, peak_rss_kib, register_dev, start_server, start_server_with, status_field,
    thread_cpu_since,
};

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
    ratio_rounds: usize,
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
        ratio_rounds: 3,
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
            "--ratio-rounds" => a.ratio_rounds = (value() as usize).max(1),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// A kept-open connection of the raw ceilings with its queries prepared once, as the
/// service's pool does: a prepared query is one round trip, an unprepared one two (parse
/// and describe first), which would put the ceiling well below what PostgreSQL can do.
struct RawConn {
    client: tokio_postgres::Client,
    find: tokio_postgres::Statement,
    list: tokio_postgres::Statement,
    lock: tokio_postgres::Statement,
    state: tokio_postgres::Statement,
}

async fn raw_clients(port: u16, password: &str, n: usize) -> Vec<Arc<RawConn>> {
    let mut out = Vec::new();
    for _ in 0..n {
        let client = admin_client(port, password, "dev").await;
        out.push(Arc::new(RawConn {
            find: client.prepare(FIND_SQL).await.unwrap(),
            list: client.prepare(LIST_SQL).await.unwrap(),
            lock: client.prepare(LOCK_SQL).await.unwrap(),
            state: client.prepare(STATE_SQL).await.unwrap(),
            client,
        }));
    }
    out
}

// The service's catalog queries (src/target/catalog.rs), word for word.
const FIND_SQL: &str = "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
        rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text
 FROM pg_catalog.pg_roles WHERE rolname = $1";
const LIST_SQL: &str = "SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb,
        rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text
 FROM pg_catalog.pg_roles WHERE rolcanlogin ORDER BY rolname";
const LOCK_SQL: &str = "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext($1))";
const STATE_SQL: &str =
    "SELECT rolsuper OR rolname = current_user FROM pg_catalog.pg_roles WHERE rolname = $1";

/// The statements the service runs for one change, in one transaction, with its locks.
async fn raw_change(c: &RawConn, name: &str, plan: &[Statement]) -> bool {
    let key = format!("pg-user-api:role:{name}");
    let body = async {
        c.client.batch_execute("BEGIN").await?;
        c.client.execute(&c.lock, &[&key]).await?;
        c.client.query_opt(&c.state, &[&name]).await?;
        c.client.batch_execute(&plan::batch(plan)).await?;
        c.client.batch_execute("COMMIT").await
    };
    let ok = body.await.is_ok();
    if !ok {
        let _ = c.client.batch_execute("ROLLBACK").await;
    }
    ok
}

/// The NOLOGIN group the minimal-SQL ceiling makes its users members of; it holds CONNECT
/// on `dev`, so no user's create touches the database's ACL.
const MIN_GROUP: &str = "bench_min_connect";

/// The least SQL that gives a user what a `devqa` user can do on `dev`, in one transaction
/// and one round trip: the role with its verifier (computed by the client, [`RawOp`]),
/// membership in [`MIN_GROUP`] and its search_path there.
fn minimal_create(role: &RoleName, verifier: &Verifier) -> String {
    let r = ident(role.as_str());
    format!(
        "BEGIN;
         CREATE ROLE {r} LOGIN CONNECTION LIMIT 20 PASSWORD {v};
         GRANT {g} TO {r};
         ALTER ROLE {r} IN DATABASE dev SET search_path TO public;
         COMMIT",
        v = literal(verifier.expose()),
        g = ident(MIN_GROUP)
    )
}

/// The raw PostgreSQL ceiling of one operation over N kept-open connections: the same SQL
/// the service sends, or for `MinimalCreate` the least SQL with the same effect.
///
/// Every user a ceiling creates or resets gets a password of its own, as through the
/// service: its verifier comes from the service's own hasher ([`passwords::new_password`],
/// the fastest there is here — four PBKDF2 chains interleaved on SHA-NI, on a thread of its
/// own, ahead of need), and its CPU is the client's. `MinimalShared` is the minimal SQL with
/// one verifier computed before the phase and given to every user — no client gives
/// thousands of users one password; it is printed beside, for reference.
#[derive(Clone, Copy)]
enum RawOp {
    List,
    Create,
    MinimalCreate,
    MinimalShared,
    Find,
    Reset,
}

/// A phase's calls with the CPU the bench (the client) and the server it measures used.
struct Measured {
    stats: Stats,
    client: Duration,
    server: Duration,
}

impl Measured {
    /// Runs `phase` and reads the client's and the server's CPU around it.
    async fn of(
        phase: impl std::future::Future<Output = Stats>,
        server_cpu: &mut impl FnMut() -> Duration,
    ) -> Self {
        let (client0, server0) = (client_cpu(), server_cpu());
        let stats = phase.await;
        Self {
            stats,
            client: client_cpu() - client0,
            server: server_cpu() - server0,
        }
    }

    fn per_call(&self, cpu: Duration) -> f64 {
        cpu.as_micros() as f64 / self.stats.count.max(1) as f64
    }

    /// The client spent more CPU than the server it drives: on these shared cores the rate
    /// then says more about the client than about the server.
    fn client_bound(&self) -> bool {
        self.client > self.server
    }
}

async fn ceiling(
    raw: &[Arc<RawConn>],
    pg: &mut PgCpu,
    op: RawOp,
    tag: &str,
    n: usize,
    secs: u64,
) -> Measured {
    let shared = Arc::new(Password::generate().scram_verifier());
    let policy = NamePolicy::default();
    let devqa = Profiles::load(&Default::default(), &policy, &[])
        .unwrap()
        .get("devqa")
        .unwrap();
    let (raw, tag) = (raw.to_vec(), tag.to_owned());
    let phase = drive(n, secs, move |t, i| {
        let (c, shared, policy, devqa) = (
            raw[t].clone(),
            shared.clone(),
            policy.clone(),
            devqa.clone(),
        );
        let tag = tag.clone();
        async move {
            let fresh = match op {
                RawOp::Create | RawOp::MinimalCreate | RawOp::Reset => {
                    Some(passwords::new_password().await.unwrap().1)
                }
                _ => None,
            };
            let verifier = fresh.as_ref().unwrap_or(&shared);
            match op {
                RawOp::List => c.client.query(&c.list, &[]).await.is_ok(),
                RawOp::Create => {
                    let name = policy.role(&format!("raw{tag}_{t}_{i}")).unwrap();
                    let plan =
                        plan::create_user(&devqa, &name, "dev", verifier, &Default::default())
                            .unwrap();
                    raw_change(&c, name.as_str(), &plan).await
                }
                RawOp::MinimalCreate | RawOp::MinimalShared => {
                    let name = policy.role(&format!("min{tag}_{t}_{i}")).unwrap();
                    c.client
                        .batch_execute(&minimal_create(&name, verifier))
                        .await
                        .is_ok()
                }
                RawOp::Find => {
                    let name = format!("raw{tag}_{t}_0");
                    c.client
                        .query_opt(&c.find, &[&name])
                        .await
                        .is_ok_and(|r| r.is_some())
                }
                RawOp::Reset => {
                    let name = policy.role(&format!("raw{tag}_{t}_0")).unwrap();
                    raw_change(&c, name.as_str(), &plan::reset_password(&name, verifier)).await
                }
            }
        }
    });
    Measured::of(phase, &mut || pg.total()).await
}

/// pgbench's rate for the find query (`-M prepared`, kept-open connections), with its own
/// CPU and PostgreSQL's per lookup.
struct Pgbench {
    rate: f64,
    client_us: f64,
    server_us: f64,
}

/// The pgbench that belongs to the server binaries, else `/usr/bin/pgbench`.
fn pgbench_path() -> Option<std::path::PathBuf> {
    PgBinaries::locate()
        .ok()
        .map(|b| b.path("pgbench"))
        .into_iter()
        .chain([std::path::PathBuf::from("/usr/bin/pgbench")])
        .find(|p| p.is_file())
}

/// Runs pgbench with `n` clients for `secs` seconds looking up the admin role by name;
/// `None` (and says so) where pgbench is not installed.
async fn pgbench_find(
    port: u16,
    password: &str,
    pg: &mut PgCpu,
    dir: &std::path::Path,
    n: usize,
    secs: u64,
) -> Option<Pgbench> {
    let Some(bin) = pgbench_path() else {
        println!("pgbench ceiling skipped: no pgbench next to the server binaries or in /usr/bin");
        return None;
    };
    let script = dir.join("find.sql");
    std::fs::write(&script, format!("{};\n", FIND_SQL.replace("$1", ":name"))).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |p| p.get().min(n));
    let (client0, server0) = (children_cpu(), pg.total());
    let mut child = std::process::Command::new(bin)
        .args(["-n", "-M", "prepared", "-h", "127.0.0.1", "-U", DEMO_ADMIN])
        .arg("-p")
        .arg(port.to_string())
        .arg("-c")
        .arg(n.to_string())
        .arg("-j")
        .arg(threads.to_string())
        .arg("-T")
        .arg(secs.to_string())
        .arg("-D")
        .arg(format!("name={DEMO_ADMIN}"))
        .arg("-f")
        .arg(&script)
        .arg("dev")
        .env("PGPASSWORD", password)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("pgbench starts");
    // Its backends end with it: read their CPU while they run.
    let mut server = pg.total();
    while child.try_wait().unwrap().is_none() {
        server = pg.total();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = children_cpu() - client0;
    let (mut out, mut err) = (String::new(), String::new());
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let field = |prefix: &str| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.trim().split([' ', '/']).next()?.parse::<f64>().ok())
    };
    let (Some(rate), Some(count)) = (
        field("tps ="),
        field("number of transactions actually processed:"),
    ) else {
        println!("pgbench ceiling skipped: pgbench failed\n{out}{err}");
        return None;
    };
    if count == 0.0 {
        // Under heavy load the 20 SCRAM logins can outlast a short `-T`.
        println!("pgbench ceiling skipped: no lookup finished in {secs} s\n{err}");
        return None;
    }
    let per = |cpu: Duration| cpu.as_micros() as f64 / count.max(1.0);
    Some(Pgbench {
        rate,
        client_us: per(client),
        server_us: per(server - server0),
    })
}

fn row(op: &str, api: &Measured, raw: &Measured, others: &[(&str, f64)]) {
    let a = &api.stats;
    let mut notes = String::new();
    for (name, rate) in others {
        notes.push_str(&format!(
            "  api/{name} {:.0}% ({rate:.0}/s)",
            100.0 * a.rate() / rate.max(f64::MIN_POSITIVE)
        ));
    }
    if raw.stats.errors > 0 {
        notes.push_str(&format!("  raw: {} failed", raw.stats.errors));
    }
    if raw.client_bound() {
        notes.push_str("  raw: client-bound");
    }
    if api.client_bound() {
        notes.push_str("  api: client-bound");
    }
    println!(
        "{op:<7} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>10.0} {:>10.0} {:>9.0} {:>9.0} {:>10.0} {:>8.0}%{notes}",
        a.rate(),
        a.pct(0.50).as_secs_f64() * 1e3,
        a.pct(0.99).as_secs_f64() * 1e3,
        a.errors,
        api.per_call(api.server),
        api.per_call(api.client),
        raw.stats.rate(),
        raw.per_call(raw.server),
        raw.per_call(raw.client),
        100.0 * a.rate() / raw.stats.rate().max(f64::MIN_POSITIVE),
    );
}

/// Where a create's CPU went in the first pair, against the minimal SQL's: on these two
/// saturated cores a rate is about the cores over the CPU per call, so 90 % of the minimal's
/// rate leaves the API a ninth of the minimal's CPU per create for everything it adds.
fn budget(api: &Measured, api_pg: Duration, threads: &[(String, Duration)], minimal: &Measured) {
    let per = |t: Duration| api.per_call(t);
    let (server, client, pg) = (per(api.server), per(api.client), per(api_pg));
    let (min_client, min_pg) = (
        minimal.per_call(minimal.client),
        minimal.per_call(minimal.server),
    );
    let shown: Vec<String> = threads
        .iter()
        .map(|(name, t)| format!("{name} {:.0}", per(*t)))
        .collect();
    println!(
        "create CPU µs per call: api {:.0} = server {server:.0} ({}) + bench client {client:.0} \
         + PostgreSQL {pg:.0}; minimal {:.0} = client {min_client:.0} + PostgreSQL {min_pg:.0}; \
         at 90 % of the minimal's rate the API may add {:.0}, it added {:.0}",
        server + client + pg,
        shown.join(", "),
        min_client + min_pg,
        (min_client + min_pg) / 9.0,
        server + client + pg - min_client - min_pg,
    );
}

fn header() {
    println!(
        "{:<7} {:>9} {:>8} {:>8} {:>7} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9}",
        "op",
        "api req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server µs",
        "client µs",
        "raw req/s",
        "pg µs",
        "client µs",
        "api/raw"
    );
}

/// Runs the four operations against `api`, each right after its raw ceiling in the same
/// state of the cluster, and prints one row each; create also beside the minimal-SQL
/// ceiling (run right after it, then again over `--ratio-rounds` pairs), find also beside
/// pgbench's.
async fn phases(
    api: &Arc<Api>,
    raw: &[Arc<RawConn>],
    pg: &mut PgCpu,
    pgbench: Option<&Pgbench>,
    tag: &str,
    a: &Args,
) {
    let (n, secs, ratio_rounds) = (a.concurrency, a.seconds, a.ratio_rounds);
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
    // The raw create ceiling sends the service's plan, whose membership needs the profile's
    // group: one create through the API first makes it, the way the service does.
    let username = format!("{tag}_group");
    let q = [
        ("env", "dev"),
        ("database", "dev"),
        ("username", username.as_str()),
    ];
    let (code, status) = api.call(0, "/api/v1/users/devqa", &q).await;
    assert_eq!(
        code, 200,
        "the create that makes the devqa group failed: {status}"
    );
    // One API phase of `path` whose names carry `tag`, with the server's CPU.
    let api_phase = |path: &'static str, query: Query, ok: &'static str, tag: String| {
        let (caller, cpu) = (api.clone(), api.clone());
        let phase = drive(n, secs, move |t, i| {
            let (api, tag) = (caller.clone(), tag.clone());
            async move {
                let q = query(&tag, t, i);
                let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let (code, status) = api.call(t + i, path, &q).await;
                code == 200 && (ok.is_empty() || status == ok)
            }
        });
        async move { Measured::of(phase, &mut || cpu.cpu()).await }
    };
    for (name, raw_op, path, query, ok) in steps {
        let raw_stats = ceiling(raw, pg, raw_op, tag, n, secs).await;
        // Read around the API phase; a create's split of them is printed (`budget`).
        let (pg0, threads0) = (pg.total(), api.thread_cpu());
        let stats = api_phase(path, query, ok, tag.to_owned()).await;
        let mut others = Vec::new();
        match raw_op {
            RawOp::Create => {
                let api_pg = pg.total() - pg0;
                let threads = thread_cpu_since(&threads0, api.thread_cpu());
                let minimal = ceiling(raw, pg, RawOp::MinimalCreate, tag, n, secs).await;
                others.push(("minimal", minimal.stats.rate()));
                // Its users are dropped with the extra pairs' (their tag is `…r0`).
                let shared = format!("{tag}r0");
                let shared = ceiling(raw, pg, RawOp::MinimalShared, &shared, n, secs).await;
                // Phases a few seconds apart move by ±25 % here: the ratio is taken again
                // over further pairs, each API phase right before its ceiling, and the
                // median of all pairs is printed beside them.
                let mut ratios = vec![stats.stats.rate() / minimal.stats.rate()];
                for round in 1..ratio_rounds {
                    let again = format!("{tag}r{round}");
                    let api_rate = api_phase(path, query, ok, again.clone()).await.stats.rate();
                    let min_rate = ceiling(raw, pg, RawOp::MinimalCreate, &again, n, secs)
                        .await
                        .stats
                        .rate();
                    ratios.push(api_rate / min_rate);
                }
                // The extra pairs' users go again, so the next configuration's list covers
                // as many users as before these pairs were added.
                raw[0]
                    .client
                    .batch_execute(&format!(
                        "DO $$ DECLARE r text; BEGIN FOR r IN SELECT rolname FROM pg_roles \
                         WHERE rolname LIKE '{tag}r%' OR rolname LIKE 'min{tag}r%' LOOP \
                         EXECUTE format('DROP ROLE %I', r); END LOOP; END $$"
                    ))
                    .await
                    .expect("the extra pairs' users are dropped");
                row(name, &stats, &raw_stats, &others);
                let shown: Vec<String> = ratios
                    .iter()
                    .map(|r| format!("{:.0}%", 100.0 * r))
                    .collect();
                ratios.sort_by(f64::total_cmp);
                println!(
                    "create api/minimal over {} alternated pairs: {} (median {:.0}%)",
                    ratios.len(),
                    shown.join(", "),
                    100.0 * ratios[ratios.len() / 2]
                );
                println!(
                    "create api/minimal with one verifier for all its users, in the first pair: \
                     {:.0}% ({:.0}/s)",
                    100.0 * stats.stats.rate() / shared.stats.rate(),
                    shared.stats.rate()
                );
                budget(&stats, api_pg, &threads, &minimal);
                continue;
            }
            RawOp::Find => others.extend(pgbench.map(|p| ("pgbench", p.rate))),
            _ => {}
        }
        row(name, &stats, &raw_stats, &others);
    }
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
    /// A valid find with 4–32 KiB of extra header: the 16 and 32 KiB ones are past the
    /// server's default `http.max_header_bytes` and get 431.
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

/// Where the server's resident memory is, from `/proc/PID/smaps`: the resident KiB of each
/// kind of mapping (a file's by name and permissions, so the binary's code and read-only
/// data are apart; anonymous ones together, with their count), largest first.
fn mapping_line(pid: u32) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_kind: std::collections::BTreeMap<String, (u64, u32)> = Default::default();
    let mut kind = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            let perms = fields.get(1).copied().unwrap_or("");
            kind = match fields.get(5) {
                Some(name) if name.starts_with('/') => {
                    let base = name.rsplit('/').next().unwrap_or(name);
                    format!("{base} {perms}")
                }
                Some(name) => (*name).to_owned(),
                None => "anon".to_owned(),
            };
            by_kind.entry(kind.clone()).or_default().1 += 1;
        } else if let Some(kib) = line.strip_prefix("Rss:") {
            let kib: u64 = kib
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            by_kind.entry(kind.clone()).or_default().0 += kib;
        }
    }
    let mut kinds: Vec<_> = by_kind
        .into_iter()
        .filter(|(_, (kib, _))| *kib >= 256)
        .collect();
    kinds.sort_by_key(|(_, (kib, _))| std::cmp::Reverse(*kib));
    kinds
        .iter()
        .map(|(name, (kib, n))| match n {
            1 => format!("{name} {:.1}", *kib as f64 / 1024.0),
            n => format!("{name} ×{n} {:.1}", *kib as f64 / 1024.0),
        })
        .collect::<Vec<_>>()
        .join(", ")
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
    let api = Arc::new(Api::new(vec![server], &pass));
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
    println!("  resident MiB by mapping: {}", mapping_line(pid));
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
        println!("  resident MiB by mapping: {}", mapping_line(pid));
    }
}

/// The number of audit records once the server has stored what it queued: a read's record
/// is committed a few milliseconds after its answer (`store::audit_queue`), so the count is
/// read until it stops changing.
async fn settled_audit_count(store: &dyn pgua::store::Store) -> usize {
    let mut last = usize::MAX;
    for _ in 0..100 {
        let now = store.audit_after(i64::MIN, u32::MAX).await.unwrap().len();
        if now == last {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::main]
async fn main() {
    let a = args();
    let (cluster, admin_pw) = demo_cluster();
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
    raw_conns[0]
        .client
        .batch_execute(&format!(
            "CREATE ROLE {g} NOLOGIN; GRANT CONNECT ON DATABASE dev TO {g}",
            g = ident(MIN_GROUP)
        ))
        .await
        .unwrap();
    let mut pg = PgCpu::of(&raw_conns[0].client).await;
    let pgbench = pgbench_find(cluster.port(), &admin_pw, &mut pg, dir.path(), n, secs).await;
    if let Some(p) = &pgbench {
        println!(
            "\npgbench -M prepared, {n} clients, find by name: {:.0} lookups/s, pgbench CPU {:.0} µs/lookup, PostgreSQL CPU {:.0} µs/lookup{}",
            p.rate,
            p.client_us,
            p.server_us,
            if p.client_us > p.server_us {
                " (client-bound)"
            } else {
                ""
            }
        );
    }
    println!(
        "\nserver µs / client µs: CPU per request of the API server(s) / of this bench process; pg µs: of PostgreSQL;\n\
         raw: the service's SQL, prepared, over {n} kept-open connections; minimal: the least SQL for a devqa user"
    );
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
        let api = Arc::new(Api::new(servers, &pass));
        println!("\n{kind} store, {replicas} replica(s):");
        header();
        let tag = format!("c{k}");
        phases(&api, &raw_conns, &mut pg, pgbench.as_ref(), &tag, &a).await;

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
            let before = settled_audit_count(store.as_ref()).await;
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
            let records = settled_audit_count(store.as_ref()).await - before;
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
            let before = settled_audit_count(store.as_ref()).await;
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
            let records = settled_audit_count(store.as_ref()).await - before;
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

//! Growth benchmark: does the 50,000th user cost what the first did? The real server
//! (release binary, its own process, SQLite store) against a throw-away cluster; users are
//! made through the HTTP API only, so the figures hold whatever the service sends.
//!
//! For `devqa` on a database with one table and for `readonly` on a database with
//! `--tables` tables (200), it measures the create rate of `--batch` creates at
//! concurrency `--concurrency` with 0 existing users of the profile, then fills up to each
//! of `--users` (10,000 and 50,000) and measures again, printing each rate as a share of the
//! rate at 0 and the sizes of the ACLs a per-user grant would grow: `pg_database.datacl`,
//! the tables' `relacl` and the default ACLs.
//!
//! ```sh
//! cargo bench --bench growth
//! cargo bench --bench growth -- --users 1000,5000 --batch 500
//! cargo bench --bench growth -- --profiles readonly --users 500,2000 --batch 200
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgua::plan::Password;

// Shared with the load bench; each uses part of it.
#[allow(dead_code)]
mod support;

use support::{Api, PgCpu, Stats, admin_client, demo_cluster, register, start_server};

struct Args {
    users: Vec<usize>,
    batch: usize,
    concurrency: usize,
    tables: usize,
    profiles: Vec<String>,
}

fn args() -> Args {
    let mut a = Args {
        users: vec![10_000, 50_000],
        batch: 1000,
        concurrency: 20,
        tables: 200,
        profiles: vec!["devqa".into(), "readonly".into()],
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().expect("flag needs a value").clone();
        let number = |v: String| v.parse::<usize>().expect("flag needs a number");
        match flag.as_str() {
            "--users" => a.users = value().split(',').map(|v| number(v.into())).collect(),
            "--batch" => a.batch = number(value()),
            "--concurrency" => a.concurrency = number(value()),
            "--tables" => a.tables = number(value()),
            "--profiles" => a.profiles = value().split(',').map(str::to_owned).collect(),
            "--bench" => {}
            other => panic!("unknown flag {other}"),
        }
    }
    a.users.sort_unstable();
    a
}

/// The users `from..from + count` of `profile` on `db`, created at most `n` at a time;
/// an error is any answer but `user created`.
async fn creates(
    api: &Arc<Api>,
    profile: &str,
    db: &str,
    from: usize,
    count: usize,
    n: usize,
) -> Stats {
    let sem = Arc::new(tokio::sync::Semaphore::new(n));
    let path = format!("/api/v1/users/{profile}");
    let start = Instant::now();
    let results = futures_util::future::join_all((from..from + count).map(|i| {
        let (api, sem, path) = (api.clone(), sem.clone(), path.clone());
        let username = format!("{profile}_{i}");
        async move {
            let _permit = sem.acquire().await.unwrap();
            let t0 = Instant::now();
            let q = [("env", "dev"), ("database", db), ("username", &username)];
            let (code, status) = api.call(i, &path, &q).await;
            (code == 200 && status == "user created", t0.elapsed())
        }
    }))
    .await;
    Stats {
        count: results.len(),
        errors: results.iter().filter(|r| !r.0).count(),
        elapsed: start.elapsed(),
        latencies: results.iter().map(|r| r.1).collect(),
    }
}

/// Stored sizes (bytes, after compression) and entry counts of the ACLs per-user grants
/// would grow in one database.
struct Acls {
    datacl_bytes: i64,
    datacl_entries: i64,
    relations: i64,
    relacl_max_bytes: i64,
    relacl_sum_bytes: i64,
    relacl_max_entries: i64,
    defacl_max_bytes: i64,
    defacl_max_entries: i64,
}

async fn acls(c: &tokio_postgres::Client, db: &str) -> Acls {
    let d = c
        .query_one(
            "SELECT coalesce(pg_catalog.pg_column_size(datacl), 0)::int8,
                    coalesce(pg_catalog.cardinality(datacl), 0)::int8
             FROM pg_catalog.pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .unwrap();
    let r = c
        .query_one(
            "SELECT count(*)::int8,
                    coalesce(max(pg_catalog.pg_column_size(c.relacl)), 0)::int8,
                    coalesce(sum(pg_catalog.pg_column_size(c.relacl)), 0)::int8,
                    coalesce(max(pg_catalog.cardinality(c.relacl)), 0)::int8
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
               AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'",
            &[],
        )
        .await
        .unwrap();
    let a = c
        .query_one(
            "SELECT coalesce(max(pg_catalog.pg_column_size(defaclacl)), 0)::int8,
                    coalesce(max(pg_catalog.cardinality(defaclacl)), 0)::int8
             FROM pg_catalog.pg_default_acl",
            &[],
        )
        .await
        .unwrap();
    Acls {
        datacl_bytes: d.get(0),
        datacl_entries: d.get(1),
        relations: r.get(0),
        relacl_max_bytes: r.get(1),
        relacl_sum_bytes: r.get(2),
        relacl_max_entries: r.get(3),
        defacl_max_bytes: a.get(0),
        defacl_max_entries: a.get(1),
    }
}

/// One profile's growth on one database: the measured batches at 0 and at each level.
#[allow(clippy::too_many_arguments)]
async fn growth(
    api: &Arc<Api>,
    pg: &mut PgCpu,
    target: &tokio_postgres::Client,
    profile: &str,
    db: &str,
    levels: &[usize],
    batch: usize,
    n: usize,
) {
    println!("\n{profile} on database {db}, {batch} creates per measurement at concurrency {n}:");
    println!(
        "{:>9} {:>10} {:>8} {:>8} {:>7} {:>10} {:>9} {:>10} {:>9} {:>12}",
        "existing",
        "creates/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "server µs",
        "pg µs",
        "% of at 0",
        "datacl B",
        "max relacl B"
    );
    let (mut existing, mut at_zero, mut last) = (0, None, 0.0);
    for &level in std::iter::once(&0).chain(levels) {
        if level > existing {
            let fill = creates(api, profile, db, existing, level - existing, n).await;
            println!(
                "{:>9} filled to {level} at {:.0} creates/s, {} errors",
                "",
                fill.rate(),
                fill.errors
            );
            existing = level;
        }
        let (server0, pg0) = (api.cpu(), pg.total());
        let stats = creates(api, profile, db, existing, batch, n).await;
        let per = |cpu: Duration| cpu.as_micros() as f64 / stats.count.max(1) as f64;
        let (server, pg_cpu) = (per(api.cpu() - server0), per(pg.total() - pg0));
        let rate = stats.rate();
        let zero = *at_zero.get_or_insert(rate);
        let sizes = acls(target, db).await;
        println!(
            "{existing:>9} {rate:>10.0} {:>8.1} {:>8.1} {:>7} {server:>10.0} {pg_cpu:>9.0} {:>9.0}% {:>9} {:>12}",
            stats.pct(0.50).as_secs_f64() * 1e3,
            stats.pct(0.99).as_secs_f64() * 1e3,
            stats.errors,
            100.0 * rate / zero.max(f64::MIN_POSITIVE),
            sizes.datacl_bytes,
            sizes.relacl_max_bytes,
        );
        existing += batch;
        last = rate;
    }
    if let (Some(zero), Some(&top)) = (at_zero, levels.last()) {
        println!(
            "{profile}: the rate at {top} existing users is {:.0}% of the rate at 0 (goal: at least 90%)",
            100.0 * last / zero.max(f64::MIN_POSITIVE)
        );
    }
    let s = acls(target, db).await;
    println!(
        "at the end, {existing} {profile} users: datacl {} B ({} entries); relacl of {} relations max {} B ({} entries), sum {} B; default ACLs max {} B ({} entries)",
        s.datacl_bytes,
        s.datacl_entries,
        s.relations,
        s.relacl_max_bytes,
        s.relacl_max_entries,
        s.relacl_sum_bytes,
        s.defacl_max_bytes,
        s.defacl_max_entries,
    );
}

#[tokio::main]
async fn main() {
    let a = args();
    let (cluster, admin_pw) = demo_cluster();
    // `readonly` grants on every table: a database as wide as the issue's.
    cluster
        .psql("postgres", "CREATE DATABASE wide OWNER app_owner")
        .unwrap();
    cluster
        .psql(
            "wide",
            &format!(
                "SET ROLE app_owner;
                 DO $$ BEGIN FOR i IN 1..{} LOOP
                   EXECUTE format('CREATE TABLE public.t%s (id int PRIMARY KEY, v text)', i);
                 END LOOP; END $$;",
                a.tables
            ),
        )
        .unwrap();
    println!(
        "pg-user-api growth benchmark: {} cores, PostgreSQL {} on 127.0.0.1:{}, levels 0 and {:?} existing users",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        cluster
            .psql("postgres", "SHOW server_version")
            .unwrap_or_default(),
        cluster.port(),
        a.users
    );
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("growth.db").display());
    let store = pgua::store::open(&store_url).await.unwrap();
    for db in ["dev", "wide"] {
        register(store.as_ref(), "dev", db, cluster.port()).await;
    }
    let pass = Password::generate().expose().to_owned();
    let api = Arc::new(Api::new(
        vec![start_server(&store_url, &admin_pw, &pass).await],
        &pass,
    ));
    for profile in &a.profiles {
        let db = if profile == "readonly" { "wide" } else { "dev" };
        let target = admin_client(cluster.port(), &admin_pw, db).await;
        let mut pg = PgCpu::of(&target).await;
        growth(
            &api,
            &mut pg,
            &target,
            profile,
            db,
            &a.users,
            a.batch,
            a.concurrency,
        )
        .await;
    }
}

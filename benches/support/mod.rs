//! What the benchmarks share: driving concurrent callers, the release server as its own
//! process, and the CPU and memory of processes (the server, PostgreSQL, the bench itself)
//! read from `/proc`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pgua::cli::demo::{DEMO_ADMIN, prepare_cluster};
use pgua::cluster::{ClusterOptions, TempCluster};
use pgua::plan::Password;
use pgua::store::{NewEntry, SslMode};
use tokio::net::TcpStream;

/// The server binary cargo built for this bench.
pub const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");

/// The API user the bench's servers accept.
pub const USER: &str = "bench";

/// Requests/s and latency percentiles of one phase.
pub struct Stats {
    /// Calls made.
    pub count: usize,
    /// Calls that did not answer as expected.
    pub errors: usize,
    /// Wall time of the phase.
    pub elapsed: Duration,
    /// Each call's latency.
    pub latencies: Vec<Duration>,
}

impl Stats {
    /// Calls per second.
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// The latency at fraction `p` (0.5 = median).
    pub fn pct(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort_unstable();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// Runs `op(task, i)` from `n` concurrent tasks for `secs` seconds.
pub async fn drive<F, Fut>(n: usize, secs: u64, op: F) -> Stats
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

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces).
fn stat_fields(pid: u32) -> Vec<String> {
    read_stat(Path::new(&format!("/proc/{pid}/stat"))).1
}

/// A `stat` file of a process or a thread: its name (between the parentheses) and the
/// fields after it.
fn read_stat(path: &Path) -> (String, Vec<String>) {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let (open, close) = (stat.find('(').unwrap_or(0), stat.rfind(')').unwrap_or(0));
    let name = stat.get(open + 1..close).unwrap_or_default().to_owned();
    let fields = stat.get(close + 1..).unwrap_or_default().split_whitespace();
    (name, fields.map(str::to_owned).collect())
}

/// CPU time (user + system) a process has used, from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    ticks_to_time(&stat_fields(pid))
}

/// utime + stime of a `stat` line's fields (after the name).
fn ticks_to_time(fields: &[String]) -> Duration {
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(ticks * 1_000_000 / hz.max(1))
}

/// CPU time a process's threads have used, summed per thread name (`/proc/PID/task`):
/// which of a server's threads (runtime workers, verifier, audit writer) a phase kept busy.
pub fn thread_cpu(pid: u32) -> BTreeMap<String, Duration> {
    let mut out = BTreeMap::new();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for task in tasks.flatten() {
        let (name, fields) = read_stat(&task.path().join("stat"));
        *out.entry(name).or_default() += ticks_to_time(&fields);
    }
    out
}

/// Each thread name's CPU since `before` (a [`thread_cpu`] reading), the idle ones left out.
pub fn thread_cpu_since(
    before: &BTreeMap<String, Duration>,
    now: BTreeMap<String, Duration>,
) -> Vec<(String, Duration)> {
    now.into_iter()
        .map(|(name, t)| {
            let was = before.get(&name).copied().unwrap_or_default();
            (name, t.saturating_sub(was))
        })
        .filter(|(_, t)| !t.is_zero())
        .collect()
}

/// CPU time the bench process itself has used: a ceiling only counts when the client
/// driving it is not what limits it.
pub fn client_cpu() -> Duration {
    cpu_time(std::process::id())
}

/// CPU time of children the bench has waited for (a finished `pgbench`, for instance).
pub fn children_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Peak resident set size of a process, from /proc.
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}

/// One number of `/proc/<pid>/status` (the kB ones in KiB), 0 when it cannot be read.
pub fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time of a PostgreSQL cluster's processes (postmaster and every child), remembered
/// per process so a backend that ends keeps counting with what it used until last seen.
pub struct PgCpu {
    postmaster: u32,
    seen: HashMap<u32, Duration>,
}

impl PgCpu {
    /// The cluster that serves `client`'s backend.
    pub async fn of(client: &tokio_postgres::Client) -> Self {
        let backend: i32 = client
            .query_one("SELECT pg_catalog.pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        let postmaster = stat_fields(backend as u32)
            .get(1)
            .and_then(|v| v.parse().ok())
            .expect("backend's parent pid");
        Self {
            postmaster,
            seen: HashMap::new(),
        }
    }

    /// The CPU time used so far by every process seen (a new reading of those alive).
    pub fn total(&mut self) -> Duration {
        let mut pids = vec![self.postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if stat_fields(pid).get(1).and_then(|v| v.parse().ok()) == Some(self.postmaster) {
                pids.push(pid);
            }
        }
        for pid in pids {
            let used = cpu_time(pid);
            let slot = self.seen.entry(pid).or_default();
            *slot = (*slot).max(used);
        }
        self.seen.values().sum()
    }
}

/// One server process.
pub struct Server {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: SIGTERM to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Starts the release server on a free port with `store_url`, once it answers.
pub async fn start_server(store_url: &str, admin_password: &str, pass: &str) -> Server {
    start_server_with(store_url, admin_password, pass, None).await
}

/// [`start_server`] with a configuration file.
pub async fn start_server_with(
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
pub struct Api {
    /// The replicas.
    pub servers: Vec<Server>,
    /// The `Authorization` header's value for [`USER`] and the API password.
    authorization: String,
    /// Kept-open connections per replica: a call takes one (or opens one) and puts it back.
    idle: Vec<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Api {
    pub fn new(servers: Vec<Server>, pass: &str) -> Self {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{pass}"));
        Self {
            idle: servers.iter().map(|_| Default::default()).collect(),
            servers,
            authorization: format!("Basic {basic}"),
        }
    }

    /// Status code and `status` field of one call, sent to replica `i % n`.
    ///
    /// The request is written and the answer read by hand over kept-open connections — a
    /// GET, an answer with a `content-length`, as the server gives — the way `wrk` does,
    /// so that the client costs the shared cores little more than the minimal-SQL
    /// ceiling's client does (a general HTTP client spent 79 µs a create against 48 for
    /// tokio-postgres). A connection that fails is dropped, and the call counts as failed
    /// unless the connection was a kept one that closed before answering (below).
    pub async fn call(&self, i: usize, path: &str, q: &[(&str, &str)]) -> (u16, String) {
        let k = i % self.servers.len();
        let base = &self.servers[k].base;
        let addr = &base["http://".len()..];
        let mut url = reqwest::Url::parse(&format!("{base}{path}")).expect("a URL");
        url.query_pairs_mut().extend_pairs(q);
        let request = format!(
            "GET {}?{} HTTP/1.1\r\nhost: {addr}\r\nauthorization: {}\r\n\r\n",
            url.path(),
            url.query().unwrap_or_default(),
            self.authorization
        );
        let mut answer = Exchange::Closed;
        // A kept connection the server closed as idle (past its header-read timeout) answers
        // nothing, having read nothing: the call then goes on a new one.
        let kept = self.idle[k].lock().unwrap().pop();
        for conn in [kept, None] {
            let conn = match conn {
                Some(conn) => Some(conn),
                None => TcpStream::connect(addr).await.ok(),
            };
            let Some(mut conn) = conn else { break };
            answer = exchange(&mut conn, request.as_bytes()).await;
            if let Exchange::Answer(..) = answer {
                self.idle[k].lock().unwrap().push(conn);
            }
            if !matches!(answer, Exchange::Closed) {
                break;
            }
        }
        match answer {
            Exchange::Answer(code, body) => {
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                (code, body["status"].as_str().unwrap_or_default().to_owned())
            }
            _ => (0, String::new()),
        }
    }

    /// CPU time of all replicas.
    pub fn cpu(&self) -> Duration {
        self.servers.iter().map(|s| cpu_time(s.child.id())).sum()
    }

    /// CPU time of all replicas' threads, per thread name ([`thread_cpu`]).
    pub fn thread_cpu(&self) -> BTreeMap<String, Duration> {
        let mut out = BTreeMap::new();
        for s in &self.servers {
            for (name, t) in thread_cpu(s.child.id()) {
                *out.entry(name).or_default() += t;
            }
        }
        out
    }

    /// The highest peak RSS of the replicas.
    pub fn peak_rss_mib(&self) -> f64 {
        self.servers
            .iter()
            .map(|s| peak_rss_kib(s.child.id()))
            .max()
            .unwrap_or(0) as f64
            / 1024.0
    }
}

/// What one request on a connection came to.
enum Exchange {
    /// The answer's status and body.
    Answer(u16, Vec<u8>),
    /// The connection closed before a byte of an answer came.
    Closed,
    /// It failed otherwise, or the answer is not one the bench understands.
    Failed,
}

/// Sends `request` on `conn` and reads the answer's status and body (its `content-length`
/// bytes).
async fn exchange(conn: &mut TcpStream, request: &[u8]) -> Exchange {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if conn.write_all(request).await.is_err() {
        return Exchange::Closed;
    }
    let mut buf = Vec::with_capacity(1024);
    let mut read = async |buf: &mut Vec<u8>| conn.read_buf(buf).await.is_ok_and(|n| n > 0);
    loop {
        if !read(&mut buf).await {
            return if buf.is_empty() {
                Exchange::Closed
            } else {
                Exchange::Failed
            };
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut answer = httparse::Response::new(&mut headers);
        let head = match answer.parse(&buf) {
            Ok(httparse::Status::Complete(head)) => head,
            Ok(httparse::Status::Partial) => continue,
            Err(_) => return Exchange::Failed,
        };
        let length = answer
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        let (Some(code), Some(length)) = (answer.code, length) else {
            return Exchange::Failed;
        };
        while buf.len() < head + length {
            if !read(&mut buf).await {
                return Exchange::Failed;
            }
        }
        // One request at a time per connection: nothing follows the body.
        return if buf.len() == head + length {
            Exchange::Answer(code, buf.split_off(head))
        } else {
            Exchange::Failed
        };
    }
}

/// `n` calls at most `concurrency` at a time; returns each call's (code, status).
pub async fn burst(
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

/// Registers database `db` of the cluster on `port` as env `env`.
pub async fn register(store: &dyn pgua::store::Store, env: &str, db: &str, port: u16) {
    store
        .registry_add(&NewEntry {
            env: env.into(),
            db_name: db.into(),
            hostname: "127.0.0.1".into(),
            port,
            active: true,
            notes: None,
            sslmode: SslMode::Disable,
        })
        .await
        .unwrap();
}

/// Registers the cluster's `dev` database as env `dev`.
pub async fn register_dev(store: &dyn pgua::store::Store, port: u16) {
    register(store, "dev", "dev", port).await;
}

/// A kept-open connection to database `db` of the cluster on `port`, as the admin role.
pub async fn admin_client(port: u16, password: &str, db: &str) -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .dbname(db)
        .user(DEMO_ADMIN)
        .password(password)
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

/// A throw-away cluster set up as the demo's (admin role, `dev` and `prod`), with the admin
/// role's password; installs the TLS crypto provider first.
pub fn demo_cluster() -> (TempCluster, String) {
    pgua::tls::install_crypto_provider();
    let cluster = TempCluster::start(ClusterOptions::default()).expect("cluster");
    let admin_password = Password::generate();
    prepare_cluster(&cluster, admin_password.expose()).expect("prepare");
    (cluster, admin_password.expose().to_owned())
}

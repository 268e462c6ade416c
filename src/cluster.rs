//! Private, throw-away PostgreSQL clusters started from the machine's own binaries, for the
//! integration tests, the benchmark and the `demo` command.
//!
//! Each cluster lives in its own `pgua-cluster-*` temp dir and listens on a free port on
//! 127.0.0.1 only: a system PostgreSQL may already hold 5432, and many clusters may run at
//! once. PostgreSQL refuses to run as root, so as root `initdb` and `postgres` run as the
//! `postgres` OS user through `setpriv`, which execs: the pid we hold is postgres itself and
//! the signals we send reach it.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

const DIR_PREFIX: &str = "pgua-cluster-";
const OWNER_FILE: &str = "owner.pid";
const DATA_DIR: &str = "data";
const LOG_FILE: &str = "postgres.log";
const HOST: &str = "127.0.0.1";
const SUPERUSER: &str = "postgres";
const OS_USER: &str = "postgres";
const PG_BIN_ENV: &str = "PGUA_PG_BIN";
/// The tools a cluster needs; a directory missing any of them is of no use.
const TOOLS: [&str; 4] = ["initdb", "postgres", "pg_isready", "psql"];
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_LINES: usize = 30;

/// Ports held by the live clusters of this process. The kernel may hand a port that one of
/// our stopped clusters still counts on (for `restart`) to another thread's probe; keeping a
/// list makes such in-process collisions impossible, and the retry covers other processes.
static PORTS_IN_USE: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Where the PostgreSQL server binaries are.
#[derive(Clone, Debug)]
pub struct PgBinaries {
    /// The directory holding `initdb`, `postgres`, `pg_isready` and `psql`.
    pub bin_dir: PathBuf,
}

impl PgBinaries {
    /// Finds them: env PGUA_PG_BIN, else the highest-versioned /usr/lib/postgresql/*/bin, else
    /// /usr/local/pgsql/bin, else the directory of `initdb` on PATH.
    /// The error message says exactly what to install (Debian/Ubuntu: `apt-get install
    /// postgresql`; Fedora/RHEL: `dnf install postgresql-server`; macOS: `brew install
    /// postgresql@16`) or to set PGUA_PG_BIN.
    pub fn locate() -> anyhow::Result<Self> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        locate_in(
            std::env::var_os(PG_BIN_ENV).map(PathBuf::from),
            Path::new("/usr/lib/postgresql"),
            Path::new("/usr/local/pgsql/bin"),
            std::env::split_paths(&path),
        )
    }

    /// The full path of one tool, e.g. `path("psql")`.
    pub fn path(&self, tool: &str) -> PathBuf {
        self.bin_dir.join(tool)
    }
}

fn missing_tools(dir: &Path) -> Vec<&'static str> {
    TOOLS
        .into_iter()
        .filter(|tool| !dir.join(tool).is_file())
        .collect()
}

/// `locate` with its inputs passed in, so the search order can be tested without touching
/// the process environment.
fn locate_in(
    env_dir: Option<PathBuf>,
    versioned_root: &Path,
    fixed_dir: &Path,
    path_dirs: impl IntoIterator<Item = PathBuf>,
) -> anyhow::Result<PgBinaries> {
    // An explicit choice that does not work is an error, not a hint to look elsewhere: the
    // caller would silently test against another version than the one they asked for.
    if let Some(dir) = env_dir.filter(|d| !d.as_os_str().is_empty()) {
        let missing = missing_tools(&dir);
        if missing.is_empty() {
            return Ok(PgBinaries { bin_dir: dir });
        }
        bail!(
            "{PG_BIN_ENV}={} lacks {}: point it at the directory that holds the PostgreSQL \
             server binaries (initdb, postgres, pg_isready, psql)",
            dir.display(),
            missing.join(", ")
        );
    }
    // Debian and Ubuntu keep the server binaries off PATH, one directory per major version.
    let mut versioned: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(versioned_root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort();
    let on_path = path_dirs
        .into_iter()
        .filter(|dir| dir.join("initdb").is_file());
    versioned
        .into_iter()
        .rev()
        .map(|(_, dir)| dir)
        .chain([fixed_dir.to_path_buf()])
        .chain(on_path)
        .find(|dir| missing_tools(dir).is_empty())
        .map(|bin_dir| PgBinaries { bin_dir })
        .ok_or_else(|| {
            anyhow!(
                "no PostgreSQL server binaries (initdb, postgres, pg_isready, psql) found in \
                 {}/*/bin, {} or on PATH. Install them: Debian/Ubuntu: `apt-get install \
                 postgresql`; Fedora/RHEL: `dnf install postgresql-server`; macOS: `brew \
                 install postgresql@16`. Or set {PG_BIN_ENV} to the directory that holds them.",
                versioned_root.display(),
                fixed_dir.display()
            )
        })
}

/// Options for a new cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Extra `-c name=value` server settings, e.g. ("log_statement","all").
    pub settings: Vec<(String, String)>,
    /// Files to put into the data directory before the server starts, as (file name,
    /// contents), e.g. a TLS certificate and key that `ssl_cert_file`/`ssl_key_file` name
    /// relative to the data directory. Plain file names only. Written with mode 0600 and
    /// owned by the server's OS user, as PostgreSQL demands of a private key.
    pub files: Vec<(String, Vec<u8>)>,
}

/// The OS user the server runs as when we are root.
#[derive(Clone, Copy, Debug)]
struct RunAs {
    uid: u32,
    gid: u32,
}

/// Looks an OS user up. `getpwnam_r`, not `getpwnam`: clusters start from many threads at
/// once and `getpwnam` hands out one shared static buffer.
fn os_user_ids(name: &str) -> anyhow::Result<Option<RunAs>> {
    let cname = CString::new(name)?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: an all-zero passwd (null pointers, zero ids) is a valid value to overwrite.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call and `buf.len()` is the buffer's size.
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < (1 << 20) {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc))
                .with_context(|| format!("looking up the OS user `{name}`"));
        }
        return Ok((!result.is_null()).then_some(RunAs {
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        }));
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_as() -> anyhow::Result<Option<RunAs>> {
    if !is_root() {
        return Ok(None);
    }
    match os_user_ids(OS_USER)? {
        Some(user) => Ok(Some(user)),
        None => bail!(
            "running as root, and PostgreSQL refuses to run as root, but there is no \
             `{OS_USER}` OS user to run it as: create one (`useradd --system {OS_USER}`) or \
             run as a regular user"
        ),
    }
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Keeps the caller's libpq variables (PGSSLMODE, PGOPTIONS, PGSERVICE, …) from changing
/// how our tools connect or how the server starts: everything they need is passed explicitly.
fn clear_pg_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
}

fn reserve_free_port() -> anyhow::Result<u16> {
    let mut in_use = PORTS_IN_USE.lock().unwrap_or_else(PoisonError::into_inner);
    for _ in 0..100 {
        let port = TcpListener::bind((HOST, 0))
            .and_then(|l| l.local_addr())
            .context("finding a free TCP port on 127.0.0.1")?
            .port();
        if in_use.insert(port) {
            return Ok(port);
        }
    }
    bail!("no free TCP port on 127.0.0.1")
}

fn release_port(port: u16) {
    PORTS_IN_USE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&port);
}

fn signal(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid)
        && pid > 0
    {
        // SAFETY: kill(2) on a positive pid has no memory-safety preconditions.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Waits for our child up to `timeout`; `None` if it is still running.
fn wait_child(child: &mut Child, timeout: Duration) -> io::Result<Option<()>> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(Some(()));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL);
    }
}

/// Why one attempt to start the server failed: only a lost port is worth another port.
enum StartFailure {
    PortTaken(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartFailure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl From<io::Error> for StartFailure {
    fn from(e: io::Error) -> Self {
        Self::Other(e.into())
    }
}

impl StartFailure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Self::PortTaken(e) | Self::Other(e) => e,
        }
    }
}

/// A running throw-away cluster: scram-sha-256 auth, TCP on 127.0.0.1 only, no unix socket,
/// a random superuser password. Dropping it stops the server (fast shutdown) and deletes its
/// directory.
pub struct TempCluster {
    bins: PgBinaries,
    /// `Some` until drop, which takes it to delete the directory after the server is down.
    dir: Option<tempfile::TempDir>,
    port: u16,
    password: String,
    settings: Vec<(String, String)>,
    /// The postmaster, while it runs; kept un-reaped so its pid cannot be reused under us.
    child: Option<Child>,
    run_as: Option<RunAs>,
}

impl std::fmt::Debug for TempCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TempCluster")
            .field("dir", &self.dir.as_ref().map(|d| d.path()))
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .finish_non_exhaustive()
    }
}

impl TempCluster {
    /// Creates a new cluster in a fresh temp dir (`initdb`) and starts it on a free port;
    /// returns once it accepts connections. Safe to call from many threads at once.
    pub fn start(opts: ClusterOptions) -> anyhow::Result<Self> {
        let ClusterOptions { settings, files } = opts;
        // Checked before any work, so a bad name costs no initdb.
        for (name, _) in &files {
            let mut parts = Path::new(name).components();
            let plain = matches!(
                (parts.next(), parts.next()),
                (Some(std::path::Component::Normal(_)), None)
            );
            if !plain {
                bail!("cluster file name {name:?} must be a plain file name");
            }
        }
        let bins = PgBinaries::locate()?;
        let run_as = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(std::env::temp_dir())
            .context("creating the cluster's temp dir")?;
        // Written first, so that a reaper never sees this dir without an owner it can check.
        fs::write(
            dir.path().join(OWNER_FILE),
            format!("{}\n", std::process::id()),
        )
        .context("writing owner.pid")?;
        if let Some(user) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid))
                .with_context(|| format!("handing {} to `{OS_USER}`", dir.path().display()))?;
        }
        let mut cluster = Self {
            bins,
            dir: Some(dir),
            port: 0,
            password: random_hex(16)?,
            settings,
            child: None,
            run_as,
        };
        // On any error below, dropping `cluster` stops what was started and removes the dir.
        cluster.init_db()?;
        for (name, contents) in &files {
            cluster
                .write_private_file(&cluster.data_dir().join(name), contents)
                .with_context(|| format!("writing {name} into the data directory"))?;
        }
        cluster.start_on_free_port()?;
        Ok(cluster)
    }

    /// The TCP port the server listens on (the same across `stop`/`restart`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The only address the server listens on: "127.0.0.1".
    pub fn host(&self) -> &str {
        HOST
    }

    /// The superuser's name: "postgres".
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's random password (32 hex characters).
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// libpq-style key=value connection string for the superuser to `dbname` (e.g.
    /// "host=127.0.0.1 port=… user=postgres password=… dbname=…").
    pub fn conn_string(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} password={} dbname={}",
            self.port,
            self.password,
            conninfo_value(dbname)
        )
    }

    /// The server's log file (stderr of postgres), so tests can read what statements it
    /// logged.
    pub fn log_path(&self) -> PathBuf {
        self.dir().join(LOG_FILE)
    }

    /// Runs SQL as the superuser through the cluster's `psql` (-X -v ON_ERROR_STOP=1 -At),
    /// returns stdout; errors include psql's stderr. Pass the password through PGPASSWORD in
    /// the child's env only.
    ///
    /// The SQL goes in on stdin (`-f -`), not `-c`: each statement then runs on its own, so
    /// `CREATE DATABASE` may follow other statements, and secrets in the SQL (password
    /// verifiers) never show up in the process list. `-q` keeps command tags such as
    /// `CREATE ROLE` out of the output, which thus holds only query results, one row a line,
    /// without the trailing newline.
    pub fn psql(&self, dbname: &str, sql: &str) -> anyhow::Result<String> {
        let mut cmd = Command::new(self.bins.path("psql"));
        clear_pg_env(&mut cmd);
        let port = self.port.to_string();
        cmd.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At"])
            .args([
                "-h", HOST, "-p", &port, "-U", SUPERUSER, "-d", dbname, "-f", "-",
            ])
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("running {}", self.bins.path("psql").display()))?;
        let mut stdin = child.stdin.take().context("psql's stdin")?;
        let out = std::thread::scope(|s| {
            // Fed from another thread: psql may fill its output pipe before it has read all
            // of a long script, and would then wait for us while we wait for it.
            s.spawn(move || {
                // A write error means psql has stopped reading; its exit status says why.
                let _ = stdin.write_all(sql.as_bytes());
            });
            child.wait_with_output()
        })
        .context("running psql")?;
        if !out.status.success() {
            bail!(
                "psql on database {dbname} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        Ok(stdout.trim_end_matches('\n').to_owned())
    }

    /// Stops the server (fast shutdown, waits for exit) but keeps the data, so a test can
    /// simulate a target going down.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        // SIGINT is PostgreSQL's fast shutdown: sessions are cut, a checkpoint is written.
        // Escalate only if that hangs, so Drop can never block for good.
        let escalation = [
            (libc::SIGINT, STOP_TIMEOUT),
            (libc::SIGQUIT, Duration::from_secs(10)),
            (libc::SIGKILL, Duration::from_secs(10)),
        ];
        for (sig, timeout) in escalation {
            if child.try_wait()?.is_some() {
                break;
            }
            signal(child.id(), sig);
            if wait_child(child, timeout)?.is_some() {
                break;
            }
        }
        if child.try_wait()?.is_none() {
            bail!("postgres (pid {}) did not exit", child.id());
        }
        self.child = None;
        Ok(())
    }

    /// Starts it again on the same port after stop().
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if child.try_wait()?.is_none() {
                return Ok(());
            }
            // It died on its own; start it afresh like after stop().
            self.child = None;
        }
        self.spawn_and_wait().map_err(|e| {
            e.into_error()
                .context(format!("restarting on port {}", self.port))
        })
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the cluster dir lives until drop")
            .path()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir().join(DATA_DIR)
    }

    /// A command for a server-side tool, run as the `postgres` OS user when we are root.
    fn server_command(&self, tool: &str) -> Command {
        let mut cmd = match self.run_as {
            Some(_) => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={OS_USER}"))
                    .arg(format!("--regid={OS_USER}"))
                    .arg("--init-groups")
                    .arg(self.bins.path(tool));
                cmd
            }
            None => Command::new(self.bins.path(tool)),
        };
        clear_pg_env(&mut cmd);
        // Our cwd may be unreadable to the `postgres` user (e.g. /root), which initdb and
        // postgres complain about; LC_ALL=C keeps early messages in English, which
        // `spawn_and_wait` looks for.
        cmd.current_dir(self.dir())
            .env("LC_ALL", "C")
            .stdin(Stdio::null());
        cmd
    }

    /// Writes a file only the server's OS user may read (created 0600, so there is no
    /// moment at which others could).
    fn write_private_file(&self, path: &Path, contents: &[u8]) -> anyhow::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(contents)?;
        if let Some(user) = self.run_as {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
                .with_context(|| format!("handing {} to `{OS_USER}`", path.display()))?;
        }
        Ok(())
    }

    fn init_db(&self) -> anyhow::Result<()> {
        let pwfile = self.dir().join("pwfile");
        self.write_private_file(&pwfile, self.password.as_bytes())
            .context("writing initdb's password file")?;
        let result = self.run_initdb(&pwfile);
        let _ = fs::remove_file(&pwfile);
        result
    }

    fn run_initdb(&self, pwfile: &Path) -> anyhow::Result<()> {
        let mut failures = Vec::new();
        // C.UTF-8 gives UTF-8 character classes with byte-order sorting, but not every
        // system has that locale; plain C always exists.
        for locale in ["C.UTF-8", "C"] {
            let out = self
                .server_command("initdb")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-U", SUPERUSER, "--auth=scram-sha-256", "-E", "UTF8"])
                .arg(format!("--pwfile={}", pwfile.display()))
                .arg(format!("--locale={locale}"))
                .arg("--no-sync")
                .output()
                .with_context(|| format!("running {}", self.bins.path("initdb").display()))?;
            if out.status.success() {
                return Ok(());
            }
            failures.push(format!(
                "with --locale={locale} ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            // initdb removes what it made on failure; this only makes sure the retry starts
            // from nothing.
            let _ = fs::remove_dir_all(self.data_dir());
        }
        bail!("initdb failed {}", failures.join("\n"))
    }

    fn start_on_free_port(&mut self) -> anyhow::Result<()> {
        let mut last = None;
        for _ in 0..PORT_ATTEMPTS {
            self.port = reserve_free_port()?;
            match self.spawn_and_wait() {
                Ok(()) => return Ok(()),
                // Someone bound the port between our probe and postgres: try another.
                Err(StartFailure::PortTaken(e)) => {
                    release_port(self.port);
                    self.port = 0;
                    last = Some(e);
                }
                Err(StartFailure::Other(e)) => return Err(e),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow!("no attempt made"))
            .context(format!(
                "postgres found its port taken {PORT_ATTEMPTS} times in a row"
            )))
    }

    /// Spawns postgres on `self.port` and waits until it accepts connections.
    fn spawn_and_wait(&mut self) -> Result<(), StartFailure> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let log_start = log.metadata()?.len();
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string());
        let fixed = [
            ("listen_addresses", HOST),
            ("unix_socket_directories", ""),
            // Throw-away data: durability only costs time.
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "200"),
            ("shared_buffers", "32MB"),
        ];
        let extra = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (name, value) in fixed.into_iter().chain(extra) {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdout(log.try_clone()?).stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bins.path("postgres").display()))?;
        let pid = child.id();
        // Held from here on, so that any early return still leaves it to stop()/Drop.
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("set above");
            if let Some(status) = child.try_wait()? {
                self.child = None;
                let log = read_log_from(&self.log_path(), log_start);
                let error = anyhow!(
                    "postgres on port {} exited during start-up ({status}); its log ends:\n{}",
                    self.port,
                    tail(&log, LOG_TAIL_LINES)
                );
                let port_taken = log.contains("Address already in use")
                    || log.contains("could not create any TCP/IP sockets");
                return Err(if port_taken {
                    StartFailure::PortTaken(error)
                } else {
                    StartFailure::Other(error)
                });
            }
            if self.is_ready(pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.stop();
                let log = read_log_from(&self.log_path(), log_start);
                return Err(StartFailure::Other(anyhow!(
                    "postgres on port {} was not ready after {} s; its log ends:\n{}",
                    self.port,
                    READY_TIMEOUT.as_secs(),
                    tail(&log, LOG_TAIL_LINES)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether *our* postmaster accepts connections. pg_isready alone could be answered by
    /// another server that took the port between our probe and postgres's bind, so the
    /// postmaster's own pid file must also name our pid and say "ready".
    fn is_ready(&self, pid: u32) -> bool {
        let Ok(pidfile) = fs::read_to_string(self.data_dir().join("postmaster.pid")) else {
            return false;
        };
        let lines: Vec<&str> = pidfile.lines().collect();
        let ours = lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == Some(pid);
        let ready = lines.get(7).is_some_and(|l| l.trim() == "ready");
        ours && ready && self.pg_isready()
    }

    fn pg_isready(&self) -> bool {
        let mut cmd = Command::new(self.bins.path("pg_isready"));
        clear_pg_env(&mut cmd);
        cmd.args(["-q", "-h", HOST, "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "-d", "postgres", "-t", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.stop();
        release_port(self.port);
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

fn read_log_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Quotes a conninfo value when libpq would otherwise split or misread it.
fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Stops and removes clusters left behind by processes that died without running Drop
/// (their owner pid is recorded in the cluster dir); call it at start-up of test support
/// and the demo.
pub fn reap_stale_clusters() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(DIR_PREFIX));
        let path = entry.path();
        if is_ours && is_stale(&path) {
            reap(&path);
        }
    }
}

/// A positive pid from the first line of a file; `None` for anything else, since kill(2)
/// reads 0 and negative numbers as whole process groups.
fn read_pid(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    (pid > 0 && libc::pid_t::try_from(pid).is_ok()).then_some(pid)
}

fn is_stale(dir: &Path) -> bool {
    // symlink_metadata: a symlink planted under our prefix must not lead us anywhere else.
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return false;
    };
    if !meta.is_dir() {
        return false;
    }
    // Only dirs we could have made: ours, or, as root, the `postgres` user's we hand them to.
    // SAFETY: geteuid cannot fail and has no preconditions.
    let me = unsafe { libc::geteuid() };
    let owned = meta.uid() == me
        || (me == 0
            && os_user_ids(OS_USER)
                .ok()
                .flatten()
                .is_some_and(|u| u.uid == meta.uid()));
    // No owner file (yet): the dir is being created right now, or is not ours to judge.
    owned && read_pid(&dir.join(OWNER_FILE)).is_some_and(|pid| !process_alive(pid))
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(pid, 0) } != 0
        && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
    {
        return false;
    }
    // A zombie still answers kill(pid, 0) but is dead, and in a container whose init does
    // not reap orphans it stays one for good.
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            Some(rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    !zombie
}

/// Whether `pid` is the postmaster of `data_dir`. The pid file outlives a crashed server
/// and its pid may since belong to an unrelated process, so on Linux the process must have
/// the data dir as its working directory (postgres changes into it at start-up).
fn is_postmaster_of(pid: u32, data_dir: &Path) -> bool {
    match fs::read_link(format!("/proc/{pid}/cwd")) {
        Ok(cwd) => fs::canonicalize(data_dir).is_ok_and(|data| data == cwd),
        // Without /proc (not Linux) there is nothing better to check than that it lives.
        Err(_) if !Path::new("/proc/self").exists() => process_alive(pid),
        Err(_) => false,
    }
}

fn reap(dir: &Path) {
    let data = dir.join(DATA_DIR);
    if let Some(pid) = read_pid(&data.join("postmaster.pid"))
        && is_postmaster_of(pid, &data)
    {
        // SIGQUIT is PostgreSQL's immediate shutdown: nothing here is worth a checkpoint.
        for (sig, timeout) in [
            (libc::SIGQUIT, Duration::from_secs(10)),
            (libc::SIGKILL, Duration::from_secs(5)),
        ] {
            signal(pid, sig);
            let deadline = Instant::now() + timeout;
            while process_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if !process_alive(pid) {
                break;
            }
        }
    }
    let _ = fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> TempCluster {
        TempCluster::start(ClusterOptions::default()).expect("cluster starts")
    }

    fn pid_of(c: &TempCluster) -> u32 {
        c.child.as_ref().expect("running").id()
    }

    /// A pid that belonged to a process which has exited and been reaped.
    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
        pid
    }

    fn psql_as(c: &TempCluster, password: &str) -> std::process::Output {
        let mut cmd = Command::new(c.bins.path("psql"));
        clear_pg_env(&mut cmd);
        cmd.args(["-X", "-At", "-h", c.host(), "-p", &c.port().to_string()])
            .args(["-U", c.superuser(), "-d", "postgres", "-c", "select 1"])
            .env("PGPASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn pg_isready(c: &TempCluster) -> bool {
        c.pg_isready()
    }

    #[test]
    fn locate_finds_the_machines_binaries() {
        let bins = PgBinaries::locate().unwrap();
        for tool in TOOLS {
            assert!(bins.path(tool).is_file(), "{tool} in {bins:?}");
        }
    }

    #[test]
    fn locate_prefers_the_highest_version_and_explains_what_to_install() {
        let root = tempfile::tempdir().unwrap();
        for version in ["9.6", "15", "13", "not-a-version"] {
            let bin = root.path().join(version).join("bin");
            fs::create_dir_all(&bin).unwrap();
            for tool in TOOLS {
                fs::write(bin.join(tool), "").unwrap();
            }
        }
        let none = Path::new("/nonexistent");
        let found = locate_in(None, root.path(), none, []).unwrap();
        assert_eq!(found.bin_dir, root.path().join("15/bin"));

        let err = locate_in(None, none, none, [none.to_path_buf()])
            .unwrap_err()
            .to_string();
        for hint in [
            "apt-get install postgresql",
            "dnf install postgresql-server",
            "brew install postgresql@16",
            "PGUA_PG_BIN",
        ] {
            assert!(err.contains(hint), "{hint} missing from: {err}");
        }

        let err = locate_in(Some(none.into()), root.path(), none, [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PGUA_PG_BIN=/nonexistent"), "{err}");
        let explicit = root.path().join("13/bin");
        let found = locate_in(Some(explicit.clone()), root.path(), none, []).unwrap();
        assert_eq!(found.bin_dir, explicit);
    }

    #[test]
    fn a_cluster_answers_queries_over_tcp_only_with_scram() {
        let c = cluster();
        assert_eq!(c.psql("postgres", "select 1").unwrap(), "1");
        assert_eq!(c.host(), "127.0.0.1");
        assert_eq!(c.superuser(), "postgres");
        assert_eq!(c.superuser_password().len(), 32);
        assert!(
            c.superuser_password()
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
        );
        assert_eq!(
            c.conn_string("app db"),
            format!(
                "host=127.0.0.1 port={} user=postgres password={} dbname='app db'",
                c.port(),
                c.superuser_password()
            )
        );
        let settings = c
            .psql(
                "postgres",
                "show listen_addresses; show unix_socket_directories; \
                 show password_encryption; show fsync; \
                 select distinct auth_method from pg_hba_file_rules;",
            )
            .unwrap();
        assert_eq!(settings, "127.0.0.1\n\nscram-sha-256\noff\nscram-sha-256");
        // Statements run one by one, so CREATE DATABASE may follow others; no command tags.
        assert_eq!(
            c.psql(
                "postgres",
                "create role r; create database d owner r; select 2"
            )
            .unwrap(),
            "2"
        );
        let err = c.psql("d", "select 1/0").unwrap_err().to_string();
        assert!(err.contains("division by zero"), "{err}");
    }

    #[test]
    fn a_wrong_password_is_refused() {
        let c = cluster();
        let wrong = psql_as(&c, "not-the-password");
        assert!(!wrong.status.success());
        let stderr = String::from_utf8_lossy(&wrong.stderr);
        assert!(
            stderr.contains("password authentication failed"),
            "{stderr}"
        );
        let right = psql_as(&c, c.superuser_password());
        assert!(right.status.success());
    }

    #[test]
    fn stop_takes_it_down_and_restart_brings_it_back_on_the_same_port() {
        let mut c = cluster();
        c.psql(
            "postgres",
            "create table kept (x int); insert into kept values (7)",
        )
        .unwrap();
        let port = c.port();
        c.stop().unwrap();
        assert!(!pg_isready(&c));
        assert!(c.psql("postgres", "select 1").is_err());
        c.stop().unwrap();
        c.restart().unwrap();
        assert_eq!(c.port(), port);
        assert!(pg_isready(&c));
        assert_eq!(c.psql("postgres", "select x from kept").unwrap(), "7");
        c.restart().unwrap();
        assert_eq!(c.psql("postgres", "select 1").unwrap(), "1");
    }

    #[test]
    fn a_port_taken_by_someone_else_is_recognised() {
        let mut c = cluster();
        c.stop().unwrap();
        let squatter = TcpListener::bind((HOST, c.port())).unwrap();
        let err = match c.spawn_and_wait() {
            Err(StartFailure::PortTaken(e)) => format!("{e:#}"),
            Err(StartFailure::Other(e)) => panic!("not seen as a port clash: {e:#}"),
            Ok(()) => panic!("started on a taken port"),
        };
        assert!(err.contains("Address already in use"), "{err}");
        assert!(c.restart().is_err());
        drop(squatter);
        c.restart().unwrap();
        assert_eq!(c.psql("postgres", "select 1").unwrap(), "1");
    }

    #[test]
    fn drop_stops_the_server_and_removes_its_directory() {
        let c = cluster();
        let dir = c.dir().to_path_buf();
        let pid = pid_of(&c);
        let port = c.port();
        assert!(dir.join(DATA_DIR).is_dir());
        drop(c);
        assert!(!dir.exists());
        assert!(!process_alive(pid));
        assert!(TcpListener::bind((HOST, port)).is_ok());
        assert!(!PORTS_IN_USE.lock().unwrap().contains(&port));
    }

    #[test]
    fn the_log_holds_statements_when_asked_to() {
        let c = TempCluster::start(ClusterOptions {
            settings: vec![("log_statement".into(), "all".into())],
            ..Default::default()
        })
        .unwrap();
        c.psql("postgres", "select 'marker-4711'").unwrap();
        let log = fs::read_to_string(c.log_path()).unwrap();
        assert!(log.contains("statement: select 'marker-4711'"), "{log}");
    }

    #[test]
    fn files_land_in_the_data_dir_readable_by_the_server_only() {
        let c = TempCluster::start(ClusterOptions {
            files: vec![("note.txt".into(), b"hello".to_vec())],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.psql("postgres", "select pg_read_file('note.txt')")
                .unwrap(),
            "hello"
        );
        let meta = fs::metadata(c.data_dir().join("note.txt")).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);

        for bad in ["../escape", "/etc/passwd", "sub/file", ""] {
            let err = TempCluster::start(ClusterOptions {
                files: vec![(bad.into(), Vec::new())],
                ..Default::default()
            })
            .unwrap_err();
            assert!(err.to_string().contains("plain file name"), "{bad}: {err}");
        }
    }

    #[test]
    fn bad_settings_fail_early_with_the_log() {
        let err = TempCluster::start(ClusterOptions {
            settings: vec![("no_such_setting".into(), "1".into())],
            ..Default::default()
        })
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("no_such_setting"), "{err}");
    }

    #[test]
    fn reaping_removes_dirs_of_dead_owners_only() {
        // Stopped, with a dead owner.
        let mut stopped = cluster();
        stopped.stop().unwrap();
        let stopped_dir = stopped.dir().to_path_buf();
        fs::write(stopped_dir.join(OWNER_FILE), dead_pid().to_string()).unwrap();
        // Running, with a dead owner: its postmaster must be shut down too.
        let mut running = cluster();
        let running_dir = running.dir().to_path_buf();
        let running_pid = pid_of(&running);
        fs::write(running_dir.join(OWNER_FILE), dead_pid().to_string()).unwrap();
        // Alive and ours.
        let alive = cluster();

        reap_stale_clusters();

        assert!(!stopped_dir.exists());
        assert!(!running_dir.exists());
        assert!(!process_alive(running_pid));
        assert!(
            running
                .child
                .as_mut()
                .unwrap()
                .try_wait()
                .unwrap()
                .is_some()
        );
        assert_eq!(alive.psql("postgres", "select 1").unwrap(), "1");
        // Dropping clusters whose dirs are already gone is fine.
        drop(stopped);
        drop(running);
    }

    #[test]
    fn reaping_leaves_foreign_lookalikes_alone() {
        let base = std::env::temp_dir();
        // No owner file: may be a cluster being created right now.
        let no_owner = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&base)
            .unwrap();
        // Dead owner, but not our prefix.
        let other = tempfile::Builder::new()
            .prefix("pgua-other-")
            .tempdir_in(&base)
            .unwrap();
        fs::write(other.path().join(OWNER_FILE), dead_pid().to_string()).unwrap();
        // Dead owner, but a pid file naming a live process that is no postmaster of it.
        let decoy = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(&base)
            .unwrap();
        fs::write(decoy.path().join(OWNER_FILE), dead_pid().to_string()).unwrap();
        let mut bystander = Command::new("sleep").arg("30").spawn().unwrap();
        fs::create_dir(decoy.path().join(DATA_DIR)).unwrap();
        fs::write(
            decoy.path().join(DATA_DIR).join("postmaster.pid"),
            format!("{}\n", bystander.id()),
        )
        .unwrap();

        reap_stale_clusters();

        assert!(no_owner.path().exists());
        assert!(other.path().exists());
        assert!(!decoy.path().exists());
        assert!(bystander.try_wait().unwrap().is_none(), "bystander killed");
        bystander.kill().unwrap();
        bystander.wait().unwrap();
    }

    #[test]
    fn many_threads_start_clusters_at_once() {
        let ports: Vec<u16> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| {
                    s.spawn(move || {
                        let c = cluster();
                        assert_eq!(
                            c.psql("postgres", &format!("select {i}")).unwrap(),
                            i.to_string()
                        );
                        c.port()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let distinct: BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }
}

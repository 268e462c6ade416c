//! Throw-away PostgreSQL clusters started from the machine's binaries, for the demo, the
//! tests and the benchmark: scram-sha-256, TCP on 127.0.0.1 only, a free port, a temp dir.
//!
//! PostgreSQL refuses to run as root; as root the binaries run as the `postgres` OS user
//! through `setpriv`, which execs, so signals sent to the child reach postgres itself.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const DIR_PREFIX: &str = "pgua-cluster-";
const HOST: &str = "127.0.0.1";
const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL server binaries are.
pub struct PgBinaries {
    /// Directory holding `initdb` and `postgres`.
    pub bin_dir: PathBuf,
    /// Directory holding `psql` and `pg_isready`: `bin_dir` when it has them, otherwise the
    /// system's (server-only builds, such as the npm ones the test matrix uses, ship none;
    /// any recent client speaks to any server version).
    pub client_dir: PathBuf,
}

impl PgBinaries {
    /// Finds them: `PGUA_PG_BIN`, the newest `/usr/lib/postgresql/*/bin`,
    /// `/usr/local/pgsql/bin`, or the directory of `initdb` on `PATH`.
    pub fn locate() -> anyhow::Result<Self> {
        Self::find(std::env::var_os("PGUA_PG_BIN").map(PathBuf::from))
    }

    /// Like [`PgBinaries::locate`], with `bin_dir` in place of `PGUA_PG_BIN`.
    pub fn find(bin_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        let has = |d: &Path, tools: &[&str]| tools.iter().all(|t| d.join(t).is_file());
        let candidates = system_bin_dirs();
        let bin_dir = match bin_dir {
            Some(dir) if has(&dir, SERVER_TOOLS) => dir,
            Some(dir) => bail!("{} holds no initdb and postgres", dir.display()),
            None => candidates
                .iter()
                .find(|d| has(d, SERVER_TOOLS))
                .cloned()
                .context(
                    "no PostgreSQL server binaries (initdb, postgres) found. Install them: \
                     Debian/Ubuntu `apt-get install postgresql`, Fedora/RHEL `dnf install \
                     postgresql-server`, macOS `brew install postgresql@16`; or set PGUA_PG_BIN \
                     to the directory that holds initdb",
                )?,
        };
        let client_dir = std::iter::once(&bin_dir)
            .chain(&candidates)
            .find(|d| has(d, CLIENT_TOOLS))
            .cloned()
            .with_context(|| {
                format!(
                    "no PostgreSQL client tools (psql, pg_isready) in {} or on this machine. \
                     Install them: Debian/Ubuntu `apt-get install postgresql-client`",
                    bin_dir.display()
                )
            })?;
        Ok(Self {
            bin_dir,
            client_dir,
        })
    }

    /// The path of one tool.
    pub fn path(&self, tool: &str) -> PathBuf {
        if CLIENT_TOOLS.contains(&tool) {
            self.client_dir.join(tool)
        } else {
            self.bin_dir.join(tool)
        }
    }

    /// The server's version line, e.g. `postgres (PostgreSQL) 18.4`.
    pub fn version(&self) -> anyhow::Result<String> {
        let out = Command::new(self.path("postgres"))
            .arg("--version")
            .output()
            .with_context(|| format!("running {}", self.path("postgres").display()))?;
        if !out.status.success() {
            bail!(
                "{} --version failed: {}",
                self.path("postgres").display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// These binaries, where `user` can run them. As root the server runs as `postgres`,
    /// which cannot enter a tree under another user's home (an npm install in a clone under
    /// `/root`, say): such a tree is copied once to the temp dir, readable by everyone, and
    /// the copy is shared by later runs.
    fn runnable_by(self, user: &RunAs) -> anyhow::Result<Self> {
        let runs = |bins: &Self| {
            user.command(&bins.path("postgres"))
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if runs(&self) {
            return Ok(self);
        }
        // The whole installation moves, as the binaries find lib/ and share/ beside bin/.
        let bin = fs::canonicalize(&self.bin_dir)?;
        let (Some(root), Some(bin_name)) = (bin.parent(), bin.file_name()) else {
            bail!("{} has no parent directory to copy", bin.display());
        };
        // Named after the build, not the path, so copies of one tree share one copy.
        let meta = fs::metadata(bin.join("postgres"))?;
        let key = format!(
            "{}\n{}\n{:?}",
            self.version()?,
            meta.len(),
            meta.modified()?
        );
        let copy = std::env::temp_dir().join(format!("pgua-pg-{:016x}", fnv1a(key.as_bytes())));
        let copied = Self {
            bin_dir: copy.join(bin_name),
            client_dir: self.client_dir.clone(),
        };
        if !runs(&copied) {
            let staging = tempfile::Builder::new()
                .prefix("pgua-pg-copy-")
                .tempdir_in(std::env::temp_dir())?;
            let tree = staging.path().join("tree");
            let status = Command::new("cp")
                .arg("-a")
                .arg(root)
                .arg(&tree)
                .status()
                .context("running cp")?;
            if !status.success() {
                bail!("copying {} to {} failed", root.display(), tree.display());
            }
            let status = Command::new("chmod")
                .args(["-R", "a+rX"])
                .arg(&tree)
                .status()
                .context("running chmod")?;
            if !status.success() {
                bail!("making {} readable failed", tree.display());
            }
            // Another process may have won the race; its copy is as good as ours.
            if fs::rename(&tree, &copy).is_err() && !copy.is_dir() {
                bail!(
                    "could not move the copy of {} to {}",
                    root.display(),
                    copy.display()
                );
            }
        }
        if !runs(&copied) {
            bail!(
                "the `postgres` OS user cannot run {} (nor a copy in {})",
                self.path("postgres").display(),
                copy.display()
            );
        }
        Ok(copied)
    }
}

const SERVER_TOOLS: &[&str] = &["initdb", "postgres"];
const CLIENT_TOOLS: &[&str] = &["psql", "pg_isready"];

/// Where PostgreSQL binaries usually live, the newest Debian version first.
fn system_bin_dirs() -> Vec<PathBuf> {
    let mut versioned: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versioned.sort_by(|a, b| b.cmp(a));
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    versioned
        .into_iter()
        .map(|(_, dir)| dir)
        .chain([PathBuf::from("/usr/local/pgsql/bin")])
        .chain(on_path)
        .collect()
}

/// A stable (across processes and builds) hash for naming the shared copy.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Options for a new cluster.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// Extra `-c name=value` server settings, e.g. `("log_statement", "all")`.
    pub settings: Vec<(String, String)>,
    /// Files written into the data directory before the server starts, readable only by
    /// the server's user (TLS keys, for example); settings can name them by relative path.
    pub files: Vec<(String, Vec<u8>)>,
    /// The server binaries' directory, in place of `PGUA_PG_BIN` or the system's.
    pub bin_dir: Option<PathBuf>,
}

/// The OS user to run PostgreSQL as, when we are root.
struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// `program` run as this user: `setpriv` execs it, so signals reach it directly.
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .arg("--init-groups")
            .arg(program);
        cmd
    }
}

fn run_as() -> anyhow::Result<Option<RunAs>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    // getpwnam uses a static buffer: look up once, under the OnceLock, even when tests start
    // clusters from several threads.
    static POSTGRES_USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    let ids = POSTGRES_USER.get_or_init(|| {
        let name = std::ffi::CString::new(SUPERUSER).ok()?;
        // SAFETY: name is a valid C string; the result is checked for null before use.
        let pw = unsafe { libc::getpwnam(name.as_ptr()) };
        // SAFETY: pw is non-null and points to a valid passwd record.
        (!pw.is_null()).then(|| unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
    });
    match *ids {
        Some((uid, gid)) => Ok(Some(RunAs { uid, gid })),
        None => bail!("running as root, but there is no `postgres` OS user to run PostgreSQL as"),
    }
}

/// Keeps the caller's libpq environment (PGHOST, PGOPTIONS, PGSERVICE, …) away from the
/// cluster's tools, so only our explicit arguments count.
fn without_pg_env(cmd: &mut Command) -> &mut Command {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind((HOST, 0))?.local_addr()?.port())
}

/// A running throw-away cluster. Dropping it stops the server and deletes its directory.
pub struct TempCluster {
    bins: PgBinaries,
    dir: tempfile::TempDir,
    port: u16,
    password: String,
    settings: Vec<(String, String)>,
    child: Option<Child>,
    run_as: Option<RunAs>,
}

impl TempCluster {
    /// Runs `initdb` and starts the server on a free port; waits until it accepts connections.
    pub fn start(opts: ClusterOptions) -> anyhow::Result<Self> {
        let run_as = run_as()?;
        let bins = match opts.bin_dir {
            Some(dir) => PgBinaries::find(Some(dir))?,
            None => PgBinaries::locate()?,
        };
        let bins = match &run_as {
            Some(u) => bins.runnable_by(u)?,
            None => bins,
        };
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir_in(std::env::temp_dir())?;
        fs::write(dir.path().join("owner.pid"), std::process::id().to_string())?;
        if let Some(u) = &run_as {
            std::os::unix::fs::chown(dir.path(), Some(u.uid), Some(u.gid))?;
        }
        let password = random_hex(16)?;
        let pwfile = dir.path().join("pwfile");
        {
            let mut f = fs::File::create(&pwfile)?;
            f.write_all(password.as_bytes())?;
        }
        fs::set_permissions(&pwfile, fs::Permissions::from_mode(0o600))?;
        if let Some(u) = &run_as {
            std::os::unix::fs::chown(&pwfile, Some(u.uid), Some(u.gid))?;
        }
        let mut cluster = Self {
            bins,
            port: 0,
            password,
            settings: opts.settings,
            child: None,
            run_as,
            dir,
        };
        let initdb = |locale: &str| {
            let mut cmd = cluster.command("initdb");
            cmd.arg("-D")
                .arg(cluster.data_dir())
                .args([
                    "-U",
                    SUPERUSER,
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-sync",
                ])
                .arg(format!("--pwfile={}", pwfile.display()))
                .arg(format!("--locale={locale}"));
            cmd.output()
        };
        let mut out = initdb("C.UTF-8")?;
        if !out.status.success() {
            let _ = fs::remove_dir_all(cluster.data_dir());
            out = initdb("C")?;
        }
        fs::remove_file(&pwfile)?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for (name, contents) in &opts.files {
            let path = cluster.data_dir().join(name);
            fs::write(&path, contents)?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
            if let Some(u) = &cluster.run_as {
                std::os::unix::fs::chown(&path, Some(u.uid), Some(u.gid))?;
            }
        }
        let mut last_error = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.spawn_and_wait() {
                Ok(()) => return Ok(cluster),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.expect("tried at least once"))
    }

    fn command(&self, tool: &str) -> Command {
        let mut cmd = match &self.run_as {
            Some(u) => u.command(&self.bins.path(tool)),
            None => Command::new(self.bins.path(tool)),
        };
        without_pg_env(&mut cmd);
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn spawn_and_wait(&mut self) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string());
        let fixed = [
            ("listen_addresses", HOST),
            ("unix_socket_directories", ""),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "300"),
            ("shared_buffers", "32MB"),
        ];
        let extra = self.settings.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (k, v) in fixed.into_iter().chain(extra) {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting postgres")?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "postgres exited ({status}) during start-up:\n{}",
                    self.log_tail()
                );
            }
            let ready = without_pg_env(&mut Command::new(self.bins.path("pg_isready")))
                .args([
                    "-q",
                    "-h",
                    HOST,
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    SUPERUSER,
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "postgres did not become ready in 60 s:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address it listens on: `127.0.0.1`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// The superuser's name: `postgres`.
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's random password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// A libpq key=value connection string for the superuser to `dbname`.
    pub fn conn_string(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user={SUPERUSER} password={} dbname={dbname}",
            self.port, self.password
        )
    }

    /// The server's log (its stderr), so tests can read what it logged.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// Runs SQL as the superuser through `psql`; returns its unaligned output. The SQL goes
    /// in on stdin, so nothing it holds shows in the process list; each statement commits
    /// on its own, so `CREATE DATABASE` may follow other statements.
    pub fn psql(&self, dbname: &str, sql: &str) -> anyhow::Result<String> {
        let mut child = without_pg_env(&mut Command::new(self.bins.path("psql")))
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                HOST,
                "-U",
                SUPERUSER,
            ])
            .args(["-p", &self.port.to_string(), "-d", dbname, "-f", "-"])
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running psql")?;
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(sql.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "psql failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
    }

    /// Stops the server (fast shutdown) and keeps the data, to simulate a target going down.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again on the same port after [`TempCluster::stop`].
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn_and_wait()
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Stops and removes clusters left by processes that died without dropping them.
pub fn reap_stale_clusters() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(DIR_PREFIX));
        if !is_ours {
            continue;
        }
        let owner: Option<i32> = fs::read_to_string(path.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = owner.is_some_and(|pid| unsafe { libc::kill(pid, 0) } == 0);
        if alive || owner.is_none() {
            continue;
        }
        let postmaster: Option<i32> = fs::read_to_string(path.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next()?.trim().parse().ok());
        if let Some(pid) = postmaster {
            // SAFETY: SIGQUIT to the stale postmaster: immediate shutdown.
            unsafe { libc::kill(pid, libc::SIGQUIT) };
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = fs::remove_dir_all(&path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_starts_answers_stops_restarts_and_disappears() {
        let mut c = TempCluster::start(ClusterOptions {
            settings: vec![("log_statement".into(), "all".into())],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.psql("postgres", "SELECT 1").unwrap(), "1");
        assert!(
            fs::read_to_string(c.log_path())
                .unwrap()
                .contains("SELECT 1")
        );
        let port = c.port();
        c.stop().unwrap();
        assert!(c.psql("postgres", "SELECT 1").is_err());
        c.restart().unwrap();
        assert_eq!(c.port(), port);
        assert_eq!(c.psql("postgres", "SELECT 2").unwrap(), "2");
        let dir = c.dir.path().to_owned();
        drop(c);
        assert!(!dir.exists());
    }

    #[test]
    fn a_wrong_password_is_refused() {
        let c = TempCluster::start(ClusterOptions::default()).unwrap();
        let out = Command::new(c.bins.path("psql"))
            .args([
                "-X",
                "-h",
                HOST,
                "-U",
                SUPERUSER,
                "-p",
                &c.port().to_string(),
            ])
            .args(["-d", "postgres", "-c", "SELECT 1"])
            .env("PGPASSWORD", "wrong")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));
    }
}

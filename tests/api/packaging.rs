//! The packaging files: the systemd unit is valid and stays hardened.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pg-user-api");
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/pg-user-api.service");

fn analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze runs (Debian: apt-get install systemd)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `systemd-analyze verify` accepts the unit, and its exposure score stays in systemd's
/// "OK" band (at most 2.0 of 10; it is 1.4 today): removing hardening fails this test.
#[test]
fn the_systemd_unit_verifies_and_stays_hardened() {
    let dir = tempfile::tempdir().unwrap();
    // The unit as installed, with ExecStart pointing at the binary this build made.
    let unit = std::fs::read_to_string(UNIT)
        .unwrap()
        .replace("/usr/local/bin/pg-user-api", BIN);
    let path = dir.path().join("pg-user-api.service");
    std::fs::write(&path, unit).unwrap();
    let path = path.to_str().unwrap();

    let (ok, text) = analyze(&["verify", path]);
    assert!(
        ok && text.trim().is_empty(),
        "systemd-analyze verify: {text}"
    );
    let (ok, text) = analyze(&["security", "--offline=true", "--threshold=20", path]);
    assert!(ok, "exposure above 2.0:\n{text}");
    assert!(text.contains("Overall exposure level"), "{text}");
}

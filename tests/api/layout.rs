//! The module layout: no module imports one that imports it back (`scripts/import-cycles`).

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Runs the check on the crate at `root`: whether it passed, and what it said.
fn import_cycles(root: &Path, edges: bool) -> (bool, String) {
    let mut cmd = Command::new(Path::new(ROOT).join("scripts/import-cycles"));
    cmd.arg(root);
    if edges {
        cmd.arg("--edges");
    }
    let out = cmd
        .output()
        .expect("scripts/import-cycles runs (bash, grep, tsort)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let (ok, text) = import_cycles(Path::new(ROOT), false);
    assert!(ok, "import cycles:\n{text}");
    // The check sees the imports it is about: between layers and between siblings.
    let (_, edges) = import_cycles(Path::new(ROOT), true);
    for edge in [
        "service target",
        "http service",
        "service::users service::ops",
    ] {
        assert!(edges.lines().any(|l| l == edge), "no edge {edge}:\n{edges}");
    }
}

#[test]
fn the_cycle_check_names_a_cycle_between_layers_and_between_siblings() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "src/a/mod.rs",
            "pub mod x;\npub mod y;\nuse crate::b::Thing;\n",
        ),
        ("src/a/x.rs", "use super::y::Other;\n"),
        (
            "src/a/y.rs",
            "use super::x::One;\n// crate::b is only mentioned\n",
        ),
        ("src/b.rs", "pub fn f() { crate::a::x::g() }\n"),
    ];
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let (ok, text) = import_cycles(dir.path(), false);
    assert!(!ok, "{text}");
    for module in ["a", "b", "a::x", "a::y"] {
        assert!(
            text.lines().any(|l| l.ends_with(&format!(" {module}"))),
            "{module} not named:\n{text}"
        );
    }
}

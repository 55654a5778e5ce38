//! `kommit validate` as CI runs it: exit codes, output formats, paths relative to PATH,
//! dot-directories skipped, symlinks, and the repository template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

fn kommit(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kommit"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: b\n";

#[test]
fn repo_template_is_valid() {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("../repo-template");
    let (code, out, err) = kommit(&["validate", template.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "ok: 3 objects in 4 files are valid\n");
}

#[test]
fn valid_invalid_and_usage_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "apps/cm.yaml", CM);
    let (code, out, _) = kommit(&["validate", root.to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (0, "ok: 1 object in 1 file is valid\n")
    );

    // Problems in two files, in a nested directory; paths are relative to PATH.
    write(root, "apps/web/pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  hostNetwork: true\n  containers:\n  - {name: c, image: busybox}\n");
    write(root, "broken.yml", "a: [1\n");
    // Dot-directories are skipped, even when what they hold is invalid.
    write(root, ".github/workflows/ci.yaml", "on: [push]\njobs: {}\n");
    let (code, out, _) = kommit(&["validate", root.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        "apps/web/pod.yaml:6:3: error: `spec.hostNetwork` is not supported: every kommit pod has its own network namespace; expose it with a NodePort or LoadBalancer Service, or a container's `hostPort`"
    );
    assert_eq!(
        lines[1],
        "broken.yml:1:4: error: invalid YAML: unclosed bracket '['"
    );
    assert_eq!(lines[2], "2 errors in 2 files (3 files checked)");

    // A single file, by path.
    let (code, out, _) = kommit(&["validate", root.join("apps/cm.yaml").to_str().unwrap()]);
    assert_eq!(
        (code, out.as_str()),
        (0, "ok: 1 object in 1 file is valid\n")
    );

    // Usage errors: a missing path, an unknown flag.
    let (code, _, err) = kommit(&["validate", root.join("nope").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
    let (code, _, _) = kommit(&["validate", "--frobnicate"]);
    assert_eq!(code, 2);
}

#[test]
fn json_format_carries_the_same_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "x.yaml",
        &CM.replace("name: settings", "name: Bad_Name"),
    );
    let (code, out, _) = kommit(&["validate", "--format", "json", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["files"], 1);
    let d = &v["diagnostics"][0];
    assert_eq!(
        (d["path"].as_str(), d["line"].as_u64(), d["col"].as_u64()),
        (Some("x.yaml"), Some(4), Some(9))
    );
    assert_eq!(d["severity"], "error");
    assert!(d["message"]
        .as_str()
        .unwrap()
        .contains("invalid name \"Bad_Name\""));
}

#[test]
fn symlinks_and_oversized_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    write(&root, "ok.yaml", CM);
    write(dir.path(), "outside.yaml", CM);
    std::os::unix::fs::symlink("../outside.yaml", root.join("escape.yaml")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("etc")).unwrap();
    write(
        &root,
        "big.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  x: \"{}\"\n",
            "a".repeat(2_000)
        ),
    );
    let (code, out, _) = kommit(&[
        "validate",
        "--max-file-bytes",
        "1000",
        root.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "big.yaml:1:1: error: file is 2067 bytes, over the limit of 1000 bytes\n\
         escape.yaml:1:1: error: symlink points outside the tree (to `../outside.yaml`)\n\
         etc:1:1: error: symlink points outside the tree (to `/etc`)\n\
         3 errors in 3 files (3 files checked)\n"
    );
}

//! `kommit ctr` end to end: import, ls, run (output, exit code, limits, env), ps, exec,
//! logs, rm, and one-line errors for bad input.
use kommit_tests::runtime_support::{skip_privileged, TEST_IMAGE};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `kommit ctr` as built for the tests crate (same CLI module as the `kommit` binary).
fn kommit() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kommit-ctr"))
}

struct Ctr {
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Ctr {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("ctr")
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .output()
            .expect("run kommit")
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        for name in ["hello", "long", "oom"] {
            let _ = self.run(&["rm", name]);
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn ctr_end_to_end() {
    if skip_privileged("kommit ctr") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("kommit-ctr-")
        .tempdir()
        .expect("tempdir");
    let ctr = Ctr {
        bin: kommit(),
        data: dir.path().join("data"),
        _dir: dir,
    };
    let layout = ctr.data.with_file_name("layout");
    kommit_runtime::testutil::busybox_layout(&layout, TEST_IMAGE).expect("layout");

    let o = ctr.run(&["images", "import", layout.to_str().expect("utf8")]);
    assert!(o.status.success(), "import: {}", text(&o.stderr));
    let o = ctr.run(&["images", "ls"]);
    assert!(
        text(&o.stdout).contains(TEST_IMAGE),
        "ls: {}",
        text(&o.stdout)
    );

    let o = ctr.run(&[
        "run",
        "--rm",
        "--name",
        "hello",
        "--memory",
        "64Mi",
        "--cpus",
        "0.5",
        "--pids",
        "32",
        "--env",
        "GREETING=hi there",
        TEST_IMAGE,
        "--",
        "sh",
        "-c",
        "echo $GREETING from $(hostname); exit 7",
    ]);
    assert_eq!(
        o.status.code(),
        Some(7),
        "run: {} {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    assert_eq!(text(&o.stdout), "hi there from hello\n");

    let o = ctr.run(&[
        "run",
        "--rm",
        "--name",
        "oom",
        "--memory",
        "16Mi",
        TEST_IMAGE,
        "--",
        "tail",
        "/dev/zero",
    ]);
    assert_eq!(o.status.code(), Some(137));
    assert!(text(&o.stderr).contains("OOMKilled"), "{}", text(&o.stderr));

    // A long-running one in the background.
    let mut bg = Command::new(&ctr.bin)
        .arg("ctr")
        .arg("--data-dir")
        .arg(&ctr.data)
        .args([
            "run",
            "--name",
            "long",
            "--label",
            "kommit.dev/at-most-once=true",
            "-l",
            "app=long",
            TEST_IMAGE,
            "--",
            "sh",
            "-c",
            "echo started; exec sleep 1000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let t0 = Instant::now();
    loop {
        let o = ctr.run(&["ps"]);
        let ps = text(&o.stdout);
        if let Some(line) = ps
            .lines()
            .find(|l| l.starts_with("long ") && l.contains("Running"))
        {
            assert!(
                line.ends_with(" app=long,kommit.dev/at-most-once=true"),
                "labels in ps: {line}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "long never running: {ps}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = ctr.run(&["exec", "long", "--", "sh", "-c", "hostname; exit 4"]);
    assert_eq!(
        (o.status.code(), text(&o.stdout)),
        (Some(4), "long\n".to_string())
    );
    let o = ctr.run(&["logs", "long"]);
    assert_eq!(text(&o.stdout), "started\n");
    let o = ctr.run(&["rm", "long"]);
    assert!(o.status.success(), "rm: {}", text(&o.stderr));
    let _ = bg.kill();
    let _ = bg.wait();
    assert!(!text(&ctr.run(&["ps"]).stdout).contains("long "));

    // Clear one-line errors and non-zero exits, never a panic.
    for (args, want) in [
        (
            vec!["run", "--rm", "missing.test/nothing:1", "--", "true"],
            "image missing.test/nothing:1 not found",
        ),
        (
            vec!["run", "--rm", "Bad Ref!", "--", "true"],
            "invalid image reference",
        ),
        (
            vec!["exec", "nosuchpod", "--", "true"],
            "pod nosuchpod not found",
        ),
        (
            vec!["run", "--rm", "--memory", "lots", TEST_IMAGE, "--", "true"],
            "invalid quantity",
        ),
        (
            vec![
                "run",
                "--rm",
                "-l",
                "app=no space",
                TEST_IMAGE,
                "--",
                "true",
            ],
            "invalid label value",
        ),
    ] {
        let o = ctr.run(&args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.contains(want) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    // Not root: drop to nobody with setpriv.
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&ctr.bin)
        .args(["ctr", "--data-dir", "/nonexistent", "ps"])
        .output()
        .expect("setpriv");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("needs root"),
        "{}",
        text(&o.stderr)
    );
}

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

/// A static C program that tries the system calls the default seccomp filter refuses and
/// prints `name=ok` or `name=<error>` for each (`EPERM` by name).
const SECCOMP_PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void report(const char *name, long rc) {
    if (rc >= 0) printf("%s=ok\n", name);
    else if (errno == EPERM) printf("%s=EPERM\n", name);
    else printf("%s=%s\n", name, strerror(errno));
}

static void *thread_body(void *arg) { return arg; }

int main(void) {
    /* glibc starts threads with clone3 and falls back to clone only on ENOSYS */
    pthread_t t;
    int e = pthread_create(&t, NULL, thread_body, NULL);
    if (e == 0) e = pthread_join(t, NULL);
    errno = e;
    report("thread", e == 0 ? 0 : -1);
    report("clone3", syscall(SYS_clone3, NULL, 0));
    report("unshare", unshare(CLONE_NEWUTS));
    mkdir("/probe-mnt", 0755);
    report("mount", mount("none", "/probe-mnt", "tmpfs", 0, NULL));
    /* KEYCTL_GET_KEYRING_ID of KEY_SPEC_SESSION_KEYRING, created if missing */
    report("keyctl", syscall(SYS_keyctl, 0, -3, 1));
    /* a user key in KEY_SPEC_PROCESS_KEYRING */
    report("add_key", syscall(SYS_add_key, "user", "kommit-probe", "x", 1, -2));
    report("ptrace", ptrace(PTRACE_TRACEME, 0, NULL, NULL));
    return 0;
}
"#;

/// The probe's report: call name to outcome.
fn probe_report(out: &Output) -> std::collections::BTreeMap<String, String> {
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn ctr_seccomp_default_profile_and_unconfined() {
    if skip_privileged("kommit ctr seccomp") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("kommit-seccomp-")
        .tempdir()
        .expect("tempdir");
    let probe_dir = dir.path().join("probe");
    std::fs::create_dir_all(&probe_dir).expect("probe dir");
    let source = dir.path().join("probe.c");
    std::fs::write(&source, SECCOMP_PROBE).expect("probe source");
    let cc = Command::new("cc")
        .args(["-static", "-O1", "-pthread", "-o"])
        .arg(probe_dir.join("probe"))
        .arg(&source)
        .output()
        .expect("cc (a C compiler and static libc: apt-get install gcc libc6-dev)");
    assert!(cc.status.success(), "cc: {}", text(&cc.stderr));
    let ctr = Ctr {
        bin: kommit(),
        data: dir.path().join("data"),
        _dir: dir,
    };
    let layout = ctr.data.with_file_name("layout");
    kommit_runtime::testutil::busybox_layout(&layout, TEST_IMAGE).expect("layout");
    let o = ctr.run(&["images", "import", layout.to_str().expect("utf8")]);
    assert!(o.status.success(), "import: {}", text(&o.stderr));
    let volume = format!("{}:/probe:ro", probe_dir.display());
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--rm", "-v", &volume];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[TEST_IMAGE, "--", "/probe/probe"]);
        let o = ctr.run(&args);
        assert!(
            o.status.success(),
            "ctr run {extra:?}: {}{}",
            text(&o.stdout),
            text(&o.stderr)
        );
        probe_report(&o)
    };
    let calls = ["unshare", "mount", "keyctl", "add_key", "ptrace"];
    let outcome = |r: &std::collections::BTreeMap<String, String>, call: &str| {
        r.get(call)
            .cloned()
            .unwrap_or_else(|| format!("no report in {r:?}"))
    };

    // The default filter: every one refused with EPERM; clone3 answers ENOSYS, so threads
    // still start (through clone).
    let default = run(&[]);
    for call in calls {
        assert_eq!(
            outcome(&default, call),
            "EPERM",
            "{call} in a default container"
        );
    }
    assert_eq!(
        outcome(&default, "thread"),
        "ok",
        "threads in a default container"
    );
    assert_eq!(
        outcome(&default, "clone3"),
        "Function not implemented",
        "clone3 in a default container"
    );
    // The default filter widened by capabilities, as the runtimes' profile is: mount, unshare
    // and ptrace open up; the kernel keyring (not namespaced) never does.
    let caps = run(&["--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE"]);
    for call in ["unshare", "mount", "ptrace"] {
        assert_eq!(outcome(&caps, call), "ok", "{call} with the capability");
    }
    for call in ["keyctl", "add_key"] {
        assert_eq!(outcome(&caps, call), "EPERM", "{call} with capabilities");
    }
    // Unconfined, with the capabilities: everything works.
    let unconfined = run(&[
        "--security-opt",
        "seccomp=unconfined",
        "--cap-add",
        "SYS_ADMIN",
        "--cap-add",
        "SYS_PTRACE",
    ]);
    for call in calls {
        assert_eq!(outcome(&unconfined, call), "ok", "{call} when unconfined");
    }
    // Unconfined without the capability: the kernel's own check refuses what needs it.
    let plain = run(&["--security-opt", "seccomp=unconfined"]);
    assert_eq!(outcome(&plain, "mount"), "EPERM", "mount without SYS_ADMIN");
    assert_eq!(
        outcome(&plain, "ptrace"),
        "ok",
        "PTRACE_TRACEME needs no capability"
    );
}

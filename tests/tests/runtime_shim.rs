//! The Linux pod shim's own behaviour, beyond the conformance suite (root; skipped only with
//! KOMMIT_SKIP_PRIVILEGED=1).

use kommit_runtime::spec::{ContainerSpec, ContainerState, LogOptions, PodSpec};
use kommit_runtime::ContainerRuntime;
use kommit_tests::runtime_support::{LinuxHarness, TEST_IMAGE};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn harness() -> Option<LinuxHarness> {
    LinuxHarness::new(std::path::Path::new(env!(
        "CARGO_BIN_EXE_kommit-runtime-helper"
    )))
}

/// A client that connects and sends only half a request does not hold the shim up: the
/// driver's requests (start, wait) are served meanwhile, and the half request is answered
/// once its line is complete.
#[test]
fn a_slow_client_does_not_stall_the_shim() {
    let Some(h) = harness() else { return };
    let rt = &h.rt;
    rt.create_pod(&PodSpec::new("slow")).expect("create_pod");
    let sock = h.dir.path().join("data/pods/slow/shim.sock");
    let mut silent = UnixStream::connect(&sock).expect("connect silent client");
    let mut slow = UnixStream::connect(&sock).expect("connect slow client");
    slow.write_all(b"{\"op\":\"pi").expect("half a request");
    slow.flush().expect("flush");

    let spec = ContainerSpec::new("c", TEST_IMAGE, &["sh", "-c", "echo served"]);
    rt.create_container("slow", &spec)
        .expect("create_container");
    rt.start_container("slow", "c")
        .expect("start while a client is slow");
    let st = rt
        .wait_container("slow", "c", Duration::from_secs(30))
        .expect("wait while a client is slow");
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, Some(0));
    let mut out = Vec::new();
    rt.logs("slow", "c", &LogOptions::default(), &mut out)
        .expect("logs");
    assert_eq!(String::from_utf8_lossy(&out), "served\n");

    // The slow client's request completes after the driver's, and is answered.
    slow.write_all(b"ng\"}\n").expect("rest of the request");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut line = String::new();
    BufReader::new(&slow)
        .read_line(&mut line)
        .expect("ping reply");
    let v: serde_json::Value = serde_json::from_str(&line).expect("reply is json");
    assert_eq!(v["ok"], serde_json::Value::Bool(true), "reply {line}");

    // A request line that is not JSON gets an error reply, not a dead shim.
    silent.write_all(b"nonsense\n").expect("write");
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut line = String::new();
    BufReader::new(&silent)
        .read_line(&mut line)
        .expect("error reply");
    let v: serde_json::Value = serde_json::from_str(&line).expect("reply is json");
    assert_eq!(v["ok"], serde_json::Value::Bool(false), "reply {line}");
    assert!(rt.list().expect("list")[0].ready, "shim still serving");

    rt.remove_container("slow", "c").expect("remove_container");
    rt.remove_pod("slow").expect("remove_pod");
}

/// A container's files are its config and its state record, plus a log only once it has
/// printed; removing it leaves the pod directory as it was before.
#[test]
fn container_files_come_and_go() {
    let Some(h) = harness() else { return };
    let rt = &h.rt;
    rt.create_pod(&PodSpec::new("files")).expect("create_pod");
    let dir = h.dir.path().join("data/pods/files");
    let listing = || {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .expect("read pod dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    for (name, cmd, log) in [("quiet", "true", false), ("chatty", "echo hello", true)] {
        let spec = ContainerSpec::new(name, TEST_IMAGE, &["sh", "-c", cmd]);
        rt.create_container("files", &spec).expect("create");
        rt.start_container("files", name).expect("start");
        let st = rt
            .wait_container("files", name, Duration::from_secs(30))
            .expect("wait");
        assert_eq!(st.exit_code, Some(0), "{name}");
        let mut want: Vec<String> = before.clone();
        want.push(format!("{name}.config"));
        want.push(format!("{name}.state"));
        if log {
            want.push(format!("{name}.log"));
        }
        want.sort();
        assert_eq!(listing(), want, "{name}");
        rt.remove_container("files", name).expect("remove");
        assert_eq!(listing(), before, "{name} removed");
    }
    rt.remove_pod("files").expect("remove_pod");
    assert!(!dir.exists());
}

/// Following a log streams lines as the container prints them (woken by inotify, not a
/// poll), including the log file's appearance with the first line, and ends with the
/// container.
#[test]
fn follow_streams_until_exit() {
    let Some(h) = harness() else { return };
    let rt = &h.rt;
    rt.create_pod(&PodSpec::new("follow")).expect("create_pod");
    let spec = ContainerSpec::new(
        "c",
        TEST_IMAGE,
        &[
            "sh",
            "-c",
            "sleep 0.2; for i in 1 2 3; do echo n$i; sleep 0.1; done",
        ],
    );
    rt.create_container("follow", &spec).expect("create");
    rt.start_container("follow", "c").expect("start");
    let mut out = Vec::new();
    rt.logs(
        "follow",
        "c",
        &LogOptions {
            tail: None,
            follow: true,
        },
        &mut out,
    )
    .expect("follow");
    assert_eq!(String::from_utf8_lossy(&out), "n1\nn2\nn3\n");
    let st = rt.inspect("follow", "c").expect("inspect");
    assert_eq!(st.state, ContainerState::Exited);
    rt.remove_pod("follow").expect("remove_pod");
}

/// The memory-backed writable layer is capped: past `writable_layer_limit` a write fails
/// with ENOSPC inside the container, and the node's memory is never at stake.
#[test]
fn the_writable_layer_is_capped() {
    let Some(h) = harness() else { return };
    let rt = &h.rt;
    rt.create_pod(&PodSpec::new("cap")).expect("create_pod");
    let mut spec = ContainerSpec::new(
        "c",
        TEST_IMAGE,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/fill bs=1048576 count=16 2>&1; echo rc=$?; rm /fill; \
             dd if=/dev/zero of=/small bs=1024 count=64 2>/dev/null && echo small-ok",
        ],
    );
    spec.resources.writable_layer_limit = Some(8 << 20);
    rt.create_container("cap", &spec).expect("create_container");
    rt.start_container("cap", "c").expect("start");
    let st = rt
        .wait_container("cap", "c", Duration::from_secs(30))
        .expect("wait");
    assert_eq!(st.exit_code, Some(0));
    let mut out = Vec::new();
    rt.logs("cap", "c", &LogOptions::default(), &mut out)
        .expect("logs");
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("No space left on device"), "{out}");
    assert!(out.contains("rc=1"), "{out}");
    assert!(
        out.contains("small-ok"),
        "space is back once the file is gone: {out}"
    );
    rt.remove_pod("cap").expect("remove_pod");
}

/// Self-fencing on the real runtime: the daemon's fence stops the running containers of a
/// StatefulSet pod and an at-most-once pod (SIGTERM, then SIGKILL after the fence grace), and
/// leaves an ordinary pod running. The labels it selects by come back from `list`.
#[test]
fn fence_stops_only_pods_that_must_not_run_twice() {
    use kommit_daemon::fence::{fence_pods, AT_MOST_ONCE_LABEL, OWNER_KIND_LABEL};
    let Some(h) = harness() else { return };
    let rt = &h.rt;
    let pods = [
        ("db-0", (OWNER_KIND_LABEL, "StatefulSet")),
        ("lock", (AT_MOST_ONCE_LABEL, "true")),
        ("web", (OWNER_KIND_LABEL, "ReplicaSet")),
    ];
    for (id, label) in pods {
        rt.create_pod(&PodSpec::new(id).with_labels([label]))
            .expect("create_pod");
        // pid 1 ignores SIGTERM (no handler), so only the SIGKILL after the grace ends it.
        let c = ContainerSpec::new("c", TEST_IMAGE, &["sleep", "1000"]);
        rt.create_container(id, &c).expect("create_container");
        rt.start_container(id, "c").expect("start_container");
    }
    let report = fence_pods(rt, Duration::from_millis(300));
    assert_eq!(report.errors, Vec::<String>::new());
    assert_eq!(
        report.stopped,
        vec![
            ("db-0".to_string(), "c".to_string()),
            ("lock".to_string(), "c".to_string())
        ]
    );
    for id in ["db-0", "lock"] {
        let st = rt.inspect(id, "c").expect("inspect");
        assert_eq!(st.state, ContainerState::Exited, "{id}: {st:?}");
        assert_eq!(st.reason.as_deref(), Some("Killed"), "{id}: {st:?}");
    }
    let web = rt.inspect("web", "c").expect("inspect web");
    assert_eq!(web.state, ContainerState::Running, "{web:?}");
    let listed: Vec<_> = rt
        .list()
        .expect("list")
        .into_iter()
        .map(|p| (p.id, p.labels.len()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("db-0".to_string(), 1),
            ("lock".to_string(), 1),
            ("web".to_string(), 1)
        ]
    );
    rt.stop_container("web", "c", Duration::from_millis(100))
        .expect("stop web");
    for (id, _) in pods {
        rt.remove_container(id, "c").expect("remove_container");
        rt.remove_pod(id).expect("remove_pod");
    }
}

/// Mount destinations are resolved inside the container root: an image whose symlinks point
/// at host paths (absolute, or climbing with `..`, or `/etc` itself) gets its mounts and pod
/// files inside its own root, where the workload finds them through the same symlinks, and
/// nothing is created on the host. A destination resolving to the root itself is refused.
#[test]
fn mount_destinations_stay_inside_the_root() {
    use kommit_runtime::spec::Mount;
    use kommit_runtime::testutil::{busybox_rootfs_tar, symlink_entry, write_oci_layout};
    use kommit_runtime::traits::ProjectedFile;
    use kommit_runtime::Volumes;
    let Some(h) = harness() else { return };
    let host = h.dir.path().join("hostside");
    std::fs::create_dir(&host).expect("mkdir");
    let hs = host.display().to_string();
    let mut layer = tar::Builder::new(Vec::new());
    let climb = format!("{}{hs}/b", "../".repeat(12));
    for (at, target) in [
        ("link", format!("{hs}/a")),
        ("climb", climb),
        ("etc", format!("{hs}/etc")),
        ("rootlink", "/".to_string()),
    ] {
        symlink_entry(&mut layer, at, &target).expect("symlink");
    }
    let layers = [
        busybox_rootfs_tar().expect("busybox"),
        layer.into_inner().expect("tar"),
    ];
    let layout = h.dir.path().join("escape-layout");
    let image = "kommit.test/escape:1";
    write_oci_layout(&layout, image, &layers, &["sh"]).expect("layout");
    h.rt.images().import_path(&layout).expect("import");
    let files = [(
        "f".to_string(),
        ProjectedFile {
            data: b"inside\n".to_vec(),
            mode: 0o644,
        },
    )]
    .into_iter()
    .collect();
    let (vol, _) = h.vols.project("esc", "v", &files).expect("project");
    let m = |d: &str| Mount {
        source: vol.clone(),
        destination: d.into(),
        read_only: true,
    };
    let rt = &h.rt;
    rt.create_pod(&PodSpec::new("esc")).expect("create_pod");
    let mut c = ContainerSpec::new(
        "c",
        image,
        &["sh", "-c", "cat /link/v/f /climb/v/f; cat /etc/hostname"],
    );
    c.mounts = vec![m("/link/v"), m("/climb/v")];
    rt.create_container("esc", &c).expect("create_container");
    rt.start_container("esc", "c").expect("start");
    let st = rt
        .wait_container("esc", "c", Duration::from_secs(30))
        .expect("wait");
    let mut out = Vec::new();
    rt.logs("esc", "c", &LogOptions::default(), &mut out)
        .expect("logs");
    let out = String::from_utf8_lossy(&out);
    assert_eq!(st.exit_code, Some(0), "{st:?}: {out}");
    assert_eq!(out, "inside\ninside\nesc\n");
    let created: Vec<_> = std::fs::read_dir(&host)
        .expect("ls")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert!(created.is_empty(), "created on the host: {created:?}");

    let mut r = ContainerSpec::new("r", image, &["true"]);
    r.mounts = vec![m("/rootlink")];
    rt.create_container("esc", &r).expect("create_container");
    let started = rt.start_container("esc", "r");
    let st = rt.inspect("esc", "r").expect("inspect");
    assert!(
        started
            .as_ref()
            .is_err_and(|e| e.to_string().contains("container root"))
            || st.reason.as_deref() == Some("StartError"),
        "a mount over the container root: {started:?} {st:?}"
    );
    rt.remove_pod("esc").expect("remove_pod");
    h.vols.remove_pod_volumes("esc").expect("remove volumes");
}

/// A read-only mount is read-only all the way down: a submount inside the bound host path
/// (here a Memory emptyDir's tmpfs under the pod's volume directory) cannot be written
/// either, while the same tree bound read-write can.
#[test]
fn read_only_mounts_are_recursive() {
    use kommit_runtime::spec::Mount;
    use kommit_runtime::traits::Medium;
    use kommit_runtime::Volumes;
    let Some(h) = harness() else { return };
    let mem = h
        .vols
        .empty_dir("rro", "mem", Medium::Memory, Some(1 << 20))
        .expect("empty_dir");
    let tree = mem.parent().expect("volume dir has a parent").to_path_buf();
    let rt = &h.rt;
    rt.create_pod(&PodSpec::new("rro")).expect("create_pod");
    let mut c = ContainerSpec::new(
        "c",
        TEST_IMAGE,
        &[
            "sh",
            "-c",
            "(echo x > /ro/mem/f) 2>/dev/null && echo ro-wrote || echo ro-refused; \
             (echo x > /rw/mem/f) 2>/dev/null && echo rw-wrote || echo rw-refused",
        ],
    );
    c.mounts = vec![
        Mount {
            source: tree.clone(),
            destination: "/ro".into(),
            read_only: true,
        },
        Mount {
            source: tree,
            destination: "/rw".into(),
            read_only: false,
        },
    ];
    rt.create_container("rro", &c).expect("create_container");
    rt.start_container("rro", "c").expect("start");
    rt.wait_container("rro", "c", Duration::from_secs(30))
        .expect("wait");
    let mut out = Vec::new();
    rt.logs("rro", "c", &LogOptions::default(), &mut out)
        .expect("logs");
    assert_eq!(String::from_utf8_lossy(&out), "ro-refused\nrw-wrote\n");
    assert!(mem.join("f").exists(), "the write reached the host tmpfs");
    rt.remove_pod("rro").expect("remove_pod");
    h.vols.remove_pod_volumes("rro").expect("remove volumes");
}

//! Pull from a real registry on loopback: Debian's docker-registry, image pushed by skopeo.
use kommit_runtime::images::ImageStore;
use kommit_runtime::spec::{ContainerSpec, LogOptions, PodSpec};
use kommit_runtime::{ContainerRuntime, Images};
use kommit_tests::fixtures::free_port;
use kommit_tests::runtime_support::LinuxHarness;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn pull_from_loopback_registry_and_run() {
    let Some(h) = LinuxHarness::new(Path::new(env!("CARGO_BIN_EXE_kommit-runtime-helper"))) else {
        return;
    };
    let root = h.dir.path().to_path_buf();
    let port = free_port();
    let cfg = root.join("registry.yml");
    std::fs::write(
        &cfg,
        format!("version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n", root.join("regdata").display()),
    )
    .expect("config");
    let _reg = Registry(
        Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry (apt-get install -y docker-registry)"),
    );
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "registry did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let layout = root.join("push-layout");
    kommit_runtime::testutil::busybox_layout(&layout, "1").expect("layout");
    let dest = format!("127.0.0.1:{port}/kommit/busybox:1");
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:1", layout.display()),
            &format!("docker://{dest}"),
        ])
        .output()
        .expect("skopeo (apt-get install -y skopeo)");
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A fresh store pulls it, with progress.
    let store = ImageStore::open(&root.join("data")).expect("store");
    let mut reports = Vec::new();
    let info = store
        .pull(&dest, None, &mut |p| reports.push(p.clone()))
        .expect("pull");
    assert_eq!(info.names, vec![dest.clone()]);
    assert_eq!(
        reports.last().map(|p| (p.layers_done, p.layers_total)),
        Some((1, 1))
    );
    assert!(store
        .pull(
            &format!("127.0.0.1:{port}/kommit/missing:1"),
            None,
            &mut |_| {}
        )
        .is_err());

    // And the runtime runs it.
    h.rt.create_pod(&PodSpec::new("pulled")).expect("pod");
    h.rt.create_container(
        "pulled",
        &ContainerSpec::new("c", &dest, &["echo", "from-registry"]),
    )
    .expect("create");
    h.rt.start_container("pulled", "c").expect("start");
    let st =
        h.rt.wait_container("pulled", "c", Duration::from_secs(30))
            .expect("wait");
    assert_eq!(st.exit_code, Some(0));
    let mut logs = Vec::new();
    h.rt.logs("pulled", "c", &LogOptions::default(), &mut logs)
        .expect("logs");
    assert_eq!(String::from_utf8_lossy(&logs), "from-registry\n");
    h.rt.remove_pod("pulled").expect("remove");
}

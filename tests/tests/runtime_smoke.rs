use kommit_runtime::spec::*;
use kommit_runtime::ContainerRuntime;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn smoke() {
    let d = tempfile::tempdir().unwrap();
    let lay = d.path().join("layout");
    kommit_runtime::testutil::busybox_layout(&lay, "kommit.test/busybox:1").unwrap();
    let store = Arc::new(kommit_runtime::images::ImageStore::open(&d.path().join("data")).unwrap());
    println!("{:?}", store.import_path(&lay).unwrap());
    let rt = kommit_runtime::linux::LinuxRuntime::new(
        kommit_runtime::linux::LinuxConfig {
            data_dir: d.path().join("data"),
            helper: env!("CARGO_BIN_EXE_kommit-runtime-helper").into(),
            cgroup_parent: format!("kommit-smoke-{}", std::process::id()),
        },
        store,
    )
    .unwrap();
    rt.create_pod(&PodSpec {
        id: "p1".into(),
        hostname: "smokehost".into(),
        dns_servers: vec![],
        dns_search: vec![],
        extra_hosts: vec![],
    })
    .unwrap();
    let mut c = ContainerSpec::new("c1", "kommit.test/busybox:1", &["sh", "-c", "hostname; echo pid=$$; grep -E '^(NoNewPrivs|CapEff)' /proc/self/status; wc -c < /proc/kcore; id; echo err >&2; exit 3"]);
    c.resources.memory_limit = Some(64 << 20);
    rt.create_container("p1", &c).unwrap();
    rt.start_container("p1", "c1").unwrap();
    let st = rt
        .wait_container("p1", "c1", Duration::from_secs(10))
        .unwrap();
    println!("{st:?}");
    let mut out = Vec::new();
    rt.logs("p1", "c1", &LogOptions::default(), &mut out)
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out));
    rt.remove_pod("p1").unwrap();
    std::fs::remove_dir(format!(
        "/sys/fs/cgroup/memory/kommit-smoke-{}",
        std::process::id()
    ))
    .ok();
}

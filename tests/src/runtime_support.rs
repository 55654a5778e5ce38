//! Support for the runtime conformance tests and benchmark: the Linux harness (temp data dir,
//! unique cgroup parent and bridge, busybox image) and the throwaway driver process.

/// Entry of `kommit-runtime-helper drive DATA_DIR HELPER CGROUP_PARENT POD_JSON CTR_JSON`:
/// create the pod and container, start it, print `ready`, then wait to be SIGKILLed.
pub fn drive_main(args: &[String]) -> i32 {
    use kommit_runtime::ContainerRuntime;
    let [data, helper, parent, pod, ctr] = args else {
        eprintln!("usage: drive DATA_DIR HELPER CGROUP_PARENT POD_JSON CTR_JSON");
        return 2;
    };
    let run = || -> Result<(), String> {
        let images = std::sync::Arc::new(
            kommit_runtime::images::ImageStore::open(std::path::Path::new(data))
                .map_err(|e| e.to_string())?,
        );
        let rt = kommit_runtime::linux::LinuxRuntime::new(
            kommit_runtime::linux::LinuxConfig {
                data_dir: data.into(),
                helper: helper.into(),
                cgroup_parent: parent.clone(),
            },
            images,
        )
        .map_err(|e| e.to_string())?;
        let pod: kommit_runtime::spec::PodSpec =
            serde_json::from_str(pod).map_err(|e| e.to_string())?;
        let ctr: kommit_runtime::spec::ContainerSpec =
            serde_json::from_str(ctr).map_err(|e| e.to_string())?;
        rt.create_pod(&pod).map_err(|e| e.to_string())?;
        rt.create_container(&pod.id, &ctr)
            .map_err(|e| e.to_string())?;
        rt.start_container(&pod.id, &ctr.name)
            .map_err(|e| e.to_string())?;
        Ok(())
    };
    match run() {
        Ok(()) => {
            println!("ready");
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        Err(e) => {
            eprintln!("drive: {e}");
            1
        }
    }
}

use kommit_runtime::conformance::{Harness, Leaks};
use kommit_runtime::fake::{FakeNetwork, FakeNode, FakeRuntime, FakeVolumes};
use kommit_runtime::images::ImageStore;
use kommit_runtime::linux::{LinuxConfig, LinuxRuntime};
use kommit_runtime::network::{LinuxNetwork, NetConfig};
use kommit_runtime::spec::{ContainerSpec, PodSpec};
use kommit_runtime::volumes::LinuxVolumes;
use kommit_runtime::{ContainerRuntime, PodNetwork, Volumes};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The busybox image reference the tests use.
pub const TEST_IMAGE: &str = "kommit.test/busybox:1";

/// True (and says so loudly) when privileged tests must be skipped.
pub fn skip_privileged(what: &str) -> bool {
    if std::env::var("KOMMIT_SKIP_PRIVILEGED").as_deref() == Ok("1") {
        eprintln!("SKIPPED {what}: KOMMIT_SKIP_PRIVILEGED=1");
        return true;
    }
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{:x}{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A /24 in 10.123.0.0/16 not routed on this host right now.
pub fn free_cidr() -> ipnet::Ipv4Net {
    free_cidr_except(None)
}

/// Like [`free_cidr`], but never `not`.
pub fn free_cidr_except(not: Option<ipnet::Ipv4Net>) -> ipnet::Ipv4Net {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let start =
        (std::process::id() as usize * 7 + SEQ.fetch_add(1, Ordering::SeqCst) as usize) % 250;
    for i in 0..250 {
        let x = ((start + i) % 250) as u8;
        if not.is_some_and(|n| n.network().octets()[2] == x) {
            continue;
        }
        // /proc/net/route stores the destination little-endian in hex: 0.x.123.10
        let needle = format!("{:02X}{:02X}7B0A", 0, x);
        if !routes.contains(&needle) {
            return format!("10.123.{x}.0/24").parse().expect("valid cidr");
        }
    }
    panic!("no free 10.123.x.0/24 for tests");
}

/// A data dir with the busybox image imported.
pub fn data_dir_with_busybox(root: &Path) -> Arc<ImageStore> {
    let layout = root.join("layout");
    kommit_runtime::testutil::busybox_layout(&layout, TEST_IMAGE)
        .expect("building busybox OCI layout (apt-get install -y busybox-static)");
    let store = Arc::new(ImageStore::open(&root.join("data")).expect("image store"));
    store
        .import_path(&layout)
        .expect("importing busybox layout");
    store
}

/// The Linux runtime, network and a private data dir, cgroup parent, bridge and nft table.
pub struct LinuxHarness {
    /// Temp root (data dir is `data/` below it).
    pub dir: tempfile::TempDir,
    /// Helper binary.
    pub helper: PathBuf,
    /// Cgroup parent.
    pub parent: String,
    /// Bridge name.
    pub bridge: String,
    /// nft table.
    pub table: String,
    /// Runtime.
    pub rt: LinuxRuntime,
    /// Network.
    pub net: LinuxNetwork,
    /// Volumes.
    pub vols: LinuxVolumes,
    /// The pod CIDRs the cases attach in (two /24s not routed on the host).
    pub cidrs: [ipnet::Ipv4Net; 2],
    store: Arc<ImageStore>,
}

impl LinuxHarness {
    /// The first pod CIDR's `n`th address after the gateway.
    pub fn address(&self, n: usize) -> kommit_runtime::traits::PodAddress {
        kommit_runtime::traits::PodAddress {
            ip: self.cidrs[0].hosts().nth(n + 1).expect("a /24 has room"),
            cidr: self.cidrs[0],
        }
    }

    /// Build one, or None when privileged tests are skipped by the environment.
    pub fn new(helper: &Path) -> Option<Self> {
        if skip_privileged("privileged runtime test") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("kommit-rt-")
            .tempdir()
            .expect("tempdir");
        let store = data_dir_with_busybox(dir.path());
        let parent = unique("kommit-test-");
        let bridge = unique("kt");
        let table = unique("kommit_test_");
        let rt = LinuxRuntime::new(
            LinuxConfig {
                data_dir: dir.path().join("data"),
                helper: helper.to_path_buf(),
                cgroup_parent: parent.clone(),
            },
            store.clone(),
        )
        .expect("linux runtime (tests must run as root; set KOMMIT_SKIP_PRIVILEGED=1 to skip)");
        let net = LinuxNetwork::new(NetConfig {
            bridge: bridge.clone(),
            nft_table: table.clone(),
            state_dir: dir.path().join("data/net"),
        })
        .expect("network");
        let vols = LinuxVolumes::new(&dir.path().join("data")).expect("volumes");
        let first = free_cidr();
        let cidrs = [first, free_cidr_except(Some(first))];
        Some(LinuxHarness {
            dir,
            helper: helper.to_path_buf(),
            parent,
            bridge,
            table,
            rt,
            net,
            vols,
            cidrs,
            store,
        })
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }
}

fn count_dirs(p: &Path) -> usize {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().is_dir())
                .map(|e| 1 + count_dirs(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// Processes whose command line mentions `needle` or whose cgroup path contains `/cg/`.
pub fn count_processes(needle: &str, cg: &str) -> usize {
    let cgpat = format!("/{cg}/");
    std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .filter(|e| {
                    let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                    let cgs = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
                    String::from_utf8_lossy(&cmd).contains(needle) || cgs.contains(&cgpat)
                })
                .count()
        })
        .unwrap_or(0)
}

impl Harness for LinuxHarness {
    fn runtime(&self) -> &dyn ContainerRuntime {
        &self.rt
    }
    fn network(&self) -> &dyn PodNetwork {
        &self.net
    }
    fn volumes(&self) -> &dyn Volumes {
        &self.vols
    }
    fn pod_cidrs(&self) -> [ipnet::Ipv4Net; 2] {
        self.cidrs
    }
    fn image(&self) -> String {
        TEST_IMAGE.into()
    }
    fn run_in_killed_driver(&mut self, pod: &PodSpec, ctr: &ContainerSpec) -> Result<(), String> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(&self.helper)
            .arg("drive")
            .arg(self.data())
            .arg(&self.helper)
            .arg(&self.parent)
            .arg(serde_json::to_string(pod).map_err(|e| e.to_string())?)
            .arg(serde_json::to_string(ctr).map_err(|e| e.to_string())?)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawning driver: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        if line.trim() != "ready" {
            return Err(format!("driver did not get ready: {line:?}"));
        }
        self.rt = LinuxRuntime::new(
            LinuxConfig {
                data_dir: self.data(),
                helper: self.helper.clone(),
                cgroup_parent: self.parent.clone(),
            },
            self.store.clone(),
        )
        .map_err(|e| e.to_string())?;
        Ok(())
    }
    fn leaks(&self) -> Leaks {
        let data = self.data().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&data))
            .count();
        let cgroups = self
            .rt
            .layout()
            .dirs(&self.parent)
            .iter()
            .map(|d| count_dirs(d))
            .sum();
        let veths = std::fs::read_dir(format!("/sys/class/net/{}/brif", self.bridge))
            .map(|rd| rd.count())
            .unwrap_or(0);
        let pod_dirs = std::fs::read_dir(self.data().join("pods"))
            .map(|rd| rd.count())
            .unwrap_or(0);
        let volumes = std::fs::read_dir(self.data().join("volumes"))
            .map(|rd| rd.count())
            .unwrap_or(0);
        Leaks {
            mounts,
            cgroups,
            veths,
            processes: count_processes(&data, &self.parent),
            pod_dirs,
            volumes,
        }
    }
}

impl Drop for LinuxHarness {
    fn drop(&mut self) {
        // Teardown keeps going on errors but says what it could not remove, so a leak the
        // census reports can be traced to its cause.
        match self.rt.list() {
            Ok(pods) => {
                for p in pods {
                    let _ = self.net.detach(&p.id);
                    if let Err(e) = self.rt.remove_pod(&p.id) {
                        eprintln!("harness teardown: cannot remove pod {}: {e}", p.id);
                    }
                }
            }
            Err(e) => eprintln!("harness teardown: cannot list pods: {e}"),
        }
        // Before the temp dir goes: removing it must never walk into a mounted tmpfs.
        match self.vols.pods_with_volumes() {
            Ok(pods) => {
                for p in pods {
                    if let Err(e) = self.vols.remove_pod_volumes(&p) {
                        eprintln!("harness teardown: cannot remove volumes of {p}: {e}");
                    }
                }
            }
            Err(e) => eprintln!("harness teardown: cannot list volumes: {e}"),
        }
        for d in self.rt.layout().dirs(&self.parent) {
            let _ = std::fs::remove_dir(d);
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "ip", &self.table])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// The fake node behind the same harness interface.
pub struct FakeHarness {
    /// The node.
    pub node: FakeNode,
    rt: FakeRuntime,
    net: FakeNetwork,
    vols: FakeVolumes,
}

impl FakeHarness {
    /// A fake node with the test image.
    pub fn new() -> Option<Self> {
        let node = FakeNode::new("10.244.0.0/24".parse().expect("cidr"));
        node.add_image(TEST_IMAGE);
        Some(FakeHarness {
            rt: node.runtime(),
            net: node.network(),
            vols: node.volumes(),
            node,
        })
    }
}

impl Harness for FakeHarness {
    fn runtime(&self) -> &dyn ContainerRuntime {
        &self.rt
    }
    fn network(&self) -> &dyn PodNetwork {
        &self.net
    }
    fn volumes(&self) -> &dyn Volumes {
        &self.vols
    }
    fn pod_cidrs(&self) -> [ipnet::Ipv4Net; 2] {
        [
            "10.244.0.0/24".parse().expect("cidr"),
            "10.244.1.0/24".parse().expect("cidr"),
        ]
    }
    fn image(&self) -> String {
        TEST_IMAGE.into()
    }
    fn run_in_killed_driver(&mut self, pod: &PodSpec, ctr: &ContainerSpec) -> Result<(), String> {
        let driver = self.node.runtime();
        driver.create_pod(pod).map_err(|e| e.to_string())?;
        driver
            .create_container(&pod.id, ctr)
            .map_err(|e| e.to_string())?;
        driver
            .start_container(&pod.id, &ctr.name)
            .map_err(|e| e.to_string())?;
        drop(driver);
        self.rt = self.node.runtime();
        Ok(())
    }
    fn leaks(&self) -> Leaks {
        self.node.leaks()
    }
}

//! Cgroups for pods and containers, through cgroups-rs, v1 (hybrid) and v2.
//!
//! The hierarchy is `<parent>/<pod>/<container>`. Which files exist where differs between
//! v1 and v2; that decision is the pure [`Layout`] (parsed from mountinfo text, unit-tested
//! for both layouts). Creation, limits, freezing and deletion go through cgroups-rs.

use cgroups_rs::fs::{Cgroup, MaxValue, Resources as CgResources};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::LinuxError;
use crate::spec::{ContainerStats, Resources};

/// Controllers kommit uses.
pub const CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "freezer"];
/// CFS period used for cpu limits (100 ms).
pub const CFS_PERIOD_US: u64 = 100_000;

/// Where the cgroup filesystems are mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup v1: one mount per controller (possibly co-mounted, e.g. `cpu,cpuacct`).
    V1 {
        /// controller -> mount point.
        mounts: BTreeMap<String, PathBuf>,
    },
    /// cgroup v2 unified at `root`.
    V2 {
        /// Mount point of the unified hierarchy.
        root: PathBuf,
    },
}

impl Layout {
    /// Decide the layout from `/proc/self/mountinfo` text. v2 wins only when the unified
    /// hierarchy is at `/sys/fs/cgroup` itself (a hybrid host's `/sys/fs/cgroup/unified`
    /// carries no controllers).
    pub fn from_mountinfo(text: &str) -> Option<Layout> {
        let mut v1 = BTreeMap::new();
        let mut v2root = None;
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let fields: Vec<&str> = left.split(' ').collect();
            let rfields: Vec<&str> = right.split(' ').collect();
            if fields.len() < 5 || rfields.len() < 3 {
                continue;
            }
            let mount_point = PathBuf::from(fields[4]);
            match rfields[0] {
                "cgroup2" if mount_point == Path::new("/sys/fs/cgroup") => {
                    v2root = Some(mount_point)
                }
                "cgroup" => {
                    for opt in rfields[2].split(',') {
                        if CONTROLLERS.contains(&opt) {
                            v1.insert(opt.to_string(), mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(root) = v2root {
            Some(Layout::V2 { root })
        } else if v1.contains_key("memory") {
            Some(Layout::V1 { mounts: v1 })
        } else {
            None
        }
    }

    /// Detect the host's layout.
    pub fn detect() -> Result<Layout, LinuxError> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| LinuxError::io("/proc/self/mountinfo", e))?;
        Layout::from_mountinfo(&text).ok_or_else(|| {
            LinuxError::Cgroup("no usable cgroup hierarchy (need memory controller)".into())
        })
    }

    /// Whether this is v2.
    pub fn is_v2(&self) -> bool {
        matches!(self, Layout::V2 { .. })
    }

    /// Every `cgroup.procs` file a process must be written to, to join `rel`.
    pub fn procs_files(&self, rel: &str) -> Vec<PathBuf> {
        match self {
            Layout::V2 { root } => vec![root.join(rel).join("cgroup.procs")],
            Layout::V1 { mounts } => {
                let mut dirs: Vec<PathBuf> = mounts.values().map(|m| m.join(rel)).collect();
                dirs.sort();
                dirs.dedup();
                dirs.into_iter().map(|d| d.join("cgroup.procs")).collect()
            }
        }
    }

    /// The files a single-threaded process writes `0` to, to move itself into `rel`.
    ///
    /// On v1 that is each hierarchy's `tasks` file: moving only the calling thread does not
    /// take the kernel's global threadgroup lock, whose write side waits for a full RCU grace
    /// period (several milliseconds) on every `cgroup.procs` write. For a single-threaded
    /// process (the container init, the exec helper) moving the thread is moving the process.
    /// v2 has no such file outside threaded subtrees: there it is `cgroup.procs`.
    pub fn join_files(&self, rel: &str) -> Vec<PathBuf> {
        match self {
            Layout::V2 { .. } => self.procs_files(rel),
            Layout::V1 { .. } => self
                .dirs(rel)
                .into_iter()
                .map(|d| d.join("tasks"))
                .collect(),
        }
    }

    /// The file holding the OOM-kill counter, and the key in it.
    pub fn oom_file(&self, rel: &str) -> Option<(PathBuf, &'static str)> {
        match self {
            Layout::V2 { root } => Some((root.join(rel).join("memory.events"), "oom_kill")),
            Layout::V1 { mounts } => mounts
                .get("memory")
                .map(|m| (m.join(rel).join("memory.oom_control"), "oom_kill")),
        }
    }

    /// Directories that exist for `rel` (for leak counting and cleanup).
    pub fn dirs(&self, rel: &str) -> Vec<PathBuf> {
        match self {
            Layout::V2 { root } => vec![root.join(rel)],
            Layout::V1 { mounts } => {
                let mut d: Vec<PathBuf> = mounts.values().map(|m| m.join(rel)).collect();
                d.sort();
                d.dedup();
                d
            }
        }
    }

    /// The controllers this layout provides, for clear errors when one is missing.
    pub fn missing_controllers(&self) -> Vec<&'static str> {
        match self {
            Layout::V2 { root } => {
                let have =
                    std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                V2_CONTROLLERS
                    .into_iter()
                    .filter(|c| !have.split_whitespace().any(|h| h == *c))
                    .collect()
            }
            Layout::V1 { mounts } => CONTROLLERS
                .into_iter()
                .filter(|c| !mounts.contains_key(*c))
                .collect(),
        }
    }
}

/// Read a `key value` counter from a flat-keyed cgroup file.
pub fn read_counter(path: &Path, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some(key))
                    .then(|| it.next().and_then(|v| v.parse().ok()))
                    .flatten()
            })
        })
        .unwrap_or(0)
}

/// Translate kommit resources into cgroups-rs resources. Pure; unit-tested.
pub fn to_cg_resources(r: &Resources, v2: bool) -> CgResources {
    let mut out = CgResources::default();
    if let Some(m) = r.memory_limit {
        out.memory.memory_hard_limit = Some(m as i64);
        if !v2 {
            // No swap beyond the limit (memsw may be absent; set_mem ignores errors there).
            out.memory.memory_swap_limit = Some(m as i64);
        }
    }
    if let Some(p) = r.pids_max {
        out.pid.maximum_number_of_processes = Some(MaxValue::Value(p as i64));
    }
    if let Some(c) = r.cpu_limit_millis {
        out.cpu.quota = Some(((c * CFS_PERIOD_US) / 1000).max(1000) as i64);
        out.cpu.period = Some(CFS_PERIOD_US);
    }
    if let Some(c) = r.cpu_request_millis {
        // Kubernetes: shares = millis * 1024 / 1000, at least 2. cgroups-rs maps shares to
        // cpu.weight on v2.
        out.cpu.shares = Some(((c * 1024) / 1000).max(2));
    }
    out
}

fn hier() -> Box<dyn cgroups_rs::fs::Hierarchy> {
    cgroups_rs::fs::hierarchies::auto()
}

/// The controllers kommit asks cgroups-rs for. v2 has no `cpuacct` (usage is in `cpu.stat`)
/// and no `freezer` controller (freezing is the core `cgroup.freeze` file), and cgroups-rs
/// refuses a controller the hierarchy does not list.
pub fn controllers(v2: bool) -> Vec<String> {
    CONTROLLERS
        .iter()
        .filter(|c| !v2 || V2_CONTROLLERS.contains(c))
        .map(|s| s.to_string())
        .collect()
}

/// Controllers kommit uses on v2.
pub const V2_CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

/// Create (or load) the cgroup at `rel` and apply `res`.
pub fn create(rel: &str, res: &Resources) -> Result<(), LinuxError> {
    let h = hier();
    let v2 = h.v2();
    let cg = Cgroup::new_with_specified_controllers(h, rel, Some(controllers(v2)))
        .map_err(|e| LinuxError::Cgroup(format!("creating cgroup {rel}: {e}")))?;
    cg.apply(&to_cg_resources(res, v2))
        .map_err(|e| LinuxError::Cgroup(format!("applying limits to cgroup {rel}: {e}")))?;
    Ok(())
}

/// Memory, cpu and pids usage of `rel`.
pub fn stats(layout: &Layout, rel: &str) -> ContainerStats {
    match layout {
        Layout::V2 { root } => {
            let d = root.join(rel);
            ContainerStats {
                memory_bytes: read_u64(&d.join("memory.current")),
                cpu_nanos: read_counter(&d.join("cpu.stat"), "usage_usec") * 1000,
                pids: read_u64(&d.join("pids.current")),
            }
        }
        Layout::V1 { mounts } => {
            let f = |c: &str, file: &str| {
                mounts
                    .get(c)
                    .map(|m| read_u64(&m.join(rel).join(file)))
                    .unwrap_or(0)
            };
            ContainerStats {
                memory_bytes: f("memory", "memory.usage_in_bytes"),
                cpu_nanos: f("cpuacct", "cpuacct.usage"),
                pids: f("pids", "pids.current"),
            }
        }
    }
}

fn read_u64(p: &Path) -> u64 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Pids in `rel` (from every hierarchy).
pub fn pids(layout: &Layout, rel: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for f in layout.procs_files(rel) {
        if let Ok(t) = std::fs::read_to_string(&f) {
            out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Kill everything in `rel` and delete it. v1: freeze, kill, thaw, delete; v2: cgroup.kill
/// (or kill each pid), delete. Children (`sub`) are removed first.
pub fn remove(layout: &Layout, rel: &str, sub: &[String]) -> Result<(), LinuxError> {
    for s in sub {
        remove(layout, &format!("{rel}/{s}"), &[])?;
    }
    if layout.dirs(rel).iter().all(|d| !d.exists()) {
        return Ok(());
    }
    let cg = Cgroup::load_with_specified_controllers(hier(), rel, controllers(layout.is_v2()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let procs = pids(layout, rel);
        if procs.is_empty() {
            break;
        }
        if layout.is_v2() {
            if cg.kill().is_err() {
                for p in &procs {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(*p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        } else {
            let freezer: Option<&cgroups_rs::fs::freezer::FreezerController> = cg.controller_of();
            if let Some(fr) = freezer {
                let _ = fr.freeze();
            }
            for p in pids(layout, rel) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if let Some(fr) = freezer {
                let _ = fr.thaw();
            }
        }
        if Instant::now() > deadline {
            return Err(LinuxError::Cgroup(format!(
                "cgroup {rel} still has processes {procs:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // rmdir can briefly fail with EBUSY while the kernel finishes tearing down tasks.
    let mut last = None;
    for _ in 0..500 {
        match cg.delete() {
            Ok(()) => {}
            Err(e) => last = Some(e.to_string()),
        }
        if layout.dirs(rel).iter().all(|d| !d.exists()) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(LinuxError::Cgroup(format!(
        "deleting cgroup {rel}: {}",
        last.unwrap_or_else(|| "still present".into())
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const UNIFIED: &str = "25 23 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn hybrid_is_v1_with_comounted_controllers() {
        let l = Layout::from_mountinfo(HYBRID).expect("layout");
        assert!(!l.is_v2());
        let procs = l.procs_files("kommit/p/c");
        assert_eq!(
            procs,
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/kommit/p/c/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/freezer/kommit/p/c/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/memory/kommit/p/c/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/pids/kommit/p/c/cgroup.procs"),
            ]
        );
        assert_eq!(
            l.join_files("kommit/p/c"),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/kommit/p/c/tasks"),
                PathBuf::from("/sys/fs/cgroup/freezer/kommit/p/c/tasks"),
                PathBuf::from("/sys/fs/cgroup/memory/kommit/p/c/tasks"),
                PathBuf::from("/sys/fs/cgroup/pids/kommit/p/c/tasks"),
            ]
        );
        assert_eq!(
            l.oom_file("kommit/p/c"),
            Some((
                PathBuf::from("/sys/fs/cgroup/memory/kommit/p/c/memory.oom_control"),
                "oom_kill"
            ))
        );
    }

    #[test]
    fn unified_is_v2() {
        let l = Layout::from_mountinfo(UNIFIED).expect("layout");
        assert_eq!(
            l,
            Layout::V2 {
                root: PathBuf::from("/sys/fs/cgroup")
            }
        );
        assert_eq!(
            l.procs_files("kommit/p/c"),
            vec![PathBuf::from("/sys/fs/cgroup/kommit/p/c/cgroup.procs")]
        );
        assert_eq!(l.join_files("kommit/p/c"), l.procs_files("kommit/p/c"));
        assert_eq!(
            l.oom_file("kommit/p/c"),
            Some((
                PathBuf::from("/sys/fs/cgroup/kommit/p/c/memory.events"),
                "oom_kill"
            ))
        );
        assert_eq!(
            l.dirs("kommit/p"),
            vec![PathBuf::from("/sys/fs/cgroup/kommit/p")]
        );
    }

    #[test]
    fn missing_controllers_are_named() {
        // v1: a hierarchy without pids.
        let text: String = HYBRID
            .lines()
            .filter(|l| !l.contains("rw,pids"))
            .map(|l| format!("{l}\n"))
            .collect();
        let l = Layout::from_mountinfo(&text).expect("layout");
        assert_eq!(l.missing_controllers(), vec!["pids"]);
        assert!(Layout::from_mountinfo(HYBRID)
            .expect("layout")
            .missing_controllers()
            .is_empty());
        // v2: the root's cgroup.controllers decides.
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            d.path().join("cgroup.controllers"),
            "cpuset cpu io memory\n",
        )
        .expect("write");
        let l = Layout::V2 {
            root: d.path().to_path_buf(),
        };
        assert_eq!(l.missing_controllers(), vec!["pids"]);
        // The error a caller sees is one line naming the controller.
        let msg = LinuxError::MissingController("pids".into()).to_string();
        assert_eq!(msg, "cgroup controller pids is not available on this host");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn v2_asks_only_for_controllers_the_unified_hierarchy_has() {
        assert_eq!(
            controllers(false),
            vec!["memory", "cpu", "cpuacct", "pids", "freezer"]
        );
        assert_eq!(controllers(true), vec!["memory", "cpu", "pids"]);
    }

    #[test]
    fn no_cgroups_is_none() {
        assert_eq!(
            Layout::from_mountinfo("22 1 0:5 / /proc rw - proc proc rw\n"),
            None
        );
    }

    #[test]
    fn resources_translate() {
        let r = Resources {
            memory_limit: Some(64 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            pids_max: Some(64),
            writable_layer_limit: None,
        };
        let v1 = to_cg_resources(&r, false);
        assert_eq!(v1.memory.memory_hard_limit, Some(64 << 20));
        assert_eq!(v1.memory.memory_swap_limit, Some(64 << 20));
        assert_eq!(v1.cpu.quota, Some(50_000));
        assert_eq!(v1.cpu.period, Some(100_000));
        assert_eq!(v1.cpu.shares, Some(256));
        assert_eq!(
            v1.pid.maximum_number_of_processes,
            Some(MaxValue::Value(64))
        );
        let v2 = to_cg_resources(&r, true);
        assert_eq!(v2.memory.memory_swap_limit, None);
    }

    #[test]
    fn counter_parse() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("memory.oom_control");
        std::fs::write(&p, "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n").expect("write");
        assert_eq!(read_counter(&p, "oom_kill"), 3);
        assert_eq!(read_counter(&p, "nope"), 0);
    }
}

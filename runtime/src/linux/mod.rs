//! The Linux implementation of [`ContainerRuntime`].
//!
//! The driver (this struct, inside whatever process embeds it) never touches namespaces or
//! mounts itself. It writes each container's [`state::InitConfig`] to disk, asks the pod's
//! shim over a unix socket to start it, and learns the truth from files the shim writes. So
//! a driver that dies and comes back finds every pod again by reading `<data>/pods/`.
//!
//! - [`shim`]: the per-pod process (net/ipc/uts namespaces, subreaper, logs, exit codes);
//! - [`init`]: container init and exec helpers (mounts, pivot_root, capabilities);
//! - [`mounts`]: volume mounts inside the container, resolved within its root;
//! - [`cgroup`]: v1/v2 layout and cgroups-rs operations;
//! - [`logs`]: rotating log files;
//! - [`state`]: the on-disk formats.

pub mod cgroup;
mod driver;
pub mod init;
pub mod logs;
pub mod mounts;
pub mod seccomp;
pub mod shim;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::images::ImageStore;
use crate::spec::{
    validate_name, ContainerSpec, ContainerState, ContainerStatus, PodSpec, PodStatus,
};
use crate::traits::{Result, RuntimeError};
use cgroup::Layout;
use shim::{Request, Response};
use state::{read_json, CtrPaths, CtrState, InitConfig};

/// Linux runtime errors.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Not root.
    #[error("the container runtime needs root (running as uid {0})")]
    NotRoot(u32),
    /// A cgroup controller is missing.
    #[error("cgroup controller {0} is not available on this host")]
    MissingController(String),
    /// Cgroup operation failed.
    #[error("{0}")]
    Cgroup(String),
    /// Bad state file.
    #[error("state: {0}")]
    State(String),
    /// Talking to the shim failed.
    #[error("shim: {0}")]
    Shim(String),
    /// Spawning a helper failed.
    #[error("spawning helper {path}: {msg}")]
    Spawn {
        /// Helper binary.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
}

impl LinuxError {
    /// Io error constructor.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        LinuxError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Configuration of the Linux runtime.
#[derive(Debug, Clone)]
pub struct LinuxConfig {
    /// Data directory (`/var/lib/kommit`).
    pub data_dir: PathBuf,
    /// Binary that understands `shim pod|init|exec ...` (normally `/proc/self/exe` resolved).
    pub helper: PathBuf,
    /// Cgroup parent (`kommit`).
    pub cgroup_parent: String,
}

/// Pods as processes in namespaces and cgroups.
pub struct LinuxRuntime {
    cfg: LinuxConfig,
    images: Arc<ImageStore>,
    layout: Layout,
}

fn lerr(e: LinuxError) -> RuntimeError {
    RuntimeError::Linux(e)
}

/// Fail with [`LinuxError::NotRoot`] unless running as root.
pub fn check_root() -> std::result::Result<(), LinuxError> {
    let uid = nix::unistd::geteuid().as_raw();
    if uid != 0 {
        return Err(LinuxError::NotRoot(uid));
    }
    Ok(())
}

impl LinuxRuntime {
    /// Check root and cgroups, create directories.
    pub fn new(cfg: LinuxConfig, images: Arc<ImageStore>) -> std::result::Result<Self, LinuxError> {
        check_root()?;
        let layout = Layout::detect()?;
        if let Some(m) = layout.missing_controllers().first() {
            return Err(LinuxError::MissingController(m.to_string()));
        }
        let pods = cfg.data_dir.join("pods");
        std::fs::create_dir_all(&pods).map_err(|e| LinuxError::io(&pods, e))?;
        Ok(LinuxRuntime {
            cfg,
            images,
            layout,
        })
    }

    /// The cgroup layout in use.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        self.cfg.data_dir.join("pods").join(pod)
    }

    fn ctr_paths(&self, pod: &str, name: &str) -> CtrPaths {
        CtrPaths::new(&self.pod_dir(pod), name)
    }

    fn pod_cg(&self, pod: &str) -> String {
        format!("{}/{}", self.cfg.cgroup_parent, pod)
    }

    fn check_pod(&self, pod: &str) -> Result<PathBuf> {
        validate_name("pod", pod).map_err(RuntimeError::InvalidSpec)?;
        let d = self.pod_dir(pod);
        if !d.join("pod.json").exists() {
            return Err(RuntimeError::NotFound {
                kind: "pod",
                name: pod.to_string(),
            });
        }
        Ok(d)
    }

    fn check_ctr(&self, pod: &str, name: &str) -> Result<CtrPaths> {
        self.check_pod(pod)?;
        validate_name("container", name).map_err(RuntimeError::InvalidSpec)?;
        let p = self.ctr_paths(pod, name);
        if !p.config.exists() {
            return Err(RuntimeError::NotFound {
                kind: "container",
                name: format!("{pod}/{name}"),
            });
        }
        Ok(p)
    }

    /// Pid of the pod's shim if it is alive (and really our shim).
    fn shim_pid(&self, pod: &str) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pod_dir(pod).join("shim.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let dir = self.pod_dir(pod);
        let needle = [
            b"shim\0pod\0".as_slice(),
            dir.as_os_str().as_encoded_bytes(),
        ]
        .concat();
        cmdline
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
            .then_some(pid)
    }

    fn call(&self, pod: &str, req: &Request, timeout: Option<Duration>) -> Result<Response> {
        let resp =
            shim::call(&self.pod_dir(pod), req, timeout).map_err(|e| lerr(LinuxError::Shim(e)))?;
        if !resp.ok {
            return Err(lerr(LinuxError::Shim(
                resp.error.unwrap_or_else(|| "request failed".into()),
            )));
        }
        Ok(resp)
    }

    fn status_of(&self, pod: &str, name: &str, shim_alive: bool) -> Result<ContainerStatus> {
        let paths = self.ctr_paths(pod, name);
        let cfg: InitConfig = read_json(&paths.config).map_err(lerr)?;
        let st: Option<CtrState> = state::read_state(&paths).map_err(lerr)?;
        let state = match &st {
            None => ContainerState::Created,
            Some(s) if s.exit_code.is_some() => ContainerState::Exited,
            Some(_) if shim_alive => ContainerState::Running,
            Some(_) => ContainerState::Unknown,
        };
        let st = st.unwrap_or_default();
        Ok(ContainerStatus {
            name: name.to_string(),
            pod: pod.to_string(),
            image: cfg.image,
            state,
            pid: if state == ContainerState::Running {
                st.pid
            } else {
                None
            },
            exit_code: st.exit_code,
            reason: st.reason,
            started_at_ms: st.started_at_ms,
            finished_at_ms: st.finished_at_ms,
        })
    }

    fn container_names(&self, pod: &str) -> Vec<String> {
        state::container_names(&self.pod_dir(pod))
    }

    fn pod_status(&self, pod: &str) -> Result<PodStatus> {
        let shim = self.shim_pid(pod);
        let mut containers = Vec::new();
        for n in self.container_names(pod) {
            containers.push(self.status_of(pod, &n, shim.is_some())?);
        }
        let spec: PodSpec = read_json(&self.pod_dir(pod).join("pod.json")).map_err(lerr)?;
        Ok(PodStatus {
            id: pod.to_string(),
            ready: shim.is_some(),
            shim_pid: shim,
            containers,
            labels: spec.labels,
        })
    }

    /// Look up a numeric uid/gid for an image `User` (`uid`, `uid:gid`, `name`, `name:group`).
    fn image_user(layers: &[PathBuf], user: &str) -> Result<(u32, u32)> {
        let (u, g) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        let lookup = |file: &str, name: &str| -> Option<(u32, u32)> {
            for l in layers.iter().rev() {
                if let Ok(t) = std::fs::read_to_string(l.join("etc").join(file)) {
                    for line in t.lines() {
                        let f: Vec<&str> = line.split(':').collect();
                        if f.len() >= 4 && f[0] == name {
                            return Some((f[2].parse().ok()?, f[3].parse().ok()?));
                        }
                    }
                }
            }
            None
        };
        let (uid, mut gid) = match u.parse::<u32>() {
            Ok(n) => (n, lookup("passwd", u).map(|x| x.1).unwrap_or(0)),
            Err(_) => lookup("passwd", u).ok_or_else(|| {
                RuntimeError::InvalidSpec(format!("user {u} not found in image /etc/passwd"))
            })?,
        };
        if let Some(g) = g {
            gid = match g.parse::<u32>() {
                Ok(n) => n,
                Err(_) => lookup("group", g).map(|x| x.0).ok_or_else(|| {
                    RuntimeError::InvalidSpec(format!("group {g} not found in image /etc/group"))
                })?,
            };
        }
        Ok((uid, gid))
    }
}

/// Merge image env with spec env (spec wins), keeping image order then new keys sorted.
pub fn merge_env(image: &[String], spec: &BTreeMap<String, String>) -> Vec<String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for kv in image {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        out.push((k.to_string(), v.to_string()));
    }
    for (k, v) in spec {
        match out.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.insert(
            0,
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
        );
    }
    out.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The argv Kubernetes would run: command/args override entrypoint/cmd.
pub fn effective_args(spec: &ContainerSpec, entrypoint: &[String], cmd: &[String]) -> Vec<String> {
    match (spec.command.is_empty(), spec.args.is_empty()) {
        (false, _) => spec
            .command
            .iter()
            .chain(spec.args.iter())
            .cloned()
            .collect(),
        (true, false) => entrypoint.iter().chain(spec.args.iter()).cloned().collect(),
        (true, true) => entrypoint.iter().chain(cmd.iter()).cloned().collect(),
    }
}

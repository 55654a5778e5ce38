//! The Linux implementation of [`ContainerRuntime`].
//!
//! The driver (this struct, inside whatever process embeds it) never touches namespaces or
//! mounts itself. It writes each container's [`state::InitConfig`] to disk, asks the pod's
//! shim over a unix socket to start it, and learns the truth from files the shim writes. So
//! a driver that dies and comes back finds every pod again by reading `<data>/pods/`.
//!
//! - [`shim`]: the per-pod process (net/ipc/uts namespaces, subreaper, logs, exit codes);
//! - [`init`]: container init and exec helpers (mounts, pivot_root, capabilities);
//! - [`cgroup`]: v1/v2 layout and cgroups-rs operations;
//! - [`logs`]: rotating log files;
//! - [`state`]: the on-disk formats.

pub mod cgroup;
pub mod init;
pub mod logs;
pub mod shim;
pub mod state;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::images::ImageStore;
use crate::spec::{
    validate_name, ContainerSpec, ContainerState, ContainerStats, ContainerStatus, ExecOutput,
    LogOptions, PodSpec, PodStatus,
};
use crate::traits::{ContainerRuntime, Result, RuntimeError};
use cgroup::Layout;
use shim::{Request, Response};
use state::{read_json, write_json, CtrState, InitConfig};

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

    fn ctr_dir(&self, pod: &str, name: &str) -> PathBuf {
        self.pod_dir(pod).join("ctr").join(name)
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

    fn check_ctr(&self, pod: &str, name: &str) -> Result<PathBuf> {
        self.check_pod(pod)?;
        validate_name("container", name).map_err(RuntimeError::InvalidSpec)?;
        let d = self.ctr_dir(pod, name);
        if !d.join("config.json").exists() {
            return Err(RuntimeError::NotFound {
                kind: "container",
                name: format!("{pod}/{name}"),
            });
        }
        Ok(d)
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
        let dir = self.ctr_dir(pod, name);
        let cfg: InitConfig = read_json(&dir.join("config.json")).map_err(lerr)?;
        let st: Option<CtrState> = if dir.join("state.json").exists() {
            Some(read_json(&dir.join("state.json")).map_err(lerr)?)
        } else {
            None
        };
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
        let mut names: Vec<String> = std::fs::read_dir(self.pod_dir(pod).join("ctr"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("config.json").exists())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn pod_status(&self, pod: &str) -> Result<PodStatus> {
        let shim = self.shim_pid(pod);
        let mut containers = Vec::new();
        for n in self.container_names(pod) {
            containers.push(self.status_of(pod, &n, shim.is_some())?);
        }
        Ok(PodStatus {
            id: pod.to_string(),
            ready: shim.is_some(),
            shim_pid: shim,
            containers,
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

impl ContainerRuntime for LinuxRuntime {
    fn create_pod(&self, spec: &PodSpec) -> Result<()> {
        validate_name("pod", &spec.id).map_err(RuntimeError::InvalidSpec)?;
        if spec.hostname.is_empty() || spec.hostname.len() > 63 {
            return Err(RuntimeError::InvalidSpec(format!(
                "hostname {:?} must be 1-63 characters",
                spec.hostname
            )));
        }
        let dir = self.pod_dir(&spec.id);
        if dir.join("pod.json").exists() {
            return Err(RuntimeError::AlreadyExists {
                kind: "pod",
                name: spec.id.clone(),
            });
        }
        std::fs::create_dir_all(dir.join("ctr")).map_err(|e| lerr(LinuxError::io(&dir, e)))?;
        cgroup::create(&self.pod_cg(&spec.id), &Default::default()).map_err(lerr)?;
        let log = std::fs::File::create(dir.join("shim.log"))
            .map_err(|e| lerr(LinuxError::io(dir.join("shim.log"), e)))?;
        let out = Command::new(&self.cfg.helper)
            .arg("shim")
            .arg("pod")
            .arg(&dir)
            .arg(&spec.hostname)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .status()
            .map_err(|e| {
                lerr(LinuxError::Spawn {
                    path: self.cfg.helper.clone(),
                    msg: e.to_string(),
                })
            })?;
        if !out.success() {
            let msg = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            let _ = cgroup::remove(&self.layout, &self.pod_cg(&spec.id), &[]);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(lerr(LinuxError::Shim(format!(
                "starting shim for pod {}: {}",
                spec.id,
                msg.trim()
            ))));
        }
        write_json(&dir.join("pod.json"), spec).map_err(lerr)?;
        Ok(())
    }

    fn pod_netns(&self, pod: &str) -> Result<PathBuf> {
        self.check_pod(pod)?;
        let pid = self
            .shim_pid(pod)
            .ok_or_else(|| RuntimeError::InvalidState(format!("pod {pod} has no running shim")))?;
        Ok(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }

    fn create_container(&self, pod: &str, spec: &ContainerSpec) -> Result<()> {
        let pod_dir = self.check_pod(pod)?;
        validate_name("container", &spec.name).map_err(RuntimeError::InvalidSpec)?;
        let dir = self.ctr_dir(pod, &spec.name);
        if dir.exists() {
            return Err(RuntimeError::AlreadyExists {
                kind: "container",
                name: format!("{pod}/{}", spec.name),
            });
        }
        let pspec: PodSpec = read_json(&pod_dir.join("pod.json")).map_err(lerr)?;
        let img = self.images.resolve(&spec.image)?;
        let ic = &img.config;
        let args = effective_args(
            spec,
            ic.entrypoint.as_deref().unwrap_or(&[]),
            ic.cmd.as_deref().unwrap_or(&[]),
        );
        if args.is_empty() {
            return Err(RuntimeError::InvalidSpec(format!(
                "container {}: no command and the image has none",
                spec.name
            )));
        }
        let (mut uid, mut gid) = match ic.user.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => Self::image_user(&img.layers, u)?,
            None => (0, 0),
        };
        if let Some(u) = spec.security.run_as_user {
            uid = u;
        }
        if let Some(g) = spec.security.run_as_group {
            gid = g;
        }
        let mut caps: Vec<String> = init::DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
        let norm = |c: &String| {
            if c.starts_with("CAP_") {
                c.clone()
            } else {
                format!("CAP_{c}")
            }
        };
        for a in &spec.security.add_capabilities {
            caps.push(norm(a));
        }
        let drop: Vec<String> = spec.security.drop_capabilities.iter().map(norm).collect();
        if drop.iter().any(|d| d == "CAP_ALL") {
            caps.clear();
        }
        caps.retain(|c| !drop.contains(c));
        caps.sort();
        caps.dedup();
        init::parse_caps(&caps).map_err(RuntimeError::InvalidSpec)?;
        for d in ["upper", "work", "rootfs"] {
            std::fs::create_dir_all(dir.join(d))
                .map_err(|e| lerr(LinuxError::io(dir.join(d), e)))?;
        }
        let mut hosts =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for (ip, names) in &pspec.extra_hosts {
            hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
        }
        let mut resolv = String::new();
        for s in &pspec.dns_servers {
            resolv.push_str(&format!("nameserver {s}\n"));
        }
        if !pspec.dns_search.is_empty() {
            resolv.push_str(&format!("search {}\n", pspec.dns_search.join(" ")));
        }
        for (f, c) in [
            ("hosts", hosts),
            ("hostname", format!("{}\n", pspec.hostname)),
            ("resolv.conf", resolv),
        ] {
            std::fs::write(dir.join(f), c).map_err(|e| lerr(LinuxError::io(dir.join(f), e)))?;
        }
        let rel = format!("{}/{}", self.pod_cg(pod), spec.name);
        if let Err(e) = cgroup::create(&rel, &spec.resources) {
            let _ = cgroup::remove(&self.layout, &rel, &[]);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(lerr(e));
        }
        let oom_file = self.layout.oom_file(&rel);
        let oom_base = oom_file
            .as_ref()
            .map(|(f, k)| cgroup::read_counter(f, k))
            .unwrap_or(0);
        let cfg = InitConfig {
            pod: pod.to_string(),
            name: spec.name.clone(),
            image: spec.image.clone(),
            lower: img.layers.iter().rev().cloned().collect(),
            upper: dir.join("upper"),
            work: dir.join("work"),
            rootfs: dir.join("rootfs"),
            args,
            env: merge_env(ic.env.as_deref().unwrap_or(&[]), &spec.env),
            cwd: spec
                .working_dir
                .clone()
                .or_else(|| ic.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or_else(|| "/".into()),
            uid,
            gid,
            caps,
            privileged: spec.security.privileged,
            read_only: spec.security.read_only_root_filesystem,
            cgroup_procs: self.layout.procs_files(&rel),
            oom_file: oom_file.map(|(f, k)| (f, k.to_string())),
            oom_base,
            cgroup_rel: rel,
            log_max_bytes: spec.log_max_bytes,
        };
        write_json(&dir.join("config.json"), &cfg).map_err(lerr)?;
        Ok(())
    }

    fn start_container(&self, pod: &str, name: &str) -> Result<()> {
        self.check_ctr(pod, name)?;
        self.call(
            pod,
            &Request::Start {
                name: name.to_string(),
            },
            Some(Duration::from_secs(60)),
        )?;
        Ok(())
    }

    fn stop_container(&self, pod: &str, name: &str, grace: Duration) -> Result<ContainerStatus> {
        let st = self.inspect(pod, name)?;
        if st.state != ContainerState::Running {
            return Ok(st);
        }
        self.call(
            pod,
            &Request::Signal {
                name: name.to_string(),
                signal: libc::SIGTERM,
            },
            Some(Duration::from_secs(5)),
        )?;
        match self.wait_container(pod, name, grace) {
            Ok(s) => Ok(s),
            Err(RuntimeError::Timeout(..)) => {
                self.call(
                    pod,
                    &Request::Signal {
                        name: name.to_string(),
                        signal: libc::SIGKILL,
                    },
                    Some(Duration::from_secs(5)),
                )?;
                self.wait_container(pod, name, Duration::from_secs(30))
            }
            Err(e) => Err(e),
        }
    }

    fn wait_container(&self, pod: &str, name: &str, timeout: Duration) -> Result<ContainerStatus> {
        let st = self.inspect(pod, name)?;
        match st.state {
            ContainerState::Exited | ContainerState::Unknown => return Ok(st),
            ContainerState::Created => {
                return Err(RuntimeError::InvalidState(format!(
                    "container {pod}/{name} was never started"
                )))
            }
            ContainerState::Running => {}
        }
        let t = timeout.max(Duration::from_millis(1));
        match shim::call(
            &self.pod_dir(pod),
            &Request::Wait {
                name: name.to_string(),
            },
            Some(t),
        ) {
            Ok(_) => self.inspect(pod, name),
            Err(e)
                if e.contains("timed out")
                    || e.contains("WouldBlock")
                    || e.contains("Resource temporarily unavailable") =>
            {
                Err(RuntimeError::Timeout(
                    timeout,
                    format!("container {pod}/{name} to exit"),
                ))
            }
            Err(e) => {
                // The shim may have died; report what the files say.
                let st = self.inspect(pod, name)?;
                if st.state == ContainerState::Running {
                    return Err(lerr(LinuxError::Shim(e)));
                }
                Ok(st)
            }
        }
    }

    fn remove_container(&self, pod: &str, name: &str) -> Result<()> {
        let dir = self.check_ctr(pod, name)?;
        let st = self.inspect(pod, name)?;
        if st.state == ContainerState::Running {
            return Err(RuntimeError::InvalidState(format!(
                "container {pod}/{name} is running; stop it first"
            )));
        }
        if self.shim_pid(pod).is_some() {
            let _ = self.call(
                pod,
                &Request::Forget {
                    name: name.to_string(),
                },
                Some(Duration::from_secs(5)),
            );
        }
        cgroup::remove(&self.layout, &format!("{}/{}", self.pod_cg(pod), name), &[])
            .map_err(lerr)?;
        std::fs::remove_dir_all(&dir).map_err(|e| lerr(LinuxError::io(&dir, e)))?;
        Ok(())
    }

    fn remove_pod(&self, pod: &str) -> Result<()> {
        let dir = self.check_pod(pod)?;
        if let Some(pid) = self.shim_pid(pod) {
            let _ = self.call(pod, &Request::Shutdown, Some(Duration::from_secs(30)));
            let deadline = Instant::now() + Duration::from_secs(10);
            while Path::new(&format!("/proc/{pid}")).exists() && self.shim_pid(pod).is_some() {
                if Instant::now() > deadline {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let names = self.container_names(pod);
        cgroup::remove(&self.layout, &self.pod_cg(pod), &names).map_err(lerr)?;
        std::fs::remove_dir_all(&dir).map_err(|e| lerr(LinuxError::io(&dir, e)))?;
        Ok(())
    }

    fn inspect(&self, pod: &str, name: &str) -> Result<ContainerStatus> {
        self.check_ctr(pod, name)?;
        self.status_of(pod, name, self.shim_pid(pod).is_some())
    }

    fn list(&self) -> Result<Vec<PodStatus>> {
        let root = self.cfg.data_dir.join("pods");
        let mut ids: Vec<String> = std::fs::read_dir(&root)
            .map_err(|e| lerr(LinuxError::io(&root, e)))?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("pod.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ids.sort();
        ids.iter().map(|id| self.pod_status(id)).collect()
    }

    fn recover(&self) -> Result<Vec<PodStatus>> {
        // All state lives in files written by the shims; re-adopting is reading them.
        let pods = self.list()?;
        for p in &pods {
            if !p.ready {
                tracing::warn!("pod {} has no live shim; its containers are reported as they were last recorded", p.id);
            }
        }
        Ok(pods)
    }

    fn exec(&self, pod: &str, name: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        let dir = self.check_ctr(pod, name)?;
        if self.inspect(pod, name)?.state != ContainerState::Running {
            return Err(RuntimeError::InvalidState(format!(
                "container {pod}/{name} is not running"
            )));
        }
        if cmd.is_empty() {
            return Err(RuntimeError::InvalidSpec("exec needs a command".into()));
        }
        let mut child = Command::new(&self.cfg.helper)
            .arg("shim")
            .arg("exec")
            .arg(&dir)
            .arg("--")
            .args(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                lerr(LinuxError::Spawn {
                    path: self.cfg.helper.clone(),
                    msg: e.to_string(),
                })
            })?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| lerr(LinuxError::Shim("no stdout pipe".into())))?;
        let mut err = child
            .stderr
            .take()
            .ok_or_else(|| lerr(LinuxError::Shim("no stderr pipe".into())))?;
        let to = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = out.read_to_end(&mut b);
            b
        });
        let te = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = err.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(RuntimeError::Timeout(
                        timeout,
                        format!("exec in {pod}/{name}"),
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(2)),
                Err(e) => {
                    return Err(lerr(LinuxError::Spawn {
                        path: self.cfg.helper.clone(),
                        msg: e.to_string(),
                    }))
                }
            }
        };
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Ok(ExecOutput {
            exit_code: code,
            stdout: to.join().unwrap_or_default(),
            stderr: te.join().unwrap_or_default(),
        })
    }

    fn logs(&self, pod: &str, name: &str, opts: &LogOptions, out: &mut dyn Write) -> Result<()> {
        let dir = self.check_ctr(pod, name)?;
        let mut done = || {
            !matches!(
                self.inspect(pod, name).map(|s| s.state),
                Ok(ContainerState::Running)
            )
        };
        logs::stream(
            &dir.join("container.log"),
            opts.tail,
            opts.follow,
            out,
            &mut done,
            Duration::from_secs(365 * 24 * 3600),
        )
        .map_err(|e| lerr(LinuxError::io(dir.join("container.log"), e)))
    }

    fn stats(&self, pod: &str, name: &str) -> Result<ContainerStats> {
        self.check_ctr(pod, name)?;
        Ok(cgroup::stats(
            &self.layout,
            &format!("{}/{}", self.pod_cg(pod), name),
        ))
    }
}

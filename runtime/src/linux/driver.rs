//! The [`ContainerRuntime`] operations of [`LinuxRuntime`]: each writes config, talks to the
//! pod's shim or reads the files the shim wrote; none touches namespaces or mounts itself.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cgroup;
use super::shim::{self, Request};
use super::state::{write_json, InitConfig};
use super::{effective_args, init, lerr, logs, merge_env, LinuxError, LinuxRuntime};
use crate::spec::{
    validate_name, validate_pod_spec, ContainerSpec, ContainerState, ContainerStats,
    ContainerStatus, ExecOutput, LogOptions, PodSpec, PodStatus,
};
use crate::traits::{ContainerRuntime, Result, RuntimeError};

impl ContainerRuntime for LinuxRuntime {
    fn create_pod(&self, spec: &PodSpec) -> Result<()> {
        validate_pod_spec(spec).map_err(RuntimeError::InvalidSpec)?;
        let dir = self.pod_dir(&spec.id);
        if dir.join("pod.json").exists() {
            return Err(RuntimeError::AlreadyExists {
                kind: "pod",
                name: spec.id.clone(),
            });
        }
        std::fs::create_dir_all(&dir).map_err(|e| lerr(LinuxError::io(&dir, e)))?;
        let (hosts, resolv) = etc_files(spec);
        for (f, c) in [
            ("hosts", hosts),
            ("hostname", format!("{}\n", spec.hostname)),
            ("resolv.conf", resolv),
        ] {
            std::fs::write(dir.join(f), c).map_err(|e| lerr(LinuxError::io(dir.join(f), e)))?;
        }
        cgroup::create(&self.pod_cg(&spec.id), &Default::default()).map_err(lerr)?;
        let log = std::fs::File::create(dir.join("shim.stderr"))
            .map_err(|e| lerr(LinuxError::io(dir.join("shim.stderr"), e)))?;
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
            let msg = std::fs::read_to_string(dir.join("shim.stderr")).unwrap_or_default();
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
        crate::spec::validate_mounts(&spec.mounts)
            .map_err(|e| RuntimeError::InvalidSpec(format!("container {}: {e}", spec.name)))?;
        let paths = self.ctr_paths(pod, &spec.name);
        if paths.config.exists() {
            return Err(RuntimeError::AlreadyExists {
                kind: "container",
                name: format!("{pod}/{}", spec.name),
            });
        }
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
        let rel = format!("{}/{}", self.pod_cg(pod), spec.name);
        if let Err(e) = cgroup::create(&rel, &spec.resources) {
            let _ = cgroup::remove(&self.layout, &rel, &[]);
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
            pod_dir: pod_dir.clone(),
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
            seccomp: spec.security.seccomp,
            read_only: spec.security.read_only_root_filesystem,
            cgroup_join: self.layout.join_files(&rel),
            oom_file: oom_file.map(|(f, k)| (f, k.to_string())),
            oom_base,
            cgroup_rel: rel,
            log_max_bytes: spec.log_max_bytes,
            log_max_files: spec.log_max_files,
            writable_layer_bytes: spec.resources.writable_layer_bytes(),
            mounts: spec.mounts.clone(),
        };
        if let Err(e) = write_json(&paths.config, &cfg) {
            let _ = cgroup::remove(&self.layout, &cfg.cgroup_rel, &[]);
            return Err(lerr(e));
        }
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
        let paths = self.check_ctr(pod, name)?;
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
        // The config goes last: it is what makes the container exist.
        for f in paths.all().iter().rev() {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(lerr(LinuxError::io(f, e)))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn remove_pod(&self, pod: &str) -> Result<()> {
        let dir = match self.check_pod(pod) {
            Ok(d) => d,
            // A removal that failed after pod.json went finishes now.
            Err(RuntimeError::NotFound { .. }) if self.pod_dir(pod).is_dir() => self.pod_dir(pod),
            Err(e) => return Err(e),
        };
        if let Some(pid) = self.shim_pid(pod) {
            // A pidfd names this very process (no pid reuse), and becomes readable when it
            // has exited: no polling of /proc. Taken before the shutdown request, and checked
            // to still be our shim after it was taken.
            let pidfd = pidfd_open(pid).filter(|_| self.shim_pid(pod) == Some(pid));
            let _ = self.call(pod, &Request::Shutdown, Some(Duration::from_secs(30)));
            match pidfd {
                Some(fd) => {
                    if !wait_exit(&fd, Duration::from_secs(10)) {
                        pidfd_kill(&fd);
                        wait_exit(&fd, Duration::from_secs(10));
                    }
                }
                None => {
                    // No pidfd (kernel < 5.3): watch /proc.
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while self.shim_pid(pod) == Some(pid) {
                        if Instant::now() > deadline {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
        }
        let names = self.container_names(pod);
        cgroup::remove(&self.layout, &self.pod_cg(pod), &names).map_err(lerr)?;
        // pod.json first: from here on the pod is out of every listing, so a listing that
        // runs meanwhile never meets a half-removed directory.
        let record = dir.join("pod.json");
        match std::fs::remove_file(&record) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(lerr(LinuxError::io(&record, e))),
        }
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
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            match self.pod_status(id) {
                Ok(p) => out.push(p),
                // Removed while we listed (a pod's removal runs on its own thread): it is
                // simply gone, not an error of the listing.
                Err(_) if !root.join(id).join("pod.json").exists() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
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
        self.check_ctr(pod, name)?;
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
            .arg(self.pod_dir(pod))
            .arg(name)
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
        let paths = self.check_ctr(pod, name)?;
        // Follow until the process has ended: a container that is only Created (start still
        // in flight) has output to come, so it does not end the stream.
        let mut done = || {
            !matches!(
                self.inspect(pod, name).map(|s| s.state),
                Ok(ContainerState::Running | ContainerState::Created)
            )
        };
        logs::stream(
            &paths.log,
            opts.tail,
            opts.follow,
            out,
            &mut done,
            Duration::from_secs(365 * 24 * 3600),
        )
        .map_err(|e| lerr(LinuxError::io(&paths.log, e)))
    }

    fn stats(&self, pod: &str, name: &str) -> Result<ContainerStats> {
        self.check_ctr(pod, name)?;
        Ok(cgroup::stats(
            &self.layout,
            &format!("{}/{}", self.pod_cg(pod), name),
        ))
    }
}

/// The pod's `/etc/hosts` and `/etc/resolv.conf`, shared by its containers.
fn etc_files(spec: &PodSpec) -> (String, String) {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (ip, names) in &spec.extra_hosts {
        hosts.push_str(&format!("{ip}\t{}\n", names.join(" ")));
    }
    (hosts, spec.resolv_conf.clone())
}

/// `pidfd_open(2)`: a descriptor for process `pid`, or None when the kernel has none.
fn pidfd_open(pid: u32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a descriptor the kernel just returned to us and nobody else owns.
    Some(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILL the process behind a pidfd.
fn pidfd_kill(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Block until the process behind `fd` has exited; false on timeout.
fn wait_exit(fd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms =
            PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(n) if n > 0 => return true,
            Ok(_) if left.is_zero() => return false,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

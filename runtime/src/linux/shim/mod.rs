//! The per-pod shim: `<helper> shim pod <pod-dir> <hostname>`.
//!
//! Started by the driver, it unshares the pod's net, IPC and UTS namespaces, sets the
//! hostname, forks and lets the intermediate exit (so the driver's death never touches it),
//! becomes a session leader and child subreaper, and then serves a tiny line-JSON protocol on
//! `<pod-dir>/shim.sock`. It is single-threaded: one `poll` loop over the socket, a signalfd
//! for SIGCHLD and the containers' stdout/stderr pipes. Containers are `clone`d with fresh
//! pid and mount namespaces; the child (still this single-threaded program) does the mount
//! setup in [`super::init`] and execs the workload. Exit codes and reasons are appended to each
//! container's `<name>.state`.

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cgroup::read_counter;
use super::logs::LogWriter;
use super::state::{append_state, now_ms, read_json, CtrPaths, CtrState, InitConfig};
use crate::spec::Stream;

mod proto;
pub use proto::{call, Request, Response};
use proto::{err, reply, Fill, Pending, MAX_PENDING, REQUEST_TIMEOUT};

struct Ctr {
    paths: CtrPaths,
    cfg: InitConfig,
    pid: Option<Pid>,
    pipes: [Option<OwnedFd>; 2],
    log: Option<LogWriter>,
    state: CtrState,
    waiters: Vec<UnixStream>,
}

/// Entry of `shim pod`. Returns the exit code of the intermediate process.
pub fn pod_main(pod_dir: &Path, hostname: &str) -> i32 {
    match pod_setup(pod_dir, hostname) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kommit shim: {e}");
            1
        }
    }
}

fn pod_setup(pod_dir: &Path, hostname: &str) -> Result<i32, String> {
    nix::sched::unshare(
        CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS,
    )
    .map_err(|e| format!("unshare net/ipc/uts: {e}"))?;
    nix::unistd::sethostname(hostname).map_err(|e| format!("sethostname {hostname}: {e}"))?;
    super::init::loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
    std::env::set_current_dir(pod_dir).map_err(|e| format!("chdir {}: {e}", pod_dir.display()))?;
    let _ = std::fs::remove_file("shim.sock");
    let listener = UnixListener::bind("shim.sock").map_err(|e| format!("bind shim.sock: {e}"))?;
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: this process is single-threaded (a fresh exec of the helper that has started no
    // threads), so the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(w);
            drop(listener);
            let mut buf = [0u8; 1];
            let mut f = std::fs::File::from(r);
            match f.read(&mut buf) {
                Ok(1) => Ok(0),
                _ => Err("shim did not become ready".into()),
            }
        }
        nix::unistd::ForkResult::Child => {
            drop(r);
            let _ = nix::unistd::setsid();
            nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("subreaper: {e}"))?;
            std::fs::write("shim.pid", std::process::id().to_string())
                .map_err(|e| format!("write shim.pid: {e}"))?;
            let mut mask = SigSet::empty();
            mask.add(Signal::SIGCHLD);
            mask.thread_block().map_err(|e| format!("sigmask: {e}"))?;
            for s in [Signal::SIGPIPE, Signal::SIGHUP, Signal::SIGINT] {
                // SAFETY: SigIgn installs no handler code; ignoring these is async-signal-safe.
                let _ =
                    unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) };
            }
            let sfd = SignalFd::with_flags(
                &mask,
                nix::sys::signalfd::SfdFlags::SFD_NONBLOCK
                    | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
            )
            .map_err(|e| format!("signalfd: {e}"))?;
            let mut wf = std::fs::File::from(w);
            let _ = wf.write_all(b"k");
            drop(wf);
            let mut shim = Shim {
                pod_dir: pod_dir.to_path_buf(),
                ctrs: BTreeMap::new(),
                stack: vec![0u8; 1024 * 1024],
            };
            shim.run(listener, sfd);
            std::process::exit(0);
        }
    }
}

struct Shim {
    pod_dir: PathBuf,
    ctrs: BTreeMap<String, Ctr>,
    /// Stack for cloned container inits, allocated once: the child gets a copy-on-write
    /// copy, so one buffer serves every start (a fresh 1 MiB buffer per start is zeroed
    /// page by page by the allocator).
    stack: Vec<u8>,
}

impl Shim {
    fn run(&mut self, listener: UnixListener, sfd: SignalFd) {
        let _ = listener.set_nonblocking(true);
        // Connections whose request line has not fully arrived: read as bytes come, in the
        // same poll loop, so a slow or silent client never stalls the shim (it is dropped
        // after REQUEST_TIMEOUT, or when too many are pending).
        let mut pending: Vec<Pending> = Vec::new();
        loop {
            let mut pipe_ids: Vec<(String, usize)> = Vec::new();
            let mut fds = vec![
                PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            ];
            for p in &pending {
                fds.push(PollFd::new(p.stream.as_fd(), PollFlags::POLLIN));
            }
            for (name, c) in &self.ctrs {
                for (i, p) in c.pipes.iter().enumerate() {
                    if let Some(fd) = p {
                        fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                        pipe_ids.push((name.clone(), i));
                    }
                }
            }
            let timeout = pending
                .iter()
                .map(|p| (p.since + REQUEST_TIMEOUT).saturating_duration_since(Instant::now()))
                .min()
                .map(|d| {
                    PollTimeout::try_from(d.as_millis() as i32 + 1).unwrap_or(PollTimeout::MAX)
                })
                .unwrap_or(PollTimeout::NONE);
            if poll(&mut fds, timeout).is_err() {
                continue;
            }
            let ready: Vec<bool> = fds
                .iter()
                .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            drop(fds);
            let npend = pending.len();
            for (k, (name, i)) in pipe_ids.iter().enumerate() {
                if ready[k + 2 + npend] {
                    self.pump(name, *i);
                }
            }
            if ready[1] {
                while let Ok(Some(_)) = sfd.read_signal() {}
                self.reap();
            }
            // Requests complete in arrival order of their connections.
            let mut still = Vec::with_capacity(npend);
            let mut lines = Vec::new();
            for (k, mut p) in pending.drain(..).enumerate() {
                match if ready[k + 2] { p.fill() } else { Fill::More } {
                    Fill::Line(line) => lines.push((p.stream, line)),
                    Fill::More if p.since.elapsed() < REQUEST_TIMEOUT => still.push(p),
                    Fill::More | Fill::Drop => {}
                }
            }
            pending = still;
            for (stream, line) in lines {
                if self.handle(stream, &line) {
                    return;
                }
            }
            if ready[0] {
                while let Ok((stream, _)) = listener.accept() {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if pending.len() >= MAX_PENDING {
                        pending.remove(0);
                    }
                    pending.push(Pending {
                        stream,
                        buf: Vec::new(),
                        since: Instant::now(),
                    });
                }
            }
        }
    }

    /// Read what is available on one pipe into the log; close it on EOF.
    fn pump(&mut self, name: &str, i: usize) -> bool {
        let Some(c) = self.ctrs.get_mut(name) else {
            return false;
        };
        let Some(fd) = c.pipes[i].as_ref() else {
            return false;
        };
        let mut buf = [0u8; 16384];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) | Err(_) => {
                c.pipes[i] = None;
                false
            }
            Ok(n) => {
                if let Some(l) = c.log.as_mut() {
                    let _ = l.write(
                        if i == 0 {
                            Stream::Stdout
                        } else {
                            Stream::Stderr
                        },
                        &buf[..n],
                    );
                }
                true
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.finished(pid, code, None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.finished(pid, 128 + sig as i32, Some(sig))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn finished(&mut self, pid: Pid, code: i32, sig: Option<Signal>) {
        let Some(name) = self
            .ctrs
            .iter()
            .find(|(_, c)| c.pid == Some(pid))
            .map(|(n, _)| n.clone())
        else {
            return;
        };
        // The pipes may still hold output: drain them.
        for i in 0..2 {
            for _ in 0..10_000 {
                if !self.pump(&name, i) {
                    break;
                }
            }
        }
        let Some(c) = self.ctrs.get_mut(&name) else {
            return;
        };
        if let Some(l) = c.log.as_mut() {
            let _ = l.flush_partial();
        }
        c.pipes = [None, None];
        let oom = c
            .cfg
            .oom_file
            .as_ref()
            .map(|(f, k)| read_counter(f, k))
            .unwrap_or(0)
            > c.cfg.oom_base;
        let reason = if oom {
            "OOMKilled"
        } else if c.state.error.is_some() {
            "StartError"
        } else if code == 0 {
            "Completed"
        } else if sig == Some(Signal::SIGKILL) || sig == Some(Signal::SIGTERM) {
            "Killed"
        } else {
            "Error"
        };
        c.state.pid = None;
        c.state.exit_code = Some(code);
        c.state.reason = Some(reason.to_string());
        c.state.finished_at_ms = Some(now_ms());
        c.pid = None;
        let _ = append_state(&c.paths.state, &c.state);
        let resp = Response {
            ok: true,
            error: None,
            state: Some(c.state.clone()),
        };
        for mut w in c.waiters.drain(..) {
            let _ = reply(&mut w, &resp);
        }
    }

    /// Handle one connection; true means shut down.
    fn handle(&mut self, mut stream: UnixStream, line: &str) -> bool {
        // Replies are small and written whole; a client that stops reading cannot hold the
        // shim for long.
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
        let req: Request = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(e) => {
                let _ = reply(&mut stream, &err(format!("bad request: {e}")));
                return false;
            }
        };
        let resp = match req {
            Request::Ping => Response {
                ok: true,
                ..Default::default()
            },
            Request::Start { name } => match self.start(&name) {
                Ok(st) => Response {
                    ok: true,
                    error: None,
                    state: Some(st),
                },
                Err(e) => err(e),
            },
            Request::Signal { name, signal } => match self.ctrs.get(&name).and_then(|c| c.pid) {
                Some(pid) => match Signal::try_from(signal) {
                    Ok(s) => match nix::sys::signal::kill(pid, s) {
                        Ok(()) => Response {
                            ok: true,
                            ..Default::default()
                        },
                        Err(e) => err(format!("kill {pid}: {e}")),
                    },
                    Err(e) => err(format!("signal {signal}: {e}")),
                },
                None => Response {
                    ok: true,
                    ..Default::default()
                },
            },
            Request::Wait { name } => match self.ctrs.get_mut(&name) {
                Some(c) if c.pid.is_some() => {
                    c.waiters.push(stream);
                    return false;
                }
                Some(c) => Response {
                    ok: true,
                    error: None,
                    state: Some(c.state.clone()),
                },
                None => err(format!("container {name} not started by this shim")),
            },
            Request::Forget { name } => match self.ctrs.get(&name) {
                Some(c) if c.pid.is_some() => err(format!("container {name} is running")),
                _ => {
                    self.ctrs.remove(&name);
                    Response {
                        ok: true,
                        ..Default::default()
                    }
                }
            },
            Request::Shutdown => {
                self.shutdown();
                let _ = reply(
                    &mut stream,
                    &Response {
                        ok: true,
                        ..Default::default()
                    },
                );
                let _ = std::fs::remove_file(self.pod_dir.join("shim.sock"));
                return true;
            }
        };
        let _ = reply(&mut stream, &resp);
        false
    }

    fn shutdown(&mut self) {
        let pids: Vec<Pid> = self.ctrs.values().filter_map(|c| c.pid).collect();
        for p in &pids {
            let _ = nix::sys::signal::kill(*p, Signal::SIGKILL);
        }
        for p in pids {
            match waitpid(p, None) {
                Ok(WaitStatus::Exited(pid, code)) => self.finished(pid, code, None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.finished(pid, 128 + sig as i32, Some(sig))
                }
                _ => {}
            }
        }
        // Reap any other orphan we adopted.
        while let Ok(st) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            if st == WaitStatus::StillAlive {
                break;
            }
        }
    }

    fn start(&mut self, name: &str) -> Result<CtrState, String> {
        if self
            .ctrs
            .get(name)
            .is_some_and(|c| c.pid.is_some() || c.state.started_at_ms.is_some())
        {
            return Err(format!("container {name} was already started"));
        }
        crate::spec::validate_name("container", name)?;
        let paths = CtrPaths::new(&self.pod_dir, name);
        let cfg: InitConfig = read_json(&paths.config).map_err(|e| e.to_string())?;
        let log = LogWriter::open(&paths.log, cfg.log_max_bytes, cfg.log_max_files)
            .map_err(|e| format!("log: {e}"))?;
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (out_r, out_w) = nix::unistd::pipe2(cloexec).map_err(|e| format!("pipe: {e}"))?;
        let (err_r, err_w) = nix::unistd::pipe2(cloexec).map_err(|e| format!("pipe: {e}"))?;
        let (sync_r, sync_w) = nix::unistd::pipe2(cloexec).map_err(|e| format!("pipe: {e}"))?;
        let devnull = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        let (fd_in, fd_out, fd_err, fd_sync) = (
            devnull.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
            sync_w.as_raw_fd(),
        );
        let child_cfg = cfg.clone();
        let cb = Box::new(move || -> isize {
            // SAFETY: runs in the freshly cloned child, a copy of this single-threaded process;
            // dup2 on fds opened before clone.
            unsafe {
                libc::dup2(fd_in, 0);
                libc::dup2(fd_out, 1);
                libc::dup2(fd_err, 2);
            }
            let msg = super::init::init_in_child(&child_cfg);
            // SAFETY: fd_sync is the sync pipe's write end, open in this child; the buffer is
            // a live slice. _exit skips atexit handlers that belong to the shim.
            unsafe {
                libc::write(fd_sync, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            }
        });
        // SAFETY: the shim is single-threaded, so the child may allocate and run ordinary code
        // (no lock can be held by another thread); without CLONE_VM the child runs on its own
        // copy-on-write copy of the stack buffer, which the shim keeps for its lifetime.
        let pid = unsafe {
            nix::sched::clone(
                cb,
                &mut self.stack,
                CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS,
                Some(libc::SIGCHLD),
            )
        }
        .map_err(|e| format!("clone: {e}"))?;
        drop((out_w, err_w, sync_w, devnull));
        // The init writes an error to fd 3 on failure; a successful exec closes it (CLOEXEC).
        let mut msg = String::new();
        let _ = std::fs::File::from(sync_r)
            .take(64 << 10)
            .read_to_string(&mut msg);
        let mut state = CtrState {
            pid: Some(pid.as_raw() as u32),
            started_at_ms: Some(now_ms()),
            ..Default::default()
        };
        let failed = !msg.is_empty();
        if failed {
            state.error = Some(msg.clone());
        }
        let _ = nix::fcntl::fcntl(
            &out_r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        let _ = nix::fcntl::fcntl(
            &err_r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        append_state(&paths.state, &state).map_err(|e| e.to_string())?;
        self.ctrs.insert(
            name.to_string(),
            Ctr {
                paths,
                cfg,
                pid: Some(pid),
                pipes: [Some(out_r), Some(err_r)],
                log: Some(log),
                state: state.clone(),
                waiters: Vec::new(),
            },
        );
        if failed {
            return Err(format!("starting container {name}: {msg}"));
        }
        Ok(state)
    }
}

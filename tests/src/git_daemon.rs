//! A `git daemon` serving the bare repositories under a directory over git:// (push
//! enabled), on loopback for the git tests and on a test bridge's address for the cluster
//! harness, whose nodes fetch from it over the network.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `git daemon` serving `base`; killed with the children it forked on drop.
pub struct GitDaemon {
    child: Option<Child>,
    /// Its port.
    pub port: u16,
    /// Its address.
    pub addr: IpAddr,
    base: PathBuf,
}

impl GitDaemon {
    /// Serves `base` on 127.0.0.1, on a free port.
    pub fn start(base: &Path) -> Self {
        Self::start_on(base, crate::fixtures::free_port())
    }

    /// Serves `base` on 127.0.0.1:`port`.
    pub fn start_on(base: &Path, port: u16) -> Self {
        Self::start_at(base, IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    /// Serves `base` on `addr`:`port` (an address of the test's own).
    pub fn start_at(base: &Path, addr: IpAddr, port: u16) -> Self {
        let child = Command::new("git")
            .current_dir(base)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--enable=receive-pack",
                &format!("--listen={addr}"),
                "--init-timeout=2",
                "--timeout=10",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                &base.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("git daemon starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((addr, port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "git daemon did not listen on {addr}:{port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        GitDaemon {
            child: Some(child),
            port,
            addr,
            base: base.to_owned(),
        }
    }

    /// The git:// URL of `repo` (a path below the base).
    pub fn url(&self, repo: &str) -> String {
        format!("git://{}:{}/{repo}", self.addr, self.port)
    }

    /// Kills it and waits until its port refuses connections.
    pub fn stop(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((self.addr, self.port)).is_ok() {
            assert!(Instant::now() < deadline, "git daemon still listening");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it and starts it again on the same address and port.
    pub fn restart(&mut self) {
        self.stop();
        *self = GitDaemon::start_at(&self.base.clone(), self.addr, self.port);
    }

    /// Kills the daemon and the per-connection children it forked (its process group).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{}", c.id())])
                .status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

//! An `sshd` on 127.0.0.1 for tests: fresh host and client keys in a temp dir, public-key
//! login for the current user only, killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    pub user: String,
    /// The client's private key.
    pub key: PathBuf,
    /// A known_hosts file pinning this server's host key.
    pub known_hosts: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Sshd {
    /// Starts sshd, or returns `None` when it is not installed (the caller reports the skip).
    pub fn start(dir: &Path) -> Option<Self> {
        let sshd = Path::new("/usr/sbin/sshd");
        if !sshd.exists() {
            return None;
        }
        let port = super::free_port();
        let user = String::from_utf8(Command::new("id").arg("-un").output().expect("id").stdout)
            .expect("utf8")
            .trim()
            .to_owned();
        let host_key = dir.join("ssh_host_ed25519_key");
        let key = dir.join("id_ed25519");
        for k in [&host_key, &key] {
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(k));
        }
        std::fs::copy(key.with_extension("pub"), dir.join("authorized_keys"))
            .expect("authorized_keys");
        let host_pub = std::fs::read_to_string(host_key.with_extension("pub")).expect("host pub");
        let known_hosts = dir.join("known_hosts");
        let mut fields = host_pub.split_whitespace();
        let (kind, blob) = (fields.next().expect("type"), fields.next().expect("key"));
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {kind} {blob}\n"))
            .expect("known_hosts");
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nAuthorizedKeysFile {auth}\n\
                 PidFile {pid}\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n\
                 PermitRootLogin prohibit-password\nAllowUsers {user}\n",
                host = host_key.display(),
                auth = dir.join("authorized_keys").display(),
                pid = dir.join("sshd.pid").display(),
            ),
        )
        .expect("config");
        let _ = std::fs::create_dir_all("/run/sshd");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Sshd {
            child: Some(child),
            port,
            user,
            key,
            known_hosts,
        })
    }

    pub fn url(&self, path: &Path) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            self.user,
            self.port,
            path.display()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

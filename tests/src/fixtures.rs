//! Fixtures shared by the integration tests: the template repository, directory copies, the
//! `kommit` binary and free loopback ports.

use kommit_schemas::DesiredState;
use std::path::{Path, PathBuf};

/// The repository's `repo-template/` directory.
pub fn repo_template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../repo-template")
}

/// repo-template's desired state, validated.
pub fn repo_template() -> DesiredState {
    let limits = kommit_schemas::Limits::default();
    let tree = kommit_daemon::fstree::read_dir_tree(&repo_template_dir(), &limits)
        .expect("repo-template is readable");
    kommit_schemas::validate(&tree, &limits).expect("repo-template is valid")
}

/// Copies the directory tree `from` to `to` (regular files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for e in std::fs::read_dir(from).expect("read directory") {
        let e = e.expect("directory entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copy file");
        }
    }
}

/// The `kommit` binary of the running test's or bench's build (`target/<profile>/kommit`;
/// tests run from `target/<profile>/deps`); cargo builds it with the workspace's tests, and
/// `cargo build --release -p kommit-daemon` for the benches.
pub fn kommit_bin() -> PathBuf {
    // An explicit binary (the benches measure the `dist` build this way).
    if let Some(bin) = std::env::var_os("KOMMIT_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let mut dir = exe.parent().expect("executable directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target/<profile>");
    }
    let bin = dir.join("kommit");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build -p kommit-daemon --bin kommit` (with --release for benches) first",
        bin.display()
    );
    bin
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Runs `kommit ARGS --data-dir DATA_DIR` against the running daemon there, asserts that it
/// succeeded, and returns its standard output.
pub fn kommit_ok(args: &[&str], data_dir: &Path) -> String {
    let out = std::process::Command::new(kommit_bin())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("run kommit");
    assert!(
        out.status.success(),
        "kommit {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 output")
}

/// A join token made by `kommit token create` against the running daemon in `data_dir`.
pub fn create_token(data_dir: &Path) -> String {
    kommit_ok(&["token", "create"], data_dir).trim().to_string()
}

/// What a TLS client presenting `id` hears from the cluster port at `addr` when it sends a
/// request: the server's answer, or its alert (`CertificateRevoked`, `CertificateExpired`).
/// TLS 1.3 finishes the client's side of the handshake before the server has checked the
/// client certificate, so the server's alert comes with the first read.
pub async fn tls_alert(id: &kommit_daemon::consensus::tls::NodeIdentity, addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cfg = std::sync::Arc::new(id.client_config().expect("client config"));
    let tcp = match tokio::net::TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => return e.to_string(),
    };
    let name = rustls::pki_types::ServerName::try_from("kommit-node").expect("name");
    let mut tls = match tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
    {
        Ok(t) => t,
        Err(e) => return e.to_string(),
    };
    let _ = tls
        .write_all(b"GET /cluster/status HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let mut buf = vec![0u8; 1024];
    match tls.read(&mut buf).await {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => e.to_string(),
    }
}

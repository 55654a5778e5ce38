//! Issue 16 item 6: bounds at every door, against a running `kommit daemon`.
//!
//! One daemon (`--bootstrap --no-agent`) follows a repository served by `git daemon` (no
//! local watch, polling once an hour: only the webhook makes it fetch). Then, on loopback:
//! * a 100 MiB body to the webhook, the local API and the join endpoint is refused with 413
//!   without being read;
//! * 10,000 connections opened at once to the webhook and to the cluster port are refused
//!   beyond the per-address cap, while a normal client (from another loopback address) still
//!   gets through;
//! * a request flood to the webhook, the join endpoint and the local API is answered 429 with
//!   `Retry-After`.
//!
//! During all of it the daemon adopts each pushed commit (through a webhook call from
//! the normal client), and its resident memory grows by less than a generous bound.
//!
//! It also runs `kommit token create --uses 1` and `kommit token delete` against the daemon.
//!
//! Root (the daemon's data dir and socket); skipped only with KOMMIT_SKIP_PRIVILEGED=1.

mod git_common;

use git_common::{config_map, Fixture, KOMMIT_YAML};
use kommit_daemon::consensus::local::local_client;
use kommit_daemon::consensus::tls::{ca_hash, join_client_config, NodeIdentity, JOIN_SERVER_NAME};
use kommit_reconcilers::ClusterState;
use kommit_tests::fixtures::{free_port, kommit_bin, kommit_ok};
use kommit_tests::git_daemon::GitDaemon;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const HUNDRED_MIB: usize = 100 << 20;
const CONNECTIONS: usize = 10_000;
/// The normal client's address: another loopback address than the abuser's 127.0.0.1.
const NORMAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The daemon's replicated state, read through its local API.
async fn state(data: &Path) -> Option<ClusterState> {
    let r = local_client(data)
        .ok()?
        .get("http://localhost/state")
        .send()
        .await
        .ok()?;
    ClusterState::from_canonical_bytes(&r.bytes().await.ok()?).ok()
}

async fn wait_adopted(data: &Path, commit: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(data).await.and_then(|s| s.commit).as_deref() != Some(commit) {
        assert!(
            Instant::now() < deadline,
            "commit {commit} not adopted: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The normal client: from 127.0.0.2.
fn normal_client() -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(NORMAL)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn hook(client: &reqwest::Client, addr: SocketAddr) -> reqwest::Response {
    client
        .post(format!("http://{addr}/hooks/git"))
        .header("content-type", "application/json")
        .body(r#"{"ref":"refs/heads/main"}"#)
        .send()
        .await
        .expect("webhook call")
}

/// Sends `head` then up to 100 MiB of body on `io` (in HTTP chunks when `head` says
/// `transfer-encoding: chunked`); returns the status line the server answered and how many
/// body bytes had been written when it answered.
async fn huge_body<S: AsyncRead + AsyncWrite + Unpin>(io: S, head: &str) -> (String, usize) {
    let chunked = head.contains("transfer-encoding: chunked");
    let (mut rd, mut wr) = tokio::io::split(io);
    wr.write_all(head.as_bytes()).await.expect("request head");
    let sent = std::cell::Cell::new(0usize);
    let reader = async {
        let mut answer = vec![0u8; 512];
        let n = rd.read(&mut answer).await.unwrap_or(0);
        let text = String::from_utf8_lossy(&answer[..n]).into_owned();
        text.lines().next().unwrap_or_default().to_string()
    };
    let writer = async {
        let data = vec![b'x'; 64 << 10];
        let chunk = if chunked {
            let mut c = format!("{:x}\r\n", data.len()).into_bytes();
            c.extend_from_slice(&data);
            c.extend_from_slice(b"\r\n");
            c
        } else {
            data
        };
        while sent.get() < HUNDRED_MIB {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
            sent.set(sent.get() + chunk.len());
        }
    };
    tokio::pin!(reader);
    tokio::select! {
        line = &mut reader => return (line, sent.get()),
        () = writer => {}
    }
    // Written out (or the server closed): its answer may still be readable.
    (reader.await, sent.get())
}

fn head(path: &str, len: usize) -> String {
    format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n")
}

/// A TLS stream to the join endpoint of `addr`.
async fn join_stream(
    addr: SocketAddr,
    ca: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let cfg = join_client_config(&ca_hash(ca).expect("ca hash")).expect("join client config");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from(JOIN_SERVER_NAME).expect("name"),
            tcp,
        )
        .await
        .expect("tls to the join endpoint")
}

/// Opens `CONNECTIONS` connections to `addr` from 127.0.0.1 and holds them all; returns
/// (how many stayed open after a moment, those streams). They are opened 100 at a time, each
/// wave once the last is connected, so the kernel's accept queue (128 deep for the webhook)
/// never overflows and every connection reaches the daemon.
async fn open_many(addr: SocketAddr) -> (usize, Vec<tokio::net::TcpStream>) {
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS / 100 {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..100 {
            tasks.spawn(async move {
                tokio::time::timeout(
                    Duration::from_secs(20),
                    tokio::net::TcpStream::connect(addr),
                )
                .await
                .ok()?
                .ok()
            });
        }
        while let Some(s) = tasks.join_next().await {
            if let Some(s) = s.expect("task") {
                streams.push(s);
            }
        }
    }
    assert!(
        streams.len() > CONNECTIONS * 9 / 10,
        "only {} connected",
        streams.len()
    );
    // Give the daemon time to accept and refuse; a refused stream reads EOF (after a 503 on
    // plain HTTP), an admitted one has nothing to read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut open = Vec::new();
    for mut s in streams {
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            Err(_) => open.push(s),
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(
                    text.starts_with("HTTP/1.1 503"),
                    "a refused connection: {text}"
                );
            }
            Ok(_) => {}
        }
    }
    (open.len(), open)
}

#[test]
fn every_door_refuses_what_is_over_its_limits_and_the_daemon_keeps_adopting() {
    if std::env::var_os("KOMMIT_SKIP_PRIVILEGED").is_some()
        || !nix::unistd::Uid::effective().is_root()
    {
        eprintln!("skipped: needs root");
        return;
    }
    // 10,000 sockets at once need more descriptors than the usual soft limit of 1024.
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        hard.min(65_536),
        hard,
    )
    .expect("raise RLIMIT_NOFILE");
    kommit_runtime::tls::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio")
        .block_on(doors());
}

async fn doors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The bare repository `remote.git` under the fixture's dir, served over git://.
    let repo = Fixture::new();
    let push = |n: usize| {
        repo.commit(
            &[(&format!("cm{n}.yaml"), &config_map(&format!("cm{n}")))],
            "push",
        )
    };
    let mut commits = vec![repo.commit(&[("kommit.yaml", KOMMIT_YAML)], "first")];
    let gitd = GitDaemon::start(repo.dir.path());

    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let hook_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let log = dir.path().join("daemon.log");
    let daemon = Daemon(
        Command::new(kommit_bin())
            .arg("daemon")
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--listen",
                &listen.to_string(),
                "--node-name",
                "d0",
                "--bootstrap",
                "--no-agent",
            ])
            .args(["--repo", &gitd.url("remote.git"), "--poll-ms", "3600000"])
            .args(["--webhook-listen", &hook_addr.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn kommit daemon"),
    );
    let pid = daemon.0.id();
    wait_adopted(&data, &commits[0], &log).await;
    let rss_before = vm_rss_kib(pid);
    let ca = NodeIdentity::load(&data.join("tls"))
        .expect("identity")
        .ca_pem;
    let normal = normal_client();

    // `kommit token create|delete` go through the daemon into the replicated state.
    let token = kommit_ok(
        &["token", "create", "--uses", "1", "--ttl-hours", "1"],
        &data,
    );
    let id = token
        .trim()
        .split('.')
        .nth(2)
        .expect("token id")
        .to_string();
    let state = state(&data).await.expect("state");
    assert_eq!(state.trust.tokens[&id].uses_left, Some(1));
    assert!(!String::from_utf8_lossy(&state.canonical_bytes())
        .contains(token.trim().split('.').nth(3).expect("secret")));
    kommit_ok(&["token", "delete", &id], &data);
    let again = Command::new(kommit_bin())
        .args(["token", "delete", &id, "--data-dir"])
        .arg(&data)
        .output()
        .expect("kommit token delete");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("unknown join token id"));

    // 1. Bodies of 100 MiB: refused with 413 before they are read.
    let tcp = tokio::net::TcpStream::connect(hook_addr)
        .await
        .expect("connect");
    let (status, taken) = huge_body(tcp, &head("/hooks/git", HUNDRED_MIB)).await;
    assert!(status.contains(" 413 "), "webhook: {status}");
    assert!(
        taken < HUNDRED_MIB / 4,
        "webhook read {taken} bytes before refusing"
    );
    let chunked = "POST /hooks/git HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    let tcp = tokio::net::TcpStream::connect(hook_addr)
        .await
        .expect("connect");
    let (status, taken) = huge_body(tcp, chunked).await;
    assert!(status.contains(" 413 "), "chunked webhook body: {status}");
    assert!(
        taken < HUNDRED_MIB / 4,
        "chunked: read {taken} bytes before refusing"
    );
    let unix = tokio::net::UnixStream::connect(data.join("kommit.sock"))
        .await
        .expect("socket");
    let (status, _) = huge_body(unix, &head("/propose", HUNDRED_MIB)).await;
    assert!(status.contains(" 413 "), "local api: {status}");
    let (status, _) = huge_body(join_stream(listen, &ca).await, &head("/join", HUNDRED_MIB)).await;
    assert!(status.contains(" 413 "), "join endpoint: {status}");
    commits.push(push(1));
    assert!(hook(&normal, hook_addr).await.status().is_success());
    wait_adopted(&data, &commits[1], &log).await;

    // 2. 10,000 connections at once to the webhook and to the cluster port.
    let (open, held_hook) = open_many(hook_addr).await;
    assert!(
        open <= 32,
        "{open} webhook connections from one address stayed open"
    );
    let (open, held_cluster) = open_many(listen).await;
    assert!(
        open <= 256,
        "{open} cluster-port connections from one address stayed open"
    );
    commits.push(push(2));
    let r = hook(&normal, hook_addr).await;
    assert!(
        r.status().is_success(),
        "the normal client during the connection flood: {r:?}"
    );
    wait_adopted(&data, &commits[2], &log).await;
    let own = NodeIdentity::load(&data.join("tls")).expect("identity");
    let member = reqwest::Client::builder()
        .tls_backend_preconfigured(own.client_config().expect("cfg"))
        .local_address(NORMAL)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let r = member
        .get(format!("https://{listen}/cluster/status"))
        .send()
        .await
        .expect("a member reaches the cluster port during the flood");
    assert!(r.status().is_success());
    drop((held_hook, held_cluster));

    // 3. Request floods: 429 with Retry-After, and the normal client still gets through.
    let flood = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut too_many = 0;
    for _ in 0..200 {
        let r = hook(&flood, hook_addr).await;
        if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            assert!(
                r.headers().contains_key("retry-after"),
                "429 names when to retry"
            );
            let body = r.text().await.unwrap_or_default();
            assert!(body.contains("too many requests to the webhook"), "{body}");
            too_many += 1;
        }
    }
    assert!(
        too_many >= 150,
        "webhook flood: only {too_many} of 200 answered 429"
    );
    let joiner = reqwest::Client::builder()
        .tls_backend_preconfigured(join_client_config(&ca_hash(&ca).expect("hash")).expect("cfg"))
        .resolve(JOIN_SERVER_NAME, listen)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut too_many = 0;
    for _ in 0..100 {
        let r = joiner
            .post(format!("https://{JOIN_SERVER_NAME}:{}/join", listen.port()))
            .json(&serde_json::json!({"token": "x", "name": "x", "address": "x", "csr_pem": "x"}))
            .send()
            .await
            .expect("join call");
        too_many += usize::from(r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(
        too_many >= 80,
        "join flood: only {too_many} of 100 answered 429"
    );
    let local = local_client(&data).expect("local client");
    let mut too_many = 0;
    for _ in 0..1000 {
        let r = local
            .get("http://localhost/status")
            .send()
            .await
            .expect("status");
        too_many += usize::from(r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(too_many > 0, "local api flood: no 429 in 1000 requests");
    commits.push(push(3));
    assert!(
        hook(&normal, hook_addr).await.status().is_success(),
        "normal client after the flood"
    );
    wait_adopted(&data, &commits[3], &log).await;

    let rss_after = vm_rss_kib(pid);
    eprintln!("daemon VmRSS: {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the daemon grew from {rss_before} KiB to {rss_after} KiB"
    );
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("too many connections"),
        "the daemon logged the refusals"
    );
}

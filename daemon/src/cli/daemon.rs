//! `kommit daemon`: one cluster node.
//!
//! Today the daemon replicates the cluster state (`ClusterState` over Raft with mTLS), runs
//! liveness (NodeUp/NodeDown, leases) and serves the local API. Later stages
//! plug in here, each as one more task started after the node is up: the git mirror (leader
//! polls, followers fetch the agreed SHA), the node agent (plans and runs this node's pods),
//! the static pod watch (`--static-pods`, [`crate::static_pods`]) and the status writer. The lease's fence hook is [`crate::fence::RuntimeFence`] over the
//! node's container runtime in the same data dir.

use crate::consensus::liveness::LivenessConfig;
use crate::consensus::local::{serve_local, SOCKET};
use crate::consensus::membership::VoterPolicy;
use crate::consensus::node::{Node, NodeConfig, Timing};
use anyhow::Context;
use kommit_reconcilers::ClusterState;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `kommit daemon`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Start a new cluster with this node as its only voter (first start only).
    #[arg(long, conflicts_with = "join")]
    pub bootstrap: bool,
    /// Join the cluster through this node's cluster address (first start only).
    #[arg(long, requires = "token_file")]
    pub join: Option<String>,
    /// File holding the join token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Data dir (raft.redb, tls/, kommit.sock).
    #[arg(long, default_value = "/var/lib/kommit")]
    pub data_dir: PathBuf,
    /// Cluster port address to bind.
    #[arg(long, default_value = "0.0.0.0:7946")]
    pub listen: SocketAddr,
    /// Address other nodes dial (default: the listen address).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Node name (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Voters in a small cluster.
    #[arg(long, default_value_t = 3)]
    pub voters: usize,
    /// Voters once the cluster has at least --large-from nodes.
    #[arg(long, default_value_t = 5)]
    pub voters_large: usize,
    /// Node count from which the cluster keeps --voters-large voters.
    #[arg(long, default_value_t = 5)]
    pub large_from: usize,
    /// Snapshot every N applied entries.
    #[arg(long, default_value_t = 1000)]
    pub snapshot_every: u64,
    /// Raft heartbeat interval.
    #[arg(long, default_value_t = 100)]
    pub raft_heartbeat_ms: u64,
    /// Minimum election timeout.
    #[arg(long, default_value_t = 400)]
    pub election_min_ms: u64,
    /// Maximum election timeout.
    #[arg(long, default_value_t = 800)]
    pub election_max_ms: u64,
    /// Liveness heartbeat interval.
    #[arg(long, default_value_t = 500)]
    pub heartbeat_ms: u64,
    /// Lease length (must be shorter than --down-after-ms minus one heartbeat).
    #[arg(long, default_value_t = 2500)]
    pub lease_ms: u64,
    /// Declare a node down after this long without heartbeats.
    #[arg(long, default_value_t = 4000)]
    pub down_after_ms: u64,
    /// Lifetime of the node certificates this node issues and of its own, in days (k3s's
    /// year by default). Holders renew theirs once two thirds have passed.
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub cert_lifetime_days: u64,
    /// Allocatable CPU in millicores (default: the host's cores minus --system-reserved).
    #[arg(long)]
    pub cpu_millis: Option<u64>,
    /// Allocatable memory in bytes (default: the host's memory minus --system-reserved).
    #[arg(long)]
    pub memory_bytes: Option<u64>,
    /// What the host keeps for itself, as the kubelet's flag: `cpu=100m,memory=256Mi`.
    #[arg(long, default_value = "cpu=100m,memory=256Mi")]
    pub system_reserved: String,
    /// Do not run pods on this node (it replicates state and votes only).
    #[arg(long)]
    pub no_agent: bool,
    /// The pod bridge (several nodes on one host each need their own).
    #[arg(long, default_value = "kommit0")]
    pub pod_bridge: String,
    /// The cgroup parent of this node's pods (several nodes on one host each need their own;
    /// `kommit ctr --cgroup-parent` must then name the same).
    #[arg(long, default_value = kommit_agent::node::CGROUP_PARENT)]
    pub cgroup_parent: String,
    /// Where NodePorts and LoadBalancer ports answer, as kube-proxy's flag: the node's
    /// addresses inside these CIDRs (comma-separated). Default: every address of the node
    /// but loopback and the pod bridge's.
    #[arg(long, value_delimiter = ',')]
    pub nodeport_addresses: Vec<ipnet::Ipv4Net>,
    /// Maximum pods.
    #[arg(long, default_value_t = 110)]
    pub pods: u64,
    /// Node label `key=value` (repeatable).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Node taint `key[=value]:Effect` (repeatable).
    #[arg(long = "taint")]
    pub taints: Vec<String>,
    /// The desired-state repository (`file://`, a path, `git://`, `ssh://` or `https://`).
    /// Without it the node replicates state but adopts no commits.
    #[arg(long)]
    pub repo: Option<String>,
    /// The desired-state branch.
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Fetch the repository at least this often (a local repository is also watched).
    #[arg(long, default_value_t = 15_000)]
    pub poll_ms: u64,
    /// Write status to Git at most this often.
    #[arg(long, default_value_t = 5_000)]
    pub status_every_ms: u64,
    /// File holding an https token for the repository (sent as user `x-access-token`).
    #[arg(long, conflicts_with_all = ["repo_ssh_key"])]
    pub repo_token_file: Option<PathBuf>,
    /// Private key for an ssh:// repository.
    #[arg(long)]
    pub repo_ssh_key: Option<PathBuf>,
    /// known_hosts file pinning the ssh server's host key (without it the first key is
    /// accepted and remembered).
    #[arg(long, requires = "repo_ssh_key")]
    pub repo_known_hosts: Option<PathBuf>,
    /// Extra trusted CA certificates (PEM) for an https repository on a private forge.
    #[arg(long)]
    pub repo_ca_file: Option<PathBuf>,
    /// Serve push webhooks on this address (`POST /hooks/git`); each one triggers a fetch.
    #[arg(long)]
    pub webhook_listen: Option<SocketAddr>,
    /// Serve Prometheus metrics on this address (`GET /metrics`).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve the read-only web page on this address (repeatable). On loopback anyone on the
    /// machine may read it; beyond loopback, --http-token-file is required.
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Vec<SocketAddr>,
    /// File holding the bearer token that non-loopback --http-listen addresses ask for (also
    /// accepted as the password of HTTP Basic auth).
    #[arg(long, value_name = "FILE", requires = "http_listen")]
    pub http_token_file: Option<PathBuf>,
    /// File holding the webhook secret (HMAC key for GitHub/Gitea, token for GitLab).
    #[arg(long, requires = "webhook_listen")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Run the Pod manifests (`*.yaml`, `*.yml`) in this node-local directory on this node
    /// alone, like the kubelet's static pods: watched, reported as pods of this node, never
    /// scheduled elsewhere.
    #[arg(long, value_name = "DIR", conflicts_with = "no_agent")]
    pub static_pods: Option<PathBuf>,
    /// The resolver configuration of the node, as the kubelet's flag: pods with
    /// `dnsPolicy: Default` get it, and the cluster DNS forwards names outside the cluster to
    /// its nameservers. Read at start.
    #[arg(long, value_name = "FILE", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
}

/// The node's resolver configuration: a missing default file means no upstream resolver
/// (a warning); an unreadable file given on purpose is an error.
fn host_resolv_conf(path: &std::path::Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && path == std::path::Path::new("/etc/resolv.conf") =>
        {
            tracing::warn!("no /etc/resolv.conf: names outside the cluster will not resolve");
            Ok(String::new())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read --resolv-conf {}", path.display())),
    }
}

fn read_secret(path: &std::path::Path, what: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read {what} {}", path.display()))?;
    let s = s.trim().to_string();
    if s.is_empty() {
        anyhow::bail!("{what} {} is empty", path.display());
    }
    Ok(s)
}

/// The Git side's configuration from the command line (None without `--repo`).
fn git_config(args: &Args) -> anyhow::Result<Option<crate::sync::GitConfig>> {
    use crate::git::mirror::Credentials;
    use std::time::Duration;
    let Some(url) = &args.repo else {
        return Ok(None);
    };
    let mut g = crate::sync::GitConfig::new(url.clone(), args.branch.clone());
    g.poll = Duration::from_millis(args.poll_ms.max(100));
    g.sync.status_every = Duration::from_millis(args.status_every_ms.max(100));
    g.ca_file = args.repo_ca_file.clone();
    g.credentials = match (&args.repo_token_file, &args.repo_ssh_key) {
        (Some(f), _) => Credentials::Token(read_secret(f, "repository token file")?),
        (None, Some(key)) => Credentials::SshKey {
            key: key.clone(),
            known_hosts: args.repo_known_hosts.clone(),
        },
        (None, None) => Credentials::None,
    };
    if let Some(addr) = args.webhook_listen {
        let secret = args
            .webhook_secret_file
            .as_deref()
            .map(|f| read_secret(f, "webhook secret file"))
            .transpose()?;
        if secret.is_none() && !addr.ip().is_loopback() {
            anyhow::bail!(
                "--webhook-listen {addr} is not loopback: give --webhook-secret-file so forged hooks are refused"
            );
        }
        g.webhook = Some((
            addr,
            crate::git::triggers::WebhookConfig {
                secret,
                branch: args.branch.clone(),
            },
        ));
    }
    Ok(Some(g))
}

fn config(args: &Args) -> anyhow::Result<NodeConfig> {
    let name = match &args.node_name {
        Some(n) => n.clone(),
        None => std::fs::read_to_string("/etc/hostname")
            .map(|s| s.trim().to_string())
            .context("no --node-name and cannot read /etc/hostname")?,
    };
    let mut cfg = NodeConfig::new(&name, args.data_dir.clone(), args.listen);
    cfg.advertise = args.advertise.clone();
    cfg.voters = VoterPolicy {
        small: args.voters,
        large: args.voters_large,
        large_from: args.large_from,
    };
    cfg.snapshot_every = args.snapshot_every;
    cfg.timing = Timing {
        heartbeat_ms: args.raft_heartbeat_ms,
        election_min_ms: args.election_min_ms,
        election_max_ms: args.election_max_ms,
    };
    cfg.liveness = LivenessConfig {
        heartbeat_ms: args.heartbeat_ms,
        lease_ms: args.lease_ms,
        down_after_ms: args.down_after_ms,
    };
    cfg.liveness.validate()?;
    cfg.cert_lifetime = Duration::from_secs(args.cert_lifetime_days * 86_400);
    let (cpu, mem) = allocatable(args)?;
    cfg.facts.cpu_millis = cpu;
    cfg.facts.memory_bytes = mem;
    cfg.facts.pods = args.pods;
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        let (k, v) = l
            .split_once('=')
            .with_context(|| format!("label {l:?} is not key=value"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    cfg.facts.labels = labels;
    cfg.facts.taints = args.taints.clone();
    cfg.facts.name = name;
    // Refuse bad facts here, once, rather than in every heartbeat the leader would reject.
    cfg.facts = crate::consensus::cluster::canonical_facts(&cfg.facts)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(cfg)
}

/// Allocatable (millicores, bytes): the flags when given, else the host's capacity minus
/// `--system-reserved`.
fn allocatable(args: &Args) -> anyhow::Result<(u64, u64)> {
    let mut reserved = (0u64, 0u64);
    for part in args
        .system_reserved
        .split(',')
        .filter(|p| !p.trim().is_empty())
    {
        let (k, v) = part
            .split_once('=')
            .with_context(|| format!("--system-reserved {part:?} is not resource=quantity"))?;
        let q = kommit_schemas::model::meta::Quantity::new(v.trim())
            .with_context(|| format!("--system-reserved {k}"))?;
        match k.trim() {
            "cpu" => reserved.0 = q.milli(),
            "memory" => reserved.1 = q.units(),
            other => anyhow::bail!("--system-reserved: unknown resource {other:?} (cpu, memory)"),
        }
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (host_cpu, host_mem) = kommit_agent::node::host_capacity(cpus, &meminfo);
    Ok((
        args.cpu_millis
            .unwrap_or_else(|| host_cpu.saturating_sub(reserved.0)),
        args.memory_bytes
            .unwrap_or_else(|| host_mem.saturating_sub(reserved.1)),
    ))
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    run_with(args, "warn")
}

/// Runs the daemon, logging with `default_filter` unless `RUST_LOG` says otherwise.
pub fn run_with(args: Args, default_filter: &str) -> anyhow::Result<u8> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    kommit_agent::node::check_cgroup_parent(&args.cgroup_parent).map_err(anyhow::Error::msg)?;
    let cfg = config(&args)?;
    let git = git_config(&args)?;
    let rt = tokio::runtime::Runtime::new().context("cannot start runtime")?;
    rt.block_on(async move {
        let fence = Box::new(runtime_fence(
            &cfg.data_dir,
            &args.cgroup_parent,
            &cfg.liveness,
        ));
        let node = if args.bootstrap {
            let now = kommit_schemas::sops::format_rfc3339(
                i64::try_from(crate::consensus::now_ms() / 1000).unwrap_or(i64::MAX),
            );
            crate::cluster_key::ensure(&cfg.data_dir, &now)?;
            Node::<ClusterState>::bootstrap(cfg.clone(), fence).await?
        } else if let Some(addr) = &args.join {
            let path = args
                .token_file
                .as_ref()
                .context("--join needs --token-file")?;
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read token file {}", path.display()))?;
            Node::<ClusterState>::join(cfg.clone(), addr, token.trim(), fence).await?
        } else {
            Node::<ClusterState>::restart(cfg.clone(), fence).await?
        };
        let git = match &git {
            None => None,
            Some(g) => Some(crate::sync::GitSide::start(
                g,
                &cfg.data_dir,
                node.shared(),
            )?),
        };
        let extra = git
            .as_ref()
            .map(crate::sync::GitSide::routes)
            .unwrap_or_default();
        let (agent, services) = if args.no_agent {
            (None, None)
        } else {
            let resolv = host_resolv_conf(&args.resolv_conf)?;
            let agent = start_agent(
                &cfg.data_dir,
                &args.pod_bridge,
                &args.cgroup_parent,
                &resolv,
                node.shared(),
            )?;
            let services = crate::node_services::start(
                node.shared(),
                crate::node_services::Options {
                    bridge: args.pod_bridge.clone(),
                    host_resolv_conf: resolv,
                    nodeport_addresses: args.nodeport_addresses.clone(),
                },
            )
            .context("starting the Service proxy and cluster DNS")?;
            (Some(agent), Some(services))
        };
        let statics = crate::static_pods::start(args.static_pods.clone(), node.shared())?;
        let trim = tokio::spawn(async {
            let mut every = tokio::time::interval(kommit_runtime::alloc::TRIM_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let _ = tokio::task::spawn_blocking(|| {
                    kommit_schemas::schema::release_idle_validators();
                    kommit_runtime::alloc::release_free_memory();
                })
                .await;
            }
        });
        let local = serve_local(node.shared(), &cfg.data_dir.join(SOCKET), extra)?;
        let metrics = match args.metrics_listen {
            None => None,
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the metrics listener {addr}"))?;
                Some(crate::metrics::serve(
                    l,
                    node.shared(),
                    git.as_ref().map(|g| g.writer.clone()),
                ))
            }
        };
        let web = crate::web::start(
            &args.http_listen,
            args.http_token_file.as_deref(),
            crate::web::NodeSource::new(
                node.shared(),
                git.as_ref().map(|g| crate::web::GitView {
                    mirror: g.mirror.clone(),
                    sync: g.state.clone(),
                }),
                cfg.data_dir.clone(),
            ),
        )
        .await?;
        eprintln!(
            "kommit: node {} (id {}) serving cluster port {}",
            cfg.name,
            node.id(),
            node.local_addr()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        local.abort();
        trim.abort();
        statics.stop();
        if let Some(s) = services {
            s.stop().await;
        }
        if let Some(a) = agent {
            // The containers keep running: a restarted daemon adopts them.
            tokio::task::spawn_blocking(move || a.stop()).await.ok();
        }
        if let Some(m) = metrics {
            m.abort();
        }
        for w in web {
            w.abort();
        }
        if let Some(g) = git {
            g.stop().await;
        }
        node.shutdown().await;
        Ok::<u8, anyhow::Error>(0)
    })
}

/// Opens the node's runtime and starts its agent.
fn start_agent(
    data_dir: &std::path::Path,
    bridge: &str,
    cgroup_parent: &str,
    host_resolv_conf: &str,
    shared: std::sync::Arc<crate::consensus::node::Shared<ClusterState>>,
) -> anyhow::Result<crate::node_agent::RunningAgent> {
    kommit_runtime::linux::check_root()
        .context("the node agent runs pods and needs root (or start with --no-agent)")?;
    let helper = std::env::current_exe().context("locating the kommit binary")?;
    let (runtimes, _images) = kommit_agent::node::open(data_dir, helper, bridge, cgroup_parent)?;
    let creds = kommit_agent::node::registry_credentials(data_dir)?;
    let creds: kommit_agent::exec::Credentials = std::sync::Arc::new(move |image: &str| {
        creds.get(kommit_agent::node::registry_of(image)).cloned()
    });
    Ok(crate::node_agent::start(
        shared,
        runtimes,
        creds,
        host_resolv_conf.to_string(),
    )?)
}

/// The fence over this node's runtime (`DATA_DIR/pods`, shared with `kommit ctr` and the
/// node agent). The runtime is opened only when the fence fires: it needs root and the
/// cgroup controllers, which consensus alone does not.
fn runtime_fence(
    data_dir: &std::path::Path,
    cgroup_parent: &str,
    l: &LivenessConfig,
) -> crate::fence::RuntimeFence {
    use std::sync::Arc;
    let data_dir = data_dir.to_path_buf();
    let cgroup_parent = cgroup_parent.to_string();
    let open: crate::fence::OpenRuntime = Box::new(move || {
        let images =
            kommit_runtime::images::ImageStore::open(&data_dir).map_err(|e| e.to_string())?;
        let rt = super::ctr::node_runtime(&data_dir, Arc::new(images), &cgroup_parent)
            .map_err(|e| format!("{e:#}"))?;
        Ok(Arc::new(rt) as Arc<dyn kommit_runtime::ContainerRuntime>)
    });
    let grace = crate::fence::RuntimeFence::grace_for(l.heartbeat_ms, l.lease_ms, l.down_after_ms);
    crate::fence::RuntimeFence::new(open, grace)
}

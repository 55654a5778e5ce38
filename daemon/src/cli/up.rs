//! `kommit up [DIR]`: a one-node development cluster, like `nomad agent -dev`.
//!
//! DIR is either a Git repository (used as the desired-state remote as it is, on its current
//! branch) or a plain directory such as `repo-template/`. A plain directory is committed as a
//! snapshot to a bare repository under the data dir (`origin.git`, branch `main`) on every
//! start, so editing DIR and running `kommit up` again is a new commit; pushing to `origin.git`
//! works too. Then the node bootstraps (or restarts) and runs the whole daemon against it:
//! adoption, placement, notes and the `kommit/status` branch in `origin.git`.

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments of `kommit up`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The desired state: a Git repository, or a directory to snapshot into one.
    #[arg(default_value = "repo-template")]
    pub dir: PathBuf,
    /// Data dir of the development node (its Raft log, mirror, outbox and `origin.git`).
    #[arg(long, default_value = "/tmp/kommit-up")]
    pub data_dir: PathBuf,
    /// Cluster port address (loopback by default: nothing else can join).
    #[arg(long, default_value = "127.0.0.1:7946")]
    pub listen: SocketAddr,
    /// Serve Prometheus metrics on this address.
    #[arg(long, default_value = "127.0.0.1:9946")]
    pub metrics_listen: SocketAddr,
    /// Serve the read-only web page on this address.
    #[arg(long, default_value = "127.0.0.1:8946")]
    pub http_listen: SocketAddr,
    /// Stop and remove the development node's pods instead (after Ctrl-C they keep running,
    /// as after any daemon restart).
    #[arg(long)]
    pub down: bool,
}

fn git(args: &[&str], env: &[(&str, &Path)]) -> anyhow::Result<String> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .env("GIT_AUTHOR_NAME", "kommit up")
        .env("GIT_AUTHOR_EMAIL", "kommit@localhost")
        .env("GIT_COMMITTER_NAME", "kommit up")
        .env("GIT_COMMITTER_EMAIL", "kommit@localhost");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running git {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Commits the contents of `dir` to `refs/heads/main` of the bare repository `origin`
/// (created if missing). Returns the head and whether it is a new commit.
pub fn snapshot(dir: &Path, origin: &Path) -> anyhow::Result<(String, bool)> {
    let o = origin.to_str().context("data dir path is not UTF-8")?;
    let d = dir.to_str().context("directory path is not UTF-8")?;
    if !origin.join("HEAD").exists() {
        git(
            &["init", "--quiet", "--bare", "--initial-branch=main", o],
            &[],
        )?;
    }
    let index = origin.join("kommit-up.index");
    let _ = std::fs::remove_file(&index);
    let env = [("GIT_INDEX_FILE", index.as_path())];
    git(
        &[
            "-C",
            d,
            "--git-dir",
            o,
            "--work-tree",
            d,
            "add",
            "--all",
            ".",
        ],
        &env,
    )?;
    let tree = git(&["--git-dir", o, "write-tree"], &env)?;
    let _ = std::fs::remove_file(&index);
    let parent = git(
        &[
            "--git-dir",
            o,
            "rev-parse",
            "--quiet",
            "--verify",
            "refs/heads/main",
        ],
        &[],
    )
    .ok()
    .filter(|p| !p.is_empty());
    if let Some(p) = &parent {
        if git(
            &["--git-dir", o, "rev-parse", &format!("{p}^{{tree}}")],
            &[],
        )? == tree
        {
            return Ok((p.clone(), false));
        }
    }
    let message = format!("kommit up: snapshot of {}", dir.display());
    let mut args = vec!["--git-dir", o, "commit-tree", &tree, "-m", &message];
    if let Some(p) = &parent {
        args.extend(["-p", p]);
    }
    let commit = git(&args, &[])?;
    let mut update = vec!["--git-dir", o, "update-ref", "refs/heads/main", &commit];
    if let Some(p) = &parent {
        update.push(p);
    }
    git(&update, &[])?;
    Ok((commit, true))
}

#[derive(clap::Parser)]
struct DaemonLine {
    #[command(flatten)]
    args: super::daemon::Args,
}

/// Runs the development node until SIGINT or SIGTERM.
pub fn run(args: Args) -> anyhow::Result<u8> {
    use clap::Parser;
    if args.down {
        return down(&args.data_dir.join("node"));
    }
    if !args.dir.is_dir() {
        bail!("{} is not a directory", args.dir.display());
    }
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // origin.git holds whatever DIR holds, Secrets included.
        std::fs::set_permissions(&args.data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", args.data_dir.display()))?;
    }
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let (url, branch) = if dir.join(".git").exists() {
        let d = dir.to_str().context("directory path is not UTF-8")?;
        let branch = git(&["-C", d, "symbolic-ref", "--short", "HEAD"], &[])
            .unwrap_or_else(|_| "main".into());
        (d.to_string(), branch)
    } else {
        let origin = data_dir.join("origin.git");
        let (head, new) = snapshot(&dir, &origin)?;
        eprintln!(
            "kommit up: {} committed to {} as {head}{}",
            dir.display(),
            origin.display(),
            if new { "" } else { " (unchanged)" }
        );
        (
            origin
                .to_str()
                .context("data dir path is not UTF-8")?
                .to_string(),
            "main".to_string(),
        )
    };
    let node_dir = data_dir.join("node");
    let first = !node_dir.join("raft.redb").exists();
    let node_dir_s = node_dir.to_str().context("data dir path is not UTF-8")?;
    let listen = args.listen.to_string();
    let metrics = args.metrics_listen.to_string();
    let http = args.http_listen.to_string();
    let mut line = vec![
        "daemon",
        "--data-dir",
        node_dir_s,
        "--listen",
        &listen,
        "--node-name",
        "dev",
        "--repo",
        &url,
        "--branch",
        &branch,
        "--poll-ms",
        "2000",
        "--status-every-ms",
        "2000",
        "--metrics-listen",
        &metrics,
        "--http-listen",
        &http,
    ];
    if first {
        line.push("--bootstrap");
    }
    let daemon = DaemonLine::try_parse_from(line)?.args;
    provide_images(&dir, &node_dir)?;
    let watch_dir = node_dir.clone();
    let origin = url.clone();
    std::thread::Builder::new()
        .name("kommit-up-watch".into())
        .spawn(move || watch_until_ready(&watch_dir, &origin))
        .context("starting the readiness watch")?;
    eprintln!(
        "kommit up: one-node cluster \"dev\" on {listen}, desired state {url} (branch {branch})\n\
         kommit up: follow it on http://{http}/, with `kommit status --data-dir {node_dir_s}`, \
         `kommit log {url}` or `git --git-dir {url} log kommit/status`; stop with Ctrl-C"
    );
    super::daemon::run_with(daemon, "warn,kommit_daemon::sync=info")
}

/// `kommit up --down`: every pod the node's agent made, stopped and removed.
fn down(node_dir: &Path) -> anyhow::Result<u8> {
    kommit_runtime::linux::check_root()?;
    if node_dir.join(crate::consensus::local::SOCKET).exists()
        && super::get::fetch_state(node_dir).is_ok()
    {
        bail!(
            "the development node in {} is still running: stop `kommit up` first",
            node_dir.display()
        );
    }
    let helper = std::env::current_exe().context("locating the kommit binary")?;
    let (rt, _) = kommit_agent::node::open(
        node_dir,
        helper,
        kommit_agent::node::BRIDGE,
        kommit_agent::node::CGROUP_PARENT,
    )?;
    let removed = kommit_agent::node::remove_agent_pods(&rt, std::time::Duration::from_secs(10));
    crate::node_services::remove_proxy_rules(kommit_agent::node::BRIDGE)?;
    eprintln!(
        "kommit up: removed {} pods from {}",
        removed.len(),
        node_dir.display()
    );
    Ok(0)
}

/// Images `kommit up` can make itself, without a registry: busybox, from the host's
/// busybox-static (`apt-get install busybox-static`).
fn buildable(image: &str) -> Option<&str> {
    let name = image.strip_prefix("docker.io/").unwrap_or(image);
    let name = name.strip_prefix("library/").unwrap_or(name);
    let (repo, tag) = name.split_once(':').unwrap_or((name, "latest"));
    (repo == "busybox" && !tag.contains('@')).then_some(tag)
}

/// Makes every busybox image the desired state uses and the node's store lacks, as an OCI
/// archive in the node's `images/` directory, which the agent imports like any archive
/// dropped there (as an air-gapped k3s node does).
fn provide_images(dir: &Path, node_dir: &Path) -> anyhow::Result<()> {
    let tree = crate::fstree::read_dir_tree(dir, &kommit_schemas::Limits::default())
        .with_context(|| format!("reading {}", dir.display()))?;
    let Ok(desired) = kommit_schemas::validate(&tree, &kommit_schemas::Limits::default()) else {
        return Ok(()); // the daemon refuses it with diagnostics in the note
    };
    let mut images = std::collections::BTreeSet::new();
    let mut add = |spec: &kommit_schemas::model::pod::PodSpec| {
        for c in spec.containers.iter().chain(spec.init_containers.iter()) {
            images.insert(c.image.as_str().to_string());
        }
    };
    for p in desired.pods.values() {
        add(&p.spec);
    }
    for d in desired.deployments.values() {
        add(&d.spec.template.spec);
    }
    for d in desired.daemon_sets.values() {
        add(&d.spec.template.spec);
    }
    std::fs::create_dir_all(node_dir)?;
    let store = kommit_runtime::images::ImageStore::open(node_dir)
        .with_context(|| format!("opening the image store in {}", node_dir.display()))?;
    let have: Vec<String> = store
        .list_images()?
        .into_iter()
        .flat_map(|i| i.names)
        .collect();
    for image in images {
        let Some(tag) = buildable(&image) else {
            continue;
        };
        let want = kommit_runtime::images::normalize_reference(&image)?;
        if have.contains(&want) {
            continue;
        }
        let archive = node_dir.join("images").join(format!("busybox-{tag}.tar"));
        if archive.exists() {
            continue;
        }
        let tmp = tempdir_in(node_dir)?;
        kommit_runtime::images::busybox::busybox_layout(&tmp, &want)
            .with_context(|| format!("building image {image} from the host's busybox"))?;
        let part = archive.with_extension("tar.part");
        {
            let f = std::fs::File::create(&part)
                .with_context(|| format!("creating {}", part.display()))?;
            let mut b = tar::Builder::new(f);
            b.append_dir_all(".", &tmp)?;
            b.into_inner()?.sync_all()?;
        }
        std::fs::rename(&part, &archive)?;
        let _ = std::fs::remove_dir_all(&tmp);
        eprintln!(
            "kommit up: made image {want} from /bin/busybox as {}",
            archive.display()
        );
    }
    Ok(())
}

fn tempdir_in(dir: &Path) -> anyhow::Result<PathBuf> {
    let p = dir.join(format!("tmp-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p)?;
    Ok(p)
}

/// Polls the node until every pod of the adopted commit is Running and Ready, then says how
/// to reach the app and how to push a change. Progress goes to stderr.
fn watch_until_ready(node_dir: &Path, origin: &str) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(client) = crate::consensus::local::local_client(node_dir) else {
        return;
    };
    let started = std::time::Instant::now();
    let mut last = String::new();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let state = rt.block_on(async {
            let r = client.get("http://localhost/state").send().await.ok()?;
            let b = r.bytes().await.ok()?;
            kommit_reconcilers::ClusterState::from_canonical_bytes(&b).ok()
        });
        let Some(state) = state else { continue };
        if state.commit.is_none() {
            continue;
        }
        let total = state.pods.len();
        let ready = state
            .pods
            .values()
            .filter(|p| p.ready && p.phase == kommit_reconcilers::PodPhase::Running)
            .count();
        let line = format!("{ready}/{total} pods ready");
        if line != last {
            eprintln!("kommit up: {line}");
            last = line;
        }
        if total > 0 && ready == total {
            eprintln!(
                "kommit up: every pod is Running and Ready after {:.1}s",
                started.elapsed().as_secs_f64()
            );
            for p in state.pods.values() {
                let port = p
                    .spec
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.iter())
                    .map(|p| p.container_port.get())
                    .next();
                match (p.pod_ip, port) {
                    (Some(ip), Some(port)) => eprintln!(
                        "  {}/{}  {}  reach it: wget -qO- http://{ip}:{port}/",
                        p.namespace, p.name, ip
                    ),
                    _ => eprintln!("  {}/{}", p.namespace, p.name),
                }
            }
            // Services: their ClusterIP answers on the node too, and pods find them by name.
            for (key, ip) in &state.service_ips {
                let port = state
                    .desired
                    .services
                    .get(key)
                    .and_then(|s| s.spec.ports.first())
                    .map(|p| p.port.get());
                if let (Some(port), Some((ns, name))) = (port, key.split_once('/')) {
                    eprintln!(
                        "  service {key}  {ip}  reach it: wget -qO- http://{ip}:{port}/ (from pods: http://{name}.{ns}:{port}/)"
                    );
                }
            }
            eprintln!(
                "kommit up: change the cluster with: git clone {origin} work && cd work && \
                 (edit, commit) && git push origin HEAD:main\n\
                 kommit up: see it with: kommit get pods --data-dir {}",
                node_dir.display()
            );
            return;
        }
    }
}

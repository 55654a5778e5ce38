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
    ];
    if first {
        line.push("--bootstrap");
    }
    let daemon = DaemonLine::try_parse_from(line)?.args;
    eprintln!(
        "kommit up: one-node cluster \"dev\" on {listen}, desired state {url} (branch {branch})\n\
         kommit up: follow it with `kommit status --data-dir {node_dir_s}`, `kommit log {url}` \
         or `git --git-dir {url} log kommit/status`; stop with Ctrl-C"
    );
    super::daemon::run_with(daemon, "warn,kommit_daemon::sync=info")
}

//! `kommit ctr ...`: the low-level operator CLI over the node runtime, like containerd's `ctr`.
//!
//! Each `kommit ctr run` makes a one-container pod whose id is the `--name`; `exec`, `logs`
//! and `rm` address it by that name. The commands are thin: all behaviour is in
//! `kommit-runtime`.

use anyhow::{bail, Context};
use clap::Subcommand;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kommit_runtime::images::{normalize_reference, ImageStore};
use kommit_runtime::linux::{LinuxConfig, LinuxRuntime};
use kommit_runtime::spec::{ContainerSpec, ContainerState, LogOptions, Mount, PodSpec, Seccomp};
use kommit_runtime::traits::RegistryCredentials;
use kommit_runtime::{ContainerRuntime, Images};

/// The container name used inside `ctr run` pods.
const MAIN: &str = "main";

/// Arguments of `kommit ctr`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory.
    #[arg(long, global = true, default_value = "/var/lib/kommit")]
    pub data_dir: PathBuf,
    /// Cgroup parent of the pods (the daemon's `--cgroup-parent`).
    #[arg(long, global = true, default_value = kommit_agent::node::CGROUP_PARENT)]
    pub cgroup_parent: String,
    #[command(subcommand)]
    /// What to do.
    pub command: Cmd,
}

/// `kommit ctr` subcommands.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Manage images.
    #[command(subcommand)]
    Images(ImagesCmd),
    /// Run a command in a new one-container pod, print its output, exit with its code.
    Run(Box<RunArgs>),
    /// List pods and containers.
    Ps,
    /// Run a command in a running container.
    Exec {
        /// Pod name (from `run --name`).
        name: String,
        /// Command and arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Print a container's logs.
    Logs {
        /// Follow until the container exits.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Pod name.
        name: String,
    },
    /// Stop (SIGTERM, then SIGKILL after 10 s) and remove a pod.
    Rm {
        /// Pod name.
        name: String,
    },
}

/// `kommit ctr images` subcommands.
#[derive(Subcommand, Debug)]
pub enum ImagesCmd {
    /// Import an OCI layout directory, OCI archive or docker-save tarball.
    Import {
        /// File or directory.
        path: PathBuf,
    },
    /// Pull from a registry (credentials from --user/--password or `<data-dir>/registries.json`).
    Pull {
        /// Image reference.
        reference: String,
        /// Registry user.
        #[arg(long)]
        user: Option<String>,
        /// Registry password.
        #[arg(long)]
        password: Option<String>,
    },
    /// List images.
    Ls,
}

/// `kommit ctr run` arguments.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Remove the pod after it exits.
    #[arg(long)]
    pub rm: bool,
    /// Pod name.
    #[arg(long)]
    pub name: Option<String>,
    /// Memory limit (`64Mi`, `1Gi`, `500M`, bytes).
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in cores (`0.5`).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Max processes.
    #[arg(long)]
    pub pids: Option<u64>,
    /// Environment `K=V` (repeatable).
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Pod label `K=V` (repeatable). `kommit.dev/at-most-once=true` makes the node's fence
    /// stop the pod when the node's lease expires.
    #[arg(long = "label", short = 'l')]
    pub labels: Vec<String>,
    /// Capability added to the default set (`SYS_ADMIN` or `CAP_SYS_ADMIN`; repeatable).
    #[arg(long = "cap-add")]
    pub cap_add: Vec<String>,
    /// Capability removed from the default set (`ALL` for every one; repeatable).
    #[arg(long = "cap-drop")]
    pub cap_drop: Vec<String>,
    /// Every capability, no masked paths and no seccomp filter.
    #[arg(long)]
    pub privileged: bool,
    /// `seccomp=unconfined` runs without the default system-call filter (like nerdctl's
    /// `--security-opt`).
    #[arg(long = "security-opt", value_parser = parse_security_opt)]
    pub security_opt: Vec<Seccomp>,
    /// Bind a host path into the container: `HOST:CONTAINER[:ro]` (repeatable).
    #[arg(long = "volume", short = 'v', value_parser = parse_volume)]
    pub volumes: Vec<Mount>,
    /// Image reference.
    pub image: String,
    /// Command and arguments (default: the image's).
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

/// Parse a Kubernetes-style quantity of bytes.
pub fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (u, m) in units {
        if let Some(n) = s.strip_suffix(u) {
            let v: u64 = n
                .parse()
                .with_context(|| format!("invalid quantity {s:?}"))?;
            return v
                .checked_mul(m)
                .with_context(|| format!("quantity {s:?} overflows"));
        }
    }
    s.parse()
        .with_context(|| format!("invalid quantity {s:?} (use e.g. 64Mi)"))
}

fn store(args: &Args) -> anyhow::Result<Arc<ImageStore>> {
    Ok(Arc::new(ImageStore::open(&args.data_dir)?))
}

fn runtime(args: &Args, store: Arc<ImageStore>) -> anyhow::Result<LinuxRuntime> {
    kommit_agent::node::check_cgroup_parent(&args.cgroup_parent).map_err(anyhow::Error::msg)?;
    node_runtime(&args.data_dir, store, &args.cgroup_parent)
}

/// The node's Linux runtime in `data_dir`, shared by `kommit ctr` and the daemon's fence:
/// this binary as the re-exec helper, cgroups under `cgroup_parent` (`kommit` by default).
pub fn node_runtime(
    data_dir: &Path,
    store: Arc<ImageStore>,
    cgroup_parent: &str,
) -> anyhow::Result<LinuxRuntime> {
    let helper = std::env::current_exe().context("locating the kommit binary")?;
    Ok(LinuxRuntime::new(
        LinuxConfig {
            data_dir: data_dir.to_path_buf(),
            helper,
            cgroup_parent: cgroup_parent.into(),
        },
        store,
    )?)
}

fn creds_for(args: &Args, reference: &str) -> anyhow::Result<Option<RegistryCredentials>> {
    let p = args.data_dir.join("registries.json");
    if !p.exists() {
        return Ok(None);
    }
    let all: BTreeMap<String, RegistryCredentials> = serde_json::from_slice(
        &std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?,
    )
    .with_context(|| format!("parsing {}", p.display()))?;
    let host = reference.split('/').next().unwrap_or("");
    Ok(all.get(host).cloned())
}

/// Runs the command and returns its exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    if !matches!(args.command, Cmd::Images(_)) {
        kommit_runtime::linux::check_root()?;
    }
    match &args.command {
        Cmd::Images(ImagesCmd::Import { path }) => {
            let imgs = store(&args)?.import(path)?;
            for i in imgs {
                println!("imported {} {}", i.digest, i.names.join(","));
            }
            Ok(0)
        }
        Cmd::Images(ImagesCmd::Pull {
            reference,
            user,
            password,
        }) => {
            normalize_reference(reference)?;
            let creds = match (user, password) {
                (Some(u), Some(p)) => Some(RegistryCredentials {
                    username: u.clone(),
                    password: p.clone(),
                }),
                (None, None) => creds_for(&args, reference)?,
                _ => bail!("--user and --password go together"),
            };
            let st = store(&args)?;
            let mut progress = |p: &kommit_runtime::traits::PullProgress| {
                eprintln!(
                    "pulling {reference}: layer {}/{} ({} of {} bytes)",
                    p.layers_done, p.layers_total, p.bytes_done, p.bytes_total
                );
            };
            let info = st.pull(reference, creds.as_ref(), &mut progress)?;
            println!("pulled {} {}", info.digest, info.names.join(","));
            Ok(0)
        }
        Cmd::Images(ImagesCmd::Ls) => {
            let st = store(&args)?;
            st.import_dropped()?;
            println!("{:<50} {:<20} {:>10}", "NAME", "DIGEST", "SIZE");
            for i in st.list()? {
                let name = if i.names.is_empty() {
                    "<none>".to_string()
                } else {
                    i.names.join(",")
                };
                println!(
                    "{:<50} {:<20} {:>10}",
                    name,
                    &i.digest[..19.min(i.digest.len())],
                    i.size
                );
            }
            Ok(0)
        }
        Cmd::Run(r) => run_container(&args, r),
        Cmd::Ps => {
            let rt = runtime(&args, store(&args)?)?;
            println!(
                "{:<24} {:<12} {:<30} {:<8} {:>5} {:<10} LABELS",
                "POD", "CONTAINER", "IMAGE", "STATE", "EXIT", "REASON"
            );
            for p in rt.list()? {
                let labels: Vec<String> =
                    p.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let labels = labels.join(",");
                for c in p.containers {
                    println!(
                        "{:<24} {:<12} {:<30} {:<8} {:>5} {:<10} {}",
                        p.id,
                        c.name,
                        c.image,
                        format!("{:?}", c.state),
                        c.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                        c.reason.unwrap_or_default(),
                        labels
                    );
                }
            }
            Ok(0)
        }
        Cmd::Exec { name, cmd } => {
            let rt = runtime(&args, store(&args)?)?;
            let out = rt.exec(name, MAIN, cmd, Duration::from_secs(24 * 3600))?;
            std::io::stdout().write_all(&out.stdout)?;
            std::io::stderr().write_all(&out.stderr)?;
            Ok(u8::try_from(out.exit_code).unwrap_or(1))
        }
        Cmd::Logs { follow, tail, name } => {
            let rt = runtime(&args, store(&args)?)?;
            let mut out = std::io::stdout();
            rt.logs(
                name,
                MAIN,
                &LogOptions {
                    tail: *tail,
                    follow: *follow,
                },
                &mut out,
            )?;
            Ok(0)
        }
        Cmd::Rm { name } => {
            let rt = runtime(&args, store(&args)?)?;
            for c in rt
                .list()?
                .into_iter()
                .filter(|p| p.id == *name)
                .flat_map(|p| p.containers)
            {
                if c.state == ContainerState::Running {
                    rt.stop_container(name, &c.name, Duration::from_secs(10))?;
                }
            }
            rt.remove_pod(name)?;
            println!("removed {name}");
            Ok(0)
        }
    }
}

/// Parse `K=V` as a Kubernetes label: an optional DNS-subdomain prefix and `/`, a name of at
/// most 63 characters, and a value of at most 63 (empty allowed); names and values are
/// alphanumerics with `-`, `_` and `.` inside.
pub fn parse_label(kv: &str) -> anyhow::Result<(&str, &str)> {
    fn segment(s: &str) -> bool {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
    }
    let (k, v) = kv
        .split_once('=')
        .with_context(|| format!("--label {kv:?} is not K=V"))?;
    let (prefix, name) = match k.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(kommit_schemas::model::meta::is_dns1123_subdomain);
    if name.is_empty() || !segment(name) || !prefix_ok {
        anyhow::bail!("--label {kv:?}: invalid label key {k:?}");
    }
    if !segment(v) {
        anyhow::bail!("--label {kv:?}: invalid label value {v:?}");
    }
    Ok((k, v))
}

fn parse_security_opt(s: &str) -> Result<Seccomp, String> {
    match s {
        "seccomp=unconfined" => Ok(Seccomp::Unconfined),
        "seccomp=runtime/default" | "seccomp=RuntimeDefault" => Ok(Seccomp::RuntimeDefault),
        other => Err(format!(
            "unsupported security option {other:?} (known: seccomp=unconfined, seccomp=runtime/default)"
        )),
    }
}

fn parse_volume(s: &str) -> Result<Mount, String> {
    let (host, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:CONTAINER[:ro]"))?;
    let (destination, read_only) = match rest.rsplit_once(':') {
        Some((d, "ro")) => (d, true),
        Some((d, "rw")) => (d, false),
        _ => (rest, false),
    };
    let source = std::path::PathBuf::from(host);
    if !source.is_absolute() || !destination.starts_with('/') {
        return Err(format!("{s:?}: both paths must be absolute"));
    }
    Ok(Mount {
        source,
        destination: destination.to_string(),
        read_only,
    })
}

fn run_container(args: &Args, r: &RunArgs) -> anyhow::Result<u8> {
    normalize_reference(&r.image)?;
    let st = store(args)?;
    st.import_dropped()?;
    let rt = runtime(args, st)?;
    let id = match &r.name {
        Some(n) => n.clone(),
        None => format!(
            "ctr-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ),
    };
    let mut spec = ContainerSpec::new(MAIN, &r.image, &[]);
    spec.command = r.cmd.clone();
    for kv in &r.env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?} is not K=V"))?;
        spec.env.insert(k.to_string(), v.to_string());
    }
    spec.resources.memory_limit = r.memory.as_deref().map(parse_bytes).transpose()?;
    spec.resources.cpu_limit_millis = r.cpus.map(|c| (c * 1000.0).round() as u64);
    spec.resources.pids_max = r.pids;
    spec.security.add_capabilities = r.cap_add.clone();
    spec.security.drop_capabilities = r.cap_drop.clone();
    spec.security.privileged = r.privileged;
    if let Some(seccomp) = r.security_opt.last() {
        spec.security.seccomp = *seccomp;
    }
    spec.mounts = r.volumes.clone();
    let mut pod = PodSpec::new(&id);
    for kv in &r.labels {
        let (k, v) = parse_label(kv)?;
        pod.labels.insert(k.to_string(), v.to_string());
    }
    rt.create_pod(&pod)?;
    let result = (|| -> anyhow::Result<u8> {
        rt.create_container(&id, &spec)?;
        rt.start_container(&id, MAIN)?;
        let mut out = std::io::stdout();
        rt.logs(
            &id,
            MAIN,
            &LogOptions {
                tail: None,
                follow: true,
            },
            &mut out,
        )?;
        let st = rt.wait_container(&id, MAIN, Duration::from_secs(365 * 24 * 3600))?;
        if let Some(reason) = st.reason.as_deref().filter(|r| *r == "OOMKilled") {
            eprintln!("kommit: container {id} {reason}");
        }
        Ok(st
            .exit_code
            .map(|c| u8::try_from(c).unwrap_or(1))
            .unwrap_or(1))
    })();
    if r.rm || result.is_err() {
        rt.remove_pod(&id)?;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for (kv, ok) in [
            ("kommit.dev/at-most-once=true", true),
            ("app=web", true),
            ("app=", true),
            ("a.b_c-d=X.y_z-1", true),
            ("app", false),
            ("=web", false),
            ("/app=web", false),
            ("Bad_Prefix/app=web", false),
            ("app=-web", false),
            ("app=web-", false),
            ("app=has space", false),
            (&format!("{}=v", "k".repeat(64)), false),
            (&format!("k={}", "v".repeat(64)), false),
        ] {
            assert_eq!(parse_label(kv).is_ok(), ok, "{kv}");
        }
        assert_eq!(
            parse_label("kommit.dev/at-most-once=true").ok(),
            Some(("kommit.dev/at-most-once", "true"))
        );
    }

    #[test]
    fn quantities() {
        for (s, want) in [
            ("64Mi", Some(64 << 20)),
            ("1Gi", Some(1 << 30)),
            ("500M", Some(500_000_000)),
            ("4096", Some(4096)),
            ("12x", None),
            ("Mi", None),
        ] {
            assert_eq!(parse_bytes(s).ok(), want, "{s}");
        }
    }
}

//! `kommit logs`, `kommit exec` and `kommit describe pod`: one pod as kubectl shows it. The pod is found in the replicated state (local socket); its containers
//! are read from this node's runtime, in the same data dir as `kommit ctr`.

use super::get::fetch_state;
use super::kube;
use anyhow::{bail, Context};
use kommit_agent::plan::parse_runtime_name;
use kommit_reconcilers::{ClusterState, ContainerState, PodRecord};
use kommit_runtime::spec::LogOptions;
use kommit_runtime::ContainerRuntime;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `kommit logs`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The pod.
    pub pod: String,
    /// The container (default: the pod's only or first container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep printing new lines until the container exits.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous run of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<usize>,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The node's data dir.
    #[arg(long, default_value = "/var/lib/kommit")]
    pub data_dir: PathBuf,
}

/// Arguments of `kommit exec`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// The pod.
    pub pod: String,
    /// The container (default: the first).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Accepted for kubectl compatibility; output is collected, not a terminal.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Accepted for kubectl compatibility.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The node's data dir.
    #[arg(long, default_value = "/var/lib/kommit")]
    pub data_dir: PathBuf,
    /// The command, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub(super) fn find_pod<'a>(
    state: &'a ClusterState,
    ns: &str,
    name: &str,
) -> anyhow::Result<&'a PodRecord> {
    state
        .pods
        .get(&format!("{ns}/{name}"))
        .with_context(|| format!("pod {name:?} not found in namespace {ns:?}"))
}

fn local_runtime(data_dir: &Path) -> anyhow::Result<kommit_runtime::linux::LinuxRuntime> {
    let images = kommit_runtime::images::ImageStore::open(data_dir)?;
    super::ctr::node_runtime(
        data_dir,
        std::sync::Arc::new(images),
        kommit_agent::node::CGROUP_PARENT,
    )
}

/// The runtime container of `container` in the pod: its latest run, or the one before.
fn runtime_container(
    rt: &dyn ContainerRuntime,
    p: &PodRecord,
    container: Option<&str>,
    previous: bool,
) -> anyhow::Result<(String, String)> {
    let name = match container {
        Some(c) => c.to_string(),
        None => p
            .spec
            .containers
            .first()
            .map(|c| c.name.as_str().to_string())
            .context("the pod has no containers")?,
    };
    let sandbox = kommit_agent::translate::sandbox_id(&p.namespace, &p.name, &p.uid);
    let pods = rt.list()?;
    let Some(sb) = pods.iter().find(|s| s.id == sandbox) else {
        bail!(
            "pod {}/{} does not run on this node (it is bound to {})",
            p.namespace,
            p.name,
            p.node.as_deref().unwrap_or("no node")
        );
    };
    let mut attempts: Vec<(u32, &str)> = sb
        .containers
        .iter()
        .filter_map(|c| {
            let (n, a) = parse_runtime_name(&c.name)?;
            (n == name).then_some((a, c.name.as_str()))
        })
        .collect();
    attempts.sort();
    let pick = if previous {
        attempts.len().checked_sub(2).map(|i| attempts[i].1)
    } else {
        attempts.last().map(|a| a.1)
    };
    match pick {
        Some(r) => Ok((sandbox, r.to_string())),
        None if previous => bail!(
            "previous terminated container {name:?} in pod {:?} not found",
            p.name
        ),
        None => bail!("container {name:?} in pod {:?} has not started", p.name),
    }
}

/// Runs `kommit logs`.
pub fn logs(args: LogsArgs) -> anyhow::Result<u8> {
    kommit_runtime::linux::check_root()?;
    let state = fetch_state(&args.data_dir)?;
    let p = find_pod(&state, &args.namespace, &args.pod)?;
    let rt = local_runtime(&args.data_dir)?;
    let (sandbox, rname) = runtime_container(&rt, p, args.container.as_deref(), args.previous)?;
    let mut out = std::io::stdout();
    rt.logs(
        &sandbox,
        &rname,
        &LogOptions {
            tail: args.tail,
            follow: args.follow,
        },
        &mut out,
    )?;
    Ok(0)
}

/// The last `lines` lines of each container's current run of `p`, from this node's runtime
/// in `data_dir` (what `kommit logs --tail` prints), or why there are none: the web page's
/// pod logs.
pub fn tail_logs(
    data_dir: &Path,
    p: &PodRecord,
    lines: usize,
) -> std::collections::BTreeMap<String, Result<String, String>> {
    let rt = local_runtime(data_dir).map_err(|e| format!("{e:#}"));
    p.spec
        .containers
        .iter()
        .map(|c| {
            let name = c.name.as_str();
            let text = rt.as_ref().map_err(Clone::clone).and_then(|rt| {
                let (sandbox, rname) =
                    runtime_container(rt, p, Some(name), false).map_err(|e| format!("{e:#}"))?;
                let mut out = Vec::new();
                let opts = LogOptions {
                    tail: Some(lines),
                    follow: false,
                };
                rt.logs(&sandbox, &rname, &opts, &mut out)
                    .map_err(|e| e.to_string())?;
                Ok(String::from_utf8_lossy(&out).into_owned())
            });
            (name.to_string(), text)
        })
        .collect()
}

/// Runs `kommit exec`.
pub fn exec(args: ExecArgs) -> anyhow::Result<u8> {
    kommit_runtime::linux::check_root()?;
    let state = fetch_state(&args.data_dir)?;
    let p = find_pod(&state, &args.namespace, &args.pod)?;
    let rt = local_runtime(&args.data_dir)?;
    let (sandbox, rname) = runtime_container(&rt, p, args.container.as_deref(), false)?;
    let out = rt.exec(
        &sandbox,
        &rname,
        &args.command,
        Duration::from_secs(24 * 3600),
    )?;
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    Ok(u8::try_from(out.exit_code).unwrap_or(1))
}

fn state_line(s: &ContainerState) -> String {
    match s {
        ContainerState::Waiting { reason, message } => match message {
            Some(m) => format!("Waiting\n      Reason:       {reason}\n      Message:      {m}"),
            None => format!("Waiting\n      Reason:       {reason}"),
        },
        ContainerState::Running { started_at } => {
            format!("Running\n      Started:      {}", kube::time(*started_at))
        }
        ContainerState::Terminated {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => format!(
            "Terminated\n      Reason:       {reason}\n      Exit Code:    {exit_code}\n      Started:      {}\n      Finished:     {}",
            started_at.map_or("-".into(), kube::time),
            finished_at.map_or("-".into(), kube::time)
        ),
    }
}

/// `kommit describe pod` as text. Pure.
pub fn describe_pod(state: &ClusterState, p: &PodRecord) -> String {
    let v = kube::pod(state, p);
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<16}{v}\n"));
    line("Name:", p.name.clone());
    line("Namespace:", p.namespace.clone());
    line("Node:", p.node.clone().unwrap_or_else(|| "<none>".into()));
    line(
        "Start Time:",
        p.start_time.map_or("<none>".into(), kube::time),
    );
    line(
        "Labels:",
        p.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    line(
        "Status:",
        v["status"]["phase"].as_str().unwrap_or("").into(),
    );
    if let Some((r, m)) = &p.node_message {
        line("Reason:", r.clone());
        line("Message:", m.clone());
    }
    line("IP:", p.pod_ip.map_or("<none>".into(), |i| i.to_string()));
    line(
        "Controlled By:",
        match &p.owner {
            kommit_reconcilers::Owner::Pod(_) => "<none>".into(),
            kommit_reconcilers::Owner::Static(node) => format!("Node/{node}"),
            o => o.id(),
        },
    );
    let mut out = s;
    for (title, list) in [
        ("Init Containers:", &p.init_containers),
        ("Containers:", &p.containers),
    ] {
        if list.is_empty() {
            continue;
        }
        out.push_str(title);
        out.push('\n');
        for c in list {
            out.push_str(&format!("  {}:\n    Image:        {}\n", c.name, c.image));
            if let Some(st) = &c.state {
                out.push_str(&format!("    State:        {}\n", state_line(st)));
            }
            if let Some(st) = &c.last_state {
                out.push_str(&format!("    Last State:   {}\n", state_line(st)));
            }
            out.push_str(&format!(
                "    Ready:        {}\n    Restart Count:  {}\n",
                if c.ready { "True" } else { "False" },
                c.restarts
            ));
        }
    }
    out.push_str("Conditions:\n  Type              Status\n");
    for c in v["status"]["conditions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<18}{}\n",
            c["type"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or("")
        ));
    }
    out.push_str("Events:\n");
    if p.events.is_empty() && p.reason.is_none() {
        out.push_str("  <none>\n");
    } else {
        out.push_str("  Type     Reason            At                    Message\n");
        if let Some(r) = &p.reason {
            out.push_str(&format!(
                "  Warning  FailedScheduling  -                     {r}\n"
            ));
        }
        for e in &p.events {
            let count = if e.count > 1 {
                format!(" (x{})", e.count)
            } else {
                String::new()
            };
            out.push_str(&format!(
                "  {:<8} {:<17} {:<21} {}{count}\n",
                format!("{:?}", e.kind),
                e.reason,
                kube::time(e.at),
                e.message
            ));
        }
    }
    out
}

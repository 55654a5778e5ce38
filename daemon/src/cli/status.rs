//! `kommit status`: the cluster as the local node holds it (the replicated state, read through
//! the local API socket): the commit in force, nodes, and every pod with its node, phase and,
//! for pending pods, the scheduler's reason. Like `kubectl get nodes,pods -A -o wide`.

use crate::consensus::local::local_client;
use anyhow::Context;
use kommit_reconcilers::ClusterState;
use std::fmt::Write;

/// Arguments of `kommit status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The local daemon's data dir.
    #[arg(long, default_value = "/var/lib/kommit")]
    pub data_dir: std::path::PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables.
    Text,
    /// `{"sync": ..., "state": ...}`: the Git side and the whole replicated state.
    Json,
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Renders the Git side's state as text. Pure.
pub fn render_sync(s: &crate::sync::SyncState) -> String {
    let short = |c: &Option<String>| {
        c.as_deref()
            .map(|c| c.chars().take(12).collect::<String>())
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "repository {} (branch {}): head {}, {} fetches, {} status writes queued\n",
        s.repo,
        s.branch,
        short(&s.head),
        s.fetches,
        s.outbox
    );
    if let Some(e) = &s.fetch_error {
        out.push_str(&format!("fetch error: {e}\n"));
    }
    if let Some(e) = &s.last_error {
        out.push_str(&format!("sync error: {e}\n"));
    }
    out
}

/// Renders the state as text. Pure.
pub fn render(s: &ClusterState) -> String {
    let mut out = match &s.commit {
        Some(c) => format!(
            "commit {c} adopted at {}\n\n",
            crate::git::time::Timestamp((s.adopted_at.unwrap_or(0) / 1000) as i64)
        ),
        None => "no commit adopted yet\n\n".to_string(),
    };
    let mut nodes = vec![["NODE", "STATUS", "PODS", "POD CIDR", "ADDRESS"]
        .map(String::from)
        .to_vec()];
    for (name, n) in &s.nodes {
        let status = match (n.ready, n.drained) {
            (true, false) => "Ready",
            (true, true) => "Ready,SchedulingDisabled",
            (false, false) => "NotReady",
            (false, true) => "NotReady,SchedulingDisabled",
        };
        nodes.push(vec![
            name.clone(),
            status.into(),
            s.pods_on_node(name).count().to_string(),
            n.pod_cidr
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            n.info.address.clone(),
        ]);
    }
    out.push_str(&table(&nodes));
    for (name, n) in &s.nodes {
        for (pod, why) in &n.drain_waits {
            out.push_str(&format!("node {name}: waiting to evict pod {pod}: {why}\n"));
        }
    }
    out.push('\n');
    let mut pods = vec![
        ["POD", "NODE", "PHASE", "READY", "RESTARTS", "IP", "REASON"]
            .map(String::from)
            .to_vec(),
    ];
    for (key, p) in &s.pods {
        pods.push(vec![
            key.clone(),
            p.node.clone().unwrap_or_else(|| "-".into()),
            format!("{:?}", p.phase),
            p.ready.to_string(),
            p.restarts.to_string(),
            p.pod_ip
                .map(|ip| ip.to_string())
                .unwrap_or_else(|| "-".into()),
            p.reason.clone().unwrap_or_default(),
        ]);
    }
    if s.pods.is_empty() {
        out.push_str("no pods\n");
    } else {
        out.push_str(&table(&pods));
    }
    out
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start runtime")?;
    let (bytes, sync) = rt.block_on(async {
        let client = local_client(&args.data_dir).context("local api client")?;
        let resp = client
            .get("http://localhost/state")
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the daemon at {}",
                    args.data_dir
                        .join(crate::consensus::local::SOCKET)
                        .display()
                )
            })?;
        anyhow::ensure!(
            resp.status().is_success(),
            "daemon answered {}",
            resp.status()
        );
        let bytes = resp.bytes().await?;
        // A daemon without --repo has no /sync.
        let sync = match client.get("http://localhost/sync").send().await {
            Ok(r) if r.status().is_success() => r.json::<crate::sync::SyncState>().await.ok(),
            _ => None,
        };
        Ok::<_, anyhow::Error>((bytes, sync))
    })?;
    let state = ClusterState::from_canonical_bytes(&bytes).context("reading the cluster state")?;
    match args.format {
        Format::Text => {
            if let Some(s) = &sync {
                print!("{}", render_sync(s));
            }
            print!("{}", render(&state));
        }
        Format::Json => {
            let doc = serde_json::json!({ "sync": sync, "state": state });
            println!("{doc}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kommit_reconcilers::Entry;

    #[test]
    fn renders_nodes_and_pods_with_pending_reasons() {
        use crate::testutil::{node, template_state};
        assert!(render(&ClusterState::new()).starts_with("no commit adopted yet"));
        let mut s = template_state(&[node("tiny", 1, 1 << 20)], 'a');
        s.apply(
            &Entry::NodeDrain {
                node: "tiny".into(),
            },
            3,
        );
        let text = render(&s);
        assert!(
            text.contains(&format!("commit {} adopted", "a".repeat(40))),
            "{text}"
        );
        assert!(text.contains("tiny  Ready,SchedulingDisabled  0"), "{text}");
        // Both hello pods are pending, with the scheduler's reason.
        let pending: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("default/hello"))
            .collect();
        assert_eq!(pending.len(), 2, "{text}");
        assert!(
            pending
                .iter()
                .all(|l| l.contains(" - ") && l.contains("0/1 nodes")),
            "{text}"
        );
    }
}

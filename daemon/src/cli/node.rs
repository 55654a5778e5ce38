//! `kommit node drain|uncordon|remove NAME`: the only imperative commands,
//! recorded as Raft entries through the local API socket. `drain` then follows the
//! evictions (blocking state queries) and prints each pod evicted and each one that waits,
//! with the Deployment or PodDisruptionBudget that holds it.

use crate::consensus::local::{local_client, NodeName};
use anyhow::Context;
use kommit_reconcilers::{ClusterState, Owner, PodPhase};
use std::collections::{BTreeMap, BTreeSet};

/// `kommit node ...`.
#[derive(clap::Subcommand, Debug)]
pub enum Args {
    /// Mark a node drained: no new pods, running ones move away as their Deployments'
    /// `maxUnavailable` and PodDisruptionBudgets allow. Follows the evictions until the node
    /// is empty, saying which budget holds a pod that waits.
    Drain {
        /// Node name.
        name: String,
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
        /// Return once the node is marked, without following the evictions.
        #[arg(long)]
        no_wait: bool,
        /// Give up following after this many seconds (exit 1; the drain goes on). 0 waits
        /// as long as it takes, as `kubectl drain`.
        #[arg(long, default_value_t = 0)]
        timeout: u64,
    },
    /// Let a drained node take pods again (as `kubectl uncordon`).
    Uncordon {
        /// Node name.
        name: String,
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
    },
    /// Remove a node from the cluster and the Raft membership, and revoke its certificates
    /// (every node refuses them on the cluster port from then on).
    Remove {
        /// Node name.
        name: String,
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
    },
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let (path, name, data_dir, follow) = match args {
        Args::Drain {
            name,
            data_dir,
            no_wait,
            timeout,
        } => ("/node/drain", name, data_dir, (!no_wait).then_some(timeout)),
        Args::Uncordon { name, data_dir } => ("/node/uncordon", name, data_dir, None),
        Args::Remove { name, data_dir } => ("/node/remove", name, data_dir, None),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start runtime")?;
    let code = rt.block_on(async {
        let client = local_client(&data_dir).context("local api client")?;
        let resp = client
            .post(format!("http://localhost{path}"))
            .json(&NodeName { name: name.clone() })
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the daemon at {}",
                    data_dir.join(crate::consensus::local::SOCKET).display()
                )
            })?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        if ok {
            println!("{text}");
            Ok::<u8, anyhow::Error>(0)
        } else {
            eprintln!("kommit: error: {text}");
            Ok(1)
        }
    })?;
    drop(rt);
    match follow {
        Some(timeout) if code == 0 => follow_drain(&data_dir, &name, timeout),
        _ => Ok(code),
    }
}

/// Where a drain stands: the pods still to leave the node and the waits it records.
#[derive(Debug, Default, PartialEq)]
pub struct DrainProgress {
    /// Pods that must still leave, `namespace/name`.
    pub left: BTreeSet<String>,
    /// Pods whose eviction waits, with the budget holding each.
    pub waits: BTreeMap<String, String>,
    /// The node is no longer drained (uncordoned) or no longer known.
    pub abandoned: bool,
}

/// The drain's progress on `node` in `state`. Pure.
pub fn drain_progress(state: &ClusterState, node: &str) -> DrainProgress {
    let Some(n) = state.nodes.get(node) else {
        return DrainProgress {
            abandoned: true,
            ..DrainProgress::default()
        };
    };
    let left = state
        .pods_on_node(node)
        .filter(|p| !matches!(p.owner, Owner::DaemonSet(_) | Owner::Static(_)))
        .filter(|p| {
            !(matches!(p.owner, Owner::Job(_))
                && matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
        })
        .map(|p| p.key())
        .collect();
    DrainProgress {
        left,
        waits: n.drain_waits.clone(),
        abandoned: !n.drained,
    }
}

/// The lines a drain prints going from `before` to `now`: each pod evicted, each new or
/// changed wait. Pure.
pub fn drain_lines(before: &DrainProgress, now: &DrainProgress) -> Vec<String> {
    let mut out = Vec::new();
    for p in before.left.difference(&now.left) {
        out.push(format!("evicted pod {p}"));
    }
    for (p, why) in &now.waits {
        if before.waits.get(p) != Some(why) {
            out.push(format!("waiting to evict pod {p}: {why}"));
        }
    }
    out
}

/// Follows the drain of `node` through the local API's blocking state queries until the
/// node holds no pod that must leave.
fn follow_drain(data_dir: &std::path::Path, node: &str, timeout: u64) -> anyhow::Result<u8> {
    let start = std::time::Instant::now();
    let mut index = 0;
    let mut before = DrainProgress::default();
    let mut first = true;
    let mut seen_drained = false;
    loop {
        let (at, state) =
            crate::cli::get::fetch_state_after(data_dir, index, std::time::Duration::from_secs(5))?;
        let now = drain_progress(&state, node);
        // This node may not have applied the drain yet: wait for it to.
        if !seen_drained && now.abandoned {
            if timeout > 0 && start.elapsed().as_secs() >= timeout {
                eprintln!("kommit: error: node {node} is not drained here after {timeout} s");
                return Ok(1);
            }
            index = at;
            continue;
        }
        seen_drained = true;
        if first {
            // Pods that were on the node when following began.
            before.left = now.left.clone();
            first = false;
        }
        for l in drain_lines(&before, &now) {
            println!("{l}");
        }
        if now.abandoned {
            eprintln!("kommit: error: node {node} is no longer drained (uncordoned or removed)");
            return Ok(1);
        }
        if now.left.is_empty() {
            println!("node {node} drained: no pod left to evict");
            return Ok(0);
        }
        if timeout > 0 && start.elapsed().as_secs() >= timeout {
            eprintln!(
                "kommit: error: node {node} still holds {} pod(s) after {timeout} s; the drain goes on",
                now.left.len()
            );
            return Ok(1);
        }
        before = now;
        index = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_lines_say_what_left_and_what_waits() {
        let before = DrainProgress {
            left: ["a/x", "a/y", "a/z"].map(String::from).into(),
            waits: [("a/y".to_string(), "Deployment a/web needs 2".to_string())].into(),
            abandoned: false,
        };
        let now = DrainProgress {
            left: ["a/y", "a/z"].map(String::from).into(),
            waits: [
                ("a/y".to_string(), "Deployment a/web needs 2".to_string()),
                (
                    "a/z".to_string(),
                    "PodDisruptionBudget a/pdb needs 1".to_string(),
                ),
            ]
            .into(),
            abandoned: false,
        };
        assert_eq!(
            drain_lines(&before, &now),
            [
                "evicted pod a/x",
                "waiting to evict pod a/z: PodDisruptionBudget a/pdb needs 1"
            ]
        );
        assert!(drain_lines(&now, &now).is_empty());
    }
}

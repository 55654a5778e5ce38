//! `kommit plan PATH --nodes NODES.yaml [--format json]`: where would this commit land?
//!
//! It validates the repository at PATH, builds a fresh [`ClusterState`] from a node
//! inventory, adopts the tree, reports every bound pod ready until nothing changes (what a
//! fresh, healthy cluster would do), and prints pod -> node, with the scheduler's reason for
//! every pod left Pending. It runs the very `ClusterState::apply` the cluster runs, so the
//! answer is the cluster's answer. The output does not depend on the inventory's order.
//!
//! The inventory file:
//!
//! ```yaml
//! nodes:
//!   - name: node-a            # required, unique
//!     address: 10.0.0.11      # optional
//!     cpu: "4"                # allocatable cpu, a Kubernetes quantity ("4", "3500m")
//!     memory: 8Gi             # allocatable memory, a Kubernetes quantity
//!     pods: 110               # optional, default 110
//!     labels: {zone: a}       # optional
//!     taints:                 # optional
//!       - {key: dedicated, value: db, effect: NoSchedule}
//! ```

use anyhow::Context;
use kommit_reconcilers::{ClusterState, Entry, NodeInfo, PodPhase, PodStatusChange, Taint};
use kommit_schemas::model::meta::Quantity;
use kommit_schemas::model::pod::TaintEffect;
use kommit_schemas::Limits;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Largest inventory file read.
const MAX_INVENTORY_BYTES: u64 = 4 * 1024 * 1024;
/// Most nodes an inventory may list.
const MAX_NODES: usize = 10_000;
/// Rounds of "every pod reports ready" before giving up on convergence.
const MAX_ROUNDS: usize = 64;
/// The timestamp the plan applies entries at (any fixed value: the plan is offline).
const PLAN_EPOCH_MS: u64 = 1_000;

/// Arguments of `kommit plan`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The desired-state repository (a directory).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// The node inventory (YAML, see `kommit plan --help`).
    #[arg(long)]
    pub nodes: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Exit with 3 when any pod stays Pending.
    #[arg(long)]
    pub fail_on_pending: bool,
}

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table: pod, node, IP, or the reason it is Pending.
    Text,
    /// One JSON document.
    Json,
}

/// The inventory file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// The nodes.
    pub nodes: Vec<InventoryNode>,
}

/// One node of the inventory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryNode {
    /// Name.
    pub name: String,
    /// Address (informational).
    #[serde(default)]
    pub address: Option<String>,
    /// Allocatable cpu.
    pub cpu: Quantity,
    /// Allocatable memory.
    pub memory: Quantity,
    /// Most pods (default 110).
    #[serde(default)]
    pub pods: Option<u32>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints.
    #[serde(default)]
    pub taints: Vec<InventoryTaint>,
}

/// A taint in the inventory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryTaint {
    /// Key.
    pub key: String,
    /// Value.
    #[serde(default)]
    pub value: Option<String>,
    /// NoSchedule, PreferNoSchedule or NoExecute.
    pub effect: TaintEffect,
}

/// Errors reading an inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is too large.
    #[error("{path}: inventory of {size} bytes exceeds the limit of {MAX_INVENTORY_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
    },
    /// The YAML does not describe an inventory.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// A semantic problem (duplicate names, too many nodes).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses inventory text into node facts, sorted by name.
pub fn parse_inventory(path: &str, text: &str) -> Result<Vec<NodeInfo>, InventoryError> {
    let inv: Inventory = serde_saphyr::from_str(text).map_err(|e| InventoryError::Parse {
        path: path.to_owned(),
        message: e
            .to_string()
            .lines()
            .next()
            .unwrap_or("invalid YAML")
            .to_owned(),
    })?;
    let invalid = |message: String| InventoryError::Invalid {
        path: path.to_owned(),
        message,
    };
    if inv.nodes.len() > MAX_NODES {
        return Err(invalid(format!(
            "{} nodes exceed the limit of {MAX_NODES}",
            inv.nodes.len()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for n in inv.nodes {
        if n.name.is_empty() || !seen.insert(n.name.clone()) {
            return Err(invalid(format!(
                "duplicate or empty node name \"{}\"",
                n.name
            )));
        }
        out.push(NodeInfo {
            address: n.address.unwrap_or_default(),
            cpu_millis: n.cpu.milli(),
            memory_bytes: n.memory.units(),
            pods: n.pods.unwrap_or(110),
            labels: n.labels,
            taints: n
                .taints
                .into_iter()
                .map(|t| Taint {
                    key: t.key,
                    value: t.value,
                    effect: t.effect,
                })
                .collect(),
            name: n.name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// One pod's line of the plan.
#[derive(Debug, Serialize)]
pub struct PlannedPod {
    /// `namespace/name`.
    pub pod: String,
    /// The owner, `Kind/namespace/name`.
    pub owner: String,
    /// The node, when placed.
    pub node: Option<String>,
    /// The pod IP, when placed.
    pub ip: Option<String>,
    /// Why it is Pending, when it is.
    pub reason: Option<String>,
}

/// The whole plan.
#[derive(Debug, Serialize)]
pub struct Plan {
    /// The desired-state digest planned.
    pub desired_digest: String,
    /// Pods, sorted by key.
    pub pods: Vec<PlannedPod>,
    /// Each node's pod CIDR.
    pub node_cidrs: BTreeMap<String, Option<String>>,
    /// Each service's ClusterIP.
    pub service_ips: BTreeMap<String, String>,
}

/// Computes the plan for a validated desired state and node facts. Pure.
pub fn plan(desired: &kommit_schemas::DesiredState, nodes: &[NodeInfo]) -> Plan {
    let mut sorted: Vec<&NodeInfo> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut s = ClusterState::new();
    // A fresh cluster: bootstrapped with kommit.yaml (so node CIDRs come from its podCIDR),
    // every node joined, then the commit adopted, so pods see all nodes at once.
    let bootstrap = kommit_schemas::DesiredState {
        config: desired.config.clone(),
        ..Default::default()
    };
    let adopt =
        |commit: &str, parent: Option<&str>, d: &kommit_schemas::DesiredState| Entry::Adopt {
            commit: commit.into(),
            parent: parent.map(Into::into),
            desired: d.clone(),
            digest: d.digest(),
            by: None,
        };
    s.apply(&adopt("bootstrap", None, &bootstrap), PLAN_EPOCH_MS);
    for n in sorted {
        s.apply(&Entry::NodeUp { info: n.clone() }, PLAN_EPOCH_MS);
    }
    s.apply(&adopt("plan", Some("bootstrap"), desired), PLAN_EPOCH_MS);
    for round in 0..MAX_ROUNDS {
        let mut by_node: BTreeMap<String, Vec<PodStatusChange>> = BTreeMap::new();
        for (k, p) in &s.pods {
            if let (Some(n), false) = (&p.node, p.ready) {
                by_node.entry(n.clone()).or_default().push(PodStatusChange {
                    pod: k.clone(),
                    uid: p.uid.clone(),
                    phase: PodPhase::Running,
                    ready: true,
                    containers: Vec::new(),
                    pod_ip: p.pod_ip,
                    ..Default::default()
                });
            }
        }
        if by_node.is_empty() {
            break;
        }
        let at = PLAN_EPOCH_MS + 1 + round as u64;
        for (node, changes) in by_node {
            s.apply(&Entry::PodStatus { node, changes }, at);
        }
    }
    Plan {
        desired_digest: desired.digest(),
        pods: s
            .pods
            .iter()
            .map(|(k, p)| PlannedPod {
                pod: k.clone(),
                owner: p.owner.id(),
                node: p.node.clone(),
                ip: p.pod_ip.map(|ip| ip.to_string()),
                reason: p.reason.clone(),
            })
            .collect(),
        node_cidrs: s
            .nodes
            .iter()
            .map(|(k, n)| (k.clone(), n.pod_cidr.map(|c| c.to_string())))
            .collect(),
        service_ips: s
            .service_ips
            .iter()
            .map(|(k, ip)| (k.clone(), ip.to_string()))
            .collect(),
    }
}

/// Renders a plan.
pub fn render(p: &Plan, format: Format) -> String {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(p).expect("plans are JSON-representable");
            s.push('\n');
            s
        }
        Format::Text => {
            let w = p.pods.iter().map(|x| x.pod.len()).max().unwrap_or(3).max(3);
            let nw = p
                .pods
                .iter()
                .filter_map(|x| x.node.as_ref().map(|n| n.len()))
                .max()
                .unwrap_or(4)
                .max(7);
            let mut out = format!("{:w$}  {:nw$}  IP / REASON\n", "POD", "NODE");
            for x in &p.pods {
                match &x.node {
                    Some(n) => out.push_str(&format!(
                        "{:w$}  {:nw$}  {}\n",
                        x.pod,
                        n,
                        x.ip.as_deref().unwrap_or("-")
                    )),
                    None => out.push_str(&format!(
                        "{:w$}  {:nw$}  {}\n",
                        x.pod,
                        "<none>",
                        x.reason.as_deref().unwrap_or("Pending")
                    )),
                }
            }
            let placed = p.pods.iter().filter(|x| x.node.is_some()).count();
            out.push_str(&format!(
                "{} pods: {} placed, {} pending (desired state {})\n",
                p.pods.len(),
                placed,
                p.pods.len() - placed,
                &p.desired_digest[..12]
            ));
            out
        }
    }
}

fn read_inventory(path: &Path) -> Result<Vec<NodeInfo>, InventoryError> {
    let shown = path.display().to_string();
    let read_err = |source| InventoryError::Read {
        path: shown.clone(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if meta.len() > MAX_INVENTORY_BYTES {
        return Err(InventoryError::TooLarge {
            path: shown,
            size: meta.len(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_err)?;
    parse_inventory(&shown, &text)
}

/// Computes the output and exit code without printing (the tests call this).
pub fn output(args: &Args) -> anyhow::Result<(String, u8)> {
    let limits = Limits::default();
    let tree = crate::fstree::read_dir_tree(&args.path, &limits)
        .with_context(|| format!("reading {}", args.path.display()))?;
    let desired = match kommit_schemas::validate(&tree, &limits) {
        Ok(d) => d,
        Err(diags) => {
            let mut s = String::new();
            for d in &diags {
                s.push_str(&format!("{d}\n"));
            }
            s.push_str(&format!(
                "kommit plan: {} is not valid ({} error(s)); nothing planned\n",
                args.path.display(),
                diags.len()
            ));
            return Ok((s, 1));
        }
    };
    let nodes = read_inventory(&args.nodes)?;
    let p = plan(&desired, &nodes);
    let pending = p.pods.iter().any(|x| x.node.is_none());
    let code = if pending && args.fail_on_pending {
        3
    } else {
        0
    };
    Ok((render(&p, args.format), code))
}

/// Runs the command: 0 planned, 1 invalid repository, 3 pods pending with
/// `--fail-on-pending`.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let (text, code) = output(&args)?;
    if code == 1 {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_parses_and_rejects_bad_input() {
        let ok = "nodes:\n  - name: b\n    cpu: \"2\"\n    memory: 4Gi\n  - name: a\n    cpu: 500m\n    memory: 1Gi\n    pods: 5\n    labels: {zone: x}\n    taints: [{key: k, effect: NoExecute}]\n";
        let n = parse_inventory("inv.yaml", ok).expect("valid");
        assert_eq!(n[0].name, "a");
        assert_eq!(n[0].cpu_millis, 500);
        assert_eq!(n[0].pods, 5);
        assert_eq!(n[0].taints[0].effect, TaintEffect::NoExecute);
        assert_eq!(n[1].memory_bytes, 4 << 30);
        assert_eq!(n[1].pods, 110);
        for bad in [
            "nodes:\n  - name: a\n    cpu: 1\n",
            "nodes:\n  - name: a\n    cpu: 1\n    memory: 1Gi\n    color: red\n",
            "nodes:\n  - {name: a, cpu: 1, memory: 1Gi}\n  - {name: a, cpu: 1, memory: 1Gi}\n",
            "nodes:\n  - {name: a, cpu: lots, memory: 1Gi}\n",
        ] {
            let e = parse_inventory("inv.yaml", bad).expect_err(bad);
            assert!(e.to_string().starts_with("inv.yaml: "), "{e}");
        }
    }
}

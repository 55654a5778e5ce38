//! Fixtures shared by the daemon's unit tests.

use kommit_reconcilers::{ClusterState, Entry, NodeInfo};
use kommit_schemas::DesiredState;

/// repo-template's desired state.
pub fn repo_template() -> DesiredState {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../repo-template");
    let limits = kommit_schemas::Limits::default();
    let tree = crate::fstree::read_dir_tree(&path, &limits).expect("repo-template is readable");
    kommit_schemas::validate(&tree, &limits).expect("repo-template is valid")
}

/// A node with `cpu_millis` and `memory_bytes`, no labels or taints.
pub fn node(name: &str, cpu_millis: u64, memory_bytes: u64) -> NodeInfo {
    NodeInfo {
        name: name.into(),
        address: format!("{name}:7946"),
        cpu_millis,
        memory_bytes,
        pods: 110,
        labels: Default::default(),
        taints: vec![],
    }
}

/// A state where `nodes` joined at time 1 and repo-template was adopted as commit `c` x 40
/// at time 2.
pub fn template_state(nodes: &[NodeInfo], c: char) -> ClusterState {
    let desired = repo_template();
    let mut s = ClusterState::new();
    for n in nodes {
        s.apply(&Entry::NodeUp { info: n.clone() }, 1);
    }
    s.apply(
        &Entry::Adopt {
            commit: c.to_string().repeat(40),
            parent: None,
            digest: desired.digest(),
            desired,
            by: None,
        },
        2,
    );
    s
}

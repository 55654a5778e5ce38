//! Self-fencing: which pods must never run on two nodes at once, and stopping them.
//!
//! When this node's lease expires it can no longer prove that the leader still counts it as
//! up, so a leader may soon declare it down and place its pods elsewhere. Pods that must not
//! run twice (StatefulSet pods and pods marked at-most-once) are stopped first. Which pods
//! those are is read from the runtime itself (the labels [`crate::translate`] put on each
//! sandbox), not from the replicated state: a fenced node's view of the state may be stale,
//! and a daemon restarted while cut off still finds every pod. The daemon's lease hook calls
//! [`fence_pods`]; while the lease stays expired the agent starts none of these pods, and
//! when it is renewed it starts them again without back-off.

use kommit_runtime::spec::{ContainerState, PodStatus};
use kommit_runtime::ContainerRuntime;
use std::collections::BTreeMap;
use std::time::Duration;

/// Sandbox label naming the kind of the pod's controlling owner (`StatefulSet`, `ReplicaSet`…).
pub const OWNER_KIND_LABEL: &str = crate::translate::LABEL_OWNER_KIND;
/// Sandbox label marking a pod that must never run on two nodes at once (`"true"`).
pub const AT_MOST_ONCE_LABEL: &str = crate::translate::LABEL_AT_MOST_ONCE;

/// Whether a pod with these sandbox labels must be stopped when the lease expires.
pub fn must_not_run_twice(labels: &BTreeMap<String, String>) -> bool {
    labels.get(OWNER_KIND_LABEL).map(String::as_str) == Some("StatefulSet")
        || labels.get(AT_MOST_ONCE_LABEL).map(String::as_str) == Some("true")
}

/// What one fencing pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FenceReport {
    /// `(pod, container)` pairs that were running and are now stopped, sorted.
    pub stopped: Vec<(String, String)>,
    /// One line per container that could not be stopped (or the listing error), sorted.
    pub errors: Vec<String>,
}

/// Stops every running container of every pod that must not run twice, all at once (one
/// thread per container, so the whole pass takes about one `grace`). Blocks; never call it
/// on an async worker.
pub fn fence_pods(rt: &dyn ContainerRuntime, grace: Duration) -> FenceReport {
    let pods: Vec<PodStatus> = match rt.list() {
        Ok(p) => p,
        Err(e) => {
            return FenceReport {
                stopped: vec![],
                errors: vec![format!("cannot list pods: {e}")],
            }
        }
    };
    let targets: Vec<(String, String)> = pods
        .iter()
        .filter(|p| must_not_run_twice(&p.labels))
        .flat_map(|p| {
            p.containers
                .iter()
                .filter(|c| c.state == ContainerState::Running)
                .map(|c| (p.id.clone(), c.name.clone()))
        })
        .collect();
    let results: Vec<(String, String, Result<(), String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = targets
            .into_iter()
            .map(|(pod, name)| {
                s.spawn(move || {
                    let r = match rt.stop_container(&pod, &name, grace) {
                        Ok(st) if st.state == ContainerState::Running => {
                            Err("still running after the stop".to_string())
                        }
                        Ok(_) => Ok(()),
                        Err(e) => Err(e.to_string()),
                    };
                    (pod, name, r)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (String::new(), String::new(), Err("stop panicked".into())))
            })
            .collect()
    });
    let mut report = FenceReport::default();
    for (pod, name, r) in results {
        match r {
            Ok(()) => report.stopped.push((pod, name)),
            Err(e) => report
                .errors
                .push(format!("pod {pod} container {name}: {e}")),
        }
    }
    report.stopped.sort();
    report.errors.sort();
    report
}

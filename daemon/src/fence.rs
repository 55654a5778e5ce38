//! Self-fencing over the container runtime: the lease's [`FenceHook`] in the daemon. Which
//! pods to stop and how is the agent's (`kommit_agent::fence`); this is the hook.
//!
//! When this node's lease expires it can no longer prove that the leader still counts it as
//! up, so a leader may soon declare it down and place its pods elsewhere. Pods that must not
//! run twice (StatefulSet pods and pods marked at-most-once) are stopped here first. The
//! liveness timing guarantees the lease expires at least one heartbeat before any leader may
//! propose `NodeDown` (see `consensus::liveness`); the fence grace is derived from that margin
//! so that every such container is dead before its replacement can be scheduled.
//!
//! Which pods must be fenced is read from the runtime itself (the labels the node agent put
//! on each sandbox), not from the replicated state: a fenced node is by definition one whose
//! view of the state may be stale, and a daemon restarted while cut off still finds every pod.

use crate::consensus::liveness::FenceHook;
pub use kommit_agent::fence::{
    fence_pods, must_not_run_twice, FenceReport, AT_MOST_ONCE_LABEL, OWNER_KIND_LABEL,
};
use kommit_runtime::ContainerRuntime;
use std::sync::Arc;
use std::time::Duration;

/// Opens the node's runtime when the fence fires.
pub type OpenRuntime =
    Box<dyn Fn() -> Result<Arc<dyn ContainerRuntime>, String> + Send + Sync + 'static>;

/// The daemon's fence hook: on lease expiry, stops at-most-once pods on a thread of its own.
pub struct RuntimeFence {
    open: Arc<OpenRuntime>,
    grace: Duration,
    done: Option<std::sync::mpsc::Sender<FenceReport>>,
}

impl RuntimeFence {
    /// A fence that opens the runtime with `open` and gives each container `grace` between
    /// SIGTERM and SIGKILL.
    pub fn new(open: OpenRuntime, grace: Duration) -> Self {
        Self {
            open: Arc::new(open),
            grace,
            done: None,
        }
    }

    /// Also send each pass's report to `tx` (tests and metrics).
    pub fn with_reports(mut self, tx: std::sync::mpsc::Sender<FenceReport>) -> Self {
        self.done = Some(tx);
        self
    }

    /// The grace that lets a fence finish before a leader may declare this node down: half
    /// the margin between lease expiry and the earliest `NodeDown`, at most 1 s.
    pub fn grace_for(heartbeat_ms: u64, lease_ms: u64, down_after_ms: u64) -> Duration {
        let margin = down_after_ms.saturating_sub(lease_ms + heartbeat_ms);
        Duration::from_millis((margin / 2).min(1000))
    }
}

impl FenceHook for RuntimeFence {
    fn fence(&self) {
        tracing::warn!("lease expired: fencing (stopping StatefulSet and at-most-once pods)");
        let open = Arc::clone(&self.open);
        let grace = self.grace;
        let done = self.done.clone();
        let spawned = std::thread::Builder::new()
            .name("kommit-fence".into())
            .spawn(move || {
                let report = match open() {
                    Ok(rt) => fence_pods(rt.as_ref(), grace),
                    Err(e) => FenceReport {
                        stopped: vec![],
                        errors: vec![format!("cannot open the runtime: {e}")],
                    },
                };
                for (pod, name) in &report.stopped {
                    tracing::warn!(pod = %pod, container = %name, "fenced: container stopped");
                }
                for e in &report.errors {
                    tracing::error!("fence failed: {e}");
                }
                if let Some(tx) = done {
                    let _ = tx.send(report);
                }
            });
        if let Err(e) = spawned {
            tracing::error!("fence failed: cannot start the fence thread: {e}");
        }
    }

    fn unfence(&self) {
        tracing::info!(
            "lease renewed: unfenced (fenced pods stay stopped until they are started again)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::liveness::Lease;
    use kommit_runtime::fake::FakeNode;
    use kommit_runtime::spec::ContainerState;
    use kommit_runtime::spec::{ContainerSpec, PodSpec};
    use std::time::Instant;

    fn fake_node() -> FakeNode {
        let node = FakeNode::default();
        node.add_image("busybox");
        node
    }

    fn pod(rt: &dyn ContainerRuntime, id: &str, labels: &[(&str, &str)], running: &[&str]) {
        rt.create_pod(&PodSpec::new(id).with_labels(labels.iter().copied()))
            .expect("create pod");
        for c in running {
            rt.create_container(id, &ContainerSpec::new(c, "busybox", &["sleep", "1000"]))
                .expect("create container");
            rt.start_container(id, c).expect("start container");
        }
    }

    #[test]
    fn which_pods_must_not_run_twice() {
        let table: &[(&[(&str, &str)], bool)] = &[
            (&[], false),
            (&[(OWNER_KIND_LABEL, "StatefulSet")], true),
            (&[(OWNER_KIND_LABEL, "ReplicaSet")], false),
            (&[(OWNER_KIND_LABEL, "DaemonSet")], false),
            (&[(AT_MOST_ONCE_LABEL, "true")], true),
            (&[(AT_MOST_ONCE_LABEL, "false")], false),
            (&[(AT_MOST_ONCE_LABEL, "True")], false),
            (
                &[
                    (OWNER_KIND_LABEL, "ReplicaSet"),
                    (AT_MOST_ONCE_LABEL, "true"),
                ],
                true,
            ),
            (&[("app", "StatefulSet")], false),
        ];
        for (labels, want) in table {
            let l = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(must_not_run_twice(&l), *want, "{labels:?}");
        }
    }

    #[test]
    fn fence_stops_only_pods_that_must_not_run_twice() {
        let node = fake_node();
        let rt = node.runtime();
        pod(
            &rt,
            "db-0",
            &[(OWNER_KIND_LABEL, "StatefulSet")],
            &["db", "sidecar"],
        );
        pod(&rt, "lock", &[(AT_MOST_ONCE_LABEL, "true")], &["holder"]);
        pod(&rt, "web-1", &[(OWNER_KIND_LABEL, "ReplicaSet")], &["web"]);
        pod(&rt, "plain", &[], &["c"]);
        pod(&rt, "db-1", &[(OWNER_KIND_LABEL, "StatefulSet")], &[]);
        let report = fence_pods(&rt, Duration::from_millis(10));
        assert_eq!(report.errors, Vec::<String>::new());
        assert_eq!(
            report.stopped,
            vec![
                ("db-0".to_string(), "db".to_string()),
                ("db-0".to_string(), "sidecar".to_string()),
                ("lock".to_string(), "holder".to_string()),
            ]
        );
        let state = |p: &str, c: &str| rt.inspect(p, c).expect("inspect").state;
        assert_eq!(state("db-0", "db"), ContainerState::Exited);
        assert_eq!(state("db-0", "sidecar"), ContainerState::Exited);
        assert_eq!(state("lock", "holder"), ContainerState::Exited);
        assert_eq!(state("web-1", "web"), ContainerState::Running);
        assert_eq!(state("plain", "c"), ContainerState::Running);
        // A second pass finds nothing left to stop.
        assert_eq!(
            fence_pods(&rt, Duration::from_millis(10)),
            FenceReport::default()
        );
    }

    #[test]
    fn fence_reports_failures_and_keeps_going() {
        let node = fake_node();
        let rt = node.runtime();
        pod(&rt, "a", &[(AT_MOST_ONCE_LABEL, "true")], &["x"]);
        pod(&rt, "b", &[(AT_MOST_ONCE_LABEL, "true")], &["y"]);
        node.fail_next("stop_container", 1);
        let report = fence_pods(&rt, Duration::from_millis(10));
        assert_eq!(report.stopped.len(), 1, "{report:?}");
        assert_eq!(report.errors.len(), 1, "{report:?}");
        node.fail_next("list", 1);
        let report = fence_pods(&rt, Duration::from_millis(10));
        assert!(
            report.errors[0].starts_with("cannot list pods"),
            "{report:?}"
        );
    }

    #[test]
    fn expired_lease_fires_the_runtime_fence() {
        let node = fake_node();
        let rt: Arc<dyn ContainerRuntime> = Arc::new(node.runtime());
        pod(
            rt.as_ref(),
            "db-0",
            &[(OWNER_KIND_LABEL, "StatefulSet")],
            &["db"],
        );
        pod(rt.as_ref(), "web", &[], &["web"]);
        let (tx, rx) = std::sync::mpsc::channel();
        let opened = Arc::clone(&rt);
        let fence = RuntimeFence::new(Box::new(move || Ok(Arc::clone(&opened))), Duration::ZERO)
            .with_reports(tx);
        let lease = Lease::new(50, Box::new(fence));
        assert!(!lease.check(Instant::now()), "fresh lease is valid");
        assert!(
            lease.check(Instant::now() + Duration::from_millis(60)),
            "expired"
        );
        let report = rx.recv_timeout(Duration::from_secs(10)).expect("fence ran");
        assert_eq!(report.stopped, vec![("db-0".to_string(), "db".to_string())]);
        assert_eq!(
            rt.inspect("web", "web").expect("web").state,
            ContainerState::Running
        );
        // Checking again while fenced does not fire again.
        assert!(lease.check(Instant::now() + Duration::from_millis(70)));
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
    }

    #[test]
    fn grace_fits_inside_the_margin() {
        let table = [
            ((500, 2500, 4000), 500),
            ((100, 1000, 4000), 1000),
            ((500, 2500, 3100), 50),
            ((500, 3500, 4000), 0),
        ];
        for ((hb, lease, down), want) in table {
            assert_eq!(
                RuntimeFence::grace_for(hb, lease, down),
                Duration::from_millis(want),
                "{hb} {lease} {down}"
            );
        }
    }
}

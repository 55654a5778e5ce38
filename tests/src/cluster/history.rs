//! The history checker of the fault tests (issue 14): a sampler that records, at a fixed
//! interval, which node runs which pod (from each node's runtime records in its data dir:
//! the pod's labels, its containers' last state lines and whether its shim is alive), and a
//! pure [`check`] of that history once the test is over:
//!
//! - no pod that must not run twice (a StatefulSet's, or one annotated
//!   `kommit.dev/at-most-once: "true"`) runs on two nodes in one sampling round;
//! - no Deployment has fewer Running pods than its allowed availability, less the pods it had
//!   on nodes that are down at that moment (a node's pods count as lost from its power-off
//!   until it is back), so only a node loss excuses a drop, and only by what it took;
//! - every node's final state digest is equal ([`check_digests`]).
//!
//! The checker reads no clock and no file: a test can break an invariant on purpose in a
//! hand-made history and watch it fail (the unit tests below do).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Owner kinds whose pods must never run twice.
const AT_MOST_ONCE_KINDS: &[&str] = &["StatefulSet"];

/// One pod seen on one node in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenPod {
    /// `namespace.name` (the sandbox's `kommit.dev/pod` label).
    pub pod: String,
    /// The sandbox's `kommit.dev/owner-kind` label.
    pub owner_kind: String,
    /// Labelled `kommit.dev/at-most-once=true`.
    pub at_most_once: bool,
    /// Its shim is alive and some container's last record says Running.
    pub running: bool,
}

/// What one round saw on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSample {
    /// The node's name.
    pub node: String,
    /// False while the test holds the node powered off (its pods count as lost).
    pub up: bool,
    /// The agent's pods in its runtime.
    pub pods: Vec<SeenPod>,
}

/// One sampling round: every node, read one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// Milliseconds since the sampler started.
    pub at_ms: u64,
    /// Each node's sample.
    pub nodes: Vec<NodeSample>,
}

/// A Deployment's allowed availability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Availability {
    /// Its pods' `namespace.name` prefix (`default.hello-`).
    pub pod_prefix: String,
    /// The least number of its pods Running at any moment (replicas - maxUnavailable).
    pub min_available: usize,
    /// Checked only from this round's time on (once the Deployment first came up).
    pub from_ms: u64,
}

impl SeenPod {
    fn must_not_run_twice(&self) -> bool {
        self.at_most_once || AT_MOST_ONCE_KINDS.contains(&self.owner_kind.as_str())
    }
}

/// Checks a history; `Err` lists every violation (at most 20), each with its round's time.
pub fn check(history: &[Round], deployments: &[Availability]) -> Result<(), String> {
    let mut errors = Vec::new();
    // The pods each node ran in its last round while up: what a power-off takes.
    let mut last_up: BTreeMap<&str, Vec<&SeenPod>> = BTreeMap::new();
    for round in history {
        let mut holders: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for n in &round.nodes {
            if n.up {
                last_up.insert(
                    n.node.as_str(),
                    n.pods.iter().filter(|p| p.running).collect(),
                );
                for p in n
                    .pods
                    .iter()
                    .filter(|p| p.running && p.must_not_run_twice())
                {
                    holders
                        .entry(p.pod.as_str())
                        .or_default()
                        .insert(n.node.as_str());
                }
            }
        }
        for (pod, nodes) in holders.iter().filter(|(_, n)| n.len() > 1) {
            errors.push(format!(
                "{} ms: {pod} runs on {} nodes at once: {nodes:?}",
                round.at_ms,
                nodes.len()
            ));
        }
        for d in deployments.iter().filter(|d| round.at_ms >= d.from_ms) {
            let ours = |p: &SeenPod| p.running && p.pod.starts_with(&d.pod_prefix);
            let running: usize = round
                .nodes
                .iter()
                .filter(|n| n.up)
                .map(|n| n.pods.iter().filter(|p| ours(p)).count())
                .sum();
            let lost: usize = round
                .nodes
                .iter()
                .filter(|n| !n.up)
                .map(|n| {
                    last_up
                        .get(n.node.as_str())
                        .map_or(0, |ps| ps.iter().filter(|p| ours(p)).count())
                })
                .sum();
            let needed = d.min_available.saturating_sub(lost);
            if running < needed {
                errors.push(format!(
                    "{} ms: {}* has {running} pods Running, fewer than {needed} ({} allowed, {lost} lost with down nodes)",
                    round.at_ms, d.pod_prefix, d.min_available
                ));
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let mut out = format!("{} violations in {} rounds:\n", errors.len(), history.len());
    for e in errors.iter().take(20) {
        let _ = writeln!(out, "  {e}");
    }
    Err(out)
}

/// Checks that every node's final state digest is equal: `digests` is (node, digest).
pub fn check_digests(digests: &[(String, String)]) -> Result<(), String> {
    let distinct: BTreeSet<&str> = digests.iter().map(|(_, d)| d.as_str()).collect();
    if distinct.len() <= 1 {
        Ok(())
    } else {
        Err(format!("final digests differ: {digests:?}"))
    }
}

/// The first round (its time) at which `f` holds, if any.
pub fn first_round(history: &[Round], mut f: impl FnMut(&Round) -> bool) -> Option<u64> {
    history.iter().find(|r| f(r)).map(|r| r.at_ms)
}

/// A node the sampler reads: its name, data dir, cgroup parent, and whether it is up.
#[derive(Clone)]
pub struct Watched {
    /// Its name.
    pub node: String,
    /// Its data dir.
    pub data: PathBuf,
    /// Its pods' cgroup parent.
    pub cgroup_parent: String,
    /// Cleared while the test holds the node powered off.
    pub up: Arc<AtomicBool>,
}

/// Samples the nodes every `interval` on a thread of its own until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    rounds: Arc<Mutex<Vec<Round>>>,
    start: Instant,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `nodes`.
    pub fn start(nodes: Vec<Watched>, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let (s, r) = (stop.clone(), rounds.clone());
        let handle = std::thread::spawn(move || {
            let runtimes: Vec<_> = nodes.iter().map(open).collect();
            while !s.load(Ordering::SeqCst) {
                let t = Instant::now();
                let round = Round {
                    at_ms: ms(start.elapsed()),
                    nodes: nodes
                        .iter()
                        .zip(&runtimes)
                        .map(|(w, rt)| NodeSample {
                            node: w.node.clone(),
                            up: w.up.load(Ordering::SeqCst),
                            pods: rt.as_ref().map(seen).unwrap_or_default(),
                        })
                        .collect(),
                };
                r.lock().expect("history lock").push(round);
                std::thread::sleep(interval.saturating_sub(t.elapsed()));
            }
        });
        Sampler {
            stop,
            rounds,
            start,
            handle: Some(handle),
        }
    }

    /// Milliseconds since the sampler started (the rounds' clock).
    pub fn now_ms(&self) -> u64 {
        ms(self.start.elapsed())
    }

    /// The history so far.
    pub fn history(&self) -> Vec<Round> {
        self.rounds.lock().expect("history lock").clone()
    }

    /// Stops sampling and returns the whole history.
    pub fn finish(mut self) -> Vec<Round> {
        self.halt();
        self.history()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.halt();
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn open(w: &Watched) -> Option<kommit_runtime::linux::LinuxRuntime> {
    let images = kommit_runtime::images::ImageStore::open(&w.data).ok()?;
    kommit_runtime::linux::LinuxRuntime::new(
        kommit_runtime::linux::LinuxConfig {
            data_dir: w.data.clone(),
            helper: crate::fixtures::kommit_bin(),
            cgroup_parent: w.cgroup_parent.clone(),
        },
        Arc::new(images),
    )
    .ok()
}

fn seen(rt: &kommit_runtime::linux::LinuxRuntime) -> Vec<SeenPod> {
    use kommit_agent::translate::{LABEL_AT_MOST_ONCE, LABEL_OWNER_KIND, LABEL_POD, LABEL_UID};
    use kommit_runtime::spec::ContainerState;
    use kommit_runtime::ContainerRuntime;
    let Ok(pods) = rt.list() else {
        return Vec::new();
    };
    pods.into_iter()
        .filter(|p| p.labels.contains_key(LABEL_UID))
        .map(|p| SeenPod {
            pod: p.labels.get(LABEL_POD).cloned().unwrap_or_default(),
            owner_kind: p.labels.get(LABEL_OWNER_KIND).cloned().unwrap_or_default(),
            at_most_once: p.labels.get(LABEL_AT_MOST_ONCE).map(String::as_str) == Some("true"),
            running: p.ready
                && p.containers
                    .iter()
                    .any(|c| c.state == ContainerState::Running),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, kind: &str, running: bool) -> SeenPod {
        SeenPod {
            pod: format!("default.{name}"),
            owner_kind: kind.into(),
            at_most_once: false,
            running,
        }
    }

    fn round(at_ms: u64, nodes: &[(&str, bool, Vec<SeenPod>)]) -> Round {
        Round {
            at_ms,
            nodes: nodes
                .iter()
                .map(|(n, up, pods)| NodeSample {
                    node: (*n).into(),
                    up: *up,
                    pods: pods.clone(),
                })
                .collect(),
        }
    }

    fn web(min: usize) -> Vec<Availability> {
        vec![Availability {
            pod_prefix: "default.web-".into(),
            min_available: min,
            from_ms: 0,
        }]
    }

    #[test]
    fn a_clean_move_passes() {
        // db-0 stops on n1 before it starts on n2; web keeps 2 of 2 through a rolling step.
        let h = vec![
            round(
                0,
                &[
                    (
                        "n1",
                        true,
                        vec![
                            pod("db-0", "StatefulSet", true),
                            pod("web-a", "ReplicaSet", true),
                        ],
                    ),
                    ("n2", true, vec![pod("web-b", "ReplicaSet", true)]),
                ],
            ),
            round(
                100,
                &[
                    (
                        "n1",
                        true,
                        vec![
                            pod("db-0", "StatefulSet", false),
                            pod("web-a", "ReplicaSet", true),
                        ],
                    ),
                    (
                        "n2",
                        true,
                        vec![
                            pod("web-b", "ReplicaSet", true),
                            pod("web-c", "ReplicaSet", true),
                        ],
                    ),
                ],
            ),
            round(
                200,
                &[
                    ("n1", true, vec![pod("web-a", "ReplicaSet", false)]),
                    (
                        "n2",
                        true,
                        vec![
                            pod("db-0", "StatefulSet", true),
                            pod("web-b", "ReplicaSet", true),
                            pod("web-c", "ReplicaSet", true),
                        ],
                    ),
                ],
            ),
        ];
        assert_eq!(check(&h, &web(2)), Ok(()));
    }

    #[test]
    fn a_stateful_pod_on_two_nodes_fails() {
        let mut twice = pod("x", "ReplicaSet", true);
        twice.at_most_once = true;
        let h = vec![
            round(
                0,
                &[
                    ("n1", true, vec![pod("db-0", "StatefulSet", true)]),
                    ("n2", true, vec![]),
                ],
            ),
            round(
                100,
                &[
                    (
                        "n1",
                        true,
                        vec![pod("db-0", "StatefulSet", true), twice.clone()],
                    ),
                    ("n2", true, vec![pod("db-0", "StatefulSet", true), twice]),
                ],
            ),
        ];
        let e = check(&h, &[]).expect_err("db-0 and x ran twice");
        assert!(e.contains("100 ms: default.db-0 runs on 2 nodes"), "{e}");
        assert!(e.contains("100 ms: default.x runs on 2 nodes"), "{e}");
        // A copy on a node held down does not count: it is what the fence test looks at
        // through the runtime records of a live node, not a powered-off one.
        let h = vec![round(
            0,
            &[
                ("n1", false, vec![pod("db-0", "StatefulSet", true)]),
                ("n2", true, vec![pod("db-0", "StatefulSet", true)]),
            ],
        )];
        assert_eq!(check(&h, &[]), Ok(()));
    }

    #[test]
    fn a_deployment_below_its_availability_fails_unless_a_node_took_its_pods() {
        let up = |at, n1: Vec<SeenPod>, n2: Vec<SeenPod>| {
            round(at, &[("n1", true, n1), ("n2", true, n2)])
        };
        let h = vec![
            up(
                0,
                vec![pod("web-a", "ReplicaSet", true)],
                vec![pod("web-b", "ReplicaSet", true)],
            ),
            up(
                100,
                vec![pod("web-a", "ReplicaSet", false)],
                vec![pod("web-b", "ReplicaSet", true)],
            ),
        ];
        let e = check(&h, &web(2)).expect_err("web dropped to 1 with every node up");
        assert!(
            e.contains("100 ms: default.web-* has 1 pods Running, fewer than 2"),
            "{e}"
        );
        // n1 powered off with web-a: 1 of 2 is what is left, until the replacement runs.
        let h = vec![
            up(
                0,
                vec![pod("web-a", "ReplicaSet", true)],
                vec![pod("web-b", "ReplicaSet", true)],
            ),
            round(
                100,
                &[
                    ("n1", false, vec![]),
                    ("n2", true, vec![pod("web-b", "ReplicaSet", true)]),
                ],
            ),
            round(
                200,
                &[
                    ("n1", false, vec![]),
                    (
                        "n2",
                        true,
                        vec![
                            pod("web-b", "ReplicaSet", true),
                            pod("web-c", "ReplicaSet", true),
                        ],
                    ),
                ],
            ),
        ];
        assert_eq!(check(&h, &web(2)), Ok(()));
        // But not two lost when the dead node held one.
        let h = vec![
            up(
                0,
                vec![pod("web-a", "ReplicaSet", true)],
                vec![pod("web-b", "ReplicaSet", true)],
            ),
            round(
                100,
                &[
                    ("n1", false, vec![]),
                    ("n2", true, vec![pod("web-b", "ReplicaSet", false)]),
                ],
            ),
        ];
        assert!(check(&h, &web(2)).is_err());
        // Before `from_ms` nothing is required.
        let late = vec![Availability {
            from_ms: 1_000,
            ..web(2)[0].clone()
        }];
        assert_eq!(check(&h, &late), Ok(()));
    }

    #[test]
    fn digests_must_be_equal() {
        let d = |a: &str, b: &str| {
            vec![
                ("n1".to_string(), a.to_string()),
                ("n2".to_string(), b.to_string()),
            ]
        };
        assert_eq!(check_digests(&d("x", "x")), Ok(()));
        assert!(check_digests(&d("x", "y")).is_err());
    }
}

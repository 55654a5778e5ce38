//! `kommit-bench schedule [--pods N] [--nodes M]`: place N pods (default 10,000) on M nodes
//! (default 1,000) from empty, then time the entries that follow on the filled state.
//!
//! The workload mixes Deployments (100 replicas each; some with a zone nodeSelector, some
//! with required podAntiAffinity on the hostname) and DaemonSets (one per node pool), all
//! with cpu and memory requests. Timings:
//! - `apply`: the whole `ClusterState::apply(Adopt)` on a state with every node up:
//!   controllers create the pods, the scheduler places them, IPs and endpoints are set;
//! - `scheduler`: `scheduler::schedule` alone on the same pods;
//! - `settle`: the first entry after the adopt (a Tick): it syncs again every controller
//!   the adopt changed, as the level-triggered controllers require, so it costs about a
//!   full pass, once;
//! - then, on the settled state, one entry of each kind, applied incrementally (`apply`,
//!   the cost every node pays per entry) and as the full reference pass (`apply_full`,
//!   every controller over every pod, what every entry cost before the state machine was
//!   incremental), and checked equal (canonical bytes and effects): `tick` (a Tick),
//!   `podstatus` (one pod reported Running and ready), `nodedown` (a node's pods evicted and
//!   placed again), `adopt_image` (a commit changing one Deployment's image: a full pass
//!   and the start of its rollout). Each is reported as `<entry>_ms` and `<entry>_full_ms`.
//! - memory: `rss_mib`, the process's resident memory once the state is filled (the state
//!   with its indexes, plus whatever the allocator keeps), and `snapshot_mib`, the size of
//!   the canonical bytes.
//!
//! The apply is timed `--runs` times (default 5) on identical fresh states; the median is
//! reported as `ms` (and `pods_per_s`), the fastest as `min_ms`: the machine is shared, so a
//! single run can measure the neighbours. One size per invocation; the last line is
//! `RESULT schedule pods=<N> nodes=<M> ms=<median apply ms> pods_per_s=<y> ...` where
//! `pods_per_s` counts placed pods over the whole apply.

use kommit_reconcilers::scheduler::{self, Decision, NodeView, PodView};
use kommit_reconcilers::{
    ClusterState, Effects, Entry, NodeInfo, PodPhase, PodStatusChange, Taint,
};
use kommit_schemas::model::pod::TaintEffect;
use kommit_schemas::{DesiredState, Limits, SourceTree};
use std::collections::BTreeMap;
use std::time::Instant;

const POOLS: usize = 10;
const REPLICAS: usize = 100;

fn nodes(count: usize) -> Vec<NodeInfo> {
    (0..count)
        .map(|i| {
            let mut labels = BTreeMap::new();
            labels.insert("zone".to_string(), format!("z{}", i % 4));
            labels.insert("pool".to_string(), format!("p{}", i % POOLS));
            let taints = if i % 20 == 0 {
                vec![Taint {
                    key: "dedicated".into(),
                    value: Some("infra".into()),
                    effect: TaintEffect::NoSchedule,
                }]
            } else {
                vec![]
            };
            NodeInfo {
                name: format!("node-{i:04}"),
                address: format!("10.0.{}.{}", i / 250, i % 250 + 1),
                cpu_millis: 32_000,
                memory_bytes: 128 << 30,
                pods: 110,
                labels,
                taints,
            }
        })
        .collect()
}

/// The workload; `image` is Deployment d0's image tag (the others' are their index).
fn manifests(pods: usize, nodes: usize, image: usize) -> DesiredState {
    let ds_pods_per_set = (nodes / POOLS).max(1);
    let daemon_sets = (pods / 5) / ds_pods_per_set;
    let deployments = (pods - daemon_sets * ds_pods_per_set) / REPLICAS;
    let mut tree = SourceTree::default();
    // 1,000 nodes need more than the default /16's 256 node CIDRs; a /9 holds 32,768.
    tree.add(
        "kommit.yaml",
        b"apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata:\n  name: bench\nspec:\n  podCIDR: 10.128.0.0/9\n".to_vec(),
    );
    for i in 0..deployments {
        let mut extra = String::new();
        if i % 5 == 1 {
            extra.push_str(&format!("      nodeSelector: {{zone: z{}}}\n", i % 4));
        }
        if i % 10 == 3 {
            extra.push_str(&format!(
                "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            - labelSelector: {{matchLabels: {{app: d{i}}}}}\n              topologyKey: kubernetes.io/hostname\n"
            ));
        }
        let tag = if i == 0 { image } else { i };
        let y = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  replicas: {REPLICAS}\n  selector:\n    matchLabels: {{app: d{i}}}\n  template:\n    metadata:\n      labels: {{app: d{i}}}\n    spec:\n{extra}      containers:\n        - name: c\n          image: app:{tag}\n          resources:\n            requests: {{cpu: {}m, memory: {}Mi}}\n",
            50 + (i % 5) * 50,
            64 + (i % 4) * 64
        );
        tree.add(format!("apps/d{i}.yaml"), y.into_bytes());
    }
    for i in 0..daemon_sets {
        let y = format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: ds{i}\nspec:\n  selector:\n    matchLabels: {{app: ds{i}}}\n  template:\n    metadata:\n      labels: {{app: ds{i}}}\n    spec:\n      nodeSelector: {{pool: p{}}}\n      tolerations: [{{operator: Exists}}]\n      containers:\n        - name: c\n          image: agent:{i}\n          resources:\n            requests: {{cpu: 20m, memory: 32Mi}}\n",
            i % POOLS
        );
        tree.add(format!("infra/ds{i}.yaml"), y.into_bytes());
    }
    match kommit_schemas::validate(&tree, &Limits::default()) {
        Ok(d) => d,
        Err(diags) => panic!(
            "benchmark manifests are invalid: {:?}",
            &diags[..diags.len().min(3)]
        ),
    }
}

struct Run {
    pods: usize,
    placed: usize,
    apply_ms: f64,
    samples: Vec<f64>,
    sched_ms: f64,
    settle_ms: f64,
    /// (entry, incremental ms, full reference ms).
    entries: Vec<(&'static str, f64, f64)>,
    rss_mib: f64,
    snapshot_mib: f64,
}

/// The process's resident memory, MiB (0 where /proc is not there).
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Applies `entry` to `inc` incrementally and to `full` as the reference pass; returns both
/// times, having checked that both give the same state and effects.
fn both(
    name: &str,
    inc: &mut ClusterState,
    full: &mut ClusterState,
    entry: &Entry,
    at: u64,
) -> (f64, f64, Effects) {
    let t = Instant::now();
    let fx = inc.apply(entry, at);
    let inc_ms = ms_since(t);
    let t = Instant::now();
    let fx_full = full.apply_full(entry, at);
    let full_ms = ms_since(t);
    assert_eq!(
        fx, fx_full,
        "{name}: the incremental and full passes gave other effects"
    );
    assert!(
        inc.canonical_bytes() == full.canonical_bytes(),
        "{name}: the incremental and full passes gave other states"
    );
    (inc_ms, full_ms, fx)
}

fn run(pods: usize, node_count: usize, runs: usize) -> Run {
    let desired = manifests(pods, node_count, 0);
    let mut state = ClusterState::new();
    let bootstrap = DesiredState {
        config: desired.config.clone(),
        ..Default::default()
    };
    state.apply(
        &Entry::Adopt {
            commit: "boot".into(),
            parent: None,
            digest: bootstrap.digest(),
            desired: bootstrap,
            by: None,
        },
        1,
    );
    for n in nodes(node_count) {
        state.apply(&Entry::NodeUp { info: n }, 1);
    }
    let adopt = Entry::Adopt {
        commit: "bench".into(),
        parent: Some("boot".into()),
        digest: desired.digest(),
        desired,
        by: None,
    };
    let empty = state.clone();
    // The same entry on `runs` identical states; the median counts. Every run must end in the
    // same state.
    let mut samples = Vec::new();
    let mut done: Option<ClusterState> = None;
    for _ in 0..runs {
        let mut s = state.clone();
        let t0 = Instant::now();
        s.apply(&adopt, 2);
        samples.push(ms_since(t0));
        if let Some(d) = &done {
            assert!(
                d == &s,
                "two applies of the same entry gave different states"
            );
        }
        done = Some(s);
    }
    drop(state);
    let mut state = done.expect("at least one run");
    let mut sorted = samples.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let apply_ms = sorted[sorted.len() / 2];
    // The first entry after the adopt syncs again what the adopt changed; it changes nothing.
    let t2 = Instant::now();
    let fx = state.apply(&Entry::Tick, 3);
    let settle_ms = ms_since(t2);
    assert!(
        fx.is_empty(),
        "a Tick after the adopt changed something: {fx:?}"
    );
    let rss_mib = rss_mib();
    let snapshot_mib = state.canonical_bytes().len() as f64 / (1024.0 * 1024.0);
    let total = state.pods.len();
    let placed = state.pods.values().filter(|p| p.node.is_some()).count();

    // The scheduler alone, on the same pods, all pending.
    let owner_ids: BTreeMap<&String, String> =
        state.pods.iter().map(|(k, p)| (k, p.owner.id())).collect();
    let pending: Vec<PodView> = state
        .pods
        .iter()
        .map(|(k, p)| PodView {
            key: k,
            uid: &p.uid,
            namespace: &p.namespace,
            owner: &owner_ids[k],
            template_hash: &p.template_hash,
            labels: &p.labels,
            spec: &p.spec,
            pinned_node: p.pinned_node.as_deref(),
        })
        .collect();
    let views: Vec<NodeView> = empty.nodes.values().map(NodeView::from).collect();
    let t1 = Instant::now();
    let decisions = scheduler::schedule(&pending, &views, &[]);
    let sched_ms = ms_since(t1);
    let sched_placed = decisions
        .values()
        .filter(|d| matches!(d, Decision::Bind(_)))
        .count();
    assert_eq!(
        sched_placed, placed,
        "the scheduler alone and apply placed different counts"
    );

    // One entry of each kind on the settled state, incremental and full.
    let mut full = state.clone();
    let mut entries = Vec::new();
    let (i, f, _) = both("tick", &mut state, &mut full, &Entry::Tick, 4);
    entries.push(("tick", i, f));
    let (key, p) = state
        .pods
        .iter()
        .find(|(_, p)| p.node.is_some() && p.labels.get("app").map(String::as_str) == Some("d0"))
        .expect("Deployment d0 has a bound pod");
    let report = Entry::PodStatus {
        node: p.node.clone().unwrap_or_default(),
        changes: vec![PodStatusChange {
            pod: key.clone(),
            uid: p.uid.clone(),
            phase: PodPhase::Running,
            ready: true,
            pod_ip: p.pod_ip,
            ..Default::default()
        }],
    };
    let (i, f, _) = both("podstatus", &mut state, &mut full, &report, 5);
    entries.push(("podstatus", i, f));
    let down = Entry::NodeDown {
        node: "node-0001".into(),
    };
    let (i, f, fx) = both("nodedown", &mut state, &mut full, &down, 6);
    assert!(
        !fx.stop.is_empty(),
        "the node that went down ran no pod: the entry measured nothing"
    );
    entries.push(("nodedown", i, f));
    let bumped = manifests(pods, node_count, 100_000);
    let image = Entry::Adopt {
        commit: "image".into(),
        parent: Some("bench".into()),
        digest: bumped.digest(),
        desired: bumped,
        by: None,
    };
    let (i, f, fx) = both("adopt_image", &mut state, &mut full, &image, 7);
    assert!(
        fx.adopted.is_some() && !fx.start.is_empty(),
        "the image change started no pod"
    );
    entries.push(("adopt_image", i, f));

    assert_eq!(
        total, pods,
        "the workload generator made {total} pods, wanted {pods}"
    );
    Run {
        pods: total,
        placed,
        apply_ms,
        samples,
        sched_ms,
        settle_ms,
        entries,
        rss_mib,
        snapshot_mib,
    }
}

fn flag(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let v = args
                .get(i + 1)
                .ok_or_else(|| anyhow::anyhow!("{name} needs a value"))?;
            v.parse()
                .map_err(|e| anyhow::anyhow!("{name} {v}: not a count: {e}"))
        }
    }
}

/// Runs the benchmark; `args` may hold `--pods N` (default 10000), `--nodes M` (default
/// 1000) and `--runs R` (applies timed, the median reported; default 5).
pub fn main(args: &[String]) -> anyhow::Result<()> {
    for a in args {
        if a.starts_with("--") && !["--pods", "--nodes", "--runs"].contains(&a.as_str()) {
            anyhow::bail!("unknown option {a} (known: --pods N, --nodes M, --runs R)");
        }
    }
    let pods = flag(args, "--pods", 10_000)?;
    let nodes = flag(args, "--nodes", 1_000)?;
    let runs = flag(args, "--runs", 5)?.clamp(1, 21);
    if pods < 100 || !(POOLS..=30_000).contains(&nodes) {
        anyhow::bail!("--pods must be at least 100 and --nodes between {POOLS} and 30000");
    }
    println!("schedule: {pods} pods on {nodes} nodes: Deployments of {REPLICAS} replicas (20% with a zone selector, 10% with hostname anti-affinity) + DaemonSets per node pool");
    let r = run(pods, nodes, runs);
    let all: Vec<String> = r.samples.iter().map(|ms| format!("{ms:.1}")).collect();
    println!(
        "apply ms per run: {} (the median is reported as ms, the fastest as min_ms)",
        all.join(" ")
    );
    let pps = |ms: f64| (r.placed as f64 / (ms / 1000.0)).round();
    let mut per_entry = String::new();
    for (name, inc, full) in &r.entries {
        println!("entry {name}: {inc:.3} ms incremental, {full:.1} ms as a full pass");
        per_entry.push_str(&format!(" {name}_ms={inc:.3} {name}_full_ms={full:.1}"));
    }
    println!(
        "RESULT schedule pods={} nodes={nodes} ms={:.1} pods_per_s={} min_ms={:.1} placed={} scheduler_ms={:.1} scheduler_pods_per_s={} settle_ms={:.1}{per_entry} rss_mib={:.0} snapshot_mib={:.1}",
        r.pods,
        r.apply_ms,
        pps(r.apply_ms),
        r.samples.iter().copied().fold(f64::INFINITY, f64::min),
        r.placed,
        r.sched_ms,
        pps(r.sched_ms),
        r.settle_ms,
        r.rss_mib,
        r.snapshot_mib
    );
    Ok(())
}

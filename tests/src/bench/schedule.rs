//! `kommit-bench schedule [--pods N] [--nodes M]`: place N pods (default 10,000) on M nodes
//! (default 1,000) from empty.
//!
//! The workload mixes Deployments (100 replicas each; some with a zone nodeSelector, some
//! with required podAntiAffinity on the hostname) and DaemonSets (one per node pool), all
//! with cpu and memory requests. Two timings per size:
//! - `apply`: the whole `ClusterState::apply(Adopt)` on a state with every node up:
//!   controllers create the pods, the scheduler places them, IPs and endpoints are set;
//! - `scheduler`: `scheduler::schedule` alone on the same pods;
//! - `tick`: one more entry (a Tick) on the placed state, what every later entry pays.
//!
//! The apply is timed `--runs` times (default 5) on identical fresh states; the median is
//! reported as `ms` (and `pods_per_s`), the fastest as `min_ms`: the machine is shared, so a
//! single run can measure the neighbours. One size per invocation; the last line is
//! `RESULT schedule pods=<N> nodes=<M> ms=<median apply ms> pods_per_s=<y> ...` where
//! `pods_per_s` counts placed pods over the whole apply.

use kommit_reconcilers::scheduler::{self, Decision, NodeView, PodView};
use kommit_reconcilers::{ClusterState, Entry, NodeInfo, Taint};
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

fn manifests(pods: usize, nodes: usize) -> DesiredState {
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
        let y = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  replicas: {REPLICAS}\n  selector:\n    matchLabels: {{app: d{i}}}\n  template:\n    metadata:\n      labels: {{app: d{i}}}\n    spec:\n{extra}      containers:\n        - name: c\n          image: app:{i}\n          resources:\n            requests: {{cpu: {}m, memory: {}Mi}}\n",
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
    tick_ms: f64,
}

fn run(pods: usize, node_count: usize, runs: usize) -> Run {
    let desired = manifests(pods, node_count);
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
    let mut empty = state.clone();
    // The same entry on `runs` identical states; the median counts. Every run must end in the
    // same state.
    let mut samples = Vec::new();
    let mut done: Option<ClusterState> = None;
    for _ in 0..runs {
        let mut s = state.clone();
        let t0 = Instant::now();
        s.apply(&adopt, 2);
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        if let Some(d) = &done {
            assert!(
                d == &s,
                "two applies of the same entry gave different states"
            );
        }
        done = Some(s);
    }
    let mut state = done.expect("at least one run");
    let mut sorted = samples.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let apply_ms = sorted[sorted.len() / 2];
    // What every later entry costs at this size: a Tick changes nothing, but the controllers,
    // the scheduler (for pods still Pending) and endpoints run over the whole state.
    let t2 = Instant::now();
    let fx = state.apply(&Entry::Tick, 3);
    let tick_ms = t2.elapsed().as_secs_f64() * 1000.0;
    assert!(
        fx.is_empty(),
        "a Tick after the adopt changed something: {fx:?}"
    );
    let total = state.pods.len();
    let placed = state.pods.values().filter(|p| p.node.is_some()).count();

    // The scheduler alone, on the same pods unbound.
    for p in state.pods.values_mut() {
        p.node = None;
    }
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
    empty.pods.clear();
    let views: Vec<NodeView> = empty.nodes.values().map(NodeView::from).collect();
    let t1 = Instant::now();
    let decisions = scheduler::schedule(&pending, &views, &[]);
    let sched_ms = t1.elapsed().as_secs_f64() * 1000.0;
    let sched_placed = decisions
        .values()
        .filter(|d| matches!(d, Decision::Bind(_)))
        .count();
    assert_eq!(
        sched_placed, placed,
        "the scheduler alone and apply placed different counts"
    );
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
        tick_ms,
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
    println!(
        "RESULT schedule pods={} nodes={nodes} ms={:.1} pods_per_s={} min_ms={:.1} placed={} scheduler_ms={:.1} scheduler_pods_per_s={} tick_ms={:.1}",
        r.pods,
        r.apply_ms,
        pps(r.apply_ms),
        r.samples.iter().copied().fold(f64::INFINITY, f64::min),
        r.placed,
        r.sched_ms,
        pps(r.sched_ms),
        r.tick_ms
    );
    Ok(())
}

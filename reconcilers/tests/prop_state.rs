//! Seeded property test of the replicated state: random inventories, manifests and event
//! sequences (node up/down/drain/uncordon, status reports, new commits, ticks).
//!
//! Checked after every entry:
//! - no node is over-committed (cpu, memory, pods);
//! - a Deployment never drops below `replicas - maxUnavailable` ready pods because of the
//!   controller (pods the entry itself made unready or evicted are discounted);
//! - no bound pod moves: the same incarnation (UID) stays on its node;
//! - a pod using a claim runs only on the node of the claim's volume, and a claim's volume
//!   never changes node (a stateful pod is never started elsewhere on an empty volume);
//! - a Job never runs more than `parallelism` pods;
//! - the same log gives the same digest in a fresh state, and after a snapshot round trip;
//! - the same log with the initial NodeUps shuffled gives the same placements.
//!
//! `KOMMIT_SEED=<n>` runs one seed; `KOMMIT_PROP_CASES=<n>` runs more cases (default 48).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::controllers::deployment::surge_and_unavailable;
use kommit_reconcilers::scheduler::pod_requests;
use kommit_reconcilers::{ClusterState, Entry, NodeInfo, Owner, PodPhase};
use kommit_schemas::DesiredState;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

struct Workload {
    name: String,
    replicas: u32,
    image: u32,
    cpu: u32,
    mem_mi: u32,
    zone: Option<&'static str>,
    anti: bool,
    surge: Option<(&'static str, &'static str)>,
}

fn workload_yaml(w: &Workload) -> String {
    let mut strategy = String::new();
    if let Some((s, u)) = w.surge {
        strategy = format!(
            "  strategy:\n    type: RollingUpdate\n    rollingUpdate:\n      maxSurge: {s}\n      maxUnavailable: {u}\n"
        );
    }
    let mut extra = String::new();
    if let Some(z) = w.zone {
        extra.push_str(&format!("      nodeSelector:\n        zone: {z}\n"));
    }
    if w.anti {
        extra.push_str(&format!(
            "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            - labelSelector:\n                matchLabels:\n                  app: {}\n              topologyKey: kubernetes.io/hostname\n",
            w.name
        ));
    }
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {n}\nspec:\n  replicas: {r}\n  selector:\n    matchLabels:\n      app: {n}\n{strategy}  template:\n    metadata:\n      labels:\n        app: {n}\n    spec:\n{extra}      containers:\n        - name: main\n          image: img:{i}\n          resources:\n            requests:\n              cpu: {c}m\n              memory: {m}Mi\n",
        n = w.name,
        r = w.replicas,
        i = w.image,
        c = w.cpu,
        m = w.mem_mi
    )
}

const DS: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n        - name: c\n          image: agent:1\n          resources:\n            requests: {cpu: 50m, memory: 32Mi}\n";

/// The stateful and batch workloads of a case: a StatefulSet with a claim per ordinal
/// (replicas, image, Parallel) and a Job (parallelism, completions).
#[derive(Clone, Copy)]
struct Extra {
    sts: Option<(u32, u32, bool)>,
    job: Option<(u32, u32)>,
}

fn sts_yaml(replicas: u32, image: u32, parallel: bool) -> String {
    let policy = if parallel {
        "  podManagementPolicy: Parallel\n"
    } else {
        ""
    };
    format!("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: {replicas}\n  serviceName: db\n{policy}  selector:\n    matchLabels: {{app: db}}\n  template:\n    metadata:\n      labels: {{app: db}}\n    spec:\n      containers:\n        - name: main\n          image: db:{image}\n          resources:\n            requests: {{cpu: 100m, memory: 64Mi}}\n  volumeClaimTemplates:\n    - metadata: {{name: data}}\n      spec:\n        resources:\n          requests: {{storage: 1Gi}}\n")
}

fn job_yaml(parallelism: u32, completions: u32) -> String {
    format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: batch\nspec:\n  parallelism: {parallelism}\n  completions: {completions}\n  backoffLimit: 3\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: job:1\n          resources:\n            requests: {{cpu: 50m, memory: 32Mi}}\n")
}

thread_local! {
    static EXTRA: std::cell::Cell<Extra> = const { std::cell::Cell::new(Extra { sts: None, job: None }) };
}

fn render(ws: &[Workload], with_ds: bool) -> DesiredState {
    let mut files: Vec<(String, String)> = ws
        .iter()
        .map(|w| (format!("apps/{}.yaml", w.name), workload_yaml(w)))
        .collect();
    if with_ds {
        files.push(("agent.yaml".into(), DS.into()));
    }
    let extra = EXTRA.with(|e| e.get());
    if let Some((r, i, p)) = extra.sts {
        files.push(("db.yaml".into(), sts_yaml(r, i, p)));
    }
    if let Some((p, c)) = extra.job {
        files.push(("batch.yaml".into(), job_yaml(p, c)));
    }
    desired_of(&files)
}

/// Builds a random log: (initial NodeUps, then the rest).
type Log = Vec<(Entry, u64)>;

fn gen_log(seed: u64) -> (Log, Log) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n_nodes = rng.gen_range(2..=6);
    let nodes: Vec<NodeInfo> = (0..n_nodes).map(|i| random_node(&mut rng, i)).collect();
    let mut t = 1_000u64;
    let ups: Vec<(Entry, u64)> = nodes
        .iter()
        .map(|n| (Entry::NodeUp { info: n.clone() }, t))
        .collect();
    let surges = [
        None,
        Some(("25%", "25%")),
        Some(("1", "0")),
        Some(("0", "1")),
        Some(("50%", "50%")),
        Some(("2", "1")),
    ];
    let mut ws: Vec<Workload> = (0..rng.gen_range(1..=3))
        .map(|i| Workload {
            name: format!("app{i}"),
            replicas: rng.gen_range(1..=6),
            image: 1,
            cpu: rng.gen_range(1..=8) * 50,
            mem_mi: rng.gen_range(1..=8) * 64,
            zone: match rng.gen_range(0..4) {
                0 => Some("a"),
                1 => Some("b"),
                _ => None,
            },
            anti: rng.gen_ratio(1, 4),
            surge: *surges.choose(&mut rng).unwrap(),
        })
        .collect();
    let with_ds = rng.gen_bool(0.5);
    // The stateful and batch kinds come from an rng of their own, so the Deployment
    // cases keep the logs they always had.
    let mut xrng = ChaCha8Rng::seed_from_u64(seed ^ 0x57a7_ef01);
    let extra = Extra {
        sts: xrng
            .gen_bool(0.5)
            .then(|| (xrng.gen_range(1..=4), 1, xrng.gen_bool(0.5))),
        job: xrng
            .gen_bool(0.5)
            .then(|| (xrng.gen_range(1..=3), xrng.gen_range(1..=6))),
    };
    EXTRA.with(|e| e.set(extra));
    let mut rest = Vec::new();
    let mut commit = 0u32;
    let d = render(&ws, with_ds);
    rest.push((adopt_entry("c0", None, &d), t));
    let mut extra_nodes = n_nodes;
    for _ in 0..rng.gen_range(20..50) {
        t += rng.gen_range(1..5_000);
        let e = match rng.gen_range(0..20) {
            0..=2 => {
                // A new commit: a new image (rollout) and maybe a new replica count.
                let w = ws.choose_mut(&mut rng).unwrap();
                w.image += 1;
                if rng.gen_ratio(1, 3) {
                    w.replicas = rng.gen_range(1..=6);
                }
                // The StatefulSet rolls or scales too.
                EXTRA.with(|e| {
                    let mut x = e.get();
                    if let Some((r, i, p)) = x.sts {
                        x.sts = Some(if xrng.gen_bool(0.5) {
                            (r, i + 1, p)
                        } else {
                            (xrng.gen_range(0..=4), i, p)
                        });
                    }
                    e.set(x);
                });
                let d = render(&ws, with_ds);
                commit += 1;
                adopt_entry(&format!("c{commit}"), Some(&format!("c{}", commit - 1)), &d)
            }
            3 => Entry::NodeDown {
                node: format!("node-{}", rng.gen_range(0..extra_nodes)),
            },
            4 => Entry::NodeUp {
                info: nodes[rng.gen_range(0..n_nodes)].clone(),
            },
            5 => Entry::NodeDrain {
                node: format!("node-{}", rng.gen_range(0..extra_nodes)),
            },
            6 => Entry::NodeUncordon {
                node: format!("node-{}", rng.gen_range(0..extra_nodes)),
            },
            7 => {
                let n = random_node(&mut rng, extra_nodes);
                extra_nodes += 1;
                Entry::NodeUp { info: n }
            }
            8 => Entry::Tick,
            // Status reports are generated against the live state; see `materialize`.
            _ => Entry::PodStatus {
                node: String::new(),
                changes: vec![],
            },
        };
        rest.push((e, t));
    }
    (ups, rest)
}

/// Status placeholders become reports about the live state, chosen by a seeded rng: most
/// bound pods turn ready, a few turn unready or fail.
fn materialize(e: &Entry, state: &ClusterState, rng: &mut ChaCha8Rng) -> Entry {
    let Entry::PodStatus { node, .. } = e else {
        return e.clone();
    };
    if !node.is_empty() {
        return e.clone();
    }
    random_reports(state, rng, |rng, p| match rng.gen_range(0..20) {
        0 => Some((PodPhase::Running, false)),
        1 => Some((PodPhase::Failed, false)),
        15..=17 if matches!(p.owner, Owner::Job(_)) => Some((PodPhase::Succeeded, false)),
        2..=14 => Some((PodPhase::Running, true)),
        _ => None,
    })
}

fn check_capacity(s: &ClusterState) -> Result<(), String> {
    for (name, n) in &s.nodes {
        let (mut cpu, mut mem, mut pods) = (0u64, 0u64, 0u32);
        for p in s.pods_on_node(name) {
            // A finished Job pod holds nothing on its node.
            if matches!(p.owner, Owner::Job(_))
                && matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed)
            {
                continue;
            }
            let (c, m) = pod_requests(&p.spec);
            cpu += c;
            mem += m;
            pods += 1;
        }
        if cpu > n.info.cpu_millis || mem > n.info.memory_bytes || pods > n.info.pods {
            return Err(format!(
                "node {name} over-committed: cpu {cpu}/{} mem {mem}/{} pods {pods}/{}",
                n.info.cpu_millis, n.info.memory_bytes, n.info.pods
            ));
        }
    }
    Ok(())
}

fn deployment_of(s: &ClusterState, p: &kommit_reconcilers::PodRecord) -> Option<String> {
    match &p.owner {
        Owner::ReplicaSet(rs) => s.replica_sets.get(rs).map(|r| r.deployment.clone()),
        _ => None,
    }
}

fn ready_by_deployment(s: &ClusterState) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    for p in s.pods.values() {
        if p.ready {
            if let Some(d) = deployment_of(s, p) {
                *m.entry(d).or_insert(0) += 1;
            }
        }
    }
    m
}

/// Ready pods per deployment that the entry itself takes away (reports, evictions).
fn directly_lost(s: &ClusterState, e: &Entry) -> BTreeMap<String, i64> {
    let mut m = BTreeMap::new();
    let mut lose = |p: &kommit_reconcilers::PodRecord| {
        if p.ready {
            if let Some(d) = deployment_of(s, p) {
                *m.entry(d).or_insert(0) += 1;
            }
        }
    };
    match e {
        Entry::PodStatus { changes, .. } => {
            for c in changes {
                if let Some(p) = s.pods.get(&c.pod) {
                    if p.uid == c.uid && !(c.ready && c.phase == PodPhase::Running) {
                        lose(p);
                    }
                }
            }
        }
        Entry::NodeDown { node } | Entry::NodeDrain { node } | Entry::NodeRemove { node } => {
            s.pods_on_node(node).for_each(&mut lose);
        }
        Entry::NodeUp { info } => {
            for p in s.pods_on_node(&info.name) {
                if kommit_reconcilers::scheduler::untolerated_no_execute(
                    &p.spec.tolerations,
                    &info.taints,
                )
                .is_some()
                {
                    lose(p);
                }
            }
        }
        _ => {}
    }
    m
}

/// Bound pods keep their node; claims keep theirs and their pods run there; Jobs stay
/// within their parallelism.
fn check_binding(before: &ClusterState, s: &ClusterState) -> Result<(), String> {
    for (k, p) in &s.pods {
        if let (Some(n), Some(old)) = (&p.node, before.pods.get(k)) {
            if old.uid == p.uid && old.node.as_ref().is_some_and(|o| o != n) {
                return Err(format!("pod {k} moved from {:?} to {n}", old.node));
            }
        }
        if let Some(n) = &p.node {
            for v in &p.spec.volumes {
                let Some(c) = &v.persistent_volume_claim else {
                    continue;
                };
                let ck = format!("{}/{}", p.namespace, c.claim_name.as_str());
                let claim_node = s.claims.get(&ck).and_then(|c| c.node.as_ref());
                if claim_node != Some(n) {
                    return Err(format!(
                        "pod {k} on {n} but claim {ck} is on {claim_node:?}"
                    ));
                }
            }
        }
    }
    for (k, c) in &s.claims {
        if let Some(old) = before.claims.get(k) {
            if old.node.is_some() && (old.node != c.node || old.volume != c.volume) {
                return Err(format!(
                    "claim {k} moved from {:?} to {:?}",
                    old.node, c.node
                ));
            }
        }
    }
    for (k, j) in &s.desired.jobs {
        let active = s
            .pods
            .values()
            .filter(|p| p.owner == Owner::Job(k.clone()))
            .filter(|p| !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed))
            .count() as u32;
        if active > j.spec.parallelism.unwrap_or(1) {
            return Err(format!("job {k} runs {active} pods"));
        }
    }
    Ok(())
}

fn describe(e: &Entry) -> String {
    match e {
        Entry::Adopt { commit, .. } => format!("Adopt {commit}"),
        Entry::NodeUp { info } => format!("NodeUp {}", info.name),
        Entry::PodStatus { node, changes } => format!("PodStatus {node} x{}", changes.len()),
        other => format!("{other:?}"),
    }
}

/// How often the new kinds were exercised over all cases: (StatefulSet pods bound, claims
/// bound, Job pods succeeded), so the invariants above are known to have had work.
static COVERAGE: [std::sync::atomic::AtomicUsize; 3] = [
    std::sync::atomic::AtomicUsize::new(0),
    std::sync::atomic::AtomicUsize::new(0),
    std::sync::atomic::AtomicUsize::new(0),
];

fn count_coverage(s: &ClusterState) {
    use std::sync::atomic::Ordering::Relaxed;
    let sts = s
        .pods
        .values()
        .filter(|p| matches!(p.owner, Owner::StatefulSet(_)) && p.node.is_some())
        .count();
    let claims = s.claims.values().filter(|c| c.node.is_some()).count();
    let jobs = s
        .pods
        .values()
        .filter(|p| matches!(p.owner, Owner::Job(_)) && p.phase == PodPhase::Succeeded)
        .count();
    COVERAGE[0].fetch_add(sts, Relaxed);
    COVERAGE[1].fetch_add(claims, Relaxed);
    COVERAGE[2].fetch_add(jobs, Relaxed);
}

fn run_case(seed: u64) -> Result<(), String> {
    let (ups, rest) = gen_log(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut a = ClusterState::new();
    for (e, t) in &ups {
        a.apply(e, *t);
    }
    let mut log: Vec<(Entry, u64)> = ups.clone();
    for (i, (e, t)) in rest.iter().enumerate() {
        let e = materialize(e, &a, &mut rng);
        let before = ready_by_deployment(&a);
        let lost = directly_lost(&a, &e);
        let snapshot = a.clone();
        a.apply(&e, *t);
        log.push((e.clone(), *t));
        check_capacity(&a).map_err(|m| format!("step {i}: {m}"))?;
        check_binding(&snapshot, &a).map_err(|m| format!("step {i} ({}): {m}", describe(&e)))?;
        count_coverage(&a);
        let after = ready_by_deployment(&a);
        for (key, d) in &a.desired.deployments {
            let replicas = d.spec.replicas.unwrap_or(1);
            let (_, max_unavailable) = surge_and_unavailable(d, replicas);
            let floor = i64::from(replicas) - i64::from(max_unavailable);
            let base = before.get(key).copied().unwrap_or(0) - lost.get(key).copied().unwrap_or(0);
            let got = after.get(key).copied().unwrap_or(0);
            if got < base.min(floor) {
                return Err(format!(
                    "step {i} ({}): deployment {key} has {got} ready, below min({base}, {floor})",
                    describe(&e)
                ));
            }
        }
    }
    // The same log in a fresh state, and across a snapshot taken half way.
    let mut b = ClusterState::new();
    let mut c = ClusterState::new();
    for (i, (e, t)) in log.iter().enumerate() {
        b.apply(e, *t);
        c.apply(e, *t);
        if i == log.len() / 2 {
            c = ClusterState::from_canonical_bytes(&c.canonical_bytes())
                .map_err(|e| e.to_string())?;
        }
    }
    if a.digest() != b.digest() || b.digest() != c.digest() {
        return Err("same log, different digests".into());
    }
    // Shuffled inventory: same placements after every entry.
    let mut shuffled = ups.clone();
    shuffled.shuffle(&mut rng);
    let mut d = ClusterState::new();
    let mut e2 = ClusterState::new();
    for (e, t) in &ups {
        d.apply(e, *t);
    }
    for (e, t) in &shuffled {
        e2.apply(e, *t);
    }
    for (i, (e, t)) in log[ups.len()..].iter().enumerate() {
        d.apply(e, *t);
        e2.apply(e, *t);
        if d.placements() != e2.placements() {
            return Err(format!(
                "step {i}: placements differ with the inventory shuffled"
            ));
        }
    }
    Ok(())
}

#[test]
fn prop_same_log_same_state_and_invariants_hold() {
    let seeds = seeds(0x6b6f_6d6d_6974, 48);
    let many = seeds.len() > 8;
    for seed in seeds {
        let r = std::panic::catch_unwind(|| run_case(seed));
        let msg = match r {
            Ok(Ok(())) => continue,
            Ok(Err(m)) => m,
            Err(_) => "panicked (see above)".into(),
        };
        panic!(
            "property failed for seed {seed}: {msg}\nreproduce: KOMMIT_SEED={seed} cargo test -p kommit-reconcilers --test prop_state prop_"
        );
    }
    if many {
        let c: Vec<usize> = COVERAGE
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        assert!(
            c.iter().all(|n| *n > 0),
            "the cases never exercised StatefulSets, claims or Jobs: {c:?}"
        );
    }
}

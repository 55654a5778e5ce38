//! The incremental state machine against the full pass: for seeded random logs over every
//! kind the controllers run (Deployments with `minReadySeconds`, progress deadlines,
//! Recreate and Services; DaemonSets; StatefulSets with claims; Jobs with back-off,
//! deadlines and TTLs; CronJobs; bare pods; standalone ReplicaSets; PodDisruptionBudgets;
//! static pods) and every entry kind (commits, node up, down, drain, uncordon and removal,
//! new nodes, status reports of every phase, ticks across the deadlines, acks), a state
//! applying each entry with `apply` and one applying it with `apply_full` (every controller
//! over every pod, effects from a comparison of all pods) hold the same canonical bytes and
//! return the same effects after every entry. A third state is restored from a snapshot
//! half way, so a state read back (its indexes rebuilt, its tracking unprimed) joins in.
//!
//! `KOMMIT_SEED=<n>` runs one seed; `KOMMIT_PROP_CASES=<n>` runs more cases (default 40).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::{ClusterState, Entry, NodeInfo, Owner, PodPhase, Taint};
use kommit_schemas::model::pod::TaintEffect;
use kommit_schemas::DesiredState;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// One case's workloads; each commit changes some of them.
#[derive(Clone)]
struct Repo {
    deployments: Vec<(u32, u32, u32, &'static str)>, // (replicas, image, minReady, strategy)
    services: Vec<bool>,
    daemon_set: Option<u32>,
    stateful_set: Option<(u32, u32, u32, bool)>, // (replicas, image, minReady, parallel)
    job: Option<(u32, u32, u32)>,                // (parallelism, completions, ttl)
    cron: bool,
    bare: Option<u32>,
    replica_set: Option<(u32, u32)>,
    pdb: bool,
}

/// Deployment `d<i>`: d1's pods ask for more cpu with each image (some stay Pending), d2's
/// repel each other per node (more replicas than nodes stay Pending).
fn deployment(i: usize, (replicas, image, min_ready, strategy): (u32, u32, u32, &str)) -> String {
    let cpu = if i == 1 { 200 + (image % 3) * 700 } else { 200 };
    let anti = if i == 2 {
        "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            - labelSelector: {matchLabels: {app: d2}}\n              topologyKey: kubernetes.io/hostname\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d{i}\nspec:\n  replicas: {replicas}\n  minReadySeconds: {min_ready}\n  progressDeadlineSeconds: 30\n  revisionHistoryLimit: 1\n  selector:\n    matchLabels: {{app: d{i}}}\n  strategy:\n{strategy}  template:\n    metadata:\n      labels: {{app: d{i}, tier: web}}\n    spec:\n{anti}      containers:\n        - name: c\n          image: app:{image}\n          resources:\n            requests: {{cpu: {cpu}m, memory: 128Mi}}\n"
    )
}

const STRATEGIES: [&str; 4] = [
    "    type: RollingUpdate\n",
    "    type: RollingUpdate\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 1}\n",
    "    type: RollingUpdate\n    rollingUpdate: {maxSurge: 2, maxUnavailable: 0}\n",
    "    type: Recreate\n",
];

fn render(r: &Repo) -> DesiredState {
    let mut files: Vec<(String, String)> = vec![("kommit.yaml".into(), KOMMIT_YAML.into())];
    for (i, d) in r.deployments.iter().enumerate() {
        files.push((format!("d{i}.yaml"), deployment(i, *d)));
        if r.services[i] {
            // Two selector keys on the first Service, one on the others.
            let sel = if i == 0 {
                "{app: d0, tier: web}".to_string()
            } else {
                format!("{{app: d{i}}}")
            };
            files.push((format!("s{i}.yaml"), format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: s{i}\nspec:\n  selector: {sel}\n  ports: [{{port: 80}}]\n")));
        }
    }
    if let Some(image) = r.daemon_set {
        files.push(("ds.yaml".into(), format!("apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  selector:\n    matchLabels: {{app: agent}}\n  template:\n    metadata:\n      labels: {{app: agent}}\n    spec:\n      containers:\n        - name: c\n          image: agent:{image}\n          resources:\n            requests: {{cpu: 50m, memory: 32Mi}}\n")));
    }
    if let Some((replicas, image, min_ready, parallel)) = r.stateful_set {
        let policy = if parallel {
            "  podManagementPolicy: Parallel\n"
        } else {
            ""
        };
        files.push(("db.yaml".into(), format!("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: {replicas}\n  minReadySeconds: {min_ready}\n  serviceName: db\n{policy}  selector:\n    matchLabels: {{app: db}}\n  template:\n    metadata:\n      labels: {{app: db}}\n    spec:\n      containers:\n        - name: main\n          image: db:{image}\n          resources:\n            requests: {{cpu: 100m, memory: 64Mi}}\n  volumeClaimTemplates:\n    - metadata: {{name: data}}\n      spec:\n        resources:\n          requests: {{storage: 1Gi}}\n")));
        files.push(("db-svc.yaml".into(), "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\nspec:\n  clusterIP: None\n  selector: {app: db}\n  ports: [{port: 5432}]\n".into()));
    }
    if let Some((parallelism, completions, ttl)) = r.job {
        files.push(("job.yaml".into(), format!("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: batch\nspec:\n  parallelism: {parallelism}\n  completions: {completions}\n  backoffLimit: 2\n  activeDeadlineSeconds: 90\n  ttlSecondsAfterFinished: {ttl}\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: main\n          image: job:1\n          resources:\n            requests: {{cpu: 50m, memory: 32Mi}}\n")));
    }
    if r.cron {
        files.push(("cron.yaml".into(), "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: tick\nspec:\n  schedule: \"*/1 * * * *\"\n  concurrencyPolicy: Forbid\n  successfulJobsHistoryLimit: 1\n  jobTemplate:\n    spec:\n      backoffLimit: 0\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n            - name: main\n              image: busybox\n".into()));
    }
    if let Some(image) = r.bare {
        files.push(("solo.yaml".into(), format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\n  labels: {{app: d1}}\nspec:\n  containers:\n    - name: c\n      image: solo:{image}\n")));
    }
    if let Some((replicas, image)) = r.replica_set {
        files.push(("rs.yaml".into(), format!("apiVersion: apps/v1\nkind: ReplicaSet\nmetadata:\n  name: front\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{tier: front}}\n  template:\n    metadata:\n      labels: {{tier: front}}\n    spec:\n      containers:\n        - name: c\n          image: front:{image}\n")));
    }
    if r.pdb {
        files.push(("pdb.yaml".into(), "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels: {tier: web}\n".into()));
    }
    desired_of(&files)
}

fn random_repo(rng: &mut ChaCha8Rng) -> Repo {
    let n = rng.gen_range(1..=3);
    Repo {
        deployments: (0..n)
            .map(|_| {
                (
                    rng.gen_range(1..=5),
                    1,
                    *[0, 0, 5, 20].choose(rng).unwrap(),
                    *STRATEGIES.choose(rng).unwrap(),
                )
            })
            .collect(),
        services: (0..n).map(|_| rng.gen_bool(0.6)).collect(),
        daemon_set: rng.gen_bool(0.5).then_some(1),
        stateful_set: rng.gen_bool(0.5).then(|| {
            (
                rng.gen_range(1..=3),
                1,
                *[0, 10].choose(rng).unwrap(),
                rng.gen_bool(0.5),
            )
        }),
        job: rng
            .gen_bool(0.5)
            .then(|| (rng.gen_range(1..=2), rng.gen_range(1..=4), 30)),
        cron: rng.gen_bool(0.3),
        bare: rng.gen_bool(0.5).then_some(1),
        replica_set: rng.gen_bool(0.3).then(|| (rng.gen_range(1..=3), 1)),
        pdb: rng.gen_bool(0.3),
    }
}

/// A commit changing one thing.
fn mutate(r: &mut Repo, rng: &mut ChaCha8Rng) {
    match rng.gen_range(0..8) {
        0 | 1 => {
            let d = r.deployments.choose_mut(rng).unwrap();
            d.1 += 1;
            if rng.gen_bool(0.3) {
                d.0 = rng.gen_range(0..=5);
            }
        }
        2 => {
            let i = rng.gen_range(0..r.services.len());
            r.services[i] = !r.services[i];
        }
        3 => r.daemon_set = r.daemon_set.map(|i| i + 1),
        4 => {
            if let Some(s) = &mut r.stateful_set {
                if rng.gen_bool(0.5) {
                    s.1 += 1;
                } else {
                    s.0 = rng.gen_range(0..=3);
                }
            }
        }
        5 => r.bare = r.bare.map(|i| i + 1),
        6 => r.replica_set = r.replica_set.map(|(n, i)| ((n + 1) % 4, i + 1)),
        _ => r.pdb = !r.pdb,
    }
}

fn static_pods(rng: &mut ChaCha8Rng) -> Vec<kommit_schemas::model::core::Pod> {
    let n = rng.gen_range(0..=2);
    let files: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("s{i}.yaml"),
                format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: static{i}\n  labels: {{app: d0}}\nspec:\n  containers:\n    - name: c\n      image: static:{}\n", rng.gen_range(1..=2)),
            )
        })
        .collect();
    desired_of(&files).pods.into_values().collect()
}

/// Reports about one node's pods, chosen against the live state.
fn reports(state: &ClusterState, rng: &mut ChaCha8Rng) -> Entry {
    random_reports(state, rng, |rng, p| match rng.gen_range(0..20) {
        0 => Some((PodPhase::Running, false)),
        1 => Some((PodPhase::Failed, false)),
        2..=4 if matches!(p.owner, Owner::Job(_) | Owner::Pod(_)) => {
            Some((PodPhase::Succeeded, false))
        }
        5..=15 => Some((PodPhase::Running, true)),
        _ => None,
    })
}

fn run_case(seed: u64) -> Result<(), String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut inc = ClusterState::new();
    let mut full = ClusterState::new();
    let mut restored: Option<ClusterState> = None;
    let mut t = 1_772_409_600_000u64;
    let mut nodes: Vec<NodeInfo> = (0..rng.gen_range(2..=6))
        .map(|i| random_node(&mut rng, i))
        .collect();
    let mut repo = random_repo(&mut rng);
    let mut commit = 0u32;
    let mut log: Vec<Entry> = nodes
        .iter()
        .map(|n| Entry::NodeUp { info: n.clone() })
        .collect();
    log.push(adopt_entry("c0", None, &render(&repo)));
    let steps = rng.gen_range(40..90);
    for step in 0..steps + log.len() {
        let e = if step < log.len() {
            log[step].clone()
        } else {
            t += *[1u64, 500, 3_000, 11_000, 31_000, 61_000]
                .choose(&mut rng)
                .unwrap();
            let known = nodes.len();
            let pick = |rng: &mut ChaCha8Rng| format!("node-{}", rng.gen_range(0..known));
            match rng.gen_range(0..24) {
                0..=1 => {
                    mutate(&mut repo, &mut rng);
                    commit += 1;
                    adopt_entry(
                        &format!("c{commit}"),
                        Some(&format!("c{}", commit - 1)),
                        &render(&repo),
                    )
                }
                2 => Entry::NodeDown {
                    node: pick(&mut rng),
                },
                3 => Entry::NodeUp {
                    info: nodes[rng.gen_range(0..nodes.len())].clone(),
                },
                4 => Entry::NodeDrain {
                    node: pick(&mut rng),
                },
                5 => Entry::NodeUncordon {
                    node: pick(&mut rng),
                },
                6 => {
                    let n = random_node(&mut rng, nodes.len());
                    nodes.push(n.clone());
                    Entry::NodeUp { info: n }
                }
                7 => {
                    // A node comes back tainted NoExecute, or plain.
                    let mut n = nodes[rng.gen_range(0..nodes.len())].clone();
                    if rng.gen_bool(0.5) {
                        n.taints.push(Taint {
                            key: "maintenance".into(),
                            value: None,
                            effect: TaintEffect::NoExecute,
                        });
                    }
                    Entry::NodeUp { info: n }
                }
                8 if rng.gen_ratio(1, 3) => Entry::NodeRemove {
                    node: pick(&mut rng),
                },
                9 => Entry::StaticPods {
                    node: pick(&mut rng),
                    pods: static_pods(&mut rng),
                },
                10 => Entry::Ack {
                    node: pick(&mut rng),
                    commit: format!("c{commit}"),
                },
                11..=13 => Entry::Tick,
                _ => reports(&inc, &mut rng),
            }
        };
        let at = t;
        let a = inc.apply(&e, at);
        let b = full.apply_full(&e, at);
        if a != b {
            return Err(format!(
                "step {step} ({e:?}): effects differ:\nincremental {a:?}\nfull {b:?}"
            ));
        }
        let (ia, fb) = (inc.canonical_bytes(), full.canonical_bytes());
        if ia != fb {
            let diff = first_difference(&inc, &full);
            return Err(format!("step {step} ({e:?}): states differ: {diff}"));
        }
        if let Some(r) = &mut restored {
            let c = r.apply(&e, at);
            if c != a || r.canonical_bytes() != ia {
                return Err(format!("step {step}: the restored state diverged"));
            }
        } else if step == (steps + log.len()) / 2 {
            restored = Some(ClusterState::from_canonical_bytes(&ia).map_err(|e| e.to_string())?);
        }
    }
    Ok(())
}

/// The first top-level field (and pod) where two states differ, for the failure message.
fn first_difference(a: &ClusterState, b: &ClusterState) -> String {
    for (k, p) in &a.pods {
        if b.pods.get(k) != Some(p) {
            return format!("pod {k}: {p:?} vs {:?}", b.pods.get(k));
        }
    }
    for k in b.pods.keys() {
        if !a.pods.contains_key(k) {
            return format!("pod {k} only in the full pass");
        }
    }
    let (va, vb) = (
        serde_json::to_value(a).unwrap(),
        serde_json::to_value(b).unwrap(),
    );
    for (k, x) in va.as_object().unwrap() {
        if vb.get(k) != Some(x) {
            return format!("{k}: {x} vs {:?}", vb.get(k));
        }
    }
    "fields absent on one side".into()
}

#[test]
fn prop_incremental_apply_equals_the_full_pass() {
    let seeds = seeds(0x1c2e_5a11, 40);
    for seed in seeds {
        if let Err(msg) = run_case(seed) {
            panic!(
                "seed {seed}: {msg}\nreproduce: KOMMIT_SEED={seed} cargo test -p kommit-reconcilers --test prop_incremental"
            );
        }
    }
}

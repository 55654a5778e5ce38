//! Pinned outputs: the scheduler's decisions and a replayed log's placements, reasons, IPs and
//! effects on seeded inventories, reduced to one SHA-256 each and compared with a value
//! recorded before the scheduler and controllers were optimised. Any change to a placement,
//! a Pending reason, an address or an effect changes the digest.
//!
//! If a digest changes on purpose (a deliberate change of the placement rules, or of how
//! schemas serializes a pod template, which feeds template hashes and so pod names), re-pin
//! it with `KOMMIT_PRINT_PINS=1 cargo test -p kommit-reconcilers --test pinned -- --nocapture`
//! and say why in the commit.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use kommit_reconcilers::scheduler::{schedule, Decision, NodeView, PodView};
use kommit_reconcilers::{ClusterState, Entry, NodeInfo, Taint};
use kommit_schemas::model::pod::{PodSpec, TaintEffect};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

fn check(what: &str, got: &str, want: &str) {
    if std::env::var_os("KOMMIT_PRINT_PINS").is_some() {
        println!("PIN {what} {got}");
        return;
    }
    assert_eq!(
        got, want,
        "{what}: the output changed (see this file's header to re-pin a deliberate change)"
    );
}

fn random_nodes(rng: &mut ChaCha8Rng, n: usize) -> Vec<NodeInfo> {
    (0..n)
        .map(|i| {
            let mut info = node(
                &format!("n{:03}", (i * 7919) % 1000),
                rng.gen_range(1..=16) * 1000,
                rng.gen_range(1..=32) * GI,
                rng.gen_range(4..=40),
            );
            info.labels
                .insert("zone".into(), format!("z{}", rng.gen_range(0..3)));
            info.labels
                .insert("pool".into(), format!("p{}", rng.gen_range(0..5)));
            if rng.gen_ratio(1, 6) {
                info.labels.insert("gpu".into(), "true".into());
            }
            match rng.gen_range(0..12) {
                0 => info.taints.push(Taint {
                    key: "dedicated".into(),
                    value: Some("infra".into()),
                    effect: TaintEffect::NoSchedule,
                }),
                1 => info.taints.push(Taint {
                    key: "maintenance".into(),
                    value: None,
                    effect: TaintEffect::NoExecute,
                }),
                2 => info.taints.push(Taint {
                    key: "soft".into(),
                    value: None,
                    effect: TaintEffect::PreferNoSchedule,
                }),
                _ => {}
            }
            info
        })
        .collect()
}

struct Pod {
    key: String,
    uid: String,
    owner: String,
    hash: String,
    labels: BTreeMap<String, String>,
    spec: PodSpec,
    pinned: Option<String>,
}

fn random_group_spec(rng: &mut ChaCha8Rng, g: usize) -> (serde_json::Value, bool) {
    let mut c = json!({"name": "c", "image": format!("img:{g}")});
    let cpu = rng.gen_range(0..=12) * 100;
    let mem = rng.gen_range(0..=16) * 256;
    c["resources"] = json!({"requests": {"cpu": format!("{cpu}m"), "memory": format!("{mem}Mi")}});
    if rng.gen_ratio(1, 10) {
        c["ports"] = json!([{"containerPort": 80, "hostPort": 8000 + rng.gen_range(0..3)}]);
    }
    let mut s = json!({"containers": [c]});
    if rng.gen_ratio(1, 5) {
        s["nodeSelector"] = json!({"zone": format!("z{}", rng.gen_range(0..4))});
    }
    if rng.gen_ratio(1, 8) {
        s["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "pool", "operator": "NotIn", "values": ["p0", "p1"]}]}]}}});
    }
    if rng.gen_ratio(1, 6) {
        s["affinity"]["podAntiAffinity"] = json!({"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": format!("g{}", g - g % 2)}},
             "topologyKey": if rng.gen_ratio(1, 4) { "zone" } else { "kubernetes.io/hostname" }}]});
    }
    match rng.gen_range(0..6) {
        0 => s["tolerations"] = json!([{"operator": "Exists"}]),
        1 => {
            s["tolerations"] = json!([{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}])
        }
        _ => {}
    }
    (s, rng.gen_ratio(1, 8))
}

fn random_pods(rng: &mut ChaCha8Rng, groups: usize, nodes: &[NodeInfo]) -> Vec<Pod> {
    let mut pods = Vec::new();
    for g in 0..groups {
        let (s, daemon) = random_group_spec(rng, g);
        let spec: PodSpec = serde_json::from_value(s).unwrap();
        let labels: BTreeMap<String, String> = [("app".to_string(), format!("g{g}"))].into();
        let count = if daemon {
            nodes.len()
        } else {
            rng.gen_range(1..=80)
        };
        for (i, pin) in (0..count).zip(nodes.iter().cycle()) {
            let key = format!("ns{}/g{g}-{i:03}", g % 3);
            pods.push(Pod {
                uid: format!("uid-{:016x}", rng.gen::<u64>()),
                owner: format!("Owner/g{g}"),
                hash: format!("h{g}"),
                labels: labels.clone(),
                spec: spec.clone(),
                pinned: daemon.then(|| pin.name.clone()),
                key,
            });
        }
    }
    pods
}

fn view(p: &Pod) -> PodView<'_> {
    PodView {
        key: &p.key,
        uid: &p.uid,
        namespace: p.key.split('/').next().unwrap(),
        owner: &p.owner,
        template_hash: &p.hash,
        labels: &p.labels,
        spec: &p.spec,
        pinned_node: p.pinned.as_deref(),
    }
}

fn decisions_digest(seed: u64, n_nodes: usize, groups: usize) -> (String, usize, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let infos = random_nodes(&mut rng, n_nodes);
    let flags: Vec<(bool, bool)> = infos
        .iter()
        .map(|_| (!rng.gen_ratio(1, 15), rng.gen_ratio(1, 15)))
        .collect();
    let nodes: Vec<NodeView> = infos
        .iter()
        .zip(&flags)
        .map(|(n, &(ready, cordoned))| NodeView {
            name: &n.name,
            ready,
            cordoned,
            labels: &n.labels,
            taints: &n.taints,
            cpu_millis: n.cpu_millis,
            memory_bytes: n.memory_bytes,
            max_pods: n.pods,
        })
        .collect();
    let pods = random_pods(&mut rng, groups, &infos);
    // A tenth of the pods are already bound (wherever the seed says, fitting or not).
    let mut pending = Vec::new();
    let mut bound = Vec::new();
    for p in &pods {
        if p.pinned.is_none() && rng.gen_ratio(1, 10) {
            bound.push((view(p), infos[rng.gen_range(0..infos.len())].name.as_str()));
        } else {
            pending.push(view(p));
        }
    }
    let d = schedule(&pending, &nodes, &bound);
    let mut h = Sha256::new();
    let (mut placed, mut unplaced) = (0, 0);
    for (k, d) in &d {
        let line = match d {
            Decision::Bind(n) => {
                placed += 1;
                format!("{k} bind {n}\n")
            }
            Decision::Unschedulable(r) => {
                unplaced += 1;
                format!("{k} pending {r}\n")
            }
        };
        h.update(line.as_bytes());
    }
    (hex::encode(h.finalize()), placed, unplaced)
}

#[test]
fn scheduler_decisions_on_seeded_inventories_are_pinned() {
    let cases: &[(u64, usize, usize, &str)] = &[
        (
            1,
            40,
            30,
            "c4a8295017f971b1a5ca6145e2522431de2f376b04802895fddb56bef2d528d7",
        ),
        (
            2,
            300,
            60,
            "6f12fb2be7b5853f2bb4c08a4252078c03ee8498096350f393d44686818619c4",
        ),
        (
            3,
            120,
            90,
            "4aadf2f73e2083e3430e672c18c02d44e59426e7229a72c0348687c152b9a450",
        ),
    ];
    for &(seed, nodes, groups, want) in cases {
        let (got, placed, unplaced) = decisions_digest(seed, nodes, groups);
        // Both outcomes must be exercised, or the pin proves little.
        assert!(
            placed > 100 && unplaced > 10,
            "seed {seed}: {placed} placed, {unplaced} pending"
        );
        check(&format!("scheduler seed={seed}"), &got, want);
    }
}

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {app: {name}}\n  template:\n    metadata:\n      labels: {app: {name}}\n    spec:\n{extra}      containers:\n        - name: c\n          image: app:{image}\n          ports: [{containerPort: 80{hostport}}]\n          resources:\n            requests: {cpu: {cpu}m, memory: {mem}Mi}\n";

const DAEMON: &str = "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\nspec:\n  selector:\n    matchLabels: {app: {name}}\n  template:\n    metadata:\n      labels: {app: {name}}\n    spec:\n{extra}      containers:\n        - name: c\n          image: agent:{image}\n          resources:\n            requests: {cpu: {cpu}m, memory: {mem}Mi}\n";

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  selector: {app: {name}}\n  ports: [{port: 80}]\n";

fn fill(t: &str, vars: &[(&str, String)]) -> String {
    let mut s = t.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

fn commit_files(rng: &mut ChaCha8Rng, version: u32) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for i in 0..12 {
        let mut extra = String::new();
        match i % 4 {
            1 => extra.push_str(&format!(
                "      nodeSelector: {{zone: z{}}}\n",
                rng.gen_range(0..3)
            )),
            2 => extra.push_str(&format!("      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n            - labelSelector: {{matchLabels: {{app: d{i}}}}}\n              topologyKey: kubernetes.io/hostname\n")),
            _ => {}
        }
        let hostport = if i == 7 {
            ", hostPort: 9000".to_string()
        } else {
            String::new()
        };
        let name = format!("d{i}");
        files.push((
            format!("apps/{name}.yaml"),
            fill(
                DEPLOY,
                &[
                    ("name", name.clone()),
                    ("replicas", rng.gen_range(1..=30).to_string()),
                    ("extra", extra),
                    ("image", (version + u32::from(i % 3 == 0)).to_string()),
                    ("hostport", hostport),
                    ("cpu", (rng.gen_range(1..=10) * 100).to_string()),
                    ("mem", (rng.gen_range(1..=8) * 256).to_string()),
                ],
            ),
        ));
        if i % 3 == 0 {
            files.push((
                format!("apps/{name}-svc.yaml"),
                fill(SERVICE, &[("name", name)]),
            ));
        }
    }
    for i in 0..2 {
        let extra = if i == 0 {
            "      tolerations: [{operator: Exists}]\n".to_string()
        } else {
            "      nodeSelector: {zone: z1}\n".to_string()
        };
        files.push((
            format!("infra/ds{i}.yaml"),
            fill(
                DAEMON,
                &[
                    ("name", format!("ds{i}")),
                    ("extra", extra),
                    ("image", version.to_string()),
                    ("cpu", "100".into()),
                    ("mem", "128".into()),
                ],
            ),
        ));
    }
    files
}

fn fold(h: &mut Sha256, s: &ClusterState, fx: &kommit_reconcilers::Effects) -> usize {
    let pending = s.pods.values().filter(|p| p.reason.is_some()).count();
    for (k, p) in &s.pods {
        h.update(
            format!(
                "{k} {} {:?} {:?} {:?} {:?} {}\n",
                p.uid, p.node, p.pod_ip, p.reason, p.phase, p.ready
            )
            .as_bytes(),
        );
    }
    h.update(serde_json::to_vec(fx).unwrap());
    h.update(serde_json::to_vec(&s.endpoints).unwrap());
    h.update(serde_json::to_vec(&s.service_ips).unwrap());
    pending
}

fn replay_digest(seed: u64, n_nodes: usize) -> (String, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let infos = random_nodes(&mut rng, n_nodes);
    let mut s = ClusterState::new();
    let mut h = Sha256::new();
    let mut t = 1_000u64;
    let mut most_pending = 0;
    for n in &infos {
        let fx = s.apply(&Entry::NodeUp { info: n.clone() }, t);
        fold(&mut h, &s, &fx);
    }
    let mut parent: Option<String> = None;
    for version in 1..=3u32 {
        let d = desired_of(&commit_files(&mut rng, version));
        let commit = format!("c{version}");
        t += 1_000;
        let fx = s.apply(&adopt_entry(&commit, parent.as_deref(), &d), t);
        most_pending = most_pending.max(fold(&mut h, &s, &fx));
        parent = Some(commit);
        for step in 0..6 {
            t += 5_000;
            let e = match (step + version) % 4 {
                0 => Entry::NodeDown {
                    node: infos[rng.gen_range(0..infos.len())].name.clone(),
                },
                1 => Entry::NodeDrain {
                    node: infos[rng.gen_range(0..infos.len())].name.clone(),
                },
                2 => Entry::NodeUp {
                    info: infos[rng.gen_range(0..infos.len())].clone(),
                },
                _ => Entry::Tick,
            };
            let fx = s.apply(&e, t);
            most_pending = most_pending.max(fold(&mut h, &s, &fx));
            // Most bound pods report ready.
            for e in ready_entries(&s, |_| !rng.gen_ratio(1, 5)) {
                t += 10;
                let fx = s.apply(&e, t);
                fold(&mut h, &s, &fx);
            }
        }
    }
    (hex::encode(h.finalize()), most_pending)
}

#[test]
fn replayed_log_placements_reasons_and_effects_are_pinned() {
    let cases: &[(u64, usize, &str)] = &[
        (
            11,
            8,
            "42ba187d53a027d9e2ad7aa7f4c24f91c74b62f3c6b2249694658857a7669834",
        ),
        (
            12,
            30,
            "46065cd964f332b616aaee5e8212398dfc70cae94eaf170c232037d98863140f",
        ),
    ];
    for &(seed, nodes, want) in cases {
        let (got, most_pending) = replay_digest(seed, nodes);
        assert!(
            most_pending > 0,
            "seed {seed}: no pod was ever Pending with a reason"
        );
        check(&format!("replay seed={seed}"), &got, want);
    }
}

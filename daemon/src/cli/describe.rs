//! `kommit describe KIND NAME`: one object as `kubectl describe` shows it. A pod as text
//! (containers, conditions, events); a node with the pods bound to it; every other kind as
//! its Kubernetes object (the YAML of `kommit get KIND NAME -o yaml`), followed by what it
//! relates to: a workload's pods, the pods a claim or budget covers, a service's endpoints.

use super::get::fetch_state;
use super::{kube, kube_workloads};
use anyhow::Context;
use kommit_reconcilers::{ClusterState, Owner, PodRecord};
use std::path::PathBuf;

/// What `kommit describe` shows.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescribeKind {
    /// A pod.
    #[value(alias = "pods", alias = "po")]
    Pod,
    /// A node.
    #[value(alias = "nodes", alias = "no")]
    Node,
    /// A Deployment.
    #[value(alias = "deployments", alias = "deploy")]
    Deployment,
    /// A DaemonSet.
    #[value(alias = "daemonsets", alias = "ds")]
    Daemonset,
    /// A StatefulSet.
    #[value(alias = "statefulsets", alias = "sts")]
    Statefulset,
    /// A Job.
    #[value(alias = "jobs")]
    Job,
    /// A CronJob.
    #[value(alias = "cronjobs", alias = "cj")]
    Cronjob,
    /// A Service.
    #[value(alias = "services", alias = "svc")]
    Service,
    /// A PersistentVolumeClaim.
    #[value(alias = "persistentvolumeclaim", alias = "persistentvolumeclaims")]
    Pvc,
    /// A PersistentVolume (cluster-scoped: `-n` is ignored).
    #[value(alias = "persistentvolume", alias = "persistentvolumes")]
    Pv,
    /// A PodDisruptionBudget.
    #[value(alias = "poddisruptionbudget", alias = "poddisruptionbudgets")]
    Pdb,
}

/// Arguments of `kommit describe`.
#[derive(clap::Args, Debug)]
pub struct DescribeArgs {
    /// What to describe.
    #[arg(value_enum)]
    pub kind: DescribeKind,
    /// Its name.
    pub name: String,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// The node's data dir.
    #[arg(long, default_value = "/var/lib/kommit")]
    pub data_dir: PathBuf,
}

/// Runs `kommit describe`.
pub fn describe(args: DescribeArgs) -> anyhow::Result<u8> {
    let state = fetch_state(&args.data_dir)?;
    let text = describe_text(&state, args.kind, &args.namespace, &args.name)?;
    super::get::print_out(&text)?;
    Ok(0)
}

/// What `kommit describe` prints, or why the object cannot be shown. Pure.
pub fn describe_text(
    state: &ClusterState,
    kind: DescribeKind,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    let key = format!("{namespace}/{name}");
    let (what, object) = match kind {
        DescribeKind::Pod => {
            let p = super::pods::find_pod(state, namespace, name)?;
            return Ok(super::pods::describe_pod(state, p));
        }
        DescribeKind::Node => ("node", kube::node(state, name)),
        DescribeKind::Deployment => ("deployment", kube::deployment(state, &key)),
        DescribeKind::Daemonset => ("daemonset", kube::daemon_set(state, &key)),
        DescribeKind::Statefulset => ("statefulset", kube_workloads::stateful_set(state, &key)),
        DescribeKind::Job => ("job", kube_workloads::job(state, &key)),
        DescribeKind::Cronjob => ("cronjob", kube_workloads::cron_job(state, &key)),
        DescribeKind::Service => ("service", kube::service(state, &key)),
        DescribeKind::Pvc => ("persistentvolumeclaim", kube_workloads::claim(state, &key)),
        DescribeKind::Pv => (
            "persistentvolume",
            kube_workloads::persistent_volume(state, name),
        ),
        DescribeKind::Pdb => (
            "poddisruptionbudget",
            kube_workloads::disruption_budget(state, &key),
        ),
    };
    let object = object.with_context(|| match kind {
        DescribeKind::Node | DescribeKind::Pv => format!("{what} {name:?} not found"),
        _ => format!("{what} {name:?} not found in namespace {namespace:?}"),
    })?;
    let mut text = serde_saphyr::to_string(&object)?;
    match kind {
        DescribeKind::Service => {
            let eps = state.endpoints.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            text.push_str(&format!("Endpoints: ({} in total)\n", eps.len()));
            for e in eps {
                text.push_str(&format!(
                    "  {:<16} {:<40} {:<20} {}\n",
                    e.ip,
                    e.pod,
                    e.node,
                    if e.ready { "ready" } else { "not ready" }
                ));
            }
        }
        DescribeKind::Pv => {}
        _ => {
            let pods: Vec<&PodRecord> = state
                .pods
                .values()
                .filter(|p| relates(state, kind, namespace, name, &key, p))
                .collect();
            let title = match kind {
                DescribeKind::Node => "Non-terminated Pods",
                DescribeKind::Pvc => "Used By",
                DescribeKind::Pdb => "Covered Pods",
                _ => "Pods",
            };
            text.push_str(&pod_list(title, &pods));
        }
    }
    Ok(text)
}

/// Whether `p` belongs in the pod list of the object described.
fn relates(
    state: &ClusterState,
    kind: DescribeKind,
    namespace: &str,
    name: &str,
    key: &str,
    p: &PodRecord,
) -> bool {
    match kind {
        DescribeKind::Node => p.node.as_deref() == Some(name),
        DescribeKind::Deployment => match &p.owner {
            Owner::ReplicaSet(rs) => state
                .replica_sets
                .get(rs)
                .is_some_and(|r| !r.standalone && r.deployment == key),
            _ => false,
        },
        DescribeKind::Daemonset => p.owner == Owner::DaemonSet(key.to_string()),
        DescribeKind::Statefulset => p.owner == Owner::StatefulSet(key.to_string()),
        DescribeKind::Job => p.owner == Owner::Job(key.to_string()),
        DescribeKind::Cronjob => match &p.owner {
            Owner::Job(job) => state.cron_spawned.get(job).is_some_and(|s| s.cron == key),
            _ => false,
        },
        DescribeKind::Pvc => {
            p.namespace == namespace
                && p.spec.volumes.iter().any(|v| {
                    v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.claim_name.as_str() == name)
                })
        }
        DescribeKind::Pdb => state
            .desired
            .pod_disruption_budgets
            .get(key)
            .and_then(|b| b.spec.selector.as_ref())
            .is_some_and(|sel| p.namespace == namespace && sel.matches(&p.labels)),
        DescribeKind::Pod | DescribeKind::Service | DescribeKind::Pv => false,
    }
}

/// `title: (N in total)` and one line per pod: namespace, name, status word, node.
fn pod_list(title: &str, pods: &[&PodRecord]) -> String {
    let mut out = format!("{title}: ({} in total)\n", pods.len());
    for p in pods {
        out.push_str(&format!(
            "  {:<20} {:<40} {:<18} {}\n",
            p.namespace,
            p.name,
            kube::pod_status_word(p),
            p.node.as_deref().unwrap_or("<none>")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::get::{render, Args, Type};
    use kommit_reconcilers::{Entry, NodeInfo, PodPhase, PodStatusChange};
    use kommit_schemas::{Limits, SourceTree};
    use std::collections::BTreeMap;

    const MANIFESTS: &str = r#"apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{port: 5432}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: "busybox:1.36"}]
  volumeClaimTemplates:
    - metadata: {name: data}
      spec:
        accessModes: [ReadWriteOnce]
        resources: {requests: {storage: 1Gi}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: db}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: db}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: disk1}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: manual
  local: {path: /mnt/disk1}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [a]}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: disk2}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: other
  local: {path: /mnt/disk2}
  nodeAffinity:
    required:
      nodeSelectorTerms:
        - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [a]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: logs}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;

    /// Two nodes, the manifests adopted, every bound pod Running and Ready.
    fn cluster() -> ClusterState {
        let mut tree = SourceTree::default();
        tree.add("db.yaml", MANIFESTS.as_bytes());
        let desired = kommit_schemas::validate(&tree, &Limits::default()).expect("valid");
        let mut s = ClusterState::new();
        for name in ["a", "b"] {
            let info = NodeInfo {
                name: name.into(),
                address: format!("10.0.0.{}:7443", if name == "a" { 1 } else { 2 }),
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
                pods: 10,
                labels: BTreeMap::from([("kubernetes.io/hostname".into(), name.into())]),
                taints: vec![],
            };
            s.apply(&Entry::NodeUp { info }, 1);
        }
        let digest = desired.digest();
        s.apply(
            &Entry::Adopt {
                commit: "c1".into(),
                parent: None,
                desired,
                digest,
                by: None,
            },
            2,
        );
        let mut by_node: BTreeMap<String, Vec<PodStatusChange>> = BTreeMap::new();
        for (k, p) in &s.pods {
            if let Some(n) = &p.node {
                by_node.entry(n.clone()).or_default().push(PodStatusChange {
                    pod: k.clone(),
                    uid: p.uid.clone(),
                    phase: PodPhase::Running,
                    ready: true,
                    pod_ip: p.pod_ip,
                    ..Default::default()
                });
            }
        }
        for (node, changes) in by_node {
            s.apply(&Entry::PodStatus { node, changes }, 3);
        }
        s
    }

    fn table(s: &ClusterState, kind: Type) -> Vec<Vec<String>> {
        let args = Args {
            kind,
            name: None,
            namespace: "default".into(),
            all_namespaces: true,
            output: None,
            selector: None,
            data_dir: PathBuf::new(),
            watch: false,
        };
        render(&args, s, 4).1
    }

    #[test]
    fn budgets_and_volumes_list_with_their_status() {
        let s = cluster();
        assert_eq!(
            table(&s, Type::Pdb),
            [
                vec![
                    "NAMESPACE",
                    "NAME",
                    "MIN AVAILABLE",
                    "MAX UNAVAILABLE",
                    "ALLOWED DISRUPTIONS"
                ],
                vec!["default", "db", "2", "N/A", "1"],
            ]
        );
        // Volumes are cluster-scoped: no namespace column even with -A. The claim that
        // names class `manual` is bound to the volume of that class.
        assert_eq!(
            table(&s, Type::Pv),
            [
                vec![
                    "NAME",
                    "CAPACITY",
                    "ACCESS MODES",
                    "RECLAIM POLICY",
                    "STATUS",
                    "CLAIM",
                    "STORAGECLASS"
                ],
                vec![
                    "disk1",
                    "5Gi",
                    "RWO",
                    "Retain",
                    "Bound",
                    "default/logs",
                    "manual"
                ],
                vec!["disk2", "5Gi", "RWO", "Retain", "Available", "", "other"],
            ]
        );
    }

    #[test]
    fn describe_shows_each_kind_with_what_it_relates_to() {
        let s = cluster();
        let text = |kind, name: &str| describe_text(&s, kind, "default", name);
        let sts = text(DescribeKind::Statefulset, "db").expect("the StatefulSet");
        assert!(sts.contains("kind: StatefulSet"), "{sts}");
        assert!(sts.contains("Pods: (3 in total)"), "{sts}");
        for i in 0..3 {
            assert!(sts.contains(&format!("db-{i} ")), "{sts}");
        }
        let pdb = text(DescribeKind::Pdb, "db").expect("the budget");
        assert!(pdb.contains("disruptionsAllowed: 1"), "{pdb}");
        assert!(pdb.contains("currentHealthy: 3"), "{pdb}");
        assert!(pdb.contains("Covered Pods: (3 in total)"), "{pdb}");
        let pvc = text(DescribeKind::Pvc, "data-db-1").expect("the template's claim");
        assert!(pvc.contains("phase: Bound"), "{pvc}");
        assert!(pvc.contains("Used By: (1 in total)"), "{pvc}");
        assert!(pvc.contains("db-1 "), "{pvc}");
        let pv = text(DescribeKind::Pv, "disk1").expect("the volume");
        assert!(pv.contains("phase: Bound"), "{pv}");
        assert!(pv.contains("name: logs"), "{pv}");
        let svc = text(DescribeKind::Service, "db").expect("the service");
        assert!(svc.contains("Endpoints: (3 in total)"), "{svc}");
        let node = text(DescribeKind::Node, "a").expect("the node");
        assert!(node.contains("Non-terminated Pods:"), "{node}");
        let missing = text(DescribeKind::Job, "nope").expect_err("no such Job");
        assert_eq!(
            missing.to_string(),
            "job \"nope\" not found in namespace \"default\""
        );
        let missing = text(DescribeKind::Pv, "nope").expect_err("no such volume");
        assert_eq!(missing.to_string(), "persistentvolume \"nope\" not found");
    }
}

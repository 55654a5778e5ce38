//! The replicated state in Kubernetes' shapes, for `kommit get -o json|yaml` and
//! `kommit describe`: pods, Deployments, DaemonSets, Services, nodes and events as the
//! objects `kubectl get -o json` prints, so scripts written for kubectl read them. Pure:
//! state in, JSON values out.

use crate::git::time::Timestamp;
use kommit_reconcilers::services;
use kommit_reconcilers::{
    ClusterState, ContainerState, ContainerStatus, Owner, PodPhase, PodRecord, RolloutPhase,
};
use kommit_schemas::model::core::ServiceType;
use serde_json::{json, Map, Value};

/// RFC 3339 of a millisecond timestamp.
pub fn time(ms: u64) -> String {
    Timestamp((ms / 1000) as i64).to_string()
}

fn state_json(s: &ContainerState) -> Value {
    match s {
        ContainerState::Waiting { reason, message } => {
            let mut w = json!({"reason": reason});
            if let Some(m) = message {
                w["message"] = json!(m);
            }
            json!({"waiting": w})
        }
        ContainerState::Running { started_at } => {
            json!({"running": {"startedAt": time(*started_at)}})
        }
        ContainerState::Terminated {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => {
            let mut t = json!({"exitCode": exit_code, "reason": reason});
            if let Some(s) = started_at {
                t["startedAt"] = json!(time(*s));
            }
            if let Some(f) = finished_at {
                t["finishedAt"] = json!(time(*f));
            }
            json!({"terminated": t})
        }
    }
}

fn container_status(c: &ContainerStatus) -> Value {
    let mut v = json!({
        "name": c.name,
        "ready": c.ready,
        "restartCount": c.restarts,
        "image": c.image,
        "started": c.started,
        "state": c.state.as_ref().map(state_json).unwrap_or_else(|| json!({"waiting": {"reason": "ContainerCreating"}})),
    });
    if let Some(l) = &c.last_state {
        v["lastState"] = state_json(l);
    } else {
        v["lastState"] = json!({});
    }
    v
}

fn phase_name(p: PodPhase) -> &'static str {
    match p {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
        PodPhase::Unknown => "Unknown",
    }
}

fn owner_ref(o: &Owner) -> Option<Value> {
    let (kind, key) = match o {
        Owner::Pod(_) => return None,
        Owner::ReplicaSet(k) => ("ReplicaSet", k),
        Owner::DaemonSet(k) => ("DaemonSet", k),
        Owner::StatefulSet(k) => ("StatefulSet", k),
        Owner::Job(k) => {
            let name = k.split_once('/').map_or(k.as_str(), |(_, n)| n);
            return Some(
                json!({"apiVersion": "batch/v1", "kind": "Job", "name": name, "controller": true}),
            );
        }
        // A static pod is shown like Kubernetes' mirror pods: owned by its node.
        Owner::Static(node) => {
            return Some(
                json!({"apiVersion": "v1", "kind": "Node", "name": node, "controller": true}),
            )
        }
    };
    let name = key.split_once('/').map_or(key.as_str(), |(_, n)| n);
    Some(json!({"apiVersion": "apps/v1", "kind": kind, "name": name, "controller": true}))
}

fn host_ip(state: &ClusterState, node: &str) -> Option<String> {
    let a = &state.nodes.get(node)?.info.address;
    Some(
        a.rsplit_once(':')
            .map_or(a.as_str(), |(h, _)| h)
            .to_string(),
    )
}

/// A pod as Kubernetes' v1 Pod.
pub fn pod(state: &ClusterState, p: &PodRecord) -> Value {
    let mut meta = json!({
        "name": p.name,
        "namespace": p.namespace,
        "uid": p.uid,
        "labels": p.labels,
        "creationTimestamp": time(p.created_at),
    });
    if let Some(o) = owner_ref(&p.owner) {
        meta["ownerReferences"] = json!([o]);
    }
    let containers: Vec<Value> = p
        .spec
        .containers
        .iter()
        .map(|c| json!({"name": c.name.as_str(), "image": c.image.as_str()}))
        .collect();
    let mut spec = json!({"containers": containers});
    if let Some(n) = &p.node {
        spec["nodeName"] = json!(n);
    }
    let cond = |t: &str, ok: bool| json!({"type": t, "status": if ok { "True" } else { "False" }});
    let init_done = p.init_containers.iter().all(|c| {
        matches!(
            &c.state,
            Some(ContainerState::Terminated { exit_code: 0, .. })
        )
    });
    let ready = p.ready && p.phase == PodPhase::Running;
    let mut status = json!({
        "phase": phase_name(p.phase),
        "conditions": [
            cond("PodScheduled", p.node.is_some()),
            cond("Initialized", p.node.is_some() && init_done),
            cond("ContainersReady", ready),
            cond("Ready", ready),
        ],
        "containerStatuses": p.containers.iter().map(container_status).collect::<Vec<_>>(),
    });
    if !p.init_containers.is_empty() {
        status["initContainerStatuses"] = json!(p
            .init_containers
            .iter()
            .map(container_status)
            .collect::<Vec<_>>());
    }
    if let Some(ip) = p.pod_ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    if let Some(h) = p.node.as_deref().and_then(|n| host_ip(state, n)) {
        status["hostIP"] = json!(h);
    }
    if let Some(t) = p.start_time {
        status["startTime"] = json!(time(t));
    }
    if let Some((r, m)) = &p.node_message {
        status["reason"] = json!(r);
        status["message"] = json!(m);
    } else if let Some(r) = &p.reason {
        status["conditions"][0]["reason"] = json!("Unschedulable");
        status["conditions"][0]["message"] = json!(r);
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status})
}

/// A Deployment with its status, as apps/v1.
pub fn deployment(state: &ClusterState, key: &str) -> Option<Value> {
    let d = state.desired.deployments.get(key)?;
    let replicas = d.spec.replicas.unwrap_or(1);
    let st = state.deployments.get(key);
    let pods: Vec<&PodRecord> = state
        .pods
        .values()
        .filter(|p| match &p.owner {
            Owner::ReplicaSet(rs) => state
                .replica_sets
                .get(rs)
                .is_some_and(|r| r.deployment == key),
            _ => false,
        })
        .collect();
    let ready = pods.iter().filter(|p| p.ready).count();
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    let cond = match st.map(|s| s.phase) {
        Some(RolloutPhase::Complete) => ("NewReplicaSetAvailable", "True"),
        Some(RolloutPhase::DeadlineExceeded) => ("ProgressDeadlineExceeded", "False"),
        Some(RolloutPhase::Paused) => ("DeploymentPaused", "Unknown"),
        _ => ("ReplicaSetUpdated", "True"),
    };
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": d.metadata.labels},
        "spec": {"replicas": replicas, "selector": d.spec.selector},
        "status": {
            "replicas": pods.len(),
            "readyReplicas": ready,
            "updatedReplicas": st.map_or(0, |s| s.updated),
            "availableReplicas": st.map_or(0, |s| s.available),
            "unavailableReplicas": (replicas as usize).saturating_sub(st.map_or(0, |s| s.available as usize)),
            "conditions": [{"type": "Progressing", "status": cond.1, "reason": cond.0}],
        },
    }))
}

/// A DaemonSet with its status.
pub fn daemon_set(state: &ClusterState, key: &str) -> Option<Value> {
    let d = state.desired.daemon_sets.get(key)?;
    let pods: Vec<&PodRecord> = state
        .pods
        .values()
        .filter(|p| matches!(&p.owner, Owner::DaemonSet(k) if k == key))
        .collect();
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    Some(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": d.metadata.labels},
        "status": {
            "desiredNumberScheduled": pods.len(),
            "currentNumberScheduled": pods.iter().filter(|p| p.node.is_some()).count(),
            "numberReady": pods.iter().filter(|p| p.ready).count(),
        },
    }))
}

/// A Service as v1 Service: its spec with the ClusterIP and NodePorts the state gave it, and
/// `status.loadBalancer.ingress[].ip` for a LoadBalancer Service kommit serves (the ready
/// nodes' addresses, as k3s's ServiceLB reports them).
pub fn service(state: &ClusterState, key: &str) -> Option<Value> {
    let s = state.desired.services.get(key)?;
    let (ns, name) = key.split_once('/').unwrap_or(("default", key));
    let mut spec = serde_json::to_value(&s.spec).unwrap_or(Value::Null);
    if let Some(ip) = state.service_ips.get(key) {
        spec["clusterIP"] = json!(ip.to_string());
    } else if s.spec.service_type() != ServiceType::ExternalName && spec.get("clusterIP").is_none()
    {
        spec["clusterIP"] = json!("None");
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for (i, p) in ports.iter_mut().enumerate() {
            if let Some(n) = services::node_port(state, key, i) {
                p["nodePort"] = json!(n);
            }
        }
    }
    let mut load_balancer = json!({});
    let ingress = services::load_balancer_ingress(state, key);
    if !ingress.is_empty() {
        load_balancer["ingress"] = ingress
            .iter()
            .map(|ip| json!({"ip": ip.to_string()}))
            .collect();
    }
    Some(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": s.metadata.labels},
        "spec": spec,
        "status": {"loadBalancer": load_balancer},
    }))
}

/// A node as v1 Node.
pub fn node(state: &ClusterState, name: &str) -> Option<Value> {
    let n = state.nodes.get(name)?;
    let mut labels = n.info.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), name.to_string());
    let ip = host_ip(state, name).unwrap_or_default();
    Some(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "creationTimestamp": time(n.joined_at)},
        "spec": {
            "podCIDR": n.pod_cidr.map(|c| c.to_string()),
            "unschedulable": n.drained,
            "taints": n.info.taints.iter().map(|t| json!({"key": t.key, "value": t.value, "effect": format!("{:?}", t.effect)})).collect::<Vec<_>>(),
        },
        "status": {
            "capacity": {"cpu": format!("{}m", n.info.cpu_millis), "memory": n.info.memory_bytes.to_string(), "pods": n.info.pods.to_string()},
            "allocatable": {"cpu": format!("{}m", n.info.cpu_millis), "memory": n.info.memory_bytes.to_string(), "pods": n.info.pods.to_string()},
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": if n.ready { "True" } else { "Unknown" }}],
        },
    }))
}

/// Every pod event as v1 Event, oldest first.
pub fn events(state: &ClusterState) -> Vec<Value> {
    let mut out: Vec<(u64, Value)> = Vec::new();
    for p in state.pods.values() {
        for e in &p.events {
            out.push((
                e.at,
                json!({
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"namespace": p.namespace, "name": format!("{}.{:x}", p.name, e.at)},
                    "involvedObject": {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid},
                    "type": format!("{:?}", e.kind),
                    "reason": e.reason,
                    "message": e.message,
                    "count": e.count,
                    "lastTimestamp": time(e.at),
                    "source": {"host": p.node},
                }),
            ));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, v)| v).collect()
}

/// A Kubernetes List.
pub fn list(items: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert("apiVersion".into(), json!("v1"));
    m.insert("kind".into(), json!("List"));
    m.insert("items".into(), Value::Array(items));
    Value::Object(m)
}

/// kubectl's STATUS column of a pod: a waiting or terminated container's reason, else the
/// phase.
pub fn pod_status_word(p: &PodRecord) -> String {
    for c in p.init_containers.iter() {
        match &c.state {
            Some(ContainerState::Terminated { exit_code: 0, .. }) => continue,
            Some(ContainerState::Waiting { reason, .. }) if reason != "PodInitializing" => {
                return format!("Init:{reason}")
            }
            _ => {
                let done = p
                    .init_containers
                    .iter()
                    .filter(|c| {
                        matches!(
                            c.state,
                            Some(ContainerState::Terminated { exit_code: 0, .. })
                        )
                    })
                    .count();
                return format!("Init:{done}/{}", p.init_containers.len());
            }
        }
    }
    for c in &p.containers {
        match &c.state {
            Some(ContainerState::Waiting { reason, .. })
                if reason != "ContainerCreating" || p.phase != PodPhase::Pending =>
            {
                return reason.clone()
            }
            Some(ContainerState::Terminated { reason, .. }) if p.phase == PodPhase::Running => {
                return reason.clone()
            }
            _ => {}
        }
    }
    if p.node.is_some() && p.phase == PodPhase::Pending && p.containers.is_empty() {
        return "ContainerCreating".into();
    }
    phase_name(p.phase).into()
}

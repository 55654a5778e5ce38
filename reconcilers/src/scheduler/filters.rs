//! The filters a pod puts on a node that do not depend on what else runs there: requests,
//! host ports, taints against tolerations, nodeSelector and required node affinity. The
//! controllers use them too (DaemonSet eligibility, NoExecute evictions), so they are public.

use super::HOSTNAME_LABEL;
use crate::types::Taint;
use kommit_schemas::model::pod::{
    Container, NodeSelectorOperator, NodeSelectorTerm, PodAffinityTerm, PodSpec, Protocol,
    TaintEffect, Toleration, TolerationOperator,
};
use std::collections::BTreeMap;

/// cpu millicores and memory bytes a pod requests: the larger of the sum over containers and
/// the largest init container, as Kubernetes computes it.
pub fn pod_requests(spec: &PodSpec) -> (u64, u64) {
    let req = |c: &Container, r: &str, milli: bool| {
        c.resources
            .as_ref()
            .and_then(|res| res.requests.get(r).or_else(|| res.limits.get(r)))
            .map(|q| if milli { q.milli() } else { q.units() })
            .unwrap_or(0)
    };
    let mut cpu = spec
        .containers
        .iter()
        .fold(0u64, |a, c| a.saturating_add(req(c, "cpu", true)));
    let mut mem = spec
        .containers
        .iter()
        .fold(0u64, |a, c| a.saturating_add(req(c, "memory", false)));
    for c in &spec.init_containers {
        cpu = cpu.max(req(c, "cpu", true));
        mem = mem.max(req(c, "memory", false));
    }
    (cpu, mem)
}

/// The (protocol, hostPort) pairs a pod needs.
pub fn host_ports(spec: &PodSpec) -> Vec<(Protocol, u16)> {
    let mut v: Vec<(Protocol, u16)> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter())
        .filter_map(|p| {
            p.host_port.map(|hp| {
                (
                    p.protocol.unwrap_or(Protocol::Tcp),
                    u16::try_from(hp.get()).expect("ports are bounded to 1..=65535"),
                )
            })
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Whether `tolerations` tolerate `taint`.
pub fn tolerates(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| {
        if t.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match t.operator.unwrap_or(TolerationOperator::Equal) {
            TolerationOperator::Exists => t.key.as_deref().is_none_or(|k| k == taint.key),
            TolerationOperator::Equal => {
                t.key.as_deref() == Some(taint.key.as_str())
                    && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
        }
    })
}

/// The first NoSchedule/NoExecute taint `tolerations` do not tolerate.
pub fn untolerated<'t>(tolerations: &[Toleration], taints: &'t [Taint]) -> Option<&'t Taint> {
    taints.iter().find(|t| {
        matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
            && !tolerates(tolerations, t)
    })
}

/// The first NoExecute taint `tolerations` do not tolerate (the pod must leave).
pub fn untolerated_no_execute<'t>(
    tolerations: &[Toleration],
    taints: &'t [Taint],
) -> Option<&'t Taint> {
    taints
        .iter()
        .find(|t| t.effect == TaintEffect::NoExecute && !tolerates(tolerations, t))
}

/// A node's value for label `key`; the hostname label is implied by the node's name.
pub(super) fn label<'a>(
    node_name: &'a str,
    labels: &'a BTreeMap<String, String>,
    key: &str,
) -> Option<&'a str> {
    match labels.get(key) {
        Some(v) => Some(v.as_str()),
        None if key == HOSTNAME_LABEL => Some(node_name),
        None => None,
    }
}

/// Whether a node matches one node selector term (the hostname label defaults to the
/// node's name).
pub(crate) fn term_matches(
    term: &NodeSelectorTerm,
    node_name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    // An empty term matches no node, as in Kubernetes.
    !term.match_expressions.is_empty()
        && term.match_expressions.iter().all(|e| {
            let v = label(node_name, labels, &e.key);
            let num = |s: &str| s.parse::<i64>().ok();
            match e.operator {
                NodeSelectorOperator::In => v.is_some_and(|v| e.values.iter().any(|x| x == v)),
                NodeSelectorOperator::NotIn => v.is_none_or(|v| !e.values.iter().any(|x| x == v)),
                NodeSelectorOperator::Exists => v.is_some(),
                NodeSelectorOperator::DoesNotExist => v.is_none(),
                NodeSelectorOperator::Gt | NodeSelectorOperator::Lt => {
                    match (v.and_then(num), e.values.first().and_then(|x| num(x))) {
                        (Some(a), Some(b)) if e.values.len() == 1 => {
                            if e.operator == NodeSelectorOperator::Gt {
                                a > b
                            } else {
                                a < b
                            }
                        }
                        _ => false,
                    }
                }
            }
        })
}

/// Whether the pod's nodeSelector and required node affinity accept the node.
pub fn node_matches(spec: &PodSpec, node_name: &str, labels: &BTreeMap<String, String>) -> bool {
    let selector_ok = spec
        .node_selector
        .iter()
        .all(|(k, v)| label(node_name, labels, k) == Some(v.as_str()));
    let affinity_ok = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_none_or(|sel| {
            sel.node_selector_terms
                .iter()
                .any(|t| term_matches(t, node_name, labels))
        });
    selector_ok && affinity_ok
}

/// The pod's required anti-affinity terms.
pub(super) fn anti_terms(spec: &PodSpec) -> &[PodAffinityTerm] {
    spec.affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .map(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_slice()
        })
        .unwrap_or(&[])
}

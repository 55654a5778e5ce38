//! Why a pod stays Pending: one kube-scheduler reason per node, folded into a histogram and
//! worded like kube-scheduler's FitError ("0/5 nodes are available: 3 Insufficient memory,
//! 2 node(s) didn't match Pod's node affinity/selector.").
//!
//! This runs only for pods no node accepts. It walks the nodes in the same filter order as
//! kube-scheduler: static filters first (readiness, cordon, pin, taints, selector), then the
//! dynamic ones (ports; pods, cpu and memory together; anti-affinity).

use super::filters::{node_matches, untolerated};
use super::Scheduler;
use kommit_schemas::model::pod::PodSpec;
use std::collections::BTreeMap;

/// Why a node fails a pod, one kube-scheduler reason each.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Reason {
    NotReady,
    Cordoned,
    Taint(String),
    Selector,
    Ports,
    TooManyPods,
    Cpu,
    Memory,
    AntiAffinity,
}

impl Reason {
    fn text(&self) -> String {
        match self {
            Reason::NotReady => {
                "node(s) had untolerated taint {node.kubernetes.io/unreachable: }".into()
            }
            Reason::Cordoned => "node(s) were unschedulable".into(),
            Reason::Taint(t) => format!("node(s) had untolerated taint {{{t}}}"),
            Reason::Selector => "node(s) didn't match Pod's node affinity/selector".into(),
            Reason::Ports => "node(s) didn't have free ports for the requested pod ports".into(),
            Reason::TooManyPods => "Too many pods".into(),
            Reason::Cpu => "Insufficient cpu".into(),
            Reason::Memory => "Insufficient memory".into(),
            Reason::AntiAffinity => "node(s) didn't match pod anti-affinity rules".into(),
        }
    }
}

/// Formats a reason histogram the way kube-scheduler's FitError does.
fn fit_error(nodes: usize, hist: &BTreeMap<Reason, usize>) -> String {
    if nodes == 0 {
        return "0/0 nodes are available: no nodes available to schedule pods.".into();
    }
    let mut parts: Vec<String> = hist
        .iter()
        .map(|(r, n)| format!("{n} {}", r.text()))
        .collect();
    parts.sort();
    format!("0/{nodes} nodes are available: {}.", parts.join(", "))
}

impl Scheduler<'_> {
    /// The static filters: the first one node `n` fails for a pod with `spec` (pinned to
    /// `pinned`, for DaemonSet pods), if any.
    pub(super) fn static_reason(
        &self,
        spec: &PodSpec,
        pinned: Option<&str>,
        n: usize,
    ) -> Option<Reason> {
        let node = self.nodes[n];
        if !node.ready {
            return Some(Reason::NotReady);
        }
        // DaemonSet pods tolerate cordons, as in Kubernetes.
        if node.cordoned && pinned.is_none() {
            return Some(Reason::Cordoned);
        }
        if pinned.is_some_and(|p| p != node.name) {
            return Some(Reason::Selector);
        }
        if let Some(t) = untolerated(&spec.tolerations, node.taints) {
            return Some(Reason::Taint(format!(
                "{}: {}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )));
        }
        if !node_matches(spec, node.name, node.labels) {
            return Some(Reason::Selector);
        }
        None
    }

    /// Dynamic reasons node `n` fails group `g`'s pod; none pushed when it fits.
    fn dynamic_reasons(&self, g: usize, n: usize, out: &mut Vec<Reason>) {
        let grp = &self.groups[g];
        let r = &self.res[n];
        if grp.ports.iter().any(|p| self.ports[n].contains(p)) {
            out.push(Reason::Ports);
            return;
        }
        let before = out.len();
        if r.pods >= r.max_pods {
            out.push(Reason::TooManyPods);
        }
        if r.cpu_used.saturating_add(grp.cpu) > r.cpu_cap {
            out.push(Reason::Cpu);
        }
        if r.mem_used.saturating_add(grp.mem) > r.mem_cap {
            out.push(Reason::Memory);
        }
        if out.len() > before {
            return;
        }
        if self.anti_affinity_blocks(g, n) {
            out.push(Reason::AntiAffinity);
        }
    }

    fn node_reasons(
        &self,
        g: usize,
        spec: &PodSpec,
        pinned: Option<&str>,
        n: usize,
        out: &mut Vec<Reason>,
    ) {
        match self.static_reason(spec, pinned, n) {
            Some(r) => out.push(r),
            None => self.dynamic_reasons(g, n, out),
        }
    }

    /// The FitError for a pod of group `g` that no node accepts.
    pub(super) fn explain(&self, g: usize, spec: &PodSpec, pinned: Option<&str>) -> String {
        let mut hist: BTreeMap<Reason, usize> = BTreeMap::new();
        let mut buf = Vec::new();
        match pinned {
            // Every node but the pinned one fails the same way: down, or not the pin. Count
            // those without walking them.
            Some(pin) => {
                let pin_n = self.node_index.get(pin).map(|&i| i as usize);
                let pin_down = pin_n.is_some_and(|n| !self.nodes[n].ready);
                let others = self.nodes.len() - usize::from(pin_n.is_some());
                let others_down = self.not_ready - usize::from(pin_down);
                if others_down > 0 {
                    hist.insert(Reason::NotReady, others_down);
                }
                if others > others_down {
                    hist.insert(Reason::Selector, others - others_down);
                }
                if let Some(n) = pin_n {
                    self.node_reasons(g, spec, pinned, n, &mut buf);
                }
            }
            None => {
                for n in 0..self.nodes.len() {
                    self.node_reasons(g, spec, None, n, &mut buf);
                    for r in buf.drain(..) {
                        *hist.entry(r).or_insert(0) += 1;
                    }
                }
            }
        }
        for r in buf.drain(..) {
            *hist.entry(r).or_insert(0) += 1;
        }
        fit_error(self.nodes.len(), &hist)
    }
}

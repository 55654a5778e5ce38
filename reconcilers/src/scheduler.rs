//! The scheduler: a pure function of (pods to place, nodes, pods already bound) that returns a
//! node or a Kubernetes-worded reason for every pod to place.
//!
//! Shape, and why: every node runs this on the same inputs and must get the same answer, and
//! it must place 10,000 pods on 1,000 nodes in well under a second. So:
//! - nodes are sorted by name and pods by key inside the function, so no caller order leaks;
//! - pods are grouped by (owner, template hash): the static filters (readiness, cordon,
//!   taints, nodeSelector, required node affinity) run once per group, not once per pod;
//! - dynamic state (requests, host ports, anti-affinity counts per topology domain, pods per
//!   owner per node) lives in flat vectors indexed by node, updated as pods are placed;
//! - the score is (fewest pods of the same owner, least allocated, rendezvous hash of
//!   (pod uid, node)); the hash is only computed on ties.
//!
//! Reasons follow kube-scheduler's filter order and wording, one histogram over nodes.

use crate::ids::{fnv64, mix};
use crate::types::Taint;
use kommit_schemas::model::meta::LabelSelector;
use kommit_schemas::model::pod::{
    NodeSelectorOperator, NodeSelectorTerm, PodAffinityTerm, PodSpec, Protocol, TaintEffect,
    Toleration, TolerationOperator,
};
use std::collections::{BTreeMap, BTreeSet};

/// The label every node carries with its own name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// A node as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct NodeView<'a> {
    /// The node's name.
    pub name: &'a str,
    /// Up (heartbeating).
    pub ready: bool,
    /// Cordoned or drained.
    pub cordoned: bool,
    /// Labels (the hostname label is implied).
    pub labels: &'a BTreeMap<String, String>,
    /// Taints.
    pub taints: &'a [Taint],
    /// Allocatable cpu, millicores.
    pub cpu_millis: u64,
    /// Allocatable memory, bytes.
    pub memory_bytes: u64,
    /// Most pods.
    pub max_pods: u32,
}

/// A pod as the scheduler sees it.
#[derive(Clone, Debug)]
pub struct PodView<'a> {
    /// `namespace/name`.
    pub key: &'a str,
    /// The UID (rendezvous tie-break).
    pub uid: &'a str,
    /// The namespace.
    pub namespace: &'a str,
    /// The owner's id (spread is counted per owner).
    pub owner: &'a str,
    /// The template hash; pods with equal (owner, template hash) share constraints.
    pub template_hash: &'a str,
    /// Labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The spec.
    pub spec: &'a PodSpec,
    /// For DaemonSet pods, the only eligible node.
    pub pinned_node: Option<&'a str>,
}

/// The outcome for one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Bind to this node.
    Bind(String),
    /// Stay Pending, for this reason.
    Unschedulable(String),
}

/// cpu millicores and memory bytes a pod requests: the larger of the sum over containers and
/// the largest init container, as Kubernetes computes it.
pub fn pod_requests(spec: &PodSpec) -> (u64, u64) {
    let req = |c: &kommit_schemas::model::pod::Container, r: &str, milli: bool| {
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

fn label<'a>(
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

fn term_matches(
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

/// Why a node fails a pod, one kube-scheduler reason each.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Reason {
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

const NO_DOMAIN: u32 = u32::MAX;

/// One distinct required anti-affinity term, counted per topology domain.
struct Term {
    namespaces: Vec<String>,
    selector: LabelSelector,
    /// Domain id of each node (NO_DOMAIN when the node lacks the topology label).
    domain: Vec<u32>,
    /// Pods matching the selector, per domain.
    matching: Vec<u32>,
    /// Pods carrying this term, per domain.
    carriers: Vec<u32>,
}

/// Constraints shared by every pod of one (owner, template hash).
struct Group {
    owner: usize,
    cpu: u64,
    mem: u64,
    ports: Vec<(Protocol, u16)>,
    /// Terms this group's pods carry.
    carries: Vec<usize>,
    /// Terms whose selector matches this group's pods.
    matches: Vec<usize>,
    /// Nodes passing the static filters (computed lazily, unpinned pods only).
    candidates: Option<Vec<u32>>,
}

struct NodeState {
    cpu_used: u64,
    mem_used: u64,
    pods: u32,
    ports: BTreeSet<(Protocol, u16)>,
    name_hash: u64,
}

fn anti_terms(spec: &PodSpec) -> &[PodAffinityTerm] {
    spec.affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .map(|p| {
            p.required_during_scheduling_ignored_during_execution
                .as_slice()
        })
        .unwrap_or(&[])
}

struct Scheduler<'a> {
    nodes: Vec<&'a NodeView<'a>>,
    node_index: BTreeMap<&'a str, u32>,
    state: Vec<NodeState>,
    terms: Vec<Term>,
    term_index: BTreeMap<String, usize>,
    groups: Vec<Group>,
    group_index: BTreeMap<(&'a str, &'a str), usize>,
    owners: BTreeMap<&'a str, usize>,
    /// Pods per owner per node.
    owner_counts: Vec<Vec<u32>>,
}

impl<'a> Scheduler<'a> {
    fn new(nodes: &'a [NodeView<'a>]) -> Self {
        let mut sorted: Vec<&NodeView> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(b.name));
        sorted.dedup_by(|a, b| a.name == b.name);
        let node_index = sorted
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name, u32::try_from(i).expect("fewer than 2^32 nodes")))
            .collect();
        let state = sorted
            .iter()
            .map(|n| NodeState {
                cpu_used: 0,
                mem_used: 0,
                pods: 0,
                ports: BTreeSet::new(),
                name_hash: fnv64(n.name.as_bytes()),
            })
            .collect();
        Scheduler {
            nodes: sorted,
            node_index,
            state,
            terms: Vec::new(),
            term_index: BTreeMap::new(),
            groups: Vec::new(),
            group_index: BTreeMap::new(),
            owners: BTreeMap::new(),
            owner_counts: Vec::new(),
        }
    }

    fn term_id(&mut self, namespace: &str, term: &PodAffinityTerm) -> usize {
        let mut namespaces: Vec<String> = if term.namespaces.is_empty() {
            vec![namespace.to_owned()]
        } else {
            term.namespaces.iter().map(|n| n.to_string()).collect()
        };
        namespaces.sort();
        namespaces.dedup();
        let key = serde_json::to_string(&(
            &namespaces,
            &term.label_selector,
            term.topology_key.as_str(),
        ))
        .expect("terms are JSON-representable");
        if let Some(&i) = self.term_index.get(&key) {
            return i;
        }
        let topo = term.topology_key.as_str();
        let mut values: BTreeMap<&str, u32> = BTreeMap::new();
        let domain: Vec<u32> = self
            .nodes
            .iter()
            .map(|n| match label(n.name, n.labels, topo) {
                Some(v) => {
                    let next = u32::try_from(values.len()).expect("fewer than 2^32 domains");
                    *values.entry(v).or_insert(next)
                }
                None => NO_DOMAIN,
            })
            .collect();
        let ndom = values.len();
        let id = self.terms.len();
        // Pods already grouped may match the new term.
        self.terms.push(Term {
            namespaces,
            selector: term.label_selector.clone(),
            domain,
            matching: vec![0; ndom],
            carriers: vec![0; ndom],
        });
        self.term_index.insert(key, id);
        id
    }

    /// The group of a pod, created on first sight. Terms must all be registered first
    /// (see `register_terms`) so `matches` is complete.
    fn group(&mut self, p: &PodView<'a>) -> usize {
        if let Some(&g) = self.group_index.get(&(p.owner, p.template_hash)) {
            return g;
        }
        let next_owner = self.owners.len();
        let owner = *self.owners.entry(p.owner).or_insert(next_owner);
        if owner == self.owner_counts.len() {
            self.owner_counts.push(vec![0; self.nodes.len()]);
        }
        let carries: Vec<usize> = anti_terms(p.spec)
            .iter()
            .map(|t| {
                let key_ns = p.namespace;
                self.term_index_of(key_ns, t)
            })
            .collect();
        let matches = self
            .terms
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.namespaces.iter().any(|n| n == p.namespace) && t.selector.matches(p.labels)
            })
            .map(|(i, _)| i)
            .collect();
        let (cpu, mem) = pod_requests(p.spec);
        let g = self.groups.len();
        self.groups.push(Group {
            owner,
            cpu,
            mem,
            ports: host_ports(p.spec),
            carries,
            matches,
            candidates: None,
        });
        self.group_index.insert((p.owner, p.template_hash), g);
        g
    }

    fn term_index_of(&self, namespace: &str, term: &PodAffinityTerm) -> usize {
        let mut namespaces: Vec<String> = if term.namespaces.is_empty() {
            vec![namespace.to_owned()]
        } else {
            term.namespaces.iter().map(|n| n.to_string()).collect()
        };
        namespaces.sort();
        namespaces.dedup();
        let key = serde_json::to_string(&(
            &namespaces,
            &term.label_selector,
            term.topology_key.as_str(),
        ))
        .expect("terms are JSON-representable");
        *self
            .term_index
            .get(&key)
            .expect("every term is registered before groups are built")
    }

    fn static_reason(&self, spec: &PodSpec, pinned: Option<&str>, n: usize) -> Option<Reason> {
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

    /// Dynamic reasons a node fails a group's pod; empty when it fits.
    fn dynamic_reasons(&self, g: usize, n: usize, out: &mut Vec<Reason>) {
        let grp = &self.groups[g];
        let st = &self.state[n];
        let node = self.nodes[n];
        if grp.ports.iter().any(|p| st.ports.contains(p)) {
            out.push(Reason::Ports);
            return;
        }
        let before = out.len();
        if st.pods >= node.max_pods {
            out.push(Reason::TooManyPods);
        }
        if st.cpu_used.saturating_add(grp.cpu) > node.cpu_millis {
            out.push(Reason::Cpu);
        }
        if st.mem_used.saturating_add(grp.mem) > node.memory_bytes {
            out.push(Reason::Memory);
        }
        if out.len() > before {
            return;
        }
        if self.anti_affinity_blocks(g, n) {
            out.push(Reason::AntiAffinity);
        }
    }

    fn anti_affinity_blocks(&self, g: usize, n: usize) -> bool {
        let grp = &self.groups[g];
        grp.carries.iter().any(|&t| {
            let d = self.terms[t].domain[n];
            d != NO_DOMAIN && self.terms[t].matching[d as usize] > 0
        }) || grp.matches.iter().any(|&t| {
            let d = self.terms[t].domain[n];
            d != NO_DOMAIN && self.terms[t].carriers[d as usize] > 0
        })
    }

    #[inline]
    fn fits(&self, g: usize, n: usize) -> bool {
        let grp = &self.groups[g];
        let st = &self.state[n];
        let node = self.nodes[n];
        st.pods < node.max_pods
            && st.cpu_used.saturating_add(grp.cpu) <= node.cpu_millis
            && st.mem_used.saturating_add(grp.mem) <= node.memory_bytes
            && (grp.ports.is_empty() || !grp.ports.iter().any(|p| st.ports.contains(p)))
            && ((grp.carries.is_empty() && grp.matches.is_empty())
                || !self.anti_affinity_blocks(g, n))
    }

    fn place(&mut self, g: usize, n: usize) {
        let grp = &self.groups[g];
        let st = &mut self.state[n];
        st.cpu_used = st.cpu_used.saturating_add(grp.cpu);
        st.mem_used = st.mem_used.saturating_add(grp.mem);
        st.pods = st.pods.saturating_add(1);
        st.ports.extend(grp.ports.iter().copied());
        self.owner_counts[grp.owner][n] += 1;
        for &t in &grp.carries {
            let d = self.terms[t].domain[n];
            if d != NO_DOMAIN {
                self.terms[t].carriers[d as usize] += 1;
            }
        }
        for &t in &grp.matches {
            let d = self.terms[t].domain[n];
            if d != NO_DOMAIN {
                self.terms[t].matching[d as usize] += 1;
            }
        }
    }

    /// Least-allocated score (0..=100, higher is emptier) after adding the group's requests.
    #[inline]
    fn least_allocated(&self, g: usize, n: usize) -> u64 {
        let grp = &self.groups[g];
        let st = &self.state[n];
        let node = self.nodes[n];
        let part = |used: u64, req: u64, cap: u64| {
            cap.saturating_sub(used.saturating_add(req))
                .saturating_mul(100)
                .checked_div(cap)
                .unwrap_or(0)
        };
        (part(st.cpu_used, grp.cpu, node.cpu_millis)
            + part(st.mem_used, grp.mem, node.memory_bytes))
            / 2
    }

    fn choose(&mut self, g: usize, p: &PodView<'a>) -> Result<usize, String> {
        if let Some(pin) = p.pinned_node {
            let n = self.node_index.get(pin).map(|&i| i as usize);
            if let Some(n) = n {
                if self.static_reason(p.spec, Some(pin), n).is_none() && self.fits(g, n) {
                    return Ok(n);
                }
            }
            return Err(self.explain(g, p));
        }
        if self.groups[g].candidates.is_none() {
            let c: Vec<u32> = (0..self.nodes.len())
                .filter(|&n| self.static_reason(p.spec, None, n).is_none())
                .map(|n| u32::try_from(n).expect("fewer than 2^32 nodes"))
                .collect();
            self.groups[g].candidates = Some(c);
        }
        let uid_hash = fnv64(p.uid.as_bytes());
        let owner = self.groups[g].owner;
        let mut best: Option<(usize, u32, u64, u64)> = None;
        let candidates = self.groups[g]
            .candidates
            .take()
            .expect("candidates computed above");
        for &n in &candidates {
            let n = n as usize;
            if !self.fits(g, n) {
                continue;
            }
            let spread = self.owner_counts[owner][n];
            let free = self.least_allocated(g, n);
            let better = match best {
                None => true,
                Some((bn, bs, bf, bh)) => {
                    if spread != bs {
                        spread < bs
                    } else if free != bf {
                        free > bf
                    } else {
                        let h = mix(uid_hash, self.state[n].name_hash);
                        let bh = if bh == 0 {
                            mix(uid_hash, self.state[bn].name_hash)
                        } else {
                            bh
                        };
                        best = Some((bn, bs, bf, bh));
                        h > bh
                    }
                }
            };
            if better {
                best = Some((n, spread, free, 0));
            }
        }
        self.groups[g].candidates = Some(candidates);
        match best {
            Some((n, ..)) => Ok(n),
            None => Err(self.explain(g, p)),
        }
    }

    fn explain(&self, g: usize, p: &PodView<'a>) -> String {
        let mut hist: BTreeMap<Reason, usize> = BTreeMap::new();
        let mut buf = Vec::new();
        for n in 0..self.nodes.len() {
            buf.clear();
            match self.static_reason(p.spec, p.pinned_node, n) {
                Some(r) => buf.push(r),
                None => self.dynamic_reasons(g, n, &mut buf),
            }
            for r in buf.drain(..) {
                *hist.entry(r).or_insert(0) += 1;
            }
        }
        fit_error(self.nodes.len(), &hist)
    }
}

/// Places `pending` pods on `nodes`, given the pods already `bound` (pod, node name). Returns
/// one decision per pending pod, keyed by pod key. The result does not depend on the order
/// of any input slice. Bound pods are never moved; bound pods naming an unknown node are
/// ignored.
pub fn schedule<'a>(
    pending: &[PodView<'a>],
    nodes: &'a [NodeView<'a>],
    bound: &[(PodView<'a>, &'a str)],
) -> BTreeMap<String, Decision> {
    let mut s = Scheduler::new(nodes);
    // Register every required anti-affinity term first, so each group's match list is whole.
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    for p in pending.iter().chain(bound.iter().map(|(p, _)| p)) {
        if seen.insert((p.owner, p.template_hash)) {
            for t in anti_terms(p.spec) {
                s.term_id(p.namespace, t);
            }
        }
    }
    // Account for what is already running, in a fixed order.
    let mut bound_sorted: Vec<&(PodView, &str)> = bound.iter().collect();
    bound_sorted.sort_by(|a, b| a.0.key.cmp(b.0.key));
    for (p, node) in bound_sorted {
        let g = s.group(p);
        if let Some(&n) = s.node_index.get(node) {
            s.place(g, n as usize);
        }
    }
    let mut order: Vec<&PodView> = pending.iter().collect();
    order.sort_by(|a, b| a.key.cmp(b.key));
    let mut out = BTreeMap::new();
    for p in order {
        let g = s.group(p);
        let d = match s.choose(g, p) {
            Ok(n) => {
                s.place(g, n);
                Decision::Bind(s.nodes[n].name.to_owned())
            }
            Err(reason) => Decision::Unschedulable(reason),
        };
        out.insert(p.key.to_owned(), d);
    }
    out
}

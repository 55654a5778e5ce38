//! The scheduler: a pure function of (pods to place, nodes, pods already bound) that returns a
//! node or a Kubernetes-worded reason for every pod to place.
//!
//! Shape, and why: every node runs this on the same inputs and must get the same answer, and
//! it must place 10,000 pods on 1,000 nodes in a small fraction of a second. So:
//! - nodes are sorted by name and pods by key inside the function, so no caller order leaks;
//! - pods are grouped by (owner, template hash): the static filters (readiness, cordon,
//!   taints, nodeSelector, required node affinity; [`filters`]) run once per group, not once
//!   per pod, and leave the group a candidate list;
//! - dynamic state (requests, host ports, anti-affinity counts per topology domain, pods per
//!   owner per node) lives in flat vectors indexed by node, updated as pods are placed;
//! - the score ([`score`]) is (fewest pods of the same owner, least allocated, rendezvous hash
//!   of (pod uid, node)), packed into one integer per node so the scan compares once;
//! - a pod no node accepts gets a reason ([`explain`]); the walk over all nodes that builds it
//!   runs once per group until something is placed, since until then every pod of the group
//!   fails the same way.

mod explain;
mod filters;
pub(crate) use filters::term_matches;
mod score;

pub use filters::{
    host_ports, node_matches, pod_requests, tolerates, untolerated, untolerated_no_execute,
};

use crate::ids::fnv64;
use crate::types::Taint;
use filters::{anti_terms, label};
use kommit_schemas::model::meta::LabelSelector;
use kommit_schemas::model::pod::{PodAffinityTerm, PodSpec, Protocol};
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

impl<'a> From<&'a crate::types::NodeRecord> for NodeView<'a> {
    /// The scheduler's view of a recorded node: its pod capacity is the smaller of its
    /// `pods` fact and what its pod CIDR holds (0 without a CIDR).
    fn from(n: &'a crate::types::NodeRecord) -> Self {
        NodeView {
            name: &n.info.name,
            ready: n.ready,
            cordoned: n.drained,
            labels: &n.info.labels,
            taints: &n.info.taints,
            cpu_millis: n.info.cpu_millis,
            memory_bytes: n.info.memory_bytes,
            max_pods: n
                .pod_cidr
                .map(|c| n.info.pods.min(crate::alloc::pod_capacity(c)))
                .unwrap_or(0),
        }
    }
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

/// Where [`schedule_indexed`] puts one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On this node, an index into the `nodes` slice given.
    Node(usize),
    /// Nowhere: it stays Pending, for this reason.
    Unschedulable(String),
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
    /// Nodes passing the static filters, an index into `Scheduler::candidate_lists`
    /// (computed lazily, unpinned pods only).
    candidates: Option<usize>,
}

/// A node's capacity and what is placed on it so far.
struct Res {
    cpu_used: u64,
    mem_used: u64,
    cpu_cap: u64,
    mem_cap: u64,
    pods: u32,
    max_pods: u32,
}

/// The key an anti-affinity term is deduplicated by: its namespaces (the pod's own when
/// none are listed), selector and topology key.
fn term_key(namespace: &str, term: &PodAffinityTerm) -> (Vec<String>, String) {
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
    (namespaces, key)
}

struct Scheduler<'a> {
    /// Nodes sorted by name, duplicates dropped.
    nodes: Vec<&'a NodeView<'a>>,
    /// Each sorted node's index in the caller's slice.
    input_index: Vec<usize>,
    node_index: BTreeMap<&'a str, u32>,
    not_ready: usize,
    res: Vec<Res>,
    ports: Vec<BTreeSet<(Protocol, u16)>>,
    name_hash: Vec<u64>,
    terms: Vec<Term>,
    term_index: BTreeMap<String, usize>,
    groups: Vec<Group>,
    group_index: BTreeMap<(&'a str, &'a str), usize>,
    /// The last group looked up (pods come sorted, so a group's pods are mostly adjacent).
    last_group: Option<(&'a str, &'a str, usize)>,
    owners: BTreeMap<&'a str, usize>,
    /// Node lists passing the static filters, shared by groups whose static constraints
    /// (tolerations, nodeSelector, node affinity) are equal, keyed by those constraints.
    candidate_lists: Vec<Vec<u32>>,
    candidate_index: BTreeMap<String, usize>,
    /// Pods per owner per node.
    owner_counts: Vec<Vec<u32>>,
    /// Least-allocated score of each candidate node for group `score_group`.
    score: Vec<u32>,
    score_group: usize,
    /// Placements made so far: nothing changes between two equal values.
    placed: u64,
    /// The last unpinned group no node accepted, when, and why.
    last_failure: Option<(usize, u64, String)>,
}

impl<'a> Scheduler<'a> {
    fn new(nodes: &'a [NodeView<'a>]) -> Self {
        let mut sorted: Vec<(usize, &NodeView)> = nodes.iter().enumerate().collect();
        sorted.sort_by(|a, b| a.1.name.cmp(b.1.name));
        sorted.dedup_by(|a, b| a.1.name == b.1.name);
        let node_index = sorted
            .iter()
            .enumerate()
            .map(|(i, (_, n))| (n.name, u32::try_from(i).expect("fewer than 2^32 nodes")))
            .collect();
        let res = sorted
            .iter()
            .map(|(_, n)| Res {
                cpu_used: 0,
                mem_used: 0,
                cpu_cap: n.cpu_millis,
                mem_cap: n.memory_bytes,
                pods: 0,
                max_pods: n.max_pods,
            })
            .collect();
        let count = sorted.len();
        Scheduler {
            not_ready: sorted.iter().filter(|(_, n)| !n.ready).count(),
            input_index: sorted.iter().map(|(i, _)| *i).collect(),
            name_hash: sorted
                .iter()
                .map(|(_, n)| fnv64(n.name.as_bytes()))
                .collect(),
            nodes: sorted.into_iter().map(|(_, n)| n).collect(),
            node_index,
            res,
            ports: (0..count).map(|_| BTreeSet::new()).collect(),
            terms: Vec::new(),
            term_index: BTreeMap::new(),
            groups: Vec::new(),
            group_index: BTreeMap::new(),
            last_group: None,
            owners: BTreeMap::new(),
            candidate_lists: Vec::new(),
            candidate_index: BTreeMap::new(),
            owner_counts: Vec::new(),
            score: vec![0; count],
            score_group: usize::MAX,
            placed: 0,
            last_failure: None,
        }
    }

    /// Registers a required anti-affinity term (once per distinct term).
    fn register_term(&mut self, namespace: &str, term: &PodAffinityTerm) {
        let (namespaces, key) = term_key(namespace, term);
        if self.term_index.contains_key(&key) {
            return;
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
        self.term_index.insert(key, self.terms.len());
        self.terms.push(Term {
            namespaces,
            selector: term.label_selector.clone(),
            domain,
            matching: vec![0; ndom],
            carriers: vec![0; ndom],
        });
    }

    /// The group of a pod, created on first sight. Terms must all be registered first
    /// (see `register_term`) so `matches` is complete.
    fn group(&mut self, p: &PodView<'a>) -> usize {
        if let Some((owner, hash, g)) = self.last_group {
            if owner == p.owner && hash == p.template_hash {
                return g;
            }
        }
        let g = match self.group_index.get(&(p.owner, p.template_hash)) {
            Some(&g) => g,
            None => self.new_group(p),
        };
        self.last_group = Some((p.owner, p.template_hash, g));
        g
    }

    fn new_group(&mut self, p: &PodView<'a>) -> usize {
        let next_owner = self.owners.len();
        let owner = *self.owners.entry(p.owner).or_insert(next_owner);
        if owner == self.owner_counts.len() {
            self.owner_counts.push(vec![0; self.nodes.len()]);
        }
        let carries: Vec<usize> = anti_terms(p.spec)
            .iter()
            .map(|t| {
                *self
                    .term_index
                    .get(&term_key(p.namespace, t).1)
                    .expect("every term is registered before groups are built")
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

    /// The dynamic filters that only some groups have: host ports and anti-affinity.
    #[inline]
    fn fits_slow(&self, g: usize, n: usize) -> bool {
        let grp = &self.groups[g];
        (grp.ports.is_empty() || !grp.ports.iter().any(|p| self.ports[n].contains(p)))
            && ((grp.carries.is_empty() && grp.matches.is_empty())
                || !self.anti_affinity_blocks(g, n))
    }

    /// Every dynamic filter: pods, cpu, memory, host ports, anti-affinity.
    fn fits(&self, g: usize, n: usize) -> bool {
        let grp = &self.groups[g];
        let r = &self.res[n];
        r.pods < r.max_pods
            && r.cpu_used.saturating_add(grp.cpu) <= r.cpu_cap
            && r.mem_used.saturating_add(grp.mem) <= r.mem_cap
            && self.fits_slow(g, n)
    }

    fn place(&mut self, g: usize, n: usize) {
        let grp = &self.groups[g];
        let r = &mut self.res[n];
        r.cpu_used = r.cpu_used.saturating_add(grp.cpu);
        r.mem_used = r.mem_used.saturating_add(grp.mem);
        r.pods = r.pods.saturating_add(1);
        self.ports[n].extend(grp.ports.iter().copied());
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
        self.placed += 1;
        self.refresh_score(n);
    }

    /// The candidate list of unpinned pods with `spec`: the nodes passing the static filters.
    fn candidates(&mut self, spec: &PodSpec) -> usize {
        let key = serde_json::to_string(&(
            &spec.tolerations,
            &spec.node_selector,
            spec.affinity
                .as_ref()
                .and_then(|a| a.node_affinity.as_ref()),
        ))
        .expect("specs are JSON-representable");
        if let Some(&i) = self.candidate_index.get(&key) {
            return i;
        }
        let list: Vec<u32> = (0..self.nodes.len())
            .filter(|&n| self.static_reason(spec, None, n).is_none())
            .map(|n| u32::try_from(n).expect("fewer than 2^32 nodes"))
            .collect();
        self.candidate_lists.push(list);
        self.candidate_index
            .insert(key, self.candidate_lists.len() - 1);
        self.candidate_lists.len() - 1
    }

    fn choose(&mut self, g: usize, p: &PodView<'a>) -> Result<usize, String> {
        if let Some(pin) = p.pinned_node {
            let n = self.node_index.get(pin).map(|&i| i as usize);
            if let Some(n) = n {
                if self.static_reason(p.spec, Some(pin), n).is_none() && self.fits(g, n) {
                    return Ok(n);
                }
            }
            return Err(self.explain(g, p.spec, Some(pin)));
        }
        // Nothing changed since this group last failed: this pod fails the same way.
        if let Some((fg, at, why)) = &self.last_failure {
            if *fg == g && *at == self.placed {
                return Err(why.clone());
            }
        }
        if self.groups[g].candidates.is_none() {
            let c = self.candidates(p.spec);
            self.groups[g].candidates = Some(c);
        }
        self.cache_scores(g);
        match self.best_node(g, p.uid) {
            Some(n) => Ok(n),
            None => {
                let why = self.explain(g, p.spec, None);
                self.last_failure = Some((g, self.placed, why.clone()));
                Err(why)
            }
        }
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
    schedule_indexed(pending, nodes, bound)
        .into_iter()
        .map(|(i, p)| {
            let d = match p {
                Placement::Node(n) => Decision::Bind(nodes[n].name.to_owned()),
                Placement::Unschedulable(why) => Decision::Unschedulable(why),
            };
            (pending[i].key.to_owned(), d)
        })
        .collect()
}

/// [`schedule`] without the maps: one `(index into pending, placement)` per pending pod, in
/// the order the pods were placed (by key; equal keys keep their input order), with nodes as
/// indexes into `nodes`. When two pending pods share a key, [`schedule`] reports the later.
pub fn schedule_indexed<'a>(
    pending: &[PodView<'a>],
    nodes: &'a [NodeView<'a>],
    bound: &[(PodView<'a>, &'a str)],
) -> Vec<(usize, Placement)> {
    let mut s = Scheduler::new(nodes);
    // Register every required anti-affinity term first, so each group's match list is whole.
    let mut seen: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut last: Option<(&str, &str)> = None;
    for p in pending.iter().chain(bound.iter().map(|(p, _)| p)) {
        let id = (p.owner, p.template_hash);
        if last != Some(id) && seen.insert(id) {
            for t in anti_terms(p.spec) {
                s.register_term(p.namespace, t);
            }
        }
        last = Some(id);
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
    let mut order: Vec<usize> = (0..pending.len()).collect();
    order.sort_by(|&a, &b| pending[a].key.cmp(pending[b].key));
    let mut out = Vec::with_capacity(order.len());
    for i in order {
        let p = &pending[i];
        let g = s.group(p);
        let d = match s.choose(g, p) {
            Ok(n) => {
                s.place(g, n);
                Placement::Node(s.input_index[n])
            }
            Err(reason) => Placement::Unschedulable(reason),
        };
        out.push((i, d));
    }
    out
}

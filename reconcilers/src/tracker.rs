//! What lets `ClusterState::apply` run the controllers over what an entry changed, not over
//! the whole state: the controllers whose pods or records changed, carried to the next
//! entry; the deadlines at which time alone changes a controller's outcome, in order; and
//! the Services by selector.
//!
//! The rule it keeps: a controller whose inputs did not change since its last sync, and
//! whose last sync changed nothing, would change nothing if it ran, so it does not run.
//! Its inputs are its object in the commit (an `Adopt` runs every controller), its pods
//! (the pod table's log names their owners), the nodes (a node entry runs every DaemonSet)
//! and the time (`wake`). A sync that changes something has changed its own inputs, so its
//! controller runs again in the next entry, exactly as the level-triggered full pass would
//! find it. Nothing here is serialized: a state read from a snapshot starts unprimed and
//! its first entry runs every controller.

use crate::state::ClusterState;
use crate::types::{Millis, Owner};
use std::collections::{BTreeMap, BTreeSet};

/// One controller object: the unit the controllers sync.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Target {
    /// A Deployment, `namespace/name`.
    Deployment(String),
    /// A DaemonSet.
    DaemonSet(String),
    /// A StatefulSet.
    StatefulSet(String),
    /// A Job (Git's or a CronJob's).
    Job(String),
}

/// The dirty tracking a state keeps between entries; never serialized, never compared.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tracker {
    /// A full pass ran on this state (since it was made or read), so the rest is valid.
    pub(crate) primed: bool,
    /// Owners whose pods the previous entry created, removed or updated.
    pub(crate) owners: BTreeSet<Owner>,
    /// Controllers the previous entry left unsettled.
    pub(crate) targets: BTreeSet<Target>,
    /// The scheduler's inputs changed in the previous entry.
    pub(crate) sched: bool,
    /// Static pods wait for a key or an address another pod holds.
    pub(crate) static_waiting: bool,
    /// When time alone changes a controller's outcome, in time order.
    wakes: BTreeSet<(Millis, Target)>,
    wake_of: BTreeMap<Target, Millis>,
    /// Services with a selector, by namespace, first selector key and its value.
    pub(crate) services: ServiceIndex,
}

/// Services by namespace, first selector key and its value.
pub(crate) type ServiceIndex = BTreeMap<String, BTreeMap<String, BTreeMap<String, Vec<String>>>>;

/// The tracking is not part of the state: any two trackers are equal.
impl PartialEq for Tracker {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Tracker {
    /// Sets (or clears) the time at which `target` must run again.
    pub(crate) fn wake(&mut self, target: Target, at: Option<Millis>) {
        if let Some(old) = self.wake_of.remove(&target) {
            self.wakes.remove(&(old, target.clone()));
        }
        if let Some(t) = at {
            self.wakes.insert((t, target.clone()));
            self.wake_of.insert(target, t);
        }
    }

    /// Takes the targets whose time has come.
    pub(crate) fn due(&mut self, now: Millis) -> Vec<Target> {
        let mut due = Vec::new();
        while let Some((t, _)) = self.wakes.first() {
            if *t > now {
                break;
            }
            if let Some((_, target)) = self.wakes.pop_first() {
                self.wake_of.remove(&target);
                due.push(target);
            }
        }
        due
    }

    /// Forgets every deadline (a full pass sets them all again).
    pub(crate) fn clear_wakes(&mut self) {
        self.wakes.clear();
        self.wake_of.clear();
    }

    /// Indexes the Services of the adopted commit by their selector's first label.
    pub(crate) fn index_services(&mut self, desired: &kommit_schemas::DesiredState) {
        self.services.clear();
        for (key, svc) in &desired.services {
            let Some((k0, v0)) = svc.spec.selector.iter().next() else {
                continue;
            };
            let ns = key.split_once('/').map_or("default", |(ns, _)| ns);
            self.services
                .entry(ns.to_owned())
                .or_default()
                .entry(k0.clone())
                .or_default()
                .entry(v0.clone())
                .or_default()
                .push(key.clone());
        }
    }
}

/// One entry's reconcile: whether it covers everything, and what changed before it.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Every controller runs over the whole state (an `Adopt`, or an unprimed state).
    pub(crate) full: bool,
    /// Nodes the entry changed: their pods are checked for eviction.
    pub(crate) nodes: BTreeSet<String>,
    /// A node's facts changed (readiness, labels, taints, capacity, CIDR, presence): every
    /// DaemonSet, the static pods and the scheduler look again.
    pub(crate) node_facts: bool,
    /// The entry set a node's static pods.
    pub(crate) static_entry: bool,
    /// Owners carried from the previous entry.
    pub(crate) owners: BTreeSet<Owner>,
    /// Controllers carried from the previous entry or due now.
    pub(crate) targets: BTreeSet<Target>,
    /// The scheduler's inputs changed since it last ran.
    pub(crate) sched: bool,
    /// Controllers this entry leaves unsettled, for the next one.
    pub(crate) unsettled: BTreeSet<Target>,
}

impl Pass {
    /// Notes that the entry changed `node`.
    pub(crate) fn changed_node(&mut self, node: &str) {
        self.nodes.insert(node.to_owned());
        self.node_facts = true;
    }

    /// Owners whose pods changed: carried, or logged so far in this entry.
    fn touched<'a>(&'a self, state: &'a ClusterState) -> impl Iterator<Item = &'a Owner> + 'a {
        self.owners.iter().chain(state.pods.log().owners.iter())
    }

    /// The keys of the targets of one kind carried or due, and of the owners (as `owner`
    /// maps them) whose pods changed.
    fn marked(
        &self,
        state: &ClusterState,
        carried: fn(&Target) -> Option<&String>,
        owner: impl Fn(&Owner) -> Option<String>,
    ) -> BTreeSet<String> {
        let mut keys: BTreeSet<String> = self.targets.iter().filter_map(carried).cloned().collect();
        keys.extend(self.touched(state).filter_map(owner));
        keys
    }

    /// Every key of `all` when `everything`, else the `marked` ones it holds, in key order.
    fn scoped<V>(
        all: &BTreeMap<String, V>,
        everything: bool,
        marked: impl FnOnce() -> BTreeSet<String>,
    ) -> Vec<String> {
        if everything {
            return all.keys().cloned().collect();
        }
        marked()
            .into_iter()
            .filter(|k| all.contains_key(k))
            .collect()
    }

    /// The Deployments to sync, in key order.
    pub(crate) fn deployments(&self, state: &ClusterState) -> Vec<String> {
        Self::scoped(&state.desired.deployments, self.full, || {
            self.marked(
                state,
                |t| match t {
                    Target::Deployment(k) => Some(k),
                    _ => None,
                },
                |o| match o {
                    Owner::ReplicaSet(rs) => state
                        .replica_sets
                        .get(rs)
                        .filter(|r| !r.standalone)
                        .map(|r| r.deployment.clone()),
                    _ => None,
                },
            )
        })
    }

    /// The standalone ReplicaSets to sync, in key order.
    pub(crate) fn replica_sets(&self, state: &ClusterState) -> Vec<String> {
        Self::scoped(&state.desired.replica_sets, self.full, || {
            self.marked(
                state,
                |_| None,
                |o| match o {
                    Owner::ReplicaSet(rs)
                        if state.replica_sets.get(rs).is_some_and(|r| r.standalone) =>
                    {
                        Some(rs.clone())
                    }
                    _ => None,
                },
            )
        })
    }

    /// The DaemonSets to sync, in key order: all of them when a node changed.
    pub(crate) fn daemon_sets(&self, state: &ClusterState) -> Vec<String> {
        Self::scoped(
            &state.desired.daemon_sets,
            self.full || self.node_facts,
            || {
                self.marked(
                    state,
                    |t| match t {
                        Target::DaemonSet(k) => Some(k),
                        _ => None,
                    },
                    |o| match o {
                        Owner::DaemonSet(k) => Some(k.clone()),
                        _ => None,
                    },
                )
            },
        )
    }

    /// The StatefulSets to sync, in key order. A set also runs when a pod of another owner
    /// that held one of its pod names went.
    pub(crate) fn stateful_sets(&self, state: &ClusterState) -> Vec<String> {
        let all = &state.desired.stateful_sets;
        Self::scoped(all, self.full, || {
            let mut keys = self.marked(
                state,
                |t| match t {
                    Target::StatefulSet(k) => Some(k),
                    _ => None,
                },
                |o| match o {
                    Owner::StatefulSet(k) => Some(k.clone()),
                    _ => None,
                },
            );
            for (k, t) in &state.pods.log().touched {
                let Some((owner, _, _)) = &t.gone else {
                    continue;
                };
                let Some((set, ord)) = k.rsplit_once('-') else {
                    continue;
                };
                if ord.parse::<u32>().is_ok()
                    && all.contains_key(set)
                    && *owner != Owner::StatefulSet(set.to_owned())
                {
                    keys.insert(set.to_owned());
                }
            }
            keys
        })
    }

    /// The Jobs to sync (Git's and CronJobs'), in key order, or None for all of them.
    pub(crate) fn jobs(&self, state: &ClusterState) -> Option<BTreeSet<String>> {
        (!self.full).then(|| {
            self.marked(
                state,
                |t| match t {
                    Target::Job(k) => Some(k),
                    _ => None,
                },
                |o| match o {
                    Owner::Job(k) => Some(k.clone()),
                    _ => None,
                },
            )
        })
    }
}

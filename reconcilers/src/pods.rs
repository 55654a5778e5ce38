//! [`Pods`]: the state's pods by `namespace/name`, with the indexes the controllers read
//! (pods by owner, by node, how many are unbound) and the log of what one entry changed.
//!
//! Why a type of its own: `ClusterState::apply` must cost what an entry changes, not what
//! the state holds. The indexes answer "this owner's pods", "this node's pods" and "the
//! Pending pods" without a scan, and the log says which pods an entry touched, so the
//! effects (pods to start and stop) and the endpoints come from those alone. Every change
//! goes through the methods below, so the indexes cannot drift from the map: there is no
//! mutable access to the map itself.
//!
//! Only the map is serialized (as a plain map, so the canonical bytes and digests are those
//! of a `BTreeMap`); the indexes are rebuilt when a state is read, and are never compared.
//! A pod's identity (namespace, name, owner, labels, spec) never changes in place: a
//! changed pod is a new record. [`Pods::update`] is for status; [`Pods::bind`] and
//! [`Pods::set_reason`] for the scheduler.

use crate::types::{Effects, Owner, PodRecord, PodRef};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// Pods by `namespace/name`, indexed; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct Pods {
    map: BTreeMap<String, PodRecord>,
    by_owner: BTreeMap<Owner, BTreeSet<String>>,
    by_node: BTreeMap<String, BTreeSet<String>>,
    /// How many pods are unbound.
    unbound: usize,
    log: Log,
}

/// What changed since [`Pods::begin`], while logging.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    active: bool,
    /// Whether each pod's first touch is kept (`touched`); a full pass, which compares
    /// every pod anyway, does without.
    per_pod: bool,
    /// Each pod touched, by key, in key order.
    pub(crate) touched: BTreeMap<String, Touch>,
    /// Owners of pods created, removed or updated (not merely bound or given a reason).
    pub(crate) owners: BTreeSet<Owner>,
    /// Something the scheduler reads changed: a pod came or went, was bound, or an unbound
    /// pod's or a Job pod's phase changed.
    pub(crate) sched: bool,
}

/// One pod's history within a log.
#[derive(Clone, Debug, Default)]
pub(crate) struct Touch {
    /// Its (uid, node) when first touched; None when the key held no pod.
    pub(crate) before: Option<(String, Option<String>)>,
    /// The first record removed or replaced at this key: its owner, namespace and labels.
    pub(crate) gone: Option<(Owner, String, BTreeMap<String, String>)>,
}

impl Pods {
    /// Starts logging changes (clearing the previous log), with each pod's first touch
    /// when `per_pod`.
    pub(crate) fn begin(&mut self, per_pod: bool) {
        self.log = Log {
            active: true,
            per_pod,
            ..Log::default()
        };
    }

    /// Stops logging and hands the log over.
    pub(crate) fn finish(&mut self) -> Log {
        let mut log = std::mem::take(&mut self.log);
        log.active = false;
        log
    }

    /// The log so far.
    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    fn first_touch(&mut self, key: &str) {
        if !self.log.per_pod || self.log.touched.contains_key(key) {
            return;
        }
        let before = self.map.get(key).map(|p| (p.uid.clone(), p.node.clone()));
        self.log
            .touched
            .insert(key.to_owned(), Touch { before, gone: None });
    }

    fn index(&mut self, key: &str, owner: &Owner, node: Option<&str>) {
        match self.by_owner.get_mut(owner) {
            Some(set) => {
                set.insert(key.to_owned());
            }
            None => {
                self.by_owner
                    .insert(owner.clone(), BTreeSet::from([key.to_owned()]));
            }
        }
        self.index_node(key, node);
    }

    fn index_node(&mut self, key: &str, node: Option<&str>) {
        match node {
            Some(n) => match self.by_node.get_mut(n) {
                Some(set) => {
                    set.insert(key.to_owned());
                }
                None => {
                    self.by_node
                        .insert(n.to_owned(), BTreeSet::from([key.to_owned()]));
                }
            },
            None => self.unbound += 1,
        }
    }

    /// Notes that `owner`'s pods changed.
    fn touch_owner(&mut self, owner: &Owner) {
        if self.log.active && !self.log.owners.contains(owner) {
            self.log.owners.insert(owner.clone());
        }
    }

    fn unindex(&mut self, key: &str, owner: &Owner, node: Option<&str>) {
        if let Some(set) = self.by_owner.get_mut(owner) {
            set.remove(key);
            if set.is_empty() {
                self.by_owner.remove(owner);
            }
        }
        self.unindex_node(key, node);
    }

    fn unindex_node(&mut self, key: &str, node: Option<&str>) {
        match node {
            Some(n) => {
                if let Some(set) = self.by_node.get_mut(n) {
                    set.remove(key);
                    if set.is_empty() {
                        self.by_node.remove(n);
                    }
                }
            }
            None => self.unbound = self.unbound.saturating_sub(1),
        }
    }

    /// Records a record leaving the map (removed or replaced).
    fn gone(&mut self, key: &str, old: PodRecord) {
        self.unindex(key, &old.owner, old.node.as_deref());
        self.touch_owner(&old.owner);
        if self.log.active {
            self.log.sched = true;
            if let Some(t) = self.log.touched.get_mut(key) {
                if t.gone.is_none() {
                    t.gone = Some((old.owner, old.namespace, old.labels));
                }
            }
        }
    }

    /// Inserts (or replaces) the pod at `key`.
    pub fn insert(&mut self, key: String, p: PodRecord) {
        self.first_touch(&key);
        if let Some(old) = self.map.remove(&key) {
            self.gone(&key, old);
        }
        self.log.sched |= self.log.active;
        self.touch_owner(&p.owner);
        self.index(&key, &p.owner, p.node.as_deref());
        self.map.insert(key, p);
    }

    /// Inserts `p` at its key unless a pod holds that key; returns whether it was inserted.
    pub(crate) fn insert_new(&mut self, p: PodRecord) -> bool {
        let key = p.key();
        if self.map.contains_key(&key) {
            return false;
        }
        self.insert(key, p);
        true
    }

    /// Removes the pod at `key`; returns whether there was one.
    pub fn remove(&mut self, key: &str) -> bool {
        self.first_touch(key);
        match self.map.remove(key) {
            Some(old) => {
                self.gone(key, old);
                true
            }
            None => false,
        }
    }

    /// Changes the pod at `key` with `f` (status fields: phase, readiness, containers,
    /// events; never its key, owner or labels); returns whether there was one. Its owner's
    /// controller sees the change.
    pub(crate) fn update(&mut self, key: &str, f: impl FnOnce(&mut PodRecord)) -> bool {
        if !self.map.contains_key(key) {
            return false;
        }
        self.first_touch(key);
        let Some(p) = self.map.get_mut(key) else {
            return false;
        };
        let (node, phase) = (p.node.clone(), p.phase);
        f(p);
        let (owner, new_node, new_phase) = (p.owner.clone(), p.node.clone(), p.phase);
        let job = matches!(owner, Owner::Job(_));
        if node != new_node {
            self.unindex_node(key, node.as_deref());
            self.index_node(key, new_node.as_deref());
        }
        if node != new_node || (phase != new_phase && (new_node.is_none() || job)) {
            self.log.sched |= self.log.active;
        }
        self.touch_owner(&owner);
        true
    }

    /// Binds the pod at `key` to `node` with `ip` and clears its reason.
    pub(crate) fn bind(&mut self, key: &str, node: &str, ip: Ipv4Addr) {
        self.first_touch(key);
        let Some(p) = self.map.get_mut(key) else {
            return;
        };
        let old = p.node.replace(node.to_owned());
        p.pod_ip = Some(ip);
        p.reason = None;
        self.unindex_node(key, old.as_deref());
        self.index_node(key, Some(node));
        self.log.sched |= self.log.active;
    }

    /// Sets why the pod at `key` is not placed.
    pub(crate) fn set_reason(&mut self, key: &str, reason: Option<String>) {
        self.first_touch(key);
        if let Some(p) = self.map.get_mut(key) {
            p.reason = reason;
        }
    }

    /// The keys of `owner`'s pods, in key order.
    pub fn owned(&self, owner: &Owner) -> impl Iterator<Item = &String> + '_ {
        self.by_owner.get(owner).into_iter().flatten()
    }

    /// The keys of `owner`'s pods, in key order, owned.
    pub(crate) fn owned_keys(&self, owner: &Owner) -> Vec<String> {
        self.owned(owner).cloned().collect()
    }

    /// How many pods `owner` has.
    pub fn owned_len(&self, owner: &Owner) -> usize {
        self.by_owner.get(owner).map_or(0, BTreeSet::len)
    }

    /// Every owner with pods, in owner order, with its pods' keys.
    pub(crate) fn owners(&self) -> impl Iterator<Item = (&Owner, &BTreeSet<String>)> + '_ {
        self.by_owner.iter()
    }

    /// The owners from `first` on, in owner order, with their pods' keys.
    pub(crate) fn owners_from(
        &self,
        first: &Owner,
    ) -> impl Iterator<Item = (&Owner, &BTreeSet<String>)> + '_ {
        self.by_owner.range(first.clone()..)
    }

    /// The keys of the pods bound to `node`, in key order.
    pub fn on_node(&self, node: &str) -> impl Iterator<Item = &String> + '_ {
        self.by_node.get(node).into_iter().flatten()
    }

    /// How many pods are unbound.
    pub fn unbound_len(&self) -> usize {
        self.unbound
    }

    /// Adds the starts and stops of the logged pods to `fx`: a pod bound before and now gone,
    /// rebound or another incarnation stops; one bound now and not the same binding before
    /// starts. In key order, per node.
    pub(crate) fn effects(log: &Log, now: &Pods, fx: &mut Effects) {
        for (key, t) in &log.touched {
            let old = t
                .before
                .as_ref()
                .and_then(|(uid, node)| Some((uid, node.as_ref()?)));
            let new = now
                .map
                .get(key)
                .and_then(|p| Some((&p.uid, p.node.as_ref()?)));
            if old == new {
                continue;
            }
            if let Some((uid, node)) = old {
                fx.stop.entry(node.clone()).or_default().push(PodRef {
                    pod: key.clone(),
                    uid: uid.clone(),
                });
            }
            if let Some((uid, node)) = new {
                fx.start.entry(node.clone()).or_default().push(PodRef {
                    pod: key.clone(),
                    uid: uid.clone(),
                });
            }
        }
    }

    /// Whether a logged pod was removed (or replaced) whose owner satisfies `f`.
    pub(crate) fn removed_any(log: &Log, mut f: impl FnMut(&str, &Owner) -> bool) -> bool {
        log.touched
            .iter()
            .any(|(k, t)| t.gone.as_ref().is_some_and(|(o, _, _)| f(k, o)))
    }
}

impl From<BTreeMap<String, PodRecord>> for Pods {
    fn from(map: BTreeMap<String, PodRecord>) -> Self {
        let mut pods = Pods::default();
        for (k, p) in &map {
            pods.index(k, &p.owner, p.node.as_deref());
        }
        pods.map = map;
        pods
    }
}

impl std::ops::Deref for Pods {
    type Target = BTreeMap<String, PodRecord>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<'a> IntoIterator for &'a Pods {
    type Item = (&'a String, &'a PodRecord);
    type IntoIter = std::collections::btree_map::Iter<'a, String, PodRecord>;

    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

/// Two tables are equal when their pods are: the indexes and the log follow from them.
impl PartialEq for Pods {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl Serialize for Pods {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.map.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Pods {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BTreeMap::<String, PodRecord>::deserialize(d).map(Pods::from)
    }
}

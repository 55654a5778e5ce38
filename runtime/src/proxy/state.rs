//! Pure: what the proxy last applied, kept per Service, so that a sync costs what changed.
//!
//! A sync walks the desired Services and the applied ones side by side (both sorted by
//! key). An unchanged Service costs one comparison of the `Service` values and nothing else;
//! a changed one is validated on its own and against the claims of the others (the index in
//! [`Claims`], so the whole table is not validated again), rendered
//! ([`render::service_fragments`]), and its port fragments are diffed against the applied
//! ones. The shared objects in the base (the `spread-*` chains
//! and the `hairpin` elements) are reference-counted by the ports that need them and change
//! only when a count goes from or to zero. [`State::step`] computes the transaction without
//! touching the state; [`State::commit`] applies the step once the kernel took it, so a
//! failed transaction leaves the state as the kernel still has it (the caller then forgets
//! it altogether and rebuilds).
//!
//! The same transactions come out of [`super::script::diff_rulesets`] over whole
//! [`render::render`]s: the unit tests check the two paths against each other.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::base::base;
use super::render::{self, Fragment, Spread};
use super::script::{Rebuild, Transaction};
use super::validate::{self, Claims};
use super::{NodeConfig, ProxyError, Service, ServiceTable, SyncReport};

/// One applied Service: its value and its port fragments by port key.
#[derive(Debug, Clone)]
struct Applied {
    svc: Service,
    ports: Vec<(String, Arc<Fragment>)>,
}

/// Everything the table holds, by the proxy's own account.
#[derive(Debug, Clone)]
pub struct State {
    node: NodeConfig,
    mark: u32,
    base: Fragment,
    services: BTreeMap<String, Applied>,
    spreads: BTreeMap<Spread, usize>,
    hairpin: BTreeMap<Ipv4Addr, usize>,
    claims: Claims,
}

/// A computed sync: the transaction, its report, and how the state changes once the kernel
/// has taken it.
#[derive(Debug)]
pub struct Step {
    /// What to send.
    pub tx: Transaction,
    /// What it changes.
    pub report: SyncReport,
    next: Next,
}

#[derive(Debug)]
enum Next {
    /// A whole new state (a rebuild, or new node facts).
    Replace(Box<State>),
    /// Services replaced (`Some`) or removed (`None`), and count changes.
    Update {
        services: Vec<(String, Option<Applied>)>,
        spreads: BTreeMap<Spread, isize>,
        hairpin: BTreeMap<Ipv4Addr, isize>,
    },
}

fn count<K: Ord + Copy>(
    counts: &mut BTreeMap<K, isize>,
    keys: impl IntoIterator<Item = K>,
    d: isize,
) {
    for k in keys {
        *counts.entry(k).or_default() += d;
    }
}

/// The keys whose count `delta` takes from positive to zero, and from zero to positive.
fn flips<K: Ord + Copy>(
    counts: &BTreeMap<K, usize>,
    delta: &BTreeMap<K, isize>,
) -> (Vec<K>, Vec<K>) {
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    for (k, d) in delta {
        let was = counts.get(k).copied().unwrap_or(0);
        let now = was as isize + d;
        if was > 0 && now <= 0 {
            gone.push(*k);
        } else if was == 0 && now > 0 {
            came.push(*k);
        }
    }
    (gone, came)
}

fn apply_counts<K: Ord + Copy>(counts: &mut BTreeMap<K, usize>, delta: &BTreeMap<K, isize>) {
    for (k, d) in delta {
        let n = counts.get(k).copied().unwrap_or(0) as isize + d;
        debug_assert!(n >= 0, "a reference count below zero");
        if n > 0 {
            counts.insert(*k, n as usize);
        } else {
            counts.remove(k);
        }
    }
}

impl State {
    /// Validate `table` and render it from scratch: the state, and the transaction that
    /// rebuilds the table to match it.
    pub fn build(table: &ServiceTable, mark: u32) -> Result<Step, ProxyError> {
        let claims = validate::claims(table)?;
        let (node, services) = (&table.node, &table.services);
        let mut st = State {
            node: node.clone(),
            mark,
            base: base(node, mark),
            services: BTreeMap::new(),
            spreads: BTreeMap::new(),
            hairpin: BTreeMap::new(),
            claims,
        };
        let mut tx = Transaction {
            rebuild: true,
            ..Transaction::default()
        };
        let mut changed = Vec::new();
        for (key, svc) in services {
            let ports = render::service_fragments(node, key, svc);
            for (pk, frag) in &ports {
                tx.add(frag);
                changed.push(pk.clone());
                for s in &frag.needs.spreads {
                    *st.spreads.entry(*s).or_default() += 1;
                }
                for ip in &frag.needs.hairpin {
                    *st.hairpin.entry(*ip).or_default() += 1;
                }
            }
            st.services.insert(
                key.clone(),
                Applied {
                    svc: svc.clone(),
                    ports,
                },
            );
        }
        tx.add(&st.base);
        tx.add(&st.shared(st.spreads.keys().copied(), st.hairpin.keys().copied()));
        tx.finish();
        changed.sort();
        Ok(Step {
            tx,
            report: SyncReport {
                rebuilt: true,
                changed,
            },
            next: Next::Replace(Box::new(st)),
        })
    }

    /// The transaction that puts everything of this state in the table again, emptying and
    /// refilling every chain and set but the affinity sets (a periodic full sync, as
    /// kube-proxy's: it repairs what was changed behind the proxy's back without deleting the
    /// table, so affinity entries and the table's identity survive).
    pub fn refresh(&self) -> Transaction {
        let mut tx = Transaction {
            refresh: true,
            ..Transaction::default()
        };
        tx.add(&self.base);
        tx.add(&self.shared(self.spreads.keys().copied(), self.hairpin.keys().copied()));
        for a in self.services.values() {
            for (_, f) in &a.ports {
                tx.add(f);
            }
        }
        tx.finish();
        tx
    }

    /// The shared objects for `spreads` and `hairpin` on this state's node.
    fn shared(
        &self,
        spreads: impl IntoIterator<Item = Spread>,
        hairpin: impl IntoIterator<Item = Ipv4Addr>,
    ) -> Fragment {
        let mut f = Fragment::default();
        for s in spreads {
            render::shared_spread(&mut f, &self.node, s);
        }
        for ip in hairpin {
            render::hairpin(&mut f, ip);
        }
        f
    }

    /// The sync to `table`, computed without changing the state: validated (the Services
    /// that changed, against the claims of the others), and a rebuild when nothing else can
    /// get there (a base object's declaration changed).
    pub fn step(&self, table: &ServiceTable) -> Result<Step, ProxyError> {
        let step = if table.node != self.node {
            self.step_node(table)
        } else {
            self.step_services(table)
        };
        match step {
            Ok(step) => Ok(step),
            Err(Refusal::Invalid(e)) => Err(e),
            Err(Refusal::Rebuild) => State::build(table, self.mark),
        }
    }

    /// The Services that differ from the applied ones: (key, before, after).
    fn changes<'a>(
        &'a self,
        services: &'a BTreeMap<String, Service>,
    ) -> Vec<(&'a String, Option<&'a Applied>, Option<&'a Service>)> {
        let mut out = Vec::new();
        let mut old = self.services.iter().peekable();
        let mut new = services.iter().peekable();
        loop {
            let order = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((ok, _)), Some((nk, _))) => ok.cmp(nk),
            };
            match order {
                Ordering::Less => {
                    let (k, a) = old.next().expect("peeked");
                    out.push((k, Some(a), None));
                }
                Ordering::Greater => {
                    let (k, s) = new.next().expect("peeked");
                    out.push((k, None, Some(s)));
                }
                Ordering::Equal => {
                    let (k, a) = old.next().expect("peeked");
                    let (_, s) = new.next().expect("peeked");
                    if a.svc != *s {
                        out.push((k, Some(a), Some(s)));
                    }
                }
            }
        }
        out
    }

    /// [`State::step`] on the same node.
    fn step_services(&self, table: &ServiceTable) -> Result<Step, Refusal> {
        let node = &table.node;
        validate::check_counts(table)?;
        let changes = self.changes(&table.services);
        let mut removed = Vec::new();
        let mut added = Vec::new();
        for (key, before, after) in &changes {
            if let Some(s) = after {
                validate::check_service(key, s)?;
                added.push((key.as_str(), *s));
            }
            if let Some(a) = before {
                removed.push((key.as_str(), &a.svc));
            }
        }
        self.claims.check_changes(node, &removed, &added)?;
        let mut tx = Transaction::default();
        let mut changed = Vec::new();
        let mut updates = Vec::new();
        let mut spreads = BTreeMap::new();
        let mut hairpin = BTreeMap::new();
        for (key, before, after) in changes {
            let ports = after
                .map(|s| render::service_fragments(node, key, s))
                .unwrap_or_default();
            let old_ports = before.map(|a| a.ports.as_slice()).unwrap_or_default();
            for (pk, frag) in old_ports {
                let now = ports.iter().find(|(k, _)| k == pk).map(|(_, f)| &**f);
                if now != Some(&**frag) {
                    changed.push(pk.clone());
                    tx.diff(Some(&**frag), now)?;
                }
            }
            for (pk, frag) in &ports {
                if !old_ports.iter().any(|(k, _)| k == pk) {
                    changed.push(pk.clone());
                    tx.diff(None, Some(&**frag))?;
                }
            }
            for (_, f) in old_ports {
                count(&mut spreads, f.needs.spreads.iter().copied(), -1);
                count(&mut hairpin, f.needs.hairpin.iter().copied(), -1);
            }
            for (_, f) in &ports {
                count(&mut spreads, f.needs.spreads.iter().copied(), 1);
                count(&mut hairpin, f.needs.hairpin.iter().copied(), 1);
            }
            updates.push((
                key.clone(),
                after.map(|s| Applied {
                    svc: s.clone(),
                    ports,
                }),
            ));
        }
        // The shared objects whose count goes from or to zero.
        let (spreads_gone, spreads_came) = flips(&self.spreads, &spreads);
        let (hairpin_gone, hairpin_came) = flips(&self.hairpin, &hairpin);
        tx.diff(
            Some(&self.shared(spreads_gone, hairpin_gone)),
            Some(&self.shared(spreads_came, hairpin_came)),
        )?;
        tx.finish();
        changed.sort();
        Ok(Step {
            tx,
            report: SyncReport {
                rebuilt: false,
                changed,
            },
            next: Next::Update {
                services: updates,
                spreads,
                hairpin,
            },
        })
    }

    /// New node facts: every Service is rendered again and every fragment compared, as is
    /// the base (a changed hook or declaration forces a rebuild).
    fn step_node(&self, table: &ServiceTable) -> Result<Step, Refusal> {
        let Next::Replace(next) = State::build(table, self.mark)?.next else {
            return Err(Refusal::Rebuild);
        };
        let mut tx = Transaction::default();
        let mut changed = Vec::new();
        let mut old_base = self.base.clone();
        let shared = self.shared(self.spreads.keys().copied(), self.hairpin.keys().copied());
        merge(&mut old_base, shared);
        let mut new_base = next.base.clone();
        merge(
            &mut new_base,
            next.shared(next.spreads.keys().copied(), next.hairpin.keys().copied()),
        );
        tx.diff(Some(&old_base), Some(&new_base))?;
        let old_ports: BTreeMap<&String, &Arc<Fragment>> = self
            .services
            .values()
            .flat_map(|a| a.ports.iter().map(|(k, f)| (k, f)))
            .collect();
        let new_ports: BTreeMap<&String, &Arc<Fragment>> = next
            .services
            .values()
            .flat_map(|a| a.ports.iter().map(|(k, f)| (k, f)))
            .collect();
        for (pk, frag) in &new_ports {
            let before = old_ports.get(pk).map(|f| &***f);
            if before != Some(&***frag) {
                changed.push((*pk).clone());
                tx.diff(before, Some(&***frag))?;
            }
        }
        for (pk, frag) in &old_ports {
            if !new_ports.contains_key(pk) {
                changed.push((*pk).clone());
                tx.diff(Some(&***frag), None)?;
            }
        }
        tx.finish();
        changed.sort();
        Ok(Step {
            tx,
            report: SyncReport {
                rebuilt: false,
                changed,
            },
            next: Next::Replace(next),
        })
    }

    /// Take `step`'s changes (after the kernel took its transaction); a [`State::build`]
    /// step gives the new state.
    pub fn commit(this: Option<State>, step: Step) -> Option<State> {
        match step.next {
            Next::Replace(st) => Some(*st),
            Next::Update {
                services,
                spreads,
                hairpin,
            } => {
                let mut st = this?;
                let removed: Vec<(&str, &Service)> = services
                    .iter()
                    .filter_map(|(k, _)| st.services.get(k).map(|a| (k.as_str(), &a.svc)))
                    .collect();
                let added: Vec<(&str, &Service)> = services
                    .iter()
                    .filter_map(|(k, a)| a.as_ref().map(|a| (k.as_str(), &a.svc)))
                    .collect();
                let mut claims = std::mem::take(&mut st.claims);
                claims.apply_changes(&st.node, &removed, &added);
                st.claims = claims;
                for (key, applied) in services {
                    match applied {
                        Some(a) => st.services.insert(key, a),
                        None => st.services.remove(&key),
                    };
                }
                apply_counts(&mut st.spreads, &spreads);
                apply_counts(&mut st.hairpin, &hairpin);
                Some(st)
            }
        }
    }
}

/// Why a step cannot be taken as such.
enum Refusal {
    /// The table is invalid.
    Invalid(ProxyError),
    /// Only a rebuild can get there.
    Rebuild,
}

impl From<ProxyError> for Refusal {
    fn from(e: ProxyError) -> Self {
        Refusal::Invalid(e)
    }
}

impl From<Rebuild> for Refusal {
    fn from(_: Rebuild) -> Self {
        Refusal::Rebuild
    }
}

fn merge(into: &mut Fragment, from: Fragment) {
    into.chains.extend(from.chains);
    into.sets.extend(from.sets);
    into.elements.extend(from.elements);
}

//! Pure: the nft [`Transaction`] that turns the applied objects into the desired ones.
//!
//! Without a previous state (or when a base object's declaration changed) the transaction
//! deletes the table and adds everything. Otherwise only the fragments that differ
//! contribute, in an order that keeps every reference valid inside the one transaction:
//! new sets and chains, then deleted elements, flushed chains, rules, added elements, and
//! last the chains and sets that went away. A transaction is data: [`Transaction::script`]
//! writes it as an `nft -f` script (what [`super::LinuxProxy::plan`] shows), and
//! [`super::netlink`] encodes the same operations, in the same order, as one netlink batch.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::nft::{Element, Hook, Key, Name, Rule, SetDecl, Value};
use super::render::{Fragment, Ruleset};
use super::SyncReport;

/// One atomic change of the table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// Delete the table (if any) and create it empty first.
    pub rebuild: bool,
    /// Re-assert objects the table already has: each set in `add_sets` and chain in
    /// `add_chains` is created if missing and emptied (but for the dynamic affinity sets,
    /// whose entries are the kernel's), then filled again, so whatever was changed behind
    /// the proxy's back is put right without deleting the table.
    pub refresh: bool,
    /// New sets and maps.
    pub add_sets: Vec<(Name, SetDecl)>,
    /// New chains (with their hook, for base chains).
    pub add_chains: Vec<(Name, Option<Hook>)>,
    /// Elements to delete, by set.
    pub del_elems: BTreeMap<Name, Vec<Key>>,
    /// Chains whose rules are all deleted (to be rewritten, or before the chain goes).
    pub flush: Vec<Name>,
    /// Rules to append, by chain, in order.
    pub rules: Vec<(Name, Rule)>,
    /// Elements to add, by set.
    pub add_elems: BTreeMap<Name, Vec<(Key, Value)>>,
    /// Chains to delete.
    pub del_chains: Vec<Name>,
    /// Sets and maps to delete.
    pub del_sets: Vec<(Name, SetDecl)>,
}

/// A base object's declaration changed under the same name: only a rebuild can apply it.
#[derive(Debug)]
pub struct Rebuild;

impl Transaction {
    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        !self.rebuild
            && !self.refresh
            && self.add_sets.is_empty()
            && self.add_chains.is_empty()
            && self.del_elems.is_empty()
            && self.flush.is_empty()
            && self.rules.is_empty()
            && self.add_elems.is_empty()
            && self.del_chains.is_empty()
            && self.del_sets.is_empty()
    }

    /// Put everything in one canonical order (by name, elements by key, rules by chain and
    /// then in their order), so that equal changes make equal transactions however they
    /// were computed.
    pub fn finish(&mut self) {
        self.add_sets.sort();
        self.add_chains.sort_by(|a, b| a.0.cmp(&b.0));
        for keys in self.del_elems.values_mut() {
            keys.sort();
        }
        self.flush.sort();
        self.rules.sort_by(|a, b| a.0.cmp(&b.0));
        for elems in self.add_elems.values_mut() {
            elems.sort();
        }
        self.del_chains.sort();
        self.del_sets.sort();
    }

    /// Add what turns `old` into `new` (either may be absent).
    pub fn diff(&mut self, old: Option<&Fragment>, new: Option<&Fragment>) -> Result<(), Rebuild> {
        let empty = Fragment::default();
        let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
        for (name, decl) in &new.sets {
            match old.sets.get(name) {
                None => self.add_sets.push((name.clone(), *decl)),
                Some(d) if d != decl => return Err(Rebuild),
                Some(_) => {}
            }
        }
        for (name, chain) in &new.chains {
            match old.chains.get(name) {
                None => self.add_chains.push((name.clone(), chain.hook)),
                Some(c) if c.hook != chain.hook => return Err(Rebuild),
                Some(c) if c.rules == chain.rules => continue,
                Some(_) => self.flush.push(name.clone()),
            }
            for r in &chain.rules {
                self.rules.push((name.clone(), r.clone()));
            }
        }
        for ((set, key), value) in &old.elements {
            // A set that goes away takes its elements with it.
            let set_goes = old.sets.contains_key(set) && !new.sets.contains_key(set);
            if !set_goes && new.elements.get(&(set.clone(), *key)) != Some(value) {
                self.del_elems.entry(set.clone()).or_default().push(*key);
            }
        }
        for ((set, key), value) in &new.elements {
            if old.elements.get(&(set.clone(), *key)) != Some(value) {
                self.add_elems
                    .entry(set.clone())
                    .or_default()
                    .push((*key, value.clone()));
            }
        }
        for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
            self.flush.push(name.clone());
            self.del_chains.push(name.clone());
        }
        for (name, decl) in old.sets.iter().filter(|(n, _)| !new.sets.contains_key(*n)) {
            self.del_sets.push((name.clone(), *decl));
        }
        Ok(())
    }

    /// Add everything in `f` (nothing to conflict with).
    pub fn add(&mut self, f: &Fragment) {
        for (name, decl) in &f.sets {
            self.add_sets.push((name.clone(), *decl));
        }
        for (name, chain) in &f.chains {
            self.add_chains.push((name.clone(), chain.hook));
            for r in &chain.rules {
                self.rules.push((name.clone(), r.clone()));
            }
        }
        // Elements come sorted by set: look each set's list up once.
        let mut it = f.elements.iter().peekable();
        while let Some(((set, _), _)) = it.peek() {
            let set = (*set).clone();
            let list = self.add_elems.entry(set.clone()).or_default();
            while let Some(((_, key), value)) = it.next_if(|((s, _), _)| *s == set) {
                list.push((*key, value.clone()));
            }
        }
    }

    /// The transaction as an `nft -f` script for table `ip <table>`.
    pub fn script(&self, table: &str) -> String {
        let t = format!("ip {table}");
        let mut out = String::new();
        if self.rebuild {
            let _ = writeln!(out, "table {t} {{}}\ndelete table {t}\nadd table {t}");
        } else if self.refresh {
            let _ = writeln!(out, "add table {t}");
        }
        for (name, decl) in &self.add_sets {
            let _ = writeln!(out, "add {} {t} {name} {decl}", decl.kind());
            if self.refresh && decl.flushed_on_refresh() {
                let _ = writeln!(out, "flush {} {t} {name}", decl.kind());
            }
        }
        for (name, hook) in &self.add_chains {
            let _ = match hook {
                Some(h) => writeln!(out, "add chain {t} {name} {h}"),
                None => writeln!(out, "add chain {t} {name}"),
            };
            if self.refresh {
                let _ = writeln!(out, "flush chain {t} {name}");
            }
        }
        for (set, keys) in &self.del_elems {
            let _ = write!(out, "delete element {t} {set} {{ ");
            for (i, k) in keys.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(out, "{sep}{k}");
            }
            out.push_str(" }\n");
        }
        for c in &self.flush {
            let _ = writeln!(out, "flush chain {t} {c}");
        }
        for (c, r) in &self.rules {
            let _ = writeln!(out, "add rule {t} {c} {r}");
        }
        for (set, elems) in &self.add_elems {
            let _ = write!(out, "add element {t} {set} {{ ");
            for (i, (k, v)) in elems.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(out, "{sep}{}", Element(k, v));
            }
            out.push_str(" }\n");
        }
        for c in &self.del_chains {
            let _ = writeln!(out, "delete chain {t} {c}");
        }
        for (name, decl) in &self.del_sets {
            let _ = writeln!(out, "delete {} {t} {name}", decl.kind());
        }
        out
    }
}

/// The transaction that moves the table from `old` (what the kernel holds, if known) to
/// `new`, and what it changes.
pub fn diff_rulesets(old: Option<&Ruleset>, new: &Ruleset) -> (Transaction, SyncReport) {
    let mut changed = Vec::new();
    let mut tx = Transaction::default();
    let incremental = old.and_then(|old| {
        tx.diff(Some(&old.base), Some(&new.base)).ok()?;
        for (key, frag) in &new.ports {
            // Arc's equality compares pointers first: a shared fragment costs nothing.
            let before = old.ports.get(key);
            if before != Some(frag) {
                changed.push(key.clone());
                tx.diff(before.map(|f| &**f), Some(frag)).ok()?;
            }
        }
        for (key, frag) in &old.ports {
            if !new.ports.contains_key(key) {
                changed.push(key.clone());
                tx.diff(Some(&**frag), None).ok()?;
            }
        }
        Some(())
    });
    if incremental.is_none() {
        changed = new.ports.keys().cloned().collect();
        tx = Transaction {
            rebuild: true,
            ..Transaction::default()
        };
        tx.add(&new.base);
        for frag in new.ports.values() {
            tx.add(frag);
        }
    }
    changed.sort();
    tx.finish();
    let rebuilt = tx.rebuild;
    (tx, SyncReport { rebuilt, changed })
}

/// [`diff_rulesets`] written as an `nft -f` script for table `ip <table>`.
pub fn script(table: &str, old: Option<&Ruleset>, new: &Ruleset) -> (String, SyncReport) {
    let (tx, report) = diff_rulesets(old, new);
    (tx.script(table), report)
}

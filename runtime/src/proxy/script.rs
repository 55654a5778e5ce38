//! Pure: the nft transaction that turns the applied [`Ruleset`] into the desired one.
//!
//! Without a previous ruleset (or when a base object's declaration changed) the script
//! deletes the table and adds everything. Otherwise only the fragments that differ
//! contribute, in an order that keeps every reference valid inside the one transaction:
//! new sets and chains, then deleted elements, flushed chains, rules, added elements, and
//! last the chains and sets that went away.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::render::{Fragment, Ruleset};
use super::SyncReport;

#[derive(Default)]
struct Ops {
    add_sets: Vec<String>,
    add_chains: Vec<String>,
    del_elems: BTreeMap<String, Vec<String>>,
    flush: Vec<String>,
    rules: Vec<(String, String)>,
    add_elems: BTreeMap<String, Vec<String>>,
    del_chains: Vec<String>,
    del_sets: Vec<String>,
}

/// A base object's declaration changed under the same name: only a rebuild can apply it.
struct Rebuild;

fn element(key: &str, value: &str) -> String {
    if value.is_empty() {
        key.to_string()
    } else {
        format!("{key} : {value}")
    }
}

fn diff(old: Option<&Fragment>, new: Option<&Fragment>, ops: &mut Ops) -> Result<(), Rebuild> {
    let empty = Fragment::default();
    let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    for (name, decl) in &new.sets {
        match old.sets.get(name) {
            None => ops
                .add_sets
                .push(format!("add {} %T {name} {}", decl.0, decl.1)),
            Some(d) if d != decl => return Err(Rebuild),
            Some(_) => {}
        }
    }
    for (name, chain) in &new.chains {
        match old.chains.get(name) {
            None => {
                let hook = chain.hook.as_deref().map(|h| format!(" {h}"));
                ops.add_chains
                    .push(format!("add chain %T {name}{}", hook.unwrap_or_default()));
            }
            Some(c) if c.hook != chain.hook => return Err(Rebuild),
            Some(c) if c.rules == chain.rules => continue,
            Some(_) => ops.flush.push(name.clone()),
        }
        for r in &chain.rules {
            ops.rules.push((name.clone(), r.clone()));
        }
    }
    for ((set, key), value) in &old.elements {
        if new.elements.get(&(set.clone(), key.clone())) != Some(value)
            && !(ops_deletes_set(new, old, set))
        {
            ops.del_elems
                .entry(set.clone())
                .or_default()
                .push(key.clone());
        }
    }
    for ((set, key), value) in &new.elements {
        if old.elements.get(&(set.clone(), key.clone())) != Some(value) {
            ops.add_elems
                .entry(set.clone())
                .or_default()
                .push(element(key, value));
        }
    }
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        ops.flush.push(name.clone());
        ops.del_chains.push(name.clone());
    }
    for (name, decl) in old.sets.iter().filter(|(n, _)| !new.sets.contains_key(*n)) {
        ops.del_sets.push(format!("delete {} %T {name}", decl.0));
    }
    Ok(())
}

/// A set that goes away takes its elements with it: no need to delete them one by one.
fn ops_deletes_set(new: &Fragment, old: &Fragment, set: &str) -> bool {
    old.sets.contains_key(set) && !new.sets.contains_key(set)
}

/// The script that moves table `table` from `old` (what the kernel holds, if known) to
/// `new`, and what it changes.
pub fn script(table: &str, old: Option<&Ruleset>, new: &Ruleset) -> (String, SyncReport) {
    let mut changed = Vec::new();
    let mut ops = Ops::default();
    let incremental = old.and_then(|old| {
        diff(Some(&old.base), Some(&new.base), &mut ops).ok()?;
        for (key, frag) in &new.ports {
            // Arc's equality compares pointers first: a reused fragment costs nothing.
            let before = old.ports.get(key);
            if before != Some(frag) {
                changed.push(key.clone());
                diff(before.map(|f| &**f), Some(frag), &mut ops).ok()?;
            }
        }
        for (key, frag) in &old.ports {
            if !new.ports.contains_key(key) {
                changed.push(key.clone());
                diff(Some(&**frag), None, &mut ops).ok()?;
            }
        }
        Some(())
    });
    let mut out = String::new();
    let rebuilt = incremental.is_none();
    if rebuilt {
        changed = new.ports.keys().cloned().collect();
        ops = Ops::default();
        // Infallible: nothing old to conflict with.
        let _ = diff(None, Some(&new.base), &mut ops);
        for frag in new.ports.values() {
            let _ = diff(None, Some(&**frag), &mut ops);
        }
        let _ = writeln!(
            out,
            "table ip {table} {{}}\ndelete table ip {table}\nadd table ip {table}"
        );
    }
    changed.sort();
    let t = format!("ip {table}");
    let line = |out: &mut String, s: &str| {
        out.push_str(&s.replace("%T", &t));
        out.push('\n');
    };
    for s in ops.add_sets.iter().chain(&ops.add_chains) {
        line(&mut out, s);
    }
    for (set, keys) in &ops.del_elems {
        line(
            &mut out,
            &format!("delete element %T {set} {{ {} }}", keys.join(", ")),
        );
    }
    for c in &ops.flush {
        line(&mut out, &format!("flush chain %T {c}"));
    }
    for (c, r) in &ops.rules {
        line(&mut out, &format!("add rule %T {c} {r}"));
    }
    for (set, elems) in &ops.add_elems {
        line(
            &mut out,
            &format!("add element %T {set} {{ {} }}", elems.join(", ")),
        );
    }
    for c in &ops.del_chains {
        line(&mut out, &format!("delete chain %T {c}"));
    }
    for s in &ops.del_sets {
        line(&mut out, s);
    }
    (out, SyncReport { rebuilt, changed })
}

//! The daemon's replicated application: the reconcilers' [`ClusterState`] behind the consensus
//! layer's [`App`] trait.
//!
//! The consensus layer speaks in [`NodeFacts`] (what a heartbeat carries: taints as
//! `key[=value]:Effect` strings, as `kubectl taint` writes them); the state machine speaks in
//! [`NodeInfo`] (typed taints). This module is the only place that converts between them, and
//! the conversion is canonical in both directions, so the leader's liveness loop, which compares
//! a heartbeat's facts with the recorded ones, never sees a difference that is only spelling.

use super::{App, NodeFacts, NodeView};
use kommit_reconcilers::{ClusterState, Effects, Entry, NodeInfo, Taint, Trust, TrustOp};
use kommit_schemas::model::pod::TaintEffect;

/// Parses a taint written as `key[=value]:Effect`.
pub fn parse_taint(s: &str) -> Result<Taint, String> {
    let (kv, effect) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("taint {s:?} is not key[=value]:Effect"))?;
    let effect = match effect {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        other => {
            return Err(format!(
                "taint {s:?}: effect {other:?} is not NoSchedule, PreferNoSchedule or NoExecute"
            ))
        }
    };
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, (!v.is_empty()).then(|| v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() || key.len() > 253 || value.as_ref().is_some_and(|v| v.len() > 63) {
        return Err(format!(
            "taint {s:?}: key must be 1-253 and value 0-63 characters"
        ));
    }
    if key
        .chars()
        .chain(value.iter().flat_map(|v| v.chars()))
        .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!(
            "taint {s:?}: only letters, digits, '-', '_', '.' and '/' are allowed"
        ));
    }
    Ok(Taint {
        key: key.to_string(),
        value,
        effect,
    })
}

/// Writes a taint as `key[=value]:Effect` (the inverse of [`parse_taint`]).
pub fn format_taint(t: &Taint) -> String {
    let effect = match t.effect {
        TaintEffect::NoSchedule => "NoSchedule",
        TaintEffect::PreferNoSchedule => "PreferNoSchedule",
        TaintEffect::NoExecute => "NoExecute",
    };
    match &t.value {
        Some(v) => format!("{}={v}:{effect}", t.key),
        None => format!("{}:{effect}", t.key),
    }
}

/// Converts heartbeat facts into the state machine's node info.
pub fn node_info(facts: &NodeFacts) -> Result<NodeInfo, String> {
    let pods = u32::try_from(facts.pods)
        .map_err(|_| format!("node {}: pods {} is out of range", facts.name, facts.pods))?;
    let taints = facts
        .taints
        .iter()
        .map(|t| parse_taint(t).map_err(|e| format!("node {}: {e}", facts.name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NodeInfo {
        name: facts.name.clone(),
        address: facts.address.clone(),
        cpu_millis: facts.cpu_millis,
        memory_bytes: facts.memory_bytes,
        pods,
        labels: facts.labels.clone(),
        taints,
    })
}

/// Converts recorded node info back into facts, in the canonical spelling.
pub fn node_facts(info: &NodeInfo) -> NodeFacts {
    NodeFacts {
        name: info.name.clone(),
        address: info.address.clone(),
        cpu_millis: info.cpu_millis,
        memory_bytes: info.memory_bytes,
        pods: u64::from(info.pods),
        labels: info.labels.clone(),
        taints: info.taints.iter().map(format_taint).collect(),
    }
}

/// Rewrites facts into the canonical spelling (what [`node_facts`] would give back), or says
/// why they cannot be recorded.
pub fn canonical_facts(facts: &NodeFacts) -> Result<NodeFacts, String> {
    node_info(facts).map(|i| node_facts(&i))
}

impl App for ClusterState {
    type Entry = Entry;
    type Effects = Effects;

    fn apply(&mut self, entry: &Entry, at_ms: u64) -> Effects {
        ClusterState::apply(self, entry, at_ms)
    }

    fn snapshot_bytes(&self) -> Vec<u8> {
        self.canonical_bytes()
    }

    fn restore(bytes: &[u8]) -> Result<Self, String> {
        ClusterState::from_canonical_bytes(bytes).map_err(|e| e.to_string())
    }

    fn digest(&self) -> String {
        ClusterState::digest(self)
    }

    fn node_up(facts: NodeFacts) -> Result<Entry, String> {
        Ok(Entry::NodeUp {
            info: node_info(&facts)?,
        })
    }

    fn node_down(name: &str) -> Entry {
        Entry::NodeDown { node: name.into() }
    }

    fn node_drain(name: &str) -> Entry {
        Entry::NodeDrain { node: name.into() }
    }

    fn node_uncordon(name: &str) -> Entry {
        Entry::NodeUncordon { node: name.into() }
    }

    fn node_remove(name: &str) -> Entry {
        Entry::NodeRemove { node: name.into() }
    }

    fn node_view(&self, name: &str) -> Option<NodeView> {
        self.nodes.get(name).map(|n| NodeView {
            up: n.ready,
            facts: node_facts(&n.info),
        })
    }

    fn node_names(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    fn trust(&self) -> &Trust {
        &self.trust
    }

    fn trust_entry(op: TrustOp) -> Entry {
        Entry::Trust { op }
    }

    /// Time-driven work (progress deadlines, minReadySeconds, Job back-offs, deadlines and
    /// TTLs) only advances on entries, so the leader proposes `Tick` while some rollout is
    /// progressing or once its clock has passed the state's next deadline.
    fn tick(&self) -> Option<Entry> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        (self.time_driven_work() || self.next_deadline().is_some_and(|d| d <= now))
            .then_some(Entry::Tick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn taints_parse_and_print_canonically() {
        let rows: &[(&str, Result<&str, &str>)] = &[
            ("dedicated=gpu:NoSchedule", Ok("dedicated=gpu:NoSchedule")),
            ("spot:PreferNoSchedule", Ok("spot:PreferNoSchedule")),
            ("k=:NoExecute", Ok("k:NoExecute")),
            (
                "node.kubernetes.io/unreachable:NoExecute",
                Ok("node.kubernetes.io/unreachable:NoExecute"),
            ),
            ("k=v", Err("is not key[=value]:Effect")),
            ("k=v:Sometimes", Err("effect \"Sometimes\"")),
            (":NoSchedule", Err("key must be")),
            ("k=a b:NoSchedule", Err("only letters")),
        ];
        for (input, want) in rows {
            match (parse_taint(input), want) {
                (Ok(t), Ok(w)) => assert_eq!(&format_taint(&t), w, "{input}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{input}: {e}"),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn facts_round_trip_through_the_state() {
        let facts = NodeFacts {
            name: "n1".into(),
            address: "127.0.0.1:7946".into(),
            cpu_millis: 2000,
            memory_bytes: 4 << 30,
            pods: 110,
            labels: BTreeMap::from([("zone".into(), "a".into())]),
            taints: vec!["k=:NoSchedule".into(), "x=y:NoExecute".into()],
        };
        let canon = canonical_facts(&facts).unwrap();
        assert_eq!(canon.taints, vec!["k:NoSchedule", "x=y:NoExecute"]);
        let mut st = ClusterState::new();
        let entry = <ClusterState as App>::node_up(facts).unwrap();
        App::apply(&mut st, &entry, 1000);
        let view = st.node_view("n1").unwrap();
        assert!(view.up);
        assert_eq!(view.facts, canon);
        App::apply(&mut st, &<ClusterState as App>::node_down("n1"), 2000);
        assert!(!st.node_view("n1").unwrap().up);
        assert_eq!(st.node_names(), vec!["n1".to_string()]);
        let back = <ClusterState as App>::restore(&st.snapshot_bytes()).unwrap();
        assert_eq!(App::digest(&back), App::digest(&st));
    }

    #[test]
    fn bad_facts_are_refused() {
        let facts = NodeFacts {
            name: "n1".into(),
            pods: u64::MAX,
            ..NodeFacts::default()
        };
        let e = <ClusterState as App>::node_up(facts).unwrap_err();
        assert!(e.contains("pods"), "{e}");
    }
}

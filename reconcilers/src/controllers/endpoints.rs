//! Service endpoints: the bound pods with an IP that each selector Service selects.

use crate::state::ClusterState;
use crate::types::{Effects, Endpoint, PodRecord};
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn endpoints(state: &mut ClusterState, fx: &mut Effects) {
    // Bound pods with an IP, indexed by (namespace, label, value) for the labels that come
    // first in some service's selector: each service then only filters the pods carrying
    // its first label, not every pod of its namespace.
    let first_keys: BTreeSet<&str> = state
        .desired
        .services
        .values()
        .filter_map(|s| s.spec.selector.keys().next().map(String::as_str))
        .collect();
    let mut by_label: BTreeMap<(&str, &str, &str), Vec<&PodRecord>> = BTreeMap::new();
    if !first_keys.is_empty() {
        for p in state.pods.values() {
            if p.node.is_none() || p.pod_ip.is_none() {
                continue;
            }
            for (k, v) in &p.labels {
                if first_keys.contains(k.as_str()) {
                    by_label
                        .entry((p.namespace.as_str(), k.as_str(), v.as_str()))
                        .or_default()
                        .push(p);
                }
            }
        }
    }
    let mut next: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for (key, svc) in &state.desired.services {
        if svc.spec.selector.is_empty() {
            continue;
        }
        let ns = key.split_once('/').map(|(ns, _)| ns).unwrap_or("default");
        let Some((k0, v0)) = svc.spec.selector.iter().next() else {
            continue;
        };
        let mut eps: Vec<Endpoint> = by_label
            .get(&(ns, k0.as_str(), v0.as_str()))
            .into_iter()
            .flatten()
            .filter(|p| {
                svc.spec
                    .selector
                    .iter()
                    .all(|(k, v)| p.labels.get(k) == Some(v))
            })
            .filter_map(|p| {
                Some(Endpoint {
                    pod: p.key(),
                    ip: p.pod_ip?,
                    node: p.node.clone()?,
                    ready: p.ready,
                })
            })
            .collect();
        eps.sort();
        next.insert(key.clone(), eps);
    }
    let keys: BTreeSet<&String> = next.keys().chain(state.endpoints.keys()).collect();
    for k in keys {
        if next.get(k) != state.endpoints.get(k) {
            fx.endpoints_changed.push(k.clone());
        }
    }
    state.endpoints = next;
}

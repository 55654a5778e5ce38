//! Service endpoints: the bound pods with an IP that each selector Service selects. A full
//! pass computes every Service's ([`endpoints`]); otherwise only the Services selecting a
//! pod the entry touched change ([`refresh`]).

use crate::state::ClusterState;
use crate::tracker::ServiceIndex;
use crate::types::{Effects, Endpoint, PodRecord};
use kommit_schemas::model::core::Service;
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

/// Updates the endpoints of the Services that select a pod this entry touched (as it is
/// now, or as it was when removed or replaced), to what [`endpoints`] would compute.
pub(super) fn refresh(state: &mut ClusterState, fx: &mut Effects) {
    let index = &state.tracker.services;
    let services = &state.desired.services;
    let mut changed: BTreeSet<String> = BTreeSet::new();
    for (key, touch) in &state.pods.log().touched {
        let now = state.pods.get(key);
        let mut selecting: BTreeSet<&String> = BTreeSet::new();
        if let Some(p) = now {
            selectors(index, services, &p.namespace, &p.labels, &mut selecting);
        }
        if let Some((_, ns, labels)) = &touch.gone {
            selectors(index, services, ns, labels, &mut selecting);
        }
        for svc in selecting {
            let endpoint = now.and_then(|p| {
                let selected = services.get(svc).is_some_and(|s| {
                    s.spec
                        .selector
                        .iter()
                        .all(|(k, v)| p.labels.get(k) == Some(v))
                });
                Some(Endpoint {
                    pod: key.clone(),
                    ip: p.pod_ip?,
                    node: p.node.clone()?,
                    ready: p.ready,
                })
                .filter(|_| selected && p.namespace == namespace_of(svc))
            });
            let list = state.endpoints.entry(svc.clone()).or_default();
            let old = match list.binary_search_by(|e| e.pod.as_str().cmp(key)) {
                Ok(i) => Some(list.remove(i)),
                Err(_) => None,
            };
            if old != endpoint {
                changed.insert(svc.clone());
            }
            if let Some(e) = endpoint {
                let at = list.partition_point(|x| x.pod.as_str() < key.as_str());
                list.insert(at, e);
            }
        }
    }
    fx.endpoints_changed.extend(changed);
}

/// Adds the Services of `namespace` whose selector's first label the pod carries.
fn selectors<'a>(
    index: &'a ServiceIndex,
    services: &BTreeMap<String, Service>,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    out: &mut BTreeSet<&'a String>,
) {
    let Some(by_key) = index.get(namespace) else {
        return;
    };
    for (k, v) in labels {
        if let Some(keys) = by_key.get(k).and_then(|by_value| by_value.get(v)) {
            out.extend(keys.iter().filter(|s| services.contains_key(*s)));
        }
    }
}

fn namespace_of(service: &str) -> &str {
    service.split_once('/').map_or("default", |(ns, _)| ns)
}

//! `/nodes`: every node with its capacity, what its pods request, its pod CIDR, readiness
//! and (for the serving node) its lease, filterable by node label.

use crate::filter::Filter;
use crate::layout::{age, badge, short};
use crate::Facts;
use kommit_reconcilers::scheduler::pod_requests;
use maud::{html, Markup};
use std::collections::BTreeMap;

fn mib(bytes: u64) -> String {
    format!("{} Mi", bytes >> 20)
}

pub(super) fn render(facts: &Facts<'_>, f: &Filter) -> Markup {
    let s = facts.state;
    // One pass over the pods: requests and counts per node.
    let mut used: BTreeMap<&str, (u64, u64, usize)> = BTreeMap::new();
    for p in s.pods.values() {
        if let Some(n) = p.node.as_deref() {
            let (cpu, mem) = pod_requests(&p.spec);
            let e = used.entry(n).or_default();
            e.0 = e.0.saturating_add(cpu);
            e.1 = e.1.saturating_add(mem);
            e.2 += 1;
        }
    }
    let nodes: Vec<_> = s
        .nodes
        .iter()
        .filter(|(_, n)| f.matches(None, &n.info.labels))
        .collect();
    html! {
        h1 { "Nodes" }
        div.scroll { table #nodes {
            thead { tr {
                th { "Node" } th { "Status" } th { "CPU requested / allocatable" }
                th { "Memory requested / allocatable" } th { "Pods" } th { "Pod CIDR" }
                th { "Lease" } th { "Acked" } th { "Joined" } th { "Labels" }
            } }
            tbody {
                @for (name, n) in &nodes {
                    @let (cpu, mem, pods) = used.get(name.as_str()).copied().unwrap_or_default();
                    tr data-node=(name) {
                        td { (name) }
                        td { @if n.ready { (badge("ready")) } @else { (badge("notready")) } @if n.drained { " drained" } }
                        td { (cpu) "m / " (n.info.cpu_millis) "m" }
                        td { (mib(mem)) " / " (mib(n.info.memory_bytes)) }
                        td { (pods) " / " (n.info.pods) }
                        td.mono { @if let Some(c) = n.pod_cidr { (c) } @else { "-" } }
                        td {
                            @if *name == &facts.cluster.node {
                                @if facts.cluster.fenced { span.failed { "expired (fenced)" } } @else { "held" }
                            } @else if n.ready { "heartbeating" } @else { span.failed { "lost" } }
                        }
                        td { @if let Some(a) = &n.acked { code { (short(a)) } } @else { "-" } }
                        td { (age(s.now, n.joined_at)) " ago" }
                        td { @for (k, v) in &n.info.labels { code { (k) "=" (v) } " " } }
                    }
                }
            }
        } }
    }
}

//! `/workloads`: every object the status branch reports on, with its health; and
//! `/workloads/<ns>/<Kind>/<name>`: one Deployment's or StatefulSet's rollout timeline.

use super::overview::commit_link;
use crate::chart;
use crate::filter::Filter;
use crate::layout::{badge, utc_ms};
use crate::route::ROLLOUT_KINDS;
use crate::timeline::Sample;
use crate::Facts;
use kommit_reconcilers::ClusterState;
use maud::{html, Markup};
use std::collections::BTreeMap;

/// The labels of the object `kind` `namespace/name` in the commit in force.
fn labels<'a>(s: &'a ClusterState, kind: &str, key: &str) -> Option<&'a BTreeMap<String, String>> {
    let d = &s.desired;
    Some(match kind {
        "Deployment" => &d.deployments.get(key)?.metadata.labels,
        "StatefulSet" => &d.stateful_sets.get(key)?.metadata.labels,
        "DaemonSet" => &d.daemon_sets.get(key)?.metadata.labels,
        "Job" => &d.jobs.get(key)?.metadata.labels,
        "CronJob" => &d.cron_jobs.get(key)?.metadata.labels,
        "Pod" => &d.pods.get(key)?.metadata.labels,
        "ReplicaSet" => &d.replica_sets.get(key)?.metadata.labels,
        "PersistentVolumeClaim" => &d.persistent_volume_claims.get(key)?.metadata.labels,
        _ => return None,
    })
}

/// The health table of the objects `filter` passes (all without one).
pub(super) fn health_table(facts: &Facts<'_>, filter: Option<&Filter>) -> Markup {
    let empty = BTreeMap::new();
    let rows: Vec<(&str, &str, &str, &crate::ObjectFacts)> = facts
        .objects
        .iter()
        .filter_map(|(key, o)| {
            let mut it = key.splitn(3, '/');
            let (ns, kind, name) = (it.next()?, it.next()?, it.next()?);
            let pass = filter.is_none_or(|f| {
                let l = labels(facts.state, kind, &format!("{ns}/{name}")).unwrap_or(&empty);
                f.matches(Some(ns), l)
            });
            pass.then_some((ns, kind, name, o))
        })
        .collect();
    html! {
        @if rows.is_empty() { p.muted { "No workloads." } } @else {
        div.scroll { table #workloads {
            thead { tr { th { "Namespace" } th { "Kind" } th { "Name" } th { "Health" } th { "Ready" } th { "Message" } } }
            tbody {
                @for (ns, kind, name, o) in &rows {
                    tr data-object={(ns) "/" (kind) "/" (name)} {
                        td { (ns) } td { (kind) }
                        td {
                            @if ROLLOUT_KINDS.contains(kind) {
                                a href={"/workloads/" (ns) "/" (kind) "/" (name)} { (name) }
                            } @else { (name) }
                        }
                        td { (badge(&o.health)) }
                        td { @if let (Some(r), Some(w)) = (o.ready, o.replicas) { (r) "/" (w) } }
                        td { (o.message.as_deref().unwrap_or("")) }
                    }
                }
            }
        } }
        }
    }
}

pub(super) fn list(facts: &Facts<'_>, f: &Filter) -> Markup {
    html! {
        h1 { "Workloads" }
        (health_table(facts, Some(f)))
    }
}

pub(super) fn rollout(facts: &Facts<'_>, ns: &str, kind: &str, name: &str) -> Option<Markup> {
    let key = format!("{ns}/{kind}/{name}");
    let o = facts.objects.get(&key)?;
    let samples: Vec<&Sample> = facts
        .timeline
        .samples(&key)
        .map(|r| r.iter().collect())
        .unwrap_or_default();
    // The last sample of each commit, newest commit first.
    let mut per_commit: Vec<&Sample> = Vec::new();
    for s in samples.iter().rev() {
        if !per_commit.iter().any(|p| p.commit == s.commit) {
            per_commit.push(s);
        }
    }
    Some(html! {
        h1 { (kind) " " (ns) "/" (name) }
        p { (badge(&o.health)) " "
            @if let (Some(r), Some(w)) = (o.ready, o.replicas) { (r) " of " (w) " ready. " }
            (o.message.as_deref().unwrap_or("")) }
        h2 { "Rollout timeline" }
        (chart::rollout(&samples, facts.state.now))
        p.muted { "Samples are recorded by this node while it runs (at most "
            (crate::timeline::MAX_SAMPLES) " per workload), whenever a value or the commit changes." }
        h2 { "By commit" }
        div.scroll { table #rollout-commits {
            thead { tr { th { "Commit" } th { "Last sample" } th { "Desired" } th { "Ready" } th { "Updated" } th { "Unavailable" } } }
            tbody {
                @for s in &per_commit {
                    tr data-commit=(s.commit) {
                        td { (commit_link(facts, &s.commit)) } td { (utc_ms(s.at)) }
                        td { (s.desired) } td { (s.ready) } td { (s.updated) } td { (s.unavailable) }
                    }
                }
            }
        } }
        p { a href={"/pods?ns=" (crate::filter::encode(ns))} { "Pods in " (ns) } }
    })
}

//! `/pods`: every pod (node, IP, phase, readiness, restarts, last event), filterable; and
//! `/pods/<ns>/<name>`: one pod with its containers, events and the last lines of each
//! container's log. A container's environment is never shown (it may name Secret values
//! once resolved on the node; the state holds only references, but the page stays away).

use super::PodLogs;
use crate::filter::{encode, Filter};
use crate::layout::{age, utc_ms};
use crate::Facts;
use kommit_reconcilers::{ContainerState, ContainerStatus, EventType, PodPhase, PodRecord};
use maud::{html, Markup};

fn phase(p: &PodRecord) -> &'static str {
    match p.phase {
        PodPhase::Pending => "Pending",
        PodPhase::Running => "Running",
        PodPhase::Succeeded => "Succeeded",
        PodPhase::Failed => "Failed",
        PodPhase::Unknown => "Unknown",
    }
}

fn owner(p: &PodRecord) -> String {
    p.owner.id()
}

fn ready_count(p: &PodRecord) -> (usize, usize) {
    (
        p.containers.iter().filter(|c| c.ready).count(),
        p.spec.containers.len(),
    )
}

pub(super) fn list(facts: &Facts<'_>, f: &Filter) -> Markup {
    let s = facts.state;
    let pods: Vec<&PodRecord> = s
        .pods
        .values()
        .filter(|p| f.matches(Some(&p.namespace), &p.labels))
        .collect();
    html! {
        h1 { "Pods" }
        p.muted { (pods.len()) " of " (s.pods.len()) " pods." }
        div.scroll { table #pods {
            thead { tr { th { "Namespace" } th { "Name" } th { "Ready" } th { "Phase" } th { "Restarts" } th { "Age" } th { "Node" } th { "IP" } th { "Last event" } } }
            tbody {
                @for p in &pods {
                    @let (r, n) = ready_count(p);
                    tr data-pod={(p.namespace) "/" (p.name)} data-phase=(phase(p)) {
                        td { (p.namespace) }
                        td { a href={"/pods/" (encode(&p.namespace)) "/" (encode(&p.name))} { (p.name) } }
                        td { (r) "/" (n) }
                        td { span class=(phase(p)) { (phase(p)) } }
                        td { (p.restarts) }
                        td { (age(s.now, p.created_at)) }
                        td { (p.node.as_deref().unwrap_or("-")) }
                        td.mono { @if let Some(ip) = p.pod_ip { (ip) } }
                        td {
                            @if let Some(e) = p.events.last() { (e.reason) ": " (e.message) }
                            @else if let Some(r) = &p.reason { (r) }
                        }
                    }
                }
            }
        } }
    }
}

fn container_state(c: &ContainerStatus) -> String {
    match &c.state {
        None => "unknown".into(),
        Some(ContainerState::Waiting { reason, message }) => match message {
            Some(m) => format!("waiting: {reason} ({m})"),
            None => format!("waiting: {reason}"),
        },
        Some(ContainerState::Running { started_at }) => {
            format!("running since {} UTC", utc_ms(*started_at))
        }
        Some(ContainerState::Terminated { .. }) => match &c.exit_reason {
            Some(r) => format!("terminated: {r}"),
            None => "terminated".into(),
        },
    }
}

pub(super) fn page(facts: &Facts<'_>, ns: &str, name: &str, logs: &PodLogs) -> Option<Markup> {
    let s = facts.state;
    let p = s.pods.get(&format!("{ns}/{name}"))?;
    let (r, n) = ready_count(p);
    Some(html! {
        h1 { "Pod " (ns) "/" (name) }
        div.cards {
            div.card { dl {
                dt { "Phase" } dd { span class=(phase(p)) { (phase(p)) } " (" (r) "/" (n) " ready)" }
                dt { "Node" } dd { (p.node.as_deref().unwrap_or("not scheduled")) }
                dt { "IP" } dd.mono { @if let Some(ip) = p.pod_ip { (ip) } @else { "-" } }
                dt { "Owner" } dd { (owner(p)) }
                dt { "Created" } dd { (utc_ms(p.created_at)) " UTC (" (age(s.now, p.created_at)) " ago)" }
                dt { "Restarts" } dd { (p.restarts) }
                @if let Some(reason) = &p.reason { dt { "Scheduling" } dd.failed { (reason) } }
                @if let Some((reason, msg)) = &p.node_message { dt { "Node says" } dd { (reason) ": " (msg) } }
            } }
            div.card { dl {
                dt { "UID" } dd.mono { (p.uid) }
                dt { "Labels" } dd {
                    @for (k, v) in &p.labels { code { (k) "=" (v) } " " }
                }
            } }
        }
        h2 { "Containers" }
        div.scroll { table #containers {
            thead { tr { th { "Name" } th { "Image" } th { "Ready" } th { "Restarts" } th { "State" } } }
            tbody {
                @for c in &p.spec.containers {
                    @let st = p.containers.iter().find(|x| x.name == c.name.as_str());
                    tr {
                        td { (c.name.as_str()) } td.mono { (c.image.as_str()) }
                        td { @if st.is_some_and(|x| x.ready) { span.ready { "yes" } } @else { span.notready { "no" } } }
                        td { (st.map_or(0, |x| x.restarts)) }
                        td { (st.map(container_state).unwrap_or_else(|| "not reported".into())) }
                    }
                }
            }
        } }
        h2 { "Events" }
        @if p.events.is_empty() { p.muted { "No events." } } @else {
            div.scroll { table #events {
                thead { tr { th { "Time" } th { "Type" } th { "Reason" } th { "Message" } th { "Count" } } }
                tbody {
                    @for e in p.events.iter().rev() {
                        tr {
                            td { (utc_ms(e.at)) }
                            td { @match e.kind { EventType::Normal => { "Normal" } EventType::Warning => { span.failed { "Warning" } } } }
                            td { (e.reason) } td { (e.message) } td { (e.count) }
                        }
                    }
                }
            } }
        }
        h2 { "Logs" }
        @for c in &p.spec.containers {
            h3 { (c.name.as_str()) }
            @match logs.get(c.name.as_str()) {
                Some(Ok(text)) if !text.is_empty() => { pre.log { (text) } }
                Some(Ok(_)) => { p.muted { "No output yet." } }
                Some(Err(why)) => { p.muted { (why) } }
                None => { p.muted { "Logs are kept on the pod's node: " (p.node.as_deref().unwrap_or("none")) "." } }
            }
        }
    })
}

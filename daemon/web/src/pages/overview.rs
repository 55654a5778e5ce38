//! `/`: the commit in force (SHA, subject, author, when adopted and by which leader), the
//! leader and voters, the nodes with their health, and each workload's health.

use crate::layout::{age, badge, short, utc, utc_ms};
use crate::{CommitFacts, Facts};
use maud::{html, Markup};

/// A link to the commit on the forge, or its short SHA.
pub(super) fn commit_link(facts: &Facts<'_>, commit: &str) -> Markup {
    match facts.forge {
        Some(pattern) => html! {
            a.mono href=(pattern.replace("{sha}", commit)) title=(commit) { (short(commit)) }
        },
        None => html! { code title=(commit) { (short(commit)) } },
    }
}

pub(super) fn in_force<'a>(facts: &Facts<'a>) -> Option<&'a CommitFacts> {
    let c = facts.state.commit.as_deref()?;
    facts.commits.iter().find(|n| n.commit == c)
}

pub(super) fn render(facts: &Facts<'_>) -> Markup {
    let s = facts.state;
    let c = &facts.cluster;
    let note = in_force(facts);
    let pods_running = s
        .pods
        .values()
        .filter(|p| p.phase == kommit_reconcilers::PodPhase::Running)
        .count();
    html! {
        h1 { "Overview" }
        section.cards aria-label="Cluster" {
            div.card #commit {
                h2 { "Commit in force" }
                @match &s.commit {
                    None => p.muted { "No commit adopted yet." },
                    Some(commit) => dl {
                        dt { "Commit" } dd.mono data-commit=(commit) { (commit_link(facts, commit)) }
                        @if let Some(m) = note.and_then(|n| n.meta.as_ref()) {
                            dt { "Subject" } dd { (m.subject) }
                            dt { "Author" } dd { (m.author) }
                        }
                        dt { "Adopted" } dd {
                            @if let Some(at) = s.adopted_at { (utc_ms(at)) " UTC (" (age(s.now, at)) " ago)" }
                        }
                        dt { "By leader" } dd { (note.and_then(|n| n.by.as_deref()).unwrap_or("-")) }
                    },
                }
            }
            div.card #raft {
                h2 { "Consensus" }
                dl {
                    dt { "Leader" } dd { (c.leader.as_deref().unwrap_or("none known")) }
                    dt { "Voters" } dd { (c.voters.join(", ")) }
                    @if !c.learners.is_empty() { dt { "Learners" } dd { (c.learners.join(", ")) } }
                    dt { "Term / applied index" } dd { (c.term) " / " (c.applied) }
                    dt { "This node" } dd { (c.node) " (" (c.role) ")" @if c.fenced { " " (badge("failed")) " fenced" } }
                }
            }
            div.card #git {
                h2 { "Repository" }
                dl {
                    dt { "Remote" } dd { (c.repo.as_deref().unwrap_or("none")) }
                    dt { "Branch head" } dd {
                        @match (&c.branch, &c.head) {
                            (Some(b), Some(h)) => { (b) " at " (commit_link(facts, h)) }
                            (Some(b), None) => { (b) " (not fetched yet)" }
                            _ => "-",
                        }
                    }
                    @if let Some(e) = &c.fetch_error { dt { "Last fetch" } dd.failed { (e) } }
                    dt { "State time" } dd { (utc_ms(s.now)) " UTC" }
                    dt { "Pods" } dd { (s.pods.len()) " (" (pods_running) " Running)" }
                }
            }
        }
        section aria-labelledby="nodes-h" {
            h2 #nodes-h { "Nodes" }
            div.scroll { table {
                thead { tr { th { "Node" } th { "Health" } th { "Commit acknowledged" } th { "Pods" } th { "Address" } } }
                tbody {
                    @for (name, n) in &s.nodes {
                        tr {
                            td { (name) }
                            td {
                                @if !n.ready { (badge("notready")) }
                                @else if n.drained { (badge("ready")) " drained" }
                                @else { (badge("ready")) }
                            }
                            td { @if let Some(a) = &n.acked { (commit_link(facts, a)) } @else { "-" } }
                            td { (s.pods_on_node(name).count()) }
                            td.mono { (n.info.address) }
                        }
                    }
                }
            } }
        }
        section aria-labelledby="workloads-h" {
            h2 #workloads-h { "Workloads" }
            (super::workloads::health_table(facts, None))
        }
        @if let Some(n) = note {
            @if !n.acks.is_empty() {
                p.muted { "Last acknowledgement " (utc(n.acks.values().copied().max().unwrap_or(0))) " UTC." }
            }
        }
    }
}

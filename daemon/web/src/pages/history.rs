//! `/history`: the branch's recent commits as the notes record them: adopted, refused with
//! every `file:line:col` diagnostic, superseded by which commit; each node's ack, and how
//! long the commit took from push (its committer time) to converged (the last ack of the
//! nodes the cluster has).

use super::overview::commit_link;
use crate::layout::{badge, span, utc};
use crate::{CommitFacts, Decision, Facts};
use maud::{html, Markup};

/// Seconds from the commit's time to the last ack, once every current node acked.
pub(super) fn converged_after(facts: &Facts<'_>, n: &CommitFacts) -> Option<i64> {
    let pushed = n.meta.as_ref()?.time;
    if n.decision == Decision::Refused || facts.state.nodes.is_empty() {
        return None;
    }
    let mut last = i64::MIN;
    for name in facts.state.nodes.keys() {
        last = last.max(*n.acks.get(name)?);
    }
    Some(last - pushed)
}

pub(super) fn render(facts: &Facts<'_>) -> Markup {
    let c = facts.cluster;
    let pending = c
        .head
        .as_deref()
        .filter(|h| !facts.commits.iter().any(|n| n.commit == *h));
    html! {
        h1 { "History" }
        p.muted { "Newest decision first; the same facts as the notes on refs/notes/kommit." }
        @if let Some(h) = pending {
            p #pending { "Branch head " (commit_link(facts, h)) " is waiting for a decision." }
        }
        @if facts.commits.is_empty() { p.muted { "No commit decided yet." } }
        ol.history {
            @for n in facts.commits {
                li.card id={"c-" (n.commit)} data-commit=(n.commit) data-state=(n.decision.as_str()) {
                    (commit_link(facts, &n.commit)) " " (badge(n.decision.as_str()))
                    @if let Some(m) = &n.meta { " " strong { (m.subject) } span.muted { " by " (m.author) } }
                    div.muted {
                        (n.decision.as_str()) " " (utc(n.at)) " UTC"
                        @if let Some(by) = &n.by { " by leader " (by) }
                        @if let Some(next) = &n.superseded_by { ", superseded by " (commit_link(facts, next)) }
                        @if let Some(secs) = converged_after(facts, n) { "; pushed to converged in " (span(secs)) }
                    }
                    @if let Some(r) = &n.reason { p.diag { (r) } }
                    @if !n.diagnostics.is_empty() {
                        ul.diag aria-label="Diagnostics" {
                            @for d in &n.diagnostics { li { code { (d) } } }
                        }
                    }
                    @if !n.acks.is_empty() {
                        div { "Acks: "
                            @for (i, (node, at)) in n.acks.iter().enumerate() {
                                @if i > 0 { ", " }
                                (node) " " span.muted { (utc(*at)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

//! The pages, as pure functions from [`Facts`] to markup: `render(route, facts, logs)`
//! gives the title and the `<main>` fragment, which the server wraps in the shell
//! ([`crate::layout::document`]) or sends alone over the event stream.

mod history;
mod nodes;
mod overview;
mod pods;
mod workloads;

use crate::route::Route;
use crate::Facts;
use maud::Markup;
use std::collections::BTreeMap;

/// The last log lines of each container of a pod (or why there are none), by container.
pub type PodLogs = BTreeMap<String, Result<String, String>>;

/// One rendered page.
#[derive(Debug)]
pub struct Rendered {
    /// The page title.
    pub title: String,
    /// The `<main>` fragment.
    pub main: Markup,
    /// False when the page's object does not exist (served as 404).
    pub found: bool,
}

/// Renders `route` from `facts`; `logs` feeds the pod page.
pub fn render(route: &Route, facts: &Facts<'_>, logs: &PodLogs) -> Rendered {
    let ok = |title: String, main: Markup| Rendered {
        title,
        main,
        found: true,
    };
    match route {
        Route::Overview => ok("Overview".into(), overview::render(facts)),
        Route::History => ok("History".into(), history::render(facts)),
        Route::Workloads(f) => ok("Workloads".into(), workloads::list(facts, f)),
        Route::Rollout {
            namespace,
            kind,
            name,
        } => match workloads::rollout(facts, namespace, kind, name) {
            Some(m) => ok(format!("{kind} {namespace}/{name}"), m),
            None => missing(format!(
                "no {kind} {namespace}/{name} in the commit in force"
            )),
        },
        Route::Pods(f) => ok("Pods".into(), pods::list(facts, f)),
        Route::Pod { namespace, name } => match pods::page(facts, namespace, name, logs) {
            Some(m) => ok(format!("Pod {namespace}/{name}"), m),
            None => missing(format!("no pod {namespace}/{name}")),
        },
        Route::Nodes(f) => ok("Nodes".into(), nodes::render(facts, f)),
    }
}

fn missing(what: String) -> Rendered {
    Rendered {
        main: maud::html! { h1 { "Not found" } p.notice { (what) } },
        title: "Not found".into(),
        found: false,
    }
}

#[cfg(test)]
mod tests;

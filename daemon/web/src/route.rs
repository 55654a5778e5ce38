//! Which page a path names. Pure, so the page server, the event stream and the tests agree.

use crate::filter::{Filter, FilterError};

/// The workload kinds with a rollout page.
pub const ROLLOUT_KINDS: [&str; 2] = ["Deployment", "StatefulSet"];

/// A page of the site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/`: the commit in force, leader, voters, nodes and workload health.
    Overview,
    /// `/history`: recent decisions with diagnostics, acks and times.
    History,
    /// `/workloads`: every workload with its health, filterable.
    Workloads(Filter),
    /// `/workloads/<namespace>/<Kind>/<name>`: one workload's rollout timeline.
    Rollout {
        /// Namespace.
        namespace: String,
        /// `Deployment` or `StatefulSet`.
        kind: String,
        /// Name.
        name: String,
    },
    /// `/pods`: every pod, filterable.
    Pods(Filter),
    /// `/pods/<namespace>/<name>`: one pod, its containers, events and logs.
    Pod {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// `/nodes`: every node, filterable by label.
    Nodes(Filter),
}

/// Why a path is no page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RouteError {
    /// No page has this path.
    #[error("no page at {0}")]
    NotFound(String),
    /// The filter cannot be read.
    #[error(transparent)]
    Filter(#[from] FilterError),
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
}

impl Route {
    /// The route of `path` with query values `ns` and `label`.
    pub fn parse(path: &str, ns: Option<&str>, label: Option<&str>) -> Result<Route, RouteError> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let not_found = || RouteError::NotFound(path.chars().take(200).collect());
        if parts.iter().skip(1).any(|p| !segment_ok(p)) {
            return Err(not_found());
        }
        Ok(match parts.as_slice() {
            [""] => Route::Overview,
            ["history"] => Route::History,
            ["workloads"] => Route::Workloads(Filter::parse(ns, label)?),
            ["workloads", ns, kind, name] if ROLLOUT_KINDS.contains(kind) => Route::Rollout {
                namespace: ns.to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
            },
            ["pods"] => Route::Pods(Filter::parse(ns, label)?),
            ["pods", ns, name] => Route::Pod {
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            ["nodes"] => Route::Nodes(Filter::parse(ns, label)?),
            _ => return Err(not_found()),
        })
    }

    /// The navigation entry this page sits under.
    pub fn section(&self) -> &'static str {
        match self {
            Route::Overview => "/",
            Route::History => "/history",
            Route::Workloads(_) | Route::Rollout { .. } => "/workloads",
            Route::Pods(_) | Route::Pod { .. } => "/pods",
            Route::Nodes(_) => "/nodes",
        }
    }

    /// The list filter, for pages that have one.
    pub fn filter(&self) -> Option<&Filter> {
        match self {
            Route::Workloads(f) | Route::Pods(f) | Route::Nodes(f) => Some(f),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_pages() {
        assert_eq!(Route::parse("/", None, None), Ok(Route::Overview));
        assert_eq!(Route::parse("/history", None, None), Ok(Route::History));
        assert_eq!(
            Route::parse("/workloads/web/Deployment/hello", None, None),
            Ok(Route::Rollout {
                namespace: "web".into(),
                kind: "Deployment".into(),
                name: "hello".into()
            })
        );
        assert_eq!(
            Route::parse("/pods/default/hello-abc", None, None),
            Ok(Route::Pod {
                namespace: "default".into(),
                name: "hello-abc".into()
            })
        );
        let Ok(Route::Pods(f)) = Route::parse("/pods", Some("web"), Some("app=x")) else {
            panic!("pods route");
        };
        assert_eq!(f.namespace.as_deref(), Some("web"));
    }

    #[test]
    fn other_paths_are_not_found() {
        for p in [
            "/secrets",
            "/workloads/web/Secret/db",
            "/pods/a/b/c",
            "/pods//x",
        ] {
            assert!(
                matches!(Route::parse(p, None, None), Err(RouteError::NotFound(_))),
                "{p}"
            );
        }
        assert!(matches!(
            Route::parse("/nodes", None, Some("=x")),
            Err(RouteError::Filter(_))
        ));
    }
}

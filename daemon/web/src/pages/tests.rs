use super::*;
use crate::synthetic::{self, sha, SECRET_VALUE};
use crate::timeline::Timeline;
use crate::{ClusterFacts, CommitFacts, CommitMeta, Decision, ObjectFacts};
use kommit_reconcilers::ClusterState;

/// Facts for `state` the way a test can make them without the daemon: notes from the
/// history's records, health "healthy" with ready counts for Deployments.
fn facts_parts(
    state: &ClusterState,
) -> (
    ClusterFacts,
    Vec<CommitFacts>,
    BTreeMap<String, ObjectFacts>,
) {
    let cluster = ClusterFacts {
        node: "node0".into(),
        role: "Leader".into(),
        leader: Some("node0".into()),
        voters: vec!["node0".into()],
        term: 3,
        applied: 42,
        repo: Some("file:///srv/repo.git".into()),
        branch: Some("main".into()),
        head: Some(sha('d')),
        ..Default::default()
    };
    let mut commits: Vec<CommitFacts> = state
        .history
        .records()
        .iter()
        .map(|r| {
            let (decision, diagnostics, acks) = match &r.outcome {
                kommit_reconcilers::CommitOutcome::Refused { diagnostics, .. } => {
                    (Decision::Refused, diagnostics.clone(), BTreeMap::new())
                }
                kommit_reconcilers::CommitOutcome::Adopted { acks, .. } => (
                    if state.commit.as_deref() == Some(r.commit.as_str()) {
                        Decision::Adopted
                    } else {
                        Decision::Superseded
                    },
                    vec![],
                    acks.iter()
                        .map(|(n, at)| (n.clone(), (*at / 1000) as i64))
                        .collect(),
                ),
            };
            CommitFacts {
                commit: r.commit.clone(),
                decision,
                at: (r.at / 1000) as i64,
                by: r.by.clone(),
                superseded_by: None,
                reason: None,
                diagnostics,
                acks,
                meta: Some(CommitMeta {
                    subject: format!("subject of {}", &r.commit[..4]),
                    author: "alice <script>".into(),
                    time: 1,
                }),
            }
        })
        .collect();
    commits.reverse();
    let objects = state
        .desired
        .deployments
        .keys()
        .map(|k| {
            let (ns, name) = k.split_once('/').expect("ns/name");
            (
                format!("{ns}/Deployment/{name}"),
                ObjectFacts {
                    health: "healthy".into(),
                    message: None,
                    replicas: Some(2),
                    ready: Some(2),
                },
            )
        })
        .collect();
    (cluster, commits, objects)
}

fn render_all(state: &ClusterState, timeline: &Timeline) -> Vec<(String, String)> {
    let (cluster, commits, objects) = facts_parts(state);
    let facts = Facts {
        state,
        cluster: &cluster,
        commits: &commits,
        objects: &objects,
        timeline,
        forge: Some("https://forge.example/repo/commit/{sha}"),
    };
    let first_pod = state.pods.values().next().expect("a pod");
    let mut routes = vec![
        "/".to_string(),
        "/history".into(),
        "/workloads".into(),
        "/pods".into(),
        "/nodes".into(),
        format!("/pods/{}/{}", first_pod.namespace, first_pod.name),
    ];
    routes.extend(objects.keys().map(|k| format!("/workloads/{k}")));
    routes
        .into_iter()
        .map(|path| {
            let route = Route::parse(&path, None, None).expect(&path);
            let r = render(&route, &facts, &PodLogs::new());
            assert!(r.found, "{path} found");
            let page = crate::layout::document(&route, "node0", &r.title, &r.main);
            (path, page)
        })
        .collect()
}

#[test]
fn no_page_shows_a_secret_value() {
    let state = synthetic::state(3, 4, 2);
    assert!(
        state.desired.secrets.contains_key("default/db"),
        "the synthetic state holds the Secret the test looks for"
    );
    let mut t = Timeline::new();
    t.record(&state);
    for (path, page) in render_all(&state, &t) {
        assert!(
            !page.contains(SECRET_VALUE),
            "{path} shows the Secret's value"
        );
    }
}

#[test]
fn overview_names_the_commit_in_force_and_its_leader() {
    let state = synthetic::state(3, 4, 2);
    let pages = render_all(&state, &Timeline::new());
    let overview = &pages[0].1;
    assert!(
        overview.contains(&format!("data-commit=\"{}\"", sha('b'))),
        "{overview}"
    );
    assert!(overview.contains("subject of bbbb"));
    assert!(overview
        .contains("https://forge.example/repo/commit/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"));
    assert!(
        overview.contains("<dt>By leader</dt><dd>node0</dd>"),
        "{overview}"
    );
    assert!(overview.contains("ns0/Deployment/app0"));
}

#[test]
fn history_shows_refusals_with_their_location_and_escapes_git_text() {
    let state = synthetic::state(2, 1, 1);
    let pages = render_all(&state, &Timeline::new());
    let history = &pages[1].1;
    assert!(
        history.contains(&format!(
            "data-commit=\"{}\" data-state=\"refused\"",
            sha('c')
        )),
        "{history}"
    );
    assert!(history.contains("apps/broken.yaml:3:5: error: unknown field `replicaz`"));
    assert!(history.contains(&format!(
        "data-commit=\"{}\" data-state=\"superseded\"",
        sha('a')
    )));
    assert!(history.contains("alice &lt;script&gt;"), "author escaped");
    assert!(!history.contains("alice <script>"));
    assert!(
        history.contains("is waiting for a decision"),
        "the unseen head"
    );
}

#[test]
fn lists_filter_by_namespace_and_label() {
    let state = synthetic::state(3, 4, 2);
    let (cluster, commits, objects) = facts_parts(&state);
    let t = Timeline::new();
    let facts = Facts {
        state: &state,
        cluster: &cluster,
        commits: &commits,
        objects: &objects,
        timeline: &t,
        forge: None,
    };
    let page = |path: &str, ns: Option<&str>, label: Option<&str>| {
        let r = Route::parse(path, ns, label).expect("route");
        render(&r, &facts, &PodLogs::new()).main.into_string()
    };
    let pods = page("/pods", Some("ns1"), None);
    assert_eq!(pods.matches("data-pod=\"ns1/").count(), 2, "{pods}");
    assert!(!pods.contains("data-pod=\"ns0/"));
    let pods = page("/pods", None, Some("app=app2"));
    assert_eq!(pods.matches("<tr data-pod=").count(), 2);
    let nodes = page("/nodes", None, Some("zone=z1"));
    assert_eq!(nodes.matches("<tr data-node=").count(), 1, "{nodes}");
    let w = page("/workloads", Some("ns3"), None);
    assert_eq!(w.matches("<tr data-object=").count(), 1);
}

#[test]
fn a_rollout_page_draws_the_recorded_samples() {
    let mut state = synthetic::state(2, 1, 2);
    let mut t = Timeline::new();
    assert!(t.record(&state));
    assert!(!t.record(&state), "nothing changed, nothing recorded");
    state.commit = Some(sha('e'));
    state.now += 5_000;
    assert!(t.record(&state), "a new commit is a new sample");
    let pages = render_all(&state, &t);
    let (_, rollout) = pages
        .iter()
        .find(|(p, _)| p == "/workloads/ns0/Deployment/app0")
        .expect("rollout page");
    assert!(rollout.contains("<svg class=\"chart\""), "{rollout}");
    assert_eq!(rollout.matches("<line class=\"commit\"").count(), 2);
    assert!(rollout.contains(&format!("<tr data-commit=\"{}\"", sha('e'))));
}

#[test]
fn unknown_objects_are_not_found() {
    let state = synthetic::state(1, 1, 1);
    let (cluster, commits, objects) = facts_parts(&state);
    let t = Timeline::new();
    let facts = Facts {
        state: &state,
        cluster: &cluster,
        commits: &commits,
        objects: &objects,
        timeline: &t,
        forge: None,
    };
    for path in ["/pods/default/nope", "/workloads/default/Deployment/nope"] {
        let r = Route::parse(path, None, None).expect("route");
        assert!(!render(&r, &facts, &PodLogs::new()).found, "{path}");
    }
}

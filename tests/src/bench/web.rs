//! `kommit-bench web`: the server-side cost of the web page's overview and history with
//! 1,000 pods in the state (and a full history of [`kommit_reconcilers::HISTORY_LEN`]
//! decisions), measured the way the daemon answers a request: the notes and the status
//! files derived from the state (`sync::notes`, `sync::report`, through
//! `kommit_daemon::web`), the page rendered and wrapped in its shell. Prints the median and
//! the slowest of the runs per page; ends with
//! `RESULT web pods=<n> overview_ms=<median> history_ms=<median>`.
//!
//! Options: `--pods N` (1000; rounded to Deployments of 10), `--nodes N` (50), `--runs N`
//! (20).

use anyhow::{bail, ensure, Context};
use kommit_reconcilers::ClusterState;
use kommit_web::pages::{render, PodLogs};
use kommit_web::route::Route;
use kommit_web::timeline::Timeline;
use kommit_web::{ClusterFacts, Facts};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

struct Options {
    pods: usize,
    nodes: usize,
    runs: usize,
}

fn parse(args: &[String]) -> anyhow::Result<Options> {
    let mut o = Options {
        pods: 1000,
        nodes: 50,
        runs: 20,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n = value
            .parse::<usize>()
            .with_context(|| format!("{flag} {value}: not a count"))?;
        match flag.as_str() {
            "--pods" => o.pods = n,
            "--nodes" => o.nodes = n,
            "--runs" => o.runs = n,
            other => bail!("unknown option {other}"),
        }
    }
    ensure!(
        o.pods >= 10 && o.nodes >= 1 && o.runs >= 1,
        "--pods >= 10, --nodes >= 1, --runs >= 1"
    );
    Ok(o)
}

/// One request's work for `route`: facts derived from the state, the page, the shell.
fn answer(
    state: &ClusterState,
    cluster: &ClusterFacts,
    timeline: &Timeline,
    route: &Route,
) -> usize {
    let notes = kommit_daemon::sync::notes::notes(state);
    let commits = kommit_daemon::web::commit_facts(state, &notes, &BTreeMap::new());
    let objects = kommit_daemon::web::object_facts(state);
    let facts = Facts {
        state,
        cluster,
        commits: &commits,
        objects: &objects,
        timeline,
        forge: None,
    };
    let r = render(route, &facts, &PodLogs::new());
    kommit_web::layout::document(route, &cluster.node, &r.title, &r.main).len()
}

fn measure(
    o: &Options,
    state: &ClusterState,
    cluster: &ClusterFacts,
    t: &Timeline,
    route: &Route,
) -> (f64, f64, usize) {
    let mut times: Vec<Duration> = Vec::with_capacity(o.runs);
    let mut bytes = 0;
    for _ in 0..o.runs {
        let start = Instant::now();
        bytes = answer(state, cluster, t, route);
        times.push(start.elapsed());
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        bytes,
    )
}

/// Runs the benchmark.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let o = parse(args)?;
    let deployments = o.pods / 10;
    let built = Instant::now();
    let state = kommit_web::synthetic::with_history(
        o.nodes,
        deployments,
        10,
        kommit_reconcilers::HISTORY_LEN,
    );
    let pods = state.pods.len();
    let running = state
        .pods
        .values()
        .filter(|p| p.phase == kommit_reconcilers::PodPhase::Running)
        .count();
    ensure!(
        running == pods,
        "{running} of {pods} synthetic pods Running"
    );
    eprintln!(
        "state: {pods} pods on {} nodes, {} Deployments, {} decisions in the history (built in {:?})",
        state.nodes.len(),
        state.desired.deployments.len(),
        state.history.records().len(),
        built.elapsed()
    );
    let cluster = ClusterFacts {
        node: "node0".into(),
        role: "Leader".into(),
        leader: Some("node0".into()),
        voters: vec!["node0".into(), "node1".into(), "node2".into()],
        ..Default::default()
    };
    let mut timeline = Timeline::new();
    timeline.record(&state);
    let mut results = Vec::new();
    for (name, path) in [
        ("overview", "/"),
        ("history", "/history"),
        ("pods", "/pods"),
    ] {
        let route = Route::parse(path, None, None).context("route")?;
        let (median, max, bytes) = measure(&o, &state, &cluster, &timeline, &route);
        eprintln!(
            "{name:>9}: median {median:.2} ms, slowest {max:.2} ms over {} runs, {} KiB",
            o.runs,
            bytes / 1024
        );
        results.push(median);
    }
    println!(
        "RESULT web pods={pods} overview_ms={:.2} history_ms={:.2}",
        results[0], results[1]
    );
    Ok(())
}

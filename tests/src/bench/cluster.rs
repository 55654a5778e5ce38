//! `kommit-bench cluster-push-to-running [--samples N] [--replicas R]`: on a three-node
//! cluster of the test harness (real daemons, each a host of its own in a network
//! namespace, fetching over git:// from a `git daemon` on the test bridge), from `git push`
//! (followed by the forge's push webhook to every node, as a forge sends it) to all R
//! replicas of a new Deployment Running across the nodes, polled every 5 ms in the first
//! node's replicated state. Each sample adds a Deployment and removes the previous one.
//! Needs root and `cargo build --release -p kommit-daemon`.

use crate::cluster::Cluster;
use anyhow::{bail, Context};
use kommit_reconcilers::PodPhase;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Runs the benchmark.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut samples = 20usize;
    let mut replicas = 10u32;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--samples" => samples = it.next().context("--samples N")?.parse()?,
            "--replicas" => replicas = it.next().context("--replicas N")?.parse()?,
            other => bail!("unknown option {other}"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("cluster-push-to-running runs a cluster of pods and needs root");
    }
    let mut c = Cluster::new(3);
    let joined = c.start();
    eprintln!("3 nodes up in {} ms", joined.as_millis());
    std::fs::remove_dir_all(c.work.join("apps/hello")).context("removing the template app")?;
    c.push("no app");
    let mut running_ms = Vec::new();
    for i in 0..samples {
        let name = format!("bench{i}");
        if i > 0 {
            let _ = std::fs::remove_file(c.work.join(format!("apps/bench{}.yaml", i - 1)));
        }
        c.write(
            &format!("apps/{name}.yaml"),
            &super::push::deployment(&name, replicas),
        );
        c.commit(&name);
        let t = Instant::now();
        c.push_committed();
        let prefix = format!("{name}-");
        let mut nodes = BTreeSet::new();
        let ok = crate::agent_support::wait_for_every(
            Duration::from_secs(60),
            Duration::from_millis(5),
            || {
                let Some(s) = c.node(1).try_state() else {
                    return false;
                };
                let pods: Vec<_> = s
                    .pods
                    .values()
                    .filter(|p| p.name.starts_with(&prefix))
                    .collect();
                nodes = pods.iter().filter_map(|p| p.node.clone()).collect();
                pods.len() == replicas as usize && pods.iter().all(|p| p.phase == PodPhase::Running)
            },
        );
        if !ok {
            bail!("sample {i}: {replicas} replicas not Running within 60 s");
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!("sample {i}: running {ms:.1} ms on {nodes:?}");
        running_ms.push(ms);
    }
    running_ms.sort_by(f64::total_cmp);
    let (p50, p99) = (
        super::push::percentile(&running_ms, 0.5),
        super::push::percentile(&running_ms, 0.99),
    );
    c.teardown();
    println!("cluster push to running: {samples} samples of {replicas} replicas on 3 nodes; p50 {p50:.1} ms p99 {p99:.1} ms");
    println!("RESULT cluster_push_to_running p50_ms={p50:.1} p99_ms={p99:.1}");
    Ok(())
}

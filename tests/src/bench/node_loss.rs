//! `kommit-bench node-loss [--samples N]`: on a three-node cluster of the test harness (real
//! daemons, each a host of its own in a network namespace), from the loss of a node (link
//! down, daemon, shims and containers SIGKILLed, as a host losing power) to every pod it ran
//! Running on the other nodes: six Deployment replicas and one at-most-once pod, read every
//! 10 ms from a surviving node's replicated state. After each sample the node comes back
//! and the next sample loses the follower that runs the most pods (never the leader:
//! leader loss is `cluster_leader_loss`'s). The daemons run with their default liveness
//! timing (`--down-after-ms 4000`). Needs root and `cargo build --release -p kommit-daemon`.

use crate::cluster::manifests::{sleeping_web, web_and_solo_running, SOLO};
use crate::cluster::Cluster;
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

/// Runs the benchmark.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut samples = 3usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--samples" => samples = it.next().context("--samples N")?.parse()?,
            other => bail!("unknown option {other} (known: --samples N)"),
        }
    }
    if samples == 0 {
        bail!("--samples must be at least 1");
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("node-loss runs a cluster of pods and needs root");
    }
    let mut c = Cluster::new(3);
    let joined = c.start();
    eprintln!("3 nodes up in {} ms", joined.as_millis());
    std::fs::remove_dir_all(c.work.join("apps/hello")).context("removing the template app")?;
    c.write("apps/loss.yaml", &format!("{}---\n{SOLO}", sleeping_web(6)));
    let commit = c.push("six web pods and an at-most-once one");
    c.wait_state(Duration::from_secs(120), "the bench pods Running", |s| {
        s.commit.as_deref() == Some(commit.as_str()) && web_and_solo_running(s, 6, None)
    });
    let url = c.url.clone();
    let mut took_ms = Vec::new();
    for i in 0..samples {
        let leader = c.leader().context("no leader")?;
        let s = c.any_state().context("no node answers")?;
        let count = |n: &str| {
            s.pods
                .values()
                .filter(|p| p.node.as_deref() == Some(n))
                .count()
        };
        let victim = c
            .nodes
            .iter()
            .map(|n| n.name.clone())
            .filter(|n| *n != leader)
            .max_by_key(|n| count(n))
            .context("no follower")?;
        let lost = count(&victim);
        let vi: usize = victim[1..].parse()?;
        let survivor = if vi == 1 { 2 } else { 1 };
        let t = Instant::now();
        c.node_mut(vi).power_off();
        let ok = crate::agent_support::wait_for_every(
            Duration::from_secs(60),
            Duration::from_millis(10),
            || {
                c.node(survivor)
                    .try_state()
                    .is_some_and(|s| web_and_solo_running(&s, 6, Some(victim.as_str())))
            },
        );
        if !ok {
            bail!("sample {i}: {victim}'s pods not Running elsewhere within 60 s");
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        eprintln!(
            "sample {i}: lost {victim} ({lost} pods), all Running elsewhere after {ms:.1} ms"
        );
        took_ms.push(ms);
        c.node_mut(vi).power_on(&url);
        c.wait_state(Duration::from_secs(60), "the node back and Ready", |s| {
            s.nodes.get(&victim).is_some_and(|n| n.ready)
        });
    }
    c.teardown();
    took_ms.sort_by(f64::total_cmp);
    let p50 = super::push::percentile(&took_ms, 0.5);
    let max = took_ms.last().copied().unwrap_or_default();
    println!(
        "node loss to running: {samples} samples on 3 nodes; p50 {p50:.1} ms, max {max:.1} ms"
    );
    println!("RESULT node_loss_to_running ms={p50:.1} max_ms={max:.1} samples={samples}");
    Ok(())
}

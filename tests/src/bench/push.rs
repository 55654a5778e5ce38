//! `kommit-bench push-to-running [--samples N] [--replicas R] [--log FILE]`: from `git push`
//! to a Deployment's replicas Running, then Ready, on one real node (a `kommit daemon` with its
//! agent, woken by its watch on the local remote). Each sample pushes a new Deployment of R
//! replicas and follows the replicated state with blocking queries (`/state?index=N`, each
//! answered when an entry is applied); the previous sample's Deployment is
//! removed before, in a push of its own, and waited for until its sandboxes are gone.
//! Then `footprint`: the stripped release binary and the idle daemon's resident memory with
//! the template running. Needs root and `cargo build --release -p kommit-daemon`.

use crate::agent_support::{wait_for, AgentNode};
use crate::fixtures::kommit_bin;
use anyhow::{bail, Context};
use kommit_reconcilers::PodPhase;
use std::time::{Duration, Instant};

/// The `p` quantile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A Deployment of `replicas` busybox httpd pods, ready on a TCP probe.
pub fn deployment(name: &str, replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f", "-p", "8080", "-h", "/tmp"]
        ports: [{{name: http, containerPort: 8080}}]
        readinessProbe:
          tcpSocket: {{port: http}}
          periodSeconds: 1
        resources:
          requests: {{cpu: 10m, memory: 8Mi}}
"#
    )
}

/// The resident kB from smaps_rollup: all (`Rss`), `Anonymous`, and file-backed.
fn rss_breakdown(pid: u32) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    let (rss, anon) = (field("Rss:")?, field("Anonymous:")?);
    Some((rss, anon, rss.saturating_sub(anon)))
}

/// Runs the benchmark.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut samples = 20usize;
    let mut replicas = 10u32;
    let mut log = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--samples" => samples = it.next().context("--samples N")?.parse()?,
            "--replicas" => replicas = it.next().context("--replicas N")?.parse()?,
            "--log" => log = Some(std::path::PathBuf::from(it.next().context("--log FILE")?)),
            other => bail!("unknown option {other}"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("push-to-running runs pods and needs root");
    }
    let mut node = AgentNode::new("bench", 214);
    node.push("the template");
    node.start();
    node.wait_state(Duration::from_secs(60), "the template ready", |s| {
        s.commit.is_some() && !s.pods.is_empty() && s.pods.values().all(|p| p.ready)
    });
    let mut running_ms = Vec::new();
    let mut ready_ms = Vec::new();
    for i in 0..samples {
        let name = format!("bench{i}");
        if i > 0 {
            // The previous sample's Deployment goes in a push of its own, untimed: a sample
            // measures bringing one Deployment up, not tearing another down.
            let _ = std::fs::remove_file(node.work.join(format!("apps/bench{}.yaml", i - 1)));
            node.push(&format!("remove bench{}", i - 1));
            let gone = format!("bench{}-", i - 1);
            node.wait_state(
                Duration::from_secs(60),
                "the previous sample's pods gone",
                |s| s.pods.values().all(|p| !p.name.starts_with(&gone)),
            );
            // ... and gone from the runtime too (their grace period ends in the background).
            let rt = node.runtimes();
            let sandbox = format!("default_{gone}");
            if !wait_for(Duration::from_secs(60), || {
                rt.containers
                    .list()
                    .is_ok_and(|l| l.iter().all(|p| !p.id.starts_with(&sandbox)))
            }) {
                bail!("the previous sample's sandboxes were not removed within 60 s");
            }
        }
        node.write(&format!("apps/{name}.yaml"), &deployment(&name, replicas));
        // Commit first, so only the push itself is timed.
        crate::agent_support::git(&node.work, &["add", "--all", "."]);
        crate::agent_support::git(&node.work, &["commit", "--quiet", "-m", &name]);
        let t = Instant::now();
        crate::agent_support::git(&node.work, &["push", "--quiet", "origin", "HEAD:main"]);
        let prefix = format!("{name}-");
        let mut running_at = None;
        // Blocking queries, not polling: each answer comes with the entry that changed the
        // state, and the daemon does no work for the bench in between.
        let (mut index, deadline) = (0, t + Duration::from_secs(60));
        let ok = loop {
            if Instant::now() >= deadline {
                break false;
            }
            let Some((i, s)) = node.state_after(index, Duration::from_secs(1)) else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            let at = t.elapsed();
            index = i;
            let pods: Vec<_> = s
                .pods
                .values()
                .filter(|p| p.name.starts_with(&prefix))
                .collect();
            let running = pods.len() == replicas as usize
                && pods.iter().all(|p| p.phase == PodPhase::Running);
            if running && running_at.is_none() {
                running_at = Some(at);
            }
            if running && pods.iter().all(|p| p.ready) {
                break true;
            }
        };
        if !ok {
            bail!("sample {i}: {replicas} replicas not ready within 60 s");
        }
        let ready = t.elapsed();
        let running = running_at.unwrap_or(ready);
        eprintln!(
            "sample {i}: running {:.1} ms, ready {:.1} ms",
            running.as_secs_f64() * 1e3,
            ready.as_secs_f64() * 1e3
        );
        running_ms.push(running.as_secs_f64() * 1e3);
        ready_ms.push(ready.as_secs_f64() * 1e3);
    }
    running_ms.sort_by(f64::total_cmp);
    ready_ms.sort_by(f64::total_cmp);
    let (p50, p99, rp50) = (
        percentile(&running_ms, 0.5),
        percentile(&running_ms, 0.99),
        percentile(&ready_ms, 0.5),
    );
    // Footprint: back to the template alone, idle.
    let last = format!("apps/bench{}.yaml", samples.saturating_sub(1));
    let _ = std::fs::remove_file(node.work.join(last));
    node.push("bench done");
    node.wait_state(Duration::from_secs(60), "bench pods gone", |s| {
        s.pods.values().all(|p| !p.name.starts_with("bench"))
    });
    // Idle: every `kommit_runtime::alloc::TRIM_EVERY` (10 s) the daemon drops the schema
    // validators not used during the previous period and returns its allocator's free pages,
    // so wait past two of those after the bench pods went.
    std::thread::sleep(2 * kommit_runtime::alloc::TRIM_EVERY + Duration::from_secs(2));
    let pid = node.daemon_pid().context("the daemon's pid")?;
    let (rss, anon, file) = rss_breakdown(pid).context("reading the daemon's smaps_rollup")?;
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
    println!(
        "footprint: rss {:.1} MiB = anonymous {:.1} MiB + file-backed {:.1} MiB; {threads} threads",
        rss as f64 / 1024.0,
        anon as f64 / 1024.0,
        file as f64 / 1024.0
    );
    let stripped = std::env::temp_dir().join(format!("kommit-stripped-{}", std::process::id()));
    std::fs::copy(kommit_bin(), &stripped)?;
    let st = std::process::Command::new("strip").arg(&stripped).status();
    if !st.is_ok_and(|s| s.success()) {
        bail!("strip failed (apt-get install binutils)");
    }
    let binary = std::fs::metadata(&stripped)?.len();
    let _ = std::fs::remove_file(&stripped);
    if let Some(path) = log {
        std::fs::write(&path, node.log()).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "push to running: {samples} samples of {replicas} replicas; running p50 {p50:.1} ms p99 {p99:.1} ms; ready p50 {rp50:.1} ms"
    );
    println!("RESULT push_to_running p50_ms={p50:.1} p99_ms={p99:.1} ready_p50_ms={rp50:.1}");
    println!(
        "RESULT footprint rss_mib={:.1} binary_mib={:.1}",
        rss as f64 / 1024.0,
        binary as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

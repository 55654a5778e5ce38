//! `kommit-bench runtime`: a busybox container doing create, start, run `true`, wait and
//! remove, with kommit's runtime and with Debian's `runc run` on the same rootfs, in the same
//! run. Each kommit sample is a whole one-container pod (shim, net/ipc/uts namespaces,
//! cgroups, overlay), as `runc run` also creates every namespace.

use anyhow::{bail, Context};
use kommit_runtime::spec::{ContainerSpec, PodSpec};
use kommit_runtime::ContainerRuntime;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const DEFAULT_SAMPLES: usize = 40;
const WARMUP: usize = 3;

/// `--samples N` (at least 30 for a RESULT line) and `--only inpod|pod|runc` (for
/// profiling one part; prints no RESULT line).
struct Opts {
    samples: usize,
    only: Option<String>,
}

fn parse(args: &[String]) -> anyhow::Result<Opts> {
    let mut o = Opts {
        samples: DEFAULT_SAMPLES,
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--samples" => {
                o.samples = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|n| *n > 0)
                    .context("--samples needs a positive number")?
            }
            "--only" => {
                let v = it.next().context("--only needs inpod, pod or runc")?;
                if !["inpod", "pod", "runc"].contains(&v.as_str()) {
                    bail!("--only {v}: want inpod, pod or runc");
                }
                o.only = Some(v.clone());
            }
            other => bail!("unknown option {other} (known: --samples N, --only inpod|pod|runc)"),
        }
    }
    Ok(o)
}

fn p50(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ours(dir: &Path, samples: usize) -> anyhow::Result<Vec<f64>> {
    let helper = std::env::current_exe().context("locating kommit-bench")?;
    let store = crate::runtime_support::data_dir_with_busybox(dir);
    let parent = crate::runtime_support::unique("kommit-bench-");
    let rt = kommit_runtime::linux::LinuxRuntime::new(
        kommit_runtime::linux::LinuxConfig {
            data_dir: dir.join("data"),
            helper,
            cgroup_parent: parent.clone(),
        },
        store,
    )?;
    let spec = ContainerSpec::new("c", crate::runtime_support::TEST_IMAGE, &["true"]);
    let mut out = Vec::new();
    let mut phases: [Vec<f64>; 5] = Default::default();
    for i in 0..samples + WARMUP {
        let id = format!("b{i}");
        let t = Instant::now();
        let mut lap = Instant::now();
        let mut mark = |k: usize, phases: &mut [Vec<f64>; 5]| {
            if i >= WARMUP {
                phases[k].push(lap.elapsed().as_secs_f64() * 1000.0);
            }
            lap = Instant::now();
        };
        rt.create_pod(&PodSpec::new(&id))?;
        mark(0, &mut phases);
        rt.create_container(&id, &spec)?;
        mark(1, &mut phases);
        rt.start_container(&id, "c")?;
        mark(2, &mut phases);
        let st = rt.wait_container(&id, "c", Duration::from_secs(30))?;
        mark(3, &mut phases);
        rt.remove_pod(&id)?;
        mark(4, &mut phases);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if st.exit_code != Some(0) {
            bail!("kommit sample {i}: container exited {:?}", st.exit_code);
        }
        if i >= WARMUP {
            out.push(ms);
        }
    }
    let names = [
        "create_pod",
        "create_container",
        "start",
        "wait",
        "remove_pod",
    ];
    for (n, mut v) in names.iter().zip(phases) {
        println!("kommit phase {n}: p50 {:.2} ms", p50(&mut v));
    }
    for d in rt.layout().dirs(&parent) {
        let _ = std::fs::remove_dir(d);
    }
    Ok(out)
}

/// Container lifecycle inside one ready pod sandbox (the kubelet's unit of work).
fn ours_in_pod(dir: &Path, samples: usize) -> anyhow::Result<Vec<f64>> {
    let helper = std::env::current_exe().context("locating kommit-bench")?;
    let store = crate::runtime_support::data_dir_with_busybox(&dir.join("inpod"));
    let parent = crate::runtime_support::unique("kommit-bench-");
    let rt = kommit_runtime::linux::LinuxRuntime::new(
        kommit_runtime::linux::LinuxConfig {
            data_dir: dir.join("inpod/data"),
            helper,
            cgroup_parent: parent.clone(),
        },
        store,
    )?;
    rt.create_pod(&PodSpec::new("bench"))?;
    let mut out = Vec::new();
    let mut phases: [Vec<f64>; 4] = Default::default();
    for i in 0..samples + WARMUP {
        let name = format!("c{i}");
        let spec = ContainerSpec::new(&name, crate::runtime_support::TEST_IMAGE, &["true"]);
        let t = Instant::now();
        let mut lap = Instant::now();
        let mut mark = |k: usize, phases: &mut [Vec<f64>; 4]| {
            if i >= WARMUP {
                phases[k].push(lap.elapsed().as_secs_f64() * 1000.0);
            }
            lap = Instant::now();
        };
        rt.create_container("bench", &spec)?;
        mark(0, &mut phases);
        rt.start_container("bench", &name)?;
        mark(1, &mut phases);
        let st = rt.wait_container("bench", &name, Duration::from_secs(30))?;
        mark(2, &mut phases);
        rt.remove_container("bench", &name)?;
        mark(3, &mut phases);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if st.exit_code != Some(0) {
            bail!(
                "kommit in-pod sample {i}: container exited {:?}",
                st.exit_code
            );
        }
        if i >= WARMUP {
            out.push(ms);
        }
    }
    rt.remove_pod("bench")?;
    let names = ["create_container", "start", "wait", "remove_container"];
    for (n, mut v) in names.iter().zip(phases) {
        println!("kommit in-pod phase {n}: p50 {:.2} ms", p50(&mut v));
    }
    for d in rt.layout().dirs(&parent) {
        let _ = std::fs::remove_dir(d);
    }
    Ok(out)
}

fn runc(dir: &Path, samples: usize) -> anyhow::Result<Vec<f64>> {
    let bundle = dir.join("bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs)?;
    let tar = kommit_runtime::testutil::busybox_rootfs_tar()?;
    tar::Archive::new(tar.as_slice()).unpack(&rootfs)?;
    let o = Command::new("runc")
        .arg("spec")
        .current_dir(&bundle)
        .output()
        .context("runc (apt-get install -y runc)")?;
    if !o.status.success() {
        bail!("runc spec: {}", String::from_utf8_lossy(&o.stderr));
    }
    let cfgp = bundle.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfgp)?)?;
    cfg["process"]["terminal"] = serde_json::Value::Bool(false);
    cfg["process"]["args"] = serde_json::json!(["true"]);
    cfg["root"]["readonly"] = serde_json::Value::Bool(false);
    std::fs::write(&cfgp, serde_json::to_vec_pretty(&cfg)?)?;
    let state_root = dir.join("runc-state");
    let mut out = Vec::new();
    for i in 0..samples + WARMUP {
        let id = crate::runtime_support::unique("kb-runc-");
        let t = Instant::now();
        let o = Command::new("runc")
            .arg("--root")
            .arg(&state_root)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .output()?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !o.status.success() {
            bail!(
                "runc run sample {i}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        if i >= WARMUP {
            out.push(ms);
        }
    }
    Ok(out)
}

/// Run the benchmark; prints per-implementation summaries and the RESULT line.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let opts = parse(args)?;
    kommit_runtime::linux::check_root()?;
    let dir = tempfile::Builder::new()
        .prefix("kommit-bench-rt-")
        .tempdir()?;
    if let Some(only) = &opts.only {
        let mut v = match only.as_str() {
            "inpod" => ours_in_pod(dir.path(), opts.samples)?,
            "pod" => ours(dir.path(), opts.samples)?,
            _ => runc(dir.path(), opts.samples)?,
        };
        let n = v.len();
        let p = p50(&mut v);
        println!(
            "{only}: {n} samples, p50 {p:.2} ms, min {:.2} ms, max {:.2} ms",
            v[0],
            v[n - 1]
        );
        return Ok(());
    }
    if opts.samples < 30 {
        bail!(
            "--samples {}: the RESULT line needs at least 30",
            opts.samples
        );
    }
    let mut c = ours_in_pod(dir.path(), opts.samples)?;
    let mut o = ours(dir.path(), opts.samples)?;
    let mut r = runc(dir.path(), opts.samples)?;
    let (cn, on, rn) = (c.len(), o.len(), r.len());
    let (cp, op, rp) = (p50(&mut c), p50(&mut o), p50(&mut r));
    println!(
        "kommit container in a ready pod: {cn} samples, p50 {cp:.2} ms, min {:.2} ms, max {:.2} ms",
        c[0],
        c[cn - 1]
    );
    println!(
        "kommit whole one-container pod:  {on} samples, p50 {op:.2} ms, min {:.2} ms, max {:.2} ms",
        o[0],
        o[on - 1]
    );
    println!(
        "runc run:                        {rn} samples, p50 {rp:.2} ms, min {:.2} ms, max {:.2} ms",
        r[0],
        r[rn - 1]
    );
    // ours = the container lifecycle (create, start, run true, wait, remove) in a ready pod
    // sandbox; pod_* = the same plus creating and removing the pod (shim, namespaces).
    println!(
        "RESULT runtime ours_p50_ms={cp:.2} runc_p50_ms={rp:.2} ratio={:.3} pod_p50_ms={op:.2} pod_ratio={:.3}",
        cp / rp,
        op / rp
    );
    Ok(())
}

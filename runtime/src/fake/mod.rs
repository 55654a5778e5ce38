//! The fake node: runtime, images, network and volumes over one shared [`World`], in
//! memory except for volume files (the Linux volume code over a temporary directory).
//!
//! It records every call, can inject failures (`fail_next`), and models the behaviour the
//! conformance suite observes: workloads are [`Probe`]s, and their output is computed from the
//! spec the way the kernel would produce it (hostname from the pod, `CapEff` from the
//! capability set and user, OOM from a memory limit, fork failure from pids.max, SIGTERM
//! ignored by a pid 1 without a handler). A command that is not a probe exits 127 with
//! "command not modelled", so the fake never pretends to run something it does not know.
//!
//! Several driver instances may share one world, which is how the recover case "kills" a
//! driver: it drops an instance and builds a new one.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::conformance::{Leaks, Probe};
use crate::spec::{
    validate_name, ContainerSpec, ContainerState, ContainerStats, ContainerStatus, ExecOutput,
    LogLine, LogOptions, PodSpec, PodStatus, PortMapping,
};
use crate::traits::{ContainerRuntime, ImageInfo, Result, RuntimeError};

mod images;
mod network;
mod proxy;
mod volumes;
pub use images::FakeImages;
pub use network::FakeNetwork;
pub use proxy::{FakeProxy, Verdict};
pub use volumes::FakeVolumes;

#[derive(Debug, Clone)]
struct FCtr {
    spec: ContainerSpec,
    probe: Option<Probe>,
    state: ContainerState,
    exit_code: Option<i32>,
    reason: Option<String>,
    started_at_ms: Option<u64>,
    finished_at_ms: Option<u64>,
    logs: Vec<LogLine>,
}

#[derive(Debug, Clone)]
struct FPod {
    spec: PodSpec,
    ctrs: BTreeMap<String, FCtr>,
}

/// The shared state of a fake node.
#[derive(Debug, Default)]
pub struct World {
    pods: BTreeMap<String, FPod>,
    images: BTreeMap<String, ImageInfo>,
    ips: BTreeMap<String, Ipv4Addr>,
    ports: BTreeMap<String, Vec<PortMapping>>,
    cidr: Option<ipnet::Ipv4Net>,
    calls: Vec<String>,
    failures: BTreeMap<String, usize>,
    clock_ms: u64,
    volume_root: Option<PathBuf>,
    tmpfs: BTreeMap<PathBuf, u64>,
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(root) = &self.volume_root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// A fake node; hand out runtime, network and image handles from it.
#[derive(Clone, Default)]
pub struct FakeNode {
    world: Arc<Mutex<World>>,
}

fn lock(w: &Arc<Mutex<World>>) -> MutexGuard<'_, World> {
    w.lock().unwrap_or_else(|p| p.into_inner())
}

fn enter<'a>(w: &'a Arc<Mutex<World>>, op: &str, detail: String) -> Result<MutexGuard<'a, World>> {
    let mut g = lock(w);
    g.calls.push(format!("{op}({detail})"));
    g.clock_ms += 1;
    if let Some(n) = g.failures.get_mut(op) {
        if *n > 0 {
            *n -= 1;
            return Err(RuntimeError::Injected(op.to_string()));
        }
    }
    Ok(g)
}

impl FakeNode {
    /// A node whose pod bridge starts in `cidr` (attach takes the CIDR of each address).
    pub fn new(cidr: ipnet::Ipv4Net) -> Self {
        let n = FakeNode::default();
        lock(&n.world).cidr = Some(cidr);
        n
    }
    /// A new driver instance over this node.
    pub fn runtime(&self) -> FakeRuntime {
        FakeRuntime {
            world: self.world.clone(),
        }
    }
    /// The network handle.
    pub fn network(&self) -> FakeNetwork {
        FakeNetwork {
            world: self.world.clone(),
        }
    }
    /// The volumes handle.
    pub fn volumes(&self) -> FakeVolumes {
        FakeVolumes {
            world: self.world.clone(),
        }
    }
    /// The image handle.
    pub fn images(&self) -> FakeImages {
        FakeImages {
            world: self.world.clone(),
        }
    }
    /// Make `name` a known image.
    pub fn add_image(&self, name: &str) {
        let mut g = lock(&self.world);
        let digest = format!("sha256:{:064x}", g.images.len() + 1);
        g.images.insert(
            name.to_string(),
            ImageInfo {
                names: vec![name.to_string()],
                digest,
                size: 0,
            },
        );
    }
    /// Make the next `n` calls of `op` (a trait method name) fail.
    pub fn fail_next(&self, op: &str, n: usize) {
        lock(&self.world).failures.insert(op.to_string(), n);
    }
    /// Every call so far, as `op(detail)`.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.world).calls.clone()
    }
    /// What a real node would still hold.
    pub fn leaks(&self) -> Leaks {
        let mut g = lock(&self.world);
        let volumes = g.pods_with_volumes();
        let ctrs: Vec<&FCtr> = g.pods.values().flat_map(|p| p.ctrs.values()).collect();
        let running = ctrs
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .count();
        Leaks {
            mounts: running + g.tmpfs.len(),
            cgroups: g.pods.len() + ctrs.len(),
            veths: g.ips.len(),
            processes: g.pods.len() + running,
            pod_dirs: g.pods.len(),
            volumes,
        }
    }
}

mod model;
use model::{out, start_model};

/// A driver instance of the fake runtime.
pub struct FakeRuntime {
    world: Arc<Mutex<World>>,
}

fn status(pod: &str, c: &FCtr) -> ContainerStatus {
    ContainerStatus {
        name: c.spec.name.clone(),
        pod: pod.to_string(),
        image: c.spec.image.clone(),
        state: c.state,
        pid: (c.state == ContainerState::Running).then_some(1000),
        exit_code: c.exit_code,
        reason: c.reason.clone(),
        started_at_ms: c.started_at_ms,
        finished_at_ms: c.finished_at_ms,
    }
}

fn get_ctr<'a>(g: &'a mut World, pod: &str, name: &str) -> Result<&'a mut FCtr> {
    let p = g.pods.get_mut(pod).ok_or_else(|| RuntimeError::NotFound {
        kind: "pod",
        name: pod.into(),
    })?;
    p.ctrs.get_mut(name).ok_or_else(|| RuntimeError::NotFound {
        kind: "container",
        name: format!("{pod}/{name}"),
    })
}

fn finish(c: &mut FCtr, code: i32, reason: &str, now: u64) {
    c.state = ContainerState::Exited;
    c.exit_code = Some(code);
    c.reason = Some(reason.into());
    c.finished_at_ms = Some(now);
}

impl ContainerRuntime for FakeRuntime {
    fn create_pod(&self, spec: &PodSpec) -> Result<()> {
        let mut g = enter(&self.world, "create_pod", spec.id.clone())?;
        crate::spec::validate_pod_spec(spec).map_err(RuntimeError::InvalidSpec)?;
        if g.pods.contains_key(&spec.id) {
            return Err(RuntimeError::AlreadyExists {
                kind: "pod",
                name: spec.id.clone(),
            });
        }
        g.pods.insert(
            spec.id.clone(),
            FPod {
                spec: spec.clone(),
                ctrs: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn pod_netns(&self, pod: &str) -> Result<PathBuf> {
        let g = enter(&self.world, "pod_netns", pod.into())?;
        if !g.pods.contains_key(pod) {
            return Err(RuntimeError::NotFound {
                kind: "pod",
                name: pod.into(),
            });
        }
        Ok(PathBuf::from(format!("/fake/netns/{pod}")))
    }

    fn create_container(&self, pod: &str, spec: &ContainerSpec) -> Result<()> {
        let mut g = enter(
            &self.world,
            "create_container",
            format!("{pod}/{}", spec.name),
        )?;
        validate_name("container", &spec.name).map_err(RuntimeError::InvalidSpec)?;
        crate::spec::validate_mounts(&spec.mounts)
            .map_err(|e| RuntimeError::InvalidSpec(format!("container {}: {e}", spec.name)))?;
        let known = g.images.contains_key(&spec.image)
            || crate::images::normalize_reference(&spec.image)
                .is_ok_and(|n| g.images.contains_key(&n));
        if !known {
            return Err(crate::images::ImageError::NotFound(spec.image.clone()).into());
        }
        let p = g.pods.get_mut(pod).ok_or_else(|| RuntimeError::NotFound {
            kind: "pod",
            name: pod.into(),
        })?;
        if p.ctrs.contains_key(&spec.name) {
            return Err(RuntimeError::AlreadyExists {
                kind: "container",
                name: format!("{pod}/{}", spec.name),
            });
        }
        let argv = crate::linux::effective_args(spec, &[], &["sh".into()]);
        p.ctrs.insert(
            spec.name.clone(),
            FCtr {
                spec: spec.clone(),
                probe: Probe::parse(&argv),
                state: ContainerState::Created,
                exit_code: None,
                reason: None,
                started_at_ms: None,
                finished_at_ms: None,
                logs: vec![],
            },
        );
        Ok(())
    }

    fn start_container(&self, pod: &str, name: &str) -> Result<()> {
        let mut g = enter(&self.world, "start_container", format!("{pod}/{name}"))?;
        let now = g.clock_ms;
        let pspec =
            g.pods
                .get(pod)
                .map(|p| p.spec.clone())
                .ok_or_else(|| RuntimeError::NotFound {
                    kind: "pod",
                    name: pod.into(),
                })?;
        let c = get_ctr(&mut g, pod, name)?;
        if c.state != ContainerState::Created {
            return Err(RuntimeError::InvalidState(format!(
                "container {pod}/{name} was already started"
            )));
        }
        let (logs, end) = start_model(&pspec, &c.spec, &c.probe);
        c.logs = logs;
        c.state = ContainerState::Running;
        c.started_at_ms = Some(now);
        if let Some((code, reason)) = end {
            finish(c, code, reason, now);
        }
        Ok(())
    }

    fn stop_container(&self, pod: &str, name: &str, grace: Duration) -> Result<ContainerStatus> {
        let mut g = enter(&self.world, "stop_container", format!("{pod}/{name}"))?;
        let c = get_ctr(&mut g, pod, name)?;
        if c.state != ContainerState::Running {
            return Ok(status(pod, c));
        }
        if c.probe == Some(Probe::TermTrap) {
            c.logs.push(out("got-term"));
            let now = g.clock_ms;
            let c = get_ctr(&mut g, pod, name)?;
            finish(c, 0, "Completed", now);
            return Ok(status(pod, c));
        }
        // pid 1 without a SIGTERM handler: only the SIGKILL after the grace period ends it.
        drop(g);
        std::thread::sleep(grace);
        let mut g = lock(&self.world);
        let now = g.clock_ms;
        let c = get_ctr(&mut g, pod, name)?;
        if c.state == ContainerState::Running {
            finish(c, 137, "Killed", now);
        }
        Ok(status(pod, c))
    }

    fn wait_container(&self, pod: &str, name: &str, timeout: Duration) -> Result<ContainerStatus> {
        let mut g = enter(&self.world, "wait_container", format!("{pod}/{name}"))?;
        let c = get_ctr(&mut g, pod, name)?;
        match c.state {
            ContainerState::Created => Err(RuntimeError::InvalidState(format!(
                "container {pod}/{name} was never started"
            ))),
            ContainerState::Running => {
                drop(g);
                std::thread::sleep(timeout);
                Err(RuntimeError::Timeout(
                    timeout,
                    format!("container {pod}/{name} to exit"),
                ))
            }
            _ => Ok(status(pod, c)),
        }
    }

    fn remove_container(&self, pod: &str, name: &str) -> Result<()> {
        let mut g = enter(&self.world, "remove_container", format!("{pod}/{name}"))?;
        let c = get_ctr(&mut g, pod, name)?;
        if c.state == ContainerState::Running {
            return Err(RuntimeError::InvalidState(format!(
                "container {pod}/{name} is running; stop it first"
            )));
        }
        if let Some(p) = g.pods.get_mut(pod) {
            p.ctrs.remove(name);
        }
        Ok(())
    }

    fn remove_pod(&self, pod: &str) -> Result<()> {
        let mut g = enter(&self.world, "remove_pod", pod.into())?;
        g.pods.remove(pod).ok_or_else(|| RuntimeError::NotFound {
            kind: "pod",
            name: pod.into(),
        })?;
        Ok(())
    }

    fn inspect(&self, pod: &str, name: &str) -> Result<ContainerStatus> {
        let mut g = enter(&self.world, "inspect", format!("{pod}/{name}"))?;
        let c = get_ctr(&mut g, pod, name)?;
        Ok(status(pod, c))
    }

    fn list(&self) -> Result<Vec<PodStatus>> {
        let g = enter(&self.world, "list", String::new())?;
        Ok(g.pods
            .iter()
            .map(|(id, p)| PodStatus {
                id: id.clone(),
                ready: true,
                shim_pid: Some(999),
                containers: p.ctrs.values().map(|c| status(id, c)).collect(),
                labels: p.spec.labels.clone(),
            })
            .collect())
    }

    fn recover(&self) -> Result<Vec<PodStatus>> {
        drop(enter(&self.world, "recover", String::new())?);
        self.list()
    }

    fn exec(
        &self,
        pod: &str,
        name: &str,
        cmd: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput> {
        let mut g = enter(&self.world, "exec", format!("{pod}/{name} {cmd:?}"))?;
        let host = g
            .pods
            .get(pod)
            .map(|p| p.spec.hostname.clone())
            .unwrap_or_default();
        let c = get_ctr(&mut g, pod, name)?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::InvalidState(format!(
                "container {pod}/{name} is not running"
            )));
        }
        let mounts = c.spec.mounts.clone();
        let probe = Probe::parse(cmd);
        if let Some(out) = probe
            .as_ref()
            .and_then(|p| volumes::mount_probe(&g.tmpfs, &mounts, p))
        {
            return Ok(out);
        }
        let serving = |ip: &str| -> (bool, bool) {
            let owner = g
                .ips
                .iter()
                .find(|(_, a)| a.to_string() == ip)
                .map(|(p, _)| p.clone());
            match owner.and_then(|o| g.pods.get(&o)) {
                Some(p) => (
                    true,
                    p.ctrs.values().any(|c| {
                        c.probe == Some(Probe::HttpServe) && c.state == ContainerState::Running
                    }),
                ),
                None => (false, false),
            }
        };
        let r = |code: i32, o: &str, e: &str| ExecOutput {
            exit_code: code,
            stdout: o.as_bytes().to_vec(),
            stderr: e.as_bytes().to_vec(),
        };
        // The bridge answers pings of its gateway address from attached pods.
        let gateway = g
            .cidr
            .and_then(|c| crate::network::gateway(&c))
            .filter(|_| g.ips.contains_key(pod))
            .map(|gw| gw.to_string());
        Ok(match probe {
            Some(Probe::ExecTriple) => r(3, "exec-out\n", "exec-err\n"),
            Some(Probe::Hostname) => r(0, &format!("{host}\n"), ""),
            Some(Probe::Ping(ip)) if gateway.as_deref() == Some(ip.as_str()) => {
                r(0, "1 packets transmitted, 1 packets received\n", "")
            }
            Some(Probe::Ping(ip)) if serving(&ip).0 => {
                r(0, "1 packets transmitted, 1 packets received\n", "")
            }
            Some(Probe::Ping(_)) => r(1, "1 packets transmitted, 0 packets received\n", ""),
            Some(Probe::Wget(ip)) if serving(&ip).1 => r(
                0,
                "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\nhello-from-pod\n",
                "",
            ),
            Some(Probe::Wget(_)) => r(1, "", "nc: can't connect to remote host\n"),
            _ => r(127, "", &format!("fake: command not modelled: {cmd:?}\n")),
        })
    }

    fn logs(&self, pod: &str, name: &str, opts: &LogOptions, sink: &mut dyn Write) -> Result<()> {
        let mut g = enter(&self.world, "logs", format!("{pod}/{name}"))?;
        let c = get_ctr(&mut g, pod, name)?;
        let skip = opts
            .tail
            .map(|t| c.logs.len().saturating_sub(t))
            .unwrap_or(0);
        for l in &c.logs[skip..] {
            writeln!(sink, "{}", l.line)
                .map_err(|e| RuntimeError::InvalidState(format!("writing logs: {e}")))?;
        }
        Ok(())
    }

    fn stats(&self, pod: &str, name: &str) -> Result<ContainerStats> {
        let mut g = enter(&self.world, "stats", format!("{pod}/{name}"))?;
        let c = get_ctr(&mut g, pod, name)?;
        let running = c.state == ContainerState::Running;
        Ok(ContainerStats {
            memory_bytes: if running { 1 << 20 } else { 0 },
            cpu_nanos: 0,
            pids: u64::from(running),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_calls_and_injects_failures() {
        let node = FakeNode::new("10.244.0.0/24".parse().expect("cidr"));
        node.add_image("busybox:latest");
        let rt = node.runtime();
        let pod = PodSpec::new("p");
        node.fail_next("create_pod", 1);
        assert!(
            matches!(rt.create_pod(&pod), Err(RuntimeError::Injected(op)) if op == "create_pod")
        );
        rt.create_pod(&pod).expect("second create works");
        let c = ContainerSpec::new("c", "nope:1", &["true"]);
        assert!(matches!(
            rt.create_container("p", &c),
            Err(RuntimeError::Image(_))
        ));
        let c = ContainerSpec::new("c", "busybox", &["ls"]);
        rt.create_container("p", &c).expect("create");
        rt.start_container("p", "c").expect("start");
        let st = rt.inspect("p", "c").expect("inspect");
        assert_eq!(
            (st.exit_code, st.state),
            (Some(127), ContainerState::Exited),
            "unmodelled command must not pretend success"
        );
        assert_eq!(
            node.calls(),
            vec![
                "create_pod(p)",
                "create_pod(p)",
                "create_container(p/c)",
                "create_container(p/c)",
                "start_container(p/c)",
                "inspect(p/c)"
            ]
        );
    }
}

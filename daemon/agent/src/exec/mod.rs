//! Carries out [`Action`]s through the runtime traits, and remembers what the runtime cannot
//! tell: volume contents written, back-off streaks, pull and start failures, and the events
//! to report.
//!
//! Steps that may take a pod's whole grace period (stopping a container, removing a pod) run
//! on a thread of their own, so one slow pod never holds up the others; the pod is "busy"
//! meanwhile and the loop plans nothing for it.

use crate::plan::{effective_streak, runtime_name, Action, ContainerMemory, PodMemory};
use crate::probe::{now_ms, run_handler};
use crate::translate::{ContainerPlan, PodPlan, VolumePlan};
use kommit_reconcilers::{EventType, Millis, PodEvent};
use kommit_runtime::spec::{ContainerState, Mount};
use kommit_runtime::traits::{Medium, PullProgress, RegistryCredentials};
use kommit_runtime::{ContainerRuntime, Images, PodNetwork, RuntimeError, Volumes};
use kommit_schemas::model::pod::PullPolicy;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Pods whose steps one pass carries out at once (a pod's own steps stay in order). Most of
/// a pod's start is waiting on the kernel (netlink, mounts, the shim's exec), so this helps
/// even on two cores.
pub const PARALLEL_PODS: usize = 4;

/// Timeout of a postStart or preStop hook.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// The node's runtime, as the four traits.
#[derive(Clone)]
pub struct Runtimes {
    /// Pods and containers.
    pub containers: Arc<dyn ContainerRuntime>,
    /// The image store.
    pub images: Arc<dyn Images>,
    /// The pod network.
    pub network: Arc<dyn PodNetwork>,
    /// Pod volumes.
    pub volumes: Arc<dyn Volumes>,
}

/// Registry credentials for an image reference (the node's `registries.json` and the pod's
/// `imagePullSecrets`).
pub type Credentials = Arc<dyn Fn(&str) -> Option<RegistryCredentials> + Send + Sync>;

mod gc;
mod stop;

#[derive(Default)]
struct Shared {
    memory: BTreeMap<String, PodMemory>,
    paths: BTreeMap<String, BTreeMap<String, PathBuf>>,
    events: BTreeMap<String, Vec<PodEvent>>,
    busy: BTreeSet<String>,
    created_at: BTreeMap<String, Millis>,
}

/// The executor.
#[derive(Clone)]
pub struct Executor {
    rt: Runtimes,
    creds: Credentials,
    shared: Arc<Mutex<Shared>>,
    kick: Arc<dyn Fn() + Send + Sync>,
    http: Option<reqwest::blocking::Client>,
    pulls: Arc<Mutex<()>>,
}

/// Why a step failed, with the Kubernetes reason.
#[derive(Debug, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct StepError {
    /// `ErrImagePull`, `ErrImageNeverPull`, `CreateContainerError`, `RunContainerError`...
    pub reason: &'static str,
    /// Detail.
    pub message: String,
}

fn step_name(a: &Action) -> &'static str {
    match a {
        Action::CreatePod { .. } => "create-pod",
        Action::SyncVolumes { .. } => "sync-volumes",
        Action::StartContainer { .. } => "start-container",
        Action::KillContainer { .. } => "kill-container",
        Action::RemoveContainer { .. } => "remove-container",
        Action::RemovePod { .. } => "remove-pod",
    }
}

fn step(reason: &'static str) -> impl Fn(RuntimeError) -> StepError {
    move |e| StepError {
        reason,
        message: e.to_string(),
    }
}

impl Executor {
    /// An executor over `rt`; `kick` wakes the agent loop when a background step ends.
    pub fn new(rt: Runtimes, creds: Credentials, kick: Arc<dyn Fn() + Send + Sync>) -> Self {
        kommit_runtime::tls::install_crypto_provider();
        let http = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .no_proxy()
            .build()
            .ok();
        Executor {
            rt,
            creds,
            shared: Arc::new(Mutex::new(Shared::default())),
            kick,
            http,
            pulls: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The agent's memory of every pod, for `plan`.
    pub fn memory(&self) -> BTreeMap<String, PodMemory> {
        self.lock().memory.clone()
    }

    /// Updates a container's memory (probe verdicts).
    pub fn update_container(
        &self,
        sandbox: &str,
        name: &str,
        f: impl FnOnce(&mut ContainerMemory),
    ) {
        let mut s = self.lock();
        f(s.memory
            .entry(sandbox.to_string())
            .or_default()
            .containers
            .entry(name.to_string())
            .or_default());
    }

    /// Whether a background step runs for this sandbox.
    pub fn busy(&self, sandbox: &str) -> bool {
        self.lock().busy.contains(sandbox)
    }

    /// Records an event for a pod.
    pub fn event(&self, sandbox: &str, kind: EventType, reason: &str, message: String) {
        match kind {
            EventType::Normal => tracing::info!(pod = sandbox, reason, "{message}"),
            EventType::Warning => tracing::warn!(pod = sandbox, reason, "{message}"),
        }
        let mut s = self.lock();
        let ev = s.events.entry(sandbox.to_string()).or_default();
        if ev.len() < 64 {
            ev.push(PodEvent {
                at: now_ms(),
                kind,
                reason: reason.to_string(),
                message,
                count: 1,
            });
        }
    }

    /// Takes the events recorded for a pod since the last call.
    pub fn take_events(&self, sandbox: &str) -> Vec<PodEvent> {
        self.lock().events.remove(sandbox).unwrap_or_default()
    }

    /// Puts events back (a report that did not make it).
    pub fn restore_events(&self, sandbox: &str, mut events: Vec<PodEvent>) {
        let mut s = self.lock();
        let ev = s.events.entry(sandbox.to_string()).or_default();
        events.append(ev);
        events.truncate(64);
        *ev = events;
    }

    /// When the agent first made (or found) the sandbox.
    pub fn created_at(&self, sandbox: &str) -> Option<Millis> {
        self.lock().created_at.get(sandbox).copied()
    }

    /// Notes a sandbox found at startup, with the earliest start of its containers.
    pub fn adopt(&self, sandbox: &str, at: Millis) {
        self.lock()
            .created_at
            .entry(sandbox.to_string())
            .or_insert(at);
    }

    /// Runs the actions of one pass. Pods proceed in parallel, up to [`PARALLEL_PODS`] at
    /// once (a sandbox costs process spawns and netlink round trips that mostly wait on the
    /// kernel); the steps of one pod run in order and stop at its first failure.
    pub fn run(&self, actions: Vec<Action>, plans: &BTreeMap<String, &PodPlan>) {
        let mut groups: Vec<Vec<Action>> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for a in actions {
            let pod = match &a {
                Action::CreatePod { key }
                | Action::SyncVolumes { key }
                | Action::StartContainer { key, .. }
                | Action::KillContainer { key, .. } => plans
                    .get(key)
                    .map_or_else(|| key.clone(), |p| p.id().to_string()),
                Action::RemoveContainer { sandbox, .. } | Action::RemovePod { sandbox, .. } => {
                    sandbox.clone()
                }
            };
            let i = *index.entry(pod).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[i].push(a);
        }
        if groups.len() <= 1 {
            for g in groups {
                self.run_pod(g, plans);
            }
            return;
        }
        let workers = groups.len().min(PARALLEL_PODS);
        let queue = Mutex::new(groups.into_iter());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(g) = next else { break };
                    self.run_pod(g, plans);
                });
            }
        });
    }

    /// The steps of one pod, in order, stopping at the first failure.
    fn run_pod(&self, actions: Vec<Action>, plans: &BTreeMap<String, &PodPlan>) {
        let mut failed = false;
        for a in actions {
            let key = match &a {
                Action::CreatePod { key }
                | Action::SyncVolumes { key }
                | Action::StartContainer { key, .. }
                | Action::KillContainer { key, .. } => Some(key.clone()),
                _ => None,
            };
            if failed && key.is_some() {
                continue;
            }
            let plan = key.as_ref().and_then(|k| plans.get(k).copied());
            let started = std::time::Instant::now();
            if plan.is_some_and(|p| self.busy(p.id())) {
                continue;
            }
            let r = match (&a, plan) {
                (Action::CreatePod { .. }, Some(p)) => self.create_pod(p),
                (Action::SyncVolumes { .. }, Some(p)) => self.sync_volumes(p),
                (
                    Action::StartContainer {
                        container, attempt, ..
                    },
                    Some(p),
                ) => self.start_container(p, container, *attempt),
                (
                    Action::KillContainer {
                        runtime_name,
                        reason,
                        ..
                    },
                    Some(p),
                ) => {
                    self.kill_container(p, runtime_name, reason);
                    Ok(())
                }
                (
                    Action::RemoveContainer {
                        sandbox,
                        runtime_name,
                    },
                    _,
                ) => {
                    if !self.busy(sandbox) {
                        if let Err(e) = self.rt.containers.remove_container(sandbox, runtime_name) {
                            tracing::warn!(pod = sandbox, "removing {runtime_name}: {e}");
                        }
                    }
                    Ok(())
                }
                (
                    Action::RemovePod {
                        sandbox,
                        grace_ms,
                        reason,
                    },
                    _,
                ) => {
                    self.remove_pod(sandbox, *grace_ms, reason);
                    Ok(())
                }
                _ => Ok(()),
            };
            tracing::debug!(
                pod = plan.map(|p| p.id()).unwrap_or_default(),
                step = step_name(&a),
                ms = started.elapsed().as_millis() as u64,
                ok = r.is_ok(),
                "step done"
            );
            if let Err(e) = r {
                if key.is_some() {
                    failed = true;
                }
                tracing::debug!("step failed: {e}");
            }
        }
    }

    fn create_pod(&self, p: &PodPlan) -> Result<(), StepError> {
        let id = p.id();
        let started = std::time::Instant::now();
        match self.rt.containers.create_pod(&p.sandbox) {
            Ok(()) | Err(RuntimeError::AlreadyExists { .. }) => {}
            Err(e) => {
                let e = step("FailedCreatePodSandBox")(e);
                self.event(id, EventType::Warning, e.reason, e.message.clone());
                self.sandbox_failed(id, &e);
                return Err(e);
            }
        }
        self.lock()
            .created_at
            .entry(id.to_string())
            .or_insert_with(now_ms);
        let addr = p.address.ok_or_else(|| StepError {
            reason: "FailedCreatePodSandBox",
            message: "the pod has no IP in the replicated state yet".into(),
        })?;
        let sandbox_ms = started.elapsed().as_millis() as u64;
        let wired = self
            .rt
            .containers
            .pod_netns(id)
            .and_then(|ns| self.rt.network.attach(id, &ns, addr, &p.ports));
        tracing::debug!(
            pod = id,
            sandbox_ms,
            network_ms = started.elapsed().as_millis() as u64 - sandbox_ms,
            "sandbox made"
        );
        if let Err(e) = wired {
            let e = step("FailedCreatePodSandBox")(e);
            self.event(
                id,
                EventType::Warning,
                e.reason,
                format!("network: {}", e.message),
            );
            // A sandbox without its network is no use: take it down so a later pass retries.
            let _ = self.rt.containers.remove_pod(id);
            self.sandbox_failed(id, &e);
            return Err(e);
        }
        self.lock()
            .memory
            .entry(id.to_string())
            .or_default()
            .sandbox_error = None;
        self.sync_volumes(p)
    }

    /// Records a failed sandbox creation, retried with back-off.
    fn sandbox_failed(&self, id: &str, e: &StepError) {
        let mut s = self.lock();
        let m = s.memory.entry(id.to_string()).or_default();
        let n = m.sandbox_error.as_ref().map_or(0, |(_, n, _)| *n) + 1;
        m.sandbox_error = Some((now_ms(), n, e.to_string()));
    }

    fn sync_volumes(&self, p: &PodPlan) -> Result<(), StepError> {
        let id = p.id();
        for (name, v) in &p.volumes {
            let digest = v.digest();
            let known = self
                .lock()
                .memory
                .get(id)
                .and_then(|m| m.volumes.get(name).cloned());
            if known.as_deref() == Some(digest.as_str()) {
                continue;
            }
            let r = match v {
                VolumePlan::EmptyDir { medium, size_limit } => {
                    self.rt.volumes.empty_dir(id, name, *medium, *size_limit)
                }
                VolumePlan::Projected { files, medium } => {
                    let written = match medium {
                        Medium::Memory => self.rt.volumes.project_in_memory(id, name, files),
                        Medium::Disk => self.rt.volumes.project(id, name, files),
                    };
                    written.map(|(path, changed)| {
                        if changed && known.is_some() {
                            tracing::info!(
                                pod = id,
                                volume = name.as_str(),
                                "volume content updated"
                            );
                        }
                        path
                    })
                }
                VolumePlan::HostPath { path, kind } => {
                    self.rt.volumes.host_path(std::path::Path::new(path), *kind)
                }
                VolumePlan::Local { name } => self.rt.volumes.local_volume(name),
            };
            match r {
                Ok(path) => {
                    let mut s = self.lock();
                    s.paths
                        .entry(id.to_string())
                        .or_default()
                        .insert(name.clone(), path);
                    s.memory
                        .entry(id.to_string())
                        .or_default()
                        .volumes
                        .insert(name.clone(), digest);
                }
                Err(e) => {
                    let e = step("FailedMount")(e);
                    self.event(
                        id,
                        EventType::Warning,
                        e.reason,
                        format!("volume {name}: {}", e.message),
                    );
                    return Err(e);
                }
            }
        }
        // Volumes the plan no longer has are forgotten (their files stay until the pod goes).
        let mut s = self.lock();
        if let Some(m) = s.memory.get_mut(id) {
            m.volumes.retain(|n, _| p.volumes.contains_key(n));
        }
        Ok(())
    }

    /// Whether `reference` is in the image store.
    fn has_image(&self, reference: &str) -> bool {
        let Ok(want) = kommit_runtime::images::normalize_reference(reference) else {
            return false;
        };
        self.rt.images.list().is_ok_and(|l| {
            l.iter()
                .any(|i| i.names.contains(&want) || i.digest == want)
        })
    }

    fn ensure_image(
        &self,
        id: &str,
        c: &ContainerPlan,
        p_creds: &BTreeMap<String, RegistryCredentials>,
    ) -> Result<(), StepError> {
        let image = c.spec.image.as_str();
        if c.pull != PullPolicy::Always && self.has_image(image) {
            return Ok(());
        }
        // One pull or import at a time, like the kubelet's default (`serializeImagePulls`):
        // pods of one pass that share an image wait for its one pull instead of racing it.
        let _pulling = self.pulls.lock().unwrap_or_else(|p| p.into_inner());
        let mut present = self.has_image(image);
        if !present {
            // Archives dropped in the node's images/ directory (air-gapped nodes).
            if let Ok(new) = self.rt.images.import_dropped() {
                if !new.is_empty() {
                    present = self.has_image(image);
                }
            }
        }
        let pull = match c.pull {
            PullPolicy::Always => true,
            PullPolicy::IfNotPresent => !present,
            PullPolicy::Never => {
                if !present {
                    return Err(StepError {
                        reason: "ErrImageNeverPull",
                        message: format!(
                            "container image {image:?} is not present with pull policy of Never"
                        ),
                    });
                }
                false
            }
        };
        if !pull {
            return Ok(());
        }
        self.event(
            id,
            EventType::Normal,
            "Pulling",
            format!("Pulling image {image:?}"),
        );
        let started = std::time::Instant::now();
        let creds = p_creds
            .get(crate::node::registry_of(image))
            .cloned()
            .or_else(|| (self.creds)(image));
        let mut last = 0usize;
        let mut progress = |p: &PullProgress| {
            if p.layers_done != last {
                last = p.layers_done;
                tracing::info!(
                    pod = id,
                    "pulling {image}: {}/{} layers, {}/{} bytes",
                    p.layers_done,
                    p.layers_total,
                    p.bytes_done,
                    p.bytes_total
                );
            }
        };
        match self.rt.images.pull(image, creds.as_ref(), &mut progress) {
            Ok(info) => {
                self.event(
                    id,
                    EventType::Normal,
                    "Pulled",
                    format!(
                        "Successfully pulled image {image:?} in {:.3}s ({} bytes)",
                        started.elapsed().as_secs_f64(),
                        info.size
                    ),
                );
                Ok(())
            }
            Err(e) => Err(StepError {
                reason: "ErrImagePull",
                message: format!("failed to pull image {image:?}: {e}"),
            }),
        }
    }

    fn start_container(&self, p: &PodPlan, name: &str, attempt: u32) -> Result<(), StepError> {
        let id = p.id();
        let Some(c) = p.all_containers().find(|c| c.spec.name == name) else {
            return Ok(());
        };
        if let Err(e) = self.ensure_image(id, c, &p.pull_credentials) {
            self.event(id, EventType::Warning, "Failed", e.to_string());
            self.update_container(id, name, |m| {
                let n = m.pull_error.as_ref().map_or(0, |(_, n, _)| *n) + 1;
                m.pull_error = Some((now_ms(), n, e.to_string()));
            });
            return Err(e);
        }
        let r = self.create_and_start(p, c, attempt);
        match r {
            Ok(()) => {
                // The streak counts restarts after short runs; a long run resets it.
                let prev = attempt
                    .checked_sub(1)
                    .and_then(|a| self.rt.containers.inspect(id, &runtime_name(name, a)).ok());
                self.update_container(id, name, |m| {
                    if attempt > 0 && !m.fenced {
                        let base = prev
                            .as_ref()
                            .map_or(m.streak, |pc| effective_streak(m.streak, pc));
                        m.streak = base + 1;
                    }
                    m.fenced = false;
                    m.pull_error = None;
                    m.start_error = None;
                    m.started = c.probes.startup.is_none();
                    m.ready = false;
                    m.unhealthy = false;
                });
                Ok(())
            }
            Err(e) => {
                self.event(id, EventType::Warning, "Failed", e.to_string());
                self.update_container(id, name, |m| {
                    m.pull_error = None;
                    let n = m.start_error.as_ref().map_or(0, |(_, n, _)| *n) + 1;
                    m.start_error = Some((now_ms(), n, e.to_string()));
                });
                Err(e)
            }
        }
    }

    fn create_and_start(
        &self,
        p: &PodPlan,
        c: &ContainerPlan,
        attempt: u32,
    ) -> Result<(), StepError> {
        let id = p.id();
        let rname = runtime_name(&c.spec.name, attempt);
        let mut spec = c.spec.clone();
        spec.name = rname.clone();
        {
            let s = self.lock();
            let paths = s.paths.get(id);
            for m in &c.mounts {
                let Some(base) = paths.and_then(|p| p.get(&m.volume)) else {
                    return Err(StepError {
                        reason: "CreateContainerConfigError",
                        message: format!("volume {:?} is not ready", m.volume),
                    });
                };
                let source = match &m.sub_path {
                    Some(sp) => base.join(sp),
                    None => base.clone(),
                };
                spec.mounts.push(Mount {
                    source,
                    destination: m.destination.clone(),
                    read_only: m.read_only,
                });
            }
        }
        // A leftover of the same attempt (made, never started) is replaced.
        if let Ok(st) = self.rt.containers.inspect(id, &rname) {
            if st.state != ContainerState::Running {
                let _ = self.rt.containers.remove_container(id, &rname);
            }
        }
        self.rt
            .containers
            .create_container(id, &spec)
            .map_err(step("CreateContainerError"))?;
        self.event(
            id,
            EventType::Normal,
            "Created",
            format!("Created container {}", c.spec.name),
        );
        self.rt
            .containers
            .start_container(id, &rname)
            .map_err(step("RunContainerError"))?;
        self.event(
            id,
            EventType::Normal,
            "Started",
            format!("Started container {}", c.spec.name),
        );
        if let Some(h) = &c.post_start {
            let ip = p.address.map(|a| a.ip);
            if let Err(e) = run_handler(
                &*self.rt.containers,
                self.http.as_ref(),
                id,
                &rname,
                ip,
                h,
                HOOK_TIMEOUT,
            ) {
                self.event(
                    id,
                    EventType::Warning,
                    "FailedPostStartHook",
                    format!("PostStartHook failed: {e}"),
                );
                let _ = self.rt.containers.stop_container(
                    id,
                    &rname,
                    Duration::from_millis(p.grace_ms),
                );
            }
        }
        Ok(())
    }

    /// The runtime.
    pub fn runtimes(&self) -> &Runtimes {
        &self.rt
    }
}

#[cfg(test)]
mod tests;

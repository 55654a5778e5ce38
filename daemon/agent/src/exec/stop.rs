//! Stopping: a container (preStop hook, SIGTERM, SIGKILL after the grace) or a whole pod
//! (address first, then its containers, sandbox and volumes), each on a thread of its own.

use super::{Executor, HOOK_TIMEOUT};
use crate::plan::parse_runtime_name;
use crate::probe::run_handler;
use crate::translate::PodPlan;
use kommit_reconcilers::EventType;
use kommit_runtime::spec::ContainerState;
use kommit_runtime::RuntimeError;
use std::time::Duration;

impl Executor {
    /// preStop hook, then SIGTERM and SIGKILL after the grace, on a thread of its own.
    pub(super) fn kill_container(&self, p: &PodPlan, rname: &str, reason: &str) {
        let id = p.id().to_string();
        let name = parse_runtime_name(rname)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default();
        let hook = p
            .all_containers()
            .find(|c| c.spec.name == name)
            .and_then(|c| c.pre_stop.clone());
        let ip = p.address.map(|a| a.ip);
        let grace = Duration::from_millis(p.grace_ms);
        self.event(
            &id,
            EventType::Normal,
            "Killing",
            format!("Stopping container {name}: {reason}"),
        );
        let this = self.clone();
        let rname = rname.to_string();
        let sandbox = id.clone();
        self.background(&sandbox, move || {
            if let Some(h) = hook {
                let _ = run_handler(
                    &*this.rt.containers,
                    this.http.as_ref(),
                    &id,
                    &rname,
                    ip,
                    &h,
                    grace.min(HOOK_TIMEOUT),
                );
            }
            if let Err(e) = this.rt.containers.stop_container(&id, &rname, grace) {
                tracing::warn!(pod = id, "stopping {rname}: {e}");
            }
        });
    }

    /// Stops every container of a sandbox (SIGTERM, SIGKILL after the grace), detaches its
    /// address, removes it and its volumes; on a thread of its own.
    pub(super) fn remove_pod(&self, sandbox: &str, grace_ms: u64, reason: &str) {
        if self.busy(sandbox) {
            return;
        }
        tracing::info!(pod = sandbox, "removing pod: {reason}");
        // The address goes first, at once: the replicated state has already handed it to
        // another pod, which must not wait for this one's grace period.
        if let Err(e) = self.rt.network.detach(sandbox) {
            tracing::warn!(pod = sandbox, "detaching the pod's network: {e}");
        }
        let this = self.clone();
        let id = sandbox.to_string();
        self.background(sandbox, move || {
            let grace = Duration::from_millis(grace_ms);
            let running: Vec<String> = this
                .rt
                .containers
                .list()
                .ok()
                .and_then(|l| l.into_iter().find(|p| p.id == id))
                .map(|p| {
                    p.containers
                        .into_iter()
                        .filter(|c| c.state == ContainerState::Running)
                        .map(|c| c.name)
                        .collect()
                })
                .unwrap_or_default();
            std::thread::scope(|s| {
                for c in &running {
                    let (this, id) = (&this, &id);
                    s.spawn(move || {
                        if let Err(e) = this.rt.containers.stop_container(id, c, grace) {
                            tracing::warn!(pod = id.as_str(), "stopping {c}: {e}");
                        }
                    });
                }
            });
            let steps: [(&str, kommit_runtime::traits::Result<()>); 3] = [
                ("network", this.rt.network.detach(&id)),
                (
                    "sandbox",
                    match this.rt.containers.remove_pod(&id) {
                        Err(RuntimeError::NotFound { .. }) => Ok(()),
                        r => r,
                    },
                ),
                ("volumes", this.rt.volumes.remove_pod_volumes(&id)),
            ];
            let mut ok = true;
            for (what, r) in steps {
                if let Err(e) = r {
                    ok = false;
                    tracing::warn!(pod = id.as_str(), "removing the pod's {what}: {e}");
                }
            }
            if ok {
                let mut s = this.lock();
                s.memory.remove(&id);
                s.paths.remove(&id);
                s.created_at.remove(&id);
                s.events.remove(&id);
            }
        });
    }

    fn background(&self, sandbox: &str, f: impl FnOnce() + Send + 'static) {
        if !self.lock().busy.insert(sandbox.to_string()) {
            return;
        }
        let this = self.clone();
        let id = sandbox.to_string();
        let spawned = std::thread::Builder::new()
            .name("kommit-stop".into())
            .spawn(move || {
                f();
                this.lock().busy.remove(&id);
                (this.kick)();
            });
        if let Err(e) = spawned {
            tracing::error!(pod = sandbox, "cannot start a stop thread: {e}");
            self.lock().busy.remove(sandbox);
        }
    }
}

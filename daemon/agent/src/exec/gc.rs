//! Garbage on the node's disk: volumes of pods that no longer exist (left by a crash), and
//! node-local persistent volumes whose claims went (reclaim policy Delete).

use super::Executor;
use crate::translate::{PodPlan, VolumePlan};
use std::collections::BTreeSet;

impl Executor {
    /// Pods with volumes on disk but no sandbox (left by a crash), removed.
    pub fn collect_orphan_volumes(&self, live: &BTreeSet<String>) {
        if let Ok(pods) = self.rt.volumes.pods_with_volumes() {
            for p in pods {
                if !live.contains(&p) && !self.busy(&p) {
                    if let Err(e) = self.rt.volumes.remove_pod_volumes(&p) {
                        tracing::warn!(pod = p, "removing orphaned volumes: {e}");
                    }
                }
            }
        }
    }

    /// Node-local persistent volumes on disk that are not in `keep` (their claims went with
    /// reclaim policy Delete), removed with their data. A volume a pod on this node still
    /// mounts is kept whatever `keep` says.
    pub fn collect_local_volumes(&self, keep: &BTreeSet<String>, plans: &[PodPlan]) {
        let Ok(on_disk) = self.rt.volumes.local_volumes() else {
            return;
        };
        let mounted: BTreeSet<&str> = plans
            .iter()
            .flat_map(|p| p.volumes.values())
            .filter_map(|v| match v {
                VolumePlan::Local { name } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        for v in on_disk {
            if keep.contains(&v) || mounted.contains(v.as_str()) {
                continue;
            }
            match self.rt.volumes.remove_local_volume(&v) {
                Ok(()) => tracing::info!(volume = v, "local volume deleted: its claim is gone"),
                Err(e) => tracing::warn!(volume = v, "deleting local volume: {e}"),
            }
        }
    }
}

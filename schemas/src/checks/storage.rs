//! PersistentVolumes and PodDisruptionBudgets: what their schemas cannot say.

use super::{percent_or_count, pod::host_path_allowed};
use crate::diagnostic::Diagnostic;
use crate::load::Loaded;
use crate::model::config::ClusterSettings;
use crate::model::policy::PodDisruptionBudget;
use crate::model::storage::PersistentVolume;

/// One pre-provisioned volume: exactly one source, a size, an absolute path (a hostPath
/// under the allowlist), and a `local` volume names its nodes.
pub(super) fn persistent_volume(
    l: &Loaded,
    pv: &PersistentVolume,
    settings: &ClusterSettings,
    diags: &mut Vec<Diagnostic>,
) {
    let s = &pv.spec;
    if !s.capacity.contains_key("storage") {
        diags.push(l.at("/spec/capacity", "`spec.capacity.storage` is required"));
    }
    match (&s.local, &s.host_path) {
        (None, None) => diags.push(l.at(
            "/spec",
            "a PersistentVolume needs `local` or `hostPath`: kommit has node-local volumes only",
        )),
        (Some(_), Some(_)) => diags.push(l.at(
            "/spec/hostPath",
            "a PersistentVolume needs exactly one of `local` and `hostPath`",
        )),
        (Some(local), None) => {
            let path = local.path.as_str();
            if !path.starts_with('/') || path.split('/').any(|c| c == "..") {
                diags.push(l.at(
                    "/spec/local/path",
                    format!("local path \"{path}\" must be absolute, without `..`"),
                ));
            }
            if s.node_affinity.is_none() {
                diags.push(l.at(
                    "/spec/local",
                    "a `local` PersistentVolume needs `spec.nodeAffinity`: the nodes that hold it",
                ));
            }
        }
        (None, Some(h)) => {
            if let Err(e) = host_path_allowed(h.path.as_str(), &settings.host_path_allowlist) {
                diags.push(l.at("/spec/hostPath/path", e));
            }
        }
    }
}

/// One budget: at most one bound, each a count or a percentage.
pub(super) fn pod_disruption_budget(
    l: &Loaded,
    pdb: &PodDisruptionBudget,
    diags: &mut Vec<Diagnostic>,
) {
    let s = &pdb.spec;
    if s.min_available.is_some() && s.max_unavailable.is_some() {
        diags.push(l.at(
            "/spec/maxUnavailable",
            "`minAvailable` and `maxUnavailable` cannot both be set",
        ));
    }
    for (v, f) in [
        (&s.min_available, "minAvailable"),
        (&s.max_unavailable, "maxUnavailable"),
    ] {
        if let Some(Err(e)) = v.as_ref().map(percent_or_count) {
            diags.push(l.at(&format!("/spec/{f}"), format!("`{f}`: {e}")));
        }
    }
}

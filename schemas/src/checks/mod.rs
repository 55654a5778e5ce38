//! Checks that need more than one object, or policy from `kommit.yaml`: the parts of
//! validation a JSON Schema cannot express.

use crate::diagnostic::Diagnostic;
use crate::load::Loaded;
use crate::model::config::ClusterSettings;
use crate::model::meta::{is_dns1123_label, IntOrString, LabelSelector};
use crate::model::pod::{PodSpec, RestartPolicy};
use crate::model::workloads::CompletionMode;
use crate::model::{Kind, Object};
use base64::Engine;
use std::collections::{BTreeMap, BTreeSet};

mod pod;
mod service;
mod storage;
pub use pod::host_path_allowed;
use pod::pod;
use service::service;

/// Namespaces that exist without a manifest.
pub const IMPLICIT_NAMESPACES: &[&str] = &["default", "kube-system"];

/// Where a pod spec sits in an object, and the labels its pods get.
struct PodSite<'a> {
    spec: &'a PodSpec,
    ptr: &'static str,
    labels: Option<&'a BTreeMap<String, String>>,
}

fn pod_site(o: &Object) -> Option<PodSite<'_>> {
    Some(match o {
        Object::Pod(p) => PodSite {
            spec: &p.spec,
            ptr: "/spec",
            labels: Some(&p.metadata.labels),
        },
        Object::Deployment(d) => PodSite {
            spec: &d.spec.template.spec,
            ptr: "/spec/template/spec",
            labels: Some(&d.spec.template.metadata.labels),
        },
        Object::DaemonSet(d) => PodSite {
            spec: &d.spec.template.spec,
            ptr: "/spec/template/spec",
            labels: Some(&d.spec.template.metadata.labels),
        },
        Object::ReplicaSet(d) => PodSite {
            spec: &d.spec.template.spec,
            ptr: "/spec/template/spec",
            labels: Some(&d.spec.template.metadata.labels),
        },
        Object::StatefulSet(d) => PodSite {
            spec: &d.spec.template.spec,
            ptr: "/spec/template/spec",
            labels: Some(&d.spec.template.metadata.labels),
        },
        Object::Job(j) => PodSite {
            spec: &j.spec.template.spec,
            ptr: "/spec/template/spec",
            labels: Some(&j.spec.template.metadata.labels),
        },
        Object::CronJob(c) => PodSite {
            spec: &c.spec.job_template.spec.template.spec,
            ptr: "/spec/jobTemplate/spec/template/spec",
            labels: Some(&c.spec.job_template.spec.template.metadata.labels),
        },
        _ => return None,
    })
}

/// A Secret with values committed in clear: a warning, or an error when `kommit.yaml` says
/// `requireEncryptedSecrets: true`.
fn secret_in_clear(
    l: &Loaded,
    s: &crate::model::core::Secret,
    settings: &ClusterSettings,
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) {
    if s.sops.is_some() || (s.data.is_empty() && s.string_data.is_empty()) {
        return;
    }
    let message = format!(
        "{} is committed in clear: anyone who can clone the repository reads it; encrypt it with `kommit secrets encrypt` (SOPS, age)",
        l.display()
    );
    if settings.require_encrypted_secrets {
        diags.push(l.at(
            "",
            format!("{message}; kommit.yaml sets `requireEncryptedSecrets: true`"),
        ));
    } else {
        warnings.push(l.at("", message));
    }
}

/// Runs every cross-object check. Returns the cluster settings (defaults when there is no
/// `kommit.yaml`).
pub(crate) fn check_all(
    objs: &[Loaded],
    diags: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> ClusterSettings {
    let settings = cluster_settings(objs, diags);
    duplicates(objs, diags);
    let index = Index::new(objs);
    let mut node_ports = service::NodePorts::new();
    for l in objs {
        namespace_exists(l, &index, diags);
        match &l.object {
            Object::Service(s) => service(l, s, &settings, &mut node_ports, diags),
            Object::Namespace(_) if !is_dns1123_label(&l.name) => diags.push(l.at(
                "/metadata/name",
                format!(
                    "Namespace name `{}` must be a DNS-1123 label (no dots, at most 63 characters)",
                    l.name
                ),
            )),
            Object::Secret(s) => {
                secret_in_clear(l, s, &settings, diags, warnings);
                for (k, v) in &s.data {
                    if s.sops.is_some() && crate::sops::EncValue::looks_encrypted(v) {
                        continue;
                    }
                    if base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .is_err()
                    {
                        diags.push(l.at(
                            &format!("/data/{}", crate::yaml::escape_segment(k)),
                            format!("`data.{k}` of {} is not valid base64", l.display()),
                        ));
                    }
                }
            }
            Object::ConfigMap(c) => {
                for (k, v) in &c.binary_data {
                    if base64::engine::general_purpose::STANDARD
                        .decode(v.trim())
                        .is_err()
                    {
                        diags.push(l.at(
                            &format!("/binaryData/{}", crate::yaml::escape_segment(k)),
                            format!("`binaryData.{k}` of {} is not valid base64", l.display()),
                        ));
                    }
                }
            }
            Object::PersistentVolumeClaim(p)
                if !p.spec.resources.requests.contains_key("storage") =>
            {
                diags.push(l.at(
                    "/spec/resources",
                    "`spec.resources.requests.storage` is required",
                ))
            }
            Object::PersistentVolume(pv) => storage::persistent_volume(l, pv, &settings, diags),
            Object::PodDisruptionBudget(pdb) => storage::pod_disruption_budget(l, pdb, diags),
            Object::CronJob(c) => {
                if let Err(e) = crate::cron::check_cron(&c.spec.schedule) {
                    diags.push(l.at(
                        "/spec/schedule",
                        format!("invalid schedule \"{}\": {e}", &*c.spec.schedule),
                    ));
                }
            }
            _ => {}
        }
        workload(l, diags);
        if let Some(site) = pod_site(&l.object) {
            pod(l, &site, &settings, &index, diags);
        }
    }
    settings
}

fn cluster_settings(objs: &[Loaded], diags: &mut Vec<Diagnostic>) -> ClusterSettings {
    let mut settings = ClusterSettings::default();
    for l in objs {
        let Object::ClusterConfig(c) = &l.object else {
            continue;
        };
        if l.path != "kommit.yaml" {
            diags.push(l.at(
                "/kind",
                "ClusterConfig belongs in `kommit.yaml` at the root of the tree",
            ));
            continue;
        }
        match c.settings() {
            Ok(s) => settings = s,
            Err((field, msg)) => diags.push(l.at(&format!("/spec/{field}"), msg)),
        }
    }
    settings
}

fn duplicates(objs: &[Loaded], diags: &mut Vec<Diagnostic>) {
    let mut seen: BTreeMap<(Kind, &str, &str), &Loaded> = BTreeMap::new();
    for l in objs {
        let key = (l.kind, l.namespace.as_str(), l.name.as_str());
        if let Some(first) = seen.get(&key) {
            let p = first.spans.value_pos("/metadata/name");
            diags.push(l.at(
                "/metadata/name",
                format!(
                    "duplicate {}: first defined at {}:{}:{}",
                    l.display(),
                    first.path,
                    p.line,
                    p.col
                ),
            ));
        } else {
            seen.insert(key, l);
        }
    }
}

/// What the tree defines, for reference checks.
struct Index<'a> {
    namespaces: BTreeSet<&'a str>,
    config_maps: BTreeMap<(&'a str, &'a str), BTreeSet<&'a str>>,
    secrets: BTreeMap<(&'a str, &'a str), BTreeSet<&'a str>>,
    claims: BTreeSet<(&'a str, &'a str)>,
}

impl<'a> Index<'a> {
    fn new(objs: &'a [Loaded]) -> Self {
        let mut ix = Index {
            namespaces: IMPLICIT_NAMESPACES.iter().copied().collect(),
            config_maps: BTreeMap::new(),
            secrets: BTreeMap::new(),
            claims: BTreeSet::new(),
        };
        for l in objs {
            let id = (l.namespace.as_str(), l.name.as_str());
            match &l.object {
                Object::Namespace(_) => {
                    ix.namespaces.insert(l.name.as_str());
                }
                Object::ConfigMap(c) => {
                    let keys = c
                        .data
                        .keys()
                        .chain(c.binary_data.keys())
                        .map(String::as_str)
                        .collect();
                    ix.config_maps.insert(id, keys);
                }
                Object::Secret(s) => {
                    let keys = s
                        .data
                        .keys()
                        .chain(s.string_data.keys())
                        .map(String::as_str)
                        .collect();
                    ix.secrets.insert(id, keys);
                }
                Object::PersistentVolumeClaim(_) => {
                    ix.claims.insert(id);
                }
                _ => {}
            }
        }
        ix
    }
}

fn namespace_exists(l: &Loaded, ix: &Index<'_>, diags: &mut Vec<Diagnostic>) {
    if l.kind.namespaced() && !ix.namespaces.contains(l.namespace.as_str()) {
        diags.push(l.at(
            "/metadata/namespace",
            format!(
                "namespace `{}` is not defined in any file (add a Namespace manifest)",
                l.namespace
            ),
        ));
    }
}

fn selector_matches(
    l: &Loaded,
    sel: &LabelSelector,
    labels: &BTreeMap<String, String>,
    diags: &mut Vec<Diagnostic>,
) {
    if sel.is_empty() {
        diags.push(l.at("/spec/selector", "`spec.selector` must not be empty"));
    } else if !sel.matches(labels) {
        diags.push(l.at(
            "/spec/selector",
            "`spec.selector` does not match the template's labels (`spec.template.metadata.labels`)",
        ));
    }
}

pub(super) fn percent_or_count(v: &IntOrString) -> Result<(), String> {
    match v {
        IntOrString::Int(i) if *i >= 0 => Ok(()),
        IntOrString::Int(i) => Err(format!("{i} must not be negative")),
        IntOrString::String(s) => match s.strip_suffix('%').map(str::parse::<u32>) {
            Some(Ok(p)) if p <= 100 => Ok(()),
            _ => Err(format!(
                "\"{s}\" must be a count or a percentage such as \"25%\""
            )),
        },
    }
}

fn is_zero(v: &Option<IntOrString>) -> bool {
    matches!(v, Some(IntOrString::Int(0)))
        || matches!(v, Some(IntOrString::String(s)) if s.trim_end_matches('%') == "0")
}

fn workload(l: &Loaded, diags: &mut Vec<Diagnostic>) {
    match &l.object {
        Object::Deployment(d) => {
            selector_matches(l, &d.spec.selector, &d.spec.template.metadata.labels, diags);
            if let Some(ru) = d
                .spec
                .strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
            {
                for (v, f) in [
                    (&ru.max_surge, "maxSurge"),
                    (&ru.max_unavailable, "maxUnavailable"),
                ] {
                    if let Some(Err(e)) = v.as_ref().map(percent_or_count) {
                        diags.push(l.at(
                            &format!("/spec/strategy/rollingUpdate/{f}"),
                            format!("`{f}`: {e}"),
                        ));
                    }
                }
                if is_zero(&ru.max_surge) && is_zero(&ru.max_unavailable) {
                    diags.push(l.at(
                        "/spec/strategy/rollingUpdate",
                        "`maxSurge` and `maxUnavailable` cannot both be zero: the rollout could never progress",
                    ));
                }
            }
        }
        Object::DaemonSet(d) => {
            selector_matches(l, &d.spec.selector, &d.spec.template.metadata.labels, diags)
        }
        Object::ReplicaSet(d) => {
            selector_matches(l, &d.spec.selector, &d.spec.template.metadata.labels, diags)
        }
        Object::StatefulSet(s) => {
            selector_matches(l, &s.spec.selector, &s.spec.template.metadata.labels, diags);
            for (i, t) in s.spec.volume_claim_templates.iter().enumerate() {
                if t.metadata.name.is_none() {
                    diags.push(l.at(
                        &format!("/spec/volumeClaimTemplates/{i}/metadata"),
                        "`metadata.name` is required in a volume claim template",
                    ));
                }
                if !t.spec.resources.requests.contains_key("storage") {
                    diags.push(l.at(
                        &format!("/spec/volumeClaimTemplates/{i}/spec/resources"),
                        "`resources.requests.storage` is required",
                    ));
                }
            }
        }
        Object::Job(j)
            if j.spec.completion_mode == Some(CompletionMode::Indexed)
                && j.spec.completions.is_none() =>
        {
            diags.push(l.at(
                "/spec",
                "`spec.completions` is required when `completionMode` is Indexed",
            ));
        }
        _ => {}
    }
}

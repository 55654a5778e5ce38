//! Where a pod's data comes from: ConfigMap and Secret contents, the volumes made of them,
//! allowlisted hostPaths, and registry credentials from `imagePullSecrets`.

use super::{Fields, SecretKeys, VolumePlan, MAX_PROJECTED_BYTES};
use base64::Engine;
use kommit_runtime::traits::{HostPathKind, Medium, ProjectedFile, RegistryCredentials};
use kommit_schemas::model::pod::{HostPathType, StorageMedium};
use kommit_schemas::DesiredState;
use std::collections::BTreeMap;

/// The registry host a `.dockerconfigjson` key names (`https://index.docker.io/v1/` is
/// Docker Hub, `docker.io`).
pub(super) fn registry_host(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = k.split('/').next().unwrap_or(k);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        h => h.to_string(),
    }
}

/// Credentials from `imagePullSecrets`: Secrets of type `kubernetes.io/dockerconfigjson`
/// (`.dockerconfigjson`: `{"auths": {host: {username, password} | {auth}}}`) or the legacy
/// `kubernetes.io/dockercfg` (`.dockercfg`: the `auths` map itself). Missing or malformed
/// secrets add nothing: the pull then fails with the registry's own answer, as the kubelet's.
pub fn pull_credentials(
    spec: &kommit_schemas::model::pod::PodSpec,
    ns: &str,
    desired: &DesiredState,
    keys: &SecretKeys,
) -> BTreeMap<String, RegistryCredentials> {
    let mut out = BTreeMap::new();
    for r in &spec.image_pull_secrets {
        let Ok(Some(data)) = secret_data(desired, keys, ns, r.name.as_str()) else {
            continue;
        };
        let (doc, nested) = match (data.get(".dockerconfigjson"), data.get(".dockercfg")) {
            (Some(d), _) => (d, true),
            (None, Some(d)) => (d, false),
            _ => continue,
        };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(doc) else {
            continue;
        };
        let auths = if nested { &v["auths"] } else { &v };
        let Some(auths) = auths.as_object() else {
            continue;
        };
        for (host, a) in auths {
            let user = a["username"].as_str().map(str::to_string);
            let pass = a["password"].as_str().map(str::to_string);
            let creds = match (user, pass) {
                (Some(username), Some(password)) => {
                    Some(RegistryCredentials { username, password })
                }
                _ => a["auth"]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|raw| String::from_utf8(raw).ok())
                    .and_then(|up| {
                        let (u, p) = up.split_once(':')?;
                        Some(RegistryCredentials {
                            username: u.to_string(),
                            password: p.to_string(),
                        })
                    }),
            };
            if let Some(c) = creds {
                out.entry(registry_host(host)).or_insert(c);
            }
        }
    }
    out
}

pub(super) fn config_map_value(
    desired: &DesiredState,
    ns: &str,
    name: &str,
    key: &str,
) -> Option<String> {
    let cm = desired.config_maps.get(&format!("{ns}/{name}"))?;
    if let Some(v) = cm.data.get(key) {
        return Some(v.clone());
    }
    let b = cm.binary_data.get(key)?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    String::from_utf8(raw).ok()
}

/// Every key of a Secret with its decoded bytes (`stringData` over `data`): `Ok(None)` when
/// there is no such Secret, `Err` when it is SOPS-encrypted and this node cannot open it.
pub(super) fn secret_data(
    desired: &DesiredState,
    keys: &SecretKeys,
    ns: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
    let key = format!("{ns}/{name}");
    let Some(s) = desired.secrets.get(&key) else {
        return Ok(None);
    };
    // An encrypted Secret's values are ciphertext: they come from its sealed document,
    // opened here, on the node that runs the pod.
    if s.sops.is_some() {
        let doc = desired
            .sealed_secrets
            .get(&key)
            .ok_or_else(|| format!("secret {key}: its encrypted document is missing"))?;
        return keys.open(&key, doc).map(|d| Some((*d).clone()));
    }
    let mut out = BTreeMap::new();
    for (k, v) in &s.data {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .unwrap_or_default();
        out.insert(k.clone(), raw);
    }
    for (k, v) in &s.string_data {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    Ok(Some(out))
}

/// Every key of a ConfigMap with its bytes.
pub(super) fn config_map_data(
    desired: &DesiredState,
    ns: &str,
    name: &str,
) -> Option<BTreeMap<String, Vec<u8>>> {
    let cm = desired.config_maps.get(&format!("{ns}/{name}"))?;
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in &cm.binary_data {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .unwrap_or_default();
        out.insert(k.clone(), raw);
    }
    Some(out)
}

/// Whether a relative path stays inside its volume.
pub(super) fn safe_relative(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.len() <= 4096
        && p.split('/').all(|c| !c.is_empty() && c != ".." && c != ".")
}

pub(super) fn projected(
    data: BTreeMap<String, Vec<u8>>,
    items: &[kommit_schemas::model::pod::KeyToPath],
    default_mode: u32,
    what: &str,
    optional: bool,
) -> Result<BTreeMap<String, ProjectedFile>, String> {
    let mut files = BTreeMap::new();
    if items.is_empty() {
        for (k, v) in data {
            files.insert(
                k,
                ProjectedFile {
                    data: v,
                    mode: default_mode,
                },
            );
        }
    } else {
        for it in items {
            if !safe_relative(&it.path) {
                return Err(format!(
                    "{what}: item path {:?} is not a safe relative path",
                    it.path
                ));
            }
            match data.get(&it.key) {
                Some(v) => {
                    files.insert(
                        it.path.clone(),
                        ProjectedFile {
                            data: v.clone(),
                            mode: it.mode.map(|m| m.get() as u32).unwrap_or(default_mode),
                        },
                    );
                }
                None if optional => {}
                None => return Err(format!("{what}: key {:?} not found", it.key)),
            }
        }
    }
    let total: usize = files.values().map(|f| f.data.len()).sum();
    if total > MAX_PROJECTED_BYTES {
        return Err(format!(
            "{what}: {total} bytes exceed the volume limit of {MAX_PROJECTED_BYTES}"
        ));
    }
    Ok(files)
}

pub(super) fn volume_plan(
    v: &kommit_schemas::model::pod::Volume,
    ns: &str,
    desired: &DesiredState,
    fields: &Fields,
) -> Result<Option<VolumePlan>, String> {
    let name = v.name.as_str();
    if let Some(e) = &v.empty_dir {
        return Ok(Some(VolumePlan::EmptyDir {
            medium: match e.medium {
                Some(StorageMedium::Memory) => Medium::Memory,
                _ => Medium::Disk,
            },
            size_limit: e.size_limit.as_ref().map(|q| q.units()),
        }));
    }
    if let Some(c) = &v.config_map {
        let what = format!("volume {name}: configmap {ns}/{}", c.name.as_str());
        let optional = c.optional == Some(true);
        let data = match config_map_data(desired, ns, c.name.as_str()) {
            Some(d) => d,
            None if optional => BTreeMap::new(),
            None => return Err(format!("{what} not found")),
        };
        let mode = c.default_mode.map(|m| m.get() as u32).unwrap_or(0o644);
        return projected(data, &c.items, mode, &what, optional).map(|files| {
            Some(VolumePlan::Projected {
                files,
                medium: Medium::Disk,
            })
        });
    }
    if let Some(s) = &v.secret {
        let what = format!("volume {name}: secret {ns}/{}", s.secret_name.as_str());
        let optional = s.optional == Some(true);
        let data = match secret_data(desired, &fields.node.secrets, ns, s.secret_name.as_str()) {
            Ok(Some(d)) => d,
            Ok(None) if optional => BTreeMap::new(),
            Ok(None) => return Err(format!("{what} not found")),
            Err(e) => return Err(format!("volume {name}: {e}")),
        };
        let mode = s.default_mode.map(|m| m.get() as u32).unwrap_or(0o644);
        return projected(data, &s.items, mode, &what, optional).map(|files| {
            Some(VolumePlan::Projected {
                files,
                medium: Medium::Memory,
            })
        });
    }
    if let Some(h) = &v.host_path {
        let path = h.path.as_str().to_string();
        let allowed = desired.config.host_path_allowlist.iter().any(|a| {
            let a = a.trim_end_matches('/');
            path == a || path.starts_with(&format!("{a}/"))
        });
        if !allowed || path.split('/').any(|c| c == "..") {
            return Err(format!(
                "volume {name}: hostPath {path} is not under an allowlisted directory"
            ));
        }
        let kind = host_path_kind(h.kind);
        return Ok(Some(VolumePlan::HostPath { path, kind }));
    }
    if let Some(c) = &v.persistent_volume_claim {
        let key = format!("{ns}/{}", c.claim_name.as_str());
        return match fields.node.claims.get(&key) {
            Some(cv) => Ok(Some(cv.plan.clone())),
            None => Err(format!(
                "volume {name}: persistentvolumeclaim {key} is not bound to a volume on this node"
            )),
        };
    }
    Ok(None)
}

/// The runtime's check for a hostPath `type`.
pub(crate) fn host_path_kind(t: Option<HostPathType>) -> HostPathKind {
    match t {
        None | Some(HostPathType::Unset) => HostPathKind::Any,
        Some(HostPathType::DirectoryOrCreate) => HostPathKind::DirectoryOrCreate,
        Some(HostPathType::Directory) => HostPathKind::Directory,
        Some(HostPathType::FileOrCreate) => HostPathKind::FileOrCreate,
        Some(HostPathType::File) => HostPathKind::File,
        Some(HostPathType::Socket) => HostPathKind::Socket,
    }
}

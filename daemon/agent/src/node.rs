//! The node's own resources: its runtime opened over a data dir, its capacity read from the
//! host, and its registry credentials.

use crate::exec::Runtimes;
use kommit_runtime::images::ImageStore;
use kommit_runtime::linux::{LinuxConfig, LinuxRuntime};
use kommit_runtime::network::{LinuxNetwork, NetConfig};
use kommit_runtime::traits::RegistryCredentials;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The pod bridge of a node.
pub const BRIDGE: &str = "kommit0";
/// The node's nftables table.
pub const NFT_TABLE: &str = "kommit";

/// The nftables table of a pod bridge: `kommit` for the default bridge, `kommit_<bridge>`
/// for another (several nodes on one host, as the tests run them).
pub fn nft_table(bridge: &str) -> String {
    if bridge == BRIDGE {
        NFT_TABLE.to_string()
    } else {
        format!(
            "kommit_{}",
            bridge.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )
    }
}
/// The cgroup parent of every pod (the default of `--cgroup-parent`).
pub const CGROUP_PARENT: &str = "kommit";

/// Checks a cgroup parent given on the command line: a relative path of names made of ASCII
/// letters, digits, `-`, `_` and `.` (not `.` or `..`), at most 8 levels and 200 bytes.
pub fn check_cgroup_parent(parent: &str) -> Result<(), String> {
    let parts: Vec<&str> = parent.split('/').collect();
    let ok = !parent.is_empty()
        && parent.len() <= 200
        && parts.len() <= 8
        && parts.iter().all(|p| {
            !p.is_empty()
                && *p != "."
                && *p != ".."
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cgroup parent {parent:?} is not a relative path of names made of letters, digits, `-`, `_` and `.`"
        ))
    }
}

/// Errors opening the node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The runtime could not be opened.
    #[error("cannot open the container runtime in {dir}: {message}")]
    Runtime {
        /// The data dir.
        dir: PathBuf,
        /// Why.
        message: String,
    },
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Opens the node's runtime in `data_dir` (shared with `kommit ctr --data-dir`): the image
/// store, the Linux container runtime re-executing `helper` for its shims with pod cgroups
/// below `cgroup_parent` ([`CGROUP_PARENT`] by default), the pod network on `bridge`
/// (`kommit0` by default) and the pod volumes.
pub fn open(
    data_dir: &Path,
    helper: PathBuf,
    bridge: &str,
    cgroup_parent: &str,
) -> Result<(Runtimes, Arc<ImageStore>), NodeError> {
    let err = |e: &dyn std::fmt::Display| NodeError::Runtime {
        dir: data_dir.to_path_buf(),
        message: e.to_string(),
    };
    let images = Arc::new(ImageStore::open(data_dir).map_err(|e| err(&e))?);
    let containers = LinuxRuntime::new(
        LinuxConfig {
            data_dir: data_dir.to_path_buf(),
            helper,
            cgroup_parent: cgroup_parent.into(),
        },
        images.clone(),
    )
    .map_err(|e| err(&e))?;
    let network = LinuxNetwork::new(NetConfig {
        bridge: bridge.into(),
        nft_table: nft_table(bridge),
        state_dir: data_dir.join("net"),
    })
    .map_err(|e| err(&e))?;
    let volumes = kommit_runtime::volumes::LinuxVolumes::new(data_dir).map_err(|e| err(&e))?;
    Ok((
        Runtimes {
            containers: Arc::new(containers),
            images: images.clone(),
            network: Arc::new(network),
            volumes: Arc::new(volumes),
        },
        images,
    ))
}

/// Registry credentials by registry host, from `DATA_DIR/registries.json`
/// (`{"registry.example.com": {"username": "...", "password": "..."}}`), as `kommit ctr`
/// reads them. A missing file means none.
pub fn registry_credentials(
    data_dir: &Path,
) -> Result<BTreeMap<String, RegistryCredentials>, NodeError> {
    let p = data_dir.join("registries.json");
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(NodeError::File {
                path: p,
                message: e.to_string(),
            })
        }
    };
    if bytes.len() > 1 << 20 {
        return Err(NodeError::File {
            path: p,
            message: "larger than 1 MiB".into(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|e| NodeError::File {
        path: p,
        message: e.to_string(),
    })
}

/// The registry host of an image reference (`docker.io` when it names none).
pub fn registry_of(reference: &str) -> &str {
    match reference.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

/// The host's capacity: (millicores, memory bytes), from the CPU count and `MemTotal` of
/// `meminfo` (the text of `/proc/meminfo`).
pub fn host_capacity(cpus: usize, meminfo: &str) -> (u64, u64) {
    let mem_kib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    (cpus as u64 * 1000, mem_kib * 1024)
}

/// Removes every pod the agent made in this runtime (containers stopped with `grace`,
/// addresses detached, volumes removed), for `kommit up --down` and tests. Pods without the
/// agent's labels (`kommit ctr run`) are left alone. Returns the pods removed.
pub fn remove_agent_pods(rt: &Runtimes, grace: std::time::Duration) -> Vec<String> {
    let Ok(pods) = rt.containers.list() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in pods
        .into_iter()
        .filter(|p| p.labels.contains_key(crate::translate::LABEL_UID))
    {
        for c in &p.containers {
            if c.state == kommit_runtime::spec::ContainerState::Running {
                let _ = rt.containers.stop_container(&p.id, &c.name, grace);
            }
        }
        let _ = rt.network.detach(&p.id);
        let _ = rt.containers.remove_pod(&p.id);
        let _ = rt.volumes.remove_pod_volumes(&p.id);
        out.push(p.id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_and_registries() {
        let mi = "MemTotal:       24576000 kB\nMemFree:        1000 kB\n";
        assert_eq!(host_capacity(2, mi), (2000, 24_576_000 * 1024));
        assert_eq!(host_capacity(1, ""), (1000, 0));
        for (r, want) in [
            ("busybox:1.36", "docker.io"),
            ("library/busybox", "docker.io"),
            ("127.0.0.1:5055/app:1", "127.0.0.1:5055"),
            ("localhost/app", "localhost"),
            ("ghcr.io/o/app", "ghcr.io"),
        ] {
            assert_eq!(registry_of(r), want, "{r}");
        }
    }

    #[test]
    fn cgroup_parents() {
        for ok in ["kommit", "kommit-kc1/n2", "a.b_c-d"] {
            assert!(check_cgroup_parent(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/kommit", "kommit/", "a/../b", "..", "a//b", "a b", "x/./y",
        ] {
            assert!(check_cgroup_parent(bad).is_err(), "{bad:?}");
        }
    }
}

//! The fake volumes: the Linux volume code ([`crate::volumes::VolumeStore`]) over a temporary
//! directory, with tmpfs mounts recorded instead of made; and what the mount probes see from
//! inside a container, read through the container's mounts from those files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::{enter, World};
use crate::conformance::Probe;
use crate::spec::{ExecOutput, Mount};
use crate::traits::{HostPathKind, Medium, ProjectedFile, Result, Volumes};
use crate::volumes::{Tmpfs, VolumeError, VolumeStore};

/// Recorded tmpfs mounts: mount point and size.
pub(super) struct FakeTmpfs<'a>(pub(super) &'a mut BTreeMap<PathBuf, u64>);

impl Tmpfs for FakeTmpfs<'_> {
    fn mount(&mut self, dir: &Path, size: u64) -> std::result::Result<(), VolumeError> {
        self.0.insert(dir.to_path_buf(), size);
        Ok(())
    }
    fn unmount(&mut self, dir: &Path) -> std::result::Result<(), VolumeError> {
        self.0.remove(dir);
        Ok(())
    }
    fn is_mounted(&self, dir: &Path) -> bool {
        self.0.contains_key(dir)
    }
}

/// The fake node's volumes (files in a temporary directory the node removes when dropped).
pub struct FakeVolumes {
    pub(super) world: Arc<Mutex<World>>,
}

impl World {
    /// The fake's `<data>/volumes`, a fresh temporary directory per node.
    pub(super) fn volume_root(&mut self) -> PathBuf {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        self.volume_root
            .get_or_insert_with(|| {
                std::env::temp_dir().join(format!(
                    "kommit-fake-volumes-{}-{}",
                    std::process::id(),
                    SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                ))
            })
            .clone()
    }

    fn with_store<T>(&mut self, f: impl FnOnce(&mut VolumeStore<FakeTmpfs<'_>>) -> T) -> T {
        let root = self.volume_root();
        let mut store = VolumeStore::new(root, FakeTmpfs(&mut self.tmpfs));
        f(&mut store)
    }

    /// Pods with volumes, as the Linux store lists them.
    pub(super) fn pods_with_volumes(&mut self) -> usize {
        self.with_store(|s| s.pods_with_volumes().map(|v| v.len()).unwrap_or(0))
    }
}

impl Volumes for FakeVolumes {
    fn empty_dir(
        &self,
        pod: &str,
        name: &str,
        medium: Medium,
        size_limit: Option<u64>,
    ) -> Result<PathBuf> {
        let mut g = enter(&self.world, "empty_dir", format!("{pod}/{name} {medium:?}"))?;
        g.with_store(|s| s.empty_dir(pod, name, medium, size_limit))
    }

    fn project(
        &self,
        pod: &str,
        name: &str,
        files: &BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)> {
        let mut g = enter(&self.world, "project", format!("{pod}/{name}"))?;
        g.with_store(|s| s.project(pod, name, files))
    }

    fn project_in_memory(
        &self,
        pod: &str,
        name: &str,
        files: &BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)> {
        let mut g = enter(&self.world, "project_in_memory", format!("{pod}/{name}"))?;
        g.with_store(|s| s.project_in_memory(pod, name, files))
    }

    fn host_path(&self, path: &Path, kind: HostPathKind) -> Result<PathBuf> {
        drop(enter(&self.world, "host_path", path.display().to_string())?);
        crate::volumes::host_path(path, kind)
    }

    fn remove_pod_volumes(&self, pod: &str) -> Result<()> {
        let mut g = enter(&self.world, "remove_pod_volumes", pod.into())?;
        g.with_store(|s| s.remove_pod_volumes(pod))
    }

    fn pods_with_volumes(&self) -> Result<Vec<String>> {
        let mut g = enter(&self.world, "pods_with_volumes", String::new())?;
        g.with_store(|s| s.pods_with_volumes())
    }

    fn local_volume(&self, name: &str) -> Result<PathBuf> {
        let mut g = enter(&self.world, "local_volume", name.into())?;
        g.with_store(|s| s.local_volume(name))
    }

    fn local_volumes(&self) -> Result<Vec<String>> {
        let mut g = enter(&self.world, "local_volumes", String::new())?;
        g.with_store(|s| s.local_volumes())
    }

    fn remove_local_volume(&self, name: &str) -> Result<()> {
        let mut g = enter(&self.world, "remove_local_volume", name.into())?;
        g.with_store(|s| s.remove_local_volume(name))
    }
}

/// The mount holding container path `path` (the longest destination that is a prefix of it
/// by components) and the host path it maps to.
fn resolve<'a>(mounts: &'a [Mount], path: &str) -> Option<(&'a Mount, PathBuf)> {
    let comps = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_string)
            .collect()
    };
    let want = comps(path);
    mounts
        .iter()
        .filter_map(|m| {
            let d = comps(&m.destination);
            want.starts_with(&d).then(|| {
                let rest = &want[d.len()..];
                let host = if rest.is_empty() {
                    m.source.clone()
                } else {
                    m.source.join(rest.iter().collect::<PathBuf>())
                };
                (d.len(), m, host)
            })
        })
        .max_by_key(|(n, _, _)| *n)
        .map(|(_, m, p)| (m, p))
}

/// What a mount probe prints inside a container with `mounts`, or None for other probes and
/// paths no mount holds (the image is not modelled).
pub(super) fn mount_probe(
    tmpfs: &BTreeMap<PathBuf, u64>,
    mounts: &[Mount],
    probe: &Probe,
) -> Option<ExecOutput> {
    let r = |code: i32, o: Vec<u8>, e: String| ExecOutput {
        exit_code: code,
        stdout: o,
        stderr: e.into_bytes(),
    };
    match probe {
        Probe::Cat(p) => {
            let (_, host) = resolve(mounts, p)?;
            Some(match std::fs::read(host) {
                Ok(b) => r(0, b, String::new()),
                Err(_) => r(
                    1,
                    vec![],
                    format!("cat: can't open '{p}': No such file or directory\n"),
                ),
            })
        }
        Probe::Write(p) => {
            let (m, host) = resolve(mounts, p)?;
            Some(if m.read_only {
                r(
                    1,
                    vec![],
                    format!("sh: can't create {p}: Read-only file system\n"),
                )
            } else {
                match std::fs::write(host, b"written\n") {
                    Ok(()) => r(0, vec![], String::new()),
                    Err(e) => r(1, vec![], format!("sh: can't create {p}: {e}\n")),
                }
            })
        }
        Probe::Snapshot(d) => {
            let (_, host) = resolve(mounts, d)?;
            let data = host.join("..data");
            let mut out = Vec::new();
            for f in ["a", "b"] {
                match std::fs::read(data.join(f)) {
                    Ok(b) => out.extend(b),
                    Err(_) => {
                        return Some(r(
                            1,
                            out,
                            format!("cat: can't open '{f}': No such file or directory\n"),
                        ))
                    }
                }
            }
            Some(r(0, out, String::new()))
        }
        Probe::MountOf(p) => {
            let (m, host) = resolve(mounts, p)?;
            if host != m.source {
                return Some(r(1, vec![], String::new()));
            }
            let rw = if m.read_only { "ro" } else { "rw" };
            let line = match tmpfs.get(&m.source) {
                Some(size) => format!(
                    "tmpfs {p} tmpfs {rw},nosuid,nodev,relatime,size={}k,mode=777 0 0\n",
                    size / 1024
                ),
                None => format!("/dev/fake {p} ext4 {rw},nosuid,nodev,relatime 0 0\n"),
            };
            Some(r(0, line.into_bytes(), String::new()))
        }
        _ => None,
    }
}

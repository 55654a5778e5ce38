//! Pod volumes on the host: `<data>/volumes/<pod>/<volume>`, beside `pods/` and not in it
//! (a container's writable layer is mounted over its pod directory inside the container, so
//! nothing under `pods/` could be bound into it).
//!
//! - emptyDir: a directory (`Disk`), or a tmpfs mounted on it (`Memory`), mode 0777;
//! - projected volumes: written by [`projected`] with atomic version swaps;
//! - hostPath: checked or created in place, never copied;
//! - node-local persistent volumes (`local`): `<data>/volumes/_local/<name>`, kept across
//!   pods until removed.
//!
//! Containers get volumes as bind mounts ([`crate::spec::Mount`]), made in the container's
//! own mount namespace. The only host-side mounts are the `Memory` emptyDirs' tmpfs, mounted
//! and unmounted on a dedicated thread (never the caller's, which may be an async worker),
//! and removed with the pod's volumes.
//!
//! [`LinuxVolumes`] mounts for real; the fake ([`crate::fake`]) runs the same code over a
//! [`Tmpfs`] that only records, so both lay out files identically.

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::spec::validate_name;
use crate::traits::{HostPathKind, Medium, ProjectedFile, Result, RuntimeError, Volumes};

mod local;
pub mod projected;

pub use local::LOCAL_DIR;

pub use projected::{MAX_PROJECTED_BYTES, MAX_PROJECTED_FILES};

/// Volume errors.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Error.
        source: std::io::Error,
    },
    /// Invalid input (a name, path, mode or size).
    #[error("invalid volume: {0}")]
    Invalid(String),
    /// What is on disk does not fit the request.
    #[error("{0}")]
    Conflict(String),
    /// Mounting or unmounting a tmpfs failed.
    #[error("{0}")]
    Mount(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The host mounts a volume store needs: the Linux one mounts, the fake's records.
pub trait Tmpfs {
    /// Mount a tmpfs of `size` bytes, mode 0777, nosuid and nodev, on `dir`.
    fn mount(&mut self, dir: &Path, size: u64) -> std::result::Result<(), VolumeError>;
    /// Unmount the tmpfs on `dir`.
    fn unmount(&mut self, dir: &Path) -> std::result::Result<(), VolumeError>;
    /// Whether a tmpfs is mounted on `dir`.
    fn is_mounted(&self, dir: &Path) -> bool;
}

/// The kernel's tmpfs, mounted from a dedicated thread.
#[derive(Debug, Default)]
pub struct KernelTmpfs;

fn on_own_thread<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, VolumeError> + Send + 'static,
) -> std::result::Result<T, VolumeError> {
    std::thread::spawn(f)
        .join()
        .map_err(|_| VolumeError::Mount("mount thread panicked".into()))?
}

impl Tmpfs for KernelTmpfs {
    fn mount(&mut self, dir: &Path, size: u64) -> std::result::Result<(), VolumeError> {
        let dir = dir.to_path_buf();
        on_own_thread(move || {
            use nix::mount::{mount, MsFlags};
            mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                Some(format!("mode=0777,size={size}").as_str()),
            )
            .map_err(|e| VolumeError::Mount(format!("mounting a tmpfs on {}: {e}", dir.display())))
        })
    }

    fn unmount(&mut self, dir: &Path) -> std::result::Result<(), VolumeError> {
        let dir = dir.to_path_buf();
        on_own_thread(move || {
            use nix::mount::{umount2, MntFlags};
            match umount2(&dir, MntFlags::empty()) {
                // Busy (a process has its cwd there): detach now, freed when unused.
                Err(nix::errno::Errno::EBUSY) => umount2(&dir, MntFlags::MNT_DETACH),
                r => r,
            }
            .map_err(|e| VolumeError::Mount(format!("unmounting {}: {e}", dir.display())))
        })
    }

    fn is_mounted(&self, dir: &Path) -> bool {
        is_mount_point(dir)
    }
}

/// Whether `dir` is the root of a filesystem other than its parent's (a tmpfs we mounted).
pub fn is_mount_point(dir: &Path) -> bool {
    match (
        std::fs::symlink_metadata(dir),
        std::fs::symlink_metadata(dir.join("..")),
    ) {
        (Ok(d), Ok(p)) => d.is_dir() && d.dev() != p.dev(),
        _ => false,
    }
}

/// The tmpfs of an in-memory projected volume: room for two versions (the previous one is
/// kept until the next update) of the largest projection. Pages are used only as written.
pub const PROJECTED_TMPFS_BYTES: u64 = 2 * MAX_PROJECTED_BYTES + (1 << 20);

/// Half the host's memory: the tmpfs size of a Memory emptyDir without a size limit.
pub fn default_tmpfs_size() -> u64 {
    nix::sys::sysinfo::sysinfo()
        .map(|i| i.ram_total() / 2)
        .unwrap_or(1 << 30)
        .max(1 << 20)
}

/// The volume layout under a root (`<data>/volumes`), over a [`Tmpfs`].
#[derive(Debug)]
pub struct VolumeStore<T: Tmpfs> {
    root: PathBuf,
    tmpfs: T,
}

fn verr(e: VolumeError) -> RuntimeError {
    match e {
        VolumeError::Invalid(m) => RuntimeError::InvalidSpec(m),
        e => RuntimeError::Volume(e),
    }
}

impl<T: Tmpfs> VolumeStore<T> {
    /// A store under `root` (created on first use).
    pub fn new(root: PathBuf, tmpfs: T) -> Self {
        VolumeStore { root, tmpfs }
    }

    /// The root (`<data>/volumes`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The mounter.
    pub fn tmpfs(&self) -> &T {
        &self.tmpfs
    }

    fn pod_dir(&self, pod: &str) -> Result<PathBuf> {
        validate_name("pod", pod).map_err(RuntimeError::InvalidSpec)?;
        Ok(self.root.join(pod))
    }

    fn vol_dir(&self, pod: &str, name: &str) -> Result<PathBuf> {
        validate_name("volume", name).map_err(RuntimeError::InvalidSpec)?;
        let pd = self.pod_dir(pod)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&pd)
            .map_err(|e| verr(io_err(&pd)(e)))?;
        Ok(pd.join(name))
    }

    /// [`Volumes::empty_dir`].
    pub fn empty_dir(
        &mut self,
        pod: &str,
        name: &str,
        medium: Medium,
        size_limit: Option<u64>,
    ) -> Result<PathBuf> {
        if size_limit == Some(0) {
            return Err(RuntimeError::InvalidSpec(format!(
                "emptyDir {pod}/{name}: size limit 0"
            )));
        }
        let dir = self.vol_dir(pod, name)?;
        let md = match std::fs::symlink_metadata(&dir) {
            Ok(md) => Some(md),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(verr(io_err(&dir)(e))),
        };
        if let Some(md) = md {
            let is_tmpfs = self.tmpfs.is_mounted(&dir);
            let found = match (md.is_dir(), is_tmpfs) {
                (true, true) => Medium::Memory,
                (true, false) => Medium::Disk,
                _ => {
                    return Err(verr(VolumeError::Conflict(format!(
                        "{}: exists and is not an emptyDir",
                        dir.display()
                    ))))
                }
            };
            if found != medium {
                return Err(verr(VolumeError::Conflict(format!(
                    "emptyDir {pod}/{name} exists with medium {found:?}, not {medium:?}"
                ))));
            }
            return Ok(dir);
        }
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&dir)
            .map_err(|e| verr(io_err(&dir)(e)))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| verr(io_err(&dir)(e)))?;
        if medium == Medium::Memory {
            let size = size_limit.unwrap_or_else(default_tmpfs_size);
            if let Err(e) = self.tmpfs.mount(&dir, size) {
                let _ = std::fs::remove_dir(&dir);
                return Err(verr(e));
            }
        }
        Ok(dir)
    }

    /// [`Volumes::project`].
    pub fn project(
        &mut self,
        pod: &str,
        name: &str,
        files: &BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)> {
        projected::validate(files).map_err(verr)?;
        let dir = self.vol_dir(pod, name)?;
        if self.tmpfs.is_mounted(&dir) {
            return Err(verr(VolumeError::Conflict(format!(
                "volume {pod}/{name} is an emptyDir, not a projected volume"
            ))));
        }
        let changed = projected::write(&dir, files).map_err(verr)?;
        Ok((dir, changed))
    }

    /// [`Volumes::project_in_memory`].
    pub fn project_in_memory(
        &mut self,
        pod: &str,
        name: &str,
        files: &BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)> {
        projected::validate(files).map_err(verr)?;
        let dir = self.vol_dir(pod, name)?;
        match std::fs::symlink_metadata(&dir) {
            // Made by an earlier `project_in_memory`, or by `project` before (kept as it is:
            // running containers have that directory bound).
            Ok(md) if md.is_dir() => {}
            Ok(_) => {
                return Err(verr(VolumeError::Conflict(format!(
                    "{}: exists and is not a directory",
                    dir.display()
                ))))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&dir)
                    .map_err(|e| verr(io_err(&dir)(e)))?;
                if let Err(e) = self.tmpfs.mount(&dir, PROJECTED_TMPFS_BYTES) {
                    let _ = std::fs::remove_dir(&dir);
                    return Err(verr(e));
                }
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                    .map_err(|e| verr(io_err(&dir)(e)))?;
            }
            Err(e) => return Err(verr(io_err(&dir)(e))),
        }
        let changed = projected::write(&dir, files).map_err(verr)?;
        Ok((dir, changed))
    }

    /// [`Volumes::remove_pod_volumes`].
    pub fn remove_pod_volumes(&mut self, pod: &str) -> Result<()> {
        let pd = self.pod_dir(pod)?;
        let entries = match std::fs::read_dir(&pd) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(verr(io_err(&pd)(e))),
        };
        for e in entries {
            let p = e.map_err(|e| verr(io_err(&pd)(e)))?.path();
            if self.tmpfs.is_mounted(&p) {
                self.tmpfs.unmount(&p).map_err(verr)?;
            }
            if is_mount_point(&p) {
                return Err(verr(VolumeError::Mount(format!(
                    "{} is still a mount point; not removing it",
                    p.display()
                ))));
            }
        }
        std::fs::remove_dir_all(&pd).map_err(|e| verr(io_err(&pd)(e)))
    }

    /// [`Volumes::pods_with_volumes`].
    pub fn pods_with_volumes(&self) -> Result<Vec<String>> {
        named_dirs(&self.root, "pod")
    }
}

/// The subdirectories of `root` whose names are valid `what` names, sorted; none when `root`
/// does not exist.
fn named_dirs(root: &Path, what: &str) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(verr(io_err(root)(e))),
    };
    let mut names: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| validate_name(what, n).is_ok())
        .collect();
    names.sort();
    Ok(names)
}

/// [`Volumes::host_path`]: check or create what must be at `path`.
pub fn host_path(path: &Path, kind: HostPathKind) -> Result<PathBuf> {
    if !path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(RuntimeError::InvalidSpec(format!(
            "hostPath {} must be absolute and without `..`",
            path.display()
        )));
    }
    let md = match std::fs::metadata(path) {
        Ok(md) => Some(md),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(verr(io_err(path)(e))),
    };
    use std::os::unix::fs::FileTypeExt;
    let want = |ok: bool, what: &str| {
        if ok {
            Ok(path.to_path_buf())
        } else {
            Err(verr(VolumeError::Conflict(format!(
                "hostPath {} is not {what}",
                path.display()
            ))))
        }
    };
    match (kind, md) {
        (HostPathKind::Any, _) => Ok(path.to_path_buf()),
        (HostPathKind::DirectoryOrCreate, None) => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(path)
                .map_err(|e| verr(io_err(path)(e)))?;
            Ok(path.to_path_buf())
        }
        (HostPathKind::FileOrCreate, None) => {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(path)
                .map_err(|e| verr(io_err(path)(e)))?;
            Ok(path.to_path_buf())
        }
        (_, None) => Err(verr(VolumeError::Conflict(format!(
            "hostPath {} does not exist",
            path.display()
        )))),
        (HostPathKind::DirectoryOrCreate | HostPathKind::Directory, Some(md)) => {
            want(md.is_dir(), "a directory")
        }
        (HostPathKind::FileOrCreate | HostPathKind::File, Some(md)) => {
            want(md.is_file(), "a regular file")
        }
        (HostPathKind::Socket, Some(md)) => want(md.file_type().is_socket(), "a socket"),
    }
}

/// The Linux volumes: `<data>/volumes`, Memory emptyDirs on real tmpfs mounts.
pub struct LinuxVolumes {
    store: std::sync::Mutex<VolumeStore<KernelTmpfs>>,
}

impl LinuxVolumes {
    /// Volumes under `data_dir/volumes` (created here).
    pub fn new(data_dir: &Path) -> std::result::Result<Self, VolumeError> {
        let root = data_dir.join("volumes");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&root)
            .map_err(io_err(&root))?;
        Ok(LinuxVolumes {
            store: std::sync::Mutex::new(VolumeStore::new(root, KernelTmpfs)),
        })
    }

    fn store(&self) -> std::sync::MutexGuard<'_, VolumeStore<KernelTmpfs>> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Volumes for LinuxVolumes {
    fn empty_dir(
        &self,
        pod: &str,
        name: &str,
        medium: Medium,
        size_limit: Option<u64>,
    ) -> Result<PathBuf> {
        self.store().empty_dir(pod, name, medium, size_limit)
    }

    fn project(
        &self,
        pod: &str,
        name: &str,
        files: &BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)> {
        self.store().project(pod, name, files)
    }

    fn project_in_memory(
        &self,
        pod: &str,
        name: &str,
        files: &BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)> {
        self.store().project_in_memory(pod, name, files)
    }

    fn host_path(&self, path: &Path, kind: HostPathKind) -> Result<PathBuf> {
        host_path(path, kind)
    }

    fn remove_pod_volumes(&self, pod: &str) -> Result<()> {
        self.store().remove_pod_volumes(pod)
    }

    fn pods_with_volumes(&self) -> Result<Vec<String>> {
        self.store().pods_with_volumes()
    }

    fn local_volume(&self, name: &str) -> Result<PathBuf> {
        self.store().local_volume(name)
    }

    fn local_volumes(&self) -> Result<Vec<String>> {
        self.store().local_volumes()
    }

    fn remove_local_volume(&self, name: &str) -> Result<()> {
        self.store().remove_local_volume(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Rec(std::collections::BTreeSet<PathBuf>);
    impl Tmpfs for Rec {
        fn mount(&mut self, dir: &Path, _size: u64) -> std::result::Result<(), VolumeError> {
            self.0.insert(dir.to_path_buf());
            Ok(())
        }
        fn unmount(&mut self, dir: &Path) -> std::result::Result<(), VolumeError> {
            self.0.remove(dir);
            Ok(())
        }
        fn is_mounted(&self, dir: &Path) -> bool {
            self.0.contains(dir)
        }
    }

    #[test]
    fn local_volumes_outlive_pods_until_removed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let mut s = VolumeStore::new(d.path().join("volumes"), Rec::default());
        let v = s.local_volume("pvc-a").expect("local volume");
        assert_eq!(v, d.path().join("volumes/_local/pvc-a"));
        let mode = std::fs::metadata(&v).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        std::fs::write(v.join("data"), "kept").expect("write");
        // Idempotent, and no pod's volumes: removing every pod's volumes keeps it.
        assert_eq!(s.local_volume("pvc-a").expect("again"), v);
        s.empty_dir("p", "cache", Medium::Disk, None).expect("disk");
        assert_eq!(s.pods_with_volumes().expect("pods"), ["p"]);
        s.remove_pod_volumes("p").expect("remove pod");
        assert_eq!(
            std::fs::read_to_string(v.join("data")).expect("read"),
            "kept"
        );
        assert_eq!(s.local_volumes().expect("list"), ["pvc-a"]);
        assert!(s.local_volume("../x").is_err(), "names are checked");
        s.remove_local_volume("pvc-a").expect("remove");
        s.remove_local_volume("pvc-a").expect("idempotent");
        assert!(s.local_volumes().expect("list").is_empty());
    }

    #[test]
    fn empty_dirs_are_idempotent_and_removed() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut s = VolumeStore::new(d.path().join("volumes"), Rec::default());
        let a = s.empty_dir("p", "cache", Medium::Disk, None).expect("disk");
        assert_eq!(a, d.path().join("volumes/p/cache"));
        assert_eq!(
            s.empty_dir("p", "cache", Medium::Disk, None)
                .expect("again"),
            a
        );
        assert!(s.empty_dir("p", "cache", Medium::Memory, None).is_err());
        let m = s
            .empty_dir("p", "mem", Medium::Memory, Some(1 << 20))
            .expect("mem");
        assert!(s.tmpfs().is_mounted(&m));
        assert!(s.empty_dir("p", "mem", Medium::Disk, None).is_err());
        assert!(s.empty_dir("p", "../x", Medium::Disk, None).is_err());
        assert!(s.empty_dir("P", "x", Medium::Disk, None).is_err());
        assert!(s.empty_dir("p", "z", Medium::Memory, Some(0)).is_err());
        assert_eq!(s.pods_with_volumes().expect("pods"), vec!["p"]);
        s.remove_pod_volumes("p").expect("remove");
        s.remove_pod_volumes("p").expect("idempotent");
        assert!(!s.tmpfs().is_mounted(&m));
        assert!(s.pods_with_volumes().expect("pods").is_empty());
    }

    #[test]
    fn in_memory_projections_are_tmpfs_and_removed() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut s = VolumeStore::new(d.path().join("volumes"), Rec::default());
        let files = BTreeMap::from([(
            "token".to_string(),
            ProjectedFile {
                data: b"one".to_vec(),
                mode: 0o400,
            },
        )]);
        let (dir, changed) = s.project_in_memory("p", "s", &files).expect("project");
        assert!(changed && s.tmpfs().is_mounted(&dir));
        assert_eq!(std::fs::read(dir.join("token")).expect("read"), b"one");
        let (again, changed) = s.project_in_memory("p", "s", &files).expect("again");
        assert_eq!(again, dir);
        assert!(!changed);
        // A directory `project` wrote on disk stays on disk.
        s.project("p", "c", &files).expect("disk");
        let (disk, _) = s.project_in_memory("p", "c", &files).expect("kept");
        assert!(!s.tmpfs().is_mounted(&disk));
        s.remove_pod_volumes("p").expect("remove");
        assert!(!s.tmpfs().is_mounted(&dir));
    }

    #[test]
    fn host_paths_by_kind() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("a/b");
        assert!(host_path(&dir, HostPathKind::Directory).is_err());
        host_path(&dir, HostPathKind::DirectoryOrCreate).expect("create dir");
        assert!(dir.is_dir());
        host_path(&dir, HostPathKind::Directory).expect("dir");
        assert!(host_path(&dir, HostPathKind::File).is_err());
        let f = dir.join("f");
        host_path(&f, HostPathKind::FileOrCreate).expect("create file");
        assert_eq!(std::fs::metadata(&f).expect("md").len(), 0);
        host_path(&f, HostPathKind::File).expect("file");
        assert!(host_path(&f, HostPathKind::DirectoryOrCreate).is_err());
        assert!(host_path(&f, HostPathKind::Socket).is_err());
        assert!(host_path(&d.path().join("no/parent"), HostPathKind::FileOrCreate).is_err());
        assert!(host_path(Path::new("rel"), HostPathKind::Any).is_err());
        assert!(host_path(&d.path().join("a/../a"), HostPathKind::Any).is_err());
        let sock = d.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        host_path(&sock, HostPathKind::Socket).expect("socket");
    }
}

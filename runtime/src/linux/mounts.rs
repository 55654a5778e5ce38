//! Volume mounts inside the container, made by the container init (single-threaded, in the
//! container's own mount namespace) after its root is assembled and before `pivot_root`.
//!
//! Two rules keep them safe:
//! - every source is opened (`O_PATH`) before the writable layer's tmpfs is mounted over the
//!   pod directory, and bound from `/proc/self/fd`, so what is bound is what was named;
//! - every destination is resolved inside the container root ([`secure_join`]): symlinks in
//!   the image are followed as if the root were `/`, `..` stops at the root, so no mount (and
//!   no directory or file created for one) ever lands outside the container's root. The
//!   resolved target is opened `O_PATH|O_NOFOLLOW`, checked to be where resolution said, and
//!   mounted on through `/proc/self/fd`.
//!
//! Mounts made here live only in the container's mount namespace and vanish with it.

use nix::mount::{mount, MsFlags};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::spec::Mount;

/// Symlinks followed while resolving one destination, as Linux's `MAXSYMLINKS`.
pub const MAX_SYMLINK_HOPS: usize = 40;

/// A mount whose source is open.
pub struct OpenMount {
    source: File,
    is_dir: bool,
    spec: Mount,
}

fn proc_fd(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

fn open_path(p: &Path, nofollow: bool) -> std::io::Result<File> {
    let flags = libc::O_PATH | libc::O_CLOEXEC | if nofollow { libc::O_NOFOLLOW } else { 0 };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(p)
}

/// Open every mount source (`O_PATH`), before anything is mounted over them.
pub fn open_sources(mounts: &[Mount]) -> Result<Vec<OpenMount>, String> {
    mounts
        .iter()
        .map(|m| {
            let source = open_path(&m.source, false)
                .map_err(|e| format!("mount source {}: {e}", m.source.display()))?;
            let is_dir = source
                .metadata()
                .map_err(|e| format!("mount source {}: {e}", m.source.display()))?
                .is_dir();
            Ok(OpenMount {
                source,
                is_dir,
                spec: m.clone(),
            })
        })
        .collect()
}

/// Resolve `path` (absolute, as seen inside the container) against `root` the way the
/// kernel would after `chroot(root)`: each symlink is read and its target followed relative
/// to `root` (absolute) or to its directory (relative), `..` never climbs above `root`, at
/// most [`MAX_SYMLINK_HOPS`] symlinks. Components that do not exist are taken as they are.
/// The result is `root` joined with a path free of symlinks, `.` and `..`.
pub fn secure_join(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut resolved = PathBuf::new();
    let mut hops = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let full = root.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(md) if md.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_SYMLINK_HOPS {
                    return Err(format!(
                        "resolving {path:?} in the container: more than {MAX_SYMLINK_HOPS} symlinks"
                    ));
                }
                let target =
                    std::fs::read_link(&full).map_err(|e| format!("readlink {path:?}: {e}"))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut parts: Vec<std::ffi::OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_os_string()),
                        Component::ParentDir => Some("..".into()),
                        _ => None,
                    })
                    .collect();
                while let Some(p) = parts.pop() {
                    pending.push_front(p);
                }
            }
            Ok(_) => resolved = candidate,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => resolved = candidate,
            Err(e) => return Err(format!("resolving {path:?} in the container: {e}")),
        }
    }
    Ok(root.join(resolved))
}

/// Create what a mount of a directory (or file) needs at `target` (resolved by
/// [`secure_join`], so no component is a symlink): missing parents as directories, the
/// target itself as a directory (or an empty file).
fn make_target(target: &Path, is_dir: bool, shown: &str) -> Result<(), String> {
    let err = |e: std::io::Error| format!("creating mount destination {shown}: {e}");
    match std::fs::symlink_metadata(target) {
        Ok(md) if md.is_dir() != is_dir => Err(format!(
            "mount destination {shown} is a {} in the image, the source is a {}",
            if md.is_dir() { "directory" } else { "file" },
            if is_dir { "directory" } else { "file" }
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if is_dir {
                std::fs::create_dir_all(target).map_err(err)
            } else {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(err)?;
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(target)
                    .map(drop)
                    .map_err(err)
            }
        }
        Err(e) => Err(err(e)),
    }
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// Make the mount tree at `top` nosuid, nodev and (if `read_only`) read-only, recursively,
/// with mount_setattr(2). Ok(false) when the kernel has no mount_setattr (before 5.12).
fn set_recursive(top: &File, read_only: bool) -> Result<bool, String> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID
            | MOUNT_ATTR_NODEV
            | if read_only { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a valid O_PATH descriptor, an empty NUL-terminated path with AT_EMPTY_PATH, and
    // a pointer to an initialised mount_attr of the size passed, which the kernel only reads.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            top.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        return Ok(true);
    }
    match std::io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ENOSYS) => Ok(false),
        e => Err(format!("mount_setattr: {e}")),
    }
}

/// Bind every opened mount into the container root at `root`, in order: `MS_BIND|MS_REC`,
/// then nosuid, nodev and, for read-only mounts, read-only on the whole bound tree.
pub fn bind_all(root: &Path, mounts: &[OpenMount]) -> Result<(), String> {
    // Canonical, so the check of each opened target below compares like with like.
    let root = &root
        .canonicalize()
        .map_err(|e| format!("container root {}: {e}", root.display()))?;
    for m in mounts {
        let shown = &m.spec.destination;
        let target = secure_join(root, shown)?;
        if !target.starts_with(root) || target == *root {
            return Err(format!(
                "mount destination {shown:?} resolves to the container root or outside it"
            ));
        }
        make_target(&target, m.is_dir, shown)?;
        let t = open_path(&target, true)
            .map_err(|e| format!("opening mount destination {shown}: {e}"))?;
        // The open file must be the resolved path: nothing was swapped in between.
        let actual = std::fs::read_link(proc_fd(&t))
            .map_err(|e| format!("checking mount destination {shown}: {e}"))?;
        if actual != target {
            return Err(format!(
                "mount destination {shown} moved to {} while being mounted",
                actual.display()
            ));
        }
        mount(
            Some(&proc_fd(&m.source)),
            &proc_fd(&t),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| format!("bind {} on {shown}: {e}", m.spec.source.display()))?;
        // The whole tree (submounts of a hostPath too) becomes nosuid, nodev and, if asked,
        // read-only; kernels without mount_setattr(2) get the top mount only.
        let top = open_path(&target, true)
            .map_err(|e| format!("opening mount {shown} after binding: {e}"))?;
        if !set_recursive(&top, m.spec.read_only)? {
            let mut flags =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            if m.spec.read_only {
                flags |= MsFlags::MS_RDONLY;
            }
            mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
                .map_err(|e| format!("remounting {shown} (read_only={}): {e}", m.spec.read_only))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("real/sub")).expect("mkdir");
        let link = |target: &str, at: &str| {
            std::os::unix::fs::symlink(target, root.join(at)).expect("symlink")
        };
        link("/etc", "abs"); // absolute: must stay in the root
        link("../../../../..", "up"); // climbs: stops at the root
        link("real/sub", "rel");
        link("/loop2", "loop1");
        link("/loop1", "loop2");
        let j = |p: &str| secure_join(&root, p);
        assert_eq!(j("/abs/hosts").expect("abs"), root.join("etc/hosts"));
        assert_eq!(j("/up/tmp").expect("up"), root.join("tmp"));
        assert_eq!(j("/../../x").expect("dots"), root.join("x"));
        assert_eq!(j("/rel/f").expect("rel"), root.join("real/sub/f"));
        assert_eq!(
            j("/real/./sub/../sub").expect("dots"),
            root.join("real/sub")
        );
        assert_eq!(j("/").expect("root"), root);
        assert!(j("/loop1/x").is_err(), "symlink loops end");
    }

    #[test]
    fn targets_are_created_by_type() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("a/b");
        make_target(&dir, true, "/a/b").expect("dir");
        assert!(dir.is_dir());
        let f = d.path().join("c/d.conf");
        make_target(&f, false, "/c/d.conf").expect("file");
        assert!(f.is_file());
        assert!(make_target(&f, true, "/c/d.conf").is_err());
        assert!(make_target(&dir, false, "/a/b").is_err());
    }
}

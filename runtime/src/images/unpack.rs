//! Layer extraction: untrusted tar streams turned into overlayfs lower directories.
//!
//! Every entry path is checked before anything touches the disk: absolute paths, `..`
//! components and paths through symlinks are refused, hard-link targets must stay inside the
//! layer. OCI whiteouts become overlayfs whiteouts (0/0 character devices) and opaque
//! directories get `trusted.overlay.opaque=y`, so each layer can be a lowerdir as is.

use sha2::{Digest, Sha256};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use super::ImageError;

/// Most entries one layer may hold.
pub const MAX_ENTRIES: usize = 500_000;

/// A reader that hashes what passes through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    /// `sha256:<hex>` of everything read so far, and the byte count.
    pub fn finish(self) -> (String, u64) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.count,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Compression of a layer blob, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd (recognised, not supported).
    Zstd,
}

/// Sniff the compression from magic bytes.
pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Normalise an entry path to a relative path with only normal components, or refuse it.
pub fn safe_relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir => return Err(format!("absolute path {}", path.display())),
            Component::ParentDir => return Err(format!("path traversal in {}", path.display())),
            Component::Prefix(_) => return Err(format!("bad path {}", path.display())),
        }
    }
    Ok(out)
}

/// Refuse when any existing ancestor of `rel` inside `root` is a symlink (the entry would be
/// written through it, possibly outside the layer).
fn check_no_symlink_parent(root: &Path, rel: &Path) -> Result<(), String> {
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        cur.push(c);
        match std::fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!(
                    "entry {} goes through symlink {}",
                    rel.display(),
                    cur.display()
                ))
            }
            Ok(_) => {}
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

fn mknod_whiteout(path: &Path) -> io::Result<()> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path)?,
        Ok(_) => std::fs::remove_file(path)?,
        Err(_) => {}
    }
    mknod(path, SFlag::S_IFCHR, Mode::empty(), 0).map_err(io::Error::from)
}

fn set_opaque(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    xattr_set(dir, "trusted.overlay.opaque", b"y")
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let n = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: both pointers are valid NUL-terminated strings and `value` is a live slice of
    // the given length for the duration of the call.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Extract an (already decompressed) tar stream into `dest`, which must exist and be empty.
pub fn extract_layer<R: Read>(reader: R, dest: &Path) -> Result<u64, ImageError> {
    let bad = |msg: String| ImageError::BadLayer {
        path: dest.to_path_buf(),
        msg,
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    let mut count = 0u64;
    let entries = ar.entries().map_err(|e| bad(format!("reading tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("reading tar: {e}")))?;
        count += 1;
        if count as usize > MAX_ENTRIES {
            return Err(bad(format!("more than {MAX_ENTRIES} entries")));
        }
        let raw = entry
            .path()
            .map_err(|e| bad(format!("entry path: {e}")))?
            .into_owned();
        let rel = safe_relative(&raw).map_err(bad)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        check_no_symlink_parent(dest, &rel).map_err(bad)?;
        let file_name = rel
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if file_name == ".wh..wh..opq" {
            set_opaque(&dest.join(&parent))
                .map_err(|e| bad(format!("opaque {}: {e}", parent.display())))?;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(bad(format!("bad whiteout {}", rel.display())));
            }
            std::fs::create_dir_all(dest.join(&parent)).map_err(|e| bad(format!("mkdir: {e}")))?;
            mknod_whiteout(&dest.join(&parent).join(hidden))
                .map_err(|e| bad(format!("whiteout {}: {e}", rel.display())))?;
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| bad(format!("link name: {e}")))?
                .ok_or_else(|| bad(format!("hard link {} without target", rel.display())))?;
            let t = safe_relative(&target).map_err(bad)?;
            check_no_symlink_parent(dest, &t).map_err(bad)?;
            let tp = dest.join(&t);
            if std::fs::symlink_metadata(&tp)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false)
            {
                return Err(bad(format!(
                    "hard link {} to symlink {}",
                    rel.display(),
                    t.display()
                )));
            }
        }
        if !matches!(
            kind,
            tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::Directory
                | tar::EntryType::Symlink
                | tar::EntryType::Link
                | tar::EntryType::Char
                | tar::EntryType::Block
                | tar::EntryType::Fifo
        ) {
            continue;
        }
        // An existing directory replaced by a non-directory (or vice versa) is removed first.
        let target = dest.join(&rel);
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if m.is_dir() && !kind.is_dir() {
                std::fs::remove_dir_all(&target).map_err(|e| bad(format!("replace: {e}")))?;
            }
        }
        let ok = entry.unpack_in(dest).map_err(|e| {
            bad(format!(
                "unpacking {}: {e} ({:?})",
                rel.display(),
                std::error::Error::source(&e)
            ))
        })?;
        if !ok {
            return Err(bad(format!("entry {} escapes the layer", rel.display())));
        }
    }
    Ok(count)
}

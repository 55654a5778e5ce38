//! Projected volumes written the way the kubelet's atomic writer does.
//!
//! ```text
//! <dir>/..7/<files>        the current version (a hidden, sequence-named directory)
//! <dir>/..6/<files>        the previous one, kept until the next update
//! <dir>/..data -> ..7      swapped by rename(2) of `..data_tmp` over it
//! <dir>/<top> -> ..data/<top>   one symlink per top-level entry
//! ```
//!
//! A reader that resolves `..data` once (or opens one file) sees one whole version, never a
//! mix of two and never a half-written file: a version directory is complete before the
//! swap, and is never written again.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{io_err, VolumeError};
use crate::traits::ProjectedFile;

/// Most files one projected volume may hold.
pub const MAX_PROJECTED_FILES: usize = 1024;
/// Most bytes (sum of file sizes) one projected volume may hold.
pub const MAX_PROJECTED_BYTES: u64 = 64 << 20;
/// Longest relative path of a projected file, in bytes.
pub const MAX_PROJECTED_PATH: usize = 1024;
/// Deepest nesting of a projected file.
pub const MAX_PROJECTED_DEPTH: usize = 16;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Check the paths, modes and sizes of a projected volume's files.
pub fn validate(files: &BTreeMap<String, ProjectedFile>) -> Result<(), VolumeError> {
    let bad = |p: &str, why: &str| Err(VolumeError::Invalid(format!("projected file {p:?} {why}")));
    if files.len() > MAX_PROJECTED_FILES {
        return Err(VolumeError::Invalid(format!(
            "{} projected files, at most {MAX_PROJECTED_FILES} allowed",
            files.len()
        )));
    }
    let total: u64 = files.values().map(|f| f.data.len() as u64).sum();
    if total > MAX_PROJECTED_BYTES {
        return Err(VolumeError::Invalid(format!(
            "projected files hold {total} bytes, at most {MAX_PROJECTED_BYTES} allowed"
        )));
    }
    for (p, f) in files {
        if p.is_empty() || p.len() > MAX_PROJECTED_PATH {
            return bad(p, &format!("must be 1-{MAX_PROJECTED_PATH} bytes"));
        }
        if p.contains('\0') {
            return bad(p, "contains NUL");
        }
        let comps: Vec<&str> = p.split('/').collect();
        if comps.len() > MAX_PROJECTED_DEPTH {
            return bad(p, &format!("is nested deeper than {MAX_PROJECTED_DEPTH}"));
        }
        if p.starts_with('/') {
            return bad(p, "is absolute");
        }
        if comps
            .iter()
            .any(|c| c.is_empty() || *c == "." || c.starts_with(".."))
        {
            return bad(p, "has an empty, `.` or `..`-prefixed component");
        }
        if f.mode & !0o777 != 0 {
            return bad(p, &format!("has mode {:o}, want at most 0777", f.mode));
        }
        // A file may not also be a directory of another file.
        for i in 1..comps.len() {
            let prefix = comps[..i].join("/");
            if files.contains_key(&prefix) {
                return bad(p, &format!("is below {prefix:?}, which is a file"));
            }
        }
    }
    Ok(())
}

/// Version number of a `..<n>` name.
fn version_of(name: &str) -> Option<u64> {
    name.strip_prefix("..")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
}

/// Read a version directory back, bounded like [`validate`]; None if it holds anything we
/// would not have written (so it is replaced).
fn read_version(root: &Path) -> Result<Option<BTreeMap<String, ProjectedFile>>, VolumeError> {
    let mut out = BTreeMap::new();
    let mut total = 0u64;
    let mut stack = vec![(root.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, rel, depth)) = stack.pop() {
        if depth > MAX_PROJECTED_DEPTH {
            return Ok(None);
        }
        for e in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let e = e.map_err(io_err(&dir))?;
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                return Ok(None);
            };
            let p = e.path();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let md = std::fs::symlink_metadata(&p).map_err(io_err(&p))?;
            if md.is_dir() {
                stack.push((p, rel, depth + 1));
            } else if md.is_file() {
                total += md.len();
                if out.len() >= MAX_PROJECTED_FILES || total > MAX_PROJECTED_BYTES {
                    return Ok(None);
                }
                let mut data = Vec::new();
                std::fs::File::open(&p)
                    .and_then(|f| f.take(md.len() + 1).read_to_end(&mut data))
                    .map_err(io_err(&p))?;
                out.insert(
                    rel,
                    ProjectedFile {
                        data,
                        mode: md.permissions().mode() & 0o777,
                    },
                );
            } else {
                return Ok(None);
            }
        }
    }
    Ok(Some(out))
}

fn write_version(dir: &Path, files: &BTreeMap<String, ProjectedFile>) -> Result<(), VolumeError> {
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(io_err(dir))?;
    for (rel, f) in files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent().filter(|d| *d != dir) {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .recursive(true)
                .create(parent)
                .map_err(io_err(parent))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode)
            .open(&p)
            .map_err(io_err(&p))?;
        std::io::Write::write_all(&mut file, &f.data).map_err(io_err(&p))?;
        // The umask may have cleared bits of the requested mode.
        file.set_permissions(std::fs::Permissions::from_mode(f.mode))
            .map_err(io_err(&p))?;
    }
    Ok(())
}

/// Point `link` at `target`, atomically replacing what is there (a symlink of ours).
fn swap_symlink(dir: &Path, link: &str, target: &str) -> Result<bool, VolumeError> {
    let lp = dir.join(link);
    if std::fs::read_link(&lp).is_ok_and(|t| t == Path::new(target)) {
        return Ok(false);
    }
    let tmp = dir.join(if link == DATA {
        DATA_TMP.to_string()
    } else {
        format!("..tmp_{link}")
    });
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &lp).map_err(io_err(&lp))?;
    Ok(true)
}

/// Write `files` into the projected volume at `dir` (created if missing); returns whether
/// what a reader sees changed. Identical content swaps nothing.
pub fn write(dir: &Path, files: &BTreeMap<String, ProjectedFile>) -> Result<bool, VolumeError> {
    validate(files)?;
    std::fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create(dir)
        .map_err(io_err(dir))?;
    let mut versions = BTreeSet::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        if let Some(n) = e.file_name().to_str().and_then(version_of) {
            versions.insert(n);
        }
    }
    let data = dir.join(DATA);
    let current = match std::fs::read_link(&data) {
        Ok(t) => t
            .to_str()
            .and_then(version_of)
            .filter(|n| versions.contains(n)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&data)(e)),
    };
    let same = match current {
        Some(n) => read_version(&dir.join(format!("..{n}")))?.as_ref() == Some(files),
        None => false,
    };
    let mut changed = false;
    let live = match (current, same) {
        (Some(n), true) => n,
        _ => {
            let n = versions.last().map_or(1, |m| m + 1);
            let name = format!("..{n}");
            write_version(&dir.join(&name), files)?;
            swap_symlink(dir, DATA, &name)?;
            changed = true;
            n
        }
    };
    // Top-level links: add the new ones, then drop those no longer projected.
    let tops: BTreeSet<&str> = files.keys().filter_map(|k| k.split('/').next()).collect();
    for t in &tops {
        changed |= swap_symlink(dir, t, &format!("{DATA}/{t}"))?;
    }
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let p = e.path();
        if let Some(n) = version_of(name) {
            // Keep the live version and the one before it, for readers still inside it.
            let prev = versions.range(..live).next_back().copied();
            if n != live && Some(n) != prev {
                std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        } else if !name.starts_with("..")
            && !tops.contains(name)
            && e.file_type().is_ok_and(|t| t.is_symlink())
        {
            std::fs::remove_file(&p).map_err(io_err(&p))?;
            changed = true;
        }
    }
    Ok(changed)
}

/// The files of the live version of the projected volume at `dir` (for tests and the fake).
pub fn read(dir: &Path) -> Result<Option<BTreeMap<String, ProjectedFile>>, VolumeError> {
    let data = dir.join(DATA);
    match std::fs::read_link(&data) {
        Ok(t) => read_version(&dir.join(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(&data)(e)),
    }
}

/// Path of the live version directory (for tests).
pub fn live_dir(dir: &Path) -> Option<PathBuf> {
    std::fs::read_link(dir.join(DATA)).ok().map(|t| dir.join(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(v: &[(&str, &str, u32)]) -> BTreeMap<String, ProjectedFile> {
        v.iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    ProjectedFile {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn rejects_escapes_and_bounds() {
        for p in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "..data",
            "a//b",
            "a/./b",
            "",
            "a/..x",
        ] {
            assert!(validate(&files(&[(p, "x", 0o644)])).is_err(), "{p:?}");
        }
        assert!(validate(&files(&[("a", "x", 0o4755)])).is_err());
        assert!(validate(&files(&[("a", "x", 0o644), ("a/b", "y", 0o644)])).is_err());
        let many: Vec<(String, &str, u32)> = (0..=MAX_PROJECTED_FILES)
            .map(|i| (format!("f{i}"), "", 0o644))
            .collect();
        let many: Vec<(&str, &str, u32)> =
            many.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
        assert!(validate(&files(&many)).is_err());
        let mut big = BTreeMap::new();
        big.insert(
            "big".to_string(),
            ProjectedFile {
                data: vec![0; MAX_PROJECTED_BYTES as usize + 1],
                mode: 0o644,
            },
        );
        assert!(validate(&big).is_err());
        assert!(validate(&files(&[("a/b/c.txt", "x", 0o600), ("d", "y", 0o644)])).is_ok());
    }

    #[test]
    fn writes_swaps_and_is_idempotent() {
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("vol");
        let v1 = files(&[("a", "one", 0o644), ("sub/b", "two", 0o600)]);
        assert!(write(&dir, &v1).expect("write"));
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "one");
        assert_eq!(
            std::fs::read_to_string(dir.join("sub/b")).expect("b"),
            "two"
        );
        assert_eq!(
            std::fs::read_link(dir.join("a")).expect("link"),
            Path::new("..data/a")
        );
        let md = std::fs::metadata(dir.join("sub/b")).expect("md");
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        let live = live_dir(&dir).expect("live");
        assert!(
            !write(&dir, &v1).expect("rewrite"),
            "same content must not swap"
        );
        assert_eq!(live_dir(&dir), Some(live.clone()));
        let v2 = files(&[("a", "uno", 0o644), ("c", "tres", 0o644)]);
        assert!(write(&dir, &v2).expect("update"));
        assert_eq!(std::fs::read_to_string(dir.join("a")).expect("a"), "uno");
        assert!(
            !dir.join("sub").exists(),
            "dropped top-level entry still linked"
        );
        assert_eq!(read(&dir).expect("read"), Some(v2.clone()));
        let v3 = files(&[("a", "eins", 0o644)]);
        assert!(write(&dir, &v3).expect("update"));
        assert!(
            !live.exists(),
            "versions older than the previous one are removed"
        );
        let hidden: Vec<String> = std::fs::read_dir(&dir)
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(hidden.len(), 4, "..data, two versions and `a`: {hidden:?}");
    }
}

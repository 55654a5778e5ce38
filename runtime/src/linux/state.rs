//! On-disk state shared by the driver, the shim and the container init.
//!
//! One flat directory per pod, `<data>/pods/<pod>/`:
//! - pod files: `pod.json` (PodSpec), `shim.pid`, `shim.sock`, `shim.stderr`, and the
//!   `hosts`, `hostname` and `resolv.conf` every container of the pod gets;
//! - per container `<name>`: `<name>.config` ([`InitConfig`]); `<name>.state` (the
//!   [`CtrState`] records the shim appends when it starts the container and when it ends,
//!   see [`append_state`]); `<name>.log` (and its rotation `<name>.log.1`).
//!
//! Container files are flat, not a directory per container, because creating and removing
//! directories is what costs on the data disk (an ext4 `rmdir` frees a block, and with online
//! discard it waits for the device); unlinking small, young files does not. Names are
//! `[a-z0-9._-]`, so the suffixes cannot collide with each other or with the pod files.
//! A container's writable layer is not here at all: it lives on a tmpfs inside the
//! container's own mount namespace (see [`super::init`]).
//! Whole files are replaced atomically (write to `<file>.tmp`, rename) so readers never see
//! halves; the state file is append-only and readers ignore an incomplete last line.
//!
//! Every file a container cycle creates costs an inode allocation, which on a journal-less
//! ext4 scans past recently deleted inodes: a container that prints nothing creates two files
//! (its config and its state), the log only appears with the first output.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use super::LinuxError;

/// Everything the container init and exec helpers need, written by the driver at create.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitConfig {
    /// Pod id.
    pub pod: String,
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Overlay lower dirs, top-most first.
    pub lower: Vec<PathBuf>,
    /// The pod directory: source of the `/etc` files, and the mount point (inside the
    /// container's mount namespace only) of the tmpfs holding the upper and work dirs.
    pub pod_dir: PathBuf,
    /// argv.
    pub args: Vec<String>,
    /// `K=V` environment.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Capabilities kept (names like `CAP_CHOWN`); ignored when privileged.
    pub caps: Vec<String>,
    /// Privileged: all capabilities, no masked paths, no seccomp filter.
    pub privileged: bool,
    /// The seccomp filter applied before exec (unless privileged).
    #[serde(default)]
    pub seccomp: crate::spec::Seccomp,
    /// Read-only rootfs.
    pub read_only: bool,
    /// Files to write `0` to, to join the container's cgroup (see
    /// [`super::cgroup::Layout::join_files`]).
    pub cgroup_join: Vec<PathBuf>,
    /// The OOM counter file and key.
    pub oom_file: Option<(PathBuf, String)>,
    /// OOM counter at create time.
    pub oom_base: u64,
    /// Cgroup path relative to the hierarchy roots.
    pub cgroup_rel: String,
    /// Log cap.
    pub log_max_bytes: u64,
    /// Log files kept, the current one included (0: the default).
    #[serde(default)]
    pub log_max_files: u32,
    /// Size cap of the memory-backed writable layer, in bytes (0: the default cap).
    #[serde(default)]
    pub writable_layer_bytes: u64,
    /// Host paths bound into the container, in order (validated at create).
    #[serde(default)]
    pub mounts: Vec<crate::spec::Mount>,
}

/// Container state recorded by the shim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtrState {
    /// Host pid while running.
    pub pid: Option<u32>,
    /// Start time (unix ms).
    pub started_at_ms: Option<u64>,
    /// Finish time (unix ms).
    pub finished_at_ms: Option<u64>,
    /// Exit code.
    pub exit_code: Option<i32>,
    /// Reason.
    pub reason: Option<String>,
    /// Start error message.
    pub error: Option<String>,
}

/// Pod files every container of the pod bind-mounts into its `/etc`.
pub const POD_ETC_FILES: [&str; 3] = ["hosts", "hostname", "resolv.conf"];

const CONFIG_SUFFIX: &str = ".config";

/// The files of container `name` in its pod directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrPaths {
    /// [`InitConfig`], written by the driver at create.
    pub config: PathBuf,
    /// [`CtrState`] records, appended by the shim.
    pub state: PathBuf,
    /// Log file (rotated to `<log>.1`, `<log>.2`, ...).
    pub log: PathBuf,
}

impl CtrPaths {
    /// Paths of container `name` (a valid name) in `pod_dir`.
    pub fn new(pod_dir: &Path, name: &str) -> Self {
        CtrPaths {
            config: pod_dir.join(format!("{name}{CONFIG_SUFFIX}")),
            state: pod_dir.join(format!("{name}.state")),
            log: pod_dir.join(format!("{name}.log")),
        }
    }

    /// Every file the container may have, including temporaries and the rotated log.
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for p in [&self.config, &self.state, &self.log] {
            v.push(p.clone());
            v.push(tmp_path(p));
        }
        for n in 1..super::logs::MAX_FILES {
            v.push(super::logs::rotated_path_n(&self.log, n));
        }
        v
    }
}

/// Largest state file read back (records are a few hundred bytes; a container has two).
const MAX_STATE: u64 = 64 << 10;

/// Append one record to the container's state file: a single `write` of one JSON line.
///
/// Append-only rather than replaced by rename: on ext4, renaming over an existing file
/// forces the new file's blocks to be allocated at once (`auto_da_alloc`), and freeing
/// allocated blocks later costs a synchronous discard on hosts mounted with `discard`; a
/// file written and removed before writeback never gets blocks.
pub fn append_state(path: &Path, st: &CtrState) -> Result<(), LinuxError> {
    use std::io::Write;
    let mut line = serde_json::to_vec(st)
        .map_err(|e| LinuxError::State(format!("{}: {e}", path.display())))?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| LinuxError::io(path, e))?;
    f.write_all(&line).map_err(|e| LinuxError::io(path, e))
}

/// The container's last recorded state (the last complete line of its state file), or None
/// if it was never started.
pub fn read_state(paths: &CtrPaths) -> Result<Option<CtrState>, LinuxError> {
    use std::io::Read;
    let path = &paths.state;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LinuxError::io(path, e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_STATE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LinuxError::io(path, e))?;
    if bytes.len() as u64 > MAX_STATE {
        return Err(LinuxError::State(format!(
            "{}: larger than {MAX_STATE} bytes",
            path.display()
        )));
    }
    // A line without its newline is still being written: the one before it is the truth.
    let complete = match bytes.iter().rposition(|b| *b == b'\n') {
        Some(end) => &bytes[..end],
        None => return Ok(None),
    };
    let last = complete.rsplit(|b| *b == b'\n').next().unwrap_or_default();
    serde_json::from_slice(last)
        .map(Some)
        .map_err(|e| LinuxError::State(format!("{}: {e}", path.display())))
}

/// Names of the containers created in `pod_dir`, sorted.
pub fn container_names(pod_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(pod_dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_suffix(CONFIG_SUFFIX))
                        .filter(|n| crate::spec::validate_name("container", n).is_ok())
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Write JSON atomically.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), LinuxError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = tmp_path(path);
    let bytes = serde_json::to_vec_pretty(v)
        .map_err(|e| LinuxError::State(format!("{}: {e}", path.display())))?;
    // 0600: a container's config holds its environment, Secrets' values included.
    let _ = std::fs::remove_file(&tmp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .map_err(|e| LinuxError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| LinuxError::io(path, e))
}

/// Read JSON (bounded to 1 MiB).
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, LinuxError> {
    let meta = std::fs::metadata(path).map_err(|e| LinuxError::io(path, e))?;
    if meta.len() > 1 << 20 {
        return Err(LinuxError::State(format!(
            "{}: larger than 1 MiB",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| LinuxError::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| LinuxError::State(format!("{}: {e}", path.display())))
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_files_never_collide() {
        // Names may contain dots: no file of one container may be a file of another, or a
        // pod file.
        let dir = Path::new("/p");
        let names = [
            "a", "a.config", "a.state", "a.log", "a.log.1", "shim", "pod", "hosts",
        ];
        let mut seen = std::collections::BTreeSet::new();
        for pod_file in ["pod.json", "shim.pid", "shim.sock", "shim.stderr"]
            .iter()
            .chain(POD_ETC_FILES.iter())
        {
            seen.insert(dir.join(pod_file));
            seen.insert(tmp_path(&dir.join(pod_file)));
        }
        for n in names {
            for f in CtrPaths::new(dir, n).all() {
                assert!(seen.insert(f.clone()), "{} collides", f.display());
            }
        }
    }

    #[test]
    fn state_is_the_last_complete_record() {
        let d = tempfile::tempdir().expect("tempdir");
        let paths = CtrPaths::new(d.path(), "c");
        assert_eq!(read_state(&paths).expect("read"), None);
        std::fs::write(&paths.state, b"").expect("write");
        assert_eq!(
            read_state(&paths).expect("read"),
            None,
            "created, not written"
        );
        let start = CtrState {
            pid: Some(7),
            started_at_ms: Some(1),
            ..Default::default()
        };
        append_state(&paths.state, &start).expect("append");
        assert_eq!(read_state(&paths).expect("read"), Some(start.clone()));
        let exit = CtrState {
            pid: None,
            exit_code: Some(3),
            reason: Some("Error".into()),
            finished_at_ms: Some(2),
            ..start.clone()
        };
        append_state(&paths.state, &exit).expect("append");
        assert_eq!(read_state(&paths).expect("read"), Some(exit.clone()));
        // A half-written record is ignored until its newline arrives.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&paths.state)
            .expect("open");
        std::io::Write::write_all(&mut f, b"{\"pid\":").expect("write");
        assert_eq!(read_state(&paths).expect("read"), Some(exit));
        std::fs::write(&paths.state, b"not json\n").expect("write");
        assert!(read_state(&paths).is_err());
    }

    #[test]
    fn names_are_listed_from_config_files() {
        let d = tempfile::tempdir().expect("tempdir");
        for f in [
            "b.config",
            "a.x.config",
            "a.x.state",
            "pod.json",
            ".hidden.config",
            "c.config.tmp",
        ] {
            std::fs::write(d.path().join(f), b"{}").expect("write");
        }
        assert_eq!(container_names(d.path()), vec!["a.x", "b"]);
    }
}

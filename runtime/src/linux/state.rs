//! On-disk state shared by the driver, the shim and the container init.
//!
//! `<data>/pods/<pod>/pod.json` (PodSpec), `shim.pid`, `shim.sock`;
//! `<data>/pods/<pod>/ctr/<name>/config.json` ([`InitConfig`]), `state.json`
//! ([`CtrState`], written only by the shim once the container was started), `container.log`.
//! Files are replaced atomically (write to `.tmp`, rename) so readers never see halves.

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
    /// Overlay upper dir.
    pub upper: PathBuf,
    /// Overlay work dir.
    pub work: PathBuf,
    /// Mount point of the merged rootfs.
    pub rootfs: PathBuf,
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
    /// Privileged: all capabilities, no masked paths.
    pub privileged: bool,
    /// Read-only rootfs.
    pub read_only: bool,
    /// cgroup.procs files to join.
    pub cgroup_procs: Vec<PathBuf>,
    /// The OOM counter file and key.
    pub oom_file: Option<(PathBuf, String)>,
    /// OOM counter at create time.
    pub oom_base: u64,
    /// Cgroup path relative to the hierarchy roots.
    pub cgroup_rel: String,
    /// Log cap.
    pub log_max_bytes: u64,
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

/// Write JSON atomically.
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<(), LinuxError> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec_pretty(v)
        .map_err(|e| LinuxError::State(format!("{}: {e}", path.display())))?;
    std::fs::write(&tmp, bytes).map_err(|e| LinuxError::io(&tmp, e))?;
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

//! The runtime's own spec and status types.
//!
//! These are deliberately not the manifest model: the runtime knows nothing of Git, Raft or
//! YAML. The node agent translates its pods into these plain, serde-serializable structs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Upper bound on names (pod and container) the runtime accepts.
pub const MAX_NAME_LEN: usize = 100;
/// Upper bound on a pod's resolv.conf (3 nameservers, 2,048 characters of search domains
/// and options fit well within it).
pub const MAX_RESOLV_CONF: usize = 8 * 1024;

/// A pod sandbox: the shared network, IPC and UTS namespaces plus a cgroup parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    /// Unique id of the sandbox on this node (`[a-z0-9][a-z0-9._-]*`).
    pub id: String,
    /// Hostname inside the pod (the pod name).
    pub hostname: String,
    /// The pod's `/etc/resolv.conf`, verbatim (the node agent makes it from the pod's
    /// `dnsPolicy` and `dnsConfig`); at most [`MAX_RESOLV_CONF`] bytes.
    #[serde(default)]
    pub resolv_conf: String,
    /// Extra /etc/hosts lines (`ip`, names).
    #[serde(default)]
    pub extra_hosts: Vec<(String, Vec<String>)>,
    /// Labels the caller attaches to the sandbox (the node agent records the owner kind and
    /// the at-most-once marker here). Stored with the pod and reported back by `list` and
    /// `recover`, so a restarted daemon can tell which pods it must fence.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Resource limits and requests for one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory_limit: Option<u64>,
    /// CPU limit in millicores (quota over a 100 ms period).
    pub cpu_limit_millis: Option<u64>,
    /// CPU request in millicores (shares / weight).
    pub cpu_request_millis: Option<u64>,
    /// Maximum number of processes (pids.max).
    pub pids_max: Option<u64>,
    /// Cap of the container's writable layer in bytes (Kubernetes' `ephemeral-storage`
    /// limit). The layer is memory-backed, so without it the cap is the memory limit, or
    /// [`DEFAULT_WRITABLE_LAYER_BYTES`] when there is none either. Writing past it fails with
    /// ENOSPC.
    #[serde(default)]
    pub writable_layer_limit: Option<u64>,
}

/// Writable-layer cap of a container with neither an ephemeral-storage nor a memory limit.
pub const DEFAULT_WRITABLE_LAYER_BYTES: u64 = 1 << 30;

impl Resources {
    /// The writable layer's cap: the ephemeral-storage limit, else the memory limit, else
    /// [`DEFAULT_WRITABLE_LAYER_BYTES`].
    pub fn writable_layer_bytes(&self) -> u64 {
        self.writable_layer_limit
            .or(self.memory_limit)
            .unwrap_or(DEFAULT_WRITABLE_LAYER_BYTES)
    }
}

/// Security settings of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// Keep every capability and skip the masked/read-only paths.
    pub privileged: bool,
    /// runAsUser; default is the image user, else 0.
    pub run_as_user: Option<u32>,
    /// runAsGroup; default is the image group, else 0.
    pub run_as_group: Option<u32>,
    /// Mount the root filesystem read-only.
    pub read_only_root_filesystem: bool,
    /// Capabilities added to the default set (names like `NET_ADMIN`).
    #[serde(default)]
    pub add_capabilities: Vec<String>,
    /// Capabilities removed from the default set.
    #[serde(default)]
    pub drop_capabilities: Vec<String>,
    /// The system-call filter (ignored when privileged: privileged containers are unfiltered).
    #[serde(default)]
    pub seccomp: Seccomp,
}

/// A container's system-call filter (Kubernetes' `seccompProfile.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Seccomp {
    /// The container runtimes' default filter (see `linux::seccomp`).
    #[default]
    RuntimeDefault,
    /// No filter.
    Unconfined,
}

/// One container inside a pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Name, unique inside the pod.
    pub name: String,
    /// Image reference, resolved through the image store.
    pub image: String,
    /// Overrides the image entrypoint when non-empty.
    #[serde(default)]
    pub command: Vec<String>,
    /// Overrides the image cmd when non-empty.
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment added on top of the image environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; default is the image's, else `/`.
    pub working_dir: Option<String>,
    /// Limits and requests.
    #[serde(default)]
    pub resources: Resources,
    /// Security context.
    #[serde(default)]
    pub security: Security,
    /// Log size cap in bytes before rotation (0 means the default of 10 MiB).
    #[serde(default)]
    pub log_max_bytes: u64,
    /// Log files kept, the current one included (0 means the default of 5; 2 to 10).
    #[serde(default)]
    pub log_max_files: u32,
    /// Host paths bound into the container, in order (at most [`MAX_MOUNTS`]).
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

/// A host path bind-mounted into a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute host path (directory or file) to bind.
    pub source: std::path::PathBuf,
    /// Absolute path inside the container.
    pub destination: String,
    /// Mount read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Most mounts one container may have.
pub const MAX_MOUNTS: usize = 64;

/// Longest mount destination, in bytes.
pub const MAX_MOUNT_PATH: usize = 1024;

/// Check a container's mounts: at most [`MAX_MOUNTS`]; each source an absolute path that
/// exists on the host and has no `..`; each destination absolute, at most
/// [`MAX_MOUNT_PATH`] bytes, without `..`, NUL or empty components, and not `/` nor under
/// `/proc` or `/sys` (which the runtime sets up itself); no destination twice.
pub fn validate_mounts(mounts: &[Mount]) -> Result<(), String> {
    if mounts.len() > MAX_MOUNTS {
        return Err(format!(
            "{} mounts, at most {MAX_MOUNTS} allowed",
            mounts.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for m in mounts {
        let d = &m.destination;
        let comps: Vec<&str> = d
            .split('/')
            .skip(1)
            .filter(|c| !c.is_empty() && *c != ".")
            .collect();
        let bad = if !d.starts_with('/') {
            Some("is not absolute")
        } else if d.len() > MAX_MOUNT_PATH {
            Some("is too long")
        } else if d.contains('\0') {
            Some("contains NUL")
        } else if comps.contains(&"..") {
            Some("contains `..`")
        } else if comps.is_empty() {
            Some("is the container root")
        } else if matches!(comps[0], "proc" | "sys") {
            Some("is under /proc or /sys")
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(format!("mount destination {d:?} {why}"));
        }
        if !seen.insert(comps.join("/")) {
            return Err(format!("mount destination {d:?} appears twice"));
        }
        let s = &m.source;
        if !s.is_absolute()
            || s.components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "mount source {} must be absolute and without `..`",
                s.display()
            ));
        }
        if let Err(e) = std::fs::metadata(s) {
            return Err(format!("mount source {}: {e}", s.display()));
        }
    }
    Ok(())
}

impl PodSpec {
    /// A sandbox `id` whose hostname is `id`, with no DNS settings, extra hosts or labels.
    pub fn new(id: &str) -> Self {
        PodSpec {
            id: id.to_string(),
            hostname: id.to_string(),
            resolv_conf: String::new(),
            extra_hosts: vec![],
            labels: BTreeMap::new(),
        }
    }

    /// The same sandbox with these labels added.
    pub fn with_labels<'a>(mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.labels.extend(
            labels
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        self
    }
}

impl ContainerSpec {
    /// A container running `args` (as the command) from `image`, everything else default.
    pub fn new(name: &str, image: &str, command: &[&str]) -> Self {
        ContainerSpec {
            name: name.to_string(),
            image: image.to_string(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            resources: Resources::default(),
            security: Security::default(),
            log_max_bytes: 0,
            log_max_files: 0,
            mounts: Vec::new(),
        }
    }
}

/// Lifecycle state of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Its process is running.
    Running,
    /// Its process ended; exit code and reason are set.
    Exited,
    /// The state cannot be known (e.g. the shim is gone without recording an exit).
    Unknown,
}

/// Everything `inspect` reports about a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Container name.
    pub name: String,
    /// Pod id.
    pub pod: String,
    /// Image reference it was created from.
    pub image: String,
    /// Current state.
    pub state: ContainerState,
    /// Host pid of the container's init while running.
    pub pid: Option<u32>,
    /// Exit code (128+signal when killed by a signal).
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `Killed` or `StartError`.
    pub reason: Option<String>,
    /// Start time, unix milliseconds.
    pub started_at_ms: Option<u64>,
    /// Finish time, unix milliseconds.
    pub finished_at_ms: Option<u64>,
}

/// A pod sandbox as found on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodStatus {
    /// Pod id.
    pub id: String,
    /// Whether the shim holding its namespaces is alive.
    pub ready: bool,
    /// Pid of the shim.
    pub shim_pid: Option<u32>,
    /// Containers, sorted by name.
    pub containers: Vec<ContainerStatus>,
    /// The labels given at `create_pod`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Result of `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    /// Exit code (128+signal when killed).
    pub exit_code: i32,
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How to read logs back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Only the last N lines.
    pub tail: Option<usize>,
    /// Keep reading until the container exits.
    pub follow: bool,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// Stream it was written to.
    pub stream: Stream,
    /// The line without its newline.
    pub line: String,
}

/// Resource usage read back from the cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// Current memory usage in bytes.
    pub memory_bytes: u64,
    /// Total CPU time consumed in nanoseconds.
    pub cpu_nanos: u64,
    /// Current number of processes.
    pub pids: u64,
}

/// A hostPort mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Port on the node.
    pub host_port: u16,
    /// Port in the pod.
    pub container_port: u16,
}

/// Validate a sandbox spec: its id, hostname (1-63 characters) and the size of its
/// resolv.conf.
pub fn validate_pod_spec(spec: &PodSpec) -> Result<(), String> {
    validate_name("pod", &spec.id)?;
    if spec.hostname.is_empty() || spec.hostname.len() > 63 {
        return Err(format!(
            "hostname {:?} must be 1-63 characters",
            spec.hostname
        ));
    }
    if spec.resolv_conf.len() > MAX_RESOLV_CONF {
        return Err(format!(
            "pod {}: resolv.conf of {} bytes exceeds {MAX_RESOLV_CONF}",
            spec.id,
            spec.resolv_conf.len()
        ));
    }
    Ok(())
}

/// Validate a pod or container name: short, lowercase DNS-ish, no path separators.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b'_'
        })
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid {kind} name {name:?}: want 1-{MAX_NAME_LEN} chars of [a-z0-9._-] starting alphanumeric"
        ))
    }
}

//! The OS contract: what the node agent may ask of a node.
//!
//! All methods are blocking. Callers on an async runtime use `spawn_blocking`; the Linux
//! implementation does its namespace and mount work in re-executed single-threaded helpers,
//! never on the calling thread.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::spec::{
    ContainerSpec, ContainerStats, ContainerStatus, ExecOutput, LogOptions, PodSpec, PodStatus,
    PortMapping,
};

/// Errors any implementation of the traits can return.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The pod, container or image does not exist.
    #[error("{kind} {name} not found")]
    NotFound {
        /// `pod`, `container` or `image`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// It already exists.
    #[error("{kind} {name} already exists")]
    AlreadyExists {
        /// `pod` or `container`.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The spec is invalid.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The operation does not fit the current state.
    #[error("{0}")]
    InvalidState(String),
    /// A failure injected by the fake.
    #[error("injected failure in {0}")]
    Injected(String),
    /// Timed out waiting.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
    /// Image store failure.
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    /// Linux runtime failure.
    #[error(transparent)]
    Linux(#[from] crate::linux::LinuxError),
    /// Network failure.
    #[error(transparent)]
    Net(#[from] crate::network::NetError),
    /// Volume failure.
    #[error(transparent)]
    Volume(#[from] crate::volumes::VolumeError),
    /// Service proxy failure.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
}

/// Result alias for trait methods.
pub type Result<T> = std::result::Result<T, RuntimeError>;

/// Pod sandboxes and their containers.
pub trait ContainerRuntime: Send + Sync {
    /// Create the pod sandbox (its shim and namespaces).
    fn create_pod(&self, spec: &PodSpec) -> Result<()>;
    /// Path of the pod's network namespace, for `PodNetwork::attach`.
    fn pod_netns(&self, pod: &str) -> Result<PathBuf>;
    /// Create a container in the pod (rootfs, cgroup, config); does not start it.
    fn create_container(&self, pod: &str, spec: &ContainerSpec) -> Result<()>;
    /// Start a created container.
    fn start_container(&self, pod: &str, name: &str) -> Result<()>;
    /// SIGTERM, then SIGKILL after `grace`; returns once it has exited.
    fn stop_container(&self, pod: &str, name: &str, grace: Duration) -> Result<ContainerStatus>;
    /// Wait until the container has exited, at most `timeout`.
    fn wait_container(&self, pod: &str, name: &str, timeout: Duration) -> Result<ContainerStatus>;
    /// Remove an exited or created container and everything it owns.
    fn remove_container(&self, pod: &str, name: &str) -> Result<()>;
    /// Stop every container (SIGKILL), end the shim and remove the pod.
    fn remove_pod(&self, pod: &str) -> Result<()>;
    /// State, exit code, reason and times of a container.
    fn inspect(&self, pod: &str, name: &str) -> Result<ContainerStatus>;
    /// Every pod on the node with its containers' true state, sorted by id.
    fn list(&self) -> Result<Vec<PodStatus>>;
    /// Re-adopt pods left by a previous instance (kills nothing); returns what was found.
    fn recover(&self) -> Result<Vec<PodStatus>>;
    /// Run a command inside a running container and collect its output.
    fn exec(&self, pod: &str, name: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput>;
    /// Write the container's log lines (`stdout`/`stderr` merged in order) to `out`.
    fn logs(&self, pod: &str, name: &str, opts: &LogOptions, out: &mut dyn Write) -> Result<()>;
    /// Memory, CPU and pids usage.
    fn stats(&self, pod: &str, name: &str) -> Result<ContainerStats>;
}

/// An image known to the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    /// Reference names (`name:tag`) pointing at it, sorted.
    pub names: Vec<String>,
    /// Manifest digest (`sha256:...`).
    pub digest: String,
    /// Sum of compressed layer sizes.
    pub size: u64,
}

/// A progress report for pulls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullProgress {
    /// Layers fully fetched so far.
    pub layers_done: usize,
    /// Total layers.
    pub layers_total: usize,
    /// Bytes fetched so far.
    pub bytes_done: u64,
    /// Total bytes announced by the manifest.
    pub bytes_total: u64,
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryCredentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

/// The content-addressed image store.
pub trait Images: Send + Sync {
    /// Import an OCI layout dir, OCI archive or docker-save tarball; returns the images.
    fn import(&self, path: &Path) -> Result<Vec<ImageInfo>>;
    /// Pull from a registry.
    fn pull(
        &self,
        reference: &str,
        creds: Option<&RegistryCredentials>,
        progress: &mut dyn FnMut(&PullProgress),
    ) -> Result<ImageInfo>;
    /// All images, sorted by digest.
    fn list(&self) -> Result<Vec<ImageInfo>>;
    /// Import every tarball dropped into the auto-import directory; returns what was new.
    fn import_dropped(&self) -> Result<Vec<ImageInfo>>;
}

/// The address the replicated state assigned to a pod, and the node's pod CIDR it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod's IP: a host address of `cidr`, not its first (the bridge's gateway).
    pub ip: std::net::Ipv4Addr,
    /// The node's pod CIDR.
    pub cidr: ipnet::Ipv4Net,
}

/// Pod wiring with addresses assigned by the caller.
pub trait PodNetwork: Send + Sync {
    /// Give the pod (whose netns is at `netns`) the assigned IP on a veth as eth0, a default
    /// route via the CIDR's gateway and the hostPort mappings; returns the IP. The IP must
    /// be a host address of the CIDR other than the gateway and not allocated to another
    /// pod. Idempotent for the same pod and IP. While pods are attached in one CIDR, an
    /// address in another is refused; with none attached, the bridge takes the new CIDR.
    fn attach(
        &self,
        pod: &str,
        netns: &Path,
        addr: PodAddress,
        ports: &[PortMapping],
    ) -> Result<std::net::Ipv4Addr>;
    /// Free the pod's IP and remove its veth and port mappings. Idempotent.
    fn detach(&self, pod: &str) -> Result<()>;
    /// The IP currently allocated to the pod.
    fn ip_of(&self, pod: &str) -> Result<Option<std::net::Ipv4Addr>>;
    /// The cluster's pod CIDR, holding every node's: pod traffic to it (pods on other nodes,
    /// reached by [`crate::network::sync_pod_routes`]) keeps its source address; traffic
    /// leaving it is masqueraded. `None` (the default): only the node's own CIDR is exempt.
    fn set_cluster_cidr(&self, cidr: Option<ipnet::Ipv4Net>) -> Result<()> {
        let _ = cidr;
        Ok(())
    }
}

/// The node's Services as packet rules (kube-proxy's job): see [`crate::proxy`].
pub trait ServiceProxy: Send + Sync {
    /// Make the node's rules match `table`, the complete desired Services of this node:
    /// ClusterIPs spread over ready endpoints, NodePorts and LoadBalancer ports on the node's
    /// addresses, a port without endpoints rejected at once. Validates the table first
    /// ([`crate::proxy::validate`]) and applies all of it or nothing; only what differs from
    /// the previous sync is rewritten.
    fn sync(&self, table: &crate::proxy::ServiceTable) -> Result<crate::proxy::SyncReport>;
    /// Remove every rule (the next sync rebuilds). Idempotent.
    fn clear(&self) -> Result<()>;
}

/// emptyDir media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Medium {
    /// A directory on the node's data disk.
    Disk,
    /// A tmpfs (charged to memory).
    Memory,
}

/// One file of a projected volume (configMap, secret, downwardAPI, projected).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProjectedFile {
    /// Content.
    pub data: Vec<u8>,
    /// Permission bits (at most `0o777`).
    pub mode: u32,
}

/// What must be at a hostPath (Kubernetes' hostPath `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathKind {
    /// No check.
    Any,
    /// A directory, created (0755, with its parents) if nothing is there.
    DirectoryOrCreate,
    /// An existing directory.
    Directory,
    /// A file, created empty (0644) if nothing is there; its parent must exist.
    FileOrCreate,
    /// An existing regular file.
    File,
    /// An existing unix socket.
    Socket,
}

/// A pod's volumes on the host, under `<data>/volumes/<pod>/<volume>` (outside `pods/`).
/// Containers get them through [`crate::spec::ContainerSpec::mounts`].
pub trait Volumes: Send + Sync {
    /// Create (idempotent) the pod's emptyDir and return its host path. Memory: a tmpfs of
    /// `size_limit` (default: half the host's memory, as Kubernetes) mounted there; Disk: a
    /// directory (`size_limit` is reported as usage later, not enforced here).
    fn empty_dir(
        &self,
        pod: &str,
        name: &str,
        medium: Medium,
        size_limit: Option<u64>,
    ) -> Result<PathBuf>;
    /// Write the files of a projected volume and return its host directory and whether the
    /// content changed. Relative paths only (nested directories allowed; no `..`, no
    /// absolute path, no component starting with `..`), at most
    /// [`crate::volumes::MAX_PROJECTED_FILES`] files and
    /// [`crate::volumes::MAX_PROJECTED_BYTES`] bytes. Updates are atomic the way the kubelet
    /// makes them: the files live in a hidden version directory `..<n>`, the symlink
    /// `..data` points at it and is swapped with rename(2), and each top-level entry is a
    /// symlink `name -> ..data/name`. Writing identical content again swaps nothing.
    fn project(
        &self,
        pod: &str,
        name: &str,
        files: &std::collections::BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)>;
    /// [`Volumes::project`] into a tmpfs mounted on the volume's directory (nosuid, nodev),
    /// for Secrets: as the kubelet keeps them, their content never reaches the node's disk.
    /// The tmpfs goes with [`Volumes::remove_pod_volumes`]. A directory an earlier
    /// [`Volumes::project`] wrote on disk stays on disk (containers have it bound).
    fn project_in_memory(
        &self,
        pod: &str,
        name: &str,
        files: &std::collections::BTreeMap<String, ProjectedFile>,
    ) -> Result<(PathBuf, bool)>;
    /// Check or create a hostPath per its kind and return it (the caller enforces the
    /// allowlist).
    fn host_path(&self, path: &Path, kind: HostPathKind) -> Result<PathBuf>;
    /// Remove every volume of the pod (unmounting any tmpfs first). Idempotent.
    fn remove_pod_volumes(&self, pod: &str) -> Result<()>;
    /// Pod ids that have volumes on disk, sorted (for garbage collection after a restart).
    fn pods_with_volumes(&self) -> Result<Vec<String>>;
    /// Create (idempotent) the node-local persistent volume `name` (mode 0777) and return
    /// its directory; it outlives the pods that use it.
    fn local_volume(&self, name: &str) -> Result<PathBuf>;
    /// The node-local persistent volumes on disk, sorted.
    fn local_volumes(&self) -> Result<Vec<String>>;
    /// Remove a node-local persistent volume with its data. Idempotent.
    fn remove_local_volume(&self, name: &str) -> Result<()>;
}

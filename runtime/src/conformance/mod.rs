//! One conformance suite for every [`ContainerRuntime`] + [`PodNetwork`] implementation.
//!
//! Workloads are [`Probe`]s: busybox shell commands with a fixed meaning. The Linux runtime
//! runs them for real; the fake interprets the same vocabulary from the spec it was given
//! (hostname from the pod, capabilities from the security context, limits from resources).
//! Every case asserts only what is observable through the traits: logs, exit codes, reasons,
//! exec output, timings of a stop, what `recover()` finds and what is left afterwards.
//!
//! An implementation joins by providing a [`Harness`] and invoking [`conformance_suite!`]; a
//! [`crate::traits::ServiceProxy`] by providing a [`ProxyHarness`] and invoking
//! [`proxy_conformance_suite!`](crate::proxy_conformance_suite).

use crate::spec::{ContainerSpec, PodSpec};
use crate::traits::{ContainerRuntime, PodNetwork, Volumes};

mod cases;
mod network;
mod probe;
mod proxy;
mod volumes;

pub use cases::*;
pub use network::*;
pub use probe::{Probe, DEFAULT_CAPEFF};
pub use proxy::*;
pub use volumes::*;

/// What a test run leaves behind; equal before and after every case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaks {
    /// Mounts referring to the data dir.
    pub mounts: usize,
    /// Cgroups under the runtime's parent.
    pub cgroups: usize,
    /// veths on the pod bridge.
    pub veths: usize,
    /// Processes belonging to the runtime (shims, containers).
    pub processes: usize,
    /// Pod state directories.
    pub pod_dirs: usize,
    /// Pods with volume directories.
    pub volumes: usize,
}

/// What an implementation provides to the suite.
pub trait Harness {
    /// The runtime under test (the current driver instance).
    fn runtime(&self) -> &dyn ContainerRuntime;
    /// The pod network under test.
    fn network(&self) -> &dyn PodNetwork;
    /// The volumes under test.
    fn volumes(&self) -> &dyn Volumes;
    /// Two disjoint pod CIDRs (at least /29) not routed on the host, for attach.
    fn pod_cidrs(&self) -> [ipnet::Ipv4Net; 2];
    /// A busybox image reference.
    fn image(&self) -> String;
    /// Create `pod` and start `ctr` from a separate driver that is then killed with SIGKILL,
    /// and make `runtime()` a fresh driver instance.
    fn run_in_killed_driver(&mut self, pod: &PodSpec, ctr: &ContainerSpec) -> Result<(), String>;
    /// Count what could leak.
    fn leaks(&self) -> Leaks;
}

/// Outcome of one case.
pub type CaseResult = Result<(), String>;

/// One conformance case.
pub type Case = fn(&mut dyn Harness) -> CaseResult;

/// Every case, by name.
pub const CASES: [(&str, Case); 13] = [
    ("isolation", isolation),
    ("exit_codes_and_logs", exit_codes_and_logs),
    ("memory_limit_oom", memory_limit_oom),
    ("pids_limit", pids_limit),
    ("exec", exec),
    ("stop_grace", stop_grace),
    ("recover_after_kill", recover_after_kill),
    ("removal_leaves_nothing", removal_leaves_nothing),
    ("two_pods_network", two_pods_network),
    ("assigned_addresses", assigned_addresses),
    ("volume_mounts", volume_mounts),
    ("projected_update_is_atomic", projected_update_is_atomic),
    ("memory_empty_dir_and_removal", memory_empty_dir_and_removal),
];

/// Run one case on a fresh harness; on failure clean up and panic with the message; on
/// success, check nothing leaked.
pub fn run_case<H: Harness>(mut h: H, case: fn(&mut dyn Harness) -> CaseResult) {
    let before = h.leaks();
    let res = case(&mut h);
    if res.is_err() {
        if let Ok(pods) = h.runtime().list() {
            for p in pods {
                let _ = h.network().detach(&p.id);
                let _ = h.runtime().remove_pod(&p.id);
            }
        }
        if let Ok(pods) = h.volumes().pods_with_volumes() {
            for p in pods {
                let _ = h.volumes().remove_pod_volumes(&p);
            }
        }
    }
    let after = h.leaks();
    if let Err(e) = res {
        panic!("conformance case failed: {e}");
    }
    assert_eq!(before, after, "resources leaked by the case");
}

/// Generate one `#[test]` per case. `$make` is an expression returning `Option<impl
/// Harness>`; `None` means skipped (allowed only when the environment says so).
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        $crate::conformance_suite!(@case $make, isolation);
        $crate::conformance_suite!(@case $make, exit_codes_and_logs);
        $crate::conformance_suite!(@case $make, memory_limit_oom);
        $crate::conformance_suite!(@case $make, pids_limit);
        $crate::conformance_suite!(@case $make, exec);
        $crate::conformance_suite!(@case $make, stop_grace);
        $crate::conformance_suite!(@case $make, recover_after_kill);
        $crate::conformance_suite!(@case $make, removal_leaves_nothing);
        $crate::conformance_suite!(@case $make, two_pods_network);
        $crate::conformance_suite!(@case $make, assigned_addresses);
        $crate::conformance_suite!(@case $make, volume_mounts);
        $crate::conformance_suite!(@case $make, projected_update_is_atomic);
        $crate::conformance_suite!(@case $make, memory_empty_dir_and_removal);
    };
    (@case $make:expr, $name:ident) => {
        #[test]
        fn $name() {
            if let Some(h) = $make {
                $crate::conformance::run_case(h, $crate::conformance::$name);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_round_trip() {
        for p in [
            Probe::Report,
            Probe::Exit(0),
            Probe::Exit(42),
            Probe::Sleeper,
            Probe::TermTrap,
            Probe::Ticker,
            Probe::MemHog,
            Probe::ForkLoop,
            Probe::HttpServe,
            Probe::ExecTriple,
            Probe::Hostname,
            Probe::Wget("10.1.2.3".into()),
            Probe::Ping("10.1.2.3".into()),
            Probe::Cat("/v/a".into()),
            Probe::Write("/v/x".into()),
            Probe::Snapshot("/v".into()),
            Probe::MountOf("/v".into()),
        ] {
            assert_eq!(Probe::parse(&p.argv()), Some(p.clone()), "{p:?}");
        }
        assert_eq!(Probe::parse(&["ls".to_string()]), None);
    }
}

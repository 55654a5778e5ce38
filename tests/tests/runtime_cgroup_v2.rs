//! The runtime conformance suite on cgroup v2.
//!
//! This machine (and CI) runs cgroup v1 in a hybrid layout, while most users' hosts run the
//! unified v2 hierarchy. So the one host-side test here boots a QEMU guest with cgroup2 on
//! `/sys/fs/cgroup` and every controller, and runs this same binary inside it: the suite's
//! cases, generated below, do their work only in the guest (on the host they are the VM test's
//! payload, and return at once). Needs root, `qemu-system-x86` and `linux-image-amd64`
//! (`.ci/run` installs them); skipped only with KOMMIT_SKIP_VM=1 or KOMMIT_SKIP_PRIVILEGED=1.

use kommit_tests::runtime_support::{skip_privileged, LinuxHarness};
use kommit_tests::vm;
use std::time::Duration;

const HELPER: &str = env!("CARGO_BIN_EXE_kommit-runtime-helper");
/// The guest runs the whole suite under software emulation; this bounds a hung guest.
const GUEST_TIMEOUT: Duration = Duration::from_secs(900);

/// The Linux harness, inside the guest only.
fn guest_harness() -> Option<LinuxHarness> {
    if !vm::in_guest() {
        return None;
    }
    LinuxHarness::new(std::path::Path::new(HELPER))
}

kommit_runtime::conformance_suite!(guest_harness());

/// In the guest: the runtime must see the unified hierarchy with the controllers it uses, so
/// the cases above exercise the v2 code paths, not a fallback.
#[test]
fn guest_layout_is_cgroup_v2() {
    if !vm::in_guest() {
        return;
    }
    let layout = kommit_runtime::linux::cgroup::Layout::detect().expect("cgroup layout");
    assert!(layout.is_v2(), "guest layout: {layout:?}");
    assert_eq!(
        layout.missing_controllers(),
        Vec::<&str>::new(),
        "{layout:?}"
    );
}

#[test]
fn conformance_suite_passes_on_cgroup_v2_in_a_vm() {
    if vm::in_guest()
        || skip_privileged("cgroup v2 conformance in a VM")
        || vm::skip_vm("cgroup v2 conformance in a VM")
    {
        return;
    }
    let exe = std::env::current_exe().expect("current exe");
    let command = vec![
        exe.to_string_lossy().into_owned(),
        "--test-threads=1".into(),
        "--color=never".into(),
        "--skip".into(),
        "conformance_suite_passes_on_cgroup_v2_in_a_vm".into(),
    ];
    let run = vm::run_in_guest(
        &command,
        &[(vm::GUEST_ENV, "1"), ("RUST_BACKTRACE", "1")],
        GUEST_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("running the suite in a cgroup v2 guest: {e}"));
    eprintln!("guest run took {:?}", run.elapsed);
    assert_eq!(
        run.exit,
        Some(0),
        "the suite failed in the cgroup v2 guest; console:\n{}",
        run.console
    );
    // Every case ran in the guest: 13 conformance cases plus the layout check.
    assert!(
        run.console.contains("test result: ok. 14 passed; 0 failed"),
        "console:\n{}",
        run.console
    );
}

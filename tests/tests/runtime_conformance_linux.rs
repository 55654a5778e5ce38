//! The runtime conformance suite against the Linux runtime (root; skipped only with
//! KOMMIT_SKIP_PRIVILEGED=1).
use kommit_tests::runtime_support::LinuxHarness;

kommit_runtime::conformance_suite!(LinuxHarness::new(std::path::Path::new(env!(
    "CARGO_BIN_EXE_kommit-runtime-helper"
))));

//! The runtime conformance suite against the in-memory fake.
use kommit_tests::runtime_support::FakeHarness;

kommit_runtime::conformance_suite!(FakeHarness::new());

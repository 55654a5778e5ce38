//! Seeded fault simulation of the consensus layer (see `kommit_tests::sim::raft_sim`).
//! `KOMMIT_SIM_SEEDS=N` runs N seeds (default 200); `KOMMIT_SIM_SEED=S` runs only seed S.

use kommit_tests::sim::raft_sim::{run_seed_blocking, SimConfig};

#[test]
fn seeded_fault_simulation_keeps_raft_invariants() {
    let seeds: Vec<u64> = match std::env::var("KOMMIT_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("KOMMIT_SIM_SEED is a number")],
        Err(_) => {
            let n: u64 = std::env::var("KOMMIT_SIM_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            (0..n).collect()
        }
    };
    let mut failures = Vec::new();
    let mut total = kommit_tests::sim::raft_sim::SimStats::default();
    let many = seeds.len() >= 20;
    for seed in seeds {
        let nodes = if seed % 4 == 3 { 5 } else { 3 };
        let cfg = SimConfig {
            nodes,
            ..SimConfig::default()
        };
        match run_seed_blocking(seed, cfg) {
            Ok(st) => {
                total.acked += st.acked;
                total.terms += st.terms;
                total.snapshots += st.snapshots;
                total.applied += st.applied;
            }
            Err(e) => {
                eprintln!(
                "seed {seed} failed: {e}\n  reproduce: KOMMIT_SIM_SEED={seed} cargo test -p kommit-tests --test consensus_sim"
            );
                failures.push(seed);
            }
        }
    }
    eprintln!("simulation totals: {total:?}");
    // The runs must have exercised the system, not idled.
    if many {
        assert!(
            total.acked > 0 && total.terms > 0 && total.snapshots > 0,
            "{total:?}"
        );
    }
    assert!(failures.is_empty(), "failing seeds: {failures:?}");
}

//! The `kommit-bench schedule` body, buildable from this crate alone so the benchmark can run
//! in release without compiling the daemon's dependencies:
//! `cargo run --release -p kommit-reconcilers --example schedule_bench`.

#[path = "../../tests/src/bench/schedule.rs"]
mod schedule;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    schedule::main(&args)
}

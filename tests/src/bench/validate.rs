//! `kommit-bench validate`: load and validate 1,000 generated manifests of mixed kinds, on
//! one core. The first pass compiles the schemas and is reported apart.

use std::time::Instant;

/// Runs the benchmark.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let n: usize = match args.first() {
        Some(s) => s.parse()?,
        None => 1000,
    };
    let tree = crate::gen::mixed_tree(n);
    let bytes: usize = tree
        .files
        .iter()
        .map(|f| match &f.content {
            kommit_schemas::SourceContent::Bytes(b) => b.len(),
            _ => 0,
        })
        .sum();
    let limits = kommit_schemas::Limits::default();
    let start = Instant::now();
    let state = kommit_schemas::validate(&tree, &limits)
        .map_err(|d| anyhow::anyhow!("generated tree is invalid: {}", d[0]))?;
    let first_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let s =
            kommit_schemas::validate(&tree, &limits).map_err(|d| anyhow::anyhow!("{}", d[0]))?;
        samples.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            s.digest() == state.digest(),
            "validation is not deterministic"
        );
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    println!(
        "validated {n} manifests ({} KiB, {} objects): first pass {first_ms:.1} ms (includes schema compilation), median of 5 warm passes {median:.1} ms, min {:.1} ms",
        bytes / 1024,
        state.object_ids().len(),
        samples[0]
    );
    println!("RESULT validate manifests={n} ms={median:.1}");
    Ok(())
}

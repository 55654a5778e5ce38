//! `kommit-bench <name> [args]`: one subcommand per benchmark; each ends with a
//! `RESULT <name> key=value ...` line.

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest = args.get(1..).unwrap_or(&[]);
    match args.first().map(String::as_str) {
        Some("schedule") => kommit_tests::bench::schedule::main(rest),
        other => anyhow::bail!("unknown benchmark {other:?}; available: schedule"),
    }
}

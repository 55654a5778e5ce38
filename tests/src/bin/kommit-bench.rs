//! `kommit-bench <name>`: one subcommand per benchmark; bodies live in `kommit_tests::bench`.

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        // The runtime re-executes this binary as its helper (pod shim, container init).
        Some("shim") => std::process::exit(kommit_runtime::helper::helper_main(&args[2..])),
        Some("runtime") => kommit_tests::bench::runtime::main(&args[2..]),
        other => Err(anyhow::anyhow!(
            "unknown benchmark {other:?}; available: runtime"
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kommit-bench: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

//! `kommit-bench <name>`: benchmarks. Each prints what it measured and ends with one line
//! `RESULT <name> key=value ...`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!("usage: kommit-bench <validate> [options]");
        return ExitCode::from(2);
    };
    let result = match name.as_str() {
        "validate" => kommit_tests::bench::validate::run(&args[1..]),
        other => {
            eprintln!("kommit-bench: unknown benchmark `{other}` (known: validate)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kommit-bench {name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

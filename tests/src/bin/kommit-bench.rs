//! `kommit-bench <name>`: benchmarks. Each prints what it measured and ends with one line
//! `RESULT <name> key=value ...`. Bodies live in `kommit_tests::bench`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(name) = args.first() else {
        eprintln!(
            "usage: kommit-bench <validate|schedule|runtime|push-to-running|cluster-push-to-running|node-loss|services|dns|web> [options]"
        );
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match name.as_str() {
        // The runtime re-executes this binary as its helper (pod shim, container init).
        "shim" => std::process::exit(kommit_runtime::helper::helper_main(rest)),
        "validate" => kommit_tests::bench::validate::run(rest),
        "schedule" => kommit_tests::bench::schedule::main(rest),
        "runtime" => kommit_tests::bench::runtime::main(rest),
        "push-to-running" => kommit_tests::bench::push::main(rest),
        "cluster-push-to-running" => kommit_tests::bench::cluster::main(rest),
        "node-loss" => kommit_tests::bench::node_loss::main(rest),
        "services" => kommit_tests::bench::services::main(rest),
        "dns" => kommit_tests::bench::dns::main(rest),
        "web" => kommit_tests::bench::web::main(rest),
        other => {
            eprintln!(
                "kommit-bench: unknown benchmark `{other}` (known: validate, schedule, runtime, push-to-running, cluster-push-to-running, node-loss, services, dns, web)"
            );
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

//! `kommit ctr` and `kommit shim` with the same modules the real `kommit` binary uses, built
//! by cargo for the tests crate (cargo cannot hand one package's binary to another's tests).

use clap::Parser;
use kommit_daemon::cli;

#[derive(Parser)]
#[command(name = "kommit")]
enum Cli {
    /// Low-level container operations.
    Ctr(Box<cli::ctr::Args>),
}

fn main() -> std::process::ExitCode {
    // `shim ...` is the runtime's re-exec entry, handled before the parser as in `kommit`.
    kommit_runtime::helper::dispatch_if_shim();
    let result = match Cli::parse() {
        Cli::Ctr(a) => cli::ctr::run(*a),
    };
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("kommit: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

//! The re-exec entry point: `<binary> shim <mode> ...`.
//!
//! The `kommit` binary, the test helper and the benchmark all route their `shim` argument
//! here. Every mode runs in a freshly exec'd, single-threaded process.

use std::path::Path;

/// Run a helper mode; `args` are the arguments after `shim`. Returns the exit code.
pub fn helper_main(args: &[String]) -> i32 {
    match args {
        [mode, dir, host] if mode == "pod" => crate::linux::shim::pod_main(Path::new(dir), host),
        [mode, dir, name, sep, cmd @ ..] if mode == "exec" && sep == "--" && !cmd.is_empty() => {
            crate::linux::init::exec_main(Path::new(dir), name, cmd)
        }
        _ => {
            eprintln!("usage: shim pod POD_DIR HOSTNAME | shim exec POD_DIR NAME -- CMD...");
            2
        }
    }
}

/// For binaries whose `main` only needs to hand `shim ...` to the runtime: if argv[1] is
/// `shim`, run the helper and exit.
pub fn dispatch_if_shim() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("shim") {
        std::process::exit(helper_main(&args[2..]));
    }
}

//! The runtime's re-exec helper for tests: `kommit-runtime-helper shim ...` behaves like
//! `kommit shim ...`, and `kommit-runtime-helper drive ...` is a throwaway driver process the
//! recover test kills with SIGKILL.

fn main() {
    kommit_runtime::helper::dispatch_if_shim();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("drive") {
        std::process::exit(kommit_tests::runtime_support::drive_main(&args[2..]));
    }
    eprintln!("usage: kommit-runtime-helper shim ... | drive ...");
    std::process::exit(2);
}

//! `kommit shim ...` (hidden): the runtime's re-exec entry (pod shim, exec).

/// Arguments of `kommit shim`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Mode and its arguments (`pod DIR HOST`, `exec DIR NAME -- CMD...`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the helper and returns its exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let code = kommit_runtime::helper::helper_main(&args.args);
    Ok(u8::try_from(code).unwrap_or(1))
}

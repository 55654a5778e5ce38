//! `kommit validate [PATH]`.

/// Arguments of `kommit validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A repository root, a directory or a single file.
    #[arg(default_value = ".")]
    pub path: std::path::PathBuf,
}

/// Runs the command and returns its exit code.
pub fn run(_args: Args) -> anyhow::Result<u8> {
    anyhow::bail!("not yet wired")
}

//! One module per `kommit` subcommand. Each exposes a clap `Args` and
//! `run(args) -> anyhow::Result<u8>` returning the process exit code.

pub mod ctr;
pub mod log;
pub mod plan;
pub mod shim;
pub mod validate;

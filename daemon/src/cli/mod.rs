//! One module per `kommit` subcommand. Each exposes a clap `Args` and
//! `run(args) -> anyhow::Result<u8>` returning the process exit code.

pub mod daemon;
pub mod node;
pub mod token;
pub mod validate;

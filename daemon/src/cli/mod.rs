//! One module per `kommit` subcommand. Each exposes a clap `Args` and
//! `run(args) -> anyhow::Result<u8>` returning the process exit code.

pub mod ctr;
pub mod daemon;
pub mod describe;
pub mod get;
pub mod kube;
pub mod kube_workloads;
pub mod log;
pub mod node;
pub mod plan;
pub mod pods;
pub mod secrets;
pub mod status;
pub mod token;
pub mod up;
pub mod validate;
pub mod watch;

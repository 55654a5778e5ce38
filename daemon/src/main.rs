//! `kommit`: the node daemon and the operator/auditor/CI command line.
//!
//! Every subcommand lives in its own module under `cli/`; this file only parses the
//! command line and maps the outcome to an exit code.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use kommit_daemon::cli;

#[derive(Parser)]
#[command(
    name = "kommit",
    version,
    about = "A Kubernetes-shaped cluster where Git is the API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a desired-state repository, directory or file.
    Validate(cli::validate::Args),
    /// Show recent commits with their kommit status notes (auditor view).
    Log(cli::log::Args),
    /// Show where a desired-state repository's pods would land on a node inventory.
    Plan(cli::plan::Args),
    /// Low-level container operations on this node (like containerd's ctr).
    Ctr(cli::ctr::Args),
    /// Run a cluster node (consensus, liveness, Git sync, local API).
    Daemon(Box<cli::daemon::Args>),
    /// Run a one-node development cluster on a directory or repository.
    Up(cli::up::Args),
    /// Show the cluster as this node holds it: commit, nodes, pods.
    Status(cli::status::Args),
    /// List pods, deployments, services, nodes or events, as kubectl does.
    Get(cli::get::Args),
    /// Show one pod, node or Deployment in detail, with its events.
    Describe(cli::describe::DescribeArgs),
    /// Print a container's log (this node's pods).
    Logs(cli::pods::LogsArgs),
    /// Run a command in a container (this node's pods).
    Exec(cli::pods::ExecArgs),
    /// Manage join tokens.
    #[command(subcommand)]
    Token(cli::token::Args),
    /// Operator actions on nodes, recorded in the Raft log.
    #[command(subcommand)]
    Node(cli::node::Args),
    /// SOPS-encrypted Secrets: encrypt and decrypt with age.
    #[command(subcommand)]
    Secrets(cli::secrets::Args),
}

fn main() -> ExitCode {
    // Before any thread exists (see kommit_runtime::alloc).
    kommit_runtime::alloc::limit_malloc_arenas();
    // The runtime re-executes this binary as its pod shim and `exec` helper (`kommit shim
    // ...`, hidden): one per pod start, so it skips the CLI parser and the TLS setup.
    kommit_runtime::helper::dispatch_if_shim();
    // Before any thread or HTTP client exists (see kommit_runtime::tls).
    kommit_runtime::tls::install_crypto_provider();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout with exit 0, and usage errors with exit 2.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Log(args) => cli::log::run(args),
        Command::Plan(args) => cli::plan::run(args),
        Command::Ctr(args) => cli::ctr::run(args),
        Command::Daemon(args) => cli::daemon::run(*args),
        Command::Up(args) => cli::up::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::Get(args) => cli::get::run(args),
        Command::Describe(args) => cli::describe::describe(args),
        Command::Logs(args) => cli::pods::logs(args),
        Command::Exec(args) => cli::pods::exec(args),
        Command::Token(args) => cli::token::run(args),
        Command::Node(args) => cli::node::run(args),
        Command::Secrets(args) => cli::secrets::run(args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("kommit: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

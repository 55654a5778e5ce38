//! `kommit node drain|uncordon|remove NAME`: the only imperative commands,
//! recorded as Raft entries through the local API socket.

use crate::consensus::local::{local_client, NodeName};
use anyhow::Context;

/// `kommit node ...`.
#[derive(clap::Subcommand, Debug)]
pub enum Args {
    /// Mark a node drained: no new pods, running ones move away.
    Drain {
        /// Node name.
        name: String,
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
    },
    /// Let a drained node take pods again (as `kubectl uncordon`).
    Uncordon {
        /// Node name.
        name: String,
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
    },
    /// Remove a node from the cluster and the Raft membership.
    Remove {
        /// Node name.
        name: String,
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
    },
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let (path, name, data_dir) = match args {
        Args::Drain { name, data_dir } => ("/node/drain", name, data_dir),
        Args::Uncordon { name, data_dir } => ("/node/uncordon", name, data_dir),
        Args::Remove { name, data_dir } => ("/node/remove", name, data_dir),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start runtime")?;
    rt.block_on(async {
        let client = local_client(&data_dir).context("local api client")?;
        let resp = client
            .post(format!("http://localhost{path}"))
            .json(&NodeName { name: name.clone() })
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the daemon at {}",
                    data_dir.join(crate::consensus::local::SOCKET).display()
                )
            })?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        if ok {
            println!("{text}");
            Ok(0)
        } else {
            eprintln!("kommit: error: {text}");
            Ok(1)
        }
    })
}

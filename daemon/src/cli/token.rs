//! `kommit token create`: prints a join token for this node's cluster CA.

use crate::consensus::now_ms;
use crate::consensus::tls::JoinToken;
use anyhow::Context;

/// `kommit token ...`.
#[derive(clap::Subcommand, Debug)]
pub enum Args {
    /// Create a join token (stored hashed under the data dir, printed once).
    Create {
        /// The node's data dir (must hold the cluster CA key: any voter does).
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
        /// Hours until the token expires.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
    },
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args {
        Args::Create {
            data_dir,
            ttl_hours,
        } => {
            let ca_path = data_dir.join("tls/ca.pem");
            let ca = std::fs::read_to_string(&ca_path)
                .with_context(|| format!("cannot read cluster CA {}", ca_path.display()))?;
            if !data_dir.join("tls/ca.key").exists() {
                anyhow::bail!(
                    "{} holds no CA key; create tokens on a voter (the leader hands the key to every voter)",
                    data_dir.display()
                );
            }
            let bytes: [u8; 22] = rand::random();
            let token = JoinToken::create(
                &ca,
                &data_dir.join("tokens"),
                bytes,
                now_ms() + ttl_hours.saturating_mul(3_600_000),
            )?;
            println!("{token}");
            Ok(0)
        }
    }
}

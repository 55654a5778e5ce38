//! `kommit token create|delete`: join tokens, kept (hashed) in the replicated state through
//! the local daemon, so any voter admits with them, whoever made them.

use crate::consensus::local::{local_client, TokenCreate, TokenId, SOCKET};
use anyhow::Context;

/// `kommit token ...`.
#[derive(clap::Subcommand, Debug)]
pub enum Args {
    /// Create a join token through the running daemon (its SHA-256 goes into the replicated
    /// state; the token is printed once).
    Create {
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
        /// Hours until the token expires.
        #[arg(long, default_value_t = 24)]
        ttl_hours: u64,
        /// Joins the token admits (1 for single use); any number until it expires if absent.
        #[arg(long)]
        uses: Option<u32>,
    },
    /// Withdraw a join token before it expires.
    Delete {
        /// The token id: the third dot-separated field of the token.
        id: String,
        /// The local daemon's data dir.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: std::path::PathBuf,
    },
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<u8> {
    let (data_dir, path, body) = match args {
        Args::Create {
            data_dir,
            ttl_hours,
            uses,
        } => {
            let body = serde_json::to_value(TokenCreate {
                ttl_ms: ttl_hours.saturating_mul(3_600_000),
                uses,
            })?;
            (data_dir, "/token/create", body)
        }
        Args::Delete { id, data_dir } => (
            data_dir,
            "/token/delete",
            serde_json::to_value(TokenId { id })?,
        ),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start runtime")?;
    rt.block_on(async {
        let resp = local_client(&data_dir)
            .context("local api client")?
            .post(format!("http://localhost{path}"))
            .json(&body)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the daemon at {}",
                    data_dir.join(SOCKET).display()
                )
            })?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        if !ok {
            anyhow::bail!("{}", text.trim());
        }
        println!("{}", text.trim());
        Ok(0)
    })
}

//! `kommit secrets ...`: SOPS files for users without the `sops` tool. `encrypt` writes a
//! file SOPS reads (and kommit's nodes decrypt), `decrypt` reads one with an age identity.

use anyhow::Context;
use kommit_schemas::tree::{to_yaml, Tree};
use kommit_schemas::yaml::{parse_trees, YamlBudget};
use kommit_sops::EncryptOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Largest file `encrypt` and `decrypt` read, as `kommit validate`'s default.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `kommit secrets ...`.
#[derive(clap::Subcommand, Debug)]
pub enum Args {
    /// Print the cluster's current age recipient (what Secrets are encrypted to); add an
    /// identity to the cluster's keyring with `--import` or `--rotate`.
    Key {
        /// The node's data dir (every node holds the cluster's keyring).
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: PathBuf,
        /// Print every recipient of the keyring, the current one first.
        #[arg(long)]
        all: bool,
        /// Add the identities of an `age-keygen` file (the running daemons pass them on to
        /// every node); the newest identity of the keyring is the current one.
        #[arg(long, value_name = "FILE", conflicts_with = "rotate")]
        import: Option<PathBuf>,
        /// Add a new identity, which becomes the current one; the old ones keep decrypting.
        #[arg(long)]
        rotate: bool,
    },
    /// Encrypt a manifest (a Secret's `data` and `stringData`) with SOPS to age recipients:
    /// the cluster's (when `--data-dir` holds its identity) and any given.
    Encrypt {
        /// The plaintext YAML file (one document).
        file: PathBuf,
        /// An age recipient (`age1...`) to encrypt the data key to; repeat for several.
        #[arg(long = "recipient", short = 'r')]
        recipients: Vec<String>,
        /// A node's data dir: its cluster age identity's recipient is added.
        #[arg(long, default_value = "/var/lib/kommit")]
        data_dir: PathBuf,
        /// Keys whose values are encrypted (the SOPS `encrypted_regex`).
        #[arg(long, default_value = "^(data|stringData)$")]
        encrypted_regex: String,
        /// Write here instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Decrypt a SOPS file with an age identity file and print the plaintext.
    Decrypt {
        /// The SOPS-encrypted YAML file.
        file: PathBuf,
        /// An age identity file (`AGE-SECRET-KEY-1...` lines).
        #[arg(long, short = 'i')]
        identity: PathBuf,
    },
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<u8> {
    match args {
        Args::Key {
            data_dir,
            all,
            import,
            rotate,
        } => {
            let added = if let Some(file) = import {
                let text = read_bounded(&file)?;
                let ring = kommit_sops::Keyring::parse(&text)
                    .with_context(|| file.display().to_string())?;
                Some(crate::cluster_key::merge(&data_dir, &ring)?.1)
            } else if rotate {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .context("the clock is before 1970")?
                    .as_secs();
                let now = kommit_schemas::sops::format_rfc3339(i64::try_from(now).unwrap_or(0));
                Some(crate::cluster_key::merge(&data_dir, &kommit_sops::Keyring::generate(&now))?.1)
            } else {
                None
            };
            if let Some(n) = added {
                eprintln!(
                    "{n} identities added to {}",
                    crate::cluster_key::path(&data_dir).display()
                );
            }
            if all {
                let ring = crate::cluster_key::load(&data_dir)?.with_context(|| {
                    format!("no cluster age keyring under {}", data_dir.display())
                })?;
                for r in ring.recipients() {
                    println!("{r}");
                }
            } else {
                println!("{}", crate::cluster_key::recipient(&data_dir)?);
            }
            Ok(0)
        }
        Args::Encrypt {
            file,
            mut recipients,
            data_dir,
            encrypted_regex,
            output,
        } => {
            if crate::cluster_key::path(&data_dir).exists() {
                recipients.insert(0, crate::cluster_key::recipient(&data_dir)?);
            }
            if recipients.is_empty() {
                anyhow::bail!(
                    "no recipient: give --recipient age1... (`kommit secrets key` on a node prints the cluster's) or --data-dir of a node"
                );
            }
            recipients.dedup();
            let text = read_bounded(&file)?;
            let mut docs = parse_trees(&text, &YamlBudget::default()).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}:{}: {}",
                    file.display(),
                    e.pos.line,
                    e.pos.col,
                    e.message
                )
            })?;
            if docs.len() != 1 {
                anyhow::bail!(
                    "{}: holds {} YAML documents; SOPS encrypts one (put the Secret in a file of its own)",
                    file.display(),
                    docs.len()
                );
            }
            let doc: Tree = docs.remove(0);
            let recipients = recipients
                .iter()
                .map(|r| kommit_sops::parse_recipient(r))
                .collect::<Result<Vec<_>, _>>()?;
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
            let stanzas = recipients
                .iter()
                .map(|r| kommit_sops::wrap_data_key(&key, r))
                .collect::<Result<Vec<_>, _>>()?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the clock is before 1970")?
                .as_secs();
            let options = EncryptOptions {
                encrypted_regex: Some(encrypted_regex).filter(|r| !r.is_empty()),
                ..EncryptOptions::default()
            };
            let tree = kommit_sops::encrypt(
                doc,
                &options,
                &key,
                stanzas,
                i64::try_from(now).context("the clock is past year 292 billion")?,
                &mut rand::rngs::OsRng,
            )
            .with_context(|| file.display().to_string())?;
            let yaml = to_yaml(&tree).map_err(|e| anyhow::anyhow!("writing YAML: {e}"))?;
            match output {
                Some(out) => std::fs::write(&out, yaml)
                    .with_context(|| format!("writing {}", out.display()))?,
                None => std::io::stdout().write_all(yaml.as_bytes())?,
            }
            Ok(0)
        }
        Args::Decrypt { file, identity } => {
            let ids = read_bounded(&identity)?;
            let ids = kommit_sops::parse_identities(&ids)
                .with_context(|| identity.display().to_string())?;
            let text = read_bounded(&file)?;
            let plain =
                kommit_sops::decrypt(&text, &ids).with_context(|| file.display().to_string())?;
            let yaml = to_yaml(&plain.tree).map_err(|e| anyhow::anyhow!("writing YAML: {e}"))?;
            std::io::stdout().write_all(yaml.as_bytes())?;
            Ok(0)
        }
    }
}

fn read_bounded(path: &Path) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.len() > MAX_FILE_BYTES {
        anyhow::bail!(
            "{}: {} bytes, over the limit of {MAX_FILE_BYTES}",
            path.display(),
            meta.len()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

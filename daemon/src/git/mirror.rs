//! The bare mirror of the desired-state remote, kept with gix under the data dir.
//!
//! Only two refs are ever fetched: the configured branch (into `refs/heads/<branch>`) and
//! `refs/notes/kommit`. The status writer additionally fetches `kommit/status` when it needs to
//! merge. Credentials come from the node config and are handed to gix by callback (https) or
//! through `core.sshCommand` (ssh); the daemon never prompts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;

/// How to authenticate against the remote.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials (file://, git://, public https).
    #[default]
    None,
    /// An https token, sent as the password of user `x-access-token`.
    Token(String),
    /// https basic auth.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
    /// An ssh private key for ssh:// remotes.
    SshKey {
        /// The private key file.
        key: PathBuf,
        /// A known_hosts file pinning the server's host key; without it, the first key seen
        /// is accepted and remembered in the user's known_hosts.
        known_hosts: Option<PathBuf>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Token(_) => f.write_str("Token(<redacted>)"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::SshKey { key, .. } => write!(f, "SshKey({})", key.display()),
        }
    }
}

impl Credentials {
    /// The https user and password, if any.
    pub fn basic(&self) -> Option<(String, String)> {
        match self {
            Credentials::Token(t) => Some(("x-access-token".into(), t.clone())),
            Credentials::Basic { username, password } => Some((username.clone(), password.clone())),
            _ => None,
        }
    }

    /// The ssh command line that uses the configured key, if any. Paths are single-quoted
    /// for the shell git and gix run it with.
    pub fn ssh_command(&self) -> Option<String> {
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
        match self {
            Credentials::SshKey { key, known_hosts } => {
                let hosts = match known_hosts {
                    Some(k) => format!(
                        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
                        quote(k)
                    ),
                    None => "-o StrictHostKeyChecking=accept-new".to_owned(),
                };
                Some(format!(
                    "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes {hosts}",
                    quote(key)
                ))
            }
            _ => None,
        }
    }
}

/// The remote as configured on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// `file://`, a plain path, `git://`, `ssh://` or `https://`.
    pub url: String,
    /// The desired-state branch (short name, e.g. `main`).
    pub branch: String,
    /// Authentication.
    pub credentials: Credentials,
    /// A PEM file of extra trusted CA certificates for an https remote (a private forge).
    pub ca_file: Option<PathBuf>,
}

impl RemoteConfig {
    /// A remote without credentials or extra CA.
    pub fn new(url: impl Into<String>, branch: impl Into<String>) -> Self {
        RemoteConfig {
            url: url.into(),
            branch: branch.into(),
            credentials: Credentials::None,
            ca_file: None,
        }
    }
}

/// Errors of the mirror.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The mirror directory could not be created or opened.
    #[error("opening mirror {path}: {source}")]
    Open {
        /// The mirror path.
        path: PathBuf,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A fetch failed (remote unreachable, protocol error, bad credentials...).
    #[error("fetching {url}: {source}")]
    Fetch {
        /// The remote url.
        url: String,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A branch name that cannot be a ref.
    #[error("invalid branch name {0:?}")]
    BadBranch(String),
    /// Reading a local ref failed.
    #[error("reading ref {name} in {path}: {source}")]
    Ref {
        /// Ref name.
        name: String,
        /// The mirror path.
        path: PathBuf,
        /// Cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The result of one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchOutcome {
    /// The branch head on the remote (and now in the mirror), `None` if the remote lacks it.
    pub head: Option<ObjectId>,
    /// The remote's `refs/notes/kommit`, if any.
    pub notes: Option<ObjectId>,
}

/// A bare mirror of one remote branch.
#[derive(Clone, Debug)]
pub struct Mirror {
    path: PathBuf,
    remote: RemoteConfig,
}

fn boxed<E: std::error::Error + Send + Sync + 'static>(
    e: E,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(e)
}

/// Whether `name` is acceptable as a branch short name.
pub fn valid_branch(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && gix::validate::reference::name_partial(name.into()).is_ok()
        && !name.starts_with('-')
        && !name.contains("..")
}

impl Mirror {
    /// Opens the mirror at `path`, creating a bare repository there when absent.
    pub fn open(path: impl Into<PathBuf>, remote: RemoteConfig) -> Result<Self, MirrorError> {
        let path = path.into();
        if !valid_branch(&remote.branch) {
            return Err(MirrorError::BadBranch(remote.branch));
        }
        if !path.join("HEAD").exists() {
            std::fs::create_dir_all(&path).map_err(|e| MirrorError::Open {
                path: path.clone(),
                source: boxed(e),
            })?;
            gix::init_bare(&path).map_err(|e| MirrorError::Open {
                path: path.clone(),
                source: boxed(e),
            })?;
        }
        let mirror = Mirror { path, remote };
        mirror.repo()?;
        Ok(mirror)
    }

    /// The mirror's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The remote configuration.
    pub fn remote(&self) -> &RemoteConfig {
        &self.remote
    }

    /// The full name of the mirrored branch.
    pub fn branch_ref(&self) -> String {
        format!("refs/heads/{}", self.remote.branch)
    }

    /// Opens the bare repository, isolated from the host's git configuration.
    pub fn repo(&self) -> Result<gix::Repository, MirrorError> {
        let mut overrides = vec!["protocol.version=2".to_owned()];
        if let Some(cmd) = self.remote.credentials.ssh_command() {
            overrides.push(format!("core.sshCommand={cmd}"));
        }
        gix::open_opts(
            &self.path,
            gix::open::Options::isolated().config_overrides(overrides),
        )
        .map_err(|e| MirrorError::Open {
            path: self.path.clone(),
            source: boxed(e),
        })
    }

    /// Fetches the branch and the notes; blocking.
    pub fn fetch(&self) -> Result<FetchOutcome, MirrorError> {
        let branch = self.branch_ref();
        let remote = self.fetch_refspecs(&[
            format!("+{branch}:{branch}"),
            format!("+{n}:{n}", n = super::NOTES_REF),
        ])?;
        Ok(FetchOutcome {
            head: remote.get(&branch).copied(),
            notes: remote.get(super::NOTES_REF).copied(),
        })
    }

    /// The mirrored branch head, if fetched.
    pub fn head(&self) -> Result<Option<ObjectId>, MirrorError> {
        self.local_ref(&self.branch_ref())
    }

    /// Resolves a local ref of the mirror to an object id.
    pub fn local_ref(&self, name: &str) -> Result<Option<ObjectId>, MirrorError> {
        let repo = self.repo()?;
        let err = |e: Box<dyn std::error::Error + Send + Sync>| MirrorError::Ref {
            name: name.to_owned(),
            path: self.path.clone(),
            source: e,
        };
        match repo.try_find_reference(name).map_err(|e| err(boxed(e)))? {
            None => Ok(None),
            Some(mut r) => Ok(Some(r.peel_to_id().map_err(|e| err(boxed(e)))?.detach())),
        }
    }

    /// The repository's http transport options plus a reqwest client trusting `ca`.
    fn http_options_with_ca(
        &self,
        repo: &gix::Repository,
        ca: &Path,
    ) -> Result<Box<dyn std::any::Any>, Box<dyn std::error::Error + Send + Sync>> {
        use gix::protocol::transport::client::blocking_io::http;
        let pem =
            std::fs::read(ca).map_err(|e| format!("reading CA file {}: {e}", ca.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("parsing CA file {}: {e}", ca.display()))?;
        let mut opts = repo
            .transport_options(self.remote.url.as_str(), None)
            .map_err(boxed)?
            .and_then(|o| o.downcast::<http::Options>().ok())
            .map(|o| *o)
            .unwrap_or_default();
        let backend = http::reqwest::Options {
            configure_client: Some(Box::new(
                move |mut builder: reqwest::blocking::ClientBuilder| {
                    for cert in &certs {
                        builder = builder.add_root_certificate(cert.clone());
                    }
                    Ok(builder)
                },
            )),
            configure_request: None,
        };
        opts.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
        Ok(Box::new(opts))
    }

    /// Fetches `refspecs` (each `+src:dst`) and returns the remote value of every source ref
    /// the remote has. Refs the remote lacks are simply absent from the map.
    pub fn fetch_refspecs(
        &self,
        refspecs: &[String],
    ) -> Result<BTreeMap<String, ObjectId>, MirrorError> {
        let repo = self.repo()?;
        let url = self.remote.url.clone();
        let fetch_err = |e: Box<dyn std::error::Error + Send + Sync>| MirrorError::Fetch {
            url: url.clone(),
            source: e,
        };
        let remote = repo
            .remote_at(url.as_str())
            .map_err(|e| fetch_err(boxed(e)))?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs(
                refspecs.iter().map(String::as_str),
                gix::remote::Direction::Fetch,
            )
            .map_err(|e| fetch_err(boxed(e)))?;
        let basic = self.remote.credentials.basic();
        // gix builds its reqwest client inside `connect`.
        kommit_runtime::tls::install_crypto_provider();
        let conn = remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| fetch_err(boxed(e)))?
            .with_credentials(move |action| {
                use gix::credentials::helper::Action;
                match (action, &basic) {
                    (Action::Get(ctx), Some((username, password))) => {
                        Ok(Some(gix::credentials::protocol::Outcome {
                            identity: gix::sec::identity::Account {
                                username: username.clone(),
                                password: password.clone(),
                                oauth_refresh_token: None,
                            },
                            next: ctx.into(),
                        }))
                    }
                    // Never prompt and never store: a daemon has no terminal.
                    _ => Ok(None),
                }
            });
        let conn = match &self.remote.ca_file {
            None => conn,
            Some(ca) => {
                let opts = self.http_options_with_ca(&repo, ca).map_err(fetch_err)?;
                conn.with_transport_options(opts)
            }
        };
        let interrupt = AtomicBool::new(false);
        let prepare = conn
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| fetch_err(boxed(e)))?;
        if prepare.ref_map().mappings.is_empty() {
            // The remote has none of the refs (empty remote, or no notes/status yet).
            return Ok(BTreeMap::new());
        }
        let outcome = prepare
            .receive(gix::progress::Discard, &interrupt)
            .map_err(|e| fetch_err(boxed(e)))?;
        let mut out = BTreeMap::new();
        for m in &outcome.ref_map.mappings {
            if let (Some(name), Some(id)) = (m.remote.as_name(), m.remote.as_id()) {
                out.insert(name.to_string(), id.to_owned());
            }
        }
        Ok(out)
    }
}

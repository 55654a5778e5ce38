//! The web page's facts from a running node: `kommit_web` renders and serves, this module
//! only wires it to the node. Notes and health come from the functions that write Git
//! (`sync::notes::notes`, `sync::report::report`), so the page and the notes never disagree;
//! subjects and authors from the mirror; pod logs from this node's runtime.

use crate::consensus::node::Shared;
use crate::git::mirror::Mirror;
use crate::git::note::{CommitState, StatusNote};
use crate::sync::SyncState;
use kommit_reconcilers::ClusterState;
use kommit_web::pages::PodLogs;
use kommit_web::timeline::Timeline;
use kommit_web::{ClusterFacts, CommitFacts, CommitMeta, Decision, Facts, ObjectFacts};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Lines of each container's log on a pod's page.
pub const LOG_LINES: usize = 40;

/// The Git side the page reads.
pub struct GitView {
    /// The mirror.
    pub mirror: Mirror,
    /// What the sync loop did last.
    pub sync: watch::Receiver<SyncState>,
}

/// A running node as the page's [`kommit_web::server::Source`].
pub struct NodeSource {
    shared: Arc<Shared<ClusterState>>,
    git: Option<GitView>,
    data_dir: PathBuf,
    /// Subject, author and time by commit (immutable, so cached; `None`: not in the mirror).
    meta: Mutex<BTreeMap<String, Option<CommitMeta>>>,
}

impl NodeSource {
    /// The source of `shared`'s node, with its Git side if it has one.
    pub fn new(shared: Arc<Shared<ClusterState>>, git: Option<GitView>, data_dir: PathBuf) -> Self {
        Self {
            shared,
            git,
            data_dir,
            meta: Mutex::new(BTreeMap::new()),
        }
    }

    fn cluster(&self, s: &ClusterState) -> ClusterFacts {
        let m = self.shared.raft.metrics();
        let m = m.borrow();
        let mem = m.membership_config.membership();
        let name = |id: &u64| -> String {
            let addr = mem.get_node(id).map(|n| n.addr.as_str()).unwrap_or("");
            s.nodes
                .values()
                .find(|n| n.info.address == addr)
                .map_or_else(|| format!("#{id} {addr}"), |n| n.info.name.clone())
        };
        let voters: Vec<u64> = mem.voter_ids().collect();
        let mut c = ClusterFacts {
            node: self.shared.name.clone(),
            role: format!("{:?}", m.state),
            leader: m.current_leader.as_ref().map(name),
            voters: voters.iter().map(name).collect(),
            learners: mem
                .nodes()
                .map(|(id, _)| *id)
                .filter(|id| !voters.contains(id))
                .map(|id| name(&id))
                .collect(),
            term: m.current_term,
            applied: m.last_applied.map_or(0, |l| l.index),
            fenced: self.shared.lease.fenced(),
            ..Default::default()
        };
        if let Some(g) = &self.git {
            let st = g.sync.borrow();
            c.repo = Some(without_userinfo(&st.repo));
            c.branch = Some(st.branch.clone());
            c.head.clone_from(&st.head);
            c.fetch_error.clone_from(&st.fetch_error);
        }
        c
    }

    /// Subjects, authors and times of `commits`, reading the mirror for those not cached.
    fn metas(&self, commits: &[String]) -> BTreeMap<String, CommitMeta> {
        let mut cache = self.meta.lock().unwrap_or_else(|p| p.into_inner());
        let missing: Vec<&String> = commits.iter().filter(|c| !cache.contains_key(*c)).collect();
        if let (false, Some(g)) = (missing.is_empty(), &self.git) {
            if let Ok(repo) = g.mirror.repo() {
                for c in missing {
                    cache.insert(c.clone(), commit_meta(&repo, c));
                }
            }
        }
        if cache.len() > 4 * kommit_reconcilers::HISTORY_LEN {
            cache.retain(|c, _| commits.contains(c));
        }
        commits
            .iter()
            .filter_map(|c| Some((c.clone(), cache.get(c)?.clone()?)))
            .collect()
    }
}

/// `scheme://host/path` of a URL that may carry `user:password@`.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

fn commit_meta(repo: &gix::Repository, commit: &str) -> Option<CommitMeta> {
    use gix::bstr::ByteSlice;
    let id = gix::ObjectId::from_hex(commit.as_bytes()).ok()?;
    let c = repo.find_commit(id).ok()?;
    let subject = c
        .message_raw_sloppy()
        .lines()
        .next()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default();
    let author = c.author().ok()?.name.to_str_lossy().into_owned();
    let time = c.time().ok()?.seconds;
    Some(CommitMeta {
        subject,
        author,
        time,
    })
}

/// The page's facts about each recorded commit, newest decision first: the notes the
/// leader writes (`sync::notes::notes`), with subjects and authors.
pub fn commit_facts(
    state: &ClusterState,
    notes: &BTreeMap<String, StatusNote>,
    metas: &BTreeMap<String, CommitMeta>,
) -> Vec<CommitFacts> {
    state
        .history
        .records()
        .iter()
        .rev()
        .filter_map(|r| notes.get(&r.commit))
        .map(|n| CommitFacts {
            commit: n.commit.clone(),
            decision: match n.state {
                CommitState::Adopted => Decision::Adopted,
                CommitState::Refused => Decision::Refused,
                CommitState::Superseded => Decision::Superseded,
            },
            at: n.at.0,
            by: n.by.clone(),
            superseded_by: n.superseded_by.clone(),
            reason: n.reason.clone(),
            diagnostics: n.diagnostics.clone(),
            acks: n.acks.iter().map(|(k, t)| (k.clone(), t.0)).collect(),
            meta: metas.get(&n.commit).cloned(),
        })
        .collect()
}

/// Each object's health as the status branch holds it (`sync::report::report`).
pub fn object_facts(state: &ClusterState) -> BTreeMap<String, ObjectFacts> {
    let at = crate::git::time::Timestamp(i64::try_from(state.now / 1000).unwrap_or(i64::MAX));
    crate::sync::report::report(state, at)
        .objects
        .into_iter()
        .map(|(k, o)| {
            let health = serde_json::to_value(o.health)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            (
                k,
                ObjectFacts {
                    health,
                    message: o.message,
                    replicas: o.replicas,
                    ready: o.ready_replicas,
                },
            )
        })
        .collect()
}

impl kommit_web::server::Source for NodeSource {
    fn with_state(&self, f: &mut dyn FnMut(&ClusterState)) {
        self.shared.sm.read(|s| f(s));
    }

    fn with_facts(&self, timeline: &Timeline, f: &mut dyn FnMut(&Facts<'_>)) {
        self.shared.sm.read(|s| {
            let cluster = self.cluster(s);
            let notes = crate::sync::notes::notes(s);
            let recorded: Vec<String> = s
                .history
                .records()
                .iter()
                .map(|r| r.commit.clone())
                .collect();
            let metas = self.metas(&recorded);
            let commits = commit_facts(s, &notes, &metas);
            let objects = object_facts(s);
            f(&Facts {
                state: s,
                cluster: &cluster,
                commits: &commits,
                objects: &objects,
                timeline,
                forge: s.desired.config.commit_url.as_deref(),
            });
        });
    }

    fn pod_logs(&self, namespace: &str, name: &str) -> PodLogs {
        let pod = self.shared.sm.read(|s| {
            s.pods
                .get(&format!("{namespace}/{name}"))
                .filter(|p| p.node.as_deref() == Some(self.shared.name.as_str()))
                .cloned()
        });
        match pod {
            Some(p) => crate::cli::pods::tail_logs(&self.data_dir, &p, LOG_LINES),
            None => PodLogs::new(),
        }
    }

    fn changes(&self) -> watch::Receiver<u64> {
        self.shared.sm.applied_watch()
    }
}

/// Why the page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The token file cannot be read.
    #[error("cannot read --http-token-file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A listener's address and token do not go together.
    #[error(transparent)]
    Auth(#[from] kommit_web::auth::AuthError),
    /// An address cannot be bound.
    #[error("binding --http-listen {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
}

/// Serves the page of `source` on each of `addrs` (a token from `token_file` guards those
/// beyond loopback) and records rollout samples, until the returned tasks are aborted.
pub async fn start(
    addrs: &[std::net::SocketAddr],
    token_file: Option<&std::path::Path>,
    source: NodeSource,
) -> Result<Vec<tokio::task::JoinHandle<()>>, WebError> {
    let token = match token_file {
        None => None,
        Some(p) => Some(
            std::fs::read_to_string(p).map_err(|source| WebError::TokenFile {
                path: p.display().to_string(),
                source,
            })?,
        ),
    };
    let mut listeners = Vec::new();
    for addr in addrs {
        let gate = kommit_web::auth::Gate::for_listener(*addr, token.as_deref())?;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| WebError::Bind {
                addr: *addr,
                source,
            })?;
        listeners.push((l, gate));
    }
    let web = kommit_web::server::Web::new(Arc::new(source));
    let mut tasks = vec![kommit_web::server::spawn_recorder(web.clone())];
    for (l, gate) in listeners {
        let router = kommit_web::server::router(web.clone(), gate);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(l, router).await {
                tracing::error!("web listener stopped: {e}");
            }
        }));
    }
    Ok(tasks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            without_userinfo("https://x-access-token:ghp_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(without_userinfo("/srv/repo.git"), "/srv/repo.git");
        assert_eq!(without_userinfo("git://10.0.0.1/r"), "git://10.0.0.1/r");
    }

    #[test]
    fn commits_come_from_the_notes_newest_decision_first() {
        use crate::testutil::{node, template_state};
        let mut s = template_state(&[node("n", 4000, 8 << 30)], 'b');
        s.apply(
            &kommit_reconcilers::Entry::Refuse {
                commit: "c".repeat(40),
                reason: None,
                diagnostics: vec!["apps/x.yaml:2:3: error: bad".into()],
                by: Some("n".into()),
            },
            5_000,
        );
        let notes = crate::sync::notes::notes(&s);
        let facts = commit_facts(&s, &notes, &BTreeMap::new());
        assert_eq!(facts.len(), 2);
        assert_eq!(facts[0].decision, Decision::Refused);
        assert_eq!(facts[0].diagnostics, notes[&"c".repeat(40)].diagnostics);
        assert_eq!(facts[1].commit, "b".repeat(40));
        let objects = object_facts(&s);
        assert_eq!(objects["default/Deployment/hello"].health, "progressing");
    }
}

//! What makes the leader fetch: a poll interval, a webhook, a watch on a local remote.
//!
//! All three only *wake* one fetch loop ([`spawn_fetcher`]); none fetches on its own, so a
//! burst of events costs one fetch. The webhook verifies forge signatures (GitHub
//! `X-Hub-Signature-256`, Gitea `X-Gitea-Signature`, GitLab `X-Gitlab-Token`) whenever a
//! secret is configured, and answers 401 otherwise.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use gix::ObjectId;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{watch, Notify};

use super::mirror::Mirror;

/// Default poll interval.
pub const DEFAULT_POLL: Duration = Duration::from_secs(15);

/// Wakes the fetch loop. Cheap to clone; firing while a fetch runs queues exactly one more.
#[derive(Clone, Default, Debug)]
pub struct FetchTrigger(Arc<Notify>);

impl FetchTrigger {
    /// Asks for a fetch now.
    pub fn fire(&self) {
        self.0.notify_one();
    }
}

/// What the fetch loop last saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchState {
    /// Completed fetch attempts (successful or not).
    pub fetches: u64,
    /// The branch head after the last successful fetch.
    pub head: Option<ObjectId>,
    /// The remote notes after the last successful fetch.
    pub notes: Option<ObjectId>,
    /// The last fetch's error, if it failed.
    pub last_error: Option<String>,
}

/// Runs fetches on `interval` and whenever `trigger` fires, until `shutdown` is true.
/// Each fetch runs on `spawn_blocking`. Subscribers see every completed attempt.
pub fn spawn_fetcher(
    mirror: Mirror,
    interval: Duration,
    trigger: FetchTrigger,
    mut shutdown: watch::Receiver<bool>,
) -> (tokio::task::JoinHandle<()>, watch::Receiver<FetchState>) {
    let (tx, rx) = watch::channel(FetchState::default());
    let handle = tokio::spawn(async move {
        let mut state = FetchState::default();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let m = mirror.clone();
            let started = std::time::Instant::now();
            let result = tokio::task::spawn_blocking(move || m.fetch()).await;
            tracing::debug!(ms = started.elapsed().as_millis() as u64, "fetched");
            state.fetches += 1;
            match result {
                Ok(Ok(outcome)) => {
                    state.head = outcome.head;
                    state.notes = outcome.notes;
                    state.last_error = None;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "fetch failed");
                    state.last_error = Some(e.to_string());
                }
                Err(e) => state.last_error = Some(format!("fetch task failed: {e}")),
            }
            tx.send_replace(state.clone());
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = trigger.0.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    });
    (handle, rx)
}

/// Errors of the local watch.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The remote is not a local path.
    #[error("remote {0} is not a local path")]
    NotLocal(String),
    /// notify failed.
    #[error("watching {path}: {source}")]
    Watch {
        /// Watched path.
        path: PathBuf,
        /// Cause.
        source: notify::Error,
    },
}

/// The repository directory of a `file://` or plain-path remote, if it is one.
pub fn local_repo_dir(url: &str) -> Option<PathBuf> {
    let path = if let Some(p) = url.strip_prefix("file://") {
        PathBuf::from(p)
    } else if url.contains("://") || (url.contains(':') && !url.starts_with('/')) {
        return None;
    } else {
        PathBuf::from(url)
    };
    let dotgit = path.join(".git");
    Some(if dotgit.is_dir() { dotgit } else { path })
}

/// Watches a local remote's refs (loose refs recursively, and `packed-refs`) and fires
/// `trigger` on every change. Keep the returned watcher alive.
pub fn watch_local_remote(
    url: &str,
    trigger: FetchTrigger,
) -> Result<notify::RecommendedWatcher, TriggerError> {
    use notify::Watcher;
    let dir = local_repo_dir(url).ok_or_else(|| TriggerError::NotLocal(url.to_owned()))?;
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|ev| moves_a_ref(&ev)) {
            trigger.fire();
        }
    })
    .map_err(|source| TriggerError::Watch {
        path: dir.clone(),
        source,
    })?;
    for (path, mode) in [
        (dir.join("refs"), notify::RecursiveMode::Recursive),
        (dir.clone(), notify::RecursiveMode::NonRecursive),
    ] {
        watcher
            .watch(&path, mode)
            .map_err(|source| TriggerError::Watch { path, source })?;
    }
    Ok(watcher)
}

/// Whether a watch event can have moved a ref. Git updates a ref by writing `<ref>.lock` and
/// renaming it over the ref: a fetch woken by the lock file's creation would run before the
/// rename and find the old head (and the rename would wake a second one), so events on lock
/// files alone are ignored. Reads are too. An event without paths counts.
fn moves_a_ref(ev: &notify::Event) -> bool {
    !ev.kind.is_access()
        && (ev.paths.is_empty()
            || ev
                .paths
                .iter()
                .any(|p| p.extension().is_none_or(|e| e != "lock")))
}

/// The forge a webhook call came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forge {
    /// `X-Hub-Signature-256` / `X-GitHub-Event`.
    GitHub,
    /// `X-Gitlab-Token` / `X-Gitlab-Event`.
    GitLab,
    /// `X-Gitea-Signature` / `X-Gitea-Event`.
    Gitea,
    /// A plain POST.
    Plain,
}

/// Why a webhook call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// A secret is configured and the call carries no signature or token.
    #[error("webhook call carries no signature or token")]
    Missing,
    /// The signature or token does not match.
    #[error("webhook {0:?} signature does not match")]
    BadSignature(Forge),
}

fn hmac_ok(secret: &str, body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verifies a webhook call. Without a secret every call is accepted (and classified by its
/// event header); with one, a matching signature or token is required.
pub fn verify(
    secret: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Forge, WebhookError> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let Some(secret) = secret else {
        return Ok(if h("x-github-event").is_some() {
            Forge::GitHub
        } else if h("x-gitlab-event").is_some() {
            Forge::GitLab
        } else if h("x-gitea-event").is_some() {
            Forge::Gitea
        } else {
            Forge::Plain
        });
    };
    if let Some(sig) = h("x-hub-signature-256") {
        let ok = sig
            .strip_prefix("sha256=")
            .is_some_and(|hex_sig| hmac_ok(secret, body, hex_sig));
        return if ok {
            Ok(Forge::GitHub)
        } else {
            Err(WebhookError::BadSignature(Forge::GitHub))
        };
    }
    if let Some(sig) = h("x-gitea-signature") {
        return if hmac_ok(secret, body, sig) {
            Ok(Forge::Gitea)
        } else {
            Err(WebhookError::BadSignature(Forge::Gitea))
        };
    }
    if let Some(token) = h("x-gitlab-token") {
        return if ct_eq(token.as_bytes(), secret.as_bytes()) {
            Ok(Forge::GitLab)
        } else {
            Err(WebhookError::BadSignature(Forge::GitLab))
        };
    }
    Err(WebhookError::Missing)
}

/// Webhook settings.
#[derive(Clone, Debug, Default)]
pub struct WebhookConfig {
    /// Shared secret (HMAC key for GitHub/Gitea, token for GitLab).
    pub secret: Option<String>,
    /// The desired-state branch; push events for other branches do not trigger a fetch.
    pub branch: String,
}

/// Whether a push event body concerns `branch` (bodies without a `ref` always do).
pub fn concerns_branch(body: &[u8], branch: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        r#ref: Option<String>,
    }
    match serde_json::from_slice::<Push>(body) {
        Ok(Push { r#ref: Some(r) }) => r == format!("refs/heads/{branch}") || r == super::NOTES_REF,
        _ => true,
    }
}

#[derive(Clone)]
struct HookState {
    config: Arc<WebhookConfig>,
    trigger: FetchTrigger,
}

async fn hook(State(s): State<HookState>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    match verify(s.config.secret.as_deref(), &headers, &body) {
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused");
            (StatusCode::UNAUTHORIZED, format!("{e}\n"))
        }
        Ok(forge) if concerns_branch(&body, &s.config.branch) => {
            tracing::debug!(?forge, "webhook: fetching now");
            s.trigger.fire();
            (StatusCode::ACCEPTED, "fetch triggered\n".into())
        }
        Ok(_) => (StatusCode::ACCEPTED, "ignored: other branch\n".into()),
    }
}

/// The webhook router: `POST /` triggers a fetch. The daemon nests it (e.g. under
/// `/hooks/git`). Bodies are limited to 1 MiB.
pub fn webhook_router(config: WebhookConfig, trigger: FetchTrigger) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::post(hook))
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .with_state(HookState {
            config: Arc::new(config),
            trigger,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn lock_files_alone_do_not_wake_a_fetch() {
        use notify::event::{AccessKind, CreateKind, EventKind, ModifyKind, RenameMode};
        let ev = |kind: EventKind, paths: &[&str]| notify::Event {
            kind,
            paths: paths.iter().map(PathBuf::from).collect(),
            attrs: Default::default(),
        };
        let heads = "/r.git/refs/heads";
        let cases = [
            (
                ev(
                    EventKind::Create(CreateKind::File),
                    &["/r.git/refs/heads/main.lock"],
                ),
                false,
            ),
            (
                ev(
                    EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                    &["/r.git/refs/heads/main.lock"],
                ),
                false,
            ),
            (
                ev(
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)),
                    &["/r.git/refs/heads/main"],
                ),
                true,
            ),
            (
                ev(
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                    &["/r.git/refs/heads/main.lock", "/r.git/refs/heads/main"],
                ),
                true,
            ),
            (
                ev(EventKind::Create(CreateKind::File), &["/r.git/packed-refs"]),
                true,
            ),
            (ev(EventKind::Create(CreateKind::Folder), &[heads]), true),
            (
                ev(EventKind::Access(AccessKind::Any), &["/r.git/packed-refs"]),
                false,
            ),
            (ev(EventKind::Any, &[]), true),
        ];
        for (e, want) in cases {
            assert_eq!(moves_a_ref(&e), want, "{e:?}");
        }
    }

    #[test]
    fn verify_table() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let good = sign("s3cret", body);
        let bad = sign("other", body);
        type Case<'a> = (
            Option<&'a str>,
            Vec<(&'a str, String)>,
            Result<Forge, WebhookError>,
        );
        let cases: Vec<Case> = vec![
            (None, vec![], Ok(Forge::Plain)),
            (
                None,
                vec![("x-github-event", "push".into())],
                Ok(Forge::GitHub),
            ),
            (Some("s3cret"), vec![], Err(WebhookError::Missing)),
            (
                Some("s3cret"),
                vec![("x-hub-signature-256", format!("sha256={good}"))],
                Ok(Forge::GitHub),
            ),
            (
                Some("s3cret"),
                vec![("x-hub-signature-256", format!("sha256={bad}"))],
                Err(WebhookError::BadSignature(Forge::GitHub)),
            ),
            (
                Some("s3cret"),
                vec![("x-hub-signature-256", good.clone())],
                Err(WebhookError::BadSignature(Forge::GitHub)),
            ),
            (
                Some("s3cret"),
                vec![("x-gitea-signature", good.clone())],
                Ok(Forge::Gitea),
            ),
            (
                Some("s3cret"),
                vec![("x-gitea-signature", "zz".into())],
                Err(WebhookError::BadSignature(Forge::Gitea)),
            ),
            (
                Some("s3cret"),
                vec![("x-gitlab-token", "s3cret".into())],
                Ok(Forge::GitLab),
            ),
            (
                Some("s3cret"),
                vec![("x-gitlab-token", "s3cre".into())],
                Err(WebhookError::BadSignature(Forge::GitLab)),
            ),
        ];
        for (secret, hdrs, want) in cases {
            let mut map = HeaderMap::new();
            for (k, v) in &hdrs {
                map.insert(*k, v.parse().expect("header value"));
            }
            assert_eq!(verify(secret, &map, body), want, "{secret:?} {hdrs:?}");
        }
    }

    #[test]
    fn branch_filter() {
        assert!(concerns_branch(br#"{"ref":"refs/heads/main"}"#, "main"));
        assert!(!concerns_branch(br#"{"ref":"refs/heads/dev"}"#, "main"));
        assert!(concerns_branch(b"", "main"));
        assert!(concerns_branch(b"not json", "main"));
    }

    #[test]
    fn local_dirs() {
        assert_eq!(
            local_repo_dir("file:///a/b.git"),
            Some(PathBuf::from("/a/b.git"))
        );
        assert_eq!(local_repo_dir("/a/b.git"), Some(PathBuf::from("/a/b.git")));
        assert_eq!(local_repo_dir("git://h/x"), None);
        assert_eq!(local_repo_dir("git@host:x.git"), None);
    }
}

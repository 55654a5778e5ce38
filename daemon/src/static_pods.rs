//! `kommit daemon --static-pods DIR`: pod manifests in a node-local directory run on this node
//! alone, like the kubelet's static pods.
//!
//! The directory's `*.yaml`/`*.yml` files (not dot-files, not subdirectories; symlinks to
//! files followed) are read with the same loader as `kommit validate`, one file at a time so
//! an invalid file never stops the valid ones: each problem is logged as one
//! `FILE:LINE:COL: error: ...` line (once, until it changes) and the file is skipped. A file
//! may hold only kind Pod. The directory is watched with notify (debounced by [`DEBOUNCE`])
//! and re-read every [`REREAD`]; whenever the set differs from the one the replicated state
//! records for this node, one `Entry::StaticPods` with the complete set is proposed. The
//! state then binds each pod to this node (`kommit_reconcilers::controllers::static_pods`)
//! and the agent runs it like any other.

use crate::consensus::node::{propose, Shared};
use kommit_reconcilers::controllers::static_pods::normalize;
use kommit_reconcilers::{ClusterState, Entry, MAX_STATIC_PODS};
use kommit_schemas::model::core::Pod;
use kommit_schemas::{Kind, Limits};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Most manifest files read from the directory.
pub const MAX_FILES: usize = MAX_STATIC_PODS;
/// Most bytes all static pod files may hold together (they travel in one Raft entry).
pub const MAX_TOTAL_BYTES: u64 = 4 << 20;
/// How long after a change event the directory is read (events of one write coalesce).
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the directory is read without events.
pub const REREAD: Duration = Duration::from_secs(5);
/// How soon a failed proposal is retried.
const RETRY: Duration = Duration::from_millis(500);

/// Errors starting the watch.
#[derive(Debug, thiserror::Error)]
pub enum StaticPodsError {
    /// The directory cannot be made or read.
    #[error("static pod directory {path}: {source}")]
    Io {
        /// The directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// notify cannot watch it.
    #[error("cannot watch the static pod directory {path}: {source}")]
    Watch {
        /// The directory.
        path: String,
        /// The error.
        source: notify::Error,
    },
}

/// What one read of the directory found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DirRead {
    /// The valid pods, files in name order.
    pub pods: Vec<Pod>,
    /// One `FILE:LINE:COL: error: ...` line per problem.
    pub errors: Vec<String>,
}

/// Reads the static pods in `dir` (see the module docs). A missing directory holds none.
pub fn read_dir(dir: &Path) -> Result<DirRead, StaticPodsError> {
    let io = |source| StaticPodsError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut out = DirRead::default();
    let list = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(e)),
    };
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for entry in list {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !kommit_schemas::source::is_manifest_path(&name) {
            continue;
        }
        // Symlinks are followed (configuration tools link manifests in); only files count.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    if files.len() > MAX_FILES {
        out.errors.push(format!(
            "{}:1:1: error: more than {MAX_FILES} static pod files; this one and later ones were not read",
            files[MAX_FILES].1.display()
        ));
        files.truncate(MAX_FILES);
    }
    // Each file at most 1 MiB (the loader's limit), all of them at most MAX_TOTAL_BYTES: the
    // set travels in one Raft entry.
    let limits = Limits {
        max_file_bytes: 1 << 20,
        max_total_bytes: MAX_TOTAL_BYTES,
        ..Limits::default()
    };
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    for (_, path) in files {
        total += std::fs::metadata(&path).map_or(0, |m| m.len().min(limits.max_file_bytes + 1));
        if total > MAX_TOTAL_BYTES {
            out.errors.push(format!(
                "{}:1:1: error: static pod files total more than {MAX_TOTAL_BYTES} bytes; this one and later ones were not read",
                path.display()
            ));
            break;
        }
        read_file(&path, &limits, &mut seen, &mut out);
    }
    Ok(out)
}

/// Validates one file alone and adds its pods (or its problems) to `out`.
fn read_file(path: &Path, limits: &Limits, seen: &mut BTreeSet<String>, out: &mut DirRead) {
    let shown = path.display().to_string();
    let err = |line: u32, col: u32, msg: &str| format!("{shown}:{line}:{col}: error: {msg}");
    let tree = match crate::fstree::read_single_file(path, limits) {
        Ok(t) => t,
        Err(e) => {
            out.errors.push(err(1, 1, &format!("cannot read: {e}")));
            return;
        }
    };
    let desired = match kommit_schemas::validate(&tree, limits) {
        Ok(d) => d,
        Err(diags) => {
            out.errors
                .extend(diags.iter().map(|d| err(d.line, d.col, &d.message)));
            return;
        }
    };
    let others: Vec<String> = desired
        .object_ids()
        .into_iter()
        .filter(|(k, _, _)| *k != Kind::Pod)
        .map(|(k, ns, n)| {
            format!(
                "{} {}",
                k.name(),
                if ns.is_empty() {
                    n
                } else {
                    format!("{ns}/{n}")
                }
            )
        })
        .collect();
    if !others.is_empty() {
        out.errors.push(err(
            1,
            1,
            &format!(
                "a static pod file holds only kind Pod, not {}; the file is skipped",
                others.join(", ")
            ),
        ));
        return;
    }
    if desired.pods.is_empty() {
        out.errors.push(err(1, 1, "no Pod in this static pod file"));
    }
    for (key, pod) in desired.pods {
        if !seen.insert(key.clone()) {
            out.errors.push(err(
                1,
                1,
                &format!("pod {key} is already defined by another static pod file; skipped"),
            ));
        } else if out.pods.len() >= MAX_STATIC_PODS {
            out.errors.push(err(
                1,
                1,
                &format!("more than {MAX_STATIC_PODS} static pods; pod {key} skipped"),
            ));
        } else {
            out.pods.push(pod);
        }
    }
}

/// The running watch: its task and the notify watcher feeding it.
pub struct StaticPodsTask {
    task: tokio::task::JoinHandle<()>,
    _watcher: Option<notify::RecommendedWatcher>,
}

impl StaticPodsTask {
    /// Stops watching (the static pods stay in the state and keep running).
    pub fn stop(self) {
        self.task.abort();
    }
}

/// Creates `dir` if needed, watches it and keeps this node's `StaticPods` in the state
/// equal to what it holds. Without a directory (no `--static-pods`), the node has none: any
/// the state still records for it (from an earlier start with the flag) are removed. Must
/// run inside the tokio runtime.
pub fn start(
    dir: Option<PathBuf>,
    shared: Arc<Shared<ClusterState>>,
) -> Result<StaticPodsTask, StaticPodsError> {
    use notify::Watcher;
    let wake = Arc::new(tokio::sync::Notify::new());
    let Some(dir) = dir else {
        return Ok(StaticPodsTask {
            task: tokio::spawn(run(None, shared, wake)),
            _watcher: None,
        });
    };
    std::fs::create_dir_all(&dir).map_err(|source| StaticPodsError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let w = wake.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|ev| !ev.kind.is_access()) {
            w.notify_one();
        }
    })
    .map_err(|source| StaticPodsError::Watch {
        path: dir.display().to_string(),
        source,
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| StaticPodsError::Watch {
            path: dir.display().to_string(),
            source,
        })?;
    let task = tokio::spawn(run(Some(dir), shared, wake));
    Ok(StaticPodsTask {
        task,
        _watcher: Some(watcher),
    })
}

async fn run(
    dir: Option<PathBuf>,
    shared: Arc<Shared<ClusterState>>,
    wake: Arc<tokio::sync::Notify>,
) {
    let node = shared.name.clone();
    let mut logged: BTreeSet<String> = BTreeSet::new();
    loop {
        let d = dir.clone();
        let read = tokio::task::spawn_blocking(move || match d {
            Some(d) => read_dir(&d),
            None => Ok(DirRead::default()),
        })
        .await;
        let shown = dir
            .as_deref()
            .map_or("(none)".into(), |d| d.display().to_string());
        let mut wait = REREAD;
        match read {
            Ok(Ok(read)) => {
                // Each problem once, until it goes away and comes back.
                let now: BTreeSet<String> = read.errors.into_iter().collect();
                for line in now.difference(&logged) {
                    tracing::warn!("{line}");
                }
                logged = now;
                let want = normalize(&read.pods);
                let same = shared.sm.read(|s| {
                    s.static_pods
                        .get(&node)
                        .map_or(want.is_empty(), |h| *h == want)
                });
                if !same {
                    let count = read.pods.len();
                    let entry = Entry::StaticPods {
                        node: node.clone(),
                        pods: read.pods,
                    };
                    match propose(&shared, &entry).await {
                        Ok(_) => tracing::info!(count, "static pods of {shown} proposed"),
                        Err(e) => {
                            tracing::warn!("proposing the static pods of {shown}: {e}");
                            wait = RETRY;
                        }
                    }
                }
            }
            Ok(Err(e)) => tracing::warn!("{e}"),
            Err(e) => tracing::warn!("reading the static pod directory: {e}"),
        }
        tokio::select! {
            _ = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: NAME\nspec:\n  containers:\n    - name: c\n      image: busybox:1.36\n";

    #[test]
    fn valid_files_run_and_each_problem_is_one_located_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w =
            |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
        w("a.yaml", &POD.replace("NAME", "a"));
        w("b.yml", &POD.replace("NAME", "b"));
        w(
            "c.yaml",
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: c\nspec:\n  containers: 3\n",
        );
        w(
            "d.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\ndata:\n  k: v\n",
        );
        w("e.yaml", &POD.replace("NAME", "a"));
        w(".hidden.yaml", &POD.replace("NAME", "h"));
        w("notes.txt", "not a manifest");
        std::fs::create_dir(dir.path().join("sub.yaml")).expect("mkdir");
        let r = read_dir(dir.path()).expect("read");
        let names: Vec<&str> = r.pods.iter().map(|p| p.metadata.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(r.errors.len(), 3, "{:#?}", r.errors);
        let shown = dir.path().display().to_string();
        assert!(
            r.errors[0].starts_with(&format!("{shown}/c.yaml:6:")),
            "{}",
            r.errors[0]
        );
        assert!(
            r.errors[1].contains(
                "d.yaml:1:1: error: a static pod file holds only kind Pod, not ConfigMap default/d"
            ),
            "{}",
            r.errors[1]
        );
        assert!(
            r.errors[2].contains("e.yaml:1:1: error: pod default/a is already defined"),
            "{}",
            r.errors[2]
        );
        assert!(r
            .errors
            .iter()
            .all(|e| !e.contains('\n') && e.contains(": error: ")));
        // A missing directory holds none.
        let r = read_dir(&dir.path().join("absent")).expect("read");
        assert_eq!(r, DirRead::default());
    }

    #[test]
    fn files_and_pods_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..MAX_FILES + 2 {
            let text = POD.replace("NAME", &format!("p{i:03}"));
            std::fs::write(dir.path().join(format!("p{i:03}.yaml")), text).expect("write");
        }
        let r = read_dir(dir.path()).expect("read");
        assert_eq!(r.pods.len(), MAX_STATIC_PODS);
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].contains(&format!("p{MAX_FILES:03}.yaml:1:1: error: more than")));
    }
}

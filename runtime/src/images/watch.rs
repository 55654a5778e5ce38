//! Air-gapped auto-import: tarballs dropped into `<data-dir>/images/` are imported as they
//! appear (like k3s's agent images directory).
//!
//! A notify watcher on the directory re-runs [`ImageStore::import_dropped_files`], which
//! imports only files whose size or mtime changed since their last attempt; a half-copied
//! tarball that fails is retried once it changes again.

use std::sync::Arc;

use super::{ImageError, ImageStore};

/// Keeps the watcher alive; dropping it stops auto-import.
pub struct AutoImport {
    _watcher: notify::RecommendedWatcher,
}

/// Import what is already there, then watch for more.
pub fn auto_import(store: Arc<ImageStore>) -> Result<AutoImport, ImageError> {
    use notify::Watcher;
    let dir = store.data_dir().join("images");
    store.import_dropped_files()?;
    let s = store.clone();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if matches!(
                ev.kind,
                notify::EventKind::Create(_) | notify::EventKind::Modify(_)
            ) {
                if let Err(e) = s.import_dropped_files() {
                    tracing::warn!("auto-import: {e}");
                }
            }
        }
    })
    .map_err(|e| ImageError::Bad {
        path: dir.clone(),
        msg: format!("watching: {e}"),
    })?;
    w.watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|e| ImageError::Bad {
            path: dir.clone(),
            msg: format!("watching: {e}"),
        })?;
    Ok(AutoImport { _watcher: w })
}

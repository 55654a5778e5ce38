//! Fixtures shared by the integration tests: the template repository and directory copies.

use kommit_schemas::DesiredState;
use std::path::{Path, PathBuf};

/// The repository's `repo-template/` directory.
pub fn repo_template_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../repo-template")
}

/// repo-template's desired state, validated.
pub fn repo_template() -> DesiredState {
    let limits = kommit_schemas::Limits::default();
    let tree = kommit_daemon::fstree::read_dir_tree(&repo_template_dir(), &limits)
        .expect("repo-template is readable");
    kommit_schemas::validate(&tree, &limits).expect("repo-template is valid")
}

/// Copies the directory tree `from` to `to` (regular files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for e in std::fs::read_dir(from).expect("read directory") {
        let e = e.expect("directory entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).expect("copy file");
        }
    }
}

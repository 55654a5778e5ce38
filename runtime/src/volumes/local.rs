//! Node-local persistent volumes: `<data>/volumes/_local/<name>`, one directory per volume
//! the replicated state bound to this node (a local-path claim's `pvc-<uid>`). Unlike a
//! pod's volumes they outlive pods, container restarts and daemon restarts; they go only
//! when the agent removes a volume no claim holds any more (reclaim policy Delete).
//! `_local` is no valid pod id, so [`VolumeStore::pods_with_volumes`] never lists it.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;

use super::{io_err, verr, Tmpfs, VolumeStore};
use crate::spec::validate_name;
use crate::traits::{Result, RuntimeError};

/// The directory under the volume root holding the local persistent volumes.
pub const LOCAL_DIR: &str = "_local";

impl<T: Tmpfs> VolumeStore<T> {
    fn local_dir(&self, name: &str) -> Result<PathBuf> {
        validate_name("volume", name).map_err(RuntimeError::InvalidSpec)?;
        Ok(self.root().join(LOCAL_DIR).join(name))
    }

    /// Creates (idempotent) the local persistent volume `name`, mode 0777 as k3s'
    /// local-path makes them (containers running as any user write to it), and returns it.
    pub fn local_volume(&mut self, name: &str) -> Result<PathBuf> {
        let dir = self.local_dir(name)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(self.root().join(LOCAL_DIR))
            .map_err(|e| verr(io_err(&dir)(e)))?;
        std::fs::DirBuilder::new()
            .mode(0o777)
            .create(&dir)
            .map_err(|e| verr(io_err(&dir)(e)))?;
        // The umask narrowed the mode given at creation.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(|e| verr(io_err(&dir)(e)))?;
        Ok(dir)
    }

    /// The local persistent volumes on disk, sorted.
    pub fn local_volumes(&self) -> Result<Vec<String>> {
        super::named_dirs(&self.root().join(LOCAL_DIR), "volume")
    }

    /// Removes the local persistent volume `name` and its data. Idempotent.
    pub fn remove_local_volume(&mut self, name: &str) -> Result<()> {
        let dir = self.local_dir(name)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(verr(io_err(&dir)(e))),
        }
    }
}

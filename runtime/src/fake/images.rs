//! The fake image store.

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{enter, World};
use crate::traits::{ImageInfo, Images, PullProgress, RegistryCredentials, Result};

/// The fake image store.
pub struct FakeImages {
    pub(super) world: Arc<Mutex<World>>,
}

impl Images for FakeImages {
    fn import(&self, path: &Path) -> Result<Vec<ImageInfo>> {
        let mut g = enter(&self.world, "import", path.display().to_string())?;
        let name = format!(
            "{}:latest",
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let info = ImageInfo {
            names: vec![name.clone()],
            digest: format!("sha256:{:064x}", g.images.len() + 1),
            size: 0,
        };
        g.images.insert(name, info.clone());
        Ok(vec![info])
    }

    fn pull(
        &self,
        reference: &str,
        _creds: Option<&RegistryCredentials>,
        progress: &mut dyn FnMut(&PullProgress),
    ) -> Result<ImageInfo> {
        let mut g = enter(&self.world, "pull", reference.into())?;
        let name = crate::images::normalize_reference(reference)?;
        progress(&PullProgress {
            layers_done: 1,
            layers_total: 1,
            bytes_done: 0,
            bytes_total: 0,
        });
        let info = ImageInfo {
            names: vec![name.clone()],
            digest: format!("sha256:{:064x}", g.images.len() + 1),
            size: 0,
        };
        g.images.insert(name, info.clone());
        Ok(info)
    }

    fn list(&self) -> Result<Vec<ImageInfo>> {
        let g = enter(&self.world, "list_images", String::new())?;
        let mut v: Vec<ImageInfo> = g.images.values().cloned().collect();
        v.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(v)
    }

    fn import_dropped(&self) -> Result<Vec<ImageInfo>> {
        drop(enter(&self.world, "import_dropped", String::new())?);
        Ok(vec![])
    }
}

//! Import sources: OCI layout directories, OCI archives and `docker save` tarballs, and
//! the auto-import of tarballs dropped into `<data-dir>/images/`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{
    host_arch, io_err, normalize_reference, parse_digest, read_bounded, sha256_file, unpack,
    DockerManifestEntry, ImageConfigDoc, ImageError, ImageStore, IndexDoc, ManifestDoc, TempDir,
    MAX_ARCHIVE, MAX_JSON, MAX_LAYERS,
};
use crate::traits::ImageInfo;

impl ImageStore {
    /// Import blobs from an OCI layout directory (digests verified), then unpack.
    fn import_layout(
        &self,
        dir: &Path,
        fallback_name: &str,
    ) -> std::result::Result<Vec<ImageInfo>, ImageError> {
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            return Err(ImageError::Bad {
                path: dir.to_path_buf(),
                msg: "not an OCI layout (no oci-layout file)".into(),
            });
        }
        let index_path = dir.join("index.json");
        let index: IndexDoc = serde_json::from_slice(&read_bounded(&index_path, MAX_JSON)?)
            .map_err(|e| ImageError::Bad {
                path: index_path.clone(),
                msg: e.to_string(),
            })?;
        let blob_src = |d: &str| -> std::result::Result<PathBuf, ImageError> {
            let hex = parse_digest(d).map_err(|msg| ImageError::Bad {
                path: index_path.clone(),
                msg,
            })?;
            Ok(dir.join("blobs/sha256").join(hex))
        };
        let mut out = Vec::new();
        for desc in index.manifests.iter().take(64) {
            let mut name = desc
                .annotations
                .get("org.opencontainers.image.ref.name")
                .cloned();
            let mut mdesc = desc.clone();
            // Nested index: choose linux/amd64 (or the only entry).
            for _ in 0..4 {
                let src = blob_src(&mdesc.digest)?;
                let stored = self.put_blob_file(&src, &mdesc.digest)?;
                let m: ManifestDoc = serde_json::from_slice(&read_bounded(&stored, MAX_JSON)?)
                    .map_err(|e| ImageError::Bad {
                        path: src.clone(),
                        msg: e.to_string(),
                    })?;
                match m.manifests {
                    Some(list) if m.config.is_none() => {
                        let pick = list
                            .iter()
                            .find(|d| {
                                d.platform.as_ref().is_some_and(|p| {
                                    p.os == "linux" && p.architecture == host_arch()
                                })
                            })
                            .or_else(|| list.first())
                            .ok_or_else(|| ImageError::Bad {
                                path: src.clone(),
                                msg: "empty index".into(),
                            })?;
                        mdesc = pick.clone();
                        if name.is_none() {
                            name = pick
                                .annotations
                                .get("org.opencontainers.image.ref.name")
                                .cloned();
                        }
                        continue;
                    }
                    _ => {}
                }
                let _ = &m.media_type;
                let config = m.config.ok_or_else(|| ImageError::Bad {
                    path: src.clone(),
                    msg: "manifest has no config".into(),
                })?;
                let layers = m.layers.unwrap_or_default();
                if layers.len() > MAX_LAYERS {
                    return Err(ImageError::Bad {
                        path: src,
                        msg: format!("more than {MAX_LAYERS} layers"),
                    });
                }
                self.put_blob_file(&blob_src(&config.digest)?, &config.digest)?;
                for l in &layers {
                    let _ = &l.media_type;
                    self.put_blob_file(&blob_src(&l.digest)?, &l.digest)?;
                }
                self.unpack_image(&mdesc.digest)?;
                let names = match name.as_deref() {
                    Some(n) if n.contains(':') || n.contains('/') => vec![normalize_reference(n)?],
                    Some(tag) => vec![normalize_reference(&format!("{fallback_name}:{tag}"))?],
                    None => vec![],
                };
                out.push(self.commit_image(&names, &mdesc.digest)?);
                break;
            }
        }
        if out.is_empty() {
            return Err(ImageError::Bad {
                path: index_path,
                msg: "no image manifests".into(),
            });
        }
        Ok(out)
    }

    /// Unpack every layer of a stored manifest, checking diff_ids.
    pub(super) fn unpack_image(
        &self,
        manifest_digest: &str,
    ) -> std::result::Result<Vec<PathBuf>, ImageError> {
        let (config_digest, layers, _) = self.load_manifest(manifest_digest)?;
        let cfg_path = self.blob_path(&config_digest)?;
        let cfg: ImageConfigDoc = serde_json::from_slice(&read_bounded(&cfg_path, MAX_JSON)?)
            .map_err(|e| ImageError::Bad {
                path: cfg_path.clone(),
                msg: e.to_string(),
            })?;
        if cfg.rootfs.diff_ids.len() != layers.len() {
            return Err(ImageError::Bad {
                path: cfg_path,
                msg: "diff_ids and layers differ in count".into(),
            });
        }
        let mut dirs = Vec::new();
        for (l, diff) in layers.iter().zip(&cfg.rootfs.diff_ids) {
            dirs.push(self.unpack_layer(&self.blob_path(l)?, diff)?);
        }
        Ok(dirs)
    }

    /// Import a `docker save` tarball already extracted into `dir`.
    fn import_docker(&self, dir: &Path) -> std::result::Result<Vec<ImageInfo>, ImageError> {
        let mp = dir.join("manifest.json");
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(&read_bounded(&mp, MAX_JSON)?).map_err(|e| ImageError::Bad {
                path: mp.clone(),
                msg: e.to_string(),
            })?;
        let mut out = Vec::new();
        for e in entries.iter().take(64) {
            let inside = |p: &str| -> std::result::Result<PathBuf, ImageError> {
                let rel = unpack::safe_relative(Path::new(p)).map_err(|msg| ImageError::Bad {
                    path: mp.clone(),
                    msg,
                })?;
                Ok(dir.join(rel))
            };
            if e.layers.len() > MAX_LAYERS {
                return Err(ImageError::Bad {
                    path: mp.clone(),
                    msg: format!("more than {MAX_LAYERS} layers"),
                });
            }
            let cfg_src = inside(&e.config)?;
            let cfg_digest = sha256_file(&cfg_src)?;
            self.put_blob_file(&cfg_src, &cfg_digest)?;
            let mut layer_descs = Vec::new();
            for l in &e.layers {
                let src = inside(l)?;
                let d = sha256_file(&src)?;
                let size = fs::metadata(&src).map_err(io_err(&src))?.len();
                self.put_blob_file(&src, &d)?;
                layer_descs.push(serde_json::json!({
                    "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size }));
            }
            let cfg_size = fs::metadata(&cfg_src).map_err(io_err(&cfg_src))?.len();
            let manifest = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": cfg_size},
                "layers": layer_descs,
            });
            let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Bad {
                path: mp.clone(),
                msg: e.to_string(),
            })?;
            let md = format!(
                "sha256:{}",
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes))
            );
            self.put_blob_bytes(&bytes, &md)?;
            self.unpack_image(&md)?;
            let names = e
                .repo_tags
                .clone()
                .unwrap_or_default()
                .iter()
                .map(|t| normalize_reference(t))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            out.push(self.commit_image(&names, &md)?);
        }
        if out.is_empty() {
            return Err(ImageError::Bad {
                path: mp,
                msg: "no images".into(),
            });
        }
        Ok(out)
    }

    /// Extract an archive (OCI archive or docker save, maybe gzip) into a temp dir.
    fn extract_archive(&self, file: &Path) -> std::result::Result<TempDir, ImageError> {
        let size = fs::metadata(file).map_err(io_err(file))?.len();
        if size > MAX_ARCHIVE {
            return Err(ImageError::Bad {
                path: file.to_path_buf(),
                msg: format!("larger than {MAX_ARCHIVE} bytes"),
            });
        }
        let tmp = self.tempdir()?;
        let mut f = fs::File::open(file).map_err(io_err(file))?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).map_err(io_err(file))?;
        let f = io::BufReader::new(fs::File::open(file).map_err(io_err(file))?);
        let reader: Box<dyn Read> = match unpack::sniff(&head[..n]) {
            unpack::Compression::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
            _ => Box::new(f),
        };
        unpack::extract_layer(reader, &tmp.0).map_err(|e| match e {
            ImageError::BadLayer { msg, .. } => ImageError::Bad {
                path: file.to_path_buf(),
                msg,
            },
            other => other,
        })?;
        Ok(tmp)
    }

    /// Import a directory or tarball.
    pub fn import_path(&self, path: &Path) -> std::result::Result<Vec<ImageInfo>, ImageError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let fallback = path
            .file_stem()
            .map(|s| {
                s.to_string_lossy().to_lowercase().replace(
                    |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
                    "-",
                )
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "imported".into());
        let meta = fs::metadata(path).map_err(io_err(path))?;
        if meta.is_dir() {
            return self.import_layout(path, &fallback);
        }
        let tmp = self.extract_archive(path)?;
        if tmp.0.join("oci-layout").exists() {
            self.import_layout(&tmp.0, &fallback)
        } else if tmp.0.join("manifest.json").exists() {
            self.import_docker(&tmp.0)
        } else {
            Err(ImageError::Bad {
                path: path.to_path_buf(),
                msg: "neither an OCI archive nor a docker-save tarball".into(),
            })
        }
    }

    /// Import tarballs in `<data-dir>/images/` not imported before (tracked by name+size+mtime).
    pub fn import_dropped_files(&self) -> std::result::Result<Vec<ImageInfo>, ImageError> {
        let dir = self.data_dir.join("images");
        let seen_path = self.data_dir.join("content/dropped.json");
        let mut seen: BTreeMap<String, String> = if seen_path.exists() {
            serde_json::from_slice(&read_bounded(&seen_path, MAX_JSON)?).unwrap_or_default()
        } else {
            BTreeMap::new()
        };
        let mut names: Vec<_> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                p.is_file()
                    && (n.ends_with(".tar") || n.ends_with(".tar.gz") || n.ends_with(".tgz"))
            })
            .collect();
        names.sort();
        let mut out = Vec::new();
        for p in names {
            let m = fs::metadata(&p).map_err(io_err(&p))?;
            let stamp = format!("{}:{:?}", m.len(), m.modified().ok());
            let key = p.display().to_string();
            if seen.get(&key) == Some(&stamp) {
                continue;
            }
            match self.import_path(&p) {
                Ok(imgs) => out.extend(imgs),
                Err(e) => tracing::warn!("auto-import of {} failed: {e}", p.display()),
            }
            seen.insert(key, stamp);
        }
        let bytes = serde_json::to_vec(&seen).map_err(|e| ImageError::Bad {
            path: seen_path.clone(),
            msg: e.to_string(),
        })?;
        fs::write(&seen_path, bytes).map_err(io_err(&seen_path))?;
        Ok(out)
    }
}

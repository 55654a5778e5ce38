//! The content-addressed image store.
//!
//! Layout under `<data-dir>`:
//! - `content/blobs/sha256/<hex>`: manifests, configs and compressed layers, verified on entry;
//! - `content/layers/<diff-id-hex>/`: each layer unpacked once, keyed by its uncompressed
//!   digest, and shared by every image that uses it (`.done` marks a complete unpack);
//! - `content/refs.json`: image name -> manifest digest;
//! - `images/`: the drop directory; tarballs placed there are imported automatically.
//!
//! Everything read from a file or a registry is untrusted: JSON documents are size-bounded,
//! layer counts are bounded, digests are checked before use and layers are unpacked by
//! [`unpack`] which refuses escapes.

pub mod busybox;
mod import;
pub mod pull;
pub mod unpack;
pub mod watch;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::traits::{ImageInfo, Images, PullProgress, RegistryCredentials, Result};

/// Largest JSON document (index, manifest, config) accepted.
pub const MAX_JSON: u64 = 4 << 20;
/// Most layers one image may have.
pub const MAX_LAYERS: usize = 128;
/// Largest tarball accepted for import.
pub const MAX_ARCHIVE: u64 = 8 << 30;

/// Image store errors.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// Filesystem error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A blob's content does not match its digest.
    #[error("digest mismatch for {path}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Where it came from.
        path: PathBuf,
        /// Announced digest.
        expected: String,
        /// Computed digest.
        actual: String,
    },
    /// A malformed or unsupported document.
    #[error("{path}: {msg}")]
    Bad {
        /// Where it came from.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A layer that cannot be unpacked safely.
    #[error("refusing layer {path}: {msg}")]
    BadLayer {
        /// Layer destination.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Unknown image.
    #[error("image {0} not found (import or pull it first)")]
    NotFound(String),
    /// Bad image reference.
    #[error("invalid image reference {0:?}: {1}")]
    BadReference(String, String),
    /// Registry failure.
    #[error("pulling {reference}: {msg}")]
    Pull {
        /// The reference.
        reference: String,
        /// What went wrong.
        msg: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An image ready to run: its unpacked layers (bottom first) and config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// Manifest digest.
    pub digest: String,
    /// Unpacked layer directories, lowest first.
    pub layers: Vec<PathBuf>,
    /// Runtime config from the image.
    pub config: RunConfig,
}

/// The part of an OCI image config that affects running it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunConfig {
    /// `User`.
    #[serde(rename = "User", default)]
    pub user: Option<String>,
    /// `Env` as `K=V`.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// `WorkingDir`.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ImageConfigDoc {
    #[serde(default)]
    config: Option<RunConfig>,
    rootfs: RootFs,
}

#[derive(Debug, Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize)]
struct Platform {
    architecture: String,
    os: String,
}

#[derive(Debug, Deserialize)]
struct IndexDoc {
    manifests: Vec<Descriptor>,
}

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Deserialize)]
struct DockerManifestEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Normalise a reference to `name:tag` (or `name@digest`); refuses junk.
pub fn normalize_reference(r: &str) -> std::result::Result<String, ImageError> {
    let bad = |m: &str| ImageError::BadReference(r.to_string(), m.to_string());
    if r.is_empty() || r.len() > 255 {
        return Err(bad("empty or longer than 255"));
    }
    if !r
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"./:-_@".contains(&b))
    {
        return Err(bad("allowed characters are [A-Za-z0-9./:_@-]"));
    }
    if r.starts_with(['/', ':', '@', '.', '-']) || r.ends_with(['/', ':', '@']) || r.contains("//")
    {
        return Err(bad("malformed"));
    }
    if r.contains('@') {
        return Ok(r.to_string());
    }
    let last = r.rsplit('/').next().unwrap_or(r);
    if last.contains(':') {
        Ok(r.to_string())
    } else {
        Ok(format!("{r}:latest"))
    }
}

fn parse_digest(d: &str) -> std::result::Result<&str, String> {
    let hex = d
        .strip_prefix("sha256:")
        .ok_or_else(|| format!("unsupported digest {d:?}"))?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return Err(format!("malformed digest {d:?}"));
    }
    Ok(hex)
}

fn read_bounded(path: &Path, max: u64) -> std::result::Result<Vec<u8>, ImageError> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > max {
        return Err(ImageError::Bad {
            path: path.to_path_buf(),
            msg: format!("larger than {max} bytes"),
        });
    }
    Ok(buf)
}

fn sha256_file(path: &Path) -> std::result::Result<String, ImageError> {
    let f = fs::File::open(path).map_err(io_err(path))?;
    let mut r = unpack::HashingReader::new(io::BufReader::new(f));
    io::copy(&mut r, &mut io::sink()).map_err(io_err(path))?;
    Ok(r.finish().0)
}

/// The on-disk image store.
pub struct ImageStore {
    data_dir: PathBuf,
    lock: Mutex<()>,
}

impl ImageStore {
    /// Open (creating directories) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> std::result::Result<Self, ImageError> {
        for d in [
            "content/blobs/sha256",
            "content/layers",
            "content/tmp",
            "images",
        ] {
            let p = data_dir.join(d);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        Ok(ImageStore {
            data_dir: data_dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    fn blob_path(&self, digest: &str) -> std::result::Result<PathBuf, ImageError> {
        let hex = parse_digest(digest).map_err(|msg| ImageError::Bad {
            path: PathBuf::from(digest),
            msg,
        })?;
        Ok(self.data_dir.join("content/blobs/sha256").join(hex))
    }

    fn refs_path(&self) -> PathBuf {
        self.data_dir.join("content/refs.json")
    }

    fn load_refs(&self) -> std::result::Result<BTreeMap<String, String>, ImageError> {
        let p = self.refs_path();
        if !p.exists() {
            return Ok(BTreeMap::new());
        }
        let bytes = read_bounded(&p, MAX_JSON)?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Bad {
            path: p,
            msg: e.to_string(),
        })
    }

    fn save_refs(&self, refs: &BTreeMap<String, String>) -> std::result::Result<(), ImageError> {
        let p = self.refs_path();
        let tmp = p.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(refs).map_err(|e| ImageError::Bad {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &p).map_err(io_err(&p))
    }

    /// A fresh temp dir inside the store (same filesystem, so renames are atomic).
    fn tempdir(&self) -> std::result::Result<TempDir, ImageError> {
        let base = self.data_dir.join("content/tmp");
        for i in 0..1000u32 {
            let p = base.join(format!("t{}-{}-{}", std::process::id(), unique(), i));
            if fs::create_dir(&p).is_ok() {
                return Ok(TempDir(p));
            }
        }
        Err(ImageError::Bad {
            path: base,
            msg: "cannot create temp dir".into(),
        })
    }

    /// Copy a blob from `src` into the store after checking its digest.
    fn put_blob_file(&self, src: &Path, digest: &str) -> std::result::Result<PathBuf, ImageError> {
        let dst = self.blob_path(digest)?;
        if dst.exists() {
            return Ok(dst);
        }
        let actual = sha256_file(src)?;
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                path: src.to_path_buf(),
                expected: digest.into(),
                actual,
            });
        }
        let tmp = dst.with_extension("part");
        fs::copy(src, &tmp).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        Ok(dst)
    }

    /// Store bytes as a blob after checking the digest.
    pub(crate) fn put_blob_bytes(
        &self,
        bytes: &[u8],
        digest: &str,
    ) -> std::result::Result<PathBuf, ImageError> {
        let dst = self.blob_path(digest)?;
        let actual = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
        );
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                path: PathBuf::from(digest),
                expected: digest.into(),
                actual,
            });
        }
        if !dst.exists() {
            let tmp = dst.with_extension("part");
            fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
            fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        }
        Ok(dst)
    }

    /// Unpack the compressed layer blob `blob` whose uncompressed digest must be `diff_id`.
    fn unpack_layer(&self, blob: &Path, diff_id: &str) -> std::result::Result<PathBuf, ImageError> {
        let hex = parse_digest(diff_id).map_err(|msg| ImageError::Bad {
            path: blob.to_path_buf(),
            msg,
        })?;
        let dir = self.data_dir.join("content/layers").join(hex);
        if dir.join(".done").exists() {
            return Ok(dir.join("fs"));
        }
        let tmp = self.tempdir()?;
        let fsdir = tmp.0.join("fs");
        fs::create_dir(&fsdir).map_err(io_err(&fsdir))?;
        let mut f = fs::File::open(blob).map_err(io_err(blob))?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).map_err(io_err(blob))?;
        drop(f);
        let f = io::BufReader::new(fs::File::open(blob).map_err(io_err(blob))?);
        let reader: Box<dyn Read> = match unpack::sniff(&head[..n]) {
            unpack::Compression::Gzip => Box::new(flate2::read::GzDecoder::new(f)),
            unpack::Compression::None => Box::new(f),
            unpack::Compression::Zstd => {
                return Err(ImageError::BadLayer {
                    path: blob.to_path_buf(),
                    msg: "zstd layers are not supported".into(),
                })
            }
        };
        let mut hashing = unpack::HashingReader::new(reader);
        unpack::extract_layer(&mut hashing, &fsdir)?;
        // Drain trailing padding so the digest covers the whole stream.
        io::copy(&mut hashing, &mut io::sink()).map_err(io_err(blob))?;
        let (actual, _) = hashing.finish();
        if actual != diff_id {
            return Err(ImageError::DigestMismatch {
                path: blob.to_path_buf(),
                expected: diff_id.into(),
                actual,
            });
        }
        fs::write(tmp.0.join(".done"), b"").map_err(io_err(&tmp.0))?;
        if fs::rename(&tmp.0, &dir).is_err() && !dir.join(".done").exists() {
            return Err(ImageError::Bad {
                path: dir,
                msg: "cannot move unpacked layer into place".into(),
            });
        }
        Ok(dir.join("fs"))
    }

    /// Register an image whose manifest, config and layer blobs are already in the store.
    fn commit_image(
        &self,
        names: &[String],
        manifest_digest: &str,
    ) -> std::result::Result<ImageInfo, ImageError> {
        let (_, layers, size) = self.load_manifest(manifest_digest)?;
        let _ = layers;
        let mut refs = self.load_refs()?;
        for n in names {
            refs.insert(n.clone(), manifest_digest.to_string());
        }
        // Reference the image by digest too, so unnamed images stay addressable.
        refs.insert(format!("@{manifest_digest}"), manifest_digest.to_string());
        self.save_refs(&refs)?;
        let mut names = names.to_vec();
        names.sort();
        Ok(ImageInfo {
            names,
            digest: manifest_digest.to_string(),
            size,
        })
    }

    /// Parse a stored manifest: (config digest, layer digests, total size).
    fn load_manifest(
        &self,
        digest: &str,
    ) -> std::result::Result<(String, Vec<String>, u64), ImageError> {
        let p = self.blob_path(digest)?;
        let bytes = read_bounded(&p, MAX_JSON)?;
        let m: ManifestDoc = serde_json::from_slice(&bytes).map_err(|e| ImageError::Bad {
            path: p.clone(),
            msg: e.to_string(),
        })?;
        let config = m.config.ok_or_else(|| ImageError::Bad {
            path: p.clone(),
            msg: "manifest has no config".into(),
        })?;
        let layers = m.layers.unwrap_or_default();
        if layers.len() > MAX_LAYERS {
            return Err(ImageError::Bad {
                path: p,
                msg: format!("more than {MAX_LAYERS} layers"),
            });
        }
        let size = layers.iter().map(|l| l.size).sum();
        Ok((
            config.digest,
            layers.into_iter().map(|l| l.digest).collect(),
            size,
        ))
    }

    /// Find an image by name (normalised), `@digest` or digest prefix and return its layers.
    pub fn resolve(&self, reference: &str) -> std::result::Result<ResolvedImage, ImageError> {
        let refs = self.load_refs()?;
        let digest = if let Some(d) = refs.get(reference) {
            d.clone()
        } else if let Some(d) = normalize_reference(reference)
            .ok()
            .and_then(|n| refs.get(&n).cloned())
        {
            d
        } else if let Some(d) = refs.get(&format!("@{reference}")) {
            d.clone()
        } else {
            return Err(ImageError::NotFound(reference.to_string()));
        };
        let (config_digest, _, _) = self.load_manifest(&digest)?;
        let layers = self.unpack_image(&digest)?;
        let cfg_path = self.blob_path(&config_digest)?;
        let cfg: ImageConfigDoc = serde_json::from_slice(&read_bounded(&cfg_path, MAX_JSON)?)
            .map_err(|e| ImageError::Bad {
                path: cfg_path,
                msg: e.to_string(),
            })?;
        Ok(ResolvedImage {
            digest,
            layers,
            config: cfg.config.unwrap_or_default(),
        })
    }

    /// All images grouped by digest.
    pub fn list_images(&self) -> std::result::Result<Vec<ImageInfo>, ImageError> {
        let refs = self.load_refs()?;
        let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, d) in refs {
            let e = by.entry(d).or_default();
            if !n.starts_with('@') {
                e.push(n);
            }
        }
        let mut out = Vec::new();
        for (d, mut names) in by {
            names.sort();
            let size = self.load_manifest(&d).map(|m| m.2).unwrap_or(0);
            out.push(ImageInfo {
                names,
                digest: d,
                size,
            });
        }
        Ok(out)
    }

    /// The data dir this store lives in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(crate) fn tmp(&self) -> std::result::Result<TempDir, ImageError> {
        self.tempdir()
    }

    pub(crate) fn finish_pull(
        &self,
        names: &[String],
        manifest_digest: &str,
    ) -> std::result::Result<ImageInfo, ImageError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.unpack_image(manifest_digest)?;
        self.commit_image(names, manifest_digest)
    }

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    pub(crate) fn adopt_blob_file(
        &self,
        src: &Path,
        digest: &str,
    ) -> std::result::Result<(), ImageError> {
        self.put_blob_file(src, digest).map(|_| ())
    }
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A temp dir removed on drop.
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Images for ImageStore {
    fn import(&self, path: &Path) -> Result<Vec<ImageInfo>> {
        Ok(self.import_path(path)?)
    }

    fn pull(
        &self,
        reference: &str,
        creds: Option<&RegistryCredentials>,
        progress: &mut dyn FnMut(&PullProgress),
    ) -> Result<ImageInfo> {
        Ok(pull::pull(self, reference, creds, progress)?)
    }

    fn list(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.list_images()?)
    }

    fn import_dropped(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.import_dropped_files()?)
    }
}

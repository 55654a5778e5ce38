//! Pulling from an OCI registry with oci-client.
//!
//! Loopback registries (`127.0.0.0/8`, `localhost`, `[::1]`) are spoken to over plain http,
//! everything else over https. Blobs stream to temp files and enter the store only after
//! their digest is verified.

use std::path::PathBuf;

use super::{normalize_reference, ImageError, ImageStore};
use crate::traits::{ImageInfo, PullProgress, RegistryCredentials};

/// Whether `registry` (host[:port]) is on loopback and so gets plain http.
pub fn is_loopback_registry(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// Pull `reference` into `store`.
pub fn pull(
    store: &ImageStore,
    reference: &str,
    creds: Option<&RegistryCredentials>,
    progress: &mut dyn FnMut(&PullProgress),
) -> Result<ImageInfo, ImageError> {
    let name = normalize_reference(reference)?;
    let parsed: oci_client::Reference = name.parse().map_err(|e: oci_client::ParseError| {
        ImageError::BadReference(reference.to_string(), e.to_string())
    })?;
    let perr = |msg: String| ImageError::Pull {
        reference: reference.to_string(),
        msg,
    };
    let registry = parsed.resolve_registry().to_string();
    let protocol = if is_loopback_registry(&registry) {
        oci_client::client::ClientProtocol::Http
    } else {
        oci_client::client::ClientProtocol::Https
    };
    crate::tls::install_crypto_provider();
    let client = oci_client::Client::new(oci_client::client::ClientConfig {
        protocol,
        ..Default::default()
    });
    let auth = match creds {
        Some(c) => oci_client::secrets::RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => oci_client::secrets::RegistryAuth::Anonymous,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| perr(format!("tokio runtime: {e}")))?;
    let tmp = store.tmp()?;
    let (manifest_digest, names) = rt.block_on(async {
        let (manifest, digest, config) = client
            .pull_manifest_and_config(&parsed, &auth)
            .await
            .map_err(|e| perr(e.to_string()))?;
        if manifest.layers.len() > super::MAX_LAYERS {
            return Err(perr(format!("more than {} layers", super::MAX_LAYERS)));
        }
        store.put_blob_bytes(config.as_bytes(), &manifest.config.digest)?;
        let total: u64 = manifest.layers.iter().map(|l| l.size.max(0) as u64).sum();
        let mut done_bytes = 0u64;
        for (i, layer) in manifest.layers.iter().enumerate() {
            if !store.has_blob(&layer.digest) {
                let path: PathBuf = tmp.0.join(format!("layer{i}"));
                let file = tokio::fs::File::create(&path)
                    .await
                    .map_err(|e| ImageError::Io {
                        path: path.clone(),
                        source: e,
                    })?;
                client
                    .pull_blob(&parsed, layer, file)
                    .await
                    .map_err(|e| perr(e.to_string()))?;
                store.adopt_blob_file(&path, &layer.digest)?;
            }
            done_bytes += layer.size.max(0) as u64;
            progress(&PullProgress {
                layers_done: i + 1,
                layers_total: manifest.layers.len(),
                bytes_done: done_bytes,
                bytes_total: total,
            });
        }
        // Store the manifest exactly as served (fetched by digest), so its digest holds.
        let by_digest = oci_client::Reference::with_digest(
            parsed.registry().to_string(),
            parsed.repository().to_string(),
            digest.clone(),
        );
        let (raw, raw_digest) = client
            .pull_manifest_raw(
                &by_digest,
                &auth,
                &[
                    oci_client::manifest::OCI_IMAGE_MEDIA_TYPE,
                    oci_client::manifest::IMAGE_MANIFEST_MEDIA_TYPE,
                ],
            )
            .await
            .map_err(|e| perr(e.to_string()))?;
        if raw_digest != digest {
            return Err(perr(format!(
                "manifest digest changed during pull: {digest} then {raw_digest}"
            )));
        }
        store.put_blob_bytes(&raw, &digest)?;
        Ok::<_, ImageError>((digest, vec![name.clone()]))
    })?;
    store.finish_pull(&names, &manifest_digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for (r, want) in [
            ("127.0.0.1:5000", true),
            ("127.8.9.1", true),
            ("localhost:80", true),
            ("[::1]:5000", true),
            ("registry.example.com", false),
            ("128.0.0.1:5000", false),
            ("docker.io", false),
        ] {
            assert_eq!(is_loopback_registry(r), want, "{r}");
        }
    }
}

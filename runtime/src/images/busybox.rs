//! Images without the internet: an OCI image layout built from Debian's busybox-static,
//! written with this crate's own code. `kommit up` makes the template's image with it when
//! the node has none; tests and the benchmark use it too.

use sha2::{Digest, Sha256};
use std::io::{self, Write};
use std::path::Path;

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn dir_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(mode);
    h.set_size(0);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, path, io::empty())
}

/// Append a regular file.
pub fn file_entry(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_size(data.len() as u64);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, path, data)
}

/// Append a symlink.
pub fn symlink_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_size(0);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    b.append_link(&mut h, path, target)
}

/// An uncompressed tar of a busybox rootfs: `/bin/busybox`, applet symlinks, the usual empty
/// directories, and `/etc/passwd` with root and nobody (65534).
pub fn busybox_rootfs_tar() -> io::Result<Vec<u8>> {
    let bin = std::fs::read(BUSYBOX).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{BUSYBOX}: {e} (apt-get install -y busybox-static)"),
        )
    })?;
    let list = std::process::Command::new(BUSYBOX).arg("--list").output()?;
    let mut applets: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .collect();
    applets.sort();
    applets.dedup();
    let mut b = tar::Builder::new(Vec::new());
    for (d, m) in [
        ("bin", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var", 0o755),
    ] {
        dir_entry(&mut b, d, m)?;
    }
    file_entry(&mut b, "bin/busybox", 0o755, &bin)?;
    for a in &applets {
        if a != "busybox" {
            symlink_entry(&mut b, &format!("bin/{a}"), "busybox")?;
        }
    }
    file_entry(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    file_entry(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;
    b.into_inner()
}

/// Write an OCI image layout at `dir` holding one image with `layers` (uncompressed tars,
/// bottom first; each stored gzip-compressed), tagged `ref_name`.
pub fn write_oci_layout(
    dir: &Path,
    ref_name: &str,
    layers: &[Vec<u8>],
    cmd: &[&str],
) -> io::Result<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs)?;
    let put = |data: &[u8]| -> io::Result<String> {
        let d = sha(data);
        std::fs::write(blobs.join(&d[7..]), data)?;
        Ok(d)
    };
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    for l in layers {
        diff_ids.push(sha(l));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(l)?;
        let z = gz.finish()?;
        let d = put(&z)?;
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": z.len()}));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin:/usr/bin:/sbin"], "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let cbytes = serde_json::to_vec(&config)?;
    let cd = put(&cbytes)?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cbytes.len()},
        "layers": descs,
    });
    let mbytes = serde_json::to_vec(&manifest)?;
    let md = put(&mbytes)?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mbytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": ref_name}}],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(md)
}

/// A busybox OCI layout at `dir` tagged `ref_name`.
pub fn busybox_layout(dir: &Path, ref_name: &str) -> io::Result<String> {
    write_oci_layout(dir, ref_name, &[busybox_rootfs_tar()?], &["sh"])
}

//! Image store: import sources, sharing, digests, whiteouts and refusal of escaping layers.
use kommit_runtime::images::{ImageError, ImageStore};
use kommit_runtime::testutil::{
    busybox_layout, busybox_rootfs_tar, file_entry, symlink_entry, write_oci_layout,
};
use kommit_tests::runtime_support::{skip_privileged, LinuxHarness};
use std::path::Path;

fn tar_of(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().expect("tar")
}

/// A tar entry with a raw (unchecked) name, to build hostile layers.
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, data).expect("append");
}

fn tar_dir(src: &Path, dst: &Path) {
    let f = std::fs::File::create(dst).expect("create");
    let mut b = tar::Builder::new(f);
    b.append_dir_all(".", src).expect("tar dir");
    b.finish().expect("finish");
}

#[test]
fn import_layout_archive_and_docker_save_share_layers() {
    let d = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&d.path().join("data")).expect("store");
    let layout = d.path().join("layout");
    let digest = busybox_layout(&layout, "kommit.test/busybox:1").expect("layout");
    let imgs = store.import_path(&layout).expect("import layout");
    assert_eq!(imgs[0].digest, digest);
    assert_eq!(imgs[0].names, vec!["kommit.test/busybox:1".to_string()]);

    // The same layout as an OCI archive, under a different tag: same layers, same digest.
    let archive = d.path().join("busy.tar");
    tar_dir(&layout, &archive);
    let again = store.import_path(&archive).expect("import archive");
    assert_eq!(again[0].digest, digest);

    // docker save: manifest.json + config + uncompressed layer tars, with an extra layer.
    let ds = d.path().join("ds");
    std::fs::create_dir_all(ds.join("l1")).expect("mkdir");
    std::fs::create_dir_all(ds.join("l2")).expect("mkdir");
    let base = busybox_rootfs_tar().expect("rootfs");
    let extra = tar_of(|b| file_entry(b, "hello.txt", 0o644, b"hi\n").expect("entry"));
    std::fs::write(ds.join("l1/layer.tar"), &base).expect("write");
    std::fs::write(ds.join("l2/layer.tar"), &extra).expect("write");
    use sha2::Digest;
    let diff = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let cfg = serde_json::json!({"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[diff(&base), diff(&extra)]}});
    std::fs::write(
        ds.join("config.json"),
        serde_json::to_vec(&cfg).expect("json"),
    )
    .expect("write");
    let manifest = serde_json::json!([{"Config":"config.json","RepoTags":["docker.test/extra:2"],"Layers":["l1/layer.tar","l2/layer.tar"]}]);
    std::fs::write(
        ds.join("manifest.json"),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .expect("write");
    let dtar = d.path().join("docker-save.tar");
    tar_dir(&ds, &dtar);
    let dimg = store.import_path(&dtar).expect("import docker save");
    assert_eq!(dimg[0].names, vec!["docker.test/extra:2".to_string()]);

    let names: Vec<String> = store
        .list_images()
        .expect("list")
        .into_iter()
        .flat_map(|i| i.names)
        .collect();
    assert!(
        names.contains(&"kommit.test/busybox:1".to_string())
            && names.contains(&"docker.test/extra:2".to_string()),
        "{names:?}"
    );
    // The busybox layer is unpacked once and shared: 2 layer dirs for 3 imports.
    let layers = std::fs::read_dir(d.path().join("data/content/layers"))
        .expect("layers")
        .count();
    assert_eq!(layers, 2);
    let r = store.resolve("docker.test/extra:2").expect("resolve");
    assert_eq!(r.layers.len(), 2);
    assert!(r.layers[1].join("hello.txt").exists());
    assert!(matches!(
        store.resolve("nope:1"),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn corrupted_blob_is_refused() {
    let d = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&d.path().join("data")).expect("store");
    let layout = d.path().join("layout");
    let tar = tar_of(|b| file_entry(b, "a", 0o644, b"a").expect("entry"));
    write_oci_layout(&layout, "x:1", &[tar], &["sh"]).expect("layout");
    // Flip a byte in the (only) layer blob.
    let blobs: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("blobs")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    let layer = blobs
        .iter()
        .find(|p| {
            std::fs::read(p)
                .map(|b| b.starts_with(&[0x1f, 0x8b]))
                .unwrap_or(false)
        })
        .expect("gz layer");
    let mut b = std::fs::read(layer).expect("read");
    let n = b.len();
    b[n - 5] ^= 0xff;
    std::fs::write(layer, b).expect("write");
    let e = store
        .import_path(&layout)
        .expect_err("corrupt blob must fail");
    assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
}

fn import_layer(tar: Vec<u8>) -> Result<(), ImageError> {
    let d = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&d.path().join("data")).expect("store");
    let layout = d.path().join("layout");
    write_oci_layout(&layout, "evil:1", &[tar], &["sh"]).expect("layout");
    store.import_path(&layout).map(|_| ())
}

#[test]
fn hostile_layers_are_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    let target = outside.path().display().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", tar_of(|b| raw_entry(b, "../../escape.txt", b"x"))),
        (
            "absolute",
            tar_of(|b| raw_entry(b, "/abs-escape.txt", b"x")),
        ),
        (
            "through absolute symlink",
            tar_of(|b| {
                symlink_entry(b, "link", &target).expect("symlink");
                raw_entry(b, "link/pwned", b"x");
            }),
        ),
        (
            "through relative symlink",
            tar_of(|b| {
                symlink_entry(b, "up", "../../../../../../../../..").expect("symlink");
                raw_entry(b, "up/tmp/pwned2", b"x");
            }),
        ),
    ];
    for (name, t) in cases {
        let e = import_layer(t).expect_err(name);
        assert!(matches!(e, ImageError::BadLayer { .. }), "{name}: {e}");
    }
    assert_eq!(
        std::fs::read_dir(outside.path()).expect("read").count(),
        0,
        "something was written through the symlink"
    );
    assert!(!Path::new("/abs-escape.txt").exists() && !Path::new("/tmp/pwned2").exists());
}

#[test]
fn auto_import_of_dropped_tarballs() {
    let d = tempfile::tempdir().expect("tempdir");
    let store = ImageStore::open(&d.path().join("data")).expect("store");
    let layout = d.path().join("layout");
    busybox_layout(&layout, "dropped.test/busybox:7").expect("layout");
    tar_dir(&layout, &d.path().join("data/images/busybox.tar"));
    let first = store.import_dropped_files().expect("auto import");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].names, vec!["dropped.test/busybox:7".to_string()]);
    assert!(
        store.import_dropped_files().expect("again").is_empty(),
        "re-imported an unchanged tarball"
    );
    store.resolve("dropped.test/busybox:7").expect("resolvable");
}

#[test]
fn whiteouts_hide_lower_files_in_a_running_container() {
    use kommit_runtime::spec::{ContainerSpec, LogOptions, PodSpec};
    use kommit_runtime::ContainerRuntime;
    let Some(h) = LinuxHarness::new(Path::new(env!("CARGO_BIN_EXE_kommit-runtime-helper"))) else {
        return;
    };
    if skip_privileged("whiteouts") {
        return;
    }
    let layout = h.dir.path().join("wh-layout");
    let base = busybox_rootfs_tar().expect("rootfs");
    let l1 = tar_of(|b| {
        file_entry(b, "etc/gone", 0o644, b"x").expect("e");
        file_entry(b, "data/a", 0o644, b"a").expect("e");
        file_entry(b, "data/b", 0o644, b"b").expect("e");
    });
    let l2 = tar_of(|b| {
        file_entry(b, "etc/.wh.gone", 0o644, b"").expect("e");
        file_entry(b, "data/.wh..wh..opq", 0o644, b"").expect("e");
        file_entry(b, "data/c", 0o644, b"c").expect("e");
    });
    write_oci_layout(&layout, "wh.test/img:1", &[base, l1, l2], &["sh"]).expect("layout");
    h.rt.images().import_path(&layout).expect("import");
    h.rt.create_pod(&PodSpec::new("wh")).expect("pod");
    let c = ContainerSpec::new(
        "c",
        "wh.test/img:1",
        &["sh", "-c", "ls /data; ls /etc/gone || echo gone-hidden"],
    );
    h.rt.create_container("wh", &c).expect("create");
    h.rt.start_container("wh", "c").expect("start");
    let st =
        h.rt.wait_container("wh", "c", std::time::Duration::from_secs(30))
            .expect("wait");
    assert_eq!(st.exit_code, Some(0));
    let mut out = Vec::new();
    h.rt.logs("wh", "c", &LogOptions::default(), &mut out)
        .expect("logs");
    let out = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains("No such file"))
        .collect();
    assert_eq!(lines, vec!["c", "gone-hidden"], "{out}");
    h.rt.remove_pod("wh").expect("remove");
}

#[test]
fn watcher_imports_tarballs_as_they_are_dropped() {
    let d = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(ImageStore::open(&d.path().join("data")).expect("store"));
    let _watch = kommit_runtime::images::watch::auto_import(store.clone()).expect("watch");
    let layout = d.path().join("layout");
    busybox_layout(&layout, "watched.test/busybox:3").expect("layout");
    // Write elsewhere, then move in (as an operator's `mv` would).
    tar_dir(&layout, &d.path().join("staged.tar"));
    std::fs::rename(
        d.path().join("staged.tar"),
        d.path().join("data/images/watched.tar"),
    )
    .expect("rename");
    let t0 = std::time::Instant::now();
    while store.resolve("watched.test/busybox:3").is_err() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "dropped tarball was not imported"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

//! The volume cases: what a container sees of its mounts, checked from inside it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::cases::{check, ctr, pod, rt_err};
use super::{CaseResult, Harness, Probe};
use crate::spec::{ContainerSpec, Mount};
use crate::traits::{Medium, ProjectedFile, RuntimeError};

fn files(v: &[(&str, Vec<u8>)]) -> BTreeMap<String, ProjectedFile> {
    v.iter()
        .map(|(p, d)| {
            (
                p.to_string(),
                ProjectedFile {
                    data: d.clone(),
                    mode: 0o644,
                },
            )
        })
        .collect()
}

fn mount(source: &std::path::Path, destination: &str, read_only: bool) -> Mount {
    Mount {
        source: source.to_path_buf(),
        destination: destination.into(),
        read_only,
    }
}

/// exec `p` in `pod/main`; (exit code, stdout, stderr).
fn run(h: &dyn Harness, pod: &str, p: &Probe) -> Result<(i32, String, String), String> {
    let out = h
        .runtime()
        .exec(pod, "main", &p.argv(), Duration::from_secs(20))
        .map_err(rt_err("exec"))?;
    Ok((
        out.exit_code,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn start(h: &dyn Harness, pod_id: &str, spec: &ContainerSpec) -> CaseResult {
    let rt = h.runtime();
    rt.create_container(pod_id, spec)
        .map_err(rt_err("create_container"))?;
    rt.start_container(pod_id, &spec.name)
        .map_err(rt_err("start_container"))
}

/// A projected volume mounted read-only is readable from inside (nested files too, and a
/// single file bound on its own) and cannot be written; an emptyDir mounted read-write takes
/// writes the host sees. Mounts that escape or exceed the bounds are refused at create.
pub fn volume_mounts(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    let vols = h.volumes();
    rt.create_pod(&pod("vm", "vm"))
        .map_err(rt_err("create_pod"))?;
    let cfg = files(&[("a", b"alpha\n".to_vec()), ("sub/c", b"gamma\n".to_vec())]);
    let (cfg_dir, changed) = vols
        .project("vm", "config", &cfg)
        .map_err(rt_err("project"))?;
    check(changed, || {
        "a new projected volume reported no change".into()
    })?;
    let scratch = vols
        .empty_dir("vm", "scratch", Medium::Disk, None)
        .map_err(rt_err("empty_dir"))?;
    let mut c = ctr(h, "main", &Probe::Sleeper);
    c.mounts = vec![
        mount(&cfg_dir, "/etc/config", true),
        mount(&cfg_dir.join("a"), "/opt/one/alpha.txt", true),
        mount(&scratch, "/scratch", false),
    ];
    for (bad, why) in [
        (
            vec![mount(&cfg_dir, "etc/config", true)],
            "a relative destination",
        ),
        (
            vec![mount(&cfg_dir, "/etc/../../x", true)],
            "`..` in the destination",
        ),
        (
            vec![mount(&cfg_dir, "/proc/x", true)],
            "a destination under /proc",
        ),
        (
            vec![mount(&cfg_dir.join("nope"), "/x", true)],
            "a missing source",
        ),
        (
            vec![mount(std::path::Path::new("rel"), "/x", true)],
            "a relative source",
        ),
        (
            (0..65)
                .map(|i| mount(&cfg_dir, &format!("/m{i}"), true))
                .collect(),
            "65 mounts",
        ),
    ] {
        let mut b = ctr(h, "bad", &Probe::Sleeper);
        b.mounts = bad;
        match rt.create_container("vm", &b) {
            Err(RuntimeError::InvalidSpec(_)) => {}
            other => return Err(format!("create with {why}: {other:?}, want InvalidSpec")),
        }
    }
    start(h, "vm", &c)?;
    for (path, want) in [
        ("/etc/config/a", "alpha\n"),
        ("/etc/config/sub/c", "gamma\n"),
        ("/opt/one/alpha.txt", "alpha\n"),
    ] {
        let (code, out, err) = run(h, "vm", &Probe::Cat(path.into()))?;
        check(code == 0 && out == want, || {
            format!("cat {path}: exit {code}, {out:?} {err:?}; want {want:?}")
        })?;
    }
    for path in ["/etc/config/new", "/etc/config/a", "/opt/one/alpha.txt"] {
        let (code, _, err) = run(h, "vm", &Probe::Write(path.into()))?;
        check(code != 0, || {
            format!("writing {path} on a read-only mount succeeded")
        })?;
        check(err.contains("Read-only"), || {
            format!("writing {path}: {err:?}")
        })?;
    }
    let (code, _, err) = run(h, "vm", &Probe::Write("/scratch/f".into()))?;
    check(code == 0, || format!("writing the emptyDir: {err:?}"))?;
    let on_host = std::fs::read(scratch.join("f")).map_err(|e| format!("host side: {e}"))?;
    check(on_host == b"written\n", || {
        format!("the host sees {on_host:?}")
    })?;
    rt.remove_pod("vm").map_err(rt_err("remove_pod"))?;
    vols.remove_pod_volumes("vm")
        .map_err(rt_err("remove_pod_volumes"))
}

const SNAPSHOT_BYTES: usize = 64 << 10;

fn version(n: u8) -> BTreeMap<String, ProjectedFile> {
    let body = vec![b'a' + n; SNAPSHOT_BYTES];
    files(&[("a", body.clone()), ("b", body)])
}

/// A projected volume updated while a container runs: the container sees the update without
/// a restart, and every read of the volume's `..data` gives one whole version (both files
/// full and of the same version), never a mix. Identical content changes nothing.
pub fn projected_update_is_atomic(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    let vols = h.volumes();
    rt.create_pod(&pod("upd", "upd"))
        .map_err(rt_err("create_pod"))?;
    let (dir, _) = vols
        .project("upd", "cfg", &version(0))
        .map_err(rt_err("project"))?;
    let (_, changed) = vols
        .project("upd", "cfg", &version(0))
        .map_err(rt_err("project"))?;
    check(!changed, || {
        "projecting identical content reported a change".into()
    })?;
    let mut c = ctr(h, "main", &Probe::Sleeper);
    c.mounts = vec![mount(&dir, "/cfg", true)];
    start(h, "upd", &c)?;
    const UPDATES: u8 = 12;
    let done = std::sync::atomic::AtomicBool::new(false);
    let (reads, writer) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let r = (1..=UPDATES).try_for_each(|n| {
                std::thread::sleep(Duration::from_millis(40));
                match vols.project("upd", "cfg", &version(n)) {
                    Ok((_, true)) => Ok(()),
                    Ok((_, false)) => Err(format!("update {n} reported no change")),
                    Err(e) => Err(format!("update {n}: {e}")),
                }
            });
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            r
        });
        let mut reads = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            reads.push(run(h, "upd", &Probe::Snapshot("/cfg".into())));
        }
        (reads, writer.join())
    });
    writer.map_err(|_| "writer panicked".to_string())??;
    let mut ok = 0;
    let mut last = 0u8;
    for r in reads {
        let (code, out, err) = r?;
        if code != 0 {
            // A reader may enter a version the writer then retires; it fails, never mixes.
            check(err.contains("No such file"), || {
                format!("snapshot read failed: {err:?}")
            })?;
            continue;
        }
        let b = out.as_bytes();
        let v = b.first().copied().unwrap_or(0);
        check(
            b.len() == 2 * SNAPSHOT_BYTES && b.iter().all(|x| *x == v),
            || {
                format!(
                    "a read mixed versions: {} bytes, versions {:?}",
                    b.len(),
                    b.iter().collect::<std::collections::BTreeSet<_>>()
                )
            },
        )?;
        check(v >= last, || "a read went back to an older version".into())?;
        last = v;
        ok += 1;
    }
    check(ok > 0, || "no snapshot read succeeded".into())?;
    let (code, out, _) = run(h, "upd", &Probe::Cat("/cfg/a".into()))?;
    let want = char::from(b'a' + UPDATES);
    check(
        code == 0 && out.len() == SNAPSHOT_BYTES && out.chars().all(|c| c == want),
        || {
            format!(
                "after the updates the container reads {} bytes starting {:?}",
                out.len(),
                out.chars().next()
            )
        },
    )?;
    rt.remove_pod("upd").map_err(rt_err("remove_pod"))?;
    vols.remove_pod_volumes("upd")
        .map_err(rt_err("remove_pod_volumes"))
}

/// A Memory emptyDir is a tmpfs of its size limit inside the container; removing the pod's
/// volumes leaves no mount and no directory, and is idempotent.
pub fn memory_empty_dir_and_removal(h: &mut dyn Harness) -> CaseResult {
    let before = h.leaks();
    let rt = h.runtime();
    let vols = h.volumes();
    rt.create_pod(&pod("mem", "mem"))
        .map_err(rt_err("create_pod"))?;
    let limit = 8u64 << 20;
    let dir = vols
        .empty_dir("mem", "shm", Medium::Memory, Some(limit))
        .map_err(rt_err("empty_dir"))?;
    let again = vols
        .empty_dir("mem", "shm", Medium::Memory, Some(limit))
        .map_err(rt_err("empty_dir again"))?;
    check(again == dir, || {
        format!("empty_dir moved: {dir:?} then {again:?}")
    })?;
    check(
        vols.empty_dir("mem", "shm", Medium::Disk, None).is_err(),
        || "the same emptyDir was handed out with another medium".into(),
    )?;
    let disk: PathBuf = vols
        .empty_dir("mem", "disk", Medium::Disk, None)
        .map_err(rt_err("empty_dir"))?;
    let (cfg, _) = vols
        .project("mem", "cfg", &files(&[("k", b"v".to_vec())]))
        .map_err(rt_err("project"))?;
    let mut c = ctr(h, "main", &Probe::Sleeper);
    c.mounts = vec![
        mount(&dir, "/shm", false),
        mount(&disk, "/disk", false),
        mount(&cfg, "/cfg", true),
    ];
    start(h, "mem", &c)?;
    let (code, line, err) = run(h, "mem", &Probe::MountOf("/shm".into()))?;
    let fields: Vec<&str> = line.split_whitespace().collect();
    let want = format!("size={}k", limit / 1024);
    check(
        code == 0
            && fields.get(2) == Some(&"tmpfs")
            && fields
                .get(3)
                .is_some_and(|o| o.split(',').any(|x| x == want)),
        || format!("/shm in /proc/mounts: exit {code}, {line:?} {err:?}; want a tmpfs with {want}"),
    )?;
    let (code, _, err) = run(h, "mem", &Probe::Write("/shm/f".into()))?;
    check(code == 0, || {
        format!("writing the memory emptyDir: {err:?}")
    })?;
    let during = h.leaks();
    check(
        during.mounts > before.mounts && during.volumes > before.volumes,
        || format!("no tmpfs or volume seen on the host: {before:?} -> {during:?}"),
    )?;
    check(
        vols.pods_with_volumes()
            .map_err(rt_err("pods_with_volumes"))?
            == ["mem"],
        || "pods_with_volumes does not list mem".into(),
    )?;
    rt.remove_pod("mem").map_err(rt_err("remove_pod"))?;
    vols.remove_pod_volumes("mem")
        .map_err(rt_err("remove_pod_volumes"))?;
    vols.remove_pod_volumes("mem")
        .map_err(rt_err("remove_pod_volumes again"))?;
    check(!dir.exists() && !disk.exists() && !cfg.exists(), || {
        "volume directories remain".into()
    })?;
    check(
        vols.pods_with_volumes()
            .map_err(rt_err("pods_with_volumes"))?
            .is_empty(),
        || "pods_with_volumes still lists pods".into(),
    )?;
    let after = h.leaks();
    check(after == before, || {
        format!("leaked: before {before:?}, after {after:?}")
    })
}

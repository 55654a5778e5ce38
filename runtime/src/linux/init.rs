//! The container init and exec helpers. Each runs in a freshly exec'd, single-threaded
//! process, so namespace and mount changes never happen on a thread of a multi-threaded
//! program.
//!
//! The container init is the child the (single-threaded, re-executed) shim clones into new
//! pid and mount namespaces: pid 1 there, already inside the pod's net/ipc/uts namespaces.
//! It joins the cgroup, makes propagation private, mounts its writable layer (a tmpfs private
//! to its mount namespace) and the overlay rootfs, /proc (with masked and read-only paths), a
//! read-only /sys, a minimal /dev, the pod's /etc files and the container's volume mounts
//! ([`super::mounts`]), pivots, drops privileges and execs the workload. Failures before exec
//! are written to a pipe for the shim.
//!
//! `shim exec <pod-dir> <name> -- CMD...` joins a running container's namespaces and cgroup,
//! forks (so the child is inside the pid namespace), applies the same identity and runs CMD.

use caps::{CapSet, Capability, CapsHashSet};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::state::{read_json, read_state, CtrPaths, CtrState, InitConfig, POD_ETC_FILES};

/// The default capability set of Docker and containerd.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from containers (containerd's defaults).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in containers.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn e<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> String {
    move |err| format!("{what}: {err}")
}

/// Run in the child the shim cloned into fresh pid and mount namespaces: set up the
/// container and exec its workload. Returns only on failure, with the message for the shim.
pub fn init_in_child(cfg: &InitConfig) -> String {
    match init_inner(cfg) {
        Ok(never) => match never {},
        Err(msg) => msg,
    }
}

enum Never {}

/// Write `0` to each file: moves the calling (single-threaded) process into the cgroup.
fn join_cgroup(files: &[PathBuf]) -> Result<(), String> {
    for p in files {
        std::fs::write(p, "0").map_err(e(format!("joining cgroup {}", p.display())))?;
    }
    Ok(())
}

/// The pod's `/etc` files, opened.
type EtcFiles = Vec<(&'static str, std::fs::File)>;

/// The container's writable layer: a tmpfs mounted over the pod directory, visible only in
/// this mount namespace, holding the overlay's upper and work dirs and its mount point. It
/// goes away with the namespace when the container ends, so removing a container has no
/// layer to delete, and what the container writes is charged to its own memory cgroup. The
/// tmpfs is capped at `writable_layer_bytes` (ephemeral-storage limit, else memory limit, else
/// 1 GiB), so a container filling its root gets ENOSPC, never the node's memory.
/// The pod's `/etc` files under the tmpfs are opened first and bound from the open files.
/// Returns the merged root and the `/etc` files.
fn mount_rootfs(cfg: &InitConfig) -> Result<(PathBuf, EtcFiles), String> {
    let mut etc = Vec::new();
    for f in POD_ETC_FILES {
        let p = cfg.pod_dir.join(f);
        etc.push((f, std::fs::File::open(&p).map_err(e(p.display()))?));
    }
    let top = cfg
        .lower
        .first()
        .ok_or_else(|| "image has no layers".to_string())?;
    let top_md = std::fs::metadata(top).map_err(e(top.display()))?;
    let scratch = &cfg.pod_dir;
    let size = match cfg.writable_layer_bytes {
        0 => crate::spec::DEFAULT_WRITABLE_LAYER_BYTES,
        n => n,
    };
    let opts = format!("mode=0700,size={size}");
    mount(
        Some("tmpfs"),
        scratch,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(opts.as_str()),
    )
    .map_err(e(format!(
        "mounting the writable layer on {}",
        scratch.display()
    )))?;
    let (upper, work, root) = (scratch.join("u"), scratch.join("w"), scratch.join("r"));
    for d in [&upper, &work, &root] {
        std::fs::create_dir(d).map_err(e(format!("mkdir {}", d.display())))?;
    }
    // The merged root takes the upper dir's owner and mode: give it the image's (mkdir
    // honours the umask, and the image root may not be 0755 root:root).
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(
        &upper,
        std::fs::Permissions::from_mode(top_md.mode() & 0o7777),
    )
    .map_err(e(format!("chmod {}", upper.display())))?;
    std::os::unix::fs::chown(&upper, Some(top_md.uid()), Some(top_md.gid()))
        .map_err(e(format!("chown {}", upper.display())))?;
    let lower = cfg
        .lower
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(e(format!("mounting overlay on {}", root.display())))?;
    Ok((root, etc))
}

fn init_inner(cfg: &InitConfig) -> Result<Never, String> {
    join_cgroup(&cfg.cgroup_join)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(e("making / private"))?;
    // Volume sources are opened before the writable layer hides anything under the pod dir.
    let volumes = super::mounts::open_sources(&cfg.mounts)?;
    let (rootfs, etc) = mount_rootfs(cfg)?;
    let root = &rootfs;
    for d in ["proc", "sys", "dev", "etc", "tmp"] {
        let p = root.join(d);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::create_dir_all(&p).map_err(e(format!("mkdir {}", p.display())))?;
        }
    }
    // /etc is resolved inside the root: an image whose /etc is a symlink cannot make the
    // files below land (or be created) on the host.
    let etc_dir = super::mounts::secure_join(root, "/etc")?;
    std::fs::create_dir_all(&etc_dir).map_err(e(format!("mkdir {}", etc_dir.display())))?;
    for (f, file) in &etc {
        let target = etc_dir.join(f);
        if std::fs::symlink_metadata(&target)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
        {
            std::fs::remove_file(&target).map_err(e(format!("rm {}", target.display())))?;
        }
        if !target.exists() {
            std::fs::write(&target, b"").map_err(e(format!("create {}", target.display())))?;
        }
        use std::os::fd::AsRawFd;
        let src = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        bind(&src, &target)?;
    }
    drop(etc);
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(
        Some("proc"),
        &root.join("proc"),
        Some("proc"),
        nosuid,
        None::<&str>,
    )
    .map_err(e("mounting /proc"))?;
    mount(
        Some("sysfs"),
        &root.join("sys"),
        Some("sysfs"),
        nosuid | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(e("mounting /sys"))?;
    setup_dev(&root.join("dev"))?;
    super::mounts::bind_all(root, &volumes)?;
    drop(volumes);
    if !cfg.privileged {
        for m in MASKED_PATHS {
            let p = root.join(m.trim_start_matches('/'));
            match std::fs::symlink_metadata(&p) {
                Ok(md) if md.is_dir() => mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some("size=0"),
                )
                .map_err(e(format!("masking {m}")))?,
                Ok(_) => bind(Path::new("/dev/null"), &p)?,
                Err(_) => {}
            }
        }
        for r in READONLY_PATHS {
            let p = root.join(r.trim_start_matches('/'));
            if p.exists() {
                bind(&p, &p)?;
                mount(
                    None::<&str>,
                    &p,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | nosuid,
                    None::<&str>,
                )
                .map_err(e(format!("read-only {r}")))?;
            }
        }
    }
    nix::unistd::chdir(root).map_err(e("chdir rootfs"))?;
    nix::unistd::pivot_root(".", ".").map_err(e("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(e("detaching old root"))?;
    nix::unistd::chdir("/").map_err(e("chdir /"))?;
    if cfg.read_only {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(e("remounting / read-only"))?;
    }
    become_workload(cfg, &cfg.args)
}

fn bind(src: &Path, dst: &Path) -> Result<(), String> {
    mount(
        Some(src),
        dst,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(e(format!("bind {} on {}", src.display(), dst.display())))
}

fn setup_dev(dev: &Path) -> Result<(), String> {
    mount(
        Some("tmpfs"),
        dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )
    .map_err(e("mounting /dev"))?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let p = dev.join(name);
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(e(format!("mknod /dev/{name}")))?;
        // mknod honours the umask; set the mode explicitly.
        nix::sys::stat::fchmodat(
            nix::fcntl::AT_FDCWD,
            &p,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(e(format!("chmod /dev/{name}")))?;
    }
    let pts = dev.join("pts");
    std::fs::create_dir(&pts).map_err(e("mkdir /dev/pts"))?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(e("mounting /dev/pts"))?;
    let shm = dev.join("shm");
    std::fs::create_dir(&shm).map_err(e("mkdir /dev/shm"))?;
    mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(e("mounting /dev/shm"))?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(link))
            .map_err(e(format!("symlink /dev/{link}")))?;
    }
    Ok(())
}

/// Parse capability names (with or without `CAP_`).
pub fn parse_caps(names: &[String]) -> Result<CapsHashSet, String> {
    let mut set = CapsHashSet::new();
    for n in names {
        let full = if n.starts_with("CAP_") {
            n.clone()
        } else {
            format!("CAP_{n}")
        };
        set.insert(Capability::from_str(&full).map_err(|_| format!("unknown capability {n}"))?);
    }
    Ok(set)
}

/// Find `prog` on PATH (from the container env) inside the current root.
fn resolve(prog: &str, env: &[String]) -> Result<PathBuf, String> {
    if prog.contains('/') {
        return Ok(PathBuf::from(prog));
    }
    let path = env
        .iter()
        .find_map(|kv| kv.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    for dir in path.split(':') {
        let p = Path::new(dir).join(prog);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!("executable {prog:?} not found in PATH {path}"))
}

/// Drop to the container identity and exec `args`. Used by init and exec.
fn become_workload(cfg: &InitConfig, args: &[String]) -> Result<Never, String> {
    if args.is_empty() {
        return Err("no command to run (image has no entrypoint or cmd and none was given)".into());
    }
    // The shim blocks SIGCHLD and ignores SIGPIPE/SIGHUP/SIGINT; both survive exec, so give
    // the workload default signal handling.
    nix::sys::signal::SigSet::all()
        .thread_unblock()
        .map_err(e("unblocking signals"))?;
    for s in [
        nix::sys::signal::Signal::SIGPIPE,
        nix::sys::signal::Signal::SIGHUP,
        nix::sys::signal::Signal::SIGINT,
    ] {
        // SAFETY: SigDfl installs no handler code.
        unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigDfl) }
            .map_err(e("resetting signal"))?;
    }
    if let Err(x) = nix::unistd::chdir(cfg.cwd.as_str()) {
        if cfg.read_only {
            return Err(format!("chdir {}: {x}", cfg.cwd));
        }
        std::fs::create_dir_all(&cfg.cwd).map_err(e(format!("mkdir {}", cfg.cwd)))?;
        nix::unistd::chdir(cfg.cwd.as_str()).map_err(e(format!("chdir {}", cfg.cwd)))?;
    }
    let keep = if cfg.privileged {
        caps::all()
    } else {
        parse_caps(&cfg.caps)?
    };
    for c in caps::all() {
        if !keep.contains(&c) && caps::has_cap(None, CapSet::Bounding, c).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, c)
                .map_err(e(format!("dropping {c} from bounding set")))?;
        }
    }
    let gid = nix::unistd::Gid::from_raw(cfg.gid);
    let uid = nix::unistd::Uid::from_raw(cfg.uid);
    nix::unistd::setgroups(&[gid]).map_err(e("setgroups"))?;
    nix::unistd::setresgid(gid, gid, gid).map_err(e(format!("setgid {}", cfg.gid)))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(e(format!("setuid {}", cfg.uid)))?;
    if cfg.uid == 0 {
        let avail: CapsHashSet = keep
            .iter()
            .copied()
            .filter(|c| caps::has_cap(None, CapSet::Bounding, *c).unwrap_or(false))
            .collect();
        caps::set(None, CapSet::Effective, &avail).map_err(e("setting effective caps"))?;
        caps::set(None, CapSet::Permitted, &avail).map_err(e("setting permitted caps"))?;
        caps::set(None, CapSet::Inheritable, &avail).map_err(e("setting inheritable caps"))?;
    }
    nix::sys::prctl::set_no_new_privs().map_err(e("no_new_privs"))?;
    let prog = resolve(&args[0], &cfg.env)?;
    let cprog = CString::new(prog.as_os_str().as_encoded_bytes()).map_err(e("program path"))?;
    let cargs = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(e("argument"))?;
    let cenv = cfg
        .env
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(e("environment"))?;
    if !cfg.privileged && cfg.seccomp == crate::spec::Seccomp::RuntimeDefault {
        super::seccomp::install_default(&keep)?;
    }
    match nix::unistd::execve(&cprog, &cargs, &cenv) {
        Err(x) => Err(format!("exec {}: {x}", prog.display())),
        Ok(never) => match never {},
    }
}

/// Entry of `shim exec POD_DIR NAME -- CMD...`: returns the command's exit code
/// (128+signal), or 126/127 on setup errors.
pub fn exec_main(pod_dir: &Path, name: &str, args: &[String]) -> i32 {
    match exec_inner(pod_dir, name, args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("kommit exec: {msg}");
            126
        }
    }
}

fn exec_inner(pod_dir: &Path, name: &str, args: &[String]) -> Result<i32, String> {
    use nix::sched::{setns, CloneFlags};
    crate::spec::validate_name("container", name)?;
    let paths = CtrPaths::new(pod_dir, name);
    let cfg: InitConfig = read_json(&paths.config).map_err(|x| x.to_string())?;
    let st: Option<CtrState> = read_state(&paths).map_err(|x| x.to_string())?;
    let pid = st
        .and_then(|s| s.pid)
        .ok_or_else(|| format!("container {} is not running", cfg.name))?;
    let mut fds = Vec::new();
    for (ns, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let p = format!("/proc/{pid}/ns/{ns}");
        fds.push((std::fs::File::open(&p).map_err(e(&p))?, flag, ns));
    }
    join_cgroup(&cfg.cgroup_join)?;
    for (f, flag, ns) in &fds {
        setns(f, *flag).map_err(e(format!("setns {ns}")))?;
    }
    drop(fds);
    // SAFETY: this helper is single-threaded (fresh exec, no threads started).
    match unsafe { nix::unistd::fork() }.map_err(e("fork"))? {
        nix::unistd::ForkResult::Child => {
            let msg = match become_workload(&cfg, args) {
                Ok(never) => match never {},
                Err(m) => m,
            };
            eprintln!("kommit exec: {msg}");
            std::process::exit(127);
        }
        nix::unistd::ForkResult::Parent { child } => {
            use nix::sys::wait::{waitpid, WaitStatus};
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, c)) => return Ok(c),
                    Ok(WaitStatus::Signaled(_, s, _)) => return Ok(128 + s as i32),
                    Ok(_) => continue,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(x) => return Err(format!("waitpid: {x}")),
                }
            }
        }
    }
}

/// Bring the loopback interface of the current network namespace up.
pub fn loopback_up() -> std::io::Result<()> {
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)?;
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    use std::os::fd::AsRawFd;
    // SAFETY: valid socket fd and a properly initialised ifreq for SIOCGIFFLAGS.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled in.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above, for SIOCSIFFLAGS.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

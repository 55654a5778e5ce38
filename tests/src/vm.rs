//! Runs a test binary inside a throwaway QEMU guest whose kernel mounts cgroup v2 with every
//! controller, for the hosts this machine is not (it runs cgroup v1, hybrid).
//!
//! The guest boots Debian's `linux-image-amd64` kernel with a small initramfs (busybox and the
//! virtio/9p modules), mounts the host's `/` read-only over virtio-9p, puts a tmpfs on `/run`
//! with `TMPDIR=/run/tmp` (the host's `/tmp` stays visible: a checkout may live there, and the
//! command runs from the host's paths), mounts cgroup2 on `/sys/fs/cgroup`, and runs one command. Modules the command
//! needs later (overlay, veth, bridge, nf_tables) load on demand from the host's
//! `/lib/modules`. Software emulation (TCG) is used so the run does not depend on nested KVM.
//! The guest's serial console is the only channel back: the command's output and a last
//! `KOMMIT-VM-EXIT=<code>` line.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Set in the guest's environment, so a test binary knows it runs inside the VM.
pub const GUEST_ENV: &str = "KOMMIT_VM_GUEST";
/// Set to `1` on the host to skip VM tests.
pub const SKIP_ENV: &str = "KOMMIT_SKIP_VM";
/// The marker line the guest prints last.
const EXIT_MARK: &str = "KOMMIT-VM-EXIT=";
/// Modules the initramfs loads, in dependency order, to mount the host over virtio-9p.
/// A module built into the kernel is skipped.
const BOOT_MODULES: [&str; 10] = [
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "9pnet",
    "9pnet_virtio",
    "netfs",
    "fscache",
    "9p",
];

/// Whether this process runs inside the guest.
pub fn in_guest() -> bool {
    std::env::var(GUEST_ENV).as_deref() == Ok("1")
}

/// Whether the environment asks to skip VM tests (printed, never silent).
pub fn skip_vm(what: &str) -> bool {
    if std::env::var(SKIP_ENV).as_deref() == Ok("1") {
        eprintln!("SKIPPED {what}: {SKIP_ENV}=1");
        return true;
    }
    false
}

/// A bootable kernel: the image and its version (whose modules are under /lib/modules).
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `/boot/vmlinuz-<version>`.
    pub image: PathBuf,
    /// The release string.
    pub version: String,
}

/// The newest `/boot/vmlinuz-*` whose modules are installed.
pub fn find_kernel() -> Result<Kernel, String> {
    let mut found: Vec<Kernel> = std::fs::read_dir("/boot")
        .map_err(|e| format!("/boot: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            Path::new("/lib/modules")
                .join(&version)
                .join("kernel")
                .is_dir()
                .then(|| Kernel {
                    image: e.path(),
                    version,
                })
        })
        .collect();
    found.sort_by(|a, b| a.version.cmp(&b.version));
    found.pop().ok_or_else(|| {
        "no /boot/vmlinuz-* with modules under /lib/modules \
         (apt-get install -y linux-image-amd64 qemu-system-x86)"
            .to_string()
    })
}

/// The file of module `name` for `kernel`, or None when it is built in.
fn module_file(kernel: &Kernel, name: &str) -> Result<Option<PathBuf>, String> {
    let out = Command::new("modinfo")
        .args(["-k", &kernel.version, "-n", name])
        .output()
        .map_err(|e| format!("modinfo: {e} (apt-get install -y kmod)"))?;
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        return Err(format!(
            "modinfo -k {} {name}: {}",
            kernel.version,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((!path.is_empty() && path != "(builtin)").then(|| PathBuf::from(path)))
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The initramfs `/init`: mount the host, move to it, run `command` with `env`, print the
/// exit marker. When init exits the kernel panics, and `panic=-1` with `-no-reboot` ends QEMU.
pub fn init_script(env: &[(&str, &str)], command: &[String]) -> String {
    let mut guest = String::from(
        "mount -t sysfs sys /sys; mount -t cgroup2 cgroup2 /sys/fs/cgroup; \
         mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; \
         mount -t tmpfs shm /dev/shm; mount -t tmpfs run /run; \
         mkdir -p /run/tmp; export TMPDIR=/run/tmp; \
         export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; \
         ip link set lo up; cd /run/tmp; ",
    );
    for (k, v) in env {
        let _ = write!(guest, "export {k}={}; ", shell_quote(v));
    }
    let cmd: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
    let _ = write!(guest, "{} 2>&1; echo {EXIT_MARK}$?", cmd.join(" "));
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mkdir -p /proc /sys /dev /host\n\
         mount -t proc proc /proc\n\
         mount -t devtmpfs dev /dev\n\
         for m in /m/*.ko; do insmod \"$m\" || echo \"insmod $m failed\"; done\n\
         mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=524288,cache=loose host /host \
           || {{ echo '{EXIT_MARK}9p-mount-failed'; exit 1; }}\n\
         mount --move /proc /host/proc\n\
         mount --move /dev /host/dev\n\
         exec switch_root /host /bin/sh -c {}\n",
        shell_quote(&guest)
    )
}

/// What a guest run printed, and how its command exited.
#[derive(Debug)]
pub struct GuestRun {
    /// Everything the serial console printed.
    pub console: String,
    /// The command's exit code, None when the marker never came (boot failure, timeout).
    pub exit: Option<i32>,
    /// Wall time of the whole boot-run-poweroff cycle.
    pub elapsed: Duration,
}

/// Boots a guest that runs `command` (paths are the host's: the guest sees the host's `/`)
/// with `env` set, and returns its console once it powers off or `timeout` passes.
pub fn run_in_guest(
    command: &[String],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<GuestRun, String> {
    let kernel = find_kernel()?;
    let dir = tempfile::Builder::new()
        .prefix("kommit-vm-")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let root = dir.path().join("initramfs");
    for sub in ["bin", "m"] {
        std::fs::create_dir_all(root.join(sub)).map_err(|e| format!("{sub}: {e}"))?;
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox"))
        .map_err(|e| format!("/bin/busybox: {e} (apt-get install -y busybox-static)"))?;
    for (i, name) in BOOT_MODULES.iter().enumerate() {
        if let Some(file) = module_file(&kernel, name)? {
            let to = root.join("m").join(format!("{i:02}-{name}.ko"));
            std::fs::copy(&file, &to).map_err(|e| format!("{}: {e}", file.display()))?;
        }
    }
    let init = root.join("init");
    std::fs::write(&init, init_script(env, command)).map_err(|e| format!("init: {e}"))?;
    set_mode(&init, 0o755)?;
    let initrd = dir.path().join("initrd.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd {} && find . | /bin/busybox cpio -o -H newc > {} 2>/dev/null",
            shell_quote(&root.to_string_lossy()),
            shell_quote(&initrd.to_string_lossy())
        ))
        .status()
        .map_err(|e| format!("cpio: {e}"))?;
    if !status.success() {
        return Err(format!("building the initramfs failed: {status}"));
    }
    let serial = dir.path().join("serial.log");
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35,accel=tcg", "-cpu", "max", "-m", "2048"])
        .args(["-smp", "2", "-nodefaults", "-no-reboot", "-display", "none"])
        .arg("-kernel")
        .arg(&kernel.image)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=3"])
        .args([
            "-virtfs",
            "local,path=/,mount_tag=host,security_model=passthrough,readonly=on,multidevs=remap",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("qemu-system-x86_64: {e} (apt-get install -y qemu-system-x86)"))?;
    let timed_out = loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            break false;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let console = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    if timed_out {
        return Err(format!(
            "the guest did not power off within {timeout:?}; console:\n{console}"
        ));
    }
    Ok(GuestRun {
        exit: exit_code(&console),
        console,
        elapsed: started.elapsed(),
    })
}

fn set_mode(p: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", p.display()))
}

/// The exit code in the last marker line of `console`.
pub fn exit_code(console: &str) -> Option<i32> {
    console.lines().rev().find_map(|l| {
        let at = l.find(EXIT_MARK)?;
        l[at + EXIT_MARK.len()..].trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_marker_is_parsed_from_the_last_line_that_has_one() {
        let cases = [
            ("a\nKOMMIT-VM-EXIT=0\n[ 9.1] Kernel panic\n", Some(0)),
            ("KOMMIT-VM-EXIT=1\nKOMMIT-VM-EXIT=101\n", Some(101)),
            ("\r\n[  1.0] x KOMMIT-VM-EXIT=3\r\n", Some(3)),
            ("KOMMIT-VM-EXIT=9p-mount-failed\n", None),
            ("booting\n", None),
        ];
        for (console, want) in cases {
            assert_eq!(exit_code(console), want, "{console:?}");
        }
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}

//! The default seccomp filter of containers (`seccompProfile: RuntimeDefault`).
//!
//! It is the container runtimes' default profile (Docker's and containerd's, which the kubelet
//! applies with `--seccomp-default`): an allowlist of the system calls ordinary programs make,
//! everything else answered with `EPERM`, and a few groups allowed only when the container
//! keeps the capability that governs them (`mount`, `unshare` and `setns` with `SYS_ADMIN`,
//! `reboot` with `SYS_BOOT`, and so on). Two differences, both stricter: `ptrace` and
//! `process_vm_readv`/`writev` need `SYS_PTRACE` (Docker allows them on kernels from 4.8),
//! and a 32-bit system call on a 64-bit kernel kills the process (seccompiler's filters
//! check the architecture first; x32 calls match nothing and get `EPERM`). The kernel keyring (`add_key`, `keyctl`, `request_key`) is never allowed:
//! it is not namespaced. `clone3` answers `ENOSYS` without `SYS_ADMIN`, so that C libraries
//! fall back to `clone`, whose namespace flags the filter can inspect.
//!
//! The table covers x86_64; on other architectures a container asking for the default
//! filter fails to start with an error that says so (use `Unconfined` there).

use caps::{Capability, CapsHashSet};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};
use std::collections::BTreeMap;

/// The `clone` flags that create namespaces: without `SYS_ADMIN`, `clone` is allowed only
/// when none of them is set.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// `AF_VSOCK`: sockets of this family reach the hypervisor, not the pod's network.
const AF_VSOCK: u64 = 40;

/// The `personality` values programs legitimately set (Linux, `UNAME26`, `READ_IMPLIES_EXEC`
/// combinations, and the query `0xffffffff`).
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The two filters to install, in order: the allowlist, then the one that makes `clone3`
/// answer `ENOSYS` (of two filters returning an errno, the kernel reports the one installed
/// last). Fails on architectures without a table.
pub fn default_programs(keep: &CapsHashSet) -> Result<Vec<BpfProgram>, String> {
    if table::ALWAYS.is_empty() {
        return Err(format!(
            "kommit has no default seccomp profile for {}: set securityContext.seccompProfile.type: Unconfined",
            std::env::consts::ARCH
        ));
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e| format!("seccomp on {}: {e:?}", std::env::consts::ARCH))?;
    let allow = SeccompFilter::new(
        allowed(keep)?,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| format!("building the seccomp filter: {e}"))?;
    let mut programs =
        vec![BpfProgram::try_from(allow)
            .map_err(|e| format!("compiling the seccomp filter: {e}"))?];
    if !keep.contains(&Capability::CAP_SYS_ADMIN) {
        let clone3 = SeccompFilter::new(
            BTreeMap::from([(libc::SYS_clone3, vec![])]),
            SeccompAction::Allow,
            SeccompAction::Errno(libc::ENOSYS as u32),
            arch,
        )
        .map_err(|e| format!("building the clone3 filter: {e}"))?;
        programs.push(
            BpfProgram::try_from(clone3)
                .map_err(|e| format!("compiling the clone3 filter: {e}"))?,
        );
    }
    Ok(programs)
}

/// Installs the default filter in the calling thread, which must have set `no_new_privs`
/// (the container init does, just before). Call it last before `execve`.
pub fn install_default(keep: &CapsHashSet) -> Result<(), String> {
    for program in default_programs(keep)? {
        seccompiler::apply_filter(&program).map_err(|e| format!("installing seccomp: {e}"))?;
    }
    Ok(())
}

/// The allowed system calls, each with its conditions (none: always allowed), for a
/// container that keeps `keep`.
pub fn allowed(keep: &CapsHashSet) -> Result<BTreeMap<i64, Vec<SeccompRule>>, String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in table::ALWAYS.iter().chain(table::UNNAMED) {
        rules.insert(*nr, Vec::new());
    }
    for (cap, calls) in table::BY_CAPABILITY {
        if keep.contains(cap) {
            for nr in *calls {
                rules.insert(*nr, Vec::new());
            }
        }
    }
    let cond = |arg: u8, op: SeccompCmpOp, value: u64| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| format!("seccomp rule: {e}"))
    };
    rules.insert(libc::SYS_socket, vec![cond(0, SeccompCmpOp::Ne, AF_VSOCK)?]);
    let personality = PERSONALITIES
        .iter()
        .map(|p| cond(0, SeccompCmpOp::Eq, *p))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_personality, personality);
    if !keep.contains(&Capability::CAP_SYS_ADMIN) {
        // clone without namespace flags (SYS_ADMIN allows every clone: see the table).
        rules.insert(
            libc::SYS_clone,
            vec![cond(0, SeccompCmpOp::MaskedEq(CLONE_NAMESPACE_FLAGS), 0)?],
        );
    }
    Ok(rules)
}

#[cfg(target_arch = "x86_64")]
mod table {
    use caps::Capability;

    /// System call numbers by their `libc::SYS_*` names.
    macro_rules! calls {
        ($($name:ident),* $(,)?) => { &[$(libc::$name),*] };
    }

    /// Allowed whatever the capabilities (the kernel still checks them).
    pub const ALWAYS: &[i64] = calls![
        SYS_accept,
        SYS_accept4,
        SYS_access,
        SYS_adjtimex,
        SYS_alarm,
        SYS_arch_prctl,
        SYS_bind,
        SYS_brk,
        SYS_capget,
        SYS_capset,
        SYS_chdir,
        SYS_chmod,
        SYS_chown,
        SYS_clock_adjtime,
        SYS_clock_getres,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_close,
        SYS_close_range,
        SYS_connect,
        SYS_copy_file_range,
        SYS_creat,
        SYS_dup,
        SYS_dup2,
        SYS_dup3,
        SYS_epoll_create,
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_epoll_wait,
        SYS_eventfd,
        SYS_eventfd2,
        SYS_execve,
        SYS_execveat,
        SYS_exit,
        SYS_exit_group,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_fadvise64,
        SYS_fallocate,
        SYS_fanotify_mark,
        SYS_fchdir,
        SYS_fchmod,
        SYS_fchmodat,
        SYS_fchown,
        SYS_fchownat,
        SYS_fcntl,
        SYS_fdatasync,
        SYS_fgetxattr,
        SYS_flistxattr,
        SYS_flock,
        SYS_fork,
        SYS_fremovexattr,
        SYS_fsetxattr,
        SYS_fstat,
        SYS_fstatfs,
        SYS_fsync,
        SYS_ftruncate,
        SYS_futex,
        SYS_futex_waitv,
        SYS_futimesat,
        SYS_getcpu,
        SYS_getcwd,
        SYS_getdents,
        SYS_getdents64,
        SYS_getegid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getgroups,
        SYS_getitimer,
        SYS_getpeername,
        SYS_getpgid,
        SYS_getpgrp,
        SYS_getpid,
        SYS_getppid,
        SYS_getpriority,
        SYS_getrandom,
        SYS_getresgid,
        SYS_getresuid,
        SYS_getrlimit,
        SYS_get_robust_list,
        SYS_getrusage,
        SYS_getsid,
        SYS_getsockname,
        SYS_getsockopt,
        SYS_get_thread_area,
        SYS_gettid,
        SYS_gettimeofday,
        SYS_getuid,
        SYS_getxattr,
        SYS_inotify_add_watch,
        SYS_inotify_init,
        SYS_inotify_init1,
        SYS_inotify_rm_watch,
        SYS_io_cancel,
        SYS_ioctl,
        SYS_io_destroy,
        SYS_io_getevents,
        SYS_ioprio_get,
        SYS_ioprio_set,
        SYS_io_setup,
        SYS_io_submit,
        SYS_io_uring_enter,
        SYS_io_uring_register,
        SYS_io_uring_setup,
        SYS_kill,
        SYS_landlock_add_rule,
        SYS_landlock_create_ruleset,
        SYS_landlock_restrict_self,
        SYS_lchown,
        SYS_lgetxattr,
        SYS_link,
        SYS_linkat,
        SYS_listen,
        SYS_listxattr,
        SYS_llistxattr,
        SYS_lremovexattr,
        SYS_lseek,
        SYS_lsetxattr,
        SYS_lstat,
        SYS_madvise,
        SYS_membarrier,
        SYS_memfd_create,
        SYS_memfd_secret,
        SYS_mincore,
        SYS_mkdir,
        SYS_mkdirat,
        SYS_mknod,
        SYS_mknodat,
        SYS_mlock,
        SYS_mlock2,
        SYS_mlockall,
        SYS_mmap,
        SYS_modify_ldt,
        SYS_mprotect,
        SYS_mq_getsetattr,
        SYS_mq_notify,
        SYS_mq_open,
        SYS_mq_timedreceive,
        SYS_mq_timedsend,
        SYS_mq_unlink,
        SYS_mremap,
        SYS_msgctl,
        SYS_msgget,
        SYS_msgrcv,
        SYS_msgsnd,
        SYS_msync,
        SYS_munlock,
        SYS_munlockall,
        SYS_munmap,
        SYS_name_to_handle_at,
        SYS_nanosleep,
        SYS_newfstatat,
        SYS_open,
        SYS_openat,
        SYS_openat2,
        SYS_pause,
        SYS_pidfd_open,
        SYS_pidfd_send_signal,
        SYS_pipe,
        SYS_pipe2,
        SYS_pkey_alloc,
        SYS_pkey_free,
        SYS_pkey_mprotect,
        SYS_poll,
        SYS_ppoll,
        SYS_prctl,
        SYS_pread64,
        SYS_preadv,
        SYS_preadv2,
        SYS_prlimit64,
        SYS_process_mrelease,
        SYS_pselect6,
        SYS_pwrite64,
        SYS_pwritev,
        SYS_pwritev2,
        SYS_read,
        SYS_readahead,
        SYS_readlink,
        SYS_readlinkat,
        SYS_readv,
        SYS_recvfrom,
        SYS_recvmmsg,
        SYS_recvmsg,
        SYS_remap_file_pages,
        SYS_removexattr,
        SYS_rename,
        SYS_renameat,
        SYS_renameat2,
        SYS_restart_syscall,
        SYS_rmdir,
        SYS_rseq,
        SYS_rt_sigaction,
        SYS_rt_sigpending,
        SYS_rt_sigprocmask,
        SYS_rt_sigqueueinfo,
        SYS_rt_sigreturn,
        SYS_rt_sigsuspend,
        SYS_rt_sigtimedwait,
        SYS_rt_tgsigqueueinfo,
        SYS_sched_getaffinity,
        SYS_sched_getattr,
        SYS_sched_getparam,
        SYS_sched_get_priority_max,
        SYS_sched_get_priority_min,
        SYS_sched_getscheduler,
        SYS_sched_rr_get_interval,
        SYS_sched_setaffinity,
        SYS_sched_setattr,
        SYS_sched_setparam,
        SYS_sched_setscheduler,
        SYS_sched_yield,
        SYS_seccomp,
        SYS_select,
        SYS_semctl,
        SYS_semget,
        SYS_semop,
        SYS_semtimedop,
        SYS_sendfile,
        SYS_sendmmsg,
        SYS_sendmsg,
        SYS_sendto,
        SYS_setfsgid,
        SYS_setfsuid,
        SYS_setgid,
        SYS_setgroups,
        SYS_setitimer,
        SYS_setpgid,
        SYS_setpriority,
        SYS_setregid,
        SYS_setresgid,
        SYS_setresuid,
        SYS_setreuid,
        SYS_setrlimit,
        SYS_set_robust_list,
        SYS_setsid,
        SYS_setsockopt,
        SYS_set_thread_area,
        SYS_set_tid_address,
        SYS_setuid,
        SYS_setxattr,
        SYS_shmat,
        SYS_shmctl,
        SYS_shmdt,
        SYS_shmget,
        SYS_shutdown,
        SYS_sigaltstack,
        SYS_signalfd,
        SYS_signalfd4,
        SYS_socketpair,
        SYS_splice,
        SYS_stat,
        SYS_statfs,
        SYS_statx,
        SYS_symlink,
        SYS_symlinkat,
        SYS_sync,
        SYS_sync_file_range,
        SYS_syncfs,
        SYS_sysinfo,
        SYS_tee,
        SYS_tgkill,
        SYS_time,
        SYS_timer_create,
        SYS_timer_delete,
        SYS_timer_getoverrun,
        SYS_timer_gettime,
        SYS_timer_settime,
        SYS_timerfd_create,
        SYS_timerfd_gettime,
        SYS_timerfd_settime,
        SYS_times,
        SYS_tkill,
        SYS_truncate,
        SYS_umask,
        SYS_uname,
        SYS_unlink,
        SYS_unlinkat,
        SYS_utime,
        SYS_utimensat,
        SYS_utimes,
        SYS_vfork,
        SYS_vmsplice,
        SYS_wait4,
        SYS_waitid,
        SYS_write,
        SYS_writev,
    ];

    /// Allowed whatever the capabilities, by number: the `libc` crate has no name for them.
    pub const UNNAMED: &[i64] = &[
        333, // io_pgetevents
    ];

    /// Allowed only to containers that keep the capability.
    pub const BY_CAPABILITY: &[(Capability, &[i64])] = &[
        (
            Capability::CAP_SYS_ADMIN,
            calls![
                SYS_bpf,
                SYS_clone,
                SYS_clone3,
                SYS_fanotify_init,
                SYS_fsconfig,
                SYS_fsmount,
                SYS_fsopen,
                SYS_fspick,
                SYS_lookup_dcookie,
                SYS_mount,
                SYS_mount_setattr,
                SYS_move_mount,
                SYS_open_tree,
                SYS_perf_event_open,
                SYS_quotactl,
                SYS_quotactl_fd,
                SYS_setdomainname,
                SYS_sethostname,
                SYS_setns,
                SYS_syslog,
                SYS_umount2,
                SYS_unshare,
            ],
        ),
        (
            Capability::CAP_DAC_READ_SEARCH,
            calls![SYS_open_by_handle_at],
        ),
        (Capability::CAP_SYS_BOOT, calls![SYS_reboot]),
        (Capability::CAP_SYS_CHROOT, calls![SYS_chroot]),
        (
            Capability::CAP_SYS_MODULE,
            calls![SYS_delete_module, SYS_init_module, SYS_finit_module],
        ),
        (Capability::CAP_SYS_PACCT, calls![SYS_acct]),
        (
            Capability::CAP_SYS_PTRACE,
            calls![
                SYS_kcmp,
                SYS_pidfd_getfd,
                SYS_process_madvise,
                SYS_process_vm_readv,
                SYS_process_vm_writev,
                SYS_ptrace,
            ],
        ),
        (Capability::CAP_SYS_RAWIO, calls![SYS_iopl, SYS_ioperm]),
        (
            Capability::CAP_SYS_TIME,
            calls![SYS_settimeofday, SYS_clock_settime],
        ),
        (Capability::CAP_SYS_TTY_CONFIG, calls![SYS_vhangup]),
        (
            Capability::CAP_SYS_NICE,
            calls![
                SYS_get_mempolicy,
                SYS_mbind,
                SYS_set_mempolicy,
                SYS_set_mempolicy_home_node
            ],
        ),
        (Capability::CAP_SYSLOG, calls![SYS_syslog]),
        (Capability::CAP_BPF, calls![SYS_bpf]),
        (Capability::CAP_PERFMON, calls![SYS_perf_event_open]),
    ];
}

#[cfg(not(target_arch = "x86_64"))]
mod table {
    use caps::Capability;

    // No table for this architecture: `default_programs` refuses with an error that says so.
    pub const ALWAYS: &[i64] = &[];
    pub const UNNAMED: &[i64] = &[];
    pub const BY_CAPABILITY: &[(Capability, &[i64])] = &[];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(names: &[Capability]) -> CapsHashSet {
        names.iter().copied().collect()
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn capabilities_widen_the_allowlist_and_the_keyring_stays_closed() {
        let none = allowed(&caps(&[])).expect("rules");
        for nr in [
            libc::SYS_read,
            libc::SYS_execve,
            libc::SYS_futex,
            libc::SYS_clone,
        ] {
            assert!(none.contains_key(&nr), "{nr} allowed by default");
        }
        let denied = [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_ptrace,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_bpf,
            libc::SYS_reboot,
            libc::SYS_kexec_load,
            libc::SYS_clone3,
        ];
        for nr in denied {
            assert!(!none.contains_key(&nr), "{nr} denied without capabilities");
        }
        // clone is conditional on its flags without SYS_ADMIN, unconditional with it.
        assert_eq!(none[&libc::SYS_clone].len(), 1);
        let admin = allowed(&caps(&[Capability::CAP_SYS_ADMIN])).expect("rules");
        for nr in [
            libc::SYS_mount,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_clone3,
        ] {
            assert!(admin.contains_key(&nr), "{nr} allowed with SYS_ADMIN");
        }
        assert!(admin[&libc::SYS_clone].is_empty());
        assert!(!admin.contains_key(&libc::SYS_ptrace));
        let tracer = allowed(&caps(&[Capability::CAP_SYS_PTRACE])).expect("rules");
        assert!(tracer.contains_key(&libc::SYS_ptrace));
        assert!(!tracer.contains_key(&libc::SYS_mount));
        let all = allowed(&caps::all()).expect("rules");
        for nr in [libc::SYS_keyctl, libc::SYS_add_key, libc::SYS_request_key] {
            assert!(
                !all.contains_key(&nr),
                "{nr} denied even with every capability"
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn programs_compile_with_and_without_sys_admin() {
        let plain = default_programs(&caps(&[])).expect("programs");
        assert_eq!(plain.len(), 2, "the allowlist and the clone3 filter");
        assert!(plain.iter().all(|p| !p.is_empty()));
        let admin = default_programs(&caps(&[Capability::CAP_SYS_ADMIN])).expect("programs");
        assert_eq!(admin.len(), 1, "clone3 is allowed with SYS_ADMIN");
    }
}

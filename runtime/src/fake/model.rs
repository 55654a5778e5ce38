//! What each probe does in the fake, computed from the spec as the kernel would.

use std::collections::BTreeSet;

use crate::conformance::Probe;
use crate::spec::{ContainerSpec, LogLine, PodSpec, Stream};

/// Capability bit mask for names.
pub(super) fn cap_mask(names: &[String]) -> u64 {
    names
        .iter()
        .filter_map(|n| n.parse::<caps::Capability>().ok())
        .fold(0u64, |m, c| m | (1u64 << c.index()))
}

pub(super) fn effective_caps(spec: &ContainerSpec) -> Vec<String> {
    let norm = |c: &String| {
        if c.starts_with("CAP_") {
            c.clone()
        } else {
            format!("CAP_{c}")
        }
    };
    let mut caps: BTreeSet<String> = crate::linux::init::DEFAULT_CAPS
        .iter()
        .map(|s| s.to_string())
        .collect();
    caps.extend(spec.security.add_capabilities.iter().map(norm));
    let drop: Vec<String> = spec.security.drop_capabilities.iter().map(norm).collect();
    if drop.iter().any(|d| d == "CAP_ALL") {
        caps.clear();
    }
    caps.retain(|c| !drop.contains(c));
    caps.into_iter().collect()
}

pub(super) fn out(line: &str) -> LogLine {
    LogLine {
        stream: Stream::Stdout,
        line: line.to_string(),
    }
}

pub(super) fn err_line(line: &str) -> LogLine {
    LogLine {
        stream: Stream::Stderr,
        line: line.to_string(),
    }
}

/// What a probe does at start: (log lines, Some((exit code, reason)) if it ends at once).
pub(super) fn start_model(
    pod: &PodSpec,
    c: &ContainerSpec,
    probe: &Option<Probe>,
) -> (Vec<LogLine>, Option<(i32, &'static str)>) {
    let s = &c.security;
    let uid = s.run_as_user.unwrap_or(0);
    match probe {
        Some(Probe::Report) => {
            let caps = if uid != 0 {
                0
            } else if s.privileged {
                caps::all()
                    .iter()
                    .fold(0u64, |m, c| m | (1u64 << c.index()))
            } else {
                cap_mask(&effective_caps(c))
            };
            let mut l = vec![
                format!("host={}", pod.hostname),
                "pid=1".into(),
                format!("CapEff={caps:016x}"),
                "NoNewPrivs=1".into(),
                format!("timer_list={}", if s.privileged { "1" } else { "0" }),
                format!("keys_masked={}", if s.privileged { 0 } else { 1 }),
                format!("uid={uid}"),
                format!("gid={}", s.run_as_group.unwrap_or(0)),
                format!(
                    "cwd={}",
                    c.working_dir.clone().unwrap_or_else(|| "/".into())
                ),
                format!(
                    "env={}",
                    c.env.get("KOMMIT_PROBE").cloned().unwrap_or_default()
                ),
                format!(
                    "rootfs={}",
                    if s.read_only_root_filesystem {
                        "ro"
                    } else {
                        "rw"
                    }
                ),
                format!("procsys={}", if s.privileged { "rw" } else { "ro" }),
                "sys=ro".into(),
                format!("etchostname={}", pod.hostname),
            ];
            for d in [
                "null", "zero", "full", "random", "urandom", "tty", "pts", "shm",
            ] {
                l.push(format!("dev_{d}=yes"));
            }
            (l.iter().map(|x| out(x)).collect(), Some((0, "Completed")))
        }
        Some(Probe::Exit(n)) => (
            vec![out(&format!("out-{n}")), err_line(&format!("err-{n}"))],
            Some((*n, if *n == 0 { "Completed" } else { "Error" })),
        ),
        Some(Probe::MemHog) if c.resources.memory_limit.is_some() => {
            (vec![], Some((137, "OOMKilled")))
        }
        Some(Probe::ForkLoop) => match c.resources.pids_max {
            // pid 1 is the shell and `$(seq ...)` needs one fork: pids_max - 1 sleeps fit.
            Some(m) => {
                let mut l: Vec<LogLine> = (1..m.max(1)).map(|i| out(&format!("n={i}"))).collect();
                l.push(err_line("sh: can't fork: Resource temporarily unavailable"));
                (l, Some((2, "Error")))
            }
            None => {
                let mut l: Vec<LogLine> = (1..=200).map(|i| out(&format!("n={i}"))).collect();
                l.push(out("all-forked"));
                (l, None)
            }
        },
        Some(Probe::TermTrap) => (vec![out("ready")], None),
        Some(Probe::Ticker) => (vec![out("tick-0"), out("tick-1")], None),
        Some(Probe::Sleeper) | Some(Probe::HttpServe) | Some(Probe::MemHog) => (vec![], None),
        Some(p) => (
            vec![err_line(&format!("fake: {p:?} is an exec probe"))],
            Some((127, "Error")),
        ),
        None => (
            vec![err_line(&format!(
                "fake: command not modelled: {:?}",
                c.command
            ))],
            Some((127, "Error")),
        ),
    }
}

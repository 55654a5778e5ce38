//! The conformance cases. Each asserts only what the traits let a caller observe.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{CaseResult, Harness, Probe, DEFAULT_CAPEFF};
use crate::spec::{ContainerSpec, ContainerState, LogOptions, PodSpec};
use crate::traits::{ContainerRuntime, PodAddress, RuntimeError};

pub(super) fn check(cond: bool, msg: impl FnOnce() -> String) -> CaseResult {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

pub(super) fn rt_err(what: &str) -> impl FnOnce(RuntimeError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

pub(super) fn pod(id: &str, host: &str) -> PodSpec {
    PodSpec {
        id: id.into(),
        hostname: host.into(),
        resolv_conf: "nameserver 10.96.0.10\noptions ndots:5\n".into(),
        extra_hosts: vec![],
        labels: Default::default(),
    }
}

/// The `n`th pod address (after the gateway) in the harness's `which` pod CIDR.
pub(super) fn address(h: &dyn Harness, which: usize, n: usize) -> PodAddress {
    let cidr = h.pod_cidrs()[which];
    PodAddress {
        ip: cidr.hosts().nth(n + 1).expect("pod CIDRs are at least /29"),
        cidr,
    }
}

pub(super) fn ctr(h: &dyn Harness, name: &str, p: &Probe) -> ContainerSpec {
    let argv = p.argv();
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    ContainerSpec::new(name, &h.image(), &refs)
}

pub(super) fn logs(
    rt: &dyn ContainerRuntime,
    pod: &str,
    name: &str,
    tail: Option<usize>,
) -> Result<String, String> {
    let mut out = Vec::new();
    rt.logs(
        pod,
        name,
        &LogOptions {
            tail,
            follow: false,
        },
        &mut out,
    )
    .map_err(rt_err("logs"))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn run_to_exit(
    h: &dyn Harness,
    pod_id: &str,
    spec: &ContainerSpec,
) -> Result<crate::spec::ContainerStatus, String> {
    let rt = h.runtime();
    rt.create_container(pod_id, spec)
        .map_err(rt_err("create_container"))?;
    rt.start_container(pod_id, &spec.name)
        .map_err(rt_err("start_container"))?;
    rt.wait_container(pod_id, &spec.name, Duration::from_secs(60))
        .map_err(rt_err("wait_container"))
}

/// Own hostname and pid 1, masked /proc paths, read-only /proc/sys and /sys, NoNewPrivs and
/// a reduced CapEff, minimal /dev, /etc files; runAsUser/Group, env, workdir and a
/// read-only root filesystem.
pub fn isolation(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    rt.create_pod(&pod("iso", "iso-host"))
        .map_err(rt_err("create_pod"))?;
    let mut root = ctr(h, "root", &Probe::Report);
    root.env.insert("KOMMIT_PROBE".into(), "hello".into());
    root.working_dir = Some("/tmp".into());
    let st = run_to_exit(h, "iso", &root)?;
    check(st.exit_code == Some(0), || format!("report exited {st:?}"))?;
    let r = kv(&logs(rt, "iso", "root", None)?);
    let want = [
        ("host", "iso-host"),
        ("pid", "1"),
        ("NoNewPrivs", "1"),
        ("CapEff", DEFAULT_CAPEFF),
        ("timer_list", "0"),
        ("keys_masked", "1"),
        ("uid", "0"),
        ("gid", "0"),
        ("cwd", "/tmp"),
        ("env", "hello"),
        ("rootfs", "rw"),
        ("procsys", "ro"),
        ("sys", "ro"),
        ("etchostname", "iso-host"),
        ("dev_null", "yes"),
        ("dev_zero", "yes"),
        ("dev_full", "yes"),
        ("dev_random", "yes"),
        ("dev_urandom", "yes"),
        ("dev_tty", "yes"),
        ("dev_pts", "yes"),
        ("dev_shm", "yes"),
    ];
    for (k, v) in want {
        check(r.get(k).map(String::as_str) == Some(v), || {
            format!(
                "root container: {k} = {:?}, want {v:?}; report {r:?}",
                r.get(k)
            )
        })?;
    }
    let mut nobody = ctr(h, "nobody", &Probe::Report);
    nobody.security.run_as_user = Some(65534);
    nobody.security.run_as_group = Some(65534);
    nobody.security.read_only_root_filesystem = true;
    let st = run_to_exit(h, "iso", &nobody)?;
    check(st.exit_code == Some(0), || {
        format!("nobody report exited {st:?}")
    })?;
    let r = kv(&logs(rt, "iso", "nobody", None)?);
    for (k, v) in [
        ("uid", "65534"),
        ("gid", "65534"),
        ("CapEff", "0000000000000000"),
        ("NoNewPrivs", "1"),
        ("rootfs", "ro"),
        ("cwd", "/"),
    ] {
        check(r.get(k).map(String::as_str) == Some(v), || {
            format!(
                "nobody container: {k} = {:?}, want {v:?}; report {r:?}",
                r.get(k)
            )
        })?;
    }
    rt.remove_pod("iso").map_err(rt_err("remove_pod"))
}

/// Exit codes, reasons, times and logs (streams, tail).
pub fn exit_codes_and_logs(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    rt.create_pod(&pod("exits", "exits"))
        .map_err(rt_err("create_pod"))?;
    for (n, reason) in [(0, "Completed"), (3, "Error"), (42, "Error")] {
        let name = format!("e{n}");
        let st = run_to_exit(h, "exits", &ctr(h, &name, &Probe::Exit(n)))?;
        check(st.state == ContainerState::Exited, || {
            format!("{name}: state {st:?}")
        })?;
        check(st.exit_code == Some(n), || {
            format!("{name}: exit code {:?}, want {n}", st.exit_code)
        })?;
        check(st.reason.as_deref() == Some(reason), || {
            format!("{name}: reason {:?}, want {reason}", st.reason)
        })?;
        let (s, f) = (
            st.started_at_ms.unwrap_or(0),
            st.finished_at_ms.unwrap_or(0),
        );
        check(s > 0 && f >= s, || format!("{name}: times {s} {f}"))?;
        let all = logs(rt, "exits", &name, None)?;
        let mut lines: Vec<&str> = all.lines().collect();
        lines.sort();
        let (o, e) = (format!("out-{n}"), format!("err-{n}"));
        let mut want = vec![e.as_str(), o.as_str()];
        want.sort();
        check(lines == want, || format!("{name}: logs {all:?}"))?;
        let tail = logs(rt, "exits", &name, Some(1))?;
        check(tail.lines().count() == 1, || {
            format!("{name}: tail 1 gave {tail:?}")
        })?;
    }
    let listed = rt.list().map_err(rt_err("list"))?;
    let p = listed
        .iter()
        .find(|p| p.id == "exits")
        .ok_or("pod exits not listed")?;
    check(
        p.containers
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
            == ["e0", "e3", "e42"],
        || format!("list: {p:?}"),
    )?;
    rt.remove_container("exits", "e3")
        .map_err(rt_err("remove_container"))?;
    check(
        matches!(
            rt.inspect("exits", "e3"),
            Err(RuntimeError::NotFound { .. })
        ),
        || "removed container still inspectable".into(),
    )?;
    rt.remove_pod("exits").map_err(rt_err("remove_pod"))
}

/// A process allocating past its memory limit ends OOMKilled.
pub fn memory_limit_oom(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    rt.create_pod(&pod("oom", "oom"))
        .map_err(rt_err("create_pod"))?;
    let mut c = ctr(h, "hog", &Probe::MemHog);
    c.resources.memory_limit = Some(32 << 20);
    let st = run_to_exit(h, "oom", &c)?;
    check(st.reason.as_deref() == Some("OOMKilled"), || {
        format!("hog: {st:?}")
    })?;
    check(st.exit_code == Some(137), || {
        format!("hog exit code {:?}", st.exit_code)
    })?;
    rt.remove_pod("oom").map_err(rt_err("remove_pod"))
}

/// A fork loop is stopped by pids.max.
pub fn pids_limit(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    rt.create_pod(&pod("pids", "pids"))
        .map_err(rt_err("create_pod"))?;
    let mut c = ctr(h, "forker", &Probe::ForkLoop);
    c.resources.pids_max = Some(16);
    let st = run_to_exit(h, "pids", &c)?;
    let out = logs(rt, "pids", "forker", None)?;
    let last: u32 = out
        .lines()
        .filter_map(|l| l.strip_prefix("n="))
        .filter_map(|n| n.parse().ok())
        .max()
        .unwrap_or(0);
    check(!out.contains("all-forked"), || {
        format!("fork loop was not stopped: {out}")
    })?;
    check((1..=16).contains(&last), || {
        format!("forked up to n={last} with pids.max 16")
    })?;
    check(out.to_lowercase().contains("fork"), || {
        format!("no fork failure in logs: {out}")
    })?;
    check(st.exit_code != Some(0), || format!("forker: {st:?}"))?;
    rt.remove_pod("pids").map_err(rt_err("remove_pod"))
}

/// exec returns output and exit code; exec into a stopped container is refused.
pub fn exec(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    rt.create_pod(&pod("exec", "exec-host"))
        .map_err(rt_err("create_pod"))?;
    let c = ctr(h, "sleeper", &Probe::Sleeper);
    rt.create_container("exec", &c)
        .map_err(rt_err("create_container"))?;
    rt.start_container("exec", "sleeper")
        .map_err(rt_err("start_container"))?;
    let out = rt
        .exec(
            "exec",
            "sleeper",
            &Probe::ExecTriple.argv(),
            Duration::from_secs(20),
        )
        .map_err(rt_err("exec"))?;
    check(out.exit_code == 3, || format!("exec exit code {out:?}"))?;
    check(
        out.stdout == b"exec-out\n" && out.stderr == b"exec-err\n",
        || format!("exec output {out:?}"),
    )?;
    let out = rt
        .exec(
            "exec",
            "sleeper",
            &Probe::Hostname.argv(),
            Duration::from_secs(20),
        )
        .map_err(rt_err("exec"))?;
    check(out.stdout == b"exec-host\n" && out.exit_code == 0, || {
        format!("exec hostname {out:?}")
    })?;
    let stats = rt.stats("exec", "sleeper").map_err(rt_err("stats"))?;
    check(stats.memory_bytes > 0 && stats.pids >= 1, || {
        format!("stats of a running container: {stats:?}")
    })?;
    let st = rt
        .stop_container("exec", "sleeper", Duration::from_millis(200))
        .map_err(rt_err("stop"))?;
    check(st.state == ContainerState::Exited, || {
        format!("after stop {st:?}")
    })?;
    check(
        rt.exec(
            "exec",
            "sleeper",
            &Probe::Hostname.argv(),
            Duration::from_secs(5),
        )
        .is_err(),
        || "exec into exited container succeeded".into(),
    )?;
    rt.remove_pod("exec").map_err(rt_err("remove_pod"))
}

/// SIGTERM first; SIGKILL only after the grace period.
pub fn stop_grace(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    rt.create_pod(&pod("stop", "stop"))
        .map_err(rt_err("create_pod"))?;
    for (name, p) in [("trap", Probe::TermTrap), ("sleeper", Probe::Sleeper)] {
        rt.create_container("stop", &ctr(h, name, &p))
            .map_err(rt_err("create_container"))?;
        rt.start_container("stop", name)
            .map_err(rt_err("start_container"))?;
    }
    // Let the trap be installed before signalling.
    let t0 = Instant::now();
    while !logs(rt, "stop", "trap", None)?.contains("ready") {
        check(t0.elapsed() < Duration::from_secs(20), || {
            "trap container never became ready".into()
        })?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let st = rt
        .stop_container("stop", "trap", Duration::from_secs(20))
        .map_err(rt_err("stop trap"))?;
    let took = t.elapsed();
    check(
        st.exit_code == Some(0) && st.reason.as_deref() == Some("Completed"),
        || format!("trap: {st:?}"),
    )?;
    check(took < Duration::from_secs(10), || {
        format!("SIGTERM-handling container took {took:?} with a 20s grace")
    })?;
    check(logs(rt, "stop", "trap", None)?.contains("got-term"), || {
        "no got-term in logs".into()
    })?;
    let grace = Duration::from_millis(1500);
    let t = Instant::now();
    let st = rt
        .stop_container("stop", "sleeper", grace)
        .map_err(rt_err("stop sleeper"))?;
    let took = t.elapsed();
    check(took >= grace, || {
        format!("SIGKILL came after {took:?}, before the {grace:?} grace period")
    })?;
    check(
        st.exit_code == Some(137) && st.reason.as_deref() == Some("Killed"),
        || format!("sleeper: {st:?}"),
    )?;
    rt.remove_pod("stop").map_err(rt_err("remove_pod"))
}

/// A driver killed with SIGKILL leaves containers running; a new one finds them (with the
/// pod's labels, which the fence uses to pick at-most-once pods), execs into, logs and
/// stops them.
pub fn recover_after_kill(h: &mut dyn Harness) -> CaseResult {
    let c = ctr(h, "ticker", &Probe::Ticker);
    let spec = pod("rec", "rec-host")
        .with_labels([("kommit.dev/owner-kind", "StatefulSet"), ("app", "ticker")]);
    h.run_in_killed_driver(&spec, &c)?;
    let rt = h.runtime();
    let pods = rt.recover().map_err(rt_err("recover"))?;
    let p = pods
        .iter()
        .find(|p| p.id == "rec")
        .ok_or_else(|| format!("recover did not find pod rec: {pods:?}"))?;
    check(p.ready, || format!("pod not ready after recover: {p:?}"))?;
    check(p.labels == spec.labels, || {
        format!(
            "labels after recover: {:?}, created with {:?}",
            p.labels, spec.labels
        )
    })?;
    let cs = p
        .containers
        .iter()
        .find(|c| c.name == "ticker")
        .ok_or("ticker not found")?;
    check(cs.state == ContainerState::Running, || {
        format!("ticker after recover: {cs:?}")
    })?;
    let out = rt
        .exec(
            "rec",
            "ticker",
            &Probe::Hostname.argv(),
            Duration::from_secs(20),
        )
        .map_err(rt_err("exec"))?;
    check(out.stdout == b"rec-host\n", || {
        format!("exec after recover {out:?}")
    })?;
    let t0 = Instant::now();
    while !logs(rt, "rec", "ticker", None)?.contains("tick-1") {
        check(t0.elapsed() < Duration::from_secs(20), || {
            "no ticks logged after recover".into()
        })?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let st = rt
        .stop_container("rec", "ticker", Duration::from_millis(300))
        .map_err(rt_err("stop"))?;
    check(st.state == ContainerState::Exited, || {
        format!("after stop {st:?}")
    })?;
    rt.remove_pod("rec").map_err(rt_err("remove_pod"))
}

/// Creating and removing pods with containers and network leaves nothing behind.
pub fn removal_leaves_nothing(h: &mut dyn Harness) -> CaseResult {
    let before = h.leaks();
    let rt = h.runtime();
    rt.create_pod(&pod("rm", "rm"))
        .map_err(rt_err("create_pod"))?;
    let ns = rt.pod_netns("rm").map_err(rt_err("pod_netns"))?;
    h.network()
        .attach("rm", &ns, address(h, 0, 0), &[])
        .map_err(rt_err("attach"))?;
    for (n, p) in [("a", Probe::Sleeper), ("b", Probe::Exit(0))] {
        rt.create_container("rm", &ctr(h, n, &p))
            .map_err(rt_err("create_container"))?;
        rt.start_container("rm", n)
            .map_err(rt_err("start_container"))?;
    }
    rt.create_container("rm", &ctr(h, "never", &Probe::Sleeper))
        .map_err(rt_err("create_container"))?;
    let during = h.leaks();
    check(
        during.cgroups > before.cgroups
            && during.processes > before.processes
            && during.veths > before.veths,
        || format!("nothing seemed to be created: {before:?} -> {during:?}"),
    )?;
    h.network().detach("rm").map_err(rt_err("detach"))?;
    rt.remove_pod("rm").map_err(rt_err("remove_pod"))?;
    let after = h.leaks();
    check(after == before, || {
        format!("leaked: before {before:?}, after {after:?}")
    })
}

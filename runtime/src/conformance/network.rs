//! The network cases: assigned addresses and pods reaching each other.

use std::time::Duration;

use super::cases::{address, check, ctr, logs, pod, rt_err};
use super::{CaseResult, Harness, Probe};
use crate::traits::{PodAddress, RuntimeError};

/// Two pods reach each other by IP over the bridge; detach frees the IP.
pub fn two_pods_network(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    let net = h.network();
    let mut ips = Vec::new();
    for (i, (id, p)) in [("srv", Probe::HttpServe), ("cli", Probe::Sleeper)]
        .into_iter()
        .enumerate()
    {
        rt.create_pod(&pod(id, id)).map_err(rt_err("create_pod"))?;
        let ns = rt.pod_netns(id).map_err(rt_err("pod_netns"))?;
        let addr = address(h, 0, i);
        let ip = net.attach(id, &ns, addr, &[]).map_err(rt_err("attach"))?;
        check(ip == addr.ip, || {
            format!("attach gave {ip}, assigned {}", addr.ip)
        })?;
        check(
            net.attach(id, &ns, addr, &[])
                .map_err(rt_err("attach again"))?
                == ip,
            || "attach is not idempotent".into(),
        )?;
        ips.push(ip);
        rt.create_container(id, &ctr(h, "main", &p))
            .map_err(rt_err("create_container"))?;
        rt.start_container(id, "main")
            .map_err(rt_err("start_container"))?;
    }
    check(ips[0] != ips[1], || format!("both pods got {}", ips[0]))?;
    let srv = ips[0].to_string();
    let ping = rt
        .exec(
            "cli",
            "main",
            &Probe::Ping(srv.clone()).argv(),
            Duration::from_secs(20),
        )
        .map_err(rt_err("exec ping"))?;
    check(ping.exit_code == 0, || format!("ping {srv}: {ping:?}"))?;
    let mut got = None;
    let mut last = None;
    for _ in 0..50 {
        let w = rt
            .exec(
                "cli",
                "main",
                &Probe::Wget(srv.clone()).argv(),
                Duration::from_secs(20),
            )
            .map_err(rt_err("exec wget"))?;
        if w.exit_code == 0 {
            got = Some(w);
            break;
        }
        last = Some(w);
        std::thread::sleep(Duration::from_millis(100));
    }
    let w = got.ok_or_else(|| {
        format!(
            "wget http://{srv}:8080/ never succeeded: {last:?}; server logs: {:?}",
            logs(rt, "srv", "main", None)
        )
    })?;
    let body = String::from_utf8_lossy(&w.stdout).into_owned();
    check(
        body.starts_with("HTTP/1.") && body.trim_end().ends_with("\nhello-from-pod"),
        || format!("HTTP GET got {body:?}"),
    )?;
    for id in ["srv", "cli"] {
        net.detach(id).map_err(rt_err("detach"))?;
        check(net.ip_of(id).map_err(rt_err("ip_of"))?.is_none(), || {
            format!("{id} still has an IP after detach")
        })?;
        rt.remove_pod(id).map_err(rt_err("remove_pod"))?;
    }
    Ok(())
}

/// Addresses come from the caller: attach wires exactly the assigned IP, is idempotent for
/// the same pod and IP, and refuses an IP outside the CIDR, the gateway, an IP another pod
/// holds, a second IP for the same pod and a second CIDR while pods are attached in the
/// first; with every pod detached, the next attach moves the bridge to its CIDR, and the pod
/// reaches the new gateway.
pub fn assigned_addresses(h: &mut dyn Harness) -> CaseResult {
    let rt = h.runtime();
    let net = h.network();
    let [c0, c1] = h.pod_cidrs();
    for id in ["ada", "bob", "cyd"] {
        rt.create_pod(&pod(id, id)).map_err(rt_err("create_pod"))?;
    }
    let ns = |id: &str| rt.pod_netns(id).map_err(rt_err("pod_netns"));
    let a = address(h, 0, 0);
    let ip = net
        .attach("ada", &ns("ada")?, a, &[])
        .map_err(rt_err("attach ada"))?;
    check(ip == a.ip, || format!("ada got {ip}, assigned {}", a.ip))?;
    let again = net
        .attach("ada", &ns("ada")?, a, &[])
        .map_err(rt_err("attach ada again"))?;
    check(again == a.ip, || format!("ada re-attached as {again}"))?;
    check(
        net.ip_of("ada").map_err(rt_err("ip_of"))? == Some(a.ip),
        || "ip_of(ada) is not its assigned IP".into(),
    )?;
    let gw = crate::network::gateway(&c0).ok_or("CIDR without hosts")?;
    let refused: [(&str, &str, PodAddress, bool); 7] = [
        ("ada", "a second IP for ada", address(h, 0, 1), false),
        ("bob", "ada's IP", a, false),
        ("bob", "the gateway", PodAddress { ip: gw, cidr: c0 }, true),
        (
            "bob",
            "the network address",
            PodAddress {
                ip: c0.network(),
                cidr: c0,
            },
            true,
        ),
        (
            "bob",
            "the broadcast address",
            PodAddress {
                ip: c0.broadcast(),
                cidr: c0,
            },
            true,
        ),
        (
            "bob",
            "an IP outside the CIDR",
            PodAddress {
                ip: address(h, 1, 0).ip,
                cidr: c0,
            },
            true,
        ),
        (
            "bob",
            "a second CIDR while ada is attached",
            address(h, 1, 0),
            false,
        ),
    ];
    for (id, what, addr, spec_error) in refused {
        match net.attach(id, &ns(id)?, addr, &[]) {
            Err(RuntimeError::InvalidSpec(_)) if spec_error => {}
            Err(RuntimeError::InvalidState(_)) if !spec_error => {}
            other => {
                return Err(format!(
                    "attach {id} with {what} ({} in {}): {other:?}",
                    addr.ip, addr.cidr
                ))
            }
        }
    }
    check(net.ip_of("bob").map_err(rt_err("ip_of"))?.is_none(), || {
        "a refused attach left an IP".into()
    })?;
    let b = address(h, 0, 1);
    net.attach("bob", &ns("bob")?, b, &[])
        .map_err(rt_err("attach bob"))?;
    for id in ["ada", "bob"] {
        net.detach(id).map_err(rt_err("detach"))?;
    }
    // Nobody is attached: the bridge follows the new CIDR, and the pod reaches its gateway.
    let c = address(h, 1, 0);
    let ip = net
        .attach("cyd", &ns("cyd")?, c, &[])
        .map_err(rt_err("attach cyd in the second CIDR"))?;
    check(ip == c.ip, || format!("cyd got {ip}, assigned {}", c.ip))?;
    rt.create_container("cyd", &ctr(h, "main", &Probe::Sleeper))
        .map_err(rt_err("create_container"))?;
    rt.start_container("cyd", "main")
        .map_err(rt_err("start_container"))?;
    let gw1 = crate::network::gateway(&c1).ok_or("CIDR without hosts")?;
    let ping = rt
        .exec(
            "cyd",
            "main",
            &Probe::Ping(gw1.to_string()).argv(),
            Duration::from_secs(20),
        )
        .map_err(rt_err("exec ping"))?;
    check(ping.exit_code == 0, || {
        format!("ping of the new gateway {gw1}: {ping:?}")
    })?;
    net.detach("cyd").map_err(rt_err("detach"))?;
    for id in ["ada", "bob", "cyd"] {
        rt.remove_pod(id).map_err(rt_err("remove_pod"))?;
    }
    Ok(())
}

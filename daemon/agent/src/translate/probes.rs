//! Probes and hook handlers with their named ports resolved and Kubernetes' defaults.

use super::{Handler, ProbeSpec};
use kommit_schemas::model::meta::IntOrString;
use kommit_schemas::model::pod::{Probe, Scheme};
use std::collections::BTreeMap;

pub(super) fn port_of(p: &IntOrString, ports: &BTreeMap<&str, u16>) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("port {n} is out of range")),
        IntOrString::String(s) => ports
            .get(s.as_str())
            .copied()
            .or_else(|| s.parse().ok())
            .ok_or_else(|| format!("no container port named {s:?}")),
    }
}

pub(super) fn http_handler(
    g: &kommit_schemas::model::pod::HttpGetAction,
    ports: &BTreeMap<&str, u16>,
) -> Result<Handler, String> {
    Ok(Handler::Http {
        host: g.host.clone().filter(|h| !h.is_empty()),
        port: port_of(&g.port, ports)?,
        path: g.path.clone().unwrap_or_else(|| "/".into()),
        https: g.scheme == Some(Scheme::Https),
        headers: g
            .http_headers
            .iter()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    })
}

pub(super) fn probe_spec(p: &Probe, ports: &BTreeMap<&str, u16>) -> Result<ProbeSpec, String> {
    let handler = if let Some(e) = &p.exec {
        Handler::Exec(e.command.to_vec())
    } else if let Some(t) = &p.tcp_socket {
        Handler::Tcp {
            host: t.host.clone().filter(|h| !h.is_empty()),
            port: port_of(&t.port, ports)?,
        }
    } else if let Some(g) = &p.http_get {
        http_handler(g, ports)?
    } else {
        return Err("no handler".into());
    };
    Ok(ProbeSpec {
        handler,
        initial_delay_s: p.initial_delay_seconds.unwrap_or(0),
        period_s: p.period_seconds.unwrap_or(10).max(1),
        timeout_s: p.timeout_seconds.unwrap_or(1).max(1),
        success_threshold: p.success_threshold.unwrap_or(1).max(1),
        failure_threshold: p.failure_threshold.unwrap_or(3).max(1),
    })
}

//! Synthetic cluster states for tests and the bench: Services, pods and endpoints placed
//! straight into a `ClusterState` (the reconcilers' own tests cover how they get there).

use kommit_reconcilers::{ClusterState, Endpoint, PodRecord};
use kommit_schemas::model::core::Service;
use serde_json::{json, Value};
use std::net::Ipv4Addr;

/// Errors making a synthetic object (a test's own mistake).
#[derive(Debug, thiserror::Error)]
#[error("synthetic {what} `{key}` does not fit the model: {source}")]
pub struct SynthError {
    what: &'static str,
    key: String,
    source: serde_json::Error,
}

/// A service port: `(name, protocol, port, targetPort)`.
pub type PortSpec<'a> = (Option<&'a str>, &'a str, u16, Option<Value>);

/// Builds a state by hand. Defaults: pods 10.244.0.0/16, services 10.96.0.0/16,
/// `cluster.local`.
#[derive(Debug, Default)]
pub struct Synth {
    /// The state so far.
    pub state: ClusterState,
}

impl Synth {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// A Service `ns/name`: a ClusterIP one with `cluster_ip`, headless with `None`.
    pub fn service(
        &mut self,
        ns: &str,
        name: &str,
        cluster_ip: Option<Ipv4Addr>,
        ports: &[PortSpec<'_>],
        publish_not_ready: bool,
    ) -> Result<&mut Self, SynthError> {
        let key = format!("{ns}/{name}");
        let ports: Vec<Value> = ports
            .iter()
            .map(|(n, proto, port, target)| {
                let mut p = json!({ "protocol": proto, "port": port });
                if let Some(n) = n {
                    p["name"] = json!(n);
                }
                if let Some(t) = target {
                    p["targetPort"] = t.clone();
                }
                p
            })
            .collect();
        let mut spec = json!({ "selector": { "app": name }, "ports": ports });
        if cluster_ip.is_none() {
            spec["clusterIP"] = json!("None");
        }
        if publish_not_ready {
            spec["publishNotReadyAddresses"] = json!(true);
        }
        let svc: Service = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": name, "namespace": ns },
            "spec": spec,
        }))
        .map_err(|source| SynthError {
            what: "service",
            key: key.clone(),
            source,
        })?;
        self.state.desired.services.insert(key.clone(), svc);
        if let Some(ip) = cluster_ip {
            self.state.service_ips.insert(key, ip);
        }
        Ok(self)
    }

    /// A running pod `ns/name` with `ip`, optional `hostname`/`subdomain`, and container
    /// ports `(name, port)`.
    pub fn pod(
        &mut self,
        ns: &str,
        name: &str,
        ip: Ipv4Addr,
        hostname: Option<&str>,
        subdomain: Option<&str>,
        ports: &[(&str, u16)],
    ) -> Result<&mut Self, SynthError> {
        let key = format!("{ns}/{name}");
        let ports: Vec<Value> = ports
            .iter()
            .map(|(n, p)| json!({ "name": n, "containerPort": p }))
            .collect();
        let mut spec =
            json!({ "containers": [{ "name": "c", "image": "busybox", "ports": ports }] });
        if let Some(h) = hostname {
            spec["hostname"] = json!(h);
        }
        if let Some(s) = subdomain {
            spec["subdomain"] = json!(s);
        }
        let pod: PodRecord = serde_json::from_value(json!({
            "namespace": ns, "name": name, "uid": format!("uid-{key}"),
            "owner": { "Pod": key }, "template_hash": "h", "labels": {},
            "spec": spec, "node": "n1", "pod_ip": ip, "phase": "Running", "ready": true,
            "ready_since": null, "restarts": 0, "containers": [], "reason": null,
            "created_at": 0, "serial": 0,
        }))
        .map_err(|source| SynthError {
            what: "pod",
            key: key.clone(),
            source,
        })?;
        self.state.pods.insert(key, pod);
        Ok(self)
    }

    /// Makes pod `ns/pod` an endpoint of Service `ns/svc`.
    pub fn endpoint(&mut self, ns: &str, svc: &str, pod: &str, ready: bool) -> &mut Self {
        let key = format!("{ns}/{pod}");
        let ip = self
            .state
            .pods
            .get(&key)
            .and_then(|p| p.pod_ip)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let eps = self
            .state
            .endpoints
            .entry(format!("{ns}/{svc}"))
            .or_default();
        eps.push(Endpoint {
            pod: key,
            ip,
            node: "n1".into(),
            ready,
        });
        eps.sort();
        self
    }

    /// Removes Service `ns/name` (as pruning it from Git does).
    pub fn remove_service(&mut self, ns: &str, name: &str) -> &mut Self {
        let key = format!("{ns}/{name}");
        self.state.desired.services.remove(&key);
        self.state.service_ips.remove(&key);
        self.state.endpoints.remove(&key);
        self
    }

    /// A cluster of `services` ClusterIP Services (`svc-<i>` in `ns-<i % 10>`, one named port
    /// `http`) and `pods` pods spread over them, each Service's pods its endpoints; every
    /// tenth Service is headless. For the bench.
    pub fn cluster(services: usize, pods: usize) -> Result<Synth, SynthError> {
        let mut s = Synth::new();
        for i in 0..services {
            let ns = format!("ns-{}", i % 10);
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 10)) + i as u32);
            let cluster_ip = (i % 10 != 9).then_some(ip);
            s.service(
                &ns,
                &format!("svc-{i}"),
                cluster_ip,
                &[(Some("http"), "TCP", 80, Some(json!(8080)))],
                false,
            )?;
        }
        for j in 0..pods {
            let svc = j % services.max(1);
            let ns = format!("ns-{}", svc % 10);
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 2)) + j as u32);
            let name = format!("pod-{j}");
            s.pod(&ns, &name, ip, None, None, &[("http", 8080)])?;
            if services > 0 {
                s.endpoint(&ns, &format!("svc-{svc}"), &name, true);
            }
        }
        Ok(s)
    }
}

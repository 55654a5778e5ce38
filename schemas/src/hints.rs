//! Why kommit refuses a Kubernetes field or value it knows of but does not implement, and
//! what to do instead: the tail of a schema error's one-line message.
//!
//! Keyed by the field's path as the diagnostics write it (`spec.template.spec.hostNetwork`);
//! only the path's last segments matter, so the same hint serves a Pod and every workload
//! template.

use crate::model::Kind;

/// The hint for an unsupported field, with its leading `: `, or "" when there is none.
pub(crate) fn unsupported_field(kind: Kind, field: &str) -> &'static str {
    let last = field.rsplit('.').next().unwrap_or(field);
    // Service spec fields sit right under `spec`; pod spec fields under a pod spec.
    let service_spec = kind == Kind::Service && field == format!("spec.{last}");
    let pod_spec = kind != Kind::Service && field.ends_with(&format!("spec.{last}"));
    match last {
        "externalIPs" if service_spec => {
            ": kommit routes no external IPs; a LoadBalancer Service is served on the node addresses (like k3s's ServiceLB)"
        }
        "loadBalancerIP" if service_spec => {
            ": a LoadBalancer Service is served on the addresses of its nodes and cannot ask for one (the field is deprecated in Kubernetes)"
        }
        "loadBalancerSourceRanges" if service_spec => {
            ": kommit's load balancer does not filter clients by source address"
        }
        "healthCheckNodePort" if service_spec => {
            ": kommit serves no health-check NodePort; with `externalTrafficPolicy: Local` only nodes with a local endpoint answer"
        }
        "clusterIPs" if service_spec => {
            ": kommit clusters are IPv4 single-stack; set `spec.clusterIP` instead"
        }
        "trafficDistribution" | "topologyKeys" if service_spec => {
            ": kommit does not route by topology; `internalTrafficPolicy: Local` keeps traffic on the client's node"
        }
        "hostNetwork" if pod_spec => {
            ": every kommit pod has its own network namespace; expose it with a NodePort or LoadBalancer Service, or a container's `hostPort`"
        }
        "hostPID" | "hostIPC" if pod_spec => {
            ": every kommit pod has its own PID and IPC namespaces"
        }
        "sops" if field == "sops" => {
            ": only Secrets may be SOPS-encrypted (their `data` and `stringData`); the node agent decrypts Secrets alone"
        }
        _ => "",
    }
}

/// The hint for an enum value kommit knows but refuses, with its leading `: `, or "".
pub(crate) fn unsupported_value(field: &str, value: &serde_json::Value) -> &'static str {
    let last = field.rsplit('.').next().unwrap_or(field);
    let family_item = last.starts_with("ipFamilies[");
    match value.as_str() {
        Some("IPv6") if family_item => ": kommit clusters are IPv4 single-stack (allowed: IPv4)",
        Some("RequireDualStack") if last == "ipFamilyPolicy" => {
            ": kommit clusters are IPv4 single-stack (allowed: SingleStack, PreferDualStack)"
        }
        Some("SCTP") if last == "protocol" => ": kommit serves TCP and UDP only",
        Some("Localhost") if field.ends_with("seccompProfile.type") => {
            ": kommit has no node-local seccomp profiles; RuntimeDefault (the default) is the container runtimes' filter"
        }
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_match_the_field_in_its_place() {
        let svc = Kind::Service;
        assert!(unsupported_field(svc, "spec.externalIPs").contains("LoadBalancer"));
        assert!(unsupported_field(Kind::Pod, "spec.hostNetwork").contains("network namespace"));
        let deploy = Kind::Deployment;
        assert!(unsupported_field(deploy, "spec.template.spec.hostNetwork").contains("namespace"));
        // The same name elsewhere is not the Service's field.
        assert_eq!(
            unsupported_field(deploy, "spec.template.spec.externalIPs"),
            ""
        );
        assert_eq!(unsupported_field(svc, "spec.hostNetwork"), "");
        assert_eq!(unsupported_field(Kind::Pod, "metadata.hostNetwork"), "");
        assert!(unsupported_value("spec.ipFamilies[1]", &"IPv6".into()).contains("IPv4"));
        let seccomp = "spec.template.spec.containers[0].securityContext.seccompProfile.type";
        assert!(unsupported_value(seccomp, &"Localhost".into()).contains("RuntimeDefault"));
        assert_eq!(unsupported_value("spec.ipFamilies[0]", &"IPv5".into()), "");
    }
}

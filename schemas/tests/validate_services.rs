//! Services and pod DNS through `validate`: the shapes tutorials use (LoadBalancer,
//! ExternalName, traffic policies, affinity, IP families, `dnsConfig`) are accepted, and
//! each refusal is pinned to its exact `file:line:col: error: message`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kommit_schemas::model::core::{ServiceType, TrafficPolicy};
use kommit_schemas::{validate, Limits, SourceTree};

fn run(files: &[(&str, &str)]) -> Vec<String> {
    let mut t = SourceTree::default();
    for (p, c) in files {
        t.add(*p, c.as_bytes());
    }
    match validate(&t, &Limits::default()) {
        Ok(_) => vec!["(valid)".into()],
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

/// A Service named `name` whose spec is `spec` (indented by two spaces); `spec:` is line 5.
fn svc(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n{spec}")
}

/// A Pod whose spec is `spec` plus one container; `spec:` is line 4.
fn pod(spec: &str) -> String {
    format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec}  containers:\n  - {{name: c, image: busybox}}\n")
}

/// (what, files, every diagnostic expected in order).
type Case = (&'static str, Vec<(&'static str, String)>, Vec<&'static str>);

const CONFIG: &str = "apiVersion: kommit.dev/v1\nkind: ClusterConfig\nmetadata: {name: c}\n";

#[test]
fn service_and_dns_shapes_are_accepted() {
    let table: Vec<(&str, String)> = vec![
        ("load balancer, as tutorials write it", svc("wordpress", "  ports:\n    - port: 80\n  selector:\n    app: wordpress\n  type: LoadBalancer\n")),
        ("load balancer in JSON flow style", "{apiVersion: \"v1\", kind: \"Service\", metadata: {name: \"my-nginx-svc\", labels: {app: \"nginx\"}}, spec: {type: \"LoadBalancer\", ports: [{port: 80}], selector: {app: \"nginx\"}}}\n".into()),
        ("load balancer with every field", svc("lb", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86400}}\n  loadBalancerClass: example.com/lb\n  allocateLoadBalancerNodePorts: false\n  ipFamilies: [IPv4]\n  ipFamilyPolicy: PreferDualStack\n  ports:\n  - {name: a, port: 80, nodePort: 32767, appProtocol: http}\n  - {name: b, port: 80, protocol: UDP, nodePort: 32767}\n")),
        ("external name with a trailing dot", svc("ext", "  type: ExternalName\n  externalName: db.example.com.\n  ports: [{port: 5432}]\n")),
        ("node port with a policy", svc("np", "  type: NodePort\n  externalTrafficPolicy: Cluster\n  ports: [{port: 80, targetPort: http-alt}]\n")),
        ("dnsPolicy None with a dnsConfig", pod("  dnsPolicy: None\n  dnsConfig:\n    nameservers: [1.1.1.1, 2606:4700:4700::1111]\n    searches: [example.com, corp.]\n    options: [{name: ndots, value: \"2\"}, {name: edns0}]\n")),
        ("ClusterFirstWithHostNet", pod("  dnsPolicy: ClusterFirstWithHostNet\n")),
    ];
    for (what, doc) in table {
        assert_eq!(run(&[("a.yaml", &doc)]), ["(valid)"], "{what}:\n{doc}");
    }
}

#[test]
fn the_model_resolves_kubernetes_defaults() {
    let mut t = SourceTree::default();
    t.add(
        "a.yaml",
        svc(
            "lb",
            "  type: LoadBalancer\n  sessionAffinity: ClientIP\n  ports: [{port: 80}]\n",
        )
        .as_bytes(),
    );
    let d = validate(&t, &Limits::default()).unwrap();
    let s = &d.services["default/lb"].spec;
    assert_eq!(s.service_type(), ServiceType::LoadBalancer);
    assert_eq!(s.external_traffic_policy(), Some(TrafficPolicy::Cluster));
    assert_eq!(s.internal_traffic_policy(), TrafficPolicy::Cluster);
    assert_eq!(s.affinity_timeout_seconds(), Some(10_800));
    assert!(s.allocates_node_ports() && s.uses_kommit_load_balancer() && s.has_cluster_ip());
    assert!(d.config.service_node_port_range.is_default());
}

#[test]
fn service_and_dns_refusals_are_precise() {
    let table: Vec<Case> = vec![
        ("external name: required, no selector, no clusterIP, no families",
         vec![("a.yaml", svc("ext", "  type: ExternalName\n  selector: {app: x}\n  clusterIP: 10.96.0.9\n  ipFamilies: [IPv4]\n  ipFamilyPolicy: SingleStack\n"))],
         vec![
            "a.yaml:6:9: error: `spec.externalName` is required for ExternalName services: the DNS name this Service is an alias for",
            "a.yaml:7:13: error: `spec.selector` may not be set for ExternalName services: the name is an alias (CNAME) for `spec.externalName` and has no endpoints",
            "a.yaml:8:14: error: `spec.clusterIP` may not be set for ExternalName services: they have no virtual IP",
            "a.yaml:9:15: error: `spec.ipFamilies` may not be set for ExternalName services",
            "a.yaml:10:19: error: `spec.ipFamilyPolicy` may not be set for ExternalName services",
         ]),
        ("external name: a DNS name, only on ExternalName",
         vec![("a.yaml", svc("ext", "  type: ExternalName\n  externalName: Not_A.Name\n")),
              ("b.yaml", svc("cip", "  externalName: db.example.com\n  ports: [{port: 80}]\n"))],
         vec![
            "a.yaml:7:17: error: `spec.externalName` \"Not_A.Name\" must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters), optionally ending with '.'",
            "b.yaml:6:17: error: `spec.externalName` may only be set when `type` is ExternalName",
         ]),
        ("fields that belong to other types",
         vec![("a.yaml", svc("cip", "  externalTrafficPolicy: Local\n  loadBalancerClass: example.com/lb\n  allocateLoadBalancerNodePorts: true\n  ports: [{port: 80, nodePort: 30001}]\n"))],
         vec![
            "a.yaml:6:26: error: `spec.externalTrafficPolicy` may only be set when `type` is NodePort or LoadBalancer",
            "a.yaml:7:22: error: `spec.loadBalancerClass` may only be set when `type` is LoadBalancer",
            "a.yaml:8:34: error: `spec.allocateLoadBalancerNodePorts` may only be set when `type` is LoadBalancer",
            "a.yaml:9:32: error: `nodePort` is only allowed on a Service of type NodePort or LoadBalancer, not ClusterIP",
         ]),
        ("load balancer: class name, headless, affinity",
         vec![("a.yaml", svc("lb", "  type: LoadBalancer\n  loadBalancerClass: Bad Class\n  clusterIP: None\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n  ports: [{port: 80}]\n"))],
         vec![
            "a.yaml:7:22: error: `spec.loadBalancerClass` \"Bad Class\" must be a qualified name such as example.com/lb (an optional DNS subdomain and `/`, then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)",
            "a.yaml:8:14: error: `spec.clusterIP` may not be \"None\" for LoadBalancer services: a headless Service has no virtual IP to expose",
            "a.yaml:9:26: error: `spec.sessionAffinityConfig` must not be set unless `sessionAffinity` is ClientIP",
         ]),
        ("affinity timeout bounds",
         vec![("a.yaml", svc("s", "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n  ports: [{port: 80}]\n"))],
         vec!["a.yaml:7:54: error: `spec.sessionAffinityConfig.clientIP.timeoutSeconds`: value is greater than the maximum of 86400"]),
        ("IPv6 and dual stack",
         vec![("a.yaml", svc("s", "  ipFamilies: [IPv4, IPv6]\n  ipFamilyPolicy: RequireDualStack\n  ports: [{port: 80}]\n")),
              ("b.yaml", svc("t", "  ipFamilies: [IPv4, IPv4]\n  ports: [{port: 80}]\n"))],
         vec![
            "a.yaml:6:22: error: `spec.ipFamilies[1]`: \"IPv6\" is not supported: kommit clusters are IPv4 single-stack (allowed: IPv4)",
            "a.yaml:7:19: error: `spec.ipFamilyPolicy`: \"RequireDualStack\" is not supported: kommit clusters are IPv4 single-stack (allowed: SingleStack, PreferDualStack)",
            "b.yaml:6:22: error: `spec.ipFamilies[1]`: IPv4 is listed twice",
         ]),
        ("fields kommit does not implement",
         vec![("a.yaml", svc("lb", "  type: LoadBalancer\n  externalIPs: [192.0.2.1]\n  loadBalancerIP: 192.0.2.2\n  loadBalancerSourceRanges: [10.0.0.0/8]\n  healthCheckNodePort: 30500\n  clusterIPs: [10.96.0.1]\n  ports: [{port: 80}]\n"))],
         vec![
            "a.yaml:7:3: error: `spec.externalIPs` is not supported: kommit routes no external IPs; a LoadBalancer Service is served on the node addresses (like k3s's ServiceLB)",
            "a.yaml:8:3: error: `spec.loadBalancerIP` is not supported: a LoadBalancer Service is served on the addresses of its nodes and cannot ask for one (the field is deprecated in Kubernetes)",
            "a.yaml:9:3: error: `spec.loadBalancerSourceRanges` is not supported: kommit's load balancer does not filter clients by source address",
            "a.yaml:10:3: error: `spec.healthCheckNodePort` is not supported: kommit serves no health-check NodePort; with `externalTrafficPolicy: Local` only nodes with a local endpoint answer",
            "a.yaml:11:3: error: `spec.clusterIPs` is not supported: kommit clusters are IPv4 single-stack; set `spec.clusterIP` instead",
         ]),
        ("ports: names, duplicates, target ports",
         vec![("a.yaml", svc("s", "  ports:\n  - {name: web, port: 80, targetPort: 0}\n  - {name: web, port: 80, targetPort: \"8080\"}\n  - {name: dns, port: 80, protocol: UDP}\n"))],
         vec![
            "a.yaml:7:39: error: `spec.ports[0].targetPort`: 0 is out of range 1..=65535",
            "a.yaml:8:12: error: `spec.ports[1].name`: `web` is already the name of `spec.ports[0]`",
            "a.yaml:8:23: error: `spec.ports[1]`: port 80/TCP is already defined by `spec.ports[0]`",
            "a.yaml:8:39: error: `spec.ports[1].targetPort`: \"8080\" must be a port number or a container port name (at most 15 lowercase letters, digits and '-', with at least one letter)",
         ]),
        ("node ports: range and uniqueness across files, both locations named",
         vec![("a.yaml", svc("one", "  type: NodePort\n  ports:\n  - {name: a, port: 80, nodePort: 30080}\n  - {name: b, port: 81, nodePort: 30080, protocol: UDP}\n  - {name: c, port: 82, nodePort: 80}\n")),
              ("b/c.yaml", svc("two", "  type: LoadBalancer\n  ports:\n  - {port: 80, nodePort: 30080, protocol: UDP}\n"))],
         vec![
            "a.yaml:10:35: error: nodePort 80 is outside the NodePort range 30000-32767 (kommit.yaml `spec.serviceNodePortRange`)",
            "b/c.yaml:8:26: error: nodePort 30080 is already used by Service default/one at a.yaml:8:35",
         ]),
        ("the configured node port range",
         vec![("kommit.yaml", format!("{CONFIG}spec:\n  serviceNodePortRange: 40000-40100\n")),
              ("a.yaml", svc("np", "  type: NodePort\n  ports: [{port: 80, nodePort: 30080}]\n"))],
         vec!["a.yaml:7:32: error: nodePort 30080 is outside the NodePort range 40000-40100 (kommit.yaml `spec.serviceNodePortRange`)"]),
        ("a node port range backwards",
         vec![("kommit.yaml", format!("{CONFIG}spec:\n  serviceNodePortRange: 32767-30000\n"))],
         vec!["kommit.yaml:5:25: error: serviceNodePortRange \"32767-30000\" must be `first-last` with ports 1-65535, first not after last (e.g. 30000-32767)"]),
        ("dnsPolicy None needs a nameserver",
         vec![("a.yaml", pod("  dnsPolicy: None\n"))],
         vec!["a.yaml:5:14: error: `dnsPolicy: None` needs at least one nameserver in `spec.dnsConfig.nameservers`"]),
        ("dnsPolicy None with a dnsConfig but no nameserver",
         vec![("b.yaml", pod("  dnsPolicy: None\n  dnsConfig: {searches: [example.com]}\n"))],
         vec!["b.yaml:5:14: error: `dnsPolicy: None` needs at least one nameserver in `spec.dnsConfig.nameservers`"]),
        ("dnsConfig limits",
         vec![("a.yaml", pod("  dnsConfig:\n    nameservers: [1.1.1.1, 8.8.8.8, 9.9.9.9, dns.example.com]\n    searches: [ok.example, Bad_Domain]\n    options: [{name: \"\"}]\n"))],
         vec![
            "a.yaml:6:18: error: `spec.dnsConfig.nameservers` lists 4 nameservers; at most 3 are allowed",
            "a.yaml:6:46: error: `spec.dnsConfig.nameservers[3]`: \"dns.example.com\" is not an IP address",
            "a.yaml:7:28: error: `spec.dnsConfig.searches[1]`: \"Bad_Domain\" must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'), optionally ending with '.'",
            "a.yaml:8:22: error: `spec.dnsConfig.options[0].name` must not be empty",
         ]),
        ("hostNetwork stays refused, with the reason",
         vec![("a.yaml", pod("  hostNetwork: true\n"))],
         vec!["a.yaml:5:3: error: `spec.hostNetwork` is not supported: every kommit pod has its own network namespace; expose it with a NodePort or LoadBalancer Service, or a container's `hostPort`"]),
    ];
    let mut failures = Vec::new();
    for (what, files, want) in table {
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        let got = run(&refs);
        if got != want {
            failures.push(format!("case `{what}`:\n  want {want:#?}\n  got  {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn search_lists_are_bounded_in_count_and_length() {
    let many: Vec<String> = (0..33).map(|i| format!("d{i}.example")).collect();
    let got = run(&[(
        "a.yaml",
        &pod(&format!(
            "  dnsConfig:\n    searches: [{}]\n",
            many.join(", ")
        )),
    )]);
    assert_eq!(got, ["a.yaml:6:15: error: `spec.dnsConfig.searches` lists 33 search domains; at most 32 are allowed"]);
    // Nine names of 243 characters (four labels of 60): 2195 characters with the spaces.
    let long: Vec<String> = (0..9u8)
        .map(|i| [char::from(b'a' + i).to_string().repeat(60).as_str(); 4].join("."))
        .collect();
    let got = run(&[(
        "a.yaml",
        &pod(&format!(
            "  dnsConfig:\n    searches: [{}]\n",
            long.join(", ")
        )),
    )]);
    assert_eq!(got, ["a.yaml:6:15: error: `spec.dnsConfig.searches` is 2195 characters long (joined by spaces); at most 2048 are allowed"]);
}

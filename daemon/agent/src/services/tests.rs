use super::*;
use kommit_reconcilers::{Entry, NodeInfo, PodPhase, PodStatusChange};
use kommit_schemas::{Limits, SourceTree};
use std::collections::BTreeMap;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports:
        - {name: http, containerPort: 8080}
        - {name: metrics, containerPort: 9100}
        - {name: dns, containerPort: 5353, protocol: UDP}
        resources: {requests: {cpu: 10m, memory: 8Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  sessionAffinity: ClientIP
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9100}
  - {name: dns, port: 53, targetPort: dns, protocol: UDP}
  - {name: missing, port: 81, targetPort: nope}
  - {name: numbered, port: 82, targetPort: 8082}
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  internalTrafficPolicy: Local
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: v1
kind: Service
metadata: {name: web-lb}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}
  selector: {app: web}
  ports:
  - {name: http, port: 8081, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: web-lb-other}
spec:
  type: LoadBalancer
  loadBalancerClass: example.com/metallb
  selector: {app: web}
  ports:
  - {port: 8082, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: docs}
spec:
  type: ExternalName
  externalName: docs.example.com
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {port: 80}
"#;

fn node(name: &str, address: &str) -> Entry {
    Entry::NodeUp {
        info: NodeInfo {
            name: name.into(),
            address: address.into(),
            cpu_millis: 4000,
            memory_bytes: 8 << 30,
            pods: 110,
            labels: BTreeMap::new(),
            taints: vec![],
        },
    }
}

/// Two nodes, the app adopted, and every pod but `web-*` number `not_ready` reported ready.
fn state() -> ClusterState {
    let mut tree = SourceTree::default();
    tree.add("app.yaml", APP.as_bytes().to_vec());
    let desired = kommit_schemas::validate(&tree, &Limits::default())
        .unwrap_or_else(|d| panic!("invalid test manifests: {d:?}"));
    let mut s = ClusterState::new();
    s.apply(&node("n1", "192.0.2.1:7946"), 1);
    s.apply(&node("n2", "192.0.2.2:7946"), 1);
    s.apply(
        &Entry::Adopt {
            commit: "c1".into(),
            parent: None,
            by: None,
            digest: desired.digest(),
            desired,
        },
        2,
    );
    s
}

fn report(s: &mut ClusterState, pod: &str, ready: bool) {
    let p = &s.pods[pod];
    let entry = Entry::PodStatus {
        node: p.node.clone().expect("bound"),
        changes: vec![PodStatusChange {
            pod: pod.into(),
            uid: p.uid.clone(),
            phase: PodPhase::Running,
            ready,
            containers: vec![],
            pod_ip: None,
            init_containers: vec![],
            start_time: None,
            reason: None,
            message: None,
            events: vec![],
        }],
    };
    let now = s.now + 1;
    s.apply(&entry, now);
}

const NODE_IPS: [Ipv4Addr; 1] = [Ipv4Addr::new(192, 0, 2, 1)];

#[test]
fn no_table_before_the_node_has_a_pod_cidr() {
    let s = state();
    assert!(service_table(&s, "unknown", &NODE_IPS).is_none());
    let t = service_table(&s, "n1", &NODE_IPS).expect("n1 has a CIDR");
    assert_eq!(t.node.pod_cidr, s.nodes["n1"].pod_cidr.unwrap());
    assert_eq!(t.node.service_cidr, Some(s.desired.config.service_cidr));
    assert_eq!(t.node.addresses, NODE_IPS);
}

#[test]
fn services_become_the_proxys_table() {
    let mut s = state();
    let pods: Vec<String> = s.pods.keys().cloned().collect();
    assert_eq!(pods.len(), 3);
    for p in &pods[..2] {
        report(&mut s, p, true);
    }
    report(&mut s, &pods[2], false);
    let t = service_table(&s, "n1", &NODE_IPS).unwrap();
    // Headless and ExternalName Services are DNS only.
    assert_eq!(
        t.services.keys().collect::<Vec<_>>(),
        [
            "default/web",
            "default/web-lb",
            "default/web-lb-other",
            "default/web-np"
        ]
    );
    // LoadBalancer: served here (no node limits load balancers by label), with its
    // allocated NodePort, the Local policy and the affinity timeout it asks for.
    let lb = &t.services["default/web-lb"];
    assert_eq!(lb.service_type, ServiceType::LoadBalancer);
    assert_eq!(lb.external_traffic_policy, TrafficPolicy::Local);
    assert_eq!(lb.internal_traffic_policy, TrafficPolicy::Cluster);
    assert_eq!(
        t.services["default/web-np"].internal_traffic_policy,
        TrafficPolicy::Local
    );
    assert_eq!(lb.affinity_timeout, Some(60));
    let np = lb.ports[0].node_port.expect("a NodePort is allocated");
    assert_eq!(Some(np), s.node_ports["default/web-lb"].first().copied());
    assert!((30000..=32767).contains(&np), "{np}");
    // Another implementation's class: only its NodePort answers here.
    let other = &t.services["default/web-lb-other"];
    assert_eq!(other.service_type, ServiceType::NodePort);
    assert!(other.ports[0].node_port.is_some());

    let web = &t.services["default/web"];
    assert_eq!(web.cluster_ip, s.service_ips.get("default/web").copied());
    assert!(web.cluster_ip.is_some());
    assert_eq!(web.service_type, ServiceType::ClusterIp);
    assert_eq!(web.affinity_timeout, Some(10_800), "Kubernetes' default");
    assert!(!web.publish_not_ready);
    let ports: Vec<(&str, Protocol, u16)> = web
        .ports
        .iter()
        .map(|p| (p.name.as_str(), p.protocol, p.port))
        .collect();
    assert_eq!(
        ports,
        [
            ("http", Protocol::Tcp, 80),
            ("metrics", Protocol::Tcp, 9100),
            ("dns", Protocol::Udp, 53),
            ("missing", Protocol::Tcp, 81),
            ("numbered", Protocol::Tcp, 82),
        ]
    );
    assert_eq!(web.endpoints.len(), 3);
    for ep in &web.endpoints {
        let pod = s.pods.values().find(|p| p.pod_ip == Some(ep.ip)).unwrap();
        assert_eq!(ep.ready, pod.ready, "{}", pod.name);
        assert_eq!(ep.local, pod.node.as_deref() == Some("n1"), "{}", pod.name);
        assert!(!ep.terminating);
        // Named target ports resolve to the container's port of that name and protocol; a
        // name no container has leaves the endpoint out of that port.
        let want = BTreeMap::from([
            ("dns".to_string(), 5353),
            ("http".to_string(), 8080),
            ("metrics".to_string(), 9100),
            ("numbered".to_string(), 8082),
        ]);
        assert_eq!(ep.ports, want, "{}", pod.name);
    }
    assert_eq!(web.endpoints.iter().filter(|e| e.ready).count(), 2);

    let np = &t.services["default/web-np"];
    assert_eq!(np.service_type, ServiceType::NodePort);
    assert_eq!(np.ports[0].node_port, Some(30080));
    assert_eq!(np.ports[0].name, "");
    assert!(np.endpoints.iter().all(|e| e.ports[""] == 8080));
    assert_eq!(np.affinity_timeout, None);
}

#[test]
fn each_node_marks_its_own_endpoints_local() {
    let s = state();
    let t1 = service_table(&s, "n1", &NODE_IPS).unwrap();
    let t2 = service_table(&s, "n2", &[Ipv4Addr::new(192, 0, 2, 2)]).unwrap();
    let local = |t: &ServiceTable| -> Vec<Ipv4Addr> {
        t.services["default/web"]
            .endpoints
            .iter()
            .filter(|e| e.local)
            .map(|e| e.ip)
            .collect()
    };
    let (l1, l2) = (local(&t1), local(&t2));
    assert_eq!(
        l1.len() + l2.len(),
        3,
        "every endpoint is local to one node"
    );
    assert!(l1.iter().all(|ip| !l2.contains(ip)));
    // Everything else is the same on both nodes.
    let strip = |t: &ServiceTable| {
        let mut t = t.clone();
        for svc in t.services.values_mut() {
            for e in &mut svc.endpoints {
                e.local = false;
            }
        }
        t.services
    };
    assert_eq!(strip(&t1), strip(&t2));
}

#[test]
fn routes_lead_to_the_other_nodes_pod_cidrs() {
    let mut s = state();
    s.apply(&node("n3", "127.0.0.1:7947"), 3);
    s.apply(&node("n4", "[2001:db8::4]:7946"), 3);
    let cidr = |n: &str| s.nodes[n].pod_cidr.unwrap();
    // Loopback and IPv6 node addresses carry no route; a node never routes to itself.
    assert_eq!(
        pod_routes(&s, "n1"),
        BTreeMap::from([(cidr("n2"), Ipv4Addr::new(192, 0, 2, 2))])
    );
    assert_eq!(
        pod_routes(&s, "n2"),
        BTreeMap::from([(cidr("n1"), Ipv4Addr::new(192, 0, 2, 1))])
    );
    // Down, the route stays (its pods are being replaced, its address is unchanged);
    // removed, it goes.
    s.apply(&Entry::NodeDown { node: "n2".into() }, 4);
    assert_eq!(pod_routes(&s, "n1").len(), 1);
    s.apply(&Entry::NodeRemove { node: "n2".into() }, 5);
    assert!(pod_routes(&s, "n1").is_empty());
}

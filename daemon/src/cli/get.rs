//! `kommit get TYPE [NAME] [-n NS | -A] [-o wide|json|yaml]`: the replicated state as
//! `kubectl get` shows it. Tables by default; `-o json` is a Kubernetes List (or the one
//! object when a NAME is given) of the shapes in [`super::kube`].

use super::kube;
use anyhow::Context;
use kommit_reconcilers::{ClusterState, PodRecord};
use serde_json::Value;
use std::path::PathBuf;

/// What to list.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// Pods.
    #[value(alias = "pod", alias = "po")]
    Pods,
    /// Deployments.
    #[value(alias = "deployment", alias = "deploy")]
    Deployments,
    /// DaemonSets.
    #[value(alias = "daemonset", alias = "ds")]
    Daemonsets,
    /// StatefulSets.
    #[value(alias = "statefulset", alias = "sts")]
    Statefulsets,
    /// Jobs.
    #[value(alias = "job")]
    Jobs,
    /// CronJobs.
    #[value(alias = "cronjob", alias = "cj")]
    Cronjobs,
    /// PersistentVolumeClaims.
    #[value(
        alias = "persistentvolumeclaims",
        alias = "persistentvolumeclaim",
        alias = "claims"
    )]
    Pvc,
    /// PersistentVolumes (pre-provisioned, from Git).
    #[value(alias = "persistentvolumes", alias = "persistentvolume", alias = "pvs")]
    Pv,
    /// PodDisruptionBudgets.
    #[value(
        alias = "poddisruptionbudgets",
        alias = "poddisruptionbudget",
        alias = "pdbs"
    )]
    Pdb,
    /// Services.
    #[value(alias = "service", alias = "svc")]
    Services,
    /// Nodes.
    #[value(alias = "node", alias = "no")]
    Nodes,
    /// Events.
    #[value(alias = "event", alias = "ev")]
    Events,
}

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// A table with more columns.
    Wide,
    /// Kubernetes JSON.
    Json,
    /// Kubernetes YAML.
    Yaml,
}

/// Arguments of `kommit get`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to list.
    #[arg(value_enum)]
    pub kind: Type,
    /// One object by name.
    pub name: Option<String>,
    /// Namespace (default `default`).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum)]
    pub output: Option<Output>,
    /// Label selector `k=v[,k2=v2]`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// The node's data dir (its local socket).
    #[arg(long, default_value = "/var/lib/kommit")]
    pub data_dir: PathBuf,
    /// After the list, print each object again every time it changes (as `kubectl get -w`).
    #[arg(short = 'w', long)]
    pub watch: bool,
}

/// Reads the replicated state through the node's local socket.
pub fn fetch_state(data_dir: &std::path::Path) -> anyhow::Result<ClusterState> {
    Ok(query_state(data_dir, None)?.1)
}

/// A blocking query: the state once an entry after `index` is applied (or `wait` passed),
/// with the applied index it is at least as new as; pass that index to the next call to
/// follow the state without polling.
pub fn fetch_state_after(
    data_dir: &std::path::Path,
    index: u64,
    wait: std::time::Duration,
) -> anyhow::Result<(u64, ClusterState)> {
    query_state(data_dir, Some((index, wait)))
}

fn query_state(
    data_dir: &std::path::Path,
    after: Option<(u64, std::time::Duration)>,
) -> anyhow::Result<(u64, ClusterState)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = crate::consensus::local::local_client(data_dir).context("local api client")?;
        let url = match after {
            None => "http://localhost/state".to_string(),
            Some((index, wait)) => format!(
                "http://localhost/state?index={index}&wait_ms={}",
                wait.as_millis()
            ),
        };
        let resp = client.get(url).send().await.with_context(|| {
            format!(
                "cannot reach the node at {} (is `kommit daemon --data-dir {}` running?)",
                data_dir.join(crate::consensus::local::SOCKET).display(),
                data_dir.display()
            )
        })?;
        let index = resp
            .headers()
            .get(crate::consensus::local::INDEX_HEADER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .unwrap_or(0);
        let bytes = resp.bytes().await?;
        Ok((index, ClusterState::from_canonical_bytes(&bytes)?))
    })
}

fn age(now_ms: u64, at: u64) -> String {
    let s = now_ms.saturating_sub(at) / 1000;
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

fn selected(labels: &std::collections::BTreeMap<String, String>, sel: &Option<String>) -> bool {
    let Some(sel) = sel else { return true };
    sel.split(',')
        .filter(|s| !s.is_empty())
        .all(|t| match t.split_once('=') {
            Some((k, v)) => {
                labels.get(k.trim()).map(String::as_str) == Some(v.trim_start_matches('=').trim())
            }
            None => labels.contains_key(t.trim()),
        })
}

fn table(rows: Vec<Vec<String>>) -> String {
    let mut widths = vec![0; rows.first().map_or(0, Vec::len)];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

fn in_ns(args: &Args, ns: &str) -> bool {
    args.all_namespaces || args.namespace == ns
}

fn split(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// One `kommit get services` row, as kubectl prints it (`80:30080/TCP` for a port with a
/// NodePort; EXTERNAL-IP the load balancer's ingress, `<pending>` while it has none, or an
/// ExternalName's target), plus the count of ready endpoints.
fn service_row(state: &ClusterState, key: &str, v: &Value, ns_col: bool) -> Vec<String> {
    let (ns, n) = split(key);
    let spec = &v["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_u64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let ingress: Vec<&str> = v["status"]["loadBalancer"]["ingress"]
        .as_array()
        .map(|a| a.iter().filter_map(|i| i["ip"].as_str()).collect())
        .unwrap_or_default();
    let external = match ty {
        "LoadBalancer" if ingress.is_empty() => "<pending>".to_string(),
        "LoadBalancer" => ingress.join(","),
        "ExternalName" => spec["externalName"].as_str().unwrap_or("").to_string(),
        _ => "<none>".to_string(),
    };
    let ready = state
        .endpoints
        .get(key)
        .map_or(0, |e| e.iter().filter(|e| e.ready).count());
    let mut r = Vec::new();
    if ns_col {
        r.push(ns.to_string());
    }
    r.extend([
        n.to_string(),
        ty.to_string(),
        spec["clusterIP"].as_str().unwrap_or("<none>").to_string(),
        external,
        if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports.join(",")
        },
        ready.to_string(),
    ]);
    r
}

/// The objects and the table for `args` over `state` at `now` (ms). Pure.
pub fn render(args: &Args, state: &ClusterState, now: u64) -> (Vec<Value>, Vec<Vec<String>>) {
    let wide = args.output == Some(Output::Wide);
    let ns_col = args.all_namespaces;
    let mut items = Vec::new();
    let mut rows: Vec<Vec<String>> = Vec::new();
    let head = |cols: &[&str]| -> Vec<String> {
        let mut h: Vec<String> = Vec::new();
        if ns_col {
            h.push("NAMESPACE".into());
        }
        h.extend(cols.iter().map(|c| c.to_string()));
        h
    };
    let named = |n: &str| args.name.as_deref().is_none_or(|want| want == n);
    match args.kind {
        Type::Pods => {
            let mut h = head(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
            if wide {
                h.extend(["IP", "NODE"].map(String::from));
            }
            rows.push(h);
            let pods: Vec<&PodRecord> = state
                .pods
                .values()
                .filter(|p| {
                    in_ns(args, &p.namespace)
                        && named(&p.name)
                        && selected(&p.labels, &args.selector)
                })
                .collect();
            for p in pods {
                items.push(kube::pod(state, p));
                let ready = p.containers.iter().filter(|c| c.ready).count();
                let mut r = Vec::new();
                if ns_col {
                    r.push(p.namespace.clone());
                }
                r.extend([
                    p.name.clone(),
                    format!("{ready}/{}", p.spec.containers.len()),
                    kube::pod_status_word(p),
                    p.restarts.to_string(),
                    age(now, p.created_at),
                ]);
                if wide {
                    r.push(p.pod_ip.map_or("<none>".into(), |i| i.to_string()));
                    r.push(p.node.clone().unwrap_or_else(|| "<none>".into()));
                }
                rows.push(r);
            }
        }
        Type::Deployments => {
            rows.push(head(&["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]));
            for key in state.desired.deployments.keys() {
                let (ns, n) = split(key);
                if !in_ns(args, ns) || !named(n) {
                    continue;
                }
                let Some(v) = kube::deployment(state, key) else {
                    continue;
                };
                let st = &v["status"];
                let mut r = Vec::new();
                if ns_col {
                    r.push(ns.to_string());
                }
                r.extend([
                    n.to_string(),
                    format!("{}/{}", st["readyReplicas"], v["spec"]["replicas"]),
                    st["updatedReplicas"].to_string(),
                    st["availableReplicas"].to_string(),
                    state.adopted_at.map_or("-".into(), |a| age(now, a)),
                ]);
                rows.push(r);
                items.push(v);
            }
        }
        Type::Daemonsets => {
            rows.push(head(&["NAME", "DESIRED", "CURRENT", "READY"]));
            for key in state.desired.daemon_sets.keys() {
                let (ns, n) = split(key);
                if !in_ns(args, ns) || !named(n) {
                    continue;
                }
                let Some(v) = kube::daemon_set(state, key) else {
                    continue;
                };
                let st = &v["status"];
                let mut r = Vec::new();
                if ns_col {
                    r.push(ns.to_string());
                }
                r.extend([
                    n.to_string(),
                    st["desiredNumberScheduled"].to_string(),
                    st["currentNumberScheduled"].to_string(),
                    st["numberReady"].to_string(),
                ]);
                rows.push(r);
                items.push(v);
            }
        }
        Type::Statefulsets | Type::Jobs | Type::Cronjobs | Type::Pvc | Type::Pv | Type::Pdb => {
            let kind = match args.kind {
                Type::Statefulsets => "StatefulSet",
                Type::Jobs => "Job",
                Type::Cronjobs => "CronJob",
                Type::Pv => "PersistentVolume",
                Type::Pdb => "PodDisruptionBudget",
                _ => "PersistentVolumeClaim",
            };
            // PersistentVolumes belong to no namespace: never filtered by one, no column.
            let cluster_scoped = args.kind == Type::Pv;
            let cols = super::kube_workloads::header(kind);
            if cluster_scoped {
                rows.push(cols.iter().map(|c| c.to_string()).collect());
            } else {
                rows.push(head(cols));
            }
            for (ns, n, v, cells) in super::kube_workloads::rows(state, kind, &|t| age(now, t)) {
                if !(cluster_scoped || in_ns(args, &ns)) || !named(&n) {
                    continue;
                }
                items.push(v);
                let mut r = Vec::new();
                if ns_col && !cluster_scoped {
                    r.push(ns);
                }
                r.push(n);
                r.extend(cells);
                rows.push(r);
            }
        }
        Type::Services => {
            rows.push(head(&[
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "ENDPOINTS",
            ]));
            for key in state.desired.services.keys() {
                let (ns, n) = split(key);
                if !in_ns(args, ns) || !named(n) {
                    continue;
                }
                let Some(v) = kube::service(state, key) else {
                    continue;
                };
                rows.push(service_row(state, key, &v, ns_col));
                items.push(v);
            }
        }
        Type::Nodes => {
            let mut h = vec!["NAME", "STATUS", "AGE"];
            if wide {
                h.extend(["INTERNAL-IP", "POD-CIDR", "ACKED"]);
            }
            rows.push(h.into_iter().map(String::from).collect());
            for (name, n) in &state.nodes {
                if !named(name) {
                    continue;
                }
                let mut status = if n.ready { "Ready" } else { "NotReady" }.to_string();
                if n.drained {
                    status.push_str(",SchedulingDisabled");
                }
                let mut r = vec![name.clone(), status, age(now, n.joined_at)];
                if let Some(v) = kube::node(state, name) {
                    if wide {
                        r.push(
                            v["status"]["addresses"][0]["address"]
                                .as_str()
                                .unwrap_or("")
                                .into(),
                        );
                        r.push(n.pod_cidr.map_or("<none>".into(), |c| c.to_string()));
                        r.push(
                            n.acked
                                .as_deref()
                                .map_or("<none>".into(), |c| c.chars().take(12).collect()),
                        );
                    }
                    items.push(v);
                }
                rows.push(r);
            }
        }
        Type::Events => {
            rows.push(head(&["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]));
            for e in kube::events(state) {
                let ns = e["metadata"]["namespace"].as_str().unwrap_or("");
                let obj = e["involvedObject"]["name"].as_str().unwrap_or("");
                if !in_ns(args, ns) || !named(obj) {
                    continue;
                }
                let mut r = Vec::new();
                if ns_col {
                    r.push(ns.to_string());
                }
                let at = e["lastTimestamp"].as_str().unwrap_or("").to_string();
                r.extend([
                    at,
                    e["type"].as_str().unwrap_or("").into(),
                    e["reason"].as_str().unwrap_or("").into(),
                    format!("pod/{obj}"),
                    e["message"].as_str().unwrap_or("").into(),
                ]);
                rows.push(r);
                items.push(e);
            }
        }
    }
    (items, rows)
}

/// Runs the command and returns its exit code.
pub fn run(args: Args) -> anyhow::Result<u8> {
    if args.watch {
        return super::watch::run(&args);
    }
    let state = fetch_state(&args.data_dir)?;
    let now = crate::consensus::now_ms();
    let (items, rows) = render(&args, &state, now);
    if args.name.is_some() && items.is_empty() {
        anyhow::bail!(
            "{:?} {:?} not found in namespace {:?}",
            args.kind,
            args.name.as_deref().unwrap_or(""),
            args.namespace
        );
    }
    let doc = match (args.name.is_some(), items.len()) {
        (true, 1) => items.into_iter().next().unwrap_or(Value::Null),
        _ => kube::list(items),
    };
    let text = match args.output {
        Some(Output::Json) => serde_json::to_string_pretty(&doc)? + "\n",
        Some(Output::Yaml) => serde_saphyr::to_string(&doc)?,
        _ if rows.len() <= 1 => {
            eprintln!("No resources found.");
            String::new()
        }
        _ => table(rows),
    };
    print_out(&text)?;
    Ok(0)
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
pub fn print_out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kommit_reconcilers::{Entry, NodeInfo};
    use kommit_schemas::{Limits, SourceTree};

    #[test]
    fn services_show_node_ports_and_load_balancer_ingress() {
        let mut tree = SourceTree::default();
        tree.add(
            "s.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80, nodePort: 30080}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec:\n  type: ExternalName\n  externalName: db.example.com\n---\napiVersion: v1\nkind: Service\nmetadata: {name: hl}\nspec:\n  clusterIP: None\n  ports: [{port: 53, protocol: UDP}]\n"
                .as_bytes(),
        );
        let desired = kommit_schemas::validate(&tree, &Limits::default()).expect("valid");
        let mut s = ClusterState::new();
        for (name, addr) in [("a", "10.0.0.2:7443"), ("b", "10.0.0.1:7443")] {
            let info = NodeInfo {
                name: name.into(),
                address: addr.into(),
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
                pods: 10,
                labels: Default::default(),
                taints: vec![],
            };
            s.apply(&Entry::NodeUp { info }, 1);
        }
        let digest = desired.digest();
        s.apply(
            &Entry::Adopt {
                commit: "c1".into(),
                parent: None,
                desired,
                digest,
                by: None,
            },
            2,
        );
        let args = Args {
            kind: Type::Services,
            name: None,
            namespace: "default".into(),
            all_namespaces: false,
            output: None,
            selector: None,
            data_dir: PathBuf::new(),
            watch: false,
        };
        let (items, rows) = render(&args, &s, 3);
        let ip = s.service_ips["default/lb"];
        assert_eq!(
            rows,
            [
                vec![
                    "NAME",
                    "TYPE",
                    "CLUSTER-IP",
                    "EXTERNAL-IP",
                    "PORT(S)",
                    "ENDPOINTS"
                ],
                vec![
                    "ext",
                    "ExternalName",
                    "<none>",
                    "db.example.com",
                    "<none>",
                    "0"
                ],
                vec!["hl", "ClusterIP", "None", "<none>", "53/UDP", "0"],
                vec![
                    "lb",
                    "LoadBalancer",
                    &ip.to_string(),
                    "10.0.0.1,10.0.0.2",
                    "80:30080/TCP",
                    "0"
                ],
            ]
            .map(|r| r.into_iter().map(String::from).collect::<Vec<_>>())
        );
        let lb = &items[2];
        assert_eq!(
            lb["status"]["loadBalancer"]["ingress"],
            serde_json::json!([{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}])
        );
        assert_eq!(lb["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(items[0]["status"]["loadBalancer"], serde_json::json!({}));
    }
}

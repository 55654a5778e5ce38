//! Deterministic generators of desired-state trees for tests and benchmarks.

use kommit_schemas::SourceTree;

/// `n` manifests of mixed kinds (Deployments, Services, ConfigMaps, Secrets, DaemonSets,
/// StatefulSets, Jobs, CronJobs, PVCs, Pods) across a few namespaces, every reference
/// resolvable, one document per file. The same `n` always gives the same tree.
pub fn mixed_tree(n: usize) -> SourceTree {
    let mut t = SourceTree::default();
    let namespaces = ["team-a", "team-b", "team-c", "team-d"];
    for ns in namespaces {
        t.add(
            format!("{ns}/namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n"),
        );
    }
    let mut i = namespaces.len();
    let mut app = 0usize;
    while i < n {
        let ns = namespaces[app % namespaces.len()];
        let name = format!("app-{app}");
        let docs = app_documents(ns, &name, app);
        for (j, doc) in docs.into_iter().enumerate() {
            if i >= n {
                break;
            }
            t.add(format!("{ns}/{name}/{j}.yaml"), doc);
            i += 1;
        }
        app += 1;
    }
    t
}

fn app_documents(ns: &str, name: &str, seed: usize) -> Vec<String> {
    let replicas = 1 + seed % 5;
    let cpu = 50 + (seed * 37) % 400;
    let mem = 32 + (seed * 13) % 480;
    let workload = match seed % 4 {
        0 | 1 => format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{app: {name}}}\nspec:\n  replicas: {replicas}\n  strategy:\n    rollingUpdate: {{maxSurge: 25%, maxUnavailable: 0}}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}, tier: web}}\n    spec:\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector:\n              matchLabels: {{app: {name}}}\n            topologyKey: kubernetes.io/hostname\n      containers:\n      - name: main\n        image: registry.local/{name}:1.{seed}\n        args: [--port, \"8080\"]\n        ports: [{{name: http, containerPort: 8080}}]\n        env:\n        - name: SETTING\n          valueFrom:\n            configMapKeyRef: {{name: {name}-config, key: setting}}\n        - name: TOKEN\n          valueFrom:\n            secretKeyRef: {{name: {name}-secret, key: token}}\n        resources:\n          requests: {{cpu: {cpu}m, memory: {mem}Mi}}\n          limits: {{memory: {}Mi}}\n        readinessProbe:\n          httpGet: {{path: /ready, port: http}}\n        volumeMounts:\n        - {{name: config, mountPath: /etc/{name}}}\n      volumes:\n      - name: config\n        configMap: {{name: {name}-config}}\n",
            mem * 2
        ),
        2 => format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  serviceName: {name}\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: db\n        image: registry.local/db:{seed}\n        resources:\n          requests: {{cpu: {cpu}m, memory: {mem}Mi}}\n        volumeMounts: [{{name: data, mountPath: /data}}]\n  volumeClaimTemplates:\n  - metadata: {{name: data}}\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests: {{storage: 1Gi}}\n"
        ),
        _ => format!(
            "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      tolerations: [{{operator: Exists}}]\n      nodeSelector: {{role: worker}}\n      containers:\n      - name: agent\n        image: registry.local/agent:{seed}\n        resources:\n          requests: {{cpu: 10m, memory: 16Mi}}\n"
        ),
    };
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  selector: {{app: {name}}}\n  ports:\n  - {{name: http, port: 80, targetPort: 8080}}\n"
    );
    let config = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-config\n  namespace: {ns}\ndata:\n  setting: \"{seed}\"\n  app.properties: |\n    name={name}\n    level=info\n"
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-secret\n  namespace: {ns}\ntype: Opaque\nstringData:\n  token: t{seed}\n"
    );
    let job = if seed.is_multiple_of(2) {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}-backup\n  namespace: {ns}\nspec:\n  schedule: \"{} 3 * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: OnFailure\n          containers:\n          - name: backup\n            image: registry.local/backup:1\n            command: [/backup, --target, {name}]\n",
            seed % 60
        )
    } else {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}-migrate\n  namespace: {ns}\nspec:\n  backoffLimit: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: migrate\n        image: registry.local/{name}:1.{seed}\n        command: [/migrate]\n"
        )
    };
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}-debug\n  namespace: {ns}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: shell\n    image: busybox:1.36\n    command: [sleep, \"3600\"]\n"
    );
    let pvc = format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}-cache\n  namespace: {ns}\nspec:\n  accessModes: [ReadWriteOnce]\n  resources:\n    requests: {{storage: 2Gi}}\n"
    );
    vec![config, secret, workload, service, job, pod, pvc]
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_trees_are_valid_and_sized() {
        for n in [10, 100, 1000] {
            let t = super::mixed_tree(n);
            assert_eq!(t.files.len(), n);
            if let Err(d) = kommit_schemas::validate(&t, &kommit_schemas::Limits::default()) {
                panic!(
                    "{}",
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
    }
}

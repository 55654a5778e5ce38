//! One container of a pod: its runtime spec (command with `$(VAR)` expanded, environment,
//! resources, security with the seccomp profile), image pull policy, probes and mounts.

use super::*;

/// Resolves `$(VAR)` references against `env`, as Kubernetes: `$$(VAR)` is a literal
/// `$(VAR)`, and an unknown reference stays as written.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    if let Some(v) = env.get(name) {
                        out.push_str(v);
                        i += 3 + end;
                        continue;
                    }
                }
            }
        }
        let ch = s[i..].chars().next().unwrap_or('$');
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// A container's seccomp filter: its own profile, else the pod's, else `RuntimeDefault` (the
/// kubelet's behaviour with `--seccomp-default`).
fn seccomp(profile: Option<&kommit_schemas::model::pod::SeccompProfile>) -> Seccomp {
    use kommit_schemas::model::pod::SeccompProfileType as T;
    match profile.map(|p| p.kind) {
        Some(T::Unconfined) => Seccomp::Unconfined,
        Some(T::RuntimeDefault) | None => Seccomp::RuntimeDefault,
    }
}

pub(super) fn container_plan(
    c: &Container,
    psc: &kommit_schemas::model::pod::PodSecurityContext,
    ns: &str,
    desired: &DesiredState,
    fields: &Fields,
    errors: &mut Vec<String>,
) -> ContainerPlan {
    let cname = c.name.as_str();
    let mut env = BTreeMap::new();
    for from in &c.env_from {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            let d = config_map_data(desired, ns, r.name.as_str());
            if d.is_none() && r.optional != Some(true) {
                errors.push(format!(
                    "container {cname}: configmap {:?} not found",
                    r.name.as_str()
                ));
            }
            d
        } else if let Some(r) = &from.secret_ref {
            match secret_data(desired, &fields.node.secrets, ns, r.name.as_str()) {
                Ok(d) => {
                    if d.is_none() && r.optional != Some(true) {
                        errors.push(format!(
                            "container {cname}: secret {:?} not found",
                            r.name.as_str()
                        ));
                    }
                    d
                }
                Err(e) => {
                    errors.push(format!("container {cname}: {e}"));
                    None
                }
            }
        } else {
            None
        };
        for (k, v) in data.unwrap_or_default() {
            env.insert(
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for e in &c.env {
        let value = if let Some(v) = &e.value {
            Some(expand(v, &env))
        } else if let Some(src) = &e.value_from {
            if let Some(r) = &src.config_map_key_ref {
                let v = config_map_value(desired, ns, r.name.as_str(), r.key.as_str());
                if v.is_none() && r.optional != Some(true) {
                    errors.push(format!(
                        "container {cname}: couldn't find key {} in ConfigMap {ns}/{}",
                        r.key.as_str(),
                        r.name.as_str()
                    ));
                }
                v
            } else if let Some(r) = &src.secret_key_ref {
                let v = match secret_data(desired, &fields.node.secrets, ns, r.name.as_str()) {
                    Ok(d) => d
                        .and_then(|d| d.get(r.key.as_str()).cloned())
                        .map(|b| String::from_utf8_lossy(&b).into_owned()),
                    Err(e) => {
                        errors.push(format!("container {cname}: {e}"));
                        Some(String::new())
                    }
                };
                if v.is_none() && r.optional != Some(true) {
                    errors.push(format!(
                        "container {cname}: couldn't find key {} in Secret {ns}/{}",
                        r.key.as_str(),
                        r.name.as_str()
                    ));
                }
                v
            } else {
                src.field_ref.as_ref().map(|f| fields.get(f.field_path))
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            env.insert(e.name.clone(), v);
        }
    }
    let command: Vec<String> = c.command.iter().map(|a| expand(a, &env)).collect();
    let args: Vec<String> = c.args.iter().map(|a| expand(a, &env)).collect();
    let sc = c.security_context.clone().unwrap_or_default();
    let caps = sc.capabilities.clone().unwrap_or_default();
    let mut resources = Resources::default();
    if let Some(r) = &c.resources {
        resources.memory_limit = r.limits.get("memory").map(|q| q.units());
        resources.cpu_limit_millis = r.limits.get("cpu").map(|q| q.milli());
        // Kubernetes: a limit without a request makes the request equal to the limit.
        resources.cpu_request_millis = r
            .requests
            .get("cpu")
            .or_else(|| r.limits.get("cpu"))
            .map(|q| q.milli());
        resources.writable_layer_limit = r.limits.get("ephemeral-storage").map(|q| q.units());
    }
    let spec = ContainerSpec {
        name: cname.to_string(),
        image: c.image.as_str().to_string(),
        command,
        args,
        env,
        working_dir: c.working_dir.clone(),
        resources,
        security: Security {
            privileged: sc.privileged == Some(true),
            run_as_user: sc.run_as_user.or(psc.run_as_user),
            run_as_group: sc.run_as_group.or(psc.run_as_group),
            read_only_root_filesystem: sc.read_only_root_filesystem == Some(true),
            add_capabilities: caps.add.clone(),
            drop_capabilities: caps.drop.clone(),
            seccomp: seccomp(sc.seccomp_profile.as_ref().or(psc.seccomp_profile.as_ref())),
        },
        log_max_bytes: 0,
        log_max_files: 0,
        mounts: Vec::new(),
    };
    let ports: BTreeMap<&str, u16> = c
        .ports
        .iter()
        .filter_map(|p| Some((p.name.as_ref()?.as_str(), p.container_port.get() as u16)))
        .collect();
    let mut probe = |p: &Option<Probe>, what: &str| {
        let p = p.as_ref()?;
        match probe_spec(p, &ports) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(format!("container {cname}: {what} probe: {e}"));
                None
            }
        }
    };
    let probes = Probes {
        startup: probe(&c.startup_probe, "startup"),
        readiness: probe(&c.readiness_probe, "readiness"),
        liveness: probe(&c.liveness_probe, "liveness"),
    };
    let mut hook = |h: Option<&kommit_schemas::model::pod::LifecycleHandler>, what: &str| {
        let h = h?;
        let r = if let Some(e) = &h.exec {
            Ok(Handler::Exec(e.command.to_vec()))
        } else if let Some(g) = &h.http_get {
            http_handler(g, &ports)
        } else {
            Err("no handler".to_string())
        };
        r.map_err(|e| errors.push(format!("container {cname}: {what} hook: {e}")))
            .ok()
    };
    let lifecycle = c.lifecycle.as_ref();
    let post_start = hook(lifecycle.and_then(|l| l.post_start.as_ref()), "postStart");
    let pre_stop = hook(lifecycle.and_then(|l| l.pre_stop.as_ref()), "preStop");
    let pull = c
        .image_pull_policy
        .unwrap_or_else(|| default_pull_policy(c.image.as_str()));
    ContainerPlan {
        spec,
        pull,
        probes,
        mounts: c
            .volume_mounts
            .iter()
            .map(|m| MountPlan {
                volume: m.name.as_str().to_string(),
                destination: m.mount_path.as_str().to_string(),
                read_only: m.read_only == Some(true),
                sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
            })
            .collect(),
        post_start,
        pre_stop,
    }
}

/// Kubernetes' default: `Always` for `:latest` or no tag, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> PullPolicy {
    if image.contains('@') {
        return PullPolicy::IfNotPresent;
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => PullPolicy::Always,
        Some(_) => PullPolicy::IfNotPresent,
    }
}

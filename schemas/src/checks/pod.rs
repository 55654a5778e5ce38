//! Checks of one pod spec (a Pod's, or a workload template's) against the other objects and
//! the cluster's policy: restart policy, volumes and their ConfigMap, Secret and PVC
//! references, the hostPath allowlist, container names and mounts, env references, the
//! privileged policy, and probe ports.

use super::*;

pub(super) fn pod(
    l: &Loaded,
    site: &PodSite<'_>,
    settings: &ClusterSettings,
    ix: &Index<'_>,
    diags: &mut Vec<Diagnostic>,
) {
    let spec = site.spec;
    let p = site.ptr;
    let _ = site.labels;
    // Restart policy fits the controller.
    let policy = spec.restart_policy;
    match l.kind {
        Kind::Deployment | Kind::DaemonSet | Kind::ReplicaSet | Kind::StatefulSet
            if policy.is_some_and(|r| r != RestartPolicy::Always) =>
        {
            diags.push(l.at(
                &format!("{p}/restartPolicy"),
                format!("{} pods must use restartPolicy Always", l.kind.name()),
            ))
        }
        Kind::Job | Kind::CronJob
            if !matches!(
                policy,
                Some(RestartPolicy::OnFailure | RestartPolicy::Never)
            ) =>
        {
            diags.push(l.at(
                &format!("{p}/restartPolicy"),
                format!(
                    "{} pods must set restartPolicy to OnFailure or Never",
                    l.kind.name()
                ),
            ))
        }
        _ => {}
    }
    dns(l, spec, p, diags);
    let ns = l.namespace.as_str();
    // Volumes: sources, references, hostPath policy.
    let mut volume_names: BTreeSet<&str> = BTreeSet::new();
    if let Object::StatefulSet(s) = &l.object {
        for t in &s.spec.volume_claim_templates {
            if let Some(n) = &t.metadata.name {
                volume_names.insert(n.as_str());
            }
        }
    }
    for (i, v) in spec.volumes.iter().enumerate() {
        let vp = format!("{p}/volumes/{i}");
        if !volume_names.insert(v.name.as_str()) {
            diags.push(l.at(
                &format!("{vp}/name"),
                format!("duplicate volume name `{}`", v.name),
            ));
        }
        if let Some(cm) = &v.config_map {
            if !cm.optional.unwrap_or(false)
                && !ix.config_maps.contains_key(&(ns, cm.name.as_str()))
            {
                diags.push(l.at(
                    &format!("{vp}/configMap/name"),
                    missing("ConfigMap", cm.name.as_str(), ns),
                ));
            }
        }
        if let Some(s) = &v.secret {
            if !s.optional.unwrap_or(false)
                && !ix.secrets.contains_key(&(ns, s.secret_name.as_str()))
            {
                diags.push(l.at(
                    &format!("{vp}/secret/secretName"),
                    missing("Secret", s.secret_name.as_str(), ns),
                ));
            }
        }
        if let Some(c) = &v.persistent_volume_claim {
            if !ix.claims.contains(&(ns, c.claim_name.as_str())) {
                diags.push(l.at(
                    &format!("{vp}/persistentVolumeClaim/claimName"),
                    missing("PersistentVolumeClaim", c.claim_name.as_str(), ns),
                ));
            }
        }
        if let Some(h) = &v.host_path {
            if let Err(e) = host_path_allowed(&h.path, &settings.host_path_allowlist) {
                diags.push(l.at(&format!("{vp}/hostPath/path"), e));
            }
        }
    }
    // Containers: names, mounts, env references, privileges, probe ports.
    let mut names = BTreeSet::new();
    let all = spec
        .init_containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{p}/initContainers/{i}"), c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{p}/containers/{i}"), c)),
        );
    for (cp, c) in all {
        if !names.insert(c.name.as_str()) {
            diags.push(l.at(
                &format!("{cp}/name"),
                format!("duplicate container name `{}`", c.name),
            ));
        }
        for (j, m) in c.volume_mounts.iter().enumerate() {
            if !volume_names.contains(m.name.as_str()) {
                diags.push(l.at(
                    &format!("{cp}/volumeMounts/{j}/name"),
                    format!("volumeMount `{}` names no volume of this pod", m.name),
                ));
            }
            if !m.mount_path.starts_with('/') {
                diags.push(l.at(
                    &format!("{cp}/volumeMounts/{j}/mountPath"),
                    format!("mountPath \"{}\" must be absolute", &*m.mount_path),
                ));
            }
            if let Some(sp) = &m.sub_path {
                if sp.starts_with('/') || sp.split('/').any(|s| s == "..") {
                    diags.push(l.at(
                        &format!("{cp}/volumeMounts/{j}/subPath"),
                        format!("subPath \"{sp}\" must be relative and must not contain `..`"),
                    ));
                }
            }
        }
        for (j, e) in c.env.iter().enumerate() {
            let Some(src) = &e.value_from else { continue };
            let ep = format!("{cp}/env/{j}/valueFrom");
            if let Some(r) = &src.config_map_key_ref {
                key_ref(
                    l,
                    &format!("{ep}/configMapKeyRef"),
                    "ConfigMap",
                    r,
                    ns,
                    &ix.config_maps,
                    diags,
                );
            }
            if let Some(r) = &src.secret_key_ref {
                key_ref(
                    l,
                    &format!("{ep}/secretKeyRef"),
                    "Secret",
                    r,
                    ns,
                    &ix.secrets,
                    diags,
                );
            }
        }
        for (j, e) in c.env_from.iter().enumerate() {
            let ep = format!("{cp}/envFrom/{j}");
            if let Some(r) = &e.config_map_ref {
                if !r.optional.unwrap_or(false)
                    && !ix.config_maps.contains_key(&(ns, r.name.as_str()))
                {
                    diags.push(l.at(
                        &format!("{ep}/configMapRef/name"),
                        missing("ConfigMap", r.name.as_str(), ns),
                    ));
                }
            }
            if let Some(r) = &e.secret_ref {
                if !r.optional.unwrap_or(false) && !ix.secrets.contains_key(&(ns, r.name.as_str()))
                {
                    diags.push(l.at(
                        &format!("{ep}/secretRef/name"),
                        missing("Secret", r.name.as_str(), ns),
                    ));
                }
            }
        }
        if c.security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false)
            && !settings.allow_privileged
        {
            diags.push(l.at(
                &format!("{cp}/securityContext/privileged"),
                "privileged containers are not allowed (set spec.allowPrivileged in kommit.yaml)",
            ));
        }
        let port_names: BTreeSet<&str> = c
            .ports
            .iter()
            .filter_map(|p| p.name.as_ref().map(|n| n.as_str()))
            .collect();
        for (probe, field) in [
            (&c.liveness_probe, "livenessProbe"),
            (&c.readiness_probe, "readinessProbe"),
            (&c.startup_probe, "startupProbe"),
        ] {
            let Some(probe) = probe else { continue };
            let port = probe
                .http_get
                .as_ref()
                .map(|h| (&h.port, "httpGet"))
                .or(probe.tcp_socket.as_ref().map(|t| (&t.port, "tcpSocket")));
            match port {
                Some((IntOrString::String(name), how)) if !port_names.contains(name.as_str()) => {
                    diags.push(l.at(
                        &format!("{cp}/{field}/{how}/port"),
                        format!(
                            "{field} names port `{name}`, which the container does not declare"
                        ),
                    ))
                }
                Some((IntOrString::Int(n), how)) if !(1..=65535).contains(n) => diags.push(l.at(
                    &format!("{cp}/{field}/{how}/port"),
                    format!("{field} port {n} is out of range 1..=65535"),
                )),
                _ => {}
            }
        }
    }
}

/// `dnsPolicy` and `dnsConfig` with Kubernetes' limits (`validatePodDNSConfig`).
fn dns(l: &Loaded, spec: &PodSpec, p: &str, diags: &mut Vec<Diagnostic>) {
    use crate::model::pod::{
        DnsPolicy, MAX_DNS_NAMESERVERS, MAX_DNS_SEARCHES, MAX_DNS_SEARCH_CHARS,
    };
    let base = crate::load::field_path(&format!("{p}/dnsConfig"));
    let field = |rest: &str| format!("{base}{rest}");
    let config = spec.dns_config.as_ref();
    if spec.dns_policy == Some(DnsPolicy::None) && config.is_none_or(|c| c.nameservers.is_empty()) {
        diags.push(l.at(
            &format!("{p}/dnsPolicy"),
            format!(
                "`dnsPolicy: None` needs at least one nameserver in `{}`",
                field(".nameservers")
            ),
        ));
    }
    let Some(c) = config else { return };
    let cp = format!("{p}/dnsConfig");
    if c.nameservers.len() > MAX_DNS_NAMESERVERS {
        diags.push(l.at(
            &format!("{cp}/nameservers"),
            format!(
                "`{}` lists {} nameservers; at most {MAX_DNS_NAMESERVERS} are allowed",
                field(".nameservers"),
                c.nameservers.len()
            ),
        ));
    }
    for (i, ns) in c.nameservers.iter().enumerate() {
        if ns.parse::<std::net::IpAddr>().is_err() {
            diags.push(l.at(
                &format!("{cp}/nameservers/{i}"),
                format!(
                    "`{}`: \"{ns}\" is not an IP address",
                    field(&format!(".nameservers[{i}]"))
                ),
            ));
        }
    }
    if c.searches.len() > MAX_DNS_SEARCHES {
        diags.push(l.at(
            &format!("{cp}/searches"),
            format!(
                "`{}` lists {} search domains; at most {MAX_DNS_SEARCHES} are allowed",
                field(".searches"),
                c.searches.len()
            ),
        ));
    }
    let chars =
        c.searches.iter().map(|s| s.len()).sum::<usize>() + c.searches.len().saturating_sub(1);
    if chars > MAX_DNS_SEARCH_CHARS {
        diags.push(l.at(
            &format!("{cp}/searches"),
            format!(
                "`{}` is {chars} characters long (joined by spaces); at most {MAX_DNS_SEARCH_CHARS} are allowed",
                field(".searches")
            ),
        ));
    }
    for (i, s) in c.searches.iter().enumerate() {
        if !crate::model::meta::is_dns1123_subdomain(s.strip_suffix('.').unwrap_or(s)) {
            diags.push(l.at(
                &format!("{cp}/searches/{i}"),
                format!(
                    "`{}`: \"{s}\" must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.'), optionally ending with '.'",
                    field(&format!(".searches[{i}]"))
                ),
            ));
        }
    }
    for (i, o) in c.options.iter().enumerate() {
        if o.name.is_empty() {
            diags.push(l.at(
                &format!("{cp}/options/{i}/name"),
                format!(
                    "`{}` must not be empty",
                    field(&format!(".options[{i}].name"))
                ),
            ));
        }
    }
}

fn missing(kind: &str, name: &str, ns: &str) -> String {
    format!("{kind} `{name}` is not defined in namespace `{ns}` by any file (mark the reference `optional: true` if that is intended)")
}

fn key_ref(
    l: &Loaded,
    ptr: &str,
    kind: &str,
    r: &crate::model::pod::KeySelector,
    ns: &str,
    defined: &BTreeMap<(&str, &str), BTreeSet<&str>>,
    diags: &mut Vec<Diagnostic>,
) {
    if r.optional.unwrap_or(false) {
        return;
    }
    match defined.get(&(ns, r.name.as_str())) {
        None => diags.push(l.at(&format!("{ptr}/name"), missing(kind, r.name.as_str(), ns))),
        Some(keys) if !keys.contains(&*r.key) => diags.push(l.at(
            &format!("{ptr}/key"),
            format!("{kind} `{}` has no key `{}`", r.name, &*r.key),
        )),
        Some(_) => {}
    }
}

/// Whether a hostPath is absolute, free of `..`, and under an allowlisted prefix.
pub fn host_path_allowed(path: &str, allowlist: &[String]) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("hostPath \"{path}\" must be absolute"));
    }
    if path.split('/').any(|s| s == "..") {
        return Err(format!("hostPath \"{path}\" must not contain `..`"));
    }
    fn norm(p: &str) -> Vec<&str> {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .collect()
    }
    let want = norm(path);
    let ok = allowlist.iter().any(|a| {
        let a = norm(a);
        want.len() >= a.len() && want[..a.len()] == a[..]
    });
    if ok {
        Ok(())
    } else if allowlist.is_empty() {
        Err(format!(
            "hostPath \"{path}\" is not allowed: kommit.yaml spec.hostPathAllowlist is empty"
        ))
    } else {
        Err(format!(
            "hostPath \"{path}\" is not under an allowlisted path ({})",
            allowlist.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths() {
        let allow = vec!["/srv/data".to_string(), "/var/log/".to_string()];
        let table = [
            ("/srv/data", true),
            ("/srv/data/x", true),
            ("/srv/database", false),
            ("/var/log", true),
            ("/etc", false),
            ("/srv/data/../../etc", false),
            ("relative", false),
        ];
        for (p, want) in table {
            assert_eq!(host_path_allowed(p, &allow).is_ok(), want, "{p}");
        }
    }
}

//! `kommit.yaml`: the cluster's own settings, kept in the desired-state repository.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `kommit.yaml` document as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfig {
    /// `kommit.dev/v1`.
    #[schemars(extend("const" = "kommit.dev/v1"))]
    pub api_version: String,
    /// `ClusterConfig`.
    #[schemars(extend("const" = "ClusterConfig"))]
    pub kind: String,
    /// The cluster's name.
    pub metadata: ClusterMeta,
    /// Settings; every one has a default.
    #[serde(default)]
    pub spec: ClusterConfigSpec,
}

/// The cluster's name.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterMeta {
    /// A DNS-1123 label.
    pub name: super::meta::Label,
}

/// Cluster settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterConfigSpec {
    /// The branch whose head is the desired state (default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<super::meta::Branch>,
    /// The range pod CIDRs are cut from (default 10.244.0.0/16).
    #[serde(default, rename = "podCIDR", skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<super::meta::Cidr>,
    /// Prefix length of each node's pod CIDR (default 24).
    #[serde(
        default,
        rename = "nodeCIDRMaskSize",
        skip_serializing_if = "Option::is_none"
    )]
    pub node_cidr_mask_size: Option<super::meta::Bounded<16, 28>>,
    /// The range ClusterIPs are allocated from (default 10.96.0.0/16).
    #[serde(
        default,
        rename = "serviceCIDR",
        skip_serializing_if = "Option::is_none"
    )]
    pub service_cidr: Option<super::meta::Cidr>,
    /// The DNS domain of services (default `cluster.local`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<super::meta::Name>,
    /// Node directories (and everything below them) pods may mount as hostPath.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_path_allowlist: Vec<String>,
    /// Whether privileged containers are allowed (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privileged: Option<bool>,
    /// Whether a force push or other history rewrite may be adopted (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_history_rewrite: Option<bool>,
}

/// The settings with every default resolved, as the cluster uses them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSettings {
    /// The cluster's name.
    pub name: String,
    /// The desired-state branch.
    pub branch: String,
    /// The range pod CIDRs are cut from.
    pub pod_cidr: ipnet::Ipv4Net,
    /// Prefix length of each node's pod CIDR.
    pub node_cidr_mask_size: u8,
    /// The ClusterIP range.
    pub service_cidr: ipnet::Ipv4Net,
    /// The services' DNS domain.
    pub cluster_domain: String,
    /// Allowed hostPath prefixes.
    pub host_path_allowlist: Vec<String>,
    /// Whether privileged containers are allowed.
    pub allow_privileged: bool,
    /// Whether history rewrites may be adopted.
    pub allow_history_rewrite: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            name: "kommit".into(),
            branch: "main".into(),
            pod_cidr: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 244, 0, 0), 16)
                .expect("16 is a valid prefix length"),
            node_cidr_mask_size: 24,
            service_cidr: ipnet::Ipv4Net::new(std::net::Ipv4Addr::new(10, 96, 0, 0), 16)
                .expect("16 is a valid prefix length"),
            cluster_domain: "cluster.local".into(),
            host_path_allowlist: Vec::new(),
            allow_privileged: false,
            allow_history_rewrite: false,
        }
    }
}

impl ClusterConfig {
    /// Resolves defaults. Errors name the field and the value.
    pub fn settings(&self) -> Result<ClusterSettings, (&'static str, String)> {
        let d = ClusterSettings::default();
        let s = &self.spec;
        let pod_cidr = s.pod_cidr.map(|c| c.0.trunc()).unwrap_or(d.pod_cidr);
        let service_cidr = s
            .service_cidr
            .map(|c| c.0.trunc())
            .unwrap_or(d.service_cidr);
        let mask = s
            .node_cidr_mask_size
            .map(|m| u8::try_from(m.get()).expect("bounded to 16..=28"))
            .unwrap_or(d.node_cidr_mask_size);
        if mask < pod_cidr.prefix_len() {
            return Err((
                "nodeCIDRMaskSize",
                format!(
                    "nodeCIDRMaskSize {mask} is shorter than podCIDR's prefix /{}",
                    pod_cidr.prefix_len()
                ),
            ));
        }
        if pod_cidr.contains(&service_cidr.network()) || service_cidr.contains(&pod_cidr.network())
        {
            return Err((
                "serviceCIDR",
                format!("serviceCIDR {service_cidr} overlaps podCIDR {pod_cidr}"),
            ));
        }
        Ok(ClusterSettings {
            name: self.metadata.name.to_string(),
            branch: s
                .branch
                .as_ref()
                .map(|b| b.as_str().to_owned())
                .unwrap_or(d.branch),
            pod_cidr,
            node_cidr_mask_size: mask,
            service_cidr,
            cluster_domain: s
                .cluster_domain
                .as_ref()
                .map(|n| n.to_string())
                .unwrap_or(d.cluster_domain),
            host_path_allowlist: s.host_path_allowlist.clone(),
            allow_privileged: s.allow_privileged.unwrap_or(false),
            allow_history_rewrite: s.allow_history_rewrite.unwrap_or(false),
        })
    }
}

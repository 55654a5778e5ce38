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
    /// The range NodePorts come from, `first-last` as kube-apiserver's
    /// `--service-node-port-range` (default `30000-32767`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_node_port_range: Option<PortRangeText>,
    /// Node directories (and everything below them) pods may mount as hostPath.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_path_allowlist: Vec<String>,
    /// Whether privileged containers are allowed (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_privileged: Option<bool>,
    /// Whether a force push or other history rewrite may be adopted (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_history_rewrite: Option<bool>,
    /// Whether a Secret with values must be SOPS-encrypted (default false: a Secret in
    /// clear is a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_encrypted_secrets: Option<bool>,
    /// SSH public keys (`ssh-ed25519 AAAA... comment`, as in `allowed_signers`) trusted to
    /// sign commits (`git commit -S` with `gpg.format=ssh`). When the *adopted* commit lists
    /// any, a head is adopted only if one of them signed it, so a push cannot trust itself.
    /// At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_signing_keys: Vec<SigningKeyText>,
    /// Where the forge shows a commit: an http(s) URL with `{sha}` where the commit's id
    /// goes (`https://github.com/org/repo/commit/{sha}`); the web page links commits there.
    #[serde(default, rename = "commitURL", skip_serializing_if = "Option::is_none")]
    pub commit_url: Option<CommitUrlText>,
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
    /// The NodePort range. Absent from the bytes while it is the default, so older states
    /// read and write unchanged.
    #[serde(default, skip_serializing_if = "NodePortRange::is_default")]
    pub service_node_port_range: NodePortRange,
    /// Allowed hostPath prefixes.
    pub host_path_allowlist: Vec<String>,
    /// Whether privileged containers are allowed.
    pub allow_privileged: bool,
    /// Whether history rewrites may be adopted.
    pub allow_history_rewrite: bool,
    /// Whether Secrets in clear are refused. Absent from the bytes while false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_encrypted_secrets: bool,
    /// SSH public keys trusted to sign heads. Absent from the bytes while empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_signing_keys: Vec<String>,
    /// The forge's commit URL pattern (`{sha}` for the commit). Absent from the bytes while
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_url: Option<String>,
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
            service_node_port_range: NodePortRange::default(),
            host_path_allowlist: Vec::new(),
            allow_privileged: false,
            allow_history_rewrite: false,
            require_encrypted_secrets: false,
            trusted_signing_keys: Vec::new(),
            commit_url: None,
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
        if s.trusted_signing_keys.len() > MAX_SIGNING_KEYS {
            return Err((
                "trustedSigningKeys",
                format!(
                    "{} trustedSigningKeys; at most {MAX_SIGNING_KEYS} are allowed",
                    s.trusted_signing_keys.len()
                ),
            ));
        }
        let service_node_port_range = match &s.service_node_port_range {
            None => d.service_node_port_range,
            Some(t) => NodePortRange::parse(t.as_str()).map_err(|e| ("serviceNodePortRange", e))?,
        };
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
            service_node_port_range,
            host_path_allowlist: s.host_path_allowlist.clone(),
            allow_privileged: s.allow_privileged.unwrap_or(false),
            allow_history_rewrite: s.allow_history_rewrite.unwrap_or(false),
            require_encrypted_secrets: s.require_encrypted_secrets.unwrap_or(false),
            trusted_signing_keys: s
                .trusted_signing_keys
                .iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            commit_url: s.commit_url.as_ref().map(|u| u.as_str().to_owned()),
        })
    }
}

/// The pattern of `serviceNodePortRange`: two port numbers joined by `-`.
pub const PORT_RANGE: &str = r"^[0-9]{1,5}-[0-9]{1,5}$";

/// `serviceNodePortRange` as written (`30000-32767`); its bounds are checked by
/// [`NodePortRange::parse`] when the settings are resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PortRangeText(String);

impl PortRangeText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for PortRangeText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = s.split_once('-').is_some_and(|(a, b)| {
            [a, b]
                .iter()
                .all(|p| (1..=5).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()))
        });
        if ok {
            Ok(PortRangeText(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid port range \"{s}\": expected e.g. 30000-32767"
            )))
        }
    }
}

impl JsonSchema for PortRangeText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PortRange".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": PORT_RANGE, "description": "first-last, such as 30000-32767"})
    }
}

/// Most `trustedSigningKeys`.
pub const MAX_SIGNING_KEYS: usize = 64;

/// The pattern of a trusted signing key: an OpenSSH public key line of a type kommit
/// verifies, its base64 blob, and an optional comment.
pub const SIGNING_KEY: &str =
    r"^(ssh-ed25519|ecdsa-sha2-nistp256) [A-Za-z0-9+/]{16,2048}={0,2}( [^\n]{0,200})?$";

/// One `trustedSigningKeys` entry as written; the daemon parses it as an SSH public key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct SigningKeyText(String);

impl SigningKeyText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SigningKeyText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let re = regex::Regex::new(SIGNING_KEY).map_err(serde::de::Error::custom)?;
        if re.is_match(&s) {
            Ok(SigningKeyText(s))
        } else {
            let shown: String = s.chars().take(40).collect();
            Err(serde::de::Error::custom(format!(
                "invalid signing key \"{shown}\": expected an OpenSSH public key line (ssh-ed25519 or ecdsa-sha2-nistp256)"
            )))
        }
    }
}

impl JsonSchema for SigningKeyText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SigningKey".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": SIGNING_KEY, "description": "an OpenSSH public key line: ssh-ed25519 AAAA... comment"})
    }
}

/// The pattern of `commitURL`: an http(s) URL holding `{sha}`, without spaces, quotes or
/// angle brackets.
pub const COMMIT_URL: &str = r#"^https?://[^\s"'<>{}]{1,400}\{sha\}[^\s"'<>{}]{0,100}$"#;

/// `commitURL` as written; the web page puts a commit's id where `{sha}` is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CommitUrlText(String);

impl CommitUrlText {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CommitUrlText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let re = regex::Regex::new(COMMIT_URL).map_err(serde::de::Error::custom)?;
        if re.is_match(&s) {
            Ok(CommitUrlText(s))
        } else {
            let shown: String = s.chars().take(60).collect();
            Err(serde::de::Error::custom(format!(
                "invalid commitURL \"{shown}\": expected an http(s) URL with {{sha}} where the commit goes"
            )))
        }
    }
}

impl JsonSchema for CommitUrlText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CommitUrl".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "pattern": COMMIT_URL, "description": "an http(s) URL with {sha} where the commit id goes"})
    }
}

/// The NodePort range, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePortRange {
    /// The first port.
    pub first: u16,
    /// The last port.
    pub last: u16,
}

impl Default for NodePortRange {
    /// Kubernetes' default, 30000-32767.
    fn default() -> Self {
        NodePortRange {
            first: 30000,
            last: 32767,
        }
    }
}

impl NodePortRange {
    /// Whether this is the default range.
    pub fn is_default(&self) -> bool {
        *self == NodePortRange::default()
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never true: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Reads `first-last`: ports 1 to 65535, first not after last.
    pub fn parse(s: &str) -> Result<NodePortRange, String> {
        let bad = || {
            format!("serviceNodePortRange \"{s}\" must be `first-last` with ports 1-65535, first not after last (e.g. 30000-32767)")
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.parse().map_err(|_| bad())?;
        let last: u16 = b.parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(NodePortRange { first, last })
    }
}

impl std::fmt::Display for NodePortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

//! policy/v1 PodDisruptionBudget: how many of a set of pods a voluntary disruption (for
//! kommit, `kommit node drain`) may take down at once. The reconcilers' drain evicts a pod
//! only while every budget selecting it stays met.

use super::meta::{IntOrString, LabelSelector, ObjectMeta};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// policy/v1 PodDisruptionBudget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudget {
    /// `policy/v1`.
    #[schemars(extend("const" = "policy/v1"))]
    pub api_version: String,
    /// `PodDisruptionBudget`.
    #[schemars(extend("const" = "PodDisruptionBudget"))]
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// The budget.
    pub spec: PodDisruptionBudgetSpec,
}

/// A budget: at most one of `minAvailable` and `maxUnavailable`, each a count or a
/// percentage of the pods' expected number (their controllers' replicas).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PodDisruptionBudgetSpec {
    /// Pods that must stay healthy after an eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrString>,
    /// Pods that may be unhealthy after an eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
    /// The pods it covers, in its namespace (absent: none; empty: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
    /// IfHealthyBudget (default: an unhealthy pod goes only while the budget is met) or
    /// AlwaysAllow (unhealthy pods always go).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_pod_eviction_policy: Option<UnhealthyPodEvictionPolicy>,
}

/// Whether pods that are not healthy may be evicted while the budget is not met.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UnhealthyPodEvictionPolicy {
    /// Only while the budget is met.
    IfHealthyBudget,
    /// Always.
    AlwaysAllow,
}

//! Object metadata, names, selectors and the scalar types Kubernetes manifests share
//! (quantities, int-or-string).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

pub use super::scalars::{
    Bounded, Branch, Cidr, FileMode, NonEmpty, Port, Text, Weight, BRANCH, IPV4_CIDR,
};

/// The pattern of a DNS-1123 subdomain (most object names).
pub const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// The pattern of a DNS-1123 label (namespaces, services, container and port names).
pub const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// The pattern of a Kubernetes resource quantity.
pub const QUANTITY: &str =
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,2}|[KMGTPE]i|[numkMGTPE])?$";

/// Whether `s` is a DNS-1123 label: at most 63 lowercase alphanumerics or '-', starting
/// and ending alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $check:ident, $pattern:ident, $max:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            /// Checks and wraps a name.
            pub fn new(s: impl Into<String>) -> Result<Self, String> {
                let s = s.into();
                if $check(&s) {
                    Ok(Self(s))
                } else {
                    Err(format!("invalid name \"{}\": must be {}", s, $what))
                }
            }
            /// The name as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "maxLength": $max,
                    "pattern": $pattern,
                    "description": $what,
                })
            }
        }
    };
}

name_type!(
    /// A DNS-1123 subdomain name.
    Name, is_dns1123_subdomain, DNS1123_SUBDOMAIN, 253,
    "a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
);
name_type!(
    /// A DNS-1123 label name.
    Label, is_dns1123_label, DNS1123_LABEL, 63,
    "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters"
);

/// Metadata of a top-level object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    /// The object's name.
    pub name: Name,
    /// The namespace; `default` when absent (namespaced kinds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Label>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Metadata of a pod template or claim template: the name is optional.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMeta {
    /// Optional name (used by volumeClaimTemplates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A label selector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    /// Exact label matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<SelectorRequirement>,
}

impl LabelSelector {
    /// Whether the selector matches `labels`. An empty selector matches everything.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }

    /// Whether the selector has no requirement at all.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

/// One set-based selector requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SelectorRequirement {
    /// The label key.
    pub key: String,
    /// The operator.
    pub operator: SelectorOperator,
    /// Values for In and NotIn.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl SelectorRequirement {
    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => v.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => v.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => v.is_some(),
            SelectorOperator::DoesNotExist => v.is_none(),
        }
    }
}

/// Label selector operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SelectorOperator {
    /// The label's value is one of `values`.
    In,
    /// The label is absent or its value is not in `values`.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// A Kubernetes resource quantity such as `128Mi`, `0.5` or `250m`, kept as written and
/// parsed on demand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Quantity(String);

/// A quantity that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity \"{0}\": expected a number with an optional suffix such as 128Mi, 1G, 0.5 or 250m")]
pub struct QuantityError(pub String);

impl Quantity {
    /// Parses and keeps a quantity.
    pub fn new(s: impl Into<String>) -> Result<Self, QuantityError> {
        let s = s.into();
        parse_quantity_milli(&s)?;
        Ok(Self(s))
    }
    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The value in thousandths, rounded up (as Kubernetes does for cpu), saturating.
    pub fn milli(&self) -> u64 {
        parse_quantity_milli(&self.0).unwrap_or(0)
    }
    /// The value in whole units, rounded up, saturating (bytes for memory and storage).
    pub fn units(&self) -> u64 {
        self.milli().div_ceil(1000)
    }
}

/// Parses a quantity into thousandths of a unit, rounding up. Negative quantities are refused
/// (no resource in kommit's model can be negative).
pub fn parse_quantity_milli(s: &str) -> Result<u64, QuantityError> {
    let err = || QuantityError(s.to_owned());
    let t = s.trim();
    if t.is_empty() || t.len() > 64 {
        return Err(err());
    }
    let t = t.strip_prefix('+').unwrap_or(t);
    if t.starts_with('-') {
        return Err(err());
    }
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(num_end);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return Err(err());
    }
    // Scale as (multiplier, decimal exponent) applied to thousandths.
    let (mult, exp10): (u128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        e if e.starts_with(['e', 'E']) => {
            let n: i32 = e[1..].parse().map_err(|_| err())?;
            if !(-99..=99).contains(&n) || e.len() > 4 {
                return Err(err());
            }
            (1, n)
        }
        _ => return Err(err()),
    };
    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        // More digits than u128 holds: far beyond any real resource, so saturate.
        return Ok(u64::MAX);
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err())?
    };
    // value = mantissa * 10^(exp10 - frac_len) * mult, in milli: * 10^3.
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| err())?;
    let exp = exp10 - frac_len + 3;
    let scaled = mantissa.checked_mul(mult).ok_or_else(err)?;
    let value = if exp >= 0 {
        10u128
            .checked_pow(exp.unsigned_abs())
            .and_then(|p| scaled.checked_mul(p))
            .unwrap_or(u128::MAX)
    } else {
        let p = 10u128.checked_pow(exp.unsigned_abs()).unwrap_or(u128::MAX);
        scaled.div_ceil(p)
    };
    Ok(u64::try_from(value).unwrap_or(u64::MAX))
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        let s = match v {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            other => {
                return Err(serde::de::Error::custom(format!(
                    "invalid quantity {other}: expected a string or a number"
                )))
            }
        };
        Quantity::new(s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a Kubernetes quantity such as 128Mi, 1G, 0.5 or 250m",
            "anyOf": [
                {"type": "string", "pattern": QUANTITY, "maxLength": 64},
                {"type": "number", "minimum": 0}
            ]
        })
    }
}

/// An integer or a string, as Kubernetes' `IntOrString` (ports by name, percentages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i64),
    /// A string, such as a port name or a percentage.
    String(String),
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let table: &[(&str, Option<u64>)] = &[
            ("1", Some(1000)),
            ("0.5", Some(500)),
            ("250m", Some(250)),
            ("128Mi", Some(128 * 1024 * 1024 * 1000)),
            ("1G", Some(1_000_000_000_000)),
            ("1e3", Some(1_000_000)),
            (".5", Some(500)),
            ("1.5Gi", Some(1_610_612_736_000)),
            ("100n", Some(1)),
            ("+2", Some(2000)),
            ("-1", None),
            ("12XB", None),
            ("", None),
            ("1..2", None),
            ("Mi", None),
            ("1 Mi", None),
        ];
        for (input, want) in table {
            assert_eq!(parse_quantity_milli(input).ok(), *want, "{input}");
        }
    }

    #[test]
    fn names() {
        for ok in ["a", "web-1", "a.b.c", "0abc"] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in ["", "Web", "-a", "a-", "a_b", "a..b", &"x".repeat(254)] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        assert!(!is_dns1123_label("a.b"));
        assert!(!is_dns1123_label(&"x".repeat(64)));
    }
}

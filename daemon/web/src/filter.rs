//! The namespace and label filter of the list pages: `?ns=web&label=app=hello,tier`.
//!
//! A label selector is Kubernetes' equality form: comma-separated `key=value`, `key!=value`
//! or `key` (the label exists). Bad input is one line naming the term.

use std::collections::BTreeMap;

/// Most terms one selector may hold.
pub const MAX_TERMS: usize = 16;
/// Longest selector or namespace accepted.
pub const MAX_LEN: usize = 512;

/// A selector or namespace that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// Longer than [`MAX_LEN`].
    #[error("filter longer than {MAX_LEN} bytes")]
    TooLong,
    /// More than [`MAX_TERMS`] terms.
    #[error("label selector has more than {MAX_TERMS} terms")]
    TooManyTerms,
    /// A term with an empty key.
    #[error("label selector term {0:?} has no key")]
    EmptyKey(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
}

/// A namespace and a label selector; both empty match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// The namespace, when given.
    pub namespace: Option<String>,
    /// The selector as typed.
    pub selector: String,
    terms: Vec<Term>,
}

impl Filter {
    /// Parses `ns` and `label` query values.
    pub fn parse(ns: Option<&str>, label: Option<&str>) -> Result<Filter, FilterError> {
        let ns = ns.map(str::trim).filter(|s| !s.is_empty());
        let label = label.map(str::trim).unwrap_or("");
        if ns.map_or(0, str::len) > MAX_LEN || label.len() > MAX_LEN {
            return Err(FilterError::TooLong);
        }
        let mut terms = Vec::new();
        for raw in label.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if terms.len() == MAX_TERMS {
                return Err(FilterError::TooManyTerms);
            }
            let term = if let Some((k, v)) = raw.split_once("!=") {
                Term::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = raw.split_once('=') {
                let v = v.strip_prefix('=').unwrap_or(v);
                Term::Equals(k.trim().into(), v.trim().into())
            } else {
                Term::Exists(raw.into())
            };
            let key = match &term {
                Term::Equals(k, _) | Term::NotEquals(k, _) | Term::Exists(k) => k,
            };
            if key.is_empty() {
                return Err(FilterError::EmptyKey(raw.into()));
            }
            terms.push(term);
        }
        Ok(Filter {
            namespace: ns.map(str::to_string),
            selector: label.to_string(),
            terms,
        })
    }

    /// Whether nothing is filtered.
    pub fn is_empty(&self) -> bool {
        self.namespace.is_none() && self.terms.is_empty()
    }

    /// Whether an object in `namespace` with `labels` passes (a `None` namespace is
    /// cluster-scoped, passing only without a namespace filter).
    pub fn matches(&self, namespace: Option<&str>, labels: &BTreeMap<String, String>) -> bool {
        if let Some(ns) = &self.namespace {
            if namespace != Some(ns.as_str()) {
                return false;
            }
        }
        self.terms.iter().all(|t| match t {
            Term::Equals(k, v) => labels.get(k) == Some(v),
            Term::NotEquals(k, v) => labels.get(k) != Some(v),
            Term::Exists(k) => labels.contains_key(k),
        })
    }

    /// The query string that reproduces this filter (`?ns=..&label=..`, or empty).
    pub fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(ns) = &self.namespace {
            q.push(format!("ns={}", encode(ns)));
        }
        if !self.selector.is_empty() {
            q.push(format!("label={}", encode(&self.selector)));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_equality_selectors() {
        let l = labels(&[("app", "hello"), ("tier", "web")]);
        for (sel, want) in [
            ("", true),
            ("app=hello", true),
            ("app==hello", true),
            ("app=other", false),
            ("app!=other", true),
            ("app!=hello", false),
            ("tier", true),
            ("missing", false),
            ("app=hello, tier=web", true),
            ("app=hello,tier=db", false),
        ] {
            let f = Filter::parse(None, Some(sel)).expect("parses");
            assert_eq!(f.matches(Some("default"), &l), want, "{sel:?}");
        }
    }

    #[test]
    fn namespace_filters_and_cluster_scoped_objects() {
        let f = Filter::parse(Some("web"), None).expect("parses");
        assert!(f.matches(Some("web"), &BTreeMap::new()));
        assert!(!f.matches(Some("default"), &BTreeMap::new()));
        assert!(!f.matches(None, &BTreeMap::new()));
        assert!(Filter::parse(Some(" "), Some(""))
            .expect("parses")
            .is_empty());
    }

    #[test]
    fn bad_selectors_are_one_line_errors() {
        assert_eq!(
            Filter::parse(None, Some("=x")),
            Err(FilterError::EmptyKey("=x".into()))
        );
        let many = vec!["a"; MAX_TERMS + 1].join(",");
        assert_eq!(
            Filter::parse(None, Some(&many)),
            Err(FilterError::TooManyTerms)
        );
        let long = "a".repeat(MAX_LEN + 1);
        assert_eq!(Filter::parse(Some(&long), None), Err(FilterError::TooLong));
    }

    #[test]
    fn query_round_trips_through_encoding() {
        let f = Filter::parse(Some("web"), Some("app=a b&c")).expect("parses");
        assert_eq!(f.query(), "?ns=web&label=app%3Da%20b%26c");
        assert_eq!(Filter::default().query(), "");
    }
}

//! The limits file: domains, and in each a tree of descriptors (as envoyproxy/ratelimit's), each
//! node matching one descriptor entry by key and optionally value, with a token bucket.
//!
//! ```yaml
//! domains:
//!   - domain: edge
//!     descriptors:
//!       - key: api_key                 # any value: one bucket per API key
//!         rate_limit: {requests_per_unit: 100, unit: second, burst: 200}
//!       - key: plan
//!         value: free                  # only this value...
//!         descriptors:                 # ...then the next entry
//!           - key: api_key
//!             rate_limit: {requests_per_unit: 5, unit: second}
//! ```

use std::collections::HashMap;

use edge_common::rls::{Entry, Unit};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    domains: Vec<RawDomain>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    domain: String,
    #[serde(default)]
    descriptors: Vec<RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    key: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    rate_limit: Option<RawLimit>,
    #[serde(default)]
    unlimited: bool,
    #[serde(default)]
    descriptors: Vec<RawNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimit {
    requests_per_unit: u32,
    unit: String,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    name: Option<String>,
}

/// A token bucket: `burst` tokens, refilled at `requests_per_unit` per `unit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub name: String,
    pub requests_per_unit: u32,
    pub unit: Unit,
    pub burst: u32,
}

impl Limit {
    /// Microseconds per token (the GCRA emission interval), at least 1.
    pub fn interval_us(&self) -> u64 {
        let unit_us = self.unit.seconds().unwrap_or(1).saturating_mul(1_000_000);
        (unit_us / u64::from(self.requests_per_unit.max(1))).max(1)
    }

    /// Microseconds a full bucket holds (burst × interval).
    pub fn tolerance_us(&self) -> u64 {
        self.interval_us().saturating_mul(u64::from(self.burst))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Limit(Limit),
    Unlimited,
}

#[derive(Debug, Default)]
struct Node {
    rule: Option<Rule>,
    /// By key, then by value (`None`: any value).
    children: HashMap<String, HashMap<Option<String>, Node>>,
}

/// Validated limits.
#[derive(Debug, Default)]
pub struct Limits {
    domains: HashMap<String, Node>,
}

fn unit(s: &str) -> Option<Unit> {
    Some(match s {
        "second" => Unit::Second,
        "minute" => Unit::Minute,
        "hour" => Unit::Hour,
        "day" => Unit::Day,
        "week" => Unit::Week,
        _ => return None,
    })
}

fn build(nodes: Vec<RawNode>, at: &str, path: &str) -> Result<Node, String> {
    let mut out = Node::default();
    for (i, n) in nodes.into_iter().enumerate() {
        let here = format!("{at}.descriptors[{i}]");
        if n.key.is_empty() {
            return Err(format!("{here}.key: must not be empty"));
        }
        let name_path = match &n.value {
            Some(v) => format!("{path}{}_{v}", if path.is_empty() { "" } else { "." }),
            None => format!("{path}{}{}", if path.is_empty() { "" } else { "." }, n.key),
        };
        let rule = match (n.rate_limit, n.unlimited) {
            (Some(_), true) => {
                return Err(format!(
                    "{here}: `rate_limit` and `unlimited: true` exclude each other"
                ))
            }
            (None, true) => Some(Rule::Unlimited),
            (None, false) => None,
            (Some(l), false) => {
                if l.requests_per_unit == 0 {
                    return Err(format!(
                        "{here}.rate_limit.requests_per_unit: must be at least 1"
                    ));
                }
                let Some(u) = unit(&l.unit) else {
                    return Err(format!(
                        "{here}.rate_limit.unit: unknown `{}`: one of second, minute, hour, day, week",
                        l.unit
                    ));
                };
                let burst = l.burst.unwrap_or(l.requests_per_unit);
                if burst == 0 {
                    return Err(format!("{here}.rate_limit.burst: must be at least 1"));
                }
                Some(Rule::Limit(Limit {
                    name: l.name.unwrap_or_else(|| format!("{}_{}", n.key, name_path)),
                    requests_per_unit: l.requests_per_unit,
                    unit: u,
                    burst,
                }))
            }
        };
        let mut node = build(n.descriptors, &here, &name_path)?;
        node.rule = rule;
        let by_value = out.children.entry(n.key.clone()).or_default();
        if by_value.insert(n.value.clone(), node).is_some() {
            return Err(format!(
                "{here}: a second descriptor with key `{}` and {}",
                n.key,
                n.value
                    .map_or("no value".to_string(), |v| format!("value `{v}`"))
            ));
        }
    }
    Ok(out)
}

impl Limits {
    /// Parses and validates a limits file (YAML or JSON); errors name the field.
    pub fn parse(text: &str) -> Result<Limits, String> {
        let de = serde_yaml::Deserializer::from_str(text);
        let raw: RawFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let p = e.path().to_string();
            // serde_yaml puts its own path in front of the message: the field path says it.
            let msg = e.inner().to_string();
            let msg = match msg.split_once(": ") {
                Some((head, rest)) if !head.contains(' ') => rest.to_string(),
                _ => msg,
            };
            format!("{}: {msg}", if p == "." { "(root)".into() } else { p })
        })?;
        let mut domains = HashMap::new();
        for (i, d) in raw.domains.into_iter().enumerate() {
            let at = format!("domains[{i}]");
            if d.domain.is_empty() {
                return Err(format!("{at}.domain: must not be empty"));
            }
            let name = d.domain.clone();
            let node = build(d.descriptors, &at, "")?;
            if domains.insert(name.clone(), node).is_some() {
                return Err(format!("{at}.domain: `{name}` appears twice"));
            }
        }
        Ok(Limits { domains })
    }

    /// The rule for a descriptor: walk its entries down the tree (an exact value beats a
    /// key-only node); the node reached by the last entry decides. `None`: no limit applies.
    pub fn find(&self, domain: &str, entries: &[Entry]) -> Option<&Rule> {
        let mut node = self.domains.get(domain)?;
        if entries.is_empty() {
            return None;
        }
        for e in entries {
            let by_value = node.children.get(&e.key)?;
            node = by_value
                .get(&Some(e.value.clone()))
                .or_else(|| by_value.get(&None))?;
        }
        node.rule.as_ref()
    }

    pub fn domains(&self) -> usize {
        self.domains.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(k: &str, v: &str) -> Entry {
        Entry {
            key: k.into(),
            value: v.into(),
        }
    }

    const FILE: &str = r#"
domains:
  - domain: edge
    descriptors:
      - key: api_key
        rate_limit: {requests_per_unit: 100, unit: second, burst: 200}
      - key: plan
        value: free
        descriptors:
          - key: api_key
            rate_limit: {requests_per_unit: 5, unit: minute}
      - key: plan
        descriptors:
          - key: api_key
            unlimited: true
"#;

    #[test]
    fn entries_walk_the_tree_exact_values_first() {
        let l = Limits::parse(FILE).unwrap();
        let lim = |r: Option<&Rule>| match r {
            Some(Rule::Limit(l)) => Some((l.requests_per_unit, l.unit, l.burst)),
            _ => None,
        };
        assert_eq!(
            lim(l.find("edge", &[e("api_key", "k")])),
            Some((100, Unit::Second, 200))
        );
        assert_eq!(
            lim(l.find("edge", &[e("plan", "free"), e("api_key", "k")])),
            Some((5, Unit::Minute, 5))
        );
        assert_eq!(
            l.find("edge", &[e("plan", "pro"), e("api_key", "k")]),
            Some(&Rule::Unlimited)
        );
        assert_eq!(l.find("edge", &[e("plan", "free")]), None);
        assert_eq!(l.find("other", &[e("api_key", "k")]), None);
        assert_eq!(l.find("edge", &[e("user", "k")]), None);
        let Some(Rule::Limit(x)) = l.find("edge", &[e("api_key", "k")]) else {
            panic!()
        };
        assert_eq!((x.interval_us(), x.tolerance_us()), (10_000, 2_000_000));
    }

    #[test]
    fn errors_name_the_field() {
        let err = |s: &str| Limits::parse(s).err().unwrap_or_default();
        assert_eq!(
            err("domains: [{domain: d, descriptors: [{key: k, rate_limit: {requests_per_unit: 1, unit: fortnight}}]}]"),
            "domains[0].descriptors[0].rate_limit.unit: unknown `fortnight`: one of second, minute, hour, day, week"
        );
        assert_eq!(
            err("domains: [{domain: d, descriptors: [{key: k, rate_limit: {requests_per_unit: 0, unit: second}}]}]"),
            "domains[0].descriptors[0].rate_limit.requests_per_unit: must be at least 1"
        );
        assert_eq!(
            err("domains: [{domain: d, descriptors: [{key: k}, {key: k}]}]"),
            "domains[0].descriptors[1]: a second descriptor with key `k` and no value"
        );
        assert!(
            err("domains: [{domain: d, descriptors: [{key: k, rate: 1}]}]").starts_with(
                "domains[0].descriptors[0].rate: unknown field `rate`, expected one of"
            )
        );
        assert!(err("{}").starts_with("(root): missing field `domains`"));
    }
}

//! Sets of CIDR ranges with a fast membership test.
//!
//! Ranges are parsed once (at configure time), merged, and kept as sorted, disjoint `[start, end]`
//! intervals per address family, so `contains` is a binary search with no allocation.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::ConfigError;
use crate::ip::canonical;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl CidrSet {
    /// Parses CIDRs such as `192.0.2.0/24`, `2001:db8::/32`; a bare address is a single host.
    /// `field` names the list in the configuration, for the error (`field[i]: ...`).
    pub fn parse<S: AsRef<str>>(field: &str, items: &[S]) -> Result<Self, ConfigError> {
        let mut nets = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            nets.push(
                parse_net(item.as_ref())
                    .map_err(|msg| ConfigError::new(format!("{field}[{i}]"), msg))?,
            );
        }
        Ok(Self::from_nets(nets))
    }

    pub fn from_nets(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        Self {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match canonical(ip) {
            IpAddr::V4(a) => lookup(&self.v4, u32::from(a)),
            IpAddr::V6(a) => lookup(&self.v6, u128::from(a)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Number of disjoint intervals after merging (for diagnostics).
    pub fn interval_count(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Parses one CIDR or bare address. Host bits set below the prefix (`10.0.0.1/8`) are refused:
/// such an entry is almost always a typo, and silently widening it would be worse.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set below the prefix length (did you mean `{}`?)",
                net.trunc()
            ));
        }
        // `::ffff:a.b.c.d/96+` is an IPv4 range written in IPv6 form; store it as IPv4 so it
        // matches the canonical (IPv4) form of client addresses.
        if let IpNet::V6(n) = net {
            if let (Some(v4), Some(len)) =
                (n.addr().to_ipv4_mapped(), n.prefix_len().checked_sub(96))
            {
                if let Ok(mapped) = IpNet::new(IpAddr::V4(v4), len) {
                    return Ok(mapped);
                }
            }
        }
        return Ok(net);
    }
    match s.parse::<IpAddr>() {
        Ok(ip) => Ok(IpNet::from(canonical(ip))),
        Err(_) => Err(format!("`{s}` is not a CIDR range or IP address")),
    }
}

fn merge<T: Copy + Ord + One>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (start, end) in v {
        match out.last_mut() {
            // Overlapping or adjacent: extend the previous interval.
            Some(last) if last.1 == T::MAX || start <= last.1.plus_one() => {
                if end > last.1 {
                    last.1 = end;
                }
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn lookup<T: Copy + Ord>(v: &[(T, T)], x: T) -> bool {
    // Index of the first interval whose start is > x; the candidate is the one before it.
    let idx = v.partition_point(|&(start, _)| start <= x);
    idx.checked_sub(1)
        .and_then(|i| v.get(i))
        .is_some_and(|&(_, end)| x <= end)
}

trait One: Sized {
    const MAX: Self;
    fn plus_one(self) -> Self;
}
impl One for u32 {
    const MAX: Self = u32::MAX;
    fn plus_one(self) -> Self {
        self.saturating_add(1)
    }
}
impl One for u128 {
    const MAX: Self = u128::MAX;
    fn plus_one(self) -> Self {
        self.saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn membership_at_edges() {
        let set = CidrSet::parse(
            "ranges",
            &["66.249.64.0/27", "2001:4860:4801:10::/64", "192.0.2.9"],
        )
        .unwrap();
        assert!(set.contains(ip("66.249.64.0")));
        assert!(set.contains(ip("66.249.64.31")));
        assert!(!set.contains(ip("66.249.64.32")));
        assert!(!set.contains(ip("66.249.63.255")));
        assert!(set.contains(ip("2001:4860:4801:10::1")));
        assert!(set.contains(ip("2001:4860:4801:10:ffff:ffff:ffff:ffff")));
        assert!(!set.contains(ip("2001:4860:4801:11::")));
        assert!(set.contains(ip("192.0.2.9")));
        assert!(!set.contains(ip("192.0.2.10")));
        assert!(
            set.contains(ip("::ffff:66.249.64.5")),
            "v4-mapped v6 matches v4 ranges"
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn merges_overlapping_and_adjacent() {
        let set = CidrSet::parse(
            "r",
            &["10.0.0.0/25", "10.0.0.128/25", "10.0.0.0/24", "10.0.1.0/24"],
        )
        .unwrap();
        assert_eq!(set.interval_count(), 1);
        assert!(set.contains(ip("10.0.1.255")));
        assert!(!set.contains(ip("10.0.2.0")));
        let all = CidrSet::parse("r", &["0.0.0.0/0", "::/0"]).unwrap();
        assert!(all.contains(ip("255.255.255.255")));
        assert!(all.contains(ip("ffff::1")));
        assert!(CidrSet::default().is_empty());
        assert!(!CidrSet::default().contains(ip("1.1.1.1")));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bad_entries_name_the_index() {
        let err = CidrSet::parse("allow.cidrs", &["10.0.0.0/8", "10.0.0.0/33"]).unwrap_err();
        assert_eq!(err.field, "allow.cidrs[1]");
        assert_eq!(
            err.message,
            "`10.0.0.0/33` is not a CIDR range or IP address"
        );
        let err = CidrSet::parse("c", &["10.1.0.0/8"]).unwrap_err();
        assert_eq!(err.field, "c[0]");
        assert!(
            err.message.contains("did you mean `10.0.0.0/8`"),
            "{}",
            err.message
        );
        assert!(CidrSet::parse("c", &["nope"]).is_err());
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::super::*;
        use proptest::prelude::*;
        use std::net::Ipv4Addr;

        proptest! {
            /// The merged binary-search set agrees with a naive scan over the original nets.
            #[test]
            fn agrees_with_naive_scan(
                nets in proptest::collection::vec((any::<u32>(), 0u8..=32), 0..40),
                probes in proptest::collection::vec(any::<u32>(), 1..60),
            ) {
                let nets: Vec<IpNet> = nets
                    .into_iter()
                    .map(|(a, p)| IpNet::new(IpAddr::V4(Ipv4Addr::from(a)), p).unwrap().trunc())
                    .collect();
                let set = CidrSet::from_nets(nets.clone());
                // Probe both random addresses and the edges of every net.
                let edges = nets.iter().flat_map(|n| match n {
                    IpNet::V4(n) => vec![u32::from(n.network()), u32::from(n.broadcast()),
                        u32::from(n.network()).wrapping_sub(1), u32::from(n.broadcast()).wrapping_add(1)],
                    IpNet::V6(_) => vec![],
                });
                for p in probes.into_iter().chain(edges) {
                    let addr = IpAddr::V4(Ipv4Addr::from(p));
                    prop_assert_eq!(set.contains(addr), nets.iter().any(|n| n.contains(&addr)));
                }
            }
        }
    }
}

//! The per-request decision: which stage, and why.
//!
//! **Bucket layout.** A request's sticky key hashes (XXH3 with the salt) into one of 10,000 buckets.
//! The base stage (`base_stage`, default the first) holds every bucket no other stage claims. The
//! other stages, in configuration order, are laid out alternately from the two ends of the bucket
//! range: the 1st from bucket 0 upwards, the 2nd from bucket 9,999 downwards, the 3rd upwards after
//! the 1st, the 4th downwards before the 2nd, and so on; the base stage gets what is left in the
//! middle. So raising the weight of the innermost stage at an end (always the case with one or two
//! non-base stages, e.g. `canary` and `next`) only moves base users into it, and lowering it only
//! moves its users back to the base stage; nobody else moves. (No layout can promise that for three
//! stages ramped independently at once; with more stages, ramp the innermost one at its end.)

use std::net::IpAddr;

use edge_common::http::{cookie, query_param, split_path};

use crate::config::{Config, StageData, StickyKey, BUCKETS};

/// The bucket table for these weights (basis points per stage) and base stage.
pub fn layout(weights: &[u32], base: usize) -> Vec<u8> {
    let mut table = vec![u8::try_from(base).unwrap_or(0); BUCKETS as usize];
    let (mut low, mut high) = (0usize, BUCKETS as usize);
    let others = weights.iter().enumerate().filter(|(i, _)| *i != base);
    for (n, (stage, &w)) in others.enumerate() {
        let w = (w as usize).min(high - low);
        let range = if n % 2 == 0 {
            low += w;
            low - w..low
        } else {
            high -= w;
            high..high + w
        };
        let id = u8::try_from(stage).unwrap_or(0);
        if let Some(slots) = table.get_mut(range) {
            slots.fill(id);
        }
    }
    table
}

/// Why a request got its stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A QA override (header, cookie or query parameter).
    Override,
    /// The client address or the host is on an allowlist.
    Allowlist,
    /// The pin cookie from an earlier assignment.
    Cookie,
    /// The sticky hash of the key.
    Hash,
    /// No sticky key at all: the base stage.
    Fallback,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Override,
        Reason::Allowlist,
        Reason::Cookie,
        Reason::Hash,
        Reason::Fallback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Override => "override",
            Reason::Allowlist => "allowlist",
            Reason::Cookie => "cookie",
            Reason::Hash => "hash",
            Reason::Fallback => "fallback",
        }
    }

    pub fn index(self) -> usize {
        match self {
            Reason::Override => 0,
            Reason::Allowlist => 1,
            Reason::Cookie => 2,
            Reason::Hash => 3,
            Reason::Fallback => 4,
        }
    }
}

/// The request attributes the decision reads.
pub struct Request<'a> {
    /// `:authority` (a port is ignored).
    pub authority: &'a str,
    /// `:path` with the query.
    pub path: &'a str,
    /// A request header by lowercase name.
    pub header: &'a dyn Fn(&str) -> Option<&'a str>,
    pub cookie: Option<&'a str>,
    /// The client address, looked up only if an allowlist or the sticky key needs it.
    pub client_ip: &'a dyn Fn() -> Option<IpAddr>,
    /// Unix seconds (pin cookies expire).
    pub now: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub stage: usize,
    pub reason: Reason,
    /// An override named a stage it may not select (or no stage): ignored.
    pub override_rejected: bool,
    /// A pin cookie was sent but is forged, stale or for another user: ignored.
    pub pin_rejected: bool,
}

/// The value a request's sticky key has: the first configured key the request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky<'a> {
    Value(&'a [u8]),
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Sticky<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Sticky::Value(v) => v,
            Sticky::V4(a) => a,
            Sticky::V6(a) => a,
        }
    }
}

/// The request's sticky key, if it carries any of the configured ones.
pub fn sticky<'a>(cfg: &Config, r: &Request<'a>) -> Option<Sticky<'a>> {
    cfg.sticky.iter().find_map(|k| match k {
        StickyKey::Cookie(name) => r
            .cookie
            .and_then(|c| cookie(c, name))
            .filter(|v| !v.is_empty())
            .map(|v| Sticky::Value(v.as_bytes())),
        StickyKey::Header(name) => (r.header)(name)
            .filter(|v| !v.is_empty())
            .map(|v| Sticky::Value(v.as_bytes())),
        StickyKey::ClientIp => (r.client_ip)().map(|ip| match edge_common::ip::canonical(ip) {
            IpAddr::V4(v4) => Sticky::V4(v4.octets()),
            IpAddr::V6(v6) => Sticky::V6(v6.octets()),
        }),
    })
}

/// The `Set-Cookie` value pinning `stage` for this request's sticky key (an empty key when it
/// has none), signed with the first secret.
pub fn pin_cookie(cfg: &Config, r: &Request<'_>, stage: &str) -> Option<String> {
    let pin = cfg.pin.as_ref()?;
    let secret = pin.secrets.first()?;
    let key = sticky(cfg, r);
    let value = crate::pin::mint(
        secret,
        stage,
        key.as_ref().map_or(&[][..], Sticky::as_bytes),
        r.now,
    );
    Some(format!("{}={value}{}", pin.name, pin.attributes))
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host
                    .get(host.len() - domain.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(domain))
                && host.as_bytes().get(host.len() - domain.len() - 1) == Some(&b'.')
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        // [v6]:port
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| h.trim_start_matches('['));
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// Decides the stage of a request under `data`.
pub fn assign(cfg: &Config, data: &StageData, r: &Request<'_>) -> Assignment {
    let mut rejected = false;
    if let Some(o) = cfg.overrides_on(data) {
        let asked = o
            .header
            .as_deref()
            .and_then(|h| (r.header)(h))
            .or_else(|| {
                o.cookie
                    .as_deref()
                    .and_then(|c| r.cookie.and_then(|v| cookie(v, c)))
            })
            .or_else(|| {
                o.query
                    .as_deref()
                    .and_then(|q| split_path(r.path).1.and_then(|qs| query_param(qs, q)))
            });
        if let Some(name) = asked {
            match cfg.stages.iter().position(|s| s == name) {
                Some(i) if o.allowed.get(i) == Some(&true) => {
                    return Assignment {
                        stage: i,
                        reason: Reason::Override,
                        override_rejected: false,
                        pin_rejected: false,
                    }
                }
                _ => rejected = true,
            }
        }
    }
    if !data.allowlists.is_empty() {
        let host = strip_port(r.authority);
        let mut ip: Option<Option<IpAddr>> = None;
        for a in &data.allowlists {
            let by_host = a.hosts.iter().any(|p| host_matches(p, host));
            let by_ip = !by_host
                && !a.cidrs.is_empty()
                && ip
                    .get_or_insert_with(|| (r.client_ip)())
                    .is_some_and(|addr| a.cidrs.contains(addr));
            if by_host || by_ip {
                return Assignment {
                    stage: a.stage,
                    reason: Reason::Allowlist,
                    override_rejected: rejected,
                    pin_rejected: false,
                };
            }
        }
    }
    let key = sticky(cfg, r);
    let mut pin_rejected = false;
    if let (Some(pin), Some(c)) = (&cfg.pin, r.cookie) {
        if let Some(v) = cookie(c, &pin.name) {
            let k = key.as_ref().map_or(&[][..], Sticky::as_bytes);
            match crate::pin::verify(v, &pin.secrets, k, r.now, pin.max_age) {
                Some(name) => {
                    if let Some(i) = cfg.stages.iter().position(|s| s == name) {
                        // A stage at weight 0 releases its pins.
                        if data.weights.get(i).is_some_and(|&w| w > 0) {
                            return Assignment {
                                stage: i,
                                reason: Reason::Cookie,
                                override_rejected: rejected,
                                pin_rejected: false,
                            };
                        }
                    }
                }
                None => pin_rejected = true,
            }
        }
    }
    if let Some(k) = key {
        let b = bucket(cfg.seed, k.as_bytes());
        let stage = data.table.get(b as usize).map_or(cfg.base, |&s| s as usize);
        return Assignment {
            stage,
            reason: Reason::Hash,
            override_rejected: rejected,
            pin_rejected,
        };
    }
    Assignment {
        stage: cfg.base,
        reason: Reason::Fallback,
        override_rejected: rejected,
        pin_rejected,
    }
}

/// The stage (index) `cfg` gives a request that carries only header `name: value` (no cookie,
/// no client address) under the configured stage data: what tests and tools expect for a user.
pub fn stage_for_header(cfg: &Config, name: &str, value: &str) -> usize {
    let h = |n: &str| (n == name).then_some(value);
    assign(
        cfg,
        &cfg.data,
        &Request {
            authority: "",
            path: "/",
            header: &h,
            cookie: None,
            client_ip: &|| None,
            now: 0,
        },
    )
    .stage
}

/// The bucket of a sticky key value.
pub fn bucket(seed: u64, key: &[u8]) -> u32 {
    edge_common::hash::bucket(seed, key, BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn cfg(extra: &str) -> Config {
        Config::from_json(
            format!(
                r#"{{"stages":[{{"name":"prod","weight":80}},{{"name":"canary","weight":10}},{{"name":"next","weight":10}}],
                "sticky_key":[{{"type":"cookie","name":"uid"}},{{"type":"header","name":"x-user-id"}},{{"type":"client_ip"}}]{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn run(
        c: &Config,
        headers: &[(&str, &str)],
        cookie: Option<&str>,
        path: &str,
        host: &str,
        ip: Option<&str>,
    ) -> Assignment {
        let h = |n: &str| headers.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
        let ipf = || ip.and_then(|s| s.parse().ok());
        assign(
            c,
            &c.data,
            &Request {
                authority: host,
                path,
                header: &h,
                cookie,
                client_ip: &ipf,
                now: NOW,
            },
        )
    }

    const NOW: u64 = 1_800_000_000;
    const SECRET: &[u8] = b"0123456789abcdef";

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn layout_places_stages_at_the_ends() {
        let t = layout(&[8000, 1000, 1000], 0);
        assert_eq!(
            (t[0], t[999], t[1000], t[8999], t[9000], t[9999]),
            (1, 1, 0, 0, 2, 2)
        );
        let counts = |t: &[u8], s: u8| t.iter().filter(|&&x| x == s).count();
        assert_eq!(
            (counts(&t, 0), counts(&t, 1), counts(&t, 2)),
            (8000, 1000, 1000)
        );
        // Base stage in the middle of the list.
        let t = layout(&[500, 9000, 500], 1);
        assert_eq!((t[0], t[499], t[500], t[9499], t[9500]), (0, 0, 1, 1, 2));
        assert!(layout(&[10_000], 0).iter().all(|&s| s == 0));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn precedence_override_allowlist_cookie_hash_fallback() {
        let c = cfg(
            r#","overrides":{"header":"x-stage-override","query":"stage","cookie":"so","stages":["canary","next"]},
            "allowlists":[{"stage":"next","cidrs":["10.0.0.0/8"],"hosts":["*.corp.example","next.example"]}],
            "pin_cookie":{"name":"stage","secret":"0123456789abcdef"}"#,
        );
        let a = run(
            &c,
            &[("x-stage-override", "canary")],
            None,
            "/",
            "h",
            Some("10.1.1.1"),
        );
        assert_eq!((a.stage, a.reason), (1, Reason::Override));
        let a = run(&c, &[], None, "/a?x=1&stage=next", "h", None);
        assert_eq!((a.stage, a.reason), (2, Reason::Override));
        let a = run(&c, &[], Some("so=canary"), "/", "h", None);
        assert_eq!((a.stage, a.reason), (1, Reason::Override));
        // prod is not selectable by override: ignored, counted.
        let a = run(
            &c,
            &[("x-stage-override", "prod")],
            None,
            "/",
            "h",
            Some("10.1.1.1"),
        );
        assert_eq!(
            (a.stage, a.reason, a.override_rejected),
            (2, Reason::Allowlist, true)
        );
        for host in ["next.example", "NEXT.example:8443", "a.corp.example"] {
            let a = run(&c, &[], None, "/", host, None);
            assert_eq!((a.stage, a.reason), (2, Reason::Allowlist), "{host}");
        }
        assert_eq!(
            run(&c, &[], None, "/", "corp.example", None).reason,
            Reason::Fallback
        );
        assert_eq!(
            run(&c, &[], None, "/", "xcorp.example", None).reason,
            Reason::Fallback
        );
        let pin = format!("stage={}", crate::pin::mint(SECRET, "canary", b"", NOW));
        let a = run(&c, &[], Some(&pin), "/", "h", None);
        assert_eq!((a.stage, a.reason), (1, Reason::Cookie));
        // An unsigned or unknown pinned stage is ignored.
        let a = run(&c, &[], Some("stage=canary"), "/", "h", None);
        assert_eq!((a.reason, a.pin_rejected), (Reason::Fallback, true));
        let zzz = format!("stage={}", crate::pin::mint(SECRET, "zzz", b"", NOW));
        assert_eq!(
            run(&c, &[], Some(&zzz), "/", "h", None).reason,
            Reason::Fallback
        );
        let a = run(&c, &[("x-user-id", "u1")], None, "/", "h", None);
        assert_eq!(a.reason, Reason::Hash);
        // The cookie key comes first, the header second, the IP last.
        let by_cookie = run(&c, &[("x-user-id", "u1")], Some("uid=u2"), "/", "h", None);
        let u2 = run(&c, &[("x-user-id", "u2")], None, "/", "h", None);
        assert_eq!(by_cookie.stage, u2.stage);
        // The kill switch turns overrides off.
        let off = cfg(r#","overrides":{"enabled":false,"header":"x-stage-override"}"#);
        assert_ne!(
            run(
                &off,
                &[("x-stage-override", "canary")],
                None,
                "/",
                "h",
                None
            )
            .reason,
            Reason::Override
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn forged_pins_never_choose_the_stage() {
        let c = cfg(
            r#","overrides":{"enabled":false,"header":"x-stage-override","stages":["canary"]},
            "pin_cookie":{"secret":["0123456789abcdef-new","0123456789abcdef"],"max_age_seconds":3600}"#,
        );
        for i in 0..200 {
            let id = format!("user-{i}");
            let honest = run(&c, &[("x-user-id", &id)], None, "/", "h", None);
            for forged in [
                "stage=next".to_string(),
                "stage=canary".to_string(),
                // Signed, but for another user.
                format!(
                    "stage={}",
                    crate::pin::mint(SECRET, "next", b"someone-else", NOW)
                ),
                // Signed for this user, but stale.
                format!(
                    "stage={}",
                    crate::pin::mint(SECRET, "next", id.as_bytes(), NOW - 3601)
                ),
            ] {
                let a = run(&c, &[("x-user-id", &id)], Some(&forged), "/", "h", None);
                assert_eq!(
                    (a.stage, a.reason, a.pin_rejected),
                    (honest.stage, Reason::Hash, true),
                    "{id} {forged}"
                );
            }
        }
        // A pin signed by the old secret for this user holds; the new secret signs.
        let id = b"user-7";
        let old = format!("stage={}", crate::pin::mint(SECRET, "next", id, NOW - 60));
        let a = run(&c, &[("x-user-id", "user-7")], Some(&old), "/", "h", None);
        assert_eq!((a.stage, a.reason), (2, Reason::Cookie));
        let hdr = |n: &str| (n == "x-user-id").then_some("user-7");
        let r = Request {
            authority: "h",
            path: "/",
            header: &hdr,
            cookie: None,
            client_ip: &|| None,
            now: NOW,
        };
        let set = pin_cookie(&c, &r, "next").unwrap();
        let v = crate::pin::mint(b"0123456789abcdef-new", "next", id, NOW);
        assert!(
            set.starts_with(&format!("stage={v}; Max-Age=3600")),
            "{set}"
        );
        // Weight 0 releases a valid pin.
        let mut data = c.data.clone();
        data.weights = vec![9000, 1000, 0];
        data.table = layout(&data.weights, 0);
        let a = assign(
            &c,
            &data,
            &Request {
                cookie: Some(&old),
                ..r
            },
        );
        assert_ne!(a.reason, Reason::Cookie);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn ten_thousand_users_split_by_weight() {
        let c = cfg("");
        let mut n = [0u32; 3];
        for i in 0..10_000 {
            let id = format!("user-{i}");
            let a = run(&c, &[("x-user-id", &id)], None, "/", "h", None);
            n[a.stage] += 1;
        }
        // 80/10/10 within 1.5 points.
        assert!((7850..=8150).contains(&n[0]), "{n:?}");
        assert!(
            (850..=1150).contains(&n[1]) && (850..=1150).contains(&n[2]),
            "{n:?}"
        );
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::super::layout;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            /// Raising or lowering the innermost stage at either end moves buckets only between it
            /// and the base stage.
            #[test]
            fn ramping_the_innermost_stage_moves_only_base_users(
                ws in proptest::collection::vec(0u32..3000, 1..5),
                which_end in 0usize..2,
                delta in 1u32..2000,
                up in any::<bool>(),
            ) {
                let mut weights = vec![0u32];
                weights.extend(ws.iter().copied());
                let others: u32 = ws.iter().sum();
                prop_assume!(others <= 10_000);
                weights[0] = 10_000 - others;
                // The innermost stage at an end is the last non-base stage placed there.
                let n = ws.len();
                let idx_at_end: Vec<usize> = (0..n).filter(|k| k % 2 == which_end).collect();
                prop_assume!(!idx_at_end.is_empty());
                let stage = idx_at_end[idx_at_end.len() - 1] + 1;
                let mut after = weights.clone();
                if up {
                    let d = delta.min(after[0]);
                    after[stage] += d;
                    after[0] -= d;
                } else {
                    let d = delta.min(after[stage]);
                    after[stage] -= d;
                    after[0] += d;
                }
                let (t0, t1) = (layout(&weights, 0), layout(&after, 0));
                for (a, b) in t0.iter().zip(t1.iter()) {
                    if a != b {
                        let s = stage as u8;
                        prop_assert!((*a == 0 && *b == s) || (*a == s && *b == 0), "{} -> {}", a, b);
                        prop_assert_eq!(up, *b == s);
                    }
                }
            }
        }
    }
}

//! The request-path decision: which rules apply, which bucket each uses, and the compare-and-swap
//! update of that bucket in a shared, bounded table. Host access goes through two small traits so
//! this runs against Envoy's shared data in the filter and against an in-memory store in tests.
//!
//! # Storage
//! Buckets live in a fixed table of `max_buckets` slots (shared-data keys `<ns>:<index>`), each
//! 16 bytes: a 64-bit fingerprint of (rule, key) and the bucket's TAT. A key may sit in one of two
//! slots (2-way set associative, both chosen by hash). On a miss, the new bucket takes whichever
//! candidate holds a *full* bucket (its TAT is in the past: forgetting it loses nothing), else the
//! one that will be full soonest. So memory is fixed at start-up whatever the traffic, and limits
//! are exact while fewer keys are *active* (not yet refilled) than slots; beyond that, the least
//! constrained active buckets are forgotten first, which can only let a forgotten key through early.
//!
//! # Exactness
//! Every slot exists from configure time on (the ABI's compare-and-swap does not cover creating a
//! key), so every update is a CAS against the version read: concurrent workers never lose an
//! update. Creating a slot passes a CAS no live key holds ([`CREATE_ONLY`]), so a worker that
//! creates the table (or grows it on a reload) never wipes a bucket another worker stored meanwhile. A conflicting update is retried with fresh state, up to `MAX_ATTEMPTS` times; past that,
//! or if the host refuses the call, the failure mode decides.
//!
//! # Leases (high rates)
//! For rates of 2,000/s and more, a worker takes up to one millisecond's worth of tokens
//! (`Rule::lease`, at most 64) from the shared bucket in one update and hands them out locally for
//! at most `LEASE_TTL_NS`; tokens left when the lease expires are dropped. The shared bucket counts
//! every token when it is taken, so admissions can run ahead of the bound by at most one lease
//! lifetime of the rate (1 ms worth), and unused leases can only admit *fewer*. Below 2,000/s the
//! lease is one token: every request updates the shared bucket, exactly as without leases.

use std::net::IpAddr;

use edge_common::hash::{hash64, scale};
use edge_common::host::{HostError, SharedData};

use crate::bucket::{ceil_secs, TakeN};
use crate::config::{Config, FailureMode, KeyPart, MissingKey, Rule};
use edge_common::PathPolicy;

/// Attempts at a conflicting compare-and-swap before the failure mode applies.
pub const MAX_ATTEMPTS: u32 = 32;

/// What the limiter needs of a request. Pseudo-headers (`:path`, `:method`, `:authority`) are
/// passed in [`RequestLine`]; other headers and the client address are read on demand.
pub trait RequestView {
    /// A request header (lowercase name) as the client sent it, bytes not necessarily UTF-8;
    /// `None` if absent.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// The client address (`source.address`).
    fn client_ip(&self) -> Option<IpAddr>;
    /// The bot verdict's category (edge.wasm).
    fn bot_category(&self) -> Option<&str> {
        None
    }
    /// The verified bot's name (edge.wasm).
    fn verified_bot(&self) -> Option<&str> {
        None
    }
    /// The assigned stage (edge.wasm).
    fn stage(&self) -> Option<&str> {
        None
    }
}

/// The request line parts the rules look at, borrowed from the request's headers.
#[derive(Debug, Default, Clone, Copy)]
pub struct RequestLine<'a> {
    /// The canonical path (`edge_common::path`), without the query.
    pub path: &'a str,
    pub method: &'a str,
    /// `:authority` without port (compared case-insensitively).
    pub host: &'a str,
}

impl<'a> RequestLine<'a> {
    /// Builds it from pseudo-header values; `path` is the canonical path (a query is dropped).
    pub fn new(path: Option<&'a str>, method: Option<&'a str>, authority: Option<&'a str>) -> Self {
        let path = path.map_or("", |p| edge_common::http::split_path(p).0);
        let host = authority.map_or("", |a| {
            if a.starts_with('[') {
                // [v6]:port
                a.split_once(']')
                    .map_or(a, |(h, _)| h)
                    .trim_start_matches('[')
            } else {
                a.rsplit_once(':').map_or(a, |(h, _)| h)
            }
        });
        Self {
            path,
            method: method.unwrap_or(""),
            host,
        }
    }
}

/// One rule's verdict for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleVerdict {
    pub rule: usize,
    pub outcome: Outcome,
    /// Tokens left after this request.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
    /// Seconds until a token is available (limited requests).
    pub retry_after_s: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Limited,
    /// The store failed or kept conflicting; `failure_mode` was applied.
    Error {
        denied: bool,
    },
}

/// The decision for a request. `limited` is set when a rule limited it (or denied it on
/// failure). `report` is the verdict whose numbers go in the headers: the limiting one, else the
/// one with the fewest tokens left. Each applied rule's verdict is passed to the caller's
/// observer as it is made (for metrics), so no list is allocated per request.
#[derive(Debug, Default, Clone, Copy)]
pub struct Decision {
    pub limited: bool,
    pub report: Option<RuleVerdict>,
    /// A global rule applies (rule index, key fingerprint): the rate limit service decides.
    pub global: Option<(usize, u64)>,
}

/// How long leased tokens may be handed out.
pub const LEASE_TTL_NS: u64 = 1_000_000;
const LEASE_SLOTS: usize = 256;

/// A worker's leased tokens: a small direct-mapped table (a collision drops the older lease,
/// which can only admit fewer requests).
#[derive(Debug, Clone)]
pub struct Leases {
    slots: Vec<Lease>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Lease {
    fp: u64,
    left: u64,
    expires_ns: u64,
    /// Tokens left in the shared bucket when the lease was taken.
    shared_remaining: u64,
    /// When the shared bucket is full again.
    full_at_ns: u64,
}

impl Default for Leases {
    fn default() -> Self {
        Self {
            slots: vec![Lease::default(); LEASE_SLOTS],
        }
    }
}

impl Leases {
    fn slot(&mut self, fp: u64) -> Option<&mut Lease> {
        self.slots.get_mut((fp as usize) % LEASE_SLOTS)
    }

    fn take(&mut self, fp: u64, now: u64) -> Option<(u64, u64)> {
        let l = self.slot(fp)?;
        if l.fp != fp || l.left == 0 || now >= l.expires_ns {
            return None;
        }
        l.left -= 1;
        Some((
            l.shared_remaining + l.left,
            l.full_at_ns.saturating_sub(now),
        ))
    }

    fn put(&mut self, fp: u64, left: u64, now: u64, shared_remaining: u64, full_in_ns: u64) {
        if let Some(l) = self.slot(fp) {
            *l = Lease {
                fp,
                left,
                expires_ns: now.saturating_add(LEASE_TTL_NS),
                shared_remaining,
                full_at_ns: now.saturating_add(full_in_ns),
            };
        }
    }
}

/// Evaluates the rules for a request. The clock is read once, and only if a rule applies.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    cfg: &Config,
    ns: &str,
    line: &RequestLine,
    req: &dyn RequestView,
    store: &dyn SharedData,
    leases: &mut Leases,
    clock: &dyn Fn() -> u64,
    observe: &mut dyn FnMut(&RuleVerdict),
) -> Decision {
    let mut d = Decision::default();
    let mut now: Option<u64> = None;
    for (i, rule) in cfg.rules.iter().enumerate() {
        if !matches(rule, cfg.paths, line, req) {
            continue;
        }
        if rule.unlimited {
            break;
        }
        let Some(fp) = fingerprint(rule, line, req) else {
            // Missing key part and `missing_key: skip`: the rule does not apply.
            continue;
        };
        if rule.global.is_some() {
            d.global = Some((i, fp));
            break;
        }
        let now = *now.get_or_insert_with(clock);
        let v = take(cfg, ns, rule, i, fp, store, leases, now);
        observe(&v);
        let limited = match v.outcome {
            Outcome::Allowed => false,
            Outcome::Limited => true,
            Outcome::Error { denied } => denied,
        };
        let better_report = match d.report {
            None => true,
            Some(r) => !d.limited && (limited || v.remaining < r.remaining),
        };
        if better_report {
            d.report = Some(v);
        }
        if limited {
            d.limited = true;
            break;
        }
        if !rule.continue_matching {
            break;
        }
    }
    d
}

fn matches(rule: &Rule, paths: PathPolicy, line: &RequestLine, req: &dyn RequestView) -> bool {
    let in_list = |list: &[String], v: Option<&str>| {
        list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v))
    };
    rule.path.matches(line.path, paths)
        && in_list(&rule.bot_categories, req.bot_category())
        && rule
            .verified_bot
            .is_none_or(|want| req.verified_bot().is_some() == want)
        && in_list(&rule.stages, req.stage())
        && (rule.methods.is_empty() || rule.methods.iter().any(|m| m == line.method))
        && (rule.hosts.is_empty() || rule.hosts.iter().any(|h| h.eq_ignore_ascii_case(line.host)))
        && rule
            .headers
            .iter()
            .all(|(name, want)| match (req.header(name), want) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(v), Some(w)) => v == w.as_bytes(),
            })
}

/// The 64-bit identity of (rule, key). `None` when a header or the client address is missing
/// and the rule skips such requests. Parts are hashed one by one (no concatenation, no copy).
pub fn fingerprint(rule: &Rule, line: &RequestLine, req: &dyn RequestView) -> Option<u64> {
    let mut h = rule.seed;
    for (i, part) in rule.key.iter().enumerate() {
        // Chaining with the part index keeps ("ab","c") and ("a","bc") apart.
        let seed = h ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h = match part {
            KeyPart::Path => hash64(seed, line.path.as_bytes()),
            KeyPart::Method => hash64(seed, line.method.as_bytes()),
            KeyPart::Constant(c) => hash64(seed, c.as_bytes()),
            KeyPart::BotCategory => match req.bot_category() {
                Some(c) => hash64(seed, c.as_bytes()),
                None => missing(rule, seed)?,
            },
            KeyPart::Stage => match req.stage() {
                Some(s) => hash64(seed, s.as_bytes()),
                None => missing(rule, seed)?,
            },
            KeyPart::Header(name) => match req.header(name) {
                Some(v) => hash64(seed, v),
                None => missing(rule, seed)?,
            },
            KeyPart::ClientIp => match req.client_ip() {
                Some(IpAddr::V4(a)) => hash64(seed, &a.octets()),
                Some(IpAddr::V6(a)) => hash64(seed, &a.octets()),
                None => missing(rule, seed)?,
            },
        };
    }
    Some(h)
}

fn missing(rule: &Rule, seed: u64) -> Option<u64> {
    match rule.missing_key {
        MissingKey::Skip => None,
        // One shared bucket for all requests missing this part.
        MissingKey::SharedBucket => Some(hash64(seed, b"\0missing\0")),
    }
}

/// The two candidate slots of a fingerprint.
pub fn slots(fp: u64, n: u32) -> (u32, u32) {
    let a = scale(fp, n);
    let mut b = scale(fp.rotate_left(29) ^ 0xA076_1D64_78BD_642F, n);
    if b == a && n > 1 {
        b = (a + 1) % n;
    }
    (a, b)
}

/// The shared-data key of slot `i` in namespace `ns`.
pub fn slot_key(ns: &str, i: u32) -> String {
    use std::fmt::Write;
    let mut k = String::with_capacity(ns.len() + 11);
    let _ = write!(k, "{ns}:{i}");
    k
}

/// Slot contents: fingerprint and TAT, little-endian. Anything else reads as an empty slot.
pub fn decode(v: Option<&[u8]>) -> (u64, u64) {
    match v {
        Some(b) if b.len() == 16 => {
            let mut fp = [0u8; 8];
            let mut tat = [0u8; 8];
            fp.copy_from_slice(&b[..8]);
            tat.copy_from_slice(&b[8..]);
            (u64::from_le_bytes(fp), u64::from_le_bytes(tat))
        }
        _ => (0, 0),
    }
}

pub fn encode(fp: u64, tat: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&fp.to_le_bytes());
    out[8..].copy_from_slice(&tat.to_le_bytes());
    out
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn take(
    cfg: &Config,
    ns: &str,
    rule: &Rule,
    idx: usize,
    fp: u64,
    store: &dyn SharedData,
    leases: &mut Leases,
    now: u64,
) -> RuleVerdict {
    if rule.lease > 1 {
        if let Some((remaining, full_in_ns)) = leases.take(fp, now) {
            return RuleVerdict {
                rule: idx,
                outcome: Outcome::Allowed,
                remaining,
                reset_s: ceil_secs(full_in_ns),
                retry_after_s: 0,
            };
        }
    }
    let error = |denied| RuleVerdict {
        rule: idx,
        outcome: Outcome::Error { denied },
        remaining: 0,
        reset_s: 0,
        retry_after_s: 1,
    };
    let denied = cfg.failure_mode == FailureMode::Deny;
    let (sa, sb) = slots(fp, cfg.max_buckets);
    let ka = slot_key(ns, sa);
    let mut kb: Option<String> = None;
    for _ in 0..MAX_ATTEMPTS {
        let Ok((va, ca)) = store.shared_get(&ka) else {
            return error(denied);
        };
        let (fpa, tata) = decode(va.as_deref());
        // The common case: our bucket is in the first slot, one read.
        let (key, tat, cas) = if fpa == fp {
            (&ka, tata, ca)
        } else {
            let kb = kb.get_or_insert_with(|| slot_key(ns, sb));
            let Ok((vb, cb)) = store.shared_get(kb) else {
                return error(denied);
            };
            let (fpb, tatb) = decode(vb.as_deref());
            if fpb == fp {
                (&*kb, tatb, cb)
            } else if tata <= tatb {
                // Evict the bucket that is full (or will be full) first.
                (&ka, 0, ca)
            } else {
                (&*kb, 0, cb)
            }
        };
        match rule.bucket.take_up_to(tat, now, rule.lease) {
            TakeN::Limited {
                retry_in_ns,
                full_in_ns,
            } => {
                return RuleVerdict {
                    rule: idx,
                    outcome: Outcome::Limited,
                    remaining: 0,
                    reset_s: ceil_secs(full_in_ns),
                    retry_after_s: ceil_secs(retry_in_ns).max(1),
                }
            }
            TakeN::Granted {
                tat: new_tat,
                granted,
                remaining,
                full_in_ns,
            } => match store.shared_set(key, &encode(fp, new_tat), cas) {
                Ok(()) => {
                    // This request uses one token; the rest are leased to this worker.
                    if granted > 1 {
                        leases.put(fp, granted - 1, now, remaining, full_in_ns);
                    }
                    return RuleVerdict {
                        rule: idx,
                        outcome: Outcome::Allowed,
                        remaining: remaining + (granted - 1),
                        reset_s: ceil_secs(full_in_ns),
                        retry_after_s: 0,
                    };
                }
                Err(HostError::CasMismatch) => continue,
                Err(HostError::Failed) => return error(denied),
            },
        }
    }
    error(denied)
}

/// The CAS value that creates a key only while it is absent. Envoy checks a CAS against an
/// existing key only (an absent key is created whatever the CAS), and hands out versions from one
/// counter that starts at 1; a live key holds exactly this version about once in 2^32 writes, so
/// an existing slot is left alone (`CasMismatch`) for all practical purposes.
const CREATE_ONLY: u32 = u32::MAX;

/// Creates every slot that does not exist yet (empty), so all later updates are CAS-checked.
/// Existing slots (another worker's, or a previous configuration's) are left as they are.
pub fn ensure_slots(ns: &str, n: u32, store: &dyn SharedData) -> Result<(), HostError> {
    // The first VM to configure creates the table and then records its size; every other VM
    // (one per worker, and each reload with the same table) reads that one key and is done.
    let marker = format!("{ns}:table");
    if let (Some(v), _) = store.shared_get(&marker)? {
        if v.as_slice() == n.to_le_bytes() {
            return Ok(());
        }
    }
    let empty = encode(0, 0);
    for i in 0..n {
        let k = slot_key(ns, i);
        if let (None, None) = store.shared_get(&k)? {
            // Create only if still absent: another worker may have created the slot and stored a
            // bucket in it since the read; an unconditional set would wipe that bucket.
            match store.shared_set(&k, &empty, Some(CREATE_ONLY)) {
                Ok(()) | Err(HostError::CasMismatch) => {}
                Err(e) => return Err(e),
            }
        }
    }
    match store.shared_set(&marker, &n.to_le_bytes(), None) {
        Ok(()) | Err(HostError::CasMismatch) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
pub mod testing {
    //! A request view for tests (the shared store is edge-common's fake host).
    use super::*;

    #[derive(Default)]
    pub struct Req {
        pub headers: Vec<(&'static str, String)>,
        pub ip: Option<IpAddr>,
    }

    impl RequestView for Req {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_bytes())
        }
        fn client_ip(&self) -> Option<IpAddr> {
            self.ip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use edge_common::host::fake::FakeHost;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const S: u64 = 1_000_000_000;

    fn cfg(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn keyed(key: &str) -> Req {
        Req {
            headers: vec![("x-key", key.to_string())],
            ip: "192.0.2.1".parse().ok(),
        }
    }

    const BY_HEADER: &str = r#"{"max_buckets":1024,"rules":[{"name":"k","key":[{"type":"header","name":"x-key"}],
        "requests_per_unit":10,"unit":"second","burst":10}]}"#;

    /// `decide` at a fixed time, collecting the applied rules' verdicts.
    fn run(
        c: &Config,
        line: &RequestLine,
        req: &Req,
        s: &FakeHost,
        now: u64,
    ) -> (Decision, Vec<RuleVerdict>) {
        thread_local!(static LEASES: std::cell::RefCell<Leases> = Default::default());
        let mut seen = Vec::new();
        let d = LEASES.with(|l| {
            decide(
                c,
                "rl",
                line,
                req,
                s,
                &mut l.borrow_mut(),
                &|| now,
                &mut |v| seen.push(*v),
            )
        });
        (d, seen)
    }

    fn setup(json: &str) -> (Config, FakeHost) {
        let c = cfg(json);
        let s = FakeHost::new();
        ensure_slots("rl", c.max_buckets, &s).unwrap();
        (c, s)
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn the_table_is_created_once_per_size() {
        let s = FakeHost::new();
        ensure_slots("rl", 16, &s).unwrap();
        assert_eq!(s.shared_keys(), 17);
        // Another VM (or a reload) with the same table only reads the marker.
        s.remove_shared("rl:3");
        ensure_slots("rl", 16, &s).unwrap();
        assert!(!s.has_shared("rl:3"));
        // A new size checks every slot again.
        ensure_slots("rl", 32, &s).unwrap();
        assert_eq!(s.shared_keys(), 33);
    }

    /// A store where another worker creates slot `rl:5` and puts a bucket in it right after this
    /// VM read it as absent.
    struct Racing {
        inner: FakeHost,
        raced: std::cell::Cell<bool>,
    }

    impl SharedData for Racing {
        fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
            let r = self.inner.shared_get(key)?;
            if key == "rl:5" && !self.raced.replace(true) {
                self.inner.shared_set(key, &encode(0, 0), None)?;
                self.inner.shared_set(key, &encode(42, 7 * S), None)?;
            }
            Ok(r)
        }
        fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
            self.inner.shared_set(key, value, cas)
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn creating_the_table_keeps_a_bucket_another_worker_stored_meanwhile() {
        let s = Racing {
            inner: FakeHost::new(),
            raced: std::cell::Cell::new(false),
        };
        ensure_slots("rl", 16, &s).unwrap();
        assert_eq!(s.inner.shared_keys(), 17);
        let (v, _) = s.inner.shared_get("rl:5").unwrap();
        assert_eq!(v, Some(encode(42, 7 * S).to_vec()));
        let (v, _) = s.inner.shared_get("rl:6").unwrap();
        assert_eq!(v, Some(encode(0, 0).to_vec()));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn limits_per_key_and_reports_numbers() {
        let (c, s) = setup(BY_HEADER);
        let line = RequestLine::new(Some("/x?y=1"), Some("GET"), Some("Example.com:8080"));
        assert_eq!((line.path, line.host), ("/x", "Example.com"));
        let now = 100 * S;
        for i in 0..10 {
            let d = run(&c, &line, &keyed("a"), &s, now).0;
            assert!(!d.limited, "request {i}");
            assert_eq!(d.report.unwrap().remaining, 9 - i);
        }
        let d = run(&c, &line, &keyed("a"), &s, now).0;
        assert!(d.limited);
        let r = d.report.unwrap();
        assert_eq!(
            (r.outcome, r.retry_after_s, r.reset_s),
            (Outcome::Limited, 1, 1)
        );
        // Another key has its own full allowance.
        let d = run(&c, &line, &keyed("b"), &s, now).0;
        assert_eq!(d.report.unwrap().remaining, 9);
        // Missing key part: skipped by default.
        let (d, applied) = run(&c, &line, &Req::default(), &s, now);
        assert!(applied.is_empty() && !d.limited);
        // 100 ms later, one token for `a`.
        assert!(!run(&c, &line, &keyed("a"), &s, now + S / 10).0.limited);
        assert!(run(&c, &line, &keyed("a"), &s, now + S / 10).0.limited);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn shared_missing_bucket() {
        let (c, s) = setup(
            r#"{"max_buckets":64,"rules":[{"name":"k","key":[{"type":"header","name":"x-key"}],"missing_key":"shared_bucket",
            "requests_per_unit":2,"unit":"minute"}]}"#,
        );
        let line = RequestLine::default();
        assert!(!run(&c, &line, &Req::default(), &s, S).0.limited);
        assert!(!run(&c, &line, &Req::default(), &s, S).0.limited);
        let d = run(&c, &line, &Req::default(), &s, S).0;
        assert!(d.limited);
        assert_eq!(d.report.unwrap().retry_after_s, 30);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn matching_order_and_continue() {
        let (c, s) = setup(
            r#"{"max_buckets":64,"rules":[
            {"name":"login","match":{"path_exact":"/login","methods":["POST"]},"key":[{"type":"client_ip"}],"requests_per_unit":1,"unit":"minute","continue":true},
            {"name":"api","match":{"path_regex":"/api/v[0-9]+/.*","headers":[{"name":"x-tenant"}]},"key":[{"type":"header","name":"x-tenant"}],"requests_per_unit":5,"unit":"second"},
            {"name":"global","match":{"hosts":["example.com"]},"key":[{"type":"constant","value":"all"}],"requests_per_unit":3,"unit":"second"}]}"#,
        );
        let req = Req {
            headers: vec![("x-tenant", "t1".into())],
            ip: "2001:db8::1".parse().ok(),
        };
        // POST /login: `login` applies and continues to `global` (host matches).
        let login = RequestLine::new(Some("/login"), Some("POST"), Some("example.com"));
        let rules = |v: Vec<RuleVerdict>| v.iter().map(|v| v.rule).collect::<Vec<_>>();
        let (d, applied) = run(&c, &login, &req, &s, S);
        assert_eq!(rules(applied), vec![0, 2]);
        // The report is the tighter bucket: login has 0 left.
        assert_eq!(d.report.unwrap().rule, 0);
        let (d, applied) = run(&c, &login, &req, &s, S);
        assert!(
            d.limited && applied.len() == 1,
            "limited by login, stops there"
        );
        // GET /login does not match `login` (method) nor `api` (path): `global`.
        let get = RequestLine::new(Some("/login"), Some("GET"), Some("EXAMPLE.com"));
        assert_eq!(rules(run(&c, &get, &req, &s, S).1), vec![2]);
        // /api/v2/x with the tenant header: `api`, first match stops.
        let api = RequestLine::new(Some("/api/v2/x"), Some("GET"), Some("example.com"));
        assert_eq!(rules(run(&c, &api, &req, &s, S).1), vec![1]);
        // Regex is anchored: /x/api/v2/ does not match.
        let other = RequestLine::new(Some("/x/api/v2/"), Some("GET"), Some("other.org"));
        assert!(run(&c, &other, &req, &s, S).1.is_empty());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn conflicts_are_retried_then_failure_mode_applies() {
        let (c, s) = setup(BY_HEADER);
        let line = RequestLine::default();
        s.conflicts.set(MAX_ATTEMPTS - 1);
        let d = run(&c, &line, &keyed("a"), &s, S).0;
        assert_eq!(d.report.unwrap().outcome, Outcome::Allowed);
        assert_eq!(d.report.unwrap().remaining, 9, "exactly one token taken");
        s.conflicts.set(MAX_ATTEMPTS);
        let d = run(&c, &line, &keyed("a"), &s, S).0;
        assert_eq!(d.report.unwrap().outcome, Outcome::Error { denied: false });
        assert!(!d.limited);
        let deny = cfg(&BY_HEADER.replace(
            "{\"max_buckets\"",
            "{\"failure_mode\":\"deny\",\"max_buckets\"",
        ));
        s.shared_down.set(true);
        let d = run(&deny, &line, &keyed("a"), &s, S).0;
        assert!(d.limited);
        assert_eq!(d.report.unwrap().outcome, Outcome::Error { denied: true });
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn storage_is_bounded_and_hot_keys_survive_a_flood() {
        let (c, s) = setup(BY_HEADER);
        let line = RequestLine::default();
        // A hot key drains its bucket.
        for _ in 0..10 {
            assert!(!run(&c, &line, &keyed("hot"), &s, 10 * S).0.limited);
        }
        assert!(run(&c, &line, &keyed("hot"), &s, 10 * S).0.limited);
        // 20,000 distinct keys, one request each, 1 ms later: their buckets are not full, so
        // they compete for slots; the table never grows.
        for i in 0..20_000 {
            run(&c, &line, &keyed(&format!("k{i}")), &s, 10 * S + 1_000_000);
        }
        assert_eq!(
            s.shared_keys(),
            1024 + 1,
            "no slot beyond max_buckets (and the table marker)"
        );
        // The hot key's bucket is the most constrained one in its slots (TAT furthest ahead),
        // so it was never evicted: still limited.
        assert!(
            run(&c, &line, &keyed("hot"), &s, 10 * S + 2_000_000)
                .0
                .limited
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn high_rates_lease_tokens_locally_within_the_shared_bucket() {
        // 1,000,000/s, burst 80: leases of 10 tokens (an eighth of the burst).
        let (c, s) = setup(
            r#"{"max_buckets":64,"rules":[{"name":"k","key":[{"type":"constant","value":"all"}],
            "requests_per_unit":1000000,"unit":"second","burst":80}]}"#,
        );
        assert_eq!(c.rules[0].lease, 10);
        let mut leases = Leases::default();
        let line = RequestLine::default();
        let writes = || s.shared_writes();
        let before = writes();
        let mut allowed = 0;
        let mut remaining = Vec::new();
        for _ in 0..100 {
            let d = decide(
                &c,
                "rl",
                &line,
                &Req::default(),
                &s,
                &mut leases,
                &|| S,
                &mut |_| {},
            );
            if !d.limited {
                allowed += 1;
                remaining.push(d.report.unwrap().remaining);
            }
        }
        // At one instant exactly the burst is admitted, in 8 shared updates instead of 80.
        assert_eq!(allowed, 80);
        assert_eq!(writes() - before, 8);
        assert_eq!(remaining.first(), Some(&79));
        assert_eq!(remaining.last(), Some(&0));
        assert!(
            remaining.windows(2).all(|w| w[0] == w[1] + 1),
            "{remaining:?}"
        );
        // Leftover leased tokens expire: another worker's table sees the shared bucket only.
        let mut other = Leases::default();
        let d = decide(
            &c,
            "rl",
            &line,
            &Req::default(),
            &s,
            &mut other,
            &|| S + 1_000,
            &mut |_| {},
        );
        assert_eq!(d.report.unwrap().remaining, 0);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn slots_and_keys() {
        for fp in [0u64, 1, u64::MAX, 0xdead_beef] {
            let (a, b) = slots(fp, 1000);
            assert!(a < 1000 && b < 1000 && a != b);
        }
        assert_eq!(slot_key("rl", 0), "rl:0");
        assert_eq!(slot_key("ns", 4_000_000), "ns:4000000");
        assert_eq!(decode(Some(&encode(7, 9))), (7, 9));
        assert_eq!(decode(Some(b"short")), (0, 0));
        assert_eq!(decode(None), (0, 0));
    }
}

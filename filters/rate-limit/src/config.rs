//! Configuration: the JSON users write (serde types, unknown fields refused) and its validated,
//! pre-compiled form (regexes built, buckets computed, names checked) produced once at configure.

use edge_common::path::{check_config_path, has_prefix, is_exact};
pub use edge_common::Mode;
use edge_common::{header_name, parse_config, valid_header_value, ConfigError, PathPolicy};
use regex::Regex;
use serde::Deserialize;

use crate::bucket::Bucket;

const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the request through when the bucket cannot be read or updated.
    #[default]
    Allow,
    /// Answer with the limited response instead.
    Deny,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Second,
    Minute,
    Hour,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum MissingKey {
    /// The rule does not apply to a request lacking a header its key needs.
    #[default]
    Skip,
    /// Such requests share one bucket of the rule.
    SharedBucket,
}

/// The configuration as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: Mode,
    /// Write this request's decisions to Envoy filter state (`key=value` items; the access log
    /// reads them with `%FILTER_STATE(wasm.<feature>.decision:PLAIN)%`). One host call per
    /// request; off by default.
    #[serde(default)]
    pub decision_filter_state: bool,
    #[serde(default)]
    pub failure_mode: FailureMode,
    #[serde(default = "default_max_buckets")]
    pub max_buckets: u32,
    #[serde(default)]
    pub limited_response: RawResponse,
    #[serde(default)]
    pub rate_limit_headers: RawHeaders,
    /// How paths are matched, and what happens to a non-canonical one under a path condition.
    #[serde(default)]
    pub paths: PathPolicy,
    pub rules: Vec<RawRule>,
}

/// The largest bucket table: every slot is created when the plugin is configured (see
/// `limiter`), which takes about a second per 100,000 slots in Envoy; this many load in seconds.
pub const MAX_BUCKETS: u32 = 1_048_576;

fn default_max_buckets() -> u32 {
    65_536
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RawResponse {
    pub status: u16,
    pub body: String,
    pub content_type: String,
}

impl Default for RawResponse {
    fn default() -> Self {
        Self {
            status: 429,
            body: "rate limited\n".into(),
            content_type: "text/plain; charset=utf-8".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    /// `RateLimit-Policy` and `RateLimit` (IETF httpapi draft).
    pub ietf_draft: bool,
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (as Envoy's native filter).
    pub x_ratelimit: bool,
    /// Also on allowed responses (always on limited ones).
    pub on_allowed: bool,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            ietf_draft: true,
            x_ratelimit: false,
            on_allowed: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    #[serde(default, rename = "match")]
    pub matcher: RawMatch,
    #[serde(default)]
    pub key: Vec<RawKeyPart>,
    /// Requests this rule matches are allowed without a bucket, and no later rule applies.
    #[serde(default)]
    pub unlimited: bool,
    pub requests_per_unit: Option<u64>,
    pub unit: Option<Unit>,
    pub tokens_per_fill: Option<u64>,
    pub fill_interval_ms: Option<u64>,
    pub burst: Option<u64>,
    #[serde(default)]
    pub missing_key: MissingKey,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// A fleet-wide limit kept by a rate limit service (the limit itself is configured there).
    #[serde(default)]
    pub global: Option<RawGlobal>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    /// The Envoy cluster of the rate limit service (HTTP/2).
    pub cluster: String,
    /// The `domain` of the `ShouldRateLimit` request.
    pub domain: String,
    #[serde(default = "default_global_timeout_ms")]
    pub timeout_ms: u64,
    /// What happens while the service fails and no `fallback` bucket is configured (default:
    /// the top-level `failure_mode`).
    #[serde(default)]
    pub failure_mode: Option<FailureMode>,
    /// A local bucket (exact across this Envoy's workers) that decides while the service fails.
    #[serde(default)]
    pub fallback: Option<RawFallback>,
    /// Hits taken per call (`hits_addend`); the extra ones are handed to this Envoy's requests.
    #[serde(default = "one")]
    pub batch: u32,
    /// How long batched hits may be handed out.
    #[serde(default = "default_batch_ttl_ms")]
    pub batch_ttl_ms: u64,
    #[serde(default)]
    pub circuit_breaker: RawBreaker,
    /// Descriptor entry keys, one per key part (default per part: client_ip `remote_address`,
    /// header its name, path `path`, method `method`, constant `generic_key`, bot_category
    /// `bot_category`, stage `stage`).
    #[serde(default)]
    pub descriptor_keys: Option<Vec<String>>,
}

fn one() -> u32 {
    1
}

fn default_global_timeout_ms() -> u64 {
    20
}

fn default_batch_ttl_ms() -> u64 {
    1_000
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawFallback {
    pub requests_per_unit: u64,
    pub unit: Unit,
    pub burst: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RawBreaker {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open (the fallback decides), before one request tries again.
    pub open_ms: u64,
}

impl Default for RawBreaker {
    fn default() -> Self {
        Self {
            failures: 5,
            open_ms: 2_000,
        }
    }
}

/// A global rule's service settings (see [`RawGlobal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    /// The rule's `bucket` is the fallback bucket.
    pub fallback: bool,
    pub batch: u32,
    pub batch_ttl_ns: u64,
    pub breaker_failures: u32,
    pub breaker_open_ns: u64,
    pub descriptor_keys: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub path_regex: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
    /// edge.wasm: the bot verdict's category is one of these.
    #[serde(default)]
    pub bot_categories: Vec<String>,
    /// edge.wasm: the client is (true) or is not (false) a verified bot.
    #[serde(default)]
    pub verified_bot: Option<bool>,
    /// edge.wasm: the assigned stage is one of these.
    #[serde(default)]
    pub stages: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawHeaderMatch {
    pub name: String,
    /// Absent: the header must be present (any value).
    pub equals: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum RawKeyPart {
    ClientIp,
    Header {
        name: String,
    },
    Path,
    Method,
    Constant {
        value: String,
    },
    /// edge.wasm: the bot verdict's category.
    BotCategory,
    /// edge.wasm: the assigned stage.
    Stage,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// Write the decisions to filter state (see the raw field).
    pub decision_filter_state: bool,
    pub failure_mode: FailureMode,
    pub max_buckets: u32,
    pub limited_status: u32,
    pub limited_body: String,
    pub limited_content_type: String,
    pub ietf_draft: bool,
    pub x_ratelimit: bool,
    pub headers_on_allowed: bool,
    pub paths: PathPolicy,
    /// Some rule matches or keys on the path (so unsafe paths are refused).
    pub uses_paths: bool,
    pub rules: Vec<Rule>,
}

impl Config {
    /// Whether `path` (without query) meets some rule's path condition.
    pub fn path_covered(&self, path: &str) -> bool {
        self.rules
            .iter()
            .any(|r| !matches!(r.path, PathMatch::Any) && r.path.matches(path, self.paths))
    }
}

impl PathMatch {
    /// Whether `path` (canonical, without query) meets this condition.
    pub fn matches(&self, path: &str, policy: PathPolicy) -> bool {
        match self {
            PathMatch::Any => true,
            PathMatch::Prefix(p) => has_prefix(path, p, policy.case_sensitive),
            PathMatch::Exact(p) => is_exact(path, p, policy.case_sensitive),
            PathMatch::Regex(re) => re.is_match(path),
        }
    }
}

#[derive(Debug)]
pub struct Rule {
    pub name: String,
    /// Seeds the bucket key hash: distinct per rule and per bucket parameters, so a changed
    /// rule starts with fresh buckets.
    pub seed: u64,
    pub path: PathMatch,
    pub methods: Vec<String>,
    pub hosts: Vec<String>,
    pub headers: Vec<(String, Option<String>)>,
    /// edge.wasm conditions: bot categories (any of), verified bot or not, stages (any of).
    pub bot_categories: Vec<String>,
    pub verified_bot: Option<bool>,
    pub stages: Vec<String>,
    pub unlimited: bool,
    pub key: Vec<KeyPart>,
    pub bucket: Bucket,
    pub missing_key: MissingKey,
    pub continue_matching: bool,
    /// Set for a global rule: asked of the rate limit service.
    pub global: Option<Global>,
    /// `"<name>";q=<burst>;w=<seconds>` for `RateLimit-Policy`.
    pub policy_header: String,
    /// Tokens a worker takes from the shared bucket at once (see `limiter`): one millisecond's
    /// worth of the rate, at most 64 and at most an eighth of the burst; 1 (no lease) for rates
    /// under 2,000 per second.
    pub lease: u64,
}

#[derive(Debug)]
pub enum PathMatch {
    Any,
    Prefix(String),
    Exact(String),
    Regex(Regex),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    ClientIp,
    Header(String),
    Path,
    Method,
    Constant(String),
    BotCategory,
    Stage,
}

impl Config {
    /// Parses and validates the plugin configuration.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::from_json_in(bytes, &Bundle::default())
    }

    /// Parses a configuration for a module that also decides `bundle`'s verdicts (edge.wasm).
    pub fn from_json_in(bytes: &[u8], bundle: &Bundle) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_config(bytes)?;
        Self::validate(raw, bundle)
    }

    pub fn validate(raw: RawConfig, bundle: &Bundle) -> Result<Self, ConfigError> {
        if raw.max_buckets < 16 || raw.max_buckets > MAX_BUCKETS {
            return Err(ConfigError::new(
                "max_buckets",
                format!("{} is out of range 16..={MAX_BUCKETS}", raw.max_buckets),
            ));
        }
        let r = &raw.limited_response;
        if !(200..=599).contains(&r.status) {
            return Err(ConfigError::new(
                "limited_response.status",
                format!("{} is not an HTTP status code 200..=599", r.status),
            ));
        }
        if !valid_header_value(&r.content_type) {
            return Err(ConfigError::new(
                "limited_response.content_type",
                "must be a valid header value",
            ));
        }
        if raw.rules.is_empty() {
            return Err(ConfigError::new("rules", "at least one rule is required"));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, rr) in raw.rules.into_iter().enumerate() {
            let rule = compile_rule(rr, bundle, raw.failure_mode)
                .map_err(|e| e.at(&format!("rules[{i}]")))?;
            if rules.iter().any(|r: &Rule| r.name == rule.name) {
                return Err(ConfigError::new(
                    format!("rules[{i}].name"),
                    format!("duplicate rule name `{}`", rule.name),
                ));
            }
            rules.push(rule);
        }
        Ok(Config {
            mode: raw.mode,
            decision_filter_state: raw.decision_filter_state,
            failure_mode: raw.failure_mode,
            max_buckets: raw.max_buckets,
            limited_status: u32::from(raw.limited_response.status),
            limited_body: raw.limited_response.body,
            limited_content_type: raw.limited_response.content_type,
            ietf_draft: raw.rate_limit_headers.ietf_draft,
            x_ratelimit: raw.rate_limit_headers.x_ratelimit,
            headers_on_allowed: raw.rate_limit_headers.on_allowed,
            paths: raw.paths,
            uses_paths: rules
                .iter()
                .any(|r| !matches!(r.path, PathMatch::Any) || r.key.contains(&KeyPart::Path)),
            rules,
        })
    }
}

/// What the other features of the module decide before the rate limiter, for rules to match on
/// and key by: in `rate_limit.wasm` nothing; in `edge.wasm` the bot verdict (with its category
/// names) and the stage (with its stage names), when those sections are configured.
#[derive(Debug, Clone, Default)]
pub struct Bundle {
    pub bot_categories: Option<Vec<&'static str>>,
    pub stages: Option<Vec<String>>,
}

fn check_names(
    field: &str,
    names: &[String],
    known: Option<&[String]>,
    section: &str,
) -> Result<(), ConfigError> {
    if names.is_empty() {
        return Ok(());
    }
    let Some(known) = known else {
        return Err(ConfigError::new(
            field,
            format!("needs edge.wasm with a `{section}` section, which decides it"),
        ));
    };
    for (i, n) in names.iter().enumerate() {
        if !known.contains(n) {
            return Err(ConfigError::new(
                format!("{field}[{i}]"),
                format!("unknown `{n}`: one of {}", known.join(", ")),
            ));
        }
    }
    Ok(())
}

fn compile_rule(
    mut r: RawRule,
    bundle: &Bundle,
    cfg_failure_mode: FailureMode,
) -> Result<Rule, ConfigError> {
    if r.name.is_empty()
        || r.name.len() > 64
        || !r
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ConfigError::new(
            "name",
            format!(
                "`{}` must be 1 to 64 characters of A-Z a-z 0-9 _ - (it names metrics)",
                r.name
            ),
        ));
    }
    let m = std::mem::take(&mut r.matcher);
    let paths = [&m.path_prefix, &m.path_exact, &m.path_regex]
        .iter()
        .filter(|p| p.is_some())
        .count();
    if paths > 1 {
        return Err(ConfigError::new(
            "match",
            "use at most one of path_prefix, path_exact, path_regex",
        ));
    }
    let path = if let Some(p) = m.path_prefix {
        check_config_path("match.path_prefix", &p)?;
        PathMatch::Prefix(p)
    } else if let Some(p) = m.path_exact {
        check_config_path("match.path_exact", &p)?;
        PathMatch::Exact(p)
    } else if let Some(p) = m.path_regex {
        // Anchored: the whole path must match, as in Envoy's route `safe_regex`.
        let re = Regex::new(&format!("^(?:{p})$"))
            .map_err(|e| ConfigError::new("match.path_regex", format!("invalid regex: {e}")))?;
        PathMatch::Regex(re)
    } else {
        PathMatch::Any
    };
    let mut methods = Vec::with_capacity(m.methods.len());
    for (i, meth) in m.methods.iter().enumerate() {
        if meth.is_empty() || !meth.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(ConfigError::new(
                format!("match.methods[{i}]"),
                format!("`{meth}` is not an HTTP method"),
            ));
        }
        methods.push(meth.to_ascii_uppercase());
    }
    let mut hosts = Vec::with_capacity(m.hosts.len());
    for (i, h) in m.hosts.iter().enumerate() {
        if h.is_empty() || !valid_header_value(h) || h.contains(' ') {
            return Err(ConfigError::new(
                format!("match.hosts[{i}]"),
                format!("`{h}` is not a host name"),
            ));
        }
        hosts.push(h.to_ascii_lowercase());
    }
    let mut headers = Vec::with_capacity(m.headers.len());
    for (i, h) in m.headers.into_iter().enumerate() {
        headers.push((
            header_name(&format!("match.headers[{i}].name"), &h.name, true)?,
            h.equals,
        ));
    }
    let categories: Option<Vec<String>> = bundle
        .bot_categories
        .as_ref()
        .map(|c| c.iter().map(|s| s.to_string()).collect());
    check_names(
        "match.bot_categories",
        &m.bot_categories,
        categories.as_deref(),
        "bot_detection",
    )?;
    if m.verified_bot.is_some() && bundle.bot_categories.is_none() {
        return Err(ConfigError::new(
            "match.verified_bot",
            "needs edge.wasm with a `bot_detection` section, which decides it",
        ));
    }
    check_names(
        "match.stages",
        &m.stages,
        bundle.stages.as_deref(),
        "stage_routing",
    )?;
    if r.unlimited && r.global.is_some() {
        return Err(ConfigError::new(
            "global",
            "an unlimited rule cannot be global",
        ));
    }
    if r.unlimited {
        if !r.key.is_empty()
            || r.requests_per_unit.is_some()
            || r.tokens_per_fill.is_some()
            || r.burst.is_some()
        {
            return Err(ConfigError::new(
                "unlimited",
                "an unlimited rule has no key, rate or burst",
            ));
        }
        return Ok(Rule {
            lease: 1,
            policy_header: String::new(),
            seed: 0,
            path,
            methods,
            hosts,
            headers,
            bot_categories: m.bot_categories,
            verified_bot: m.verified_bot,
            stages: m.stages,
            unlimited: true,
            key: Vec::new(),
            bucket: Bucket::new(1, NS_PER_S, 1)
                .ok_or_else(|| ConfigError::new("unlimited", "internal bucket"))?,
            missing_key: r.missing_key,
            continue_matching: false,
            global: None,
            name: r.name,
        });
    }
    if r.key.is_empty() {
        return Err(ConfigError::new(
            "key",
            "at least one key part is required (use {\"type\":\"constant\",\"value\":\"all\"} for one bucket for all)",
        ));
    }
    let mut key = Vec::with_capacity(r.key.len());
    for (i, part) in std::mem::take(&mut r.key).into_iter().enumerate() {
        key.push(match part {
            RawKeyPart::ClientIp => KeyPart::ClientIp,
            RawKeyPart::Header { name } => {
                KeyPart::Header(header_name(&format!("key[{i}].name"), &name, true)?)
            }
            RawKeyPart::Path => KeyPart::Path,
            RawKeyPart::Method => KeyPart::Method,
            RawKeyPart::Constant { value } => KeyPart::Constant(value),
            RawKeyPart::BotCategory if bundle.bot_categories.is_none() => {
                return Err(ConfigError::new(
                    format!("key[{i}].type"),
                    "bot_category needs edge.wasm with a `bot_detection` section",
                ))
            }
            RawKeyPart::BotCategory => KeyPart::BotCategory,
            RawKeyPart::Stage if bundle.stages.is_none() => {
                return Err(ConfigError::new(
                    format!("key[{i}].type"),
                    "stage needs edge.wasm with a `stage_routing` section",
                ))
            }
            RawKeyPart::Stage => KeyPart::Stage,
        });
    }

    let global = match r.global.take() {
        None => None,
        Some(g) => Some(compile_global(g, &mut r, &key, cfg_failure_mode)?),
    };
    let (tokens, per_ns, rate_field) = match (
        r.requests_per_unit,
        r.unit,
        r.tokens_per_fill,
        r.fill_interval_ms,
    ) {
        (Some(n), Some(unit), None, None) => {
            let per = match unit {
                Unit::Second => NS_PER_S,
                Unit::Minute => 60 * NS_PER_S,
                Unit::Hour => 3600 * NS_PER_S,
            };
            (n, per, "requests_per_unit")
        }
        (Some(_), None, None, None) => {
            return Err(ConfigError::new(
                "unit",
                "required with requests_per_unit (second, minute or hour)",
            ))
        }
        (None, None, Some(n), Some(ms)) => {
            if ms == 0 || ms > 86_400_000 {
                return Err(ConfigError::new(
                    "fill_interval_ms",
                    format!("{ms} is out of range 1..=86400000"),
                ));
            }
            (n, ms * NS_PER_MS, "tokens_per_fill")
        }
        (None, None, Some(_), None) => {
            return Err(ConfigError::new(
                "fill_interval_ms",
                "required with tokens_per_fill",
            ))
        }
        (None, None, None, None) => return Err(ConfigError::new(
            "requests_per_unit",
            "a rate is required: requests_per_unit + unit, or tokens_per_fill + fill_interval_ms",
        )),
        _ => return Err(ConfigError::new(
            "requests_per_unit",
            "give either requests_per_unit + unit or tokens_per_fill + fill_interval_ms, not both",
        )),
    };
    if tokens == 0 || tokens > 1_000_000_000 {
        return Err(ConfigError::new(
            rate_field,
            format!("{tokens} is out of range 1..=1000000000"),
        ));
    }
    let burst = r.burst.unwrap_or(tokens);
    if burst == 0 || burst > 1_000_000_000 {
        return Err(ConfigError::new(
            "burst",
            format!("{burst} is out of range 1..=1000000000"),
        ));
    }
    let bucket = Bucket::new(tokens, per_ns, burst)
        .ok_or_else(|| ConfigError::new("burst", "burst times the refill interval is too large"))?;
    let seed = edge_common::hash::hash64(
        0x5261_7465_4c69_6d69, // "RateLimi"
        format!("{}|{}|{}", r.name, bucket.interval_ns, bucket.burst).as_bytes(),
    );
    let window_s = crate::bucket::ceil_secs(bucket.tolerance_ns).max(1);
    let per_ms = NS_PER_MS / bucket.interval_ns;
    let lease = per_ms.min(64).min(burst / 8).max(1);
    Ok(Rule {
        lease,
        policy_header: format!("\"{}\";q={};w={}", r.name, burst, window_s),
        name: r.name,
        seed,
        path,
        methods,
        hosts,
        headers,
        bot_categories: m.bot_categories,
        verified_bot: m.verified_bot,
        stages: m.stages,
        unlimited: false,
        key,
        bucket,
        missing_key: r.missing_key,
        continue_matching: r.continue_matching,
        global,
    })
}

/// Checks a global rule's settings. Its rate lives in the rate limit service: the rule's own
/// rate fields are refused, and the fallback's rate becomes the rule's (local) bucket.
fn compile_global(
    g: RawGlobal,
    r: &mut RawRule,
    key: &[KeyPart],
    failure_mode: FailureMode,
) -> Result<Global, ConfigError> {
    if r.requests_per_unit.is_some()
        || r.unit.is_some()
        || r.tokens_per_fill.is_some()
        || r.fill_interval_ms.is_some()
        || r.burst.is_some()
    {
        return Err(ConfigError::new(
            "requests_per_unit",
            "a global rule's limit is set in the rate limit service; `global.fallback` sets the local bucket used while it fails",
        ));
    }
    if r.continue_matching {
        return Err(ConfigError::new(
            "continue",
            "a global rule is the last rule a request meets (put local rules before it, with `continue: true`)",
        ));
    }
    if g.cluster.is_empty() {
        return Err(ConfigError::new(
            "global.cluster",
            "must name an Envoy cluster",
        ));
    }
    if g.domain.is_empty() {
        return Err(ConfigError::new("global.domain", "must not be empty"));
    }
    if g.timeout_ms == 0 || g.timeout_ms > 10_000 {
        return Err(ConfigError::new(
            "global.timeout_ms",
            format!("{} is out of range 1..=10000", g.timeout_ms),
        ));
    }
    if g.batch == 0 || g.batch > 10_000 {
        return Err(ConfigError::new(
            "global.batch",
            format!("{} is out of range 1..=10000", g.batch),
        ));
    }
    if g.batch_ttl_ms == 0 || g.batch_ttl_ms > 60_000 {
        return Err(ConfigError::new(
            "global.batch_ttl_ms",
            format!("{} is out of range 1..=60000", g.batch_ttl_ms),
        ));
    }
    let b = &g.circuit_breaker;
    if b.failures == 0 || b.failures > 10_000 {
        return Err(ConfigError::new(
            "global.circuit_breaker.failures",
            format!("{} is out of range 1..=10000", b.failures),
        ));
    }
    if b.open_ms < 10 || b.open_ms > 600_000 {
        return Err(ConfigError::new(
            "global.circuit_breaker.open_ms",
            format!("{} is out of range 10..=600000", b.open_ms),
        ));
    }
    let descriptor_keys = match g.descriptor_keys {
        Some(k) => {
            if k.len() != key.len() {
                return Err(ConfigError::new(
                    "global.descriptor_keys",
                    format!("{} names for {} key parts", k.len(), key.len()),
                ));
            }
            if let Some(i) = k.iter().position(String::is_empty) {
                return Err(ConfigError::new(
                    format!("global.descriptor_keys[{i}]"),
                    "must not be empty",
                ));
            }
            k
        }
        None => key
            .iter()
            .map(|p| {
                match p {
                    KeyPart::ClientIp => "remote_address",
                    KeyPart::Header(n) => n.as_str(),
                    KeyPart::Path => "path",
                    KeyPart::Method => "method",
                    KeyPart::Constant(_) => "generic_key",
                    KeyPart::BotCategory => "bot_category",
                    KeyPart::Stage => "stage",
                }
                .to_string()
            })
            .collect(),
    };
    let fallback = match g.fallback {
        Some(f) => {
            r.requests_per_unit = Some(f.requests_per_unit);
            r.unit = Some(f.unit);
            r.burst = f.burst;
            true
        }
        None => {
            // Unused: without a fallback the failure mode decides.
            r.requests_per_unit = Some(1);
            r.unit = Some(Unit::Second);
            false
        }
    };
    Ok(Global {
        cluster: g.cluster,
        domain: g.domain,
        timeout_ms: g.timeout_ms,
        failure_mode: g.failure_mode.unwrap_or(failure_mode),
        fallback,
        batch: g.batch,
        batch_ttl_ns: g.batch_ttl_ms * NS_PER_MS,
        breaker_failures: b.failures,
        breaker_open_ns: b.open_ms * NS_PER_MS,
        descriptor_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn err(json: &str) -> ConfigError {
        Config::from_json(json.as_bytes()).unwrap_err()
    }

    const OK: &str = r#"{"rules":[{"name":"api","match":{"path_prefix":"/api","methods":["get"]},
        "key":[{"type":"header","name":"X-Api-Key"},{"type":"client_ip"}],
        "requests_per_unit":100,"unit":"second","burst":150}]}"#;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn compiles_a_valid_config_with_defaults() {
        let c = Config::from_json(OK.as_bytes()).unwrap();
        assert_eq!(c.mode, Mode::Enforce);
        assert_eq!(c.failure_mode, FailureMode::Allow);
        assert_eq!(c.max_buckets, 65_536);
        assert_eq!(
            (c.limited_status, c.limited_body.as_str()),
            (429, "rate limited\n")
        );
        assert!(c.ietf_draft && !c.x_ratelimit && !c.headers_on_allowed);
        let r = &c.rules[0];
        assert_eq!(r.methods, vec!["GET"]);
        assert_eq!(
            r.key,
            vec![KeyPart::Header("x-api-key".into()), KeyPart::ClientIp]
        );
        assert_eq!((r.bucket.interval_ns, r.bucket.burst), (10_000_000, 150));
        assert_eq!(r.policy_header, "\"api\";q=150;w=2");
        assert_eq!(r.lease, 1, "100/s: no lease");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn burst_defaults_to_the_rate() {
        let c = Config::from_json(
            br#"{"rules":[{"name":"a","key":[{"type":"constant","value":"all"}],"tokens_per_fill":10,"fill_interval_ms":100}]}"#,
        )
        .unwrap();
        assert_eq!(c.rules[0].bucket.burst, 10);
        assert_eq!(c.rules[0].bucket.interval_ns, 10_000_000);
        // 1e9/s, burst 1e9: 64 tokens per lease; 1e6/s, burst 40: 5 (an eighth of the burst).
        let lease = |rate: u64, burst: u64| {
            Config::from_json(format!(r#"{{"rules":[{{"name":"a","key":[{{"type":"path"}}],"requests_per_unit":{rate},"unit":"second","burst":{burst}}}]}}"#).as_bytes())
                .unwrap().rules[0].lease
        };
        assert_eq!(lease(1_000_000_000, 1_000_000_000), 64);
        assert_eq!(lease(1_000_000, 40), 5);
        assert_eq!(lease(1_999, 10_000), 1);
        assert_eq!(lease(5_000, 10_000), 5);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                r#"{"rules":[],"bogus":1}"#,
                "bogus",
                "unknown field `bogus`",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":-5,"unit":"second"}]}"#,
                "rules[0].requests_per_unit",
                "invalid value: integer `-5`",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":0,"unit":"second"}]}"#,
                "rules[0].requests_per_unit",
                "0 is out of range",
            ),
            (
                r#"{"rules":[{"name":"a","match":{"path_regex":"(unclosed"},"key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[0].match.path_regex",
                "invalid regex",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"fortnight"}]}"#,
                "rules[0].unit",
                "unknown variant `fortnight`",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1}]}"#,
                "rules[0].unit",
                "required with requests_per_unit",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second","tokens_per_fill":1}]}"#,
                "rules[0].requests_per_unit",
                "not both",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"cookie","name":"x"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[0].key[0].type",
                "unknown variant `cookie`",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"header","name":"bad header"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[0].key[0].name",
                "is not a header name",
            ),
            (
                r#"{"rules":[{"name":"a b","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[0].name",
                "must be 1 to 64 characters",
            ),
            (
                r#"{"rules":[{"name":"a","key":[],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[0].key",
                "at least one key part",
            ),
            (
                r#"{"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"},{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[1].name",
                "duplicate rule name",
            ),
            (
                r#"{"rules":[{"name":"a","match":{"path_prefix":"api"},"key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[0].match.path_prefix",
                "must start with `/`",
            ),
            (
                r#"{"rules":[{"name":"a","match":{"path_exact":"/api//x/"},"key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "rules[0].match.path_exact",
                "write `/api/x/`",
            ),
            (
                r#"{"paths":{"non_canonical":"ignore"},"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "paths.non_canonical",
                "unknown variant `ignore`",
            ),
            (
                r#"{"limited_response":{"status":99},"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "limited_response.status",
                "not an HTTP status",
            ),
            (
                r#"{"max_buckets":1,"rules":[{"name":"a","key":[{"type":"path"}],"requests_per_unit":1,"unit":"second"}]}"#,
                "max_buckets",
                "out of range",
            ),
            (r#"{"rules":[]}"#, "rules", "at least one rule"),
            (
                r#"{"mode":"dry_run","rules":[]}"#,
                "mode",
                "unknown variant `dry_run`",
            ),
        ];
        for (json, field, msg) in cases {
            let e = err(json);
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.message.contains(msg), "{json}: {e}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn path_conditions_fold_case_unless_told() {
        let json = |paths: &str| {
            format!(
                r#"{{{paths}"rules":[
                {{"name":"a","match":{{"path_prefix":"/api/"}},"key":[{{"type":"client_ip"}}],"requests_per_unit":1,"unit":"second"}},
                {{"name":"b","match":{{"path_exact":"/login"}},"key":[{{"type":"client_ip"}}],"requests_per_unit":1,"unit":"second"}}]}}"#
            )
        };
        let c = Config::from_json(json("").as_bytes()).unwrap();
        assert!(c.uses_paths);
        for p in ["/api/x", "/API/x", "/Login", "/login"] {
            assert!(c.path_covered(p), "{p}");
        }
        for p in ["/api", "/static/x", "/login/x"] {
            assert!(!c.path_covered(p), "{p}");
        }
        let c = Config::from_json(json(r#""paths":{"case_sensitive":true},"#).as_bytes()).unwrap();
        assert!(c.path_covered("/api/x") && !c.path_covered("/API/x"));
        let ip_only = Config::from_json(
            br#"{"rules":[{"name":"a","key":[{"type":"client_ip"}],"requests_per_unit":1,"unit":"second"}]}"#,
        )
        .unwrap();
        assert!(!ip_only.uses_paths);
    }
}

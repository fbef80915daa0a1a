//! Configuration: the JSON users write and its validated, pre-compiled form.

use std::collections::HashSet;

use edge_common::cidr::parse_net;
pub use edge_common::Mode;
use edge_common::{
    header_name, output_header_name, parse_config, valid_header_value, CidrSet, ConfigError,
};
use ipnet::IpNet;
use serde::Deserialize;

use crate::category::Category;
use crate::ua::{UaMatcher, UserPattern};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Pass the request untouched (client-sent copies of our headers are still removed).
    Allow,
    /// Pass it with the verdict in request headers for the upstream.
    Tag,
    /// Answer it ourselves (403 by default).
    Block,
}

impl Action {
    pub const ALL: [Action; 3] = [Action::Allow, Action::Tag, Action::Block];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Tag => "tag",
            Action::Block => "block",
        }
    }
}

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
    #[serde(default = "yes")]
    pub builtin_patterns: bool,
    #[serde(default)]
    pub patterns: Vec<RawPattern>,
    #[serde(default)]
    pub allow_patterns: Vec<String>,
    #[serde(default)]
    pub verified_bots: Vec<RawVerifiedBot>,
    #[serde(default)]
    pub anomalies: RawAnomalies,
    #[serde(default)]
    pub tls_fingerprint: Option<RawFingerprint>,
    #[serde(default)]
    pub policy: Option<Vec<RawPolicyRule>>,
    #[serde(default = "default_action")]
    pub default_action: Action,
    #[serde(default)]
    pub block_response: RawBlock,
    #[serde(default)]
    pub headers: RawHeaders,
}

fn yes() -> bool {
    true
}

fn default_action() -> Action {
    Action::Allow
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPattern {
    pub category: Category,
    pub name: String,
    pub contains: Option<String>,
    pub regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawVerifiedBot {
    pub name: String,
    /// Substrings of the user-agent (case-insensitive) by which a request claims to be this bot.
    pub user_agent_contains: Vec<String>,
    /// The operator's published list as is: `{"prefixes":[{"ipv4Prefix":..},{"ipv6Prefix":..}]}`
    /// (other fields such as `creationTime` are ignored).
    #[serde(default)]
    pub ranges: Option<PublishedRanges>,
    #[serde(default)]
    pub cidrs: Vec<String>,
    /// Published range files to poll from Envoy clusters (same JSON format as `ranges`), on top
    /// of `ranges` and `cidrs`: one poller for all workers, `If-None-Match`, jittered interval
    /// (default 1 h), backoff after failures, and the last good file kept when a poll fails.
    #[serde(default)]
    pub ranges_from: Vec<edge_common::poll::RawSource>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublishedRanges {
    pub prefixes: Vec<PublishedPrefix>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PublishedPrefix {
    #[serde(rename = "ipv4Prefix")]
    pub ipv4: Option<String>,
    #[serde(rename = "ipv6Prefix")]
    pub ipv6: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RawAnomalies {
    pub enabled: bool,
    /// A browser request scoring below this is `suspicious`.
    pub suspicious_below: u8,
}

impl Default for RawAnomalies {
    fn default() -> Self {
        Self {
            enabled: true,
            suspicious_below: 50,
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawFingerprint {
    /// Request header carrying the JA3/JA4 fingerprint (set by an earlier filter).
    pub header: Option<String>,
    /// Or the filter state key holding it.
    pub filter_state: Option<String>,
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawPolicyRule {
    #[serde(default)]
    pub categories: Vec<Category>,
    pub verified: Option<bool>,
    pub score_below: Option<u8>,
    pub action: Action,
    pub status: Option<u16>,
    pub body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RawBlock {
    pub status: u16,
    pub body: String,
    pub content_type: String,
    /// Also tell the client why: `x-bot-reason: <category>` on block responses. Off by default:
    /// it tells a scraper which signal caught it (the access log has it anyway, in the response
    /// code details).
    pub reason_header: bool,
}

impl Default for RawBlock {
    fn default() -> Self {
        Self {
            status: 403,
            body: "forbidden\n".into(),
            content_type: "text/plain; charset=utf-8".into(),
            reason_header: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, default)]
pub struct RawHeaders {
    pub score: String,
    pub category: String,
    pub name: String,
    pub verified: String,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            score: "x-bot-score".into(),
            category: "x-bot-category".into(),
            name: "x-bot-name".into(),
            verified: "x-bot-verified".into(),
        }
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// Write the decisions to filter state (see the raw field).
    pub decision_filter_state: bool,
    pub matcher: UaMatcher,
    pub verified_bots: Vec<VerifiedBot>,
    pub anomalies: bool,
    pub suspicious_below: u8,
    pub fingerprint: Option<Fingerprint>,
    pub policy: Vec<PolicyRule>,
    pub default_action: Action,
    pub block_status: u32,
    pub block_body: String,
    pub block_content_type: String,
    /// `x-bot-reason: <category>` on block responses.
    pub block_reason_header: bool,
    /// Header names: score, category, name, verified (lowercase).
    pub headers: [String; 4],
}

#[derive(Debug)]
pub struct VerifiedBot {
    pub name: String,
    /// Lowercase needles.
    pub user_agent_contains: Vec<String>,
    pub ranges: CidrSet,
    /// Range files polled at run time (their ranges add to `ranges`).
    pub sources: Vec<edge_common::poll::Source>,
}

/// Defaults of a `ranges_from` poll: the operators update their files a few times a day.
pub const RANGES_POLL: edge_common::poll::Defaults = edge_common::poll::Defaults {
    poll_interval_ms: 3_600_000,
    timeout_ms: 5_000,
    jitter_percent: 10,
    max_backoff_ms: 21_600_000,
};

impl PublishedRanges {
    /// The prefixes as networks; errors name `{at}prefixes[j].<field>`.
    pub fn nets(&self, at: &str) -> Result<Vec<IpNet>, ConfigError> {
        let mut nets = Vec::with_capacity(self.prefixes.len());
        for (j, p) in self.prefixes.iter().enumerate() {
            let (field, v) = match (&p.ipv4, &p.ipv6) {
                (Some(v4), None) => ("ipv4Prefix", v4),
                (None, Some(v6)) => ("ipv6Prefix", v6),
                _ => {
                    return Err(ConfigError::new(
                        format!("{at}prefixes[{j}]"),
                        "needs exactly one of ipv4Prefix or ipv6Prefix",
                    ))
                }
            };
            nets.push(
                parse_net(v)
                    .map_err(|m| ConfigError::new(format!("{at}prefixes[{j}].{field}"), m))?,
            );
        }
        Ok(nets)
    }

    /// Parses a published range file (as served at run time): at least one prefix, all valid.
    pub fn parse_file(body: &[u8]) -> Result<CidrSet, String> {
        let r: PublishedRanges =
            serde_json::from_slice(body).map_err(|e| format!("not a published range file: {e}"))?;
        let nets = r
            .nets("")
            .map_err(|e| format!("{}: {}", e.field, e.message))?;
        if nets.is_empty() {
            return Err("prefixes: is empty".into());
        }
        Ok(CidrSet::from_nets(nets))
    }
}

#[derive(Debug)]
pub enum FingerprintSource {
    Header(String),
    FilterState(String),
}

#[derive(Debug)]
pub struct Fingerprint {
    pub source: FingerprintSource,
    pub allow: HashSet<Vec<u8>>,
    pub deny: HashSet<Vec<u8>>,
}

#[derive(Debug)]
pub struct PolicyRule {
    pub categories: Vec<Category>,
    pub verified: Option<bool>,
    pub score_below: Option<u8>,
    pub action: Action,
    pub status: Option<u32>,
    pub body: Option<String>,
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        Self::validate(parse_config(bytes)?)
    }

    pub fn validate(raw: RawConfig) -> Result<Self, ConfigError> {
        let user: Vec<UserPattern> = raw
            .patterns
            .into_iter()
            .map(|p| UserPattern {
                category: p.category,
                name: p.name,
                contains: p.contains,
                regex: p.regex,
            })
            .collect();
        for (i, p) in user.iter().enumerate() {
            if p.name.is_empty() || !valid_header_value(&p.name) {
                return Err(ConfigError::new(
                    format!("patterns[{i}].name"),
                    "must be a non-empty printable ASCII name (it is sent in a header)",
                ));
            }
            if matches!(
                p.category,
                Category::Human | Category::Impersonator | Category::Suspicious
            ) {
                return Err(ConfigError::new(
                    format!("patterns[{i}].category"),
                    format!(
                        "`{}` is decided by the filter, not by a pattern",
                        p.category.as_str()
                    ),
                ));
            }
        }
        let matcher = UaMatcher::new(raw.builtin_patterns, &user, &raw.allow_patterns)?;

        let mut verified_bots = Vec::new();
        for (i, b) in raw.verified_bots.into_iter().enumerate() {
            let at = format!("verified_bots[{i}]");
            if b.name.is_empty() || !valid_header_value(&b.name) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    "must be a non-empty printable ASCII name",
                ));
            }
            if b.user_agent_contains.is_empty()
                || b.user_agent_contains.iter().any(String::is_empty)
            {
                return Err(ConfigError::new(
                    format!("{at}.user_agent_contains"),
                    "needs at least one non-empty substring",
                ));
            }
            let mut nets: Vec<IpNet> = Vec::new();
            if let Some(r) = &b.ranges {
                nets.extend(r.nets(&format!("{at}.ranges."))?);
            }
            for (j, c) in b.cidrs.iter().enumerate() {
                nets.push(
                    parse_net(c).map_err(|m| ConfigError::new(format!("{at}.cidrs[{j}]"), m))?,
                );
            }
            let mut sources = Vec::new();
            for (j, r) in b.ranges_from.into_iter().enumerate() {
                sources.push(edge_common::poll::Source::compile(
                    r,
                    &format!("{at}.ranges_from[{j}]"),
                    RANGES_POLL,
                )?);
            }
            if nets.is_empty() && sources.is_empty() {
                return Err(ConfigError::new(
                    format!("{at}.ranges"),
                    "give the bot's IP ranges (`ranges` as published, `cidrs`, or `ranges_from`)",
                ));
            }
            verified_bots.push(VerifiedBot {
                name: b.name,
                user_agent_contains: b
                    .user_agent_contains
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect(),
                ranges: CidrSet::from_nets(nets),
                sources,
            });
        }

        if raw.anomalies.suspicious_below > 100 {
            return Err(ConfigError::new(
                "anomalies.suspicious_below",
                "must be 0..=100",
            ));
        }

        let fingerprint = match raw.tls_fingerprint {
            None => None,
            Some(f) => {
                let source = match (f.header, f.filter_state) {
                    (Some(h), None) => {
                        FingerprintSource::Header(header_name("tls_fingerprint.header", &h, false)?)
                    }
                    (None, Some(k)) if !k.is_empty() => FingerprintSource::FilterState(k),
                    _ => {
                        return Err(ConfigError::new(
                            "tls_fingerprint",
                            "give exactly one of `header` or `filter_state`",
                        ))
                    }
                };
                let set = |v: Vec<String>| {
                    v.into_iter()
                        .map(String::into_bytes)
                        .collect::<HashSet<_>>()
                };
                Some(Fingerprint {
                    source,
                    allow: set(f.allow),
                    deny: set(f.deny),
                })
            }
        };

        let policy_raw = raw.policy.unwrap_or_else(default_policy);
        let mut policy = Vec::with_capacity(policy_raw.len());
        for (i, r) in policy_raw.into_iter().enumerate() {
            if let Some(s) = r.status {
                if !(200..=599).contains(&s) {
                    return Err(ConfigError::new(
                        format!("policy[{i}].status"),
                        format!("{s} is not an HTTP status 200..=599"),
                    ));
                }
            }
            if let Some(s) = r.score_below {
                if s > 101 {
                    return Err(ConfigError::new(
                        format!("policy[{i}].score_below"),
                        "must be 0..=101",
                    ));
                }
            }
            if r.action != Action::Block && (r.status.is_some() || r.body.is_some()) {
                return Err(ConfigError::new(
                    format!("policy[{i}].status"),
                    "status and body apply to `block` only",
                ));
            }
            policy.push(PolicyRule {
                categories: r.categories,
                verified: r.verified,
                score_below: r.score_below,
                action: r.action,
                status: r.status.map(u32::from),
                body: r.body,
            });
        }
        let b = raw.block_response;
        if !(200..=599).contains(&b.status) {
            return Err(ConfigError::new(
                "block_response.status",
                format!("{} is not an HTTP status 200..=599", b.status),
            ));
        }
        if !valid_header_value(&b.content_type) {
            return Err(ConfigError::new(
                "block_response.content_type",
                "must be a valid header value",
            ));
        }
        let h = raw.headers;
        let headers = [
            output_header_name("headers.score", &h.score)?,
            output_header_name("headers.category", &h.category)?,
            output_header_name("headers.name", &h.name)?,
            output_header_name("headers.verified", &h.verified)?,
        ];
        Ok(Config {
            mode: raw.mode,
            decision_filter_state: raw.decision_filter_state,
            matcher,
            verified_bots,
            anomalies: raw.anomalies.enabled,
            suspicious_below: raw.anomalies.suspicious_below,
            fingerprint,
            policy,
            default_action: raw.default_action,
            block_status: u32::from(b.status),
            block_body: b.body,
            block_content_type: b.content_type,
            block_reason_header: b.reason_header,
            headers,
        })
    }
}

/// Without a `policy`: block scanners and impersonators, tag every other bot and suspicious
/// browsers, allow the rest (`default_action`).
fn default_policy() -> Vec<RawPolicyRule> {
    let rule = |categories: Vec<Category>, action| RawPolicyRule {
        categories,
        verified: None,
        score_below: None,
        action,
        status: None,
        body: None,
    };
    vec![
        rule(
            vec![Category::Scanner, Category::Impersonator],
            Action::Block,
        ),
        rule(
            Category::ALL
                .into_iter()
                .filter(|c| c.is_bot() || *c == Category::Suspicious)
                .collect(),
            Action::Tag,
        ),
    ]
}

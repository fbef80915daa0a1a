//! Configuration: the stages and their weights, the sticky key, overrides, allowlists, the pin
//! cookie, the stage header and the optional control plane; and the stage data a control plane
//! sends, checked against the configuration.

use std::collections::BTreeSet;

pub use edge_common::Mode;
use edge_common::{
    cookie_name, header_name, output_header_name, parse_config, CidrSet, ConfigError,
};
use serde::Deserialize;

/// Buckets of the sticky hash: weights have a resolution of 0.01 percentage points.
pub const BUCKETS: u32 = 10_000;
/// At most this many stages (a stage index is a `u8` in the bucket table).
pub const MAX_STAGES: usize = 32;

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    mode: Mode,
    /// Write this request's decisions to Envoy filter state (`key=value` items; the access log
    /// reads them with `%FILTER_STATE(wasm.<feature>.decision:PLAIN)%`). One host call per
    /// request; off by default.
    #[serde(default)]
    decision_filter_state: bool,
    stages: Vec<RawStage>,
    /// The stage that holds the buckets no other stage claims; default: the first stage.
    #[serde(default)]
    base_stage: Option<String>,
    #[serde(default)]
    salt: String,
    #[serde(default = "default_sticky")]
    sticky_key: Vec<RawKey>,
    #[serde(default)]
    overrides: Option<RawOverrides>,
    #[serde(default)]
    allowlists: Vec<RawAllowlist>,
    #[serde(default)]
    pin_cookie: Option<RawPin>,
    #[serde(default = "default_stage_header")]
    stage_header: String,
    /// `false`: requests on the base stage get no stage header (unless a client sent one, which
    /// is then replaced), saving a header write; the routes must send a request without the
    /// header to the base stage's cluster.
    #[serde(default = "yes")]
    header_on_base_stage: bool,
    #[serde(default)]
    control_plane: Option<edge_common::poll::RawSource>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawStage {
    name: String,
    weight: f64,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum RawKey {
    Cookie { name: String },
    Header { name: String },
    ClientIp,
}

fn default_sticky() -> Vec<RawKey> {
    vec![RawKey::ClientIp]
}

fn default_stage_header() -> String {
    "x-stage".into()
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawOverrides {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
    #[serde(default)]
    query: Option<String>,
    /// Stages an override may select; default: every stage.
    #[serde(default)]
    stages: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawAllowlist {
    stage: String,
    #[serde(default)]
    cidrs: Vec<String>,
    #[serde(default)]
    hosts: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
struct RawPin {
    #[serde(default = "default_pin_name")]
    name: String,
    /// The HMAC secret (16+ bytes), or several for rotation: the first signs, all verify.
    #[serde(default)]
    secret: Option<RawSecrets>,
    #[serde(default = "default_max_age")]
    max_age_seconds: u64,
    #[serde(default = "default_pin_path")]
    path: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    secure: bool,
    #[serde(default = "yes")]
    http_only: bool,
    #[serde(default = "default_same_site")]
    same_site: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(untagged)]
enum RawSecrets {
    One(String),
    Several(Vec<String>),
}

/// The shortest pin cookie secret.
pub const MIN_SECRET_BYTES: usize = 16;

fn default_pin_name() -> String {
    "stage".into()
}
fn default_max_age() -> u64 {
    86_400
}
fn default_pin_path() -> String {
    "/".into()
}
fn default_same_site() -> String {
    "Lax".into()
}

/// Where the sticky key comes from, in fallback order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Cookie(String),
    Header(String),
    ClientIp,
}

#[derive(Debug, Clone)]
pub struct Overrides {
    pub enabled: bool,
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub query: Option<String>,
    /// `allowed[stage]`.
    pub allowed: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    pub stage: usize,
    pub cidrs: CidrSet,
    /// Lowercase; `*.example.com` matches any subdomain.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PinCookie {
    pub name: String,
    /// HMAC secrets: the first signs, all verify.
    pub secrets: Vec<Vec<u8>>,
    /// A pin older than this is ignored, whatever the browser keeps.
    pub max_age: u64,
    /// Everything after `name=<stage>`: `; Max-Age=..; Path=..`.
    pub attributes: String,
}

/// Where the stage data is polled from (the shared poll source).
pub type ControlPlane = edge_common::poll::Source;

/// The checked configuration. Stage indices refer to `stages`.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// Write the decisions to filter state (see the raw field).
    pub decision_filter_state: bool,
    pub stages: Vec<String>,
    pub base: usize,
    pub seed: u64,
    pub sticky: Vec<StickyKey>,
    pub overrides: Option<Overrides>,
    pub pin: Option<PinCookie>,
    pub stage_header: String,
    pub header_on_base_stage: bool,
    pub control_plane: Option<ControlPlane>,
    /// The stage data in the configuration (used until a control plane sends newer data).
    pub data: StageData,
}

/// What can change at run time: weights, allowlists, the override switch.
#[derive(Debug, Clone)]
pub struct StageData {
    /// 0 for the data in the configuration.
    pub version: u64,
    /// Weight of each stage in basis points (sum 10,000).
    pub weights: Vec<u32>,
    pub allowlists: Vec<Allowlist>,
    /// `Some(false)`: overrides switched off by the control plane.
    pub overrides_enabled: Option<bool>,
    /// `table[bucket]` = stage index.
    pub table: Vec<u8>,
}

impl Config {
    /// Whether assigning a stage reads a cookie (an override cookie, a cookie sticky key, the
    /// pin): otherwise the request's cookie header is not even looked at.
    pub fn reads_cookies(&self) -> bool {
        self.pin.is_some()
            || self.overrides.as_ref().is_some_and(|o| o.cookie.is_some())
            || self
                .sticky
                .iter()
                .any(|k| matches!(k, StickyKey::Cookie(_)))
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_config(bytes)?;
        if raw.stages.is_empty() {
            return Err(ConfigError::new("stages", "at least one stage is required"));
        }
        if raw.stages.len() > MAX_STAGES {
            return Err(ConfigError::new(
                "stages",
                format!("{} stages: at most {MAX_STAGES}", raw.stages.len()),
            ));
        }
        let mut names = Vec::new();
        for (i, s) in raw.stages.iter().enumerate() {
            let ok = !s.name.is_empty()
                && s.name.len() <= 64
                && s.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !ok {
                return Err(ConfigError::new(
                    format!("stages[{i}].name"),
                    format!("`{}` must be 1-64 characters of A-Z a-z 0-9 - _ .", s.name),
                ));
            }
            if names.contains(&s.name) {
                return Err(ConfigError::new(
                    format!("stages[{i}].name"),
                    format!("`{}` is listed twice", s.name),
                ));
            }
            names.push(s.name.clone());
        }
        let stage_index = |field: &str, name: &str| -> Result<usize, ConfigError> {
            names.iter().position(|n| n == name).ok_or_else(|| {
                ConfigError::new(
                    field,
                    format!("unknown stage `{name}` (stages: {})", names.join(", ")),
                )
            })
        };
        let base = match &raw.base_stage {
            Some(b) => stage_index("base_stage", b)?,
            None => 0,
        };
        let mut sticky = Vec::new();
        for (i, k) in raw.sticky_key.into_iter().enumerate() {
            let at = format!("sticky_key[{i}].name");
            sticky.push(match k {
                RawKey::Cookie { name } => StickyKey::Cookie(cookie_name(&at, name)?),
                RawKey::Header { name } => StickyKey::Header(header_name(&at, &name, false)?),
                RawKey::ClientIp => StickyKey::ClientIp,
            });
        }
        let overrides = match raw.overrides {
            None => None,
            Some(o) => {
                let allowed = match &o.stages {
                    None => vec![true; names.len()],
                    Some(list) => {
                        let mut a = vec![false; names.len()];
                        for (i, s) in list.iter().enumerate() {
                            let idx = stage_index(&format!("overrides.stages[{i}]"), s)?;
                            if let Some(x) = a.get_mut(idx) {
                                *x = true;
                            }
                        }
                        a
                    }
                };
                if o.header.is_none() && o.cookie.is_none() && o.query.is_none() {
                    return Err(ConfigError::new(
                        "overrides",
                        "give at least one of `header`, `cookie`, `query`",
                    ));
                }
                Some(Overrides {
                    enabled: o.enabled,
                    header: o
                        .header
                        .map(|h| header_name("overrides.header", &h, false))
                        .transpose()?,
                    cookie: o
                        .cookie
                        .map(|c| cookie_name("overrides.cookie", c))
                        .transpose()?,
                    query: o
                        .query
                        .map(|q| {
                            if q.is_empty() || q.contains(['&', '=', '#', ' ']) {
                                Err(ConfigError::new(
                                    "overrides.query",
                                    "must be a non-empty name without `&`, `=`, `#` or spaces",
                                ))
                            } else {
                                Ok(q)
                            }
                        })
                        .transpose()?,
                    allowed,
                })
            }
        };
        let pin = raw.pin_cookie.map(compile_pin).transpose()?;
        let stage_header = output_header_name("stage_header", &raw.stage_header)?;
        let control_plane = raw.control_plane.map(compile_cp).transpose()?;
        let weights: Vec<(String, f64)> =
            raw.stages.into_iter().map(|s| (s.name, s.weight)).collect();
        let mut cfg = Config {
            mode: raw.mode,
            decision_filter_state: raw.decision_filter_state,
            stages: names,
            base,
            seed: edge_common::hash::hash64(0x5747_4745, raw.salt.as_bytes()),
            sticky,
            overrides,
            pin,
            stage_header,
            header_on_base_stage: raw.header_on_base_stage,
            control_plane,
            data: StageData {
                version: 0,
                weights: Vec::new(),
                allowlists: Vec::new(),
                overrides_enabled: None,
                table: Vec::new(),
            },
        };
        let weights = cfg.weights("stages", &weights)?;
        let allowlists = cfg.allowlists("allowlists", &raw.allowlists)?;
        cfg.data = cfg.stage_data(0, weights, allowlists, None);
        Ok(cfg)
    }

    fn stage(&self, field: &str, name: &str) -> Result<usize, ConfigError> {
        self.stages.iter().position(|n| n == name).ok_or_else(|| {
            ConfigError::new(
                field,
                format!(
                    "unknown stage `{name}` (stages: {})",
                    self.stages.join(", ")
                ),
            )
        })
    }

    /// Checks weights (percent, at most two decimals, summing to 100) given by stage name;
    /// stages not listed get 0. Returns basis points per stage.
    fn weights(&self, field: &str, given: &[(String, f64)]) -> Result<Vec<u32>, ConfigError> {
        let mut out = vec![0u32; self.stages.len()];
        let mut seen = BTreeSet::new();
        for (i, (name, w)) in given.iter().enumerate() {
            let idx = self.stage(&format!("{field}[{i}].name"), name)?;
            if !seen.insert(idx) {
                return Err(ConfigError::new(
                    format!("{field}[{i}].name"),
                    format!("`{name}` is listed twice"),
                ));
            }
            let bp = w * 100.0;
            if !(0.0..=10_000.0).contains(&bp) || (bp - bp.round()).abs() > 1e-6 {
                return Err(ConfigError::new(
                    format!("{field}[{i}].weight"),
                    format!("{w} must be a percentage from 0 to 100 with at most two decimals"),
                ));
            }
            if let Some(o) = out.get_mut(idx) {
                *o = bp.round() as u32;
            }
        }
        let sum: u32 = out.iter().sum();
        if sum != BUCKETS {
            return Err(ConfigError::new(
                field,
                format!("weights sum to {}, not 100", f64::from(sum) / 100.0),
            ));
        }
        Ok(out)
    }

    fn allowlists(&self, field: &str, raw: &[RawAllowlist]) -> Result<Vec<Allowlist>, ConfigError> {
        let mut out = Vec::new();
        for (i, a) in raw.iter().enumerate() {
            let at = format!("{field}[{i}]");
            let stage = self.stage(&format!("{at}.stage"), &a.stage)?;
            let cidrs = CidrSet::parse(&format!("{at}.cidrs"), &a.cidrs)?;
            let mut hosts = Vec::new();
            for (j, h) in a.hosts.iter().enumerate() {
                let bare = h.strip_prefix("*.").unwrap_or(h);
                let ok = !bare.is_empty()
                    && bare
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
                if !ok {
                    return Err(ConfigError::new(
                        format!("{at}.hosts[{j}]"),
                        format!("`{h}` must be a host name, or `*.` and a domain"),
                    ));
                }
                hosts.push(h.to_ascii_lowercase());
            }
            if cidrs.is_empty() && hosts.is_empty() {
                return Err(ConfigError::new(at, "give `cidrs`, `hosts` or both"));
            }
            out.push(Allowlist {
                stage,
                cidrs,
                hosts,
            });
        }
        Ok(out)
    }

    fn stage_data(
        &self,
        version: u64,
        weights: Vec<u32>,
        allowlists: Vec<Allowlist>,
        overrides_enabled: Option<bool>,
    ) -> StageData {
        let table = crate::assign::layout(&weights, self.base);
        StageData {
            version,
            weights,
            allowlists,
            overrides_enabled,
            table,
        }
    }

    /// Checks stage data from a control plane:
    /// `{"version": N, "stages": [{"name","weight"}...], "allowlists": [...], "overrides_enabled": bool}`
    /// (`allowlists` absent: keep the configured ones).
    pub fn parse_stage_data(&self, bytes: &[u8]) -> Result<StageData, ConfigError> {
        let raw: RawStageData = parse_config(bytes)?;
        let given: Vec<(String, f64)> =
            raw.stages.into_iter().map(|s| (s.name, s.weight)).collect();
        let weights = self.weights("stages", &given)?;
        let allowlists = match &raw.allowlists {
            Some(a) => self.allowlists("allowlists", a)?,
            None => self.data.allowlists.clone(),
        };
        Ok(self.stage_data(raw.version, weights, allowlists, raw.overrides_enabled))
    }

    /// Whether overrides apply under this stage data.
    pub fn overrides_on(&self, data: &StageData) -> Option<&Overrides> {
        self.overrides
            .as_ref()
            .filter(|o| o.enabled && data.overrides_enabled != Some(false))
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawStageData {
    version: u64,
    stages: Vec<RawStage>,
    #[serde(default)]
    allowlists: Option<Vec<RawAllowlist>>,
    #[serde(default)]
    overrides_enabled: Option<bool>,
}

fn compile_pin(p: RawPin) -> Result<PinCookie, ConfigError> {
    let name = cookie_name("pin_cookie.name", p.name)?;
    let secrets = match p.secret {
        None => {
            return Err(ConfigError::new(
                "pin_cookie.secret",
                format!(
                    "required: a secret of {MIN_SECRET_BYTES}+ bytes (or a list, the first signing) to sign pins, \
                     so that clients cannot choose their stage"
                ),
            ))
        }
        Some(RawSecrets::One(s)) => vec![s],
        Some(RawSecrets::Several(v)) => v,
    };
    if secrets.is_empty() {
        return Err(ConfigError::new(
            "pin_cookie.secret",
            "at least one secret is required",
        ));
    }
    for (i, s) in secrets.iter().enumerate() {
        if s.len() < MIN_SECRET_BYTES {
            return Err(ConfigError::new(
                if secrets.len() == 1 {
                    "pin_cookie.secret".to_string()
                } else {
                    format!("pin_cookie.secret[{i}]")
                },
                format!(
                    "{} bytes is too short: use at least {MIN_SECRET_BYTES}",
                    s.len()
                ),
            ));
        }
    }
    if p.max_age_seconds == 0 || p.max_age_seconds > 400 * 86_400 {
        return Err(ConfigError::new(
            "pin_cookie.max_age_seconds",
            format!(
                "{} must be between 1 and 34560000 (400 days, the longest browsers keep)",
                p.max_age_seconds
            ),
        ));
    }
    let same_site = match p.same_site.to_ascii_lowercase().as_str() {
        "lax" => "Lax",
        "strict" => "Strict",
        "none" => "None",
        _ => {
            return Err(ConfigError::new(
                "pin_cookie.same_site",
                format!("`{}`: use Lax, Strict or None", p.same_site),
            ))
        }
    };
    if same_site == "None" && !p.secure {
        return Err(ConfigError::new(
            "pin_cookie.same_site",
            "SameSite=None needs `secure: true` (browsers drop it otherwise)",
        ));
    }
    if !p.path.starts_with('/') || !edge_common::valid_header_value(&p.path) || p.path.contains(';')
    {
        return Err(ConfigError::new(
            "pin_cookie.path",
            format!("`{}` must start with `/`, without `;`", p.path),
        ));
    }
    let mut attributes = format!("; Max-Age={}; Path={}", p.max_age_seconds, p.path);
    if let Some(d) = &p.domain {
        if d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(ConfigError::new(
                "pin_cookie.domain",
                format!("`{d}` is not a domain"),
            ));
        }
        attributes.push_str("; Domain=");
        attributes.push_str(d);
    }
    if p.secure {
        attributes.push_str("; Secure");
    }
    if p.http_only {
        attributes.push_str("; HttpOnly");
    }
    attributes.push_str("; SameSite=");
    attributes.push_str(same_site);
    Ok(PinCookie {
        name,
        secrets: secrets.into_iter().map(String::into_bytes).collect(),
        max_age: p.max_age_seconds,
        attributes,
    })
}

fn compile_cp(c: edge_common::poll::RawSource) -> Result<ControlPlane, ConfigError> {
    edge_common::poll::Source::compile(
        c,
        "control_plane",
        edge_common::poll::Defaults {
            poll_interval_ms: 10_000,
            timeout_ms: 2_000,
            jitter_percent: 10,
            max_backoff_ms: 300_000,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                r#"{"stages":[{"name":"prod","weight":90},{"name":"canary","weight":5}]}"#,
                "stages",
                "sum to 95",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":90.001},{"name":"canary","weight":9.999}]}"#,
                "stages[0].weight",
                "two decimals",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"allowlists":[{"stage":"next","cidrs":["10.0.0.0/8"]}]}"#,
                "allowlists[0].stage",
                "unknown stage `next`",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"allowlists":[{"stage":"prod","cidrs":["10.0.0.300/8"]}]}"#,
                "allowlists[0].cidrs[0]",
                "",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100},{"name":"prod","weight":0}]}"#,
                "stages[1].name",
                "twice",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"overrides":{"header":"x-o","stages":["qa"]}}"#,
                "overrides.stages[0]",
                "unknown stage",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"sticky_key":[{"type":"header","name":"bad header"}]}"#,
                "sticky_key[0].name",
                "not a header name",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"control_plane":{"cluster":"cp","path":"/s","poll_interval_ms":10}}"#,
                "control_plane.poll_interval_ms",
                "from 100",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"pin_cookie":{}}"#,
                "pin_cookie.secret",
                "required",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"pin_cookie":{"secret":"short"}}"#,
                "pin_cookie.secret",
                "5 bytes is too short",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"pin_cookie":{"secret":["0123456789abcdef","x"]}}"#,
                "pin_cookie.secret[1]",
                "too short",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"stage_header":"cookie"}"#,
                "stage_header",
                "must not write it",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"stage_header":":authority"}"#,
                "stage_header",
                "not a header name",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"pin_cookie":{"secret":"0123456789abcdef","same_site":"none"}}"#,
                "pin_cookie.same_site",
                "secure",
            ),
            (
                r#"{"stages":[{"name":"prod","weight":100}],"colour":1}"#,
                "colour",
                "unknown field",
            ),
        ];
        for (json, field, msg) in cases {
            let e = Config::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.message.contains(msg), "{json}: {e}");
        }
        let ok = Config::from_json(br#"{"stages":[{"name":"prod","weight":89.5},{"name":"canary","weight":10.5}],"pin_cookie":{"secret":"0123456789abcdef"}}"#).unwrap();
        assert_eq!(ok.data.weights, vec![8950, 1050]);
        assert_eq!(
            ok.pin.unwrap().attributes,
            "; Max-Age=86400; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn stage_data_is_checked_against_the_config() {
        let cfg = Config::from_json(
            br#"{"stages":[{"name":"prod","weight":90},{"name":"canary","weight":10}],
            "allowlists":[{"stage":"canary","hosts":["canary.example"]}]}"#,
        )
        .unwrap();
        let d = cfg
            .parse_stage_data(br#"{"version":7,"stages":[{"name":"prod","weight":80},{"name":"canary","weight":20}]}"#)
            .unwrap();
        assert_eq!(
            (d.version, d.weights.clone(), d.allowlists.len()),
            (7, vec![8000, 2000], 1)
        );
        let e = cfg
            .parse_stage_data(br#"{"version":8,"stages":[{"name":"prod","weight":80},{"name":"beta","weight":20}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "stages[1].name");
        let e = cfg.parse_stage_data(b"{not json").unwrap_err();
        assert!(!e.message.is_empty());
        let e = cfg
            .parse_stage_data(br#"{"stages":[{"name":"prod","weight":100}]}"#)
            .unwrap_err();
        assert!(e.message.contains("version"), "{e}");
    }
}

//! Configuration: routes, each verifying one scheme with its keys, signing what it forwards, or both.

use edge_common::path::check_config_path;
pub use edge_common::Mode;
use edge_common::{output_header_name, parse_config, ConfigError, PathPolicy};
use serde::Deserialize;

use crate::schemes::akamai::{self, Algorithm};
use crate::schemes::google;
use crate::schemes::secure_link::{self, Part};

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
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Status for expired tokens (403, or 410 Gone).
    #[serde(default = "default_expired_status")]
    pub expired_status: u16,
    /// How paths are matched, and what happens to a non-canonical one under a route.
    #[serde(default)]
    pub paths: PathPolicy,
    pub routes: Vec<RawRoute>,
}

/// The largest clock-skew leeway: more would keep expired tokens valid.
pub const MAX_LEEWAY_SECONDS: u64 = 3600;

fn default_leeway() -> u64 {
    30
}

fn default_expired_status() -> u16 {
    403
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    /// The scheme the client used, for URLs that are signed with it (Google, CloudFront), when a
    /// TLS-terminating load balancer in front of Envoy makes `:scheme` differ: `http` or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
    #[serde(default)]
    pub verify: Option<RawScheme>,
    /// Sign what is forwarded upstream (after verification, when both are set).
    #[serde(default)]
    pub sign: Option<RawSign>,
    /// Remove the token and signature parameters from what is forwarded upstream.
    #[serde(default = "yes")]
    pub strip: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawScheme {
    AkamaiEdgeauth {
        keys: Vec<RawAkamaiKey>,
        #[serde(default = "default_token_name")]
        token_name: String,
        #[serde(default)]
        location: Location,
        #[serde(default)]
        salt: Option<String>,
        #[serde(default)]
        escape_early: bool,
    },
    GoogleCdn {
        /// Key name → base64url 16-byte key.
        keys: std::collections::BTreeMap<String, String>,
        /// Also accept a `Cloud-CDN-Cookie`.
        #[serde(default = "yes")]
        cookie: bool,
    },
    Cloudfront {
        /// Key-Pair-Id (public key id) → RSA public key in PEM.
        keys: std::collections::BTreeMap<String, String>,
        /// Also accept `CloudFront-*` signed cookies.
        #[serde(default = "yes")]
        cookie: bool,
    },
    SecureLink {
        expression: String,
        #[serde(default = "default_md5_param")]
        token_param: String,
        #[serde(default = "default_expires_param")]
        expires_param: String,
        /// Empty: MD5 as nginx does; else HMAC-SHA256 under any of these keys.
        #[serde(default)]
        hmac_keys: Vec<String>,
    },
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSign {
    AkamaiEdgeauth {
        key: RawAkamaiKey,
        #[serde(default = "default_token_name")]
        token_name: String,
        #[serde(default)]
        location: Location,
        #[serde(default)]
        acl: Option<String>,
        #[serde(default)]
        salt: Option<String>,
        #[serde(default)]
        escape_early: bool,
        #[serde(default = "default_lifetime")]
        lifetime_seconds: u64,
    },
    GoogleCdn {
        key_name: String,
        key: String,
        #[serde(default)]
        url_prefix: Option<String>,
        #[serde(default)]
        location: Location,
        #[serde(default)]
        base_url: Option<String>,
        #[serde(default = "default_lifetime")]
        lifetime_seconds: u64,
    },
    Cloudfront {
        key_pair_id: String,
        private_key: String,
        #[serde(default = "default_cf_hash")]
        hash_algorithm: String,
        #[serde(default)]
        resource: Option<String>,
        #[serde(default)]
        location: Location,
        #[serde(default)]
        base_url: Option<String>,
        #[serde(default = "default_lifetime")]
        lifetime_seconds: u64,
    },
    SecureLink {
        expression: String,
        #[serde(default = "default_md5_param")]
        token_param: String,
        #[serde(default = "default_expires_param")]
        expires_param: String,
        #[serde(default)]
        hmac_key: Option<String>,
        #[serde(default)]
        remote_addr: Option<String>,
        #[serde(default = "default_lifetime")]
        lifetime_seconds: u64,
    },
}

fn default_lifetime() -> u64 {
    300
}
fn default_cf_hash() -> String {
    "sha1".into()
}

fn default_token_name() -> String {
    "__token__".into()
}
fn default_md5_param() -> String {
    "md5".into()
}
fn default_expires_param() -> String {
    "expires".into()
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawAkamaiKey {
    pub hex: String,
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
}

fn default_algorithm() -> String {
    "sha256".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Location {
    #[default]
    Query,
    Cookie,
    Header,
}

#[derive(Debug)]
pub struct Config {
    pub mode: Mode,
    /// Write the decisions to filter state (see the raw field).
    pub decision_filter_state: bool,
    pub leeway: u64,
    pub expired_status: u32,
    pub paths: PathPolicy,
    pub routes: Vec<Route>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path_prefix: Option<String>,
    pub methods: Vec<String>,
    /// Fixed client scheme (`http`/`https`), else `:scheme`.
    pub url_scheme: Option<&'static str>,
    pub scheme: Option<Scheme>,
    pub sign: Option<crate::sign::Signer>,
    pub strip: bool,
}

#[derive(Debug)]
pub enum Scheme {
    Akamai {
        keys: Vec<(Vec<u8>, Algorithm)>,
        token_name: String,
        location: Location,
        salt: Option<String>,
        escape_early: bool,
    },
    Google {
        keys: Vec<(String, Vec<u8>)>,
        cookie: bool,
    },
    Cloudfront {
        keys: Vec<(String, crate::schemes::cloudfront::CfKey)>,
        cookie: bool,
    },
    SecureLink {
        parts: Vec<Part>,
        token_param: String,
        expires_param: String,
        hmac_keys: Vec<Vec<u8>>,
    },
}

impl Scheme {
    /// Whether verifying (or stripping) may read the request's cookies.
    pub fn reads_cookies(&self) -> bool {
        match self {
            Scheme::Akamai { location, .. } => *location == Location::Cookie,
            Scheme::Google { cookie, .. } | Scheme::Cloudfront { cookie, .. } => *cookie,
            Scheme::SecureLink { .. } => false,
        }
    }
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConfig = parse_config(bytes)?;
        if !matches!(raw.expired_status, 403 | 410) {
            return Err(ConfigError::new(
                "expired_status",
                format!("{} must be 403 or 410", raw.expired_status),
            ));
        }
        if raw.leeway_seconds > MAX_LEEWAY_SECONDS {
            return Err(ConfigError::new(
                "leeway_seconds",
                format!(
                    "{} is more than {MAX_LEEWAY_SECONDS} (an hour): expired tokens would stay valid",
                    raw.leeway_seconds
                ),
            ));
        }
        if raw.routes.is_empty() {
            return Err(ConfigError::new("routes", "at least one route is required"));
        }
        let mut routes = Vec::new();
        for (i, r) in raw.routes.into_iter().enumerate() {
            let at = format!("routes[{i}]");
            if r.name.is_empty()
                || !r
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    "must be 1+ characters of A-Z a-z 0-9 _ -",
                ));
            }
            if let Some(p) = &r.path_prefix {
                check_config_path(&format!("{at}.path_prefix"), p)?;
            }
            let url_scheme = match r.scheme.as_deref() {
                None => None,
                Some("http") => Some("http"),
                Some("https") => Some("https"),
                Some(other) => {
                    return Err(ConfigError::new(
                        format!("{at}.scheme"),
                        format!("`{other}`: use http or https"),
                    ))
                }
            };
            if r.verify.is_none() && r.sign.is_none() {
                return Err(ConfigError::new(at, "needs `verify`, `sign` or both"));
            }
            let scheme = r
                .verify
                .map(compile_scheme)
                .transpose()
                .map_err(|e| e.at(&format!("{at}.verify")))?;
            let sign = r
                .sign
                .map(compile_sign)
                .transpose()
                .map_err(|e| e.at(&format!("{at}.sign")))?;
            routes.push(Route {
                name: r.name,
                path_prefix: r.path_prefix,
                methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                url_scheme,
                scheme,
                sign,
                strip: r.strip,
            });
        }
        Ok(Config {
            mode: raw.mode,
            decision_filter_state: raw.decision_filter_state,
            leeway: raw.leeway_seconds,
            expired_status: u32::from(raw.expired_status),
            paths: raw.paths,
            routes,
        })
    }
}

fn compile_scheme(s: RawScheme) -> Result<Scheme, ConfigError> {
    Ok(match s {
        RawScheme::AkamaiEdgeauth {
            keys,
            token_name,
            location,
            salt,
            escape_early,
        } => {
            if keys.is_empty() {
                return Err(ConfigError::new("keys", "at least one key is required"));
            }
            let mut out = Vec::new();
            for (i, k) in keys.iter().enumerate() {
                out.push(akamai_key(k, &format!("keys[{i}]"))?);
            }
            let token_name = match location {
                Location::Header => output_header_name("token_name", &token_name)?,
                _ if token_name.is_empty() => {
                    return Err(ConfigError::new("token_name", "must not be empty"))
                }
                _ => token_name,
            };
            Scheme::Akamai {
                keys: out,
                token_name,
                location,
                salt,
                escape_early,
            }
        }
        RawScheme::GoogleCdn { keys, cookie } => {
            if keys.is_empty() {
                return Err(ConfigError::new("keys", "at least one key is required"));
            }
            let mut out = Vec::new();
            for (name, b64) in keys {
                let k = google::decode_key(&b64)
                    .filter(|k| k.len() == 16)
                    .ok_or_else(|| {
                        ConfigError::new(
                            format!("keys.{name}"),
                            "must be a 16-byte key in base64url",
                        )
                    })?;
                out.push((name, k));
            }
            Scheme::Google { keys: out, cookie }
        }
        RawScheme::Cloudfront { keys, cookie } => {
            if keys.is_empty() {
                return Err(ConfigError::new("keys", "at least one key is required"));
            }
            let mut out = Vec::new();
            for (id, pem) in keys {
                let k = crate::schemes::cloudfront::parse_public_key(&pem)
                    .map_err(|m| ConfigError::new(format!("keys.{id}"), m))?;
                out.push((id, crate::schemes::cloudfront::CfKey::new(k)));
            }
            Scheme::Cloudfront { keys: out, cookie }
        }
        RawScheme::SecureLink {
            expression,
            token_param,
            expires_param,
            hmac_keys,
        } => {
            let parts = secure_link::parse_template(&expression)
                .map_err(|m| ConfigError::new("expression", m))?;
            Scheme::SecureLink {
                parts,
                token_param,
                expires_param,
                hmac_keys: hmac_keys.into_iter().map(String::into_bytes).collect(),
            }
        }
    })
}

fn akamai_key(k: &RawAkamaiKey, at: &str) -> Result<(Vec<u8>, Algorithm), ConfigError> {
    let key = akamai::decode_hex_key(&k.hex)
        .ok_or_else(|| ConfigError::new(format!("{at}.hex"), akamai::hex_key_problem(&k.hex)))?;
    let alg = Algorithm::parse(&k.algorithm).ok_or_else(|| {
        ConfigError::new(
            format!("{at}.algorithm"),
            format!("`{}`: use sha256, sha1 or md5", k.algorithm),
        )
    })?;
    Ok((key, alg))
}

fn check_base_url(b: Option<String>) -> Result<Option<String>, ConfigError> {
    match b {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) || u.ends_with('/') => {
            Err(ConfigError::new(
                "base_url",
                format!("`{u}` must be `http(s)://host[:port]` without a trailing `/`"),
            ))
        }
        b => Ok(b),
    }
}

fn check_lifetime(l: u64) -> Result<u64, ConfigError> {
    if l == 0 || l > 366 * 86_400 {
        return Err(ConfigError::new(
            "lifetime_seconds",
            format!("{l} must be between 1 and 31622400 (a year)"),
        ));
    }
    Ok(l)
}

fn compile_sign(s: RawSign) -> Result<crate::sign::Signer, ConfigError> {
    use crate::sign::{SignScheme, Signer};
    Ok(match s {
        RawSign::AkamaiEdgeauth {
            key,
            token_name,
            location,
            acl,
            salt,
            escape_early,
            lifetime_seconds,
        } => {
            let (key, algorithm) = akamai_key(&key, "key")?;
            let token_name = match location {
                Location::Header => output_header_name("token_name", &token_name)?,
                _ if token_name.is_empty() || token_name.contains(['=', ';', '&', ' ']) => {
                    return Err(ConfigError::new(
                        "token_name",
                        "must be non-empty, without `=`, `;`, `&` or spaces",
                    ))
                }
                _ => token_name,
            };
            Signer {
                scheme: SignScheme::Akamai {
                    key,
                    algorithm,
                    token_name,
                    location,
                    acl,
                    salt,
                    escape_early,
                },
                lifetime: check_lifetime(lifetime_seconds)?,
                base_url: None,
            }
        }
        RawSign::GoogleCdn {
            key_name,
            key,
            url_prefix,
            location,
            base_url,
            lifetime_seconds,
        } => {
            let key = google::decode_key(&key)
                .filter(|k| k.len() == 16)
                .ok_or_else(|| ConfigError::new("key", "must be a 16-byte key in base64url"))?;
            if key_name.is_empty() || key_name.contains(['&', '=', ':', ' ']) {
                return Err(ConfigError::new(
                    "key_name",
                    "must be non-empty, without `&`, `=`, `:` or spaces",
                ));
            }
            match (location, &url_prefix) {
                (Location::Header, _) => {
                    return Err(ConfigError::new(
                        "location",
                        "google_cdn signs in the query or a cookie",
                    ))
                }
                (Location::Cookie, None) => {
                    return Err(ConfigError::new(
                        "url_prefix",
                        "a Cloud-CDN-Cookie needs a url_prefix",
                    ))
                }
                _ => {}
            }
            Signer {
                scheme: SignScheme::Google {
                    key_name,
                    key,
                    url_prefix,
                    location,
                },
                lifetime: check_lifetime(lifetime_seconds)?,
                base_url: check_base_url(base_url)?,
            }
        }
        RawSign::Cloudfront {
            key_pair_id,
            private_key,
            hash_algorithm,
            resource,
            location,
            base_url,
            lifetime_seconds,
        } => {
            let key = crate::schemes::cloudfront::parse_private_key(&private_key)
                .map_err(|m| ConfigError::new("private_key", m))?;
            let sha256 = match hash_algorithm.as_str() {
                "sha1" => false,
                "sha256" => true,
                other => {
                    return Err(ConfigError::new(
                        "hash_algorithm",
                        format!("`{other}`: use sha1 or sha256"),
                    ))
                }
            };
            if key_pair_id.is_empty() || key_pair_id.contains(['&', '=', ';', ' ']) {
                return Err(ConfigError::new(
                    "key_pair_id",
                    "must be non-empty, without `&`, `=`, `;` or spaces",
                ));
            }
            if location == Location::Header {
                return Err(ConfigError::new(
                    "location",
                    "cloudfront signs in the query or CloudFront-* cookies",
                ));
            }
            if let Some(r) = &resource {
                if r.contains(['"', '\\']) {
                    return Err(ConfigError::new(
                        "resource",
                        "must not contain `\"` or `\\`",
                    ));
                }
            }
            Signer {
                scheme: SignScheme::Cloudfront {
                    signer: Box::new(crate::schemes::cloudfront::CfSigner::new(
                        &key_pair_id,
                        key,
                        sha256,
                    )),
                    resource,
                    location,
                },
                lifetime: check_lifetime(lifetime_seconds)?,
                base_url: check_base_url(base_url)?,
            }
        }
        RawSign::SecureLink {
            expression,
            token_param,
            expires_param,
            hmac_key,
            remote_addr,
            lifetime_seconds,
        } => {
            let parts = secure_link::parse_template(&expression)
                .map_err(|m| ConfigError::new("expression", m))?;
            let needs_addr = parts.contains(&Part::RemoteAddr);
            let remote_addr = match (needs_addr, remote_addr) {
                (true, None) => {
                    return Err(ConfigError::new(
                        "remote_addr",
                        "the expression uses $remote_addr: give the address the origin sees Envoy connect from",
                    ))
                }
                (_, a) => a.unwrap_or_default(),
            };
            Signer {
                scheme: SignScheme::SecureLink {
                    parts,
                    token_param,
                    expires_param,
                    hmac_key: hmac_key.map(String::into_bytes),
                    remote_addr,
                },
                lifetime: check_lifetime(lifetime_seconds)?,
                base_url: None,
            }
        }
    })
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
                r#"{"routes":[{"name":"a","verify":{"scheme":"akamai_edgeauth","keys":[{"hex":"abc"}]}}]}"#,
                "routes[0].verify.keys[0].hex",
                "odd number of hex digits (3)",
            ),
            (
                r#"{"routes":[{"name":"a","verify":{"scheme":"akamai_edgeauth","keys":[{"hex":"ab","algorithm":"sha512"}]}}]}"#,
                "routes[0].verify.keys[0].algorithm",
                "sha512",
            ),
            (
                r#"{"routes":[{"name":"a","verify":{"scheme":"fastly","keys":[]}}]}"#,
                "routes[0].verify.scheme",
                "unknown variant `fastly`",
            ),
            (
                r#"{"routes":[{"name":"a","verify":{"scheme":"google_cdn","keys":{"k":"short"}}}]}"#,
                "routes[0].verify.keys.k",
                "16-byte",
            ),
            (
                r#"{"routes":[{"name":"a","verify":{"scheme":"secure_link","expression":"$arg_x"}}]}"#,
                "routes[0].verify.expression",
                "unsupported variable",
            ),
            (
                r#"{"routes":[{"name":"a"}]}"#,
                "routes[0]",
                "needs `verify`, `sign` or both",
            ),
            (
                r#"{"routes":[{"name":"a","sign":{"scheme":"cloudfront","key_pair_id":"K","private_key":"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"}}]}"#,
                "routes[0].sign.private_key",
                "not an RSA private key",
            ),
            (
                r#"{"routes":[{"name":"a","verify":{"scheme":"cloudfront","keys":{"K1":"garbage"}}}]}"#,
                "routes[0].verify.keys.K1",
                "not an RSA public key",
            ),
            (
                r#"{"routes":[{"name":"a","sign":{"scheme":"google_cdn","key_name":"k","key":"nZtRohdNF9m3cKM24IcK4w==","location":"cookie"}}]}"#,
                "routes[0].sign.url_prefix",
                "needs a url_prefix",
            ),
            (
                r#"{"routes":[{"name":"a","sign":{"scheme":"secure_link","expression":"$uri$remote_addr s"}}]}"#,
                "routes[0].sign.remote_addr",
                "$remote_addr",
            ),
            (
                r#"{"routes":[{"name":"a","sign":{"scheme":"akamai_edgeauth","key":{"hex":"0g"},"lifetime_seconds":10}}]}"#,
                "routes[0].sign.key.hex",
                "`g` is not a hex digit",
            ),
            (
                r#"{"routes":[{"name":"a","sign":{"scheme":"akamai_edgeauth","key":{"hex":"00"},"lifetime_seconds":0}}]}"#,
                "routes[0].sign.lifetime_seconds",
                "between 1",
            ),
            (
                r#"{"expired_status":404,"routes":[]}"#,
                "expired_status",
                "403 or 410",
            ),
            (
                r#"{"leeway_seconds":18446744073709551615,"routes":[]}"#,
                "leeway_seconds",
                "more than 3600",
            ),
            (
                r#"{"routes":[{"name":"a","path_prefix":"//v/","sign":{"scheme":"akamai_edgeauth","key":{"hex":"00"}}}]}"#,
                "routes[0].path_prefix",
                "write `/v/`",
            ),
            (
                r#"{"routes":[{"name":"a","scheme":"ftp","sign":{"scheme":"akamai_edgeauth","key":{"hex":"00"}}}]}"#,
                "routes[0].scheme",
                "use http or https",
            ),
            (
                r#"{"routes":[{"name":"a","sign":{"scheme":"akamai_edgeauth","key":{"hex":"00"},"location":"header","token_name":"Authorization"}}]}"#,
                "routes[0].sign.token_name",
                "must not write it",
            ),
            (
                r#"{"routes":[{"name":"a","verify":{"scheme":"akamai_edgeauth","keys":[{"hex":"00"}],"location":"header","token_name":"cookie"}}]}"#,
                "routes[0].verify.token_name",
                "must not write it",
            ),
            (r#"[]"#, "", "not an array"),
        ];
        for (json, field, msg) in cases {
            let e = Config::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.message.contains(msg), "{json}: {e}");
        }
        let ok = Config::from_json(br#"{"routes":[{"name":"v","path_prefix":"/v/","verify":{"scheme":"google_cdn","keys":{"my-key":"nZtRohdNF9m3cKM24IcK4w=="}}}]}"#).unwrap();
        assert!(matches!(
            ok.routes[0].scheme,
            Some(Scheme::Google { cookie: true, .. })
        ));
    }
}

//! Configuration (verify mode): routes, each with one scheme and its keys.

pub use edge_common::Mode;
use edge_common::{header_name, parse_config, ConfigError};
use serde::Deserialize;

use crate::schemes::akamai::{self, Algorithm};
use crate::schemes::google;
use crate::schemes::secure_link::{self, Part};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Status for expired tokens (403, or 410 Gone).
    #[serde(default = "default_expired_status")]
    pub expired_status: u16,
    pub routes: Vec<RawRoute>,
}

fn default_leeway() -> u64 {
    30
}

fn default_expired_status() -> u16 {
    403
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(default)]
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub methods: Vec<String>,
    pub verify: RawScheme,
    /// Remove the token and signature parameters from what is forwarded upstream.
    #[serde(default = "yes")]
    pub strip: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
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
    pub leeway: u64,
    pub expired_status: u32,
    pub routes: Vec<Route>,
}

#[derive(Debug)]
pub struct Route {
    pub name: String,
    pub path_prefix: Option<String>,
    pub methods: Vec<String>,
    pub scheme: Scheme,
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
    },
    SecureLink {
        parts: Vec<Part>,
        token_param: String,
        expires_param: String,
        hmac_keys: Vec<Vec<u8>>,
    },
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
                if !p.starts_with('/') {
                    return Err(ConfigError::new(
                        format!("{at}.path_prefix"),
                        format!("`{p}` must start with `/`"),
                    ));
                }
            }
            let scheme = compile_scheme(r.verify).map_err(|e| e.at(&format!("{at}.verify")))?;
            routes.push(Route {
                name: r.name,
                path_prefix: r.path_prefix,
                methods: r.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
                scheme,
                strip: r.strip,
            });
        }
        Ok(Config {
            mode: raw.mode,
            leeway: raw.leeway_seconds,
            expired_status: u32::from(raw.expired_status),
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
                let key = akamai::decode_hex_key(&k.hex).ok_or_else(|| {
                    ConfigError::new(
                        format!("keys[{i}].hex"),
                        "must be an even number of hex digits",
                    )
                })?;
                let alg = Algorithm::parse(&k.algorithm).ok_or_else(|| {
                    ConfigError::new(
                        format!("keys[{i}].algorithm"),
                        format!("`{}`: use sha256, sha1 or md5", k.algorithm),
                    )
                })?;
                out.push((key, alg));
            }
            let token_name = match location {
                Location::Header => header_name("token_name", &token_name, false)?,
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
        RawScheme::Cloudfront { keys } => {
            if keys.is_empty() {
                return Err(ConfigError::new("keys", "at least one key is required"));
            }
            let mut out = Vec::new();
            for (id, pem) in keys {
                let k = crate::schemes::cloudfront::parse_public_key(&pem)
                    .map_err(|m| ConfigError::new(format!("keys.{id}"), m))?;
                out.push((id, crate::schemes::cloudfront::CfKey::new(k)));
            }
            Scheme::Cloudfront { keys: out }
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
                "even number",
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
                r#"{"expired_status":404,"routes":[]}"#,
                "expired_status",
                "403 or 410",
            ),
        ];
        for (json, field, msg) in cases {
            let e = Config::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.message.contains(msg), "{json}: {e}");
        }
        let ok = Config::from_json(br#"{"routes":[{"name":"v","path_prefix":"/v/","verify":{"scheme":"google_cdn","keys":{"my-key":"nZtRohdNF9m3cKM24IcK4w=="}}}]}"#).unwrap();
        assert!(matches!(
            ok.routes[0].scheme,
            Scheme::Google { cookie: true, .. }
        ));
    }
}

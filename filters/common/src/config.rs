//! Configuration errors that name the field at fault, and JSON parsing that fills that name in.

use std::fmt;

use serde::de::DeserializeOwned;

/// A configuration problem: which field (a JSON path such as `rules[2].bucket.unit`) and what is wrong.
///
/// Displayed as `invalid configuration: <field>: <message>`, the one line a filter logs before it
/// refuses the configuration (Envoy then rejects the plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Prefixes the field with a parent path: `at("rules[0]")` turns `bucket` into `rules[0].bucket`.
    pub fn at(mut self, parent: &str) -> Self {
        self.field = join_path(parent, &self.field);
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = if self.field.is_empty() {
            "(root)"
        } else {
            &self.field
        };
        write!(f, "invalid configuration: {field}: {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Joins two JSON path parts: `join_path("rules[0]", "bucket")` is `rules[0].bucket`, and an index
/// part (`[1]`) is appended without a dot.
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_string(),
        (_, true) => parent.to_string(),
        _ if child.starts_with('[') => format!("{parent}{child}"),
        _ => format!("{parent}.{child}"),
    }
}

/// Parses a filter's JSON configuration into `T`, reporting the JSON path of the field at fault.
///
/// An empty configuration (Envoy passes none when the plugin has no `configuration`) is parsed as
/// `{}`, so that a config type whose fields all have defaults accepts it.
pub fn parse_config<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[') => {
            return Err(ConfigError::new(
                "",
                "must be a JSON object (`{...}`), not an array",
            ))
        }
        _ => {
            // Envoy passes a `google.protobuf.Struct` configuration (YAML written as a map) as
            // its protobuf encoding: accept it as the JSON object it stands for.
            if let Some(v) = struct_pb::to_json(bytes) {
                return serde_path_to_error::deserialize(v).map_err(|e| {
                    let field = e.path().to_string();
                    let field = if field == "." { String::new() } else { field };
                    ConfigError::new(field, e.into_inner().to_string())
                });
            }
            return Err(ConfigError::new(
                "",
                "must be a JSON object: in Envoy YAML, either a string \
                 (`configuration: {\"@type\": type.googleapis.com/google.protobuf.StringValue, value: '{...}'}`) \
                 or a map (`configuration: {\"@type\": type.googleapis.com/google.protobuf.Struct, value: {...}}`)",
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ConfigError::new(field, e.into_inner().to_string())
    })?;
    de.end().map_err(|e| ConfigError::new("", e.to_string()))?;
    Ok(value)
}

/// Every filter's `mode`: `enforce` acts on its decision; `shadow` computes, counts and logs it but
/// never changes a request or response (each filter's README says what it would have done).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// Checks a header name from configuration (an RFC 9110 token; with `pseudo`, a leading `:` as in
/// `:authority` is allowed too) and returns it lowercase, as Envoy stores header names.
pub fn header_name(field: &str, name: &str, pseudo: bool) -> Result<String, ConfigError> {
    let token = name.strip_prefix(':').filter(|_| pseudo).unwrap_or(name);
    if !is_token(token) {
        return Err(ConfigError::new(
            field,
            format!("`{name}` is not a header name"),
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// Headers a filter must never set, replace or strip, because they carry credentials, frame the
/// message, belong to one hop only, or steer routing and client identity:
/// a configured output header name that is one of these (or a pseudo-header, or starts with
/// `x-envoy-`) is refused at load.
pub const PROTECTED_HEADERS: &[&str] = &[
    // credentials
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    // framing
    "content-length",
    "content-encoding",
    "content-type",
    "transfer-encoding",
    "expect",
    // hop-by-hop (RFC 9110 section 7.6.1)
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    // routing and client identity
    "host",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
    "via",
];

/// Checks a header name a filter writes (adds, replaces or strips) and returns it lowercase: an
/// RFC 9110 token that is not a pseudo-header nor one of [`PROTECTED_HEADERS`].
pub fn output_header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = header_name(field, name, false)?;
    if PROTECTED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-envoy-") {
        return Err(ConfigError::new(
            field,
            format!(
                "`{name}` is a credential, framing, hop-by-hop or routing header; a filter must not write it"
            ),
        ));
    }
    Ok(lower)
}

/// Checks a cookie name from configuration (an RFC 6265 name: an RFC 9110 token) and returns it
/// as given (cookie names are case-sensitive).
pub fn cookie_name(field: &str, name: String) -> Result<String, ConfigError> {
    if is_token(&name) {
        Ok(name)
    } else {
        Err(ConfigError::new(
            field,
            format!("`{name}` is not a cookie name"),
        ))
    }
}

/// An RFC 9110 token: one or more of `A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a configured string can be sent as a header value as is (visible ASCII, space, tab).
pub fn valid_header_value(v: &str) -> bool {
    v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[derive(Debug, Deserialize, PartialEq)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[serde(deny_unknown_fields)]
    struct Bucket {
        rate: u32,
        #[serde(default)]
        burst: u32,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[serde(deny_unknown_fields)]
    struct Rule {
        name: String,
        bucket: Bucket,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
    #[serde(deny_unknown_fields)]
    struct Root {
        #[serde(default)]
        rules: Vec<Rule>,
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn cookie_names_are_tokens_and_keep_their_case() {
        assert_eq!(cookie_name("c", "Session_ID".into()).unwrap(), "Session_ID");
        for bad in ["", "a=b", "a;b", "a b", "caf\u{e9}"] {
            let e = cookie_name("pin.name", bad.into()).unwrap_err();
            assert_eq!(e.field, "pin.name");
            assert_eq!(e.message, format!("`{bad}` is not a cookie name"));
        }
        assert_eq!(header_name("h", "X-Stage", false).unwrap(), "x-stage");
        assert!(header_name("h", "x stage", false).is_err());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn parses_valid_config() {
        let root: Root =
            parse_config(br#"{"rules":[{"name":"a","bucket":{"rate":5,"burst":2}}]}"#).unwrap();
        assert_eq!(root.rules[0].bucket, Bucket { rate: 5, burst: 2 });
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn empty_config_is_empty_object() {
        assert_eq!(parse_config::<Root>(b"").unwrap(), Root::default());
        assert_eq!(parse_config::<Root>(b"  \n").unwrap(), Root::default());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn unknown_field_is_named_with_its_path() {
        let err =
            parse_config::<Root>(br#"{"rules":[{"name":"a","bucket":{"rate":1,"brust":2}}]}"#)
                .unwrap_err();
        assert_eq!(err.field, "rules[0].bucket.brust");
        assert!(err.message.starts_with("unknown field `brust`"), "{err}");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn wrong_type_is_named_with_its_path() {
        let err =
            parse_config::<Root>(br#"{"rules":[{"name":"a","bucket":{"rate":-1}}]}"#).unwrap_err();
        assert_eq!(err.field, "rules[0].bucket.rate");
        assert!(err.message.contains("invalid value: integer `-1`"), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "invalid configuration: rules[0].bucket.rate: {}",
                err.message
            )
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn trailing_garbage_and_bad_json_are_rejected() {
        assert!(parse_config::<Root>(br#"{"rules":[]} x"#).is_err());
        let err = parse_config::<Root>(br#"{"rules":["#).unwrap_err();
        assert!(err.message.contains("EOF"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1);
        assert_eq!(
            parse_config::<Root>(b"[]").unwrap_err().to_string(),
            "invalid configuration: (root): must be a JSON object (`{...}`), not an array"
        );
        let err = parse_config::<Root>(b"rules: []").unwrap_err();
        assert!(err.message.contains("StringValue"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn header_names_and_values() {
        assert_eq!(header_name("f", "X-Api-Key", false).unwrap(), "x-api-key");
        assert_eq!(header_name("f", ":authority", true).unwrap(), ":authority");
        assert_eq!(
            header_name("f", ":authority", false).unwrap_err().field,
            "f"
        );
        for bad in ["", ":", "a b", "a:b", "caf\u{e9}"] {
            assert!(header_name("f", bad, true).is_err(), "{bad:?}");
        }
        assert!(valid_header_value("text/plain; charset=utf-8"));
        assert!(!valid_header_value("a\nb"));
        assert!(!valid_header_value("caf\u{e9}"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn output_headers_exclude_credentials_framing_hop_and_routing() {
        assert_eq!(output_header_name("f", "X-Stage").unwrap(), "x-stage");
        for bad in [
            "host",
            "Cookie",
            "authorization",
            ":path",
            ":authority",
            "content-length",
            "Transfer-Encoding",
            "connection",
            "x-forwarded-for",
            "x-envoy-original-path",
        ] {
            let e = output_header_name("headers.score", bad).unwrap_err();
            assert_eq!(e.field, "headers.score", "{bad}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn at_prefixes_paths() {
        assert_eq!(
            ConfigError::new("unit", "bad").at("rules[1].bucket").field,
            "rules[1].bucket.unit"
        );
        assert_eq!(ConfigError::new("[3]", "bad").at("keys").field, "keys[3]");
        assert_eq!(ConfigError::new("", "bad").at("keys").field, "keys");
        assert_eq!(
            ConfigError::new("", "bad").to_string(),
            "invalid configuration: (root): bad"
        );
    }
}

/// `google.protobuf.Struct`, as Envoy hands a Struct-typed plugin configuration over: its
/// protobuf encoding, decoded here into the JSON value it stands for.
mod struct_pb {
    use std::collections::BTreeMap;

    use prost::Message;
    use serde_json::{Map, Number, Value};

    #[derive(Clone, PartialEq, Message)]
    pub struct Struct {
        #[prost(btree_map = "string, message", tag = "1")]
        pub fields: BTreeMap<String, PValue>,
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct PValue {
        #[prost(oneof = "Kind", tags = "1, 2, 3, 4, 5, 6")]
        pub kind: Option<Kind>,
    }

    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Kind {
        #[prost(int32, tag = "1")]
        Null(i32),
        #[prost(double, tag = "2")]
        Number(f64),
        #[prost(string, tag = "3")]
        Str(String),
        #[prost(bool, tag = "4")]
        Bool(bool),
        #[prost(message, tag = "5")]
        Struct(Struct),
        #[prost(message, tag = "6")]
        List(List),
    }

    #[derive(Clone, PartialEq, Message)]
    pub struct List {
        #[prost(message, repeated, tag = "1")]
        pub values: Vec<PValue>,
    }

    /// The JSON object a Struct encodes; `None` if `bytes` is not one (or is empty).
    pub fn to_json(bytes: &[u8]) -> Option<Value> {
        let s = Struct::decode(bytes).ok()?;
        if s.fields.is_empty() {
            return None;
        }
        Some(object(s))
    }

    fn object(s: Struct) -> Value {
        Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, value(v)))
                .collect::<Map<String, Value>>(),
        )
    }

    fn value(v: PValue) -> Value {
        match v.kind {
            None | Some(Kind::Null(_)) => Value::Null,
            // YAML numbers arrive as doubles: whole ones become integers, so `100` fits a count.
            Some(Kind::Number(n)) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => {
                Value::Number(Number::from(n as i64))
            }
            Some(Kind::Number(n)) => Number::from_f64(n).map_or(Value::Null, Value::Number),
            Some(Kind::Str(s)) => Value::String(s),
            Some(Kind::Bool(b)) => Value::Bool(b),
            Some(Kind::Struct(s)) => object(s),
            Some(Kind::List(l)) => Value::Array(l.values.into_iter().map(value).collect()),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_struct_decodes_to_its_json_object() {
            let num = |n: f64| PValue {
                kind: Some(Kind::Number(n)),
            };
            let mut inner = BTreeMap::new();
            inner.insert(
                "unit".to_string(),
                PValue {
                    kind: Some(Kind::Str("second".into())),
                },
            );
            inner.insert("requests_per_unit".to_string(), num(100.0));
            let mut fields = BTreeMap::new();
            fields.insert(
                "rules".to_string(),
                PValue {
                    kind: Some(Kind::List(List {
                        values: vec![PValue {
                            kind: Some(Kind::Struct(Struct { fields: inner })),
                        }],
                    })),
                },
            );
            fields.insert("ratio".to_string(), num(0.5));
            fields.insert(
                "on".to_string(),
                PValue {
                    kind: Some(Kind::Bool(true)),
                },
            );
            let bytes = Struct { fields }.encode_to_vec();
            assert_eq!(
                to_json(&bytes),
                Some(serde_json::json!({"on": true, "ratio": 0.5,
                    "rules": [{"requests_per_unit": 100, "unit": "second"}]}))
            );
            assert_eq!(to_json(b"\xff\xff"), None);
        }
    }
}

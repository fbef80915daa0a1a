//! Sign mode: the token a route adds to the request it forwards upstream, and how it is added.
//!
//! A signer whose token does not depend on the request (an Akamai ACL token, a Google URL prefix, a
//! CloudFront custom policy for a resource pattern) is minted once per worker and reused until half
//! of its lifetime is left, so the per-request cost is a copy; a signer bound to the request URL
//! mints per request (for CloudFront that is an RSA signature, about a millisecond: prefer a
//! `resource` pattern).

use edge_common::http::{
    append_query_param, param_name_is, split_path, strip_cookies, strip_query_params,
};

use crate::config::Location;
use crate::schemes::akamai::{self, Algorithm};
use crate::schemes::cloudfront::{self, CfSigner};
use crate::schemes::google;
use crate::schemes::secure_link::{self, Part};

/// A compiled signer of one route.
#[derive(Debug)]
pub struct Signer {
    pub scheme: SignScheme,
    /// Seconds from now to the token's expiry.
    pub lifetime: u64,
    /// `scheme://host` the signed URL starts with (Google, CloudFront); `None`: the request's own
    /// `:scheme` and `:authority`.
    pub base_url: Option<String>,
}

#[derive(Debug)]
pub enum SignScheme {
    Akamai {
        key: Vec<u8>,
        algorithm: Algorithm,
        token_name: String,
        location: Location,
        /// ACL token for this ACL; `None`: a URL token for the forwarded path.
        acl: Option<String>,
        salt: Option<String>,
        escape_early: bool,
    },
    Google {
        key_name: String,
        key: Vec<u8>,
        /// Signed URL prefix (query) or signed cookie for this prefix; `None`: a signed URL.
        url_prefix: Option<String>,
        /// `Query` or `Cookie` (`Cloud-CDN-Cookie`, which needs `url_prefix`).
        location: Location,
    },
    Cloudfront {
        signer: Box<CfSigner>,
        /// Custom policy for this resource pattern; `None`: canned policy for the forwarded URL.
        resource: Option<String>,
        /// `Query` or `Cookie` (`CloudFront-*`).
        location: Location,
    },
    SecureLink {
        parts: Vec<Part>,
        token_param: String,
        expires_param: String,
        hmac_key: Option<Vec<u8>>,
        /// `$remote_addr` as the origin sees it (Envoy's address, not the client's).
        remote_addr: String,
    },
}

/// The request being forwarded, after verify mode stripped its own parameters.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    /// `:path` with the query.
    pub path: &'a str,
    pub now: u64,
}

/// What signing adds to the forwarded request (each replaces any same-named copy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Additions {
    pub query: Vec<(String, String)>,
    pub header: Option<(String, String)>,
    pub cookies: Vec<(String, String)>,
}

impl Signer {
    /// Whether the token is the same for every request (so it can be cached).
    pub fn request_independent(&self) -> bool {
        match &self.scheme {
            SignScheme::Akamai { acl, .. } => acl.is_some(),
            SignScheme::Google { url_prefix, .. } => url_prefix.is_some(),
            SignScheme::Cloudfront { resource, .. } => resource.is_some(),
            SignScheme::SecureLink { .. } => false,
        }
    }

    /// The query parameter names this signer writes (removed from the path before signing).
    fn query_names(&self) -> &'static [&'static str] {
        match &self.scheme {
            SignScheme::Google {
                location: Location::Query,
                ..
            } => &["URLPrefix", "Expires", "KeyName", "Signature"],
            SignScheme::Cloudfront {
                location: Location::Query,
                ..
            } => &[
                "Expires",
                "Policy",
                "Signature",
                "Key-Pair-Id",
                "Hash-Algorithm",
            ],
            _ => &[],
        }
    }

    /// The forwarded path with any client-sent copy of what this signer writes removed.
    fn clean_path(&self, path: &str) -> Option<String> {
        let names = self.query_names();
        match &self.scheme {
            SignScheme::Akamai {
                token_name,
                location: Location::Query,
                ..
            } => strip_query_params(path, |n| param_name_is(n, token_name)),
            SignScheme::SecureLink {
                token_param,
                expires_param,
                ..
            } => strip_query_params(path, |n| {
                param_name_is(n, token_param) || param_name_is(n, expires_param)
            }),
            _ if names.is_empty() => None,
            _ => strip_query_params(path, |n| names.iter().any(|w| param_name_is(n, w))),
        }
    }

    fn url(&self, i: &Input<'_>, path: &str) -> String {
        match &self.base_url {
            Some(b) => format!("{b}{path}"),
            None => format!("{}://{}{path}", i.scheme, i.authority),
        }
    }

    /// Mints what to add for this request.
    pub fn mint(&self, i: &Input<'_>) -> Additions {
        let exp = i.now.saturating_add(self.lifetime);
        let cleaned = self.clean_path(i.path);
        let path = cleaned.as_deref().unwrap_or(i.path);
        let mut add = Additions::default();
        match &self.scheme {
            SignScheme::Akamai {
                key,
                algorithm,
                token_name,
                location,
                acl,
                salt,
                escape_early,
            } => {
                let spec = akamai::TokenSpec {
                    exp,
                    acl: acl.as_deref(),
                    url: acl.is_none().then(|| split_path(path).0),
                    salt: salt.as_deref(),
                    escape_early: *escape_early,
                    ..Default::default()
                };
                let token = akamai::generate(key, *algorithm, &spec);
                let pair = (token_name.clone(), token);
                match location {
                    Location::Query => add.query.push(pair),
                    Location::Header => add.header = Some(pair),
                    Location::Cookie => add.cookies.push(pair),
                }
            }
            SignScheme::Google {
                key_name,
                key,
                url_prefix,
                location,
            } => match (url_prefix, location) {
                (Some(p), Location::Cookie) => add.cookies.push((
                    "Cloud-CDN-Cookie".into(),
                    google::sign_cookie(p, key_name, key, exp),
                )),
                (Some(p), _) => {
                    add.query = split_pairs(&google::sign_prefix(p, key_name, key, exp))
                }
                (None, _) => {
                    let url = self.url(i, path);
                    let signed = google::sign_url(&url, key_name, key, exp);
                    let tail = signed.get(url.len() + 1..).unwrap_or("");
                    add.query = split_pairs(tail);
                }
            },
            SignScheme::Cloudfront {
                signer,
                resource,
                location,
            } => {
                let policy = resource
                    .as_deref()
                    .map(|r| cloudfront::custom_policy(r, exp, None, None));
                let url = if policy.is_none() {
                    self.url(i, path)
                } else {
                    String::new()
                };
                let fields = signer.fields(&url, exp, policy.as_deref());
                for (k, v) in fields {
                    match location {
                        Location::Cookie => add.cookies.push((format!("CloudFront-{k}"), v)),
                        _ => add.query.push((k.to_string(), v)),
                    }
                }
            }
            SignScheme::SecureLink {
                parts,
                token_param,
                expires_param,
                hmac_key,
                remote_addr,
            } => {
                let expires = exp.to_string();
                let vars = secure_link::Vars {
                    expires: &expires,
                    uri: split_path(path).0,
                    remote_addr,
                    host: i.authority,
                };
                let token = secure_link::token(parts, &vars, hmac_key.as_deref());
                add.query.push((token_param.clone(), token));
                add.query.push((expires_param.clone(), expires));
            }
        }
        add
    }
}

fn split_pairs(q: &str) -> Vec<(String, String)> {
    edge_common::http::query_pairs(q)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One worker's cached token for a request-independent signer.
#[derive(Debug, Default)]
pub struct Cache {
    entry: Option<(u64, Additions)>,
}

impl Cache {
    /// The additions for this request: the cached ones while more than half their lifetime is
    /// left, else freshly minted.
    pub fn additions(&mut self, s: &Signer, i: &Input<'_>) -> Additions {
        if !s.request_independent() {
            return s.mint(i);
        }
        match &self.entry {
            Some((refresh_at, a)) if i.now < *refresh_at => a.clone(),
            _ => {
                let a = s.mint(i);
                self.entry = Some((i.now.saturating_add(s.lifetime / 2), a.clone()));
                a
            }
        }
    }
}

/// How the forwarded request changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub path: Option<String>,
    /// The new `cookie` header; `Some("")`: remove it.
    pub cookie: Option<String>,
    pub header: Option<(String, String)>,
}

/// Applies additions to a request with this `:path` and `cookie` header: any same-named query
/// parameter or cookie the client sent is replaced, everything else is kept as received.
pub fn apply(path: &str, cookie: Option<&str>, add: Additions) -> Rewrite {
    let mut out = Rewrite {
        header: add.header,
        ..Rewrite::default()
    };
    if !add.query.is_empty() {
        let mut p =
            strip_query_params(path, |n| add.query.iter().any(|(k, _)| param_name_is(n, k)))
                .unwrap_or_else(|| path.to_string());
        for (k, v) in &add.query {
            append_query_param(&mut p, k, v);
        }
        out.path = Some(p);
    }
    if !add.cookies.is_empty() {
        let existing = cookie.unwrap_or("");
        let mut c = strip_cookies(existing, |n| {
            add.cookies.iter().any(|(k, _)| param_name_is(n, k))
        })
        .unwrap_or_else(|| existing.trim().to_string());
        for (k, v) in &add.cookies {
            if !c.is_empty() {
                c.push_str("; ");
            }
            c.push_str(k);
            c.push('=');
            c.push_str(v);
        }
        out.cookie = Some(c);
    }
    out
}

/// Returns the path with this signer's parameters replaced; for tests and the `sign` command.
pub fn signed_path(s: &Signer, i: &Input<'_>) -> Rewrite {
    let cleaned = s.clean_path(i.path);
    let path = cleaned.as_deref().unwrap_or(i.path);
    apply(path, None, s.mint(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn signer(json: &str) -> Signer {
        let cfg =
            Config::from_json(format!(r#"{{"routes":[{{"name":"o","sign":{json}}}]}}"#).as_bytes())
                .unwrap();
        cfg.routes.into_iter().next().unwrap().sign.unwrap()
    }

    const IN: Input<'static> = Input {
        scheme: "http",
        authority: "35.186.234.33",
        path: "/index.html",
        now: 1549751401 - 300,
    };

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn google_signed_url_is_the_published_vector() {
        let s = signer(
            r#"{"scheme":"google_cdn","key_name":"my-key","key":"nZtRohdNF9m3cKM24IcK4w==","lifetime_seconds":300}"#,
        );
        let r = signed_path(&s, &IN);
        assert_eq!(
            r.path.as_deref(),
            Some("/index.html?Expires=1549751401&KeyName=my-key&Signature=CRFqQnVfFyiUyR63OQf-HRUpIwc=")
        );
        // A client-sent signature is replaced, not duplicated.
        let r2 = signed_path(
            &s,
            &Input {
                path: "/index.html?Signature=forged&KeyName=x",
                ..IN
            },
        );
        assert_eq!(r2.path, r.path);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn akamai_acl_token_in_each_location_and_cached() {
        let tok = "exp=1700003600~acl=/videos/*~hmac=";
        for (loc, want) in [("query", "q"), ("header", "h"), ("cookie", "c")] {
            let s = signer(&format!(
                r#"{{"scheme":"akamai_edgeauth","key":{{"hex":"52a152a152a152a152a152a152a1"}},"acl":"/videos/*","location":"{loc}","lifetime_seconds":3600}}"#
            ));
            let i = Input {
                path: "/videos/a.ts?x=1",
                now: 1_700_000_000,
                ..IN
            };
            let a = s.mint(&i);
            let r = apply(i.path, Some("sid=1; __token__=old"), a.clone());
            match want {
                "q" => assert!(r
                    .path
                    .unwrap()
                    .starts_with(&format!("/videos/a.ts?x=1&__token__={tok}"))),
                "h" => assert!(r.header.unwrap().1.starts_with(tok)),
                _ => assert!(r
                    .cookie
                    .unwrap()
                    .starts_with(&format!("sid=1; __token__={tok}"))),
            }
            let mut cache = Cache::default();
            assert_eq!(cache.additions(&s, &i), a);
            // Reused until half the lifetime is gone, then re-minted with a later expiry.
            assert_eq!(
                cache.additions(
                    &s,
                    &Input {
                        now: 1_700_001_799,
                        ..i
                    }
                ),
                a
            );
            assert_ne!(
                cache.additions(
                    &s,
                    &Input {
                        now: 1_700_001_800,
                        ..i
                    }
                ),
                a
            );
        }
        // The token verifies under the same key.
        let s = signer(
            r#"{"scheme":"akamai_edgeauth","key":{"hex":"52a152a152a152a152a152a152a1"},"lifetime_seconds":60}"#,
        );
        let a = s.mint(&Input {
            path: "/videos/a.ts?x=1",
            now: 1_700_000_000,
            ..IN
        });
        let (_, token) = a.query.first().cloned().unwrap();
        let check = akamai::Check {
            path: "/videos/a.ts",
            client_ip: &|| None,
            now: 1_700_000_030,
            leeway: 0,
            salt: None,
            escape_early: false,
            signature_known: false,
        };
        let key = akamai::decode_hex_key("52a152a152a152a152a152a152a1").unwrap();
        assert_eq!(
            akamai::verify(&token, &[(key, Algorithm::Sha256)], &check),
            Ok(())
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn secure_link_signs_for_the_origin_address() {
        let s = signer(
            r#"{"scheme":"secure_link","expression":"$secure_link_expires$uri$remote_addr secret","remote_addr":"127.0.0.1","lifetime_seconds":100}"#,
        );
        let r = signed_path(
            &s,
            &Input {
                path: "/s/link?md5=old",
                now: 2147483547,
                ..IN
            },
        );
        assert_eq!(
            r.path.as_deref(),
            Some("/s/link?md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647")
        );
    }
}

//! The per-request decision of verify mode: which route applies, where its token is, whether it
//! is valid, and the path to forward with the token stripped.

use edge_common::http::{
    cookie, param_name_is, query_param, split_path, strip_cookies, strip_query_params,
};
use std::cell::RefCell;

use edge_common::path::{canonical_path, has_prefix, PathPolicy};

use crate::config::{Config, Location, Route, Scheme};
use crate::schemes::{akamai, cloudfront, google, secure_link, Refusal};

/// The request attributes verification reads.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    /// `:path` with the query, as it will be forwarded. Routes are matched on its canonical
    /// form; under a route the caller has already refused or rewritten a path that was not
    /// canonical, so the token is checked against exactly what is forwarded.
    pub path: &'a str,
    pub method: &'a str,
    pub cookie: Option<&'a str>,
    /// Value of the header an Akamai route reads its token from, if it uses one.
    pub token_header: Option<&'a str>,
    /// The client address, looked up only when a token or expression needs it.
    pub client_ip: &'a dyn Fn() -> Option<String>,
    /// Unix seconds.
    pub now: u64,
    /// ACL tokens whose signatures this worker verified already (`None`: verify every time).
    pub signatures: Option<&'a RefCell<SignatureCache>>,
}

/// The last `SignatureCache::CAPACITY` Akamai ACL tokens whose HMAC verified, per route. Such a
/// token is the same on every request of a client (every segment of a video), and its signature
/// does not depend on the request, so the HMAC is computed once per worker; expiry, client IP and
/// ACL scope are still checked on every request. Only verified tokens enter (compared in full, not
/// by hash), so a client cannot place one; memory is bounded by the capacity.
#[derive(Debug, Default)]
pub struct SignatureCache {
    entries: Vec<(u64, usize, String)>,
    next: usize,
}

impl SignatureCache {
    pub const CAPACITY: usize = 128;

    pub fn contains(&self, route: usize, token: &str) -> bool {
        let h = edge_common::hash::hash64(route as u64, token.as_bytes());
        self.entries
            .iter()
            .any(|(eh, r, t)| *eh == h && *r == route && t == token)
    }

    pub fn insert(&mut self, route: usize, token: &str) {
        if token.len() > 4096 {
            return;
        }
        let e = (
            edge_common::hash::hash64(route as u64, token.as_bytes()),
            route,
            token.to_string(),
        );
        if self.entries.len() < Self::CAPACITY {
            self.entries.push(e);
        } else if let Some(slot) = self.entries.get_mut(self.next) {
            *slot = e;
        }
        self.next = (self.next + 1) % Self::CAPACITY;
    }
}

/// The outcome for a request on a protected route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub route: usize,
    /// Whether the route verifies (else it only signs, and `result` is `Ok`).
    pub checked: bool,
    pub result: Result<(), Refusal>,
    /// The `:path` to forward when stripping removed something.
    pub stripped_path: Option<String>,
    /// The `cookie` header to forward when stripping removed a token cookie (`""`: remove it).
    pub stripped_cookie: Option<String>,
    /// Remove the route's token header before forwarding.
    pub strip_header: bool,
}

/// The route a request falls under, if any, by its canonical path (without query).
pub fn route_for<'c>(cfg: &'c Config, canonical: &str, method: &str) -> Option<(usize, &'c Route)> {
    route_at(&cfg.routes, cfg.paths, canonical, method)
}

fn route_at<'c>(
    routes: &'c [Route],
    paths: PathPolicy,
    p: &str,
    method: &str,
) -> Option<(usize, &'c Route)> {
    routes.iter().enumerate().find(|(_, r)| {
        r.path_prefix
            .as_deref()
            .is_none_or(|pre| has_prefix(p, pre, paths.case_sensitive))
            && (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
    })
}

/// Google's and CloudFront's query parameters.
const GOOGLE_PARAMS: [&str; 4] = ["Expires", "KeyName", "Signature", "URLPrefix"];
const CLOUDFRONT_PARAMS: [&str; 5] = [
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

fn any_name(raw: &str, names: &[&str]) -> bool {
    names.iter().any(|w| param_name_is(raw, w))
}

/// Verifies a request; `None` when no route protects it (or its path is unsafe: the caller
/// refuses those first).
pub fn verify(cfg: &Config, r: &Request<'_>) -> Option<Outcome> {
    let canonical = canonical_path(r.path).ok()?;
    let (idx, route) = route_for(cfg, &canonical, r.method)?;
    let url_scheme = route.url_scheme.unwrap_or(r.scheme);
    let Some(scheme) = &route.scheme else {
        return Some(Outcome {
            route: idx,
            checked: false,
            result: Ok(()),
            stripped_path: None,
            stripped_cookie: None,
            strip_header: false,
        });
    };
    // Tokens are checked against the canonical path (with the query as sent), so a token's
    // scope cannot be escaped by `..`, `//` or escapes.
    let (_, query) = split_path(r.path);
    let path_only: &str = &canonical;
    let full_url = || match query {
        Some(q) => format!("{url_scheme}://{}{path_only}?{q}", r.authority),
        None => format!("{url_scheme}://{}{path_only}", r.authority),
    };
    let query = query.unwrap_or("");
    let result: Result<(), Refusal> = match scheme {
        Scheme::Akamai {
            keys,
            token_name,
            location,
            salt,
            escape_early,
        } => {
            let token = match location {
                Location::Query => query_param(query, token_name),
                Location::Cookie => r.cookie.and_then(|c| cookie(c, token_name)),
                Location::Header => r.token_header,
            };
            let known = |t: &str| {
                r.signatures
                    .and_then(|c| c.try_borrow().ok())
                    .is_some_and(|c| c.contains(idx, t))
            };
            match token {
                None | Some("") => Err(Refusal::Missing),
                Some(t) => {
                    let check = akamai::Check {
                        path: path_only,
                        client_ip: r.client_ip,
                        now: r.now,
                        leeway: cfg.leeway,
                        salt: salt.as_deref(),
                        escape_early: *escape_early,
                        signature_known: known(t),
                    };
                    let res = akamai::verify(t, keys, &check);
                    // An ACL token's signature does not depend on the request: remember it.
                    if res.is_ok() && !check.signature_known && t.contains("acl=") {
                        if let Some(mut c) = r.signatures.and_then(|c| c.try_borrow_mut().ok()) {
                            c.insert(idx, t);
                        }
                    }
                    res
                }
            }
        }
        Scheme::Google {
            keys,
            cookie: use_cookie,
        } => {
            let lookup = |name: &str| keys.iter().find(|(n, _)| n == name).map(|(_, k)| k.clone());
            let full = full_url();
            let check = google::Check {
                url: &full,
                now: r.now,
                leeway: cfg.leeway,
            };
            let mut res = google::verify_url(&check, &lookup);
            if res == Err(Refusal::Missing) && *use_cookie {
                if let Some(v) = r.cookie.and_then(|c| cookie(c, "Cloud-CDN-Cookie")) {
                    res = google::verify_cookie(v, &check, &lookup);
                }
            }
            res
        }
        Scheme::Cloudfront {
            keys,
            cookie: use_cookie,
        } => {
            let lookup = |id: &str| keys.iter().find(|(k, _)| k == id).map(|(_, k)| k);
            let full = full_url();
            let ip = || (r.client_ip)().and_then(|s| s.parse().ok());
            let check = cloudfront::Check {
                url: &full,
                client_ip: &ip,
                now: r.now,
                leeway: cfg.leeway,
            };
            let mut res = cloudfront::verify_url(&check, &lookup);
            if res == Err(Refusal::Missing) && *use_cookie {
                if let Some(c) = r.cookie.filter(|c| cloudfront::has_cookies(c)) {
                    res = cloudfront::verify_cookies(c, &check, &lookup);
                }
            }
            res
        }
        Scheme::SecureLink {
            parts,
            token_param,
            expires_param,
            hmac_keys,
        } => {
            let addr = if parts.contains(&secure_link::Part::RemoteAddr) {
                (r.client_ip)().unwrap_or_default()
            } else {
                String::new()
            };
            let vars = secure_link::Vars {
                expires: query_param(query, expires_param).unwrap_or(""),
                uri: path_only,
                remote_addr: &addr,
                host: r.authority,
            };
            secure_link::verify(
                parts,
                &vars,
                query_param(query, token_param),
                hmac_keys,
                r.now,
                cfg.leeway,
            )
        }
    };
    // Only a verified request is forwarded, so only then is anything stripped.
    let strip = route.strip && result.is_ok();
    let stripped_path = if strip {
        match scheme {
            // A query copy of the token goes whatever the location, so an origin never sees one.
            Scheme::Akamai { token_name, .. } => {
                strip_query_params(r.path, |n| param_name_is(n, token_name))
            }
            Scheme::Google { .. } => strip_query_params(r.path, |n| any_name(n, &GOOGLE_PARAMS)),
            Scheme::Cloudfront { .. } => {
                strip_query_params(r.path, |n| any_name(n, &CLOUDFRONT_PARAMS))
            }
            Scheme::SecureLink {
                token_param,
                expires_param,
                ..
            } => strip_query_params(r.path, |n| {
                param_name_is(n, token_param) || param_name_is(n, expires_param)
            }),
        }
    } else {
        None
    };
    let stripped_cookie = match (strip, r.cookie, scheme) {
        (
            true,
            Some(c),
            Scheme::Akamai {
                token_name,
                location: Location::Cookie,
                ..
            },
        ) => strip_cookies(c, |n| param_name_is(n, token_name)),
        (true, Some(c), Scheme::Google { cookie: true, .. }) => {
            strip_cookies(c, |n| param_name_is(n, "Cloud-CDN-Cookie"))
        }
        (true, Some(c), Scheme::Cloudfront { cookie: true, .. }) => {
            strip_cookies(c, |n| any_name(n, &cloudfront::COOKIES))
        }
        _ => None,
    };
    let strip_header = strip
        && matches!(
            scheme,
            Scheme::Akamai {
                location: Location::Header,
                ..
            }
        );
    Some(Outcome {
        route: idx,
        checked: true,
        result,
        stripped_path,
        stripped_cookie,
        strip_header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn google_route_verifies_and_strips() {
        let cfg = Config::from_json(br#"{"routes":[{"name":"v","path_prefix":"/index","verify":{"scheme":"google_cdn","keys":{"my-key":"nZtRohdNF9m3cKM24IcK4w=="}}}]}"#).unwrap();
        let r = Request { scheme: "http", authority: "35.186.234.33", path: "/index.html?Expires=1549751401&KeyName=my-key&Signature=CRFqQnVfFyiUyR63OQf-HRUpIwc=", method: "GET", now: 1549751000, cookie: None, token_header: None, client_ip: &|| None, signatures: None };
        let o = verify(&cfg, &r).unwrap();
        assert_eq!(o.result, Ok(()));
        assert_eq!(o.stripped_path.as_deref(), Some("/index.html"));
        assert_eq!(
            verify(
                &cfg,
                &Request {
                    path: "/index.html",
                    ..r
                }
            )
            .unwrap()
            .result,
            Err(Refusal::Missing)
        );
        assert!(verify(
            &cfg,
            &Request {
                path: "/other",
                ..r
            }
        )
        .is_none());
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn secure_link_and_akamai_routes() {
        let cfg = Config::from_json(br#"{"routes":[
            {"name":"s","path_prefix":"/s/","verify":{"scheme":"secure_link","expression":"$secure_link_expires$uri$remote_addr secret"}},
            {"name":"a","path_prefix":"/a/","verify":{"scheme":"akamai_edgeauth","keys":[{"hex":"52a152a152a152a152a152a152a1"}]}}]}"#).unwrap();
        let r = Request {
            scheme: "http",
            authority: "h",
            path: "/s/link?md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647&keep=1",
            method: "GET",
            client_ip: &|| Some("127.0.0.1".into()),
            now: 2_000_000_000,
            signatures: None,
            cookie: None,
            token_header: None,
        };
        let o = verify(&cfg, &r).unwrap();
        assert_eq!(
            (o.route, o.result, o.stripped_path.as_deref()),
            (0, Ok(()), Some("/s/link?keep=1"))
        );
        let tok = "st=1700000000~exp=1700003600~acl=/videos/*!/images/*~hmac=d54fe247515ce6d48c54471b894c3d093c667e257119231ba0b30494a9afe899";
        let path = format!("/a/x?__token__={tok}");
        let a = Request {
            path: &path,
            now: 1_700_000_100,
            ..r
        };
        assert_eq!(
            verify(&cfg, &a).unwrap().result,
            Err(Refusal::WrongScope),
            "/a/x is outside the token's ACL"
        );
        // A custom token name is what gets stripped.
        let custom = Config::from_json(br#"{"routes":[{"name":"v","verify":{"scheme":"akamai_edgeauth","token_name":"t","keys":[{"hex":"52a152a152a152a152a152a152a1"}]}}]}"#).unwrap();
        let p = format!("/videos/1.ts?a=1&t={tok}&b=2");
        let o = verify(&custom, &Request { path: &p, ..a }).unwrap();
        assert_eq!(
            (o.result, o.stripped_path.as_deref()),
            (Ok(()), Some("/videos/1.ts?a=1&b=2"))
        );
    }
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn scope_is_checked_on_the_canonical_path() {
        use crate::schemes::akamai::{generate, Algorithm, TokenSpec};
        let key = [0x52u8, 0xa1, 0x52, 0xa1];
        let tok = generate(
            &key,
            Algorithm::Sha256,
            &TokenSpec {
                ip: None,
                start: None,
                exp: 2_000_000_000,
                acl: Some("/videos/a/*"),
                url: None,
                id: None,
                data: None,
                salt: None,
                escape_early: false,
            },
        );
        let cfg = Config::from_json(br#"{"routes":[{"name":"v","path_prefix":"/videos/","verify":{"scheme":"akamai_edgeauth","keys":[{"hex":"52a152a1"}]}}]}"#).unwrap();
        let at = |p: String| {
            verify(
                &cfg,
                &Request {
                    scheme: "http",
                    authority: "h",
                    path: &p,
                    method: "GET",
                    cookie: None,
                    token_header: None,
                    client_ip: &|| None,
                    now: 1_900_000_000,
                    signatures: None,
                },
            )
            .map(|o| o.result)
        };
        assert_eq!(at(format!("/videos/a/x?__token__={tok}")), Some(Ok(())));
        assert_eq!(
            at(format!("/videos/a/../b/x?__token__={tok}")),
            Some(Err(Refusal::WrongScope))
        );
        assert_eq!(
            at(format!("/videos/a/%2E%2E/b/x?__token__={tok}")),
            Some(Err(Refusal::WrongScope))
        );
        // Prefix matching folds case by default: `/VIDEOS/` is protected too.
        assert_eq!(at("/VIDEOS/b/x".into()), Some(Err(Refusal::Missing)));
        assert_eq!(at("//videos/b/x".into()), Some(Err(Refusal::Missing)));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn google_prefix_scope_and_scheme_override() {
        let key = crate::schemes::google::decode_key("nZtRohdNF9m3cKM24IcK4w==").unwrap();
        let q = crate::schemes::google::sign_prefix(
            "https://h/media/a/",
            "my-key",
            &key,
            2_000_000_000,
        );
        let cfg = |scheme: &str| {
            Config::from_json(format!(r#"{{"routes":[{{"name":"v","path_prefix":"/media/"{scheme},"verify":{{"scheme":"google_cdn","keys":{{"my-key":"nZtRohdNF9m3cKM24IcK4w=="}}}}}}]}}"#).as_bytes()).unwrap()
        };
        let at = |cfg: &Config, p: &str| {
            verify(
                cfg,
                &Request {
                    scheme: "http",
                    authority: "h",
                    path: &format!("{p}?{q}"),
                    method: "GET",
                    cookie: None,
                    token_header: None,
                    client_ip: &|| None,
                    now: 1_900_000_000,
                    signatures: None,
                },
            )
            .map(|o| o.result)
        };
        let behind_tls_lb = cfg(r#","scheme":"https""#);
        assert_eq!(at(&behind_tls_lb, "/media/a/x.mp4"), Some(Ok(())));
        assert_eq!(
            at(&behind_tls_lb, "/media/a/../b/x.mp4"),
            Some(Err(Refusal::WrongScope))
        );
        // Without the override the request's own `http` is signed over, and fails.
        assert_ne!(at(&cfg(""), "/media/a/x.mp4"), Some(Ok(())));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn every_spelling_of_a_token_is_stripped() {
        let tok = "st=1700000000~exp=1700003600~acl=/videos/*!/images/*~hmac=d54fe247515ce6d48c54471b894c3d093c667e257119231ba0b30494a9afe899";
        let cfg = |loc: &str| {
            Config::from_json(format!(r#"{{"routes":[{{"name":"v","verify":{{"scheme":"akamai_edgeauth","location":"{loc}","keys":[{{"hex":"52a152a152a152a152a152a152a1"}}]}}}}]}}"#).as_bytes()).unwrap()
        };
        let base = Request {
            scheme: "http",
            authority: "h",
            path: "",
            method: "GET",
            cookie: None,
            token_header: None,
            client_ip: &|| None,
            now: 1_700_000_100,
            signatures: None,
        };
        let p = format!("/videos/1.ts?a=1&__token__={tok}&%5F%5Ftoken%5F%5F=evil&_%5ftoken__=x");
        let o = verify(&cfg("query"), &Request { path: &p, ..base }).unwrap();
        assert_eq!(
            (o.result, o.stripped_path.as_deref()),
            (Ok(()), Some("/videos/1.ts?a=1"))
        );
        // A cookie route strips a query copy too, and reads the token from the cookie.
        let p = "/videos/1.ts?__token__=evil&b=2";
        let c = format!("sid=1; __token__={tok}");
        let o = verify(
            &cfg("cookie"),
            &Request {
                path: p,
                cookie: Some(&c),
                ..base
            },
        )
        .unwrap();
        assert_eq!(
            (
                o.result,
                o.stripped_path.as_deref(),
                o.stripped_cookie.as_deref()
            ),
            (Ok(()), Some("/videos/1.ts?b=2"), Some("sid=1"))
        );
    }
}

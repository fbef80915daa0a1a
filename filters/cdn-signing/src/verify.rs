//! The per-request decision of verify mode: which route applies, where its token is, whether it
//! is valid, and the path to forward with the token stripped.

use edge_common::http::{cookie, query_param, split_path, strip_cookies, strip_query_params};

use crate::config::{Config, Location, Route, Scheme};
use crate::schemes::{akamai, cloudfront, google, secure_link, Refusal};

/// The request attributes verification reads.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    /// `:path` with the query.
    pub path: &'a str,
    pub method: &'a str,
    pub cookie: Option<&'a str>,
    /// Value of the header an Akamai route reads its token from, if it uses one.
    pub token_header: Option<&'a str>,
    /// The client address, looked up only when a token or expression needs it.
    pub client_ip: &'a dyn Fn() -> Option<String>,
    /// Unix seconds.
    pub now: u64,
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

/// The route a request falls under, if any.
pub fn route_for<'c>(cfg: &'c Config, path: &str, method: &str) -> Option<(usize, &'c Route)> {
    let (p, _) = split_path(path);
    cfg.routes.iter().enumerate().find(|(_, r)| {
        r.path_prefix
            .as_deref()
            .is_none_or(|pre| p.starts_with(pre))
            && (r.methods.is_empty() || r.methods.iter().any(|m| m == method))
    })
}

/// Verifies a request; `None` when no route protects it.
pub fn verify(cfg: &Config, r: &Request<'_>) -> Option<Outcome> {
    let (idx, route) = route_for(cfg, r.path, r.method)?;
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
    let (path_only, query) = split_path(r.path);
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
            let check = akamai::Check {
                path: path_only,
                client_ip: r.client_ip,
                now: r.now,
                leeway: cfg.leeway,
                salt: salt.as_deref(),
                escape_early: *escape_early,
            };
            match token {
                None | Some("") => Err(Refusal::Missing),
                Some(t) => akamai::verify(t, keys, &check),
            }
        }
        Scheme::Google {
            keys,
            cookie: use_cookie,
        } => {
            let lookup = |name: &str| keys.iter().find(|(n, _)| n == name).map(|(_, k)| k.clone());
            let full = format!("{}://{}{}", r.scheme, r.authority, r.path);
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
            let full = format!("{}://{}{}", r.scheme, r.authority, r.path);
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
            Scheme::Akamai {
                token_name,
                location: Location::Query,
                ..
            } => strip_query_params(r.path, |n| n == token_name),
            Scheme::Akamai { .. } => None,
            Scheme::Google { .. } => strip_query_params(r.path, |n| {
                matches!(n, "Expires" | "KeyName" | "Signature" | "URLPrefix")
            }),
            Scheme::Cloudfront { .. } => strip_query_params(r.path, |n| {
                matches!(
                    n,
                    "Expires" | "Policy" | "Signature" | "Key-Pair-Id" | "Hash-Algorithm"
                )
            }),
            Scheme::SecureLink {
                token_param,
                expires_param,
                ..
            } => strip_query_params(r.path, |n| n == token_param || n == expires_param),
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
        ) => strip_cookies(c, |n| n == token_name),
        (true, Some(c), Scheme::Google { cookie: true, .. }) => {
            strip_cookies(c, |n| n == "Cloud-CDN-Cookie")
        }
        (true, Some(c), Scheme::Cloudfront { cookie: true, .. }) => {
            strip_cookies(c, |n| cloudfront::COOKIES.contains(&n))
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
        let r = Request { scheme: "http", authority: "35.186.234.33", path: "/index.html?Expires=1549751401&KeyName=my-key&Signature=CRFqQnVfFyiUyR63OQf-HRUpIwc=", method: "GET", now: 1549751000, cookie: None, token_header: None, client_ip: &|| None };
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
}

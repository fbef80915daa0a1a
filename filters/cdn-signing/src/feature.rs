//! The cdn-signing feature: per request, the route's check on the canonical path, then a refusal
//! with its reason, or the request forwarded with the token stripped (and signed, in sign mode).

use std::cell::RefCell;

use edge_common::host::{counter, Decision, Decisions, Feature, Host, Request, StartError};
use edge_common::path::{self, PathVerdict, RequestPath};

use crate::config::{Config, Location, Mode, Scheme};
use crate::schemes::Refusal;
use crate::sign::{apply, Cache, Input};
use crate::verify::{route_for, verify, Request as Check, SignatureCache};

/// Counters per route, in this order: the verify outcomes, then `signed`.
pub const OUTCOMES: [&str; 8] = [
    "valid",
    "missing",
    "malformed",
    "expired",
    "not_yet_valid",
    "wrong_scope",
    "bad_signature",
    "signed",
];
/// Index of `signed` in `OUTCOMES`.
const SIGNED: usize = OUTCOMES.len() - 1;

fn outcome_index(r: &Result<(), Refusal>) -> usize {
    match r {
        Ok(()) => 0,
        Err(Refusal::Missing) => 1,
        Err(Refusal::Malformed) => 2,
        Err(Refusal::Expired) => 3,
        Err(Refusal::NotYetValid) => 4,
        Err(Refusal::WrongScope) => 5,
        Err(Refusal::BadSignature) => 6,
    }
}

pub struct CdnSigning {
    pub cfg: Config,
    /// `metrics[route][outcome]`.
    metrics: Vec<[u32; 8]>,
    /// `cdn_signing.bad_path`: paths refused (or, in shadow mode, that would be) with 400.
    bad_path: u32,
    /// This worker's cached tokens, per route (sign mode).
    tokens: RefCell<Vec<Cache>>,
    /// ACL tokens this worker verified (verify mode).
    signatures: RefCell<SignatureCache>,
}

impl CdnSigning {
    /// Starts the feature with an already checked configuration.
    pub fn with_config(cfg: Config, host: &impl Host) -> Result<Self, StartError> {
        let mut metrics = Vec::with_capacity(cfg.routes.len());
        for r in &cfg.routes {
            let mut ids = [0u32; 8];
            for (id, o) in ids.iter_mut().zip(OUTCOMES) {
                *id = counter(
                    host,
                    &format!("cdn_signing.{}.{o}", edge_common::metrics::segment(&r.name)),
                )?;
            }
            metrics.push(ids);
        }
        let bad_path = counter(host, "cdn_signing.bad_path")?;
        let tokens = RefCell::new(cfg.routes.iter().map(|_| Cache::default()).collect());
        Ok(Self {
            cfg,
            metrics,
            bad_path,
            tokens,
            signatures: RefCell::default(),
        })
    }
}

impl Feature for CdnSigning {
    type Request = ();

    fn configure(json: &[u8], host: &impl Host) -> Result<Self, StartError> {
        Self::with_config(Config::from_json(json)?, host)
    }

    fn describe(&self) -> String {
        format!(
            "cdn_signing: {} route(s), mode {:?}",
            self.cfg.routes.len(),
            self.cfg.mode
        )
    }

    fn decision_filter_state(&self) -> Option<&'static str> {
        self.cfg
            .decision_filter_state
            .then_some("cdn_signing.decision")
    }

    fn on_request_headers(
        &self,
        host: &impl Host,
        req: &Request<'_>,
        decisions: &mut Decisions,
        _: &mut (),
    ) -> Decision {
        let cfg = &self.cfg;
        let h = &req.headers;
        let raw_path = req.path();
        let method = h.get_str(":method").unwrap_or("");
        let enforce = cfg.mode == Mode::Enforce;
        // Routes match the canonical path; a path that is unsafe, or not canonical under a
        // route, is refused (or rewritten to what is checked), never passed unchecked.
        let req_path = RequestPath::new(raw_path);
        let rewritten = match path::verdict(&req_path, raw_path, cfg.paths, |p| {
            route_for(cfg, p, method).is_some()
        }) {
            PathVerdict::Check => None,
            PathVerdict::Rewrite(p) => Some(p),
            PathVerdict::Reject(code) => {
                host.count(self.bad_path, 1);
                if !enforce {
                    return Decision::Continue;
                }
                host.send_reply(
                    400,
                    &format!("cdn_signing.{code}"),
                    &[
                        ("content-type", "application/json"),
                        ("x-cdn-signing-reason", code),
                    ],
                    path::reject_body(code).as_bytes(),
                );
                return Decision::Replied;
            }
        };
        let path = rewritten.as_deref().unwrap_or(raw_path);
        let Some((_, route)) = route_for(cfg, req_path.canonical(), method) else {
            return Decision::Continue;
        };
        let token_header = match &route.scheme {
            Some(Scheme::Akamai {
                location: Location::Header,
                token_name,
                ..
            }) => h.get_str(token_name),
            _ => None,
        };
        // Looked up only for an Akamai token bound to an `ip` or a `$remote_addr` expression.
        let client = || req.client_ip(host).map(|ip| ip.to_string());
        let now = req.now_ns(host) / 1_000_000_000;
        // The cookie header is joined only for a route that may read, strip or sign a cookie.
        let cookies =
            if route.sign.is_some() || route.scheme.as_ref().is_some_and(Scheme::reads_cookies) {
                h.cookies()
            } else {
                None
            };
        let check = Check {
            scheme: route
                .url_scheme
                .unwrap_or_else(|| h.get_str(":scheme").unwrap_or("http")),
            authority: h.get_str(":authority").unwrap_or(""),
            path,
            method,
            cookie: cookies.as_deref(),
            token_header,
            client_ip: &client,
            now,
            signatures: Some(&self.signatures),
        };
        let Some(out) = verify(cfg, &check) else {
            return Decision::Continue;
        };
        let ids = self.metrics.get(out.route);
        let count = |i: usize| {
            if let Some(&id) = ids.and_then(|m| m.get(i)) {
                host.count(id, 1);
            }
        };
        if out.checked {
            count(outcome_index(&out.result));
            if decisions.explain.is_some() {
                let route = cfg.routes.get(out.route).map_or("", |r| r.name.as_str());
                let what = match out.result {
                    Ok(()) => "valid",
                    Err(r) => r.as_str(),
                };
                decisions.note("cdn", &format!("{route}:{what}"));
            }
        }
        if let (Err(refusal), true) = (out.result, enforce) {
            let status = if refusal == Refusal::Expired {
                cfg.expired_status
            } else {
                403
            };
            let body = format!(
                "{{\"error\":\"invalid_token\",\"reason\":\"{}\"}}\n",
                refusal.as_str()
            );
            host.send_reply(
                status,
                &format!("cdn_signing.{}", refusal.as_str()),
                &[
                    ("content-type", "application/json"),
                    ("x-cdn-signing-reason", refusal.as_str()),
                ],
                body.as_bytes(),
            );
            return Decision::Replied;
        }
        // Shadow mode forwards everything as received, apart from what signing adds.
        let (mut new_path, mut new_cookie) = if enforce {
            (
                out.stripped_path.or_else(|| rewritten.clone()),
                out.stripped_cookie,
            )
        } else {
            (None, None)
        };
        if enforce && out.strip_header {
            if let Some(Scheme::Akamai { token_name, .. }) = &route.scheme {
                host.set_request_header(token_name, None);
            }
        }
        if let Some(signer) = &route.sign {
            let cur_path = new_path.as_deref().unwrap_or(path);
            let input = Input {
                scheme: check.scheme,
                authority: check.authority,
                path: cur_path,
                now,
            };
            let additions = match self.tokens.try_borrow_mut() {
                Ok(mut caches) => match caches.get_mut(out.route) {
                    Some(c) => c.additions(signer, &input),
                    None => signer.mint(&input),
                },
                Err(_) => signer.mint(&input),
            };
            let cur_cookie = match &new_cookie {
                Some(c) => Some(c.as_str()),
                None => check.cookie,
            };
            let rw = apply(cur_path, cur_cookie, additions);
            if let Some(p) = rw.path {
                new_path = Some(p);
            }
            if let Some(c) = rw.cookie {
                new_cookie = Some(c);
            }
            if let Some((name, value)) = rw.header {
                host.set_request_header(&name, Some(&value));
            }
            count(SIGNED);
        }
        if let Some(p) = new_path {
            host.set_request_header(":path", Some(&p));
        }
        if let Some(c) = new_cookie {
            let v = (!c.is_empty()).then_some(c.as_str());
            host.set_request_header("cookie", v);
        }
        Decision::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schemes::akamai::{self, Algorithm, TokenSpec};
    use edge_common::host::fake::{configure, run, FakeHost};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const KEY: &str = "52a152a152a152a152a152a152a1";
    const NOW: u64 = 1_800_000_000;

    fn token(acl: &str, exp: u64) -> String {
        akamai::generate(
            &akamai::decode_hex_key(KEY).unwrap(),
            Algorithm::Sha256,
            &TokenSpec {
                exp,
                acl: Some(acl),
                ..Default::default()
            },
        )
    }

    fn cfg(extra: &str) -> (CdnSigning, FakeHost) {
        configure::<CdnSigning>(&format!(
            r#"{{{extra}"leeway_seconds":0,"routes":[
              {{"name":"videos","path_prefix":"/videos/","verify":{{"scheme":"akamai_edgeauth","keys":[{{"hex":"{KEY}"}}]}}}},
              {{"name":"hdr","path_prefix":"/h/","verify":{{"scheme":"akamai_edgeauth","location":"header","token_name":"x-edge-token","keys":[{{"hex":"{KEY}"}}]}}}},
              {{"name":"ck","path_prefix":"/ck/","verify":{{"scheme":"akamai_edgeauth","location":"cookie","keys":[{{"hex":"{KEY}"}}]}}}},
              {{"name":"origin","path_prefix":"/o/","sign":{{"scheme":"akamai_edgeauth","key":{{"hex":"{KEY}"}},"acl":"/o/*","lifetime_seconds":600}}}}]}}"#
        ))
    }

    fn get(h: &FakeHost, path: &str, extra: &[(&str, &str)]) {
        let mut headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", "h"),
            (":scheme", "http"),
        ];
        headers.extend_from_slice(extra);
        h.request(&headers);
        h.set_now_ns(NOW * 1_000_000_000);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn valid_tokens_are_stripped_and_counted() {
        let (f, h) = cfg("");
        let tok = token("/videos/*", NOW + 60);
        get(
            &h,
            &format!("/videos/a.ts?x=1&__token__={tok}&%5F%5Ftoken%5F%5F=evil"),
            &[],
        );
        let out = run(&f, &h);
        assert_eq!(out.decision, Decision::Continue);
        assert_eq!(
            h.forwarded_header(":path").as_deref(),
            Some("/videos/a.ts?x=1")
        );
        assert_eq!(h.metric("cdn_signing.videos.valid"), Some(1));
        // Header and cookie tokens go too; the other cookies stay byte for byte, from every
        // cookie header.
        let tok_h = token("/h/*", NOW + 60);
        get(&h, "/h/a.ts", &[("x-edge-token", &tok_h)]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.forwarded_header("x-edge-token"), None);
        let tok_c = token("/ck/*", NOW + 60);
        get(
            &h,
            "/ck/a.ts?__token__=evil",
            &[
                ("cookie", "sid=1"),
                ("cookie", &format!("__token__={tok_c}; theme=dark")),
            ],
        );
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.forwarded_all("cookie"), ["sid=1; theme=dark"]);
        assert_eq!(h.forwarded_header(":path").as_deref(), Some("/ck/a.ts"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn a_remembered_signature_still_expires_and_keeps_its_scope() {
        let (f, h) = cfg("");
        let tok = token("/videos/a/*", NOW + 60);
        get(&h, &format!("/videos/a/1.ts?__token__={tok}"), &[]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        get(&h, &format!("/videos/b/1.ts?__token__={tok}"), &[]);
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(
            h.reply().unwrap().header("x-cdn-signing-reason"),
            Some("wrong_scope")
        );
        get(&h, &format!("/videos/a/2.ts?__token__={tok}"), &[]);
        h.set_now_ns((NOW + 61) * 1_000_000_000);
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(
            h.reply().unwrap().header("x-cdn-signing-reason"),
            Some("expired")
        );
        // A forged token that differs from the remembered one in any byte is checked in full.
        get(
            &h,
            &format!("/videos/a/1.ts?__token__={}", tok.replace("exp=", "exp=9")),
            &[],
        );
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(
            h.reply().unwrap().header("x-cdn-signing-reason"),
            Some("bad_signature")
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn refusals_carry_their_reason_status_and_body() {
        let (f, h) = cfg(r#""expired_status":410,"#);
        for (path, status, reason) in [
            ("/videos/a.ts".to_string(), 403, "missing"),
            (
                format!("/videos/a.ts?__token__={}", token("/videos/*", NOW - 1)),
                410,
                "expired",
            ),
            (
                format!("/videos/a.ts?__token__={}", token("/other/*", NOW + 60)),
                403,
                "wrong_scope",
            ),
            (
                format!(
                    "/videos/a.ts?__token__={}",
                    token("/videos/*", NOW + 60).replace("hmac=", "hmac=0")
                ),
                403,
                "bad_signature",
            ),
            (
                "/videos/a.ts?__token__=garbage".to_string(),
                403,
                "malformed",
            ),
        ] {
            get(&h, &path, &[]);
            assert_eq!(run(&f, &h).decision, Decision::Replied, "{path}");
            let r = h.reply().unwrap();
            assert_eq!(
                (r.status, r.header("x-cdn-signing-reason")),
                (status, Some(reason)),
                "{path}"
            );
            assert_eq!(
                r.text(),
                format!("{{\"error\":\"invalid_token\",\"reason\":\"{reason}\"}}\n")
            );
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.details, format!("cdn_signing.{reason}"));
        }
        for o in [
            "missing",
            "expired",
            "wrong_scope",
            "bad_signature",
            "malformed",
        ] {
            assert_eq!(h.metric(&format!("cdn_signing.videos.{o}")), Some(1), "{o}");
        }
        // Paths outside every route pass untouched, and cost no clock or property lookup.
        get(&h, "/static/a.css", &[]);
        let out = run(&f, &h);
        assert_eq!((out.decision, out.host_calls), (Decision::Continue, 1));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn non_canonical_paths_are_refused_or_forwarded_canonical() {
        let (f, h) = cfg("");
        for p in [
            "//videos/a.ts",
            "/%76ideos/a.ts",
            "/x/../videos/a.ts",
            "/videos;x/a.ts",
        ] {
            get(&h, p, &[]);
            assert_eq!(run(&f, &h).decision, Decision::Replied, "{p}");
            let r = h.reply().unwrap();
            assert_eq!(
                (r.status, r.header("x-cdn-signing-reason")),
                (400, Some("non_canonical_path"))
            );
            assert_eq!(
                r.text(),
                "{\"error\":\"bad_path\",\"reason\":\"non_canonical_path\"}\n"
            );
            assert_eq!(r.details, "cdn_signing.non_canonical_path");
        }
        get(&h, "/static/%00", &[]);
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(
            h.reply().unwrap().header("x-cdn-signing-reason"),
            Some("encoded_nul")
        );
        assert_eq!(h.metric("cdn_signing.bad_path"), Some(5));
        // forward_canonical: checked and forwarded in the canonical form.
        let (f, h) = cfg(r#""paths":{"non_canonical":"forward_canonical"},"#);
        let tok = token("/videos/*", NOW + 60);
        get(&h, &format!("//videos/./a.ts?__token__={tok}&x=1"), &[]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(
            h.forwarded_header(":path").as_deref(),
            Some("/videos/a.ts?x=1")
        );
        get(&h, "//videos/a.ts", &[]);
        assert_eq!(run(&f, &h).decision, Decision::Replied);
        assert_eq!(
            h.reply().unwrap().header("x-cdn-signing-reason"),
            Some("missing")
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn shadow_mode_counts_but_never_refuses_nor_strips() {
        let (f, h) = cfg(r#""mode":"shadow","#);
        get(&h, "/videos/a.ts?__token__=garbage", &[]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.reply(), None);
        assert_eq!(
            h.forwarded_header(":path").as_deref(),
            Some("/videos/a.ts?__token__=garbage")
        );
        assert_eq!(h.metric("cdn_signing.videos.malformed"), Some(1));
        let tok = token("/videos/*", NOW + 60);
        get(&h, &format!("/videos/a.ts?__token__={tok}"), &[]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(
            h.forwarded_header(":path"),
            Some(format!("/videos/a.ts?__token__={tok}"))
        );
        get(&h, "//videos/a.ts", &[]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        assert_eq!(h.metric("cdn_signing.bad_path"), Some(1));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn sign_mode_replaces_client_copies_and_caches_acl_tokens() {
        let (f, h) = cfg("");
        get(&h, "/o/a.ts?__token__=forged&x=1", &[]);
        assert_eq!(run(&f, &h).decision, Decision::Continue);
        let first = h.forwarded_header(":path").unwrap();
        let tok = first
            .strip_prefix("/o/a.ts?x=1&__token__=")
            .unwrap_or_else(|| panic!("{first}"));
        assert_eq!(tok, token("/o/*", NOW + 600));
        assert_eq!(h.metric("cdn_signing.origin.signed"), Some(1));
        // The same token for the next request (cached per worker).
        get(&h, "/o/b.ts", &[]);
        run(&f, &h);
        assert_eq!(
            h.forwarded_header(":path"),
            Some(format!("/o/b.ts?__token__={tok}"))
        );
    }
}

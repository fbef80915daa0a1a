//! The per-request decision: category, name, score, verification, action.
//!
//! # Score (0 = certainly automated … 100 = certainly human)
//! - A user-agent matching a pattern starts from its category's score: declared bots (search
//!   engines, AI crawlers, SEO, monitors, feed readers, previews, archivers, ads) 10, unnamed bots
//!   10, HTTP libraries 5, headless browsers 3, scanners 0; apps 60; an empty user-agent 5; an
//!   unnamed user-agent that is neither a browser's nor an app's 20.
//! - A user-agent claiming a configured verified bot: from inside its ranges it keeps its score and
//!   is `verified`; from outside it is an `impersonator` with score 0.
//! - A browser's user-agent starts at 100 and loses 40 without `accept`, 30 without
//!   `accept-language`, 60 when the Chromium client hints (`sec-ch-ua`, `sec-ch-ua-platform`)
//!   contradict it (hints absent are fine: browsers send them on HTTPS only). Below
//!   `suspicious_below` (50) it is `suspicious`, named after the first anomaly found.
//! - A TLS fingerprint on the deny list scores 0 (a browser request becomes `suspicious`);
//!   one on the allow list skips the header anomalies.
//!
//! The action is that of the first policy rule whose conditions all hold (categories, verified,
//! score below), else `default_action`.

use std::net::IpAddr;

use crate::category::Category;
use crate::config::{Action, Config};
use crate::ua::UaClass;

/// The request attributes the decision reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct Signals<'a> {
    pub user_agent: Option<&'a [u8]>,
    pub accept: bool,
    pub accept_language: bool,
    pub sec_ch_ua: Option<&'a [u8]>,
    pub sec_ch_ua_platform: Option<&'a [u8]>,
    pub fingerprint: Option<&'a [u8]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'c> {
    pub category: Category,
    /// The bot's name, or why a request is suspicious; `None` for plain browsers.
    pub name: Option<&'c str>,
    pub score: u8,
    pub verified: bool,
    pub action: Action,
    /// For `block`: status and body.
    pub status: u32,
    pub body: &'c str,
}

/// Decides for one request. `client_ip` is called only when a verified bot is claimed.
pub fn decide<'c>(
    cfg: &'c Config,
    s: &Signals<'_>,
    client_ip: &dyn Fn() -> Option<IpAddr>,
) -> Verdict<'c> {
    let class = cfg.matcher.classify(s.user_agent.unwrap_or(b""));
    decide_with(cfg, s, class, client_ip)
}

/// [`decide`] with the user-agent already classified (e.g. through a [`crate::ua::UaCache`]).
pub fn decide_with<'c>(
    cfg: &'c Config,
    s: &Signals<'_>,
    class: UaClass<'c>,
    client_ip: &dyn Fn() -> Option<IpAddr>,
) -> Verdict<'c> {
    decide_polled(cfg, s, class, client_ip, &|_, _| false)
}

/// [`decide_with`], with the ranges polled at run time: `polled(i, ip)` says whether `ip` is in
/// the ranges last fetched for `verified_bots[i]` (on top of its configured ranges).
pub fn decide_polled<'c>(
    cfg: &'c Config,
    s: &Signals<'_>,
    class: UaClass<'c>,
    client_ip: &dyn Fn() -> Option<IpAddr>,
    polled: &dyn Fn(usize, IpAddr) -> bool,
) -> Verdict<'c> {
    let ua = s.user_agent.unwrap_or(b"");
    let (mut category, mut name, mut score): (Category, Option<&'c str>, u8) = match class {
        UaClass::Empty => (Category::UnknownBot, Some("empty user-agent"), 5),
        UaClass::Matched(c, n) => (c, Some(n), c.base_score()),
        UaClass::NotBrowser(why) => (Category::UnknownBot, Some(why), 20),
        UaClass::Browser => (Category::Human, None, 100),
    };
    let mut verified = false;
    if let Some((i, bot)) = cfg.verified_bots.iter().enumerate().find(|(_, b)| {
        b.user_agent_contains
            .iter()
            .any(|n| contains_ci(ua, n.as_bytes()))
    }) {
        match client_ip() {
            Some(ip) if bot.ranges.contains(ip) || polled(i, ip) => {
                verified = true;
                name = Some(&bot.name);
                if !category.is_bot() {
                    category = Category::SearchEngine;
                    score = category.base_score();
                }
            }
            _ => {
                category = Category::Impersonator;
                name = Some(&bot.name);
                score = 0;
            }
        }
    }
    let fp = match (&cfg.fingerprint, s.fingerprint) {
        (Some(f), Some(v)) if f.deny.contains(v) => Some(false),
        (Some(f), Some(v)) if f.allow.contains(v) => Some(true),
        _ => None,
    };
    if category == Category::Human && cfg.anomalies && fp != Some(true) {
        let mut first: Option<&'static str> = None;
        let mut penalise = |points: u8, why: &'static str| {
            score = score.saturating_sub(points);
            first.get_or_insert(why);
        };
        if !s.accept {
            penalise(40, "browser without accept");
        }
        if !s.accept_language {
            penalise(30, "browser without accept-language");
        }
        if hints_contradict(ua, s.sec_ch_ua, s.sec_ch_ua_platform) {
            penalise(60, "client hints contradict user-agent");
        }
        if score < cfg.suspicious_below {
            category = Category::Suspicious;
            name = first;
        }
    }
    if fp == Some(false) {
        score = 0;
        if category == Category::Human {
            category = Category::Suspicious;
            name = Some("denied TLS fingerprint");
        }
    }
    let rule = cfg.policy.iter().find(|r| {
        (r.categories.is_empty() || r.categories.contains(&category))
            && r.verified.is_none_or(|v| v == verified)
            && r.score_below.is_none_or(|b| score < b)
    });
    Verdict {
        category,
        name,
        score,
        verified,
        action: rule.map_or(cfg.default_action, |r| r.action),
        status: rule.and_then(|r| r.status).unwrap_or(cfg.block_status),
        body: rule
            .and_then(|r| r.body.as_deref())
            .unwrap_or(&cfg.block_body),
    }
}

/// ASCII case-insensitive substring test (`needle` lowercase).
pub fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && hay.len() >= needle.len()
        && hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Chromium's client hints against its user-agent: hints from a non-Chromium UA, a `Chromium`
/// brand version different from the UA's `Chrome/` major, or a platform other than the UA's.
pub fn hints_contradict(ua: &[u8], ch_ua: Option<&[u8]>, platform: Option<&[u8]>) -> bool {
    if ch_ua.is_none() && platform.is_none() {
        return false;
    }
    let chrome_major = find_after(ua, b"chrome/").map(|v| {
        v.iter()
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect::<Vec<u8>>()
    });
    let Some(major) = chrome_major.filter(|m| !m.is_empty()) else {
        // Firefox and Safari send no client hints: hints with such a UA are forged.
        return true;
    };
    if let Some(h) = ch_ua {
        // `"Chromium";v="124"`: the Chromium brand, when present, carries the engine version.
        if let Some(rest) = find_after(h, b"\"chromium\";v=\"") {
            let v: Vec<u8> = rest
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if v != major {
                return true;
            }
        }
    }
    if let Some(p) = platform {
        let p = p.trim_ascii();
        let p = p
            .strip_prefix(b"\"")
            .and_then(|x| x.strip_suffix(b"\""))
            .unwrap_or(p);
        let ua_platform: Option<&[u8]> = if contains_ci(ua, b"windows") {
            Some(b"windows")
        } else if contains_ci(ua, b"android") {
            Some(b"android")
        } else if contains_ci(ua, b"cros") {
            Some(b"chrome os")
        } else if contains_ci(ua, b"macintosh") {
            Some(b"macos")
        } else if contains_ci(ua, b"linux") {
            Some(b"linux")
        } else {
            None
        };
        if let Some(up) = ua_platform {
            if !p.eq_ignore_ascii_case(up) {
                return true;
            }
        }
    }
    false
}

fn find_after<'a>(hay: &'a [u8], needle: &[u8]) -> Option<&'a [u8]> {
    let n = needle.len();
    (0..hay.len().saturating_sub(n) + 1)
        .find(|&i| {
            hay.get(i..i + n)
                .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        })
        .and_then(|i| hay.get(i + n..))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const CHROME: &[u8] = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const GOOGLEBOT: &[u8] =
        b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

    fn cfg(json: &str) -> Config {
        Config::from_json(json.as_bytes()).unwrap()
    }

    fn browser(ua: &[u8]) -> Signals<'_> {
        Signals {
            user_agent: Some(ua),
            accept: true,
            accept_language: true,
            ..Default::default()
        }
    }

    const VERIFIED: &str = r#"{"verified_bots":[{"name":"Googlebot","user_agent_contains":["googlebot"],
        "ranges":{"creationTime":"2024-01-01","prefixes":[{"ipv4Prefix":"66.249.64.0/19"},{"ipv6Prefix":"2001:4860:4801::/48"}]}}]}"#;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn browsers_pass_and_default_policy_tags_bots_blocks_scanners() {
        let c = cfg("{}");
        let v = decide(&c, &browser(CHROME), &|| None);
        assert_eq!(
            (v.category, v.name, v.score, v.action),
            (Category::Human, None, 100, Action::Allow)
        );
        let v = decide(&c, &browser(b"curl/8.4.0"), &|| None);
        assert_eq!(
            (v.category, v.name, v.score, v.action),
            (Category::HttpLibrary, Some("curl"), 5, Action::Tag)
        );
        let v = decide(&c, &browser(b"sqlmap/1.7"), &|| None);
        assert_eq!(
            (v.category, v.action, v.status, v.body),
            (Category::Scanner, Action::Block, 403, "forbidden\n")
        );
        let v = decide(&c, &Signals::default(), &|| None);
        assert_eq!(
            (v.category, v.name, v.score),
            (Category::UnknownBot, Some("empty user-agent"), 5)
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn verified_bots_and_impersonators() {
        let c = cfg(VERIFIED);
        let inside = decide(&c, &browser(GOOGLEBOT), &|| "66.249.66.1".parse().ok());
        assert_eq!(
            (inside.category, inside.name, inside.verified, inside.action),
            (Category::SearchEngine, Some("Googlebot"), true, Action::Tag)
        );
        let v6 = decide(&c, &browser(GOOGLEBOT), &|| {
            "2001:4860:4801:2::1".parse().ok()
        });
        assert!(v6.verified);
        let outside = decide(&c, &browser(GOOGLEBOT), &|| "203.0.113.9".parse().ok());
        assert_eq!(
            (
                outside.category,
                outside.score,
                outside.verified,
                outside.action
            ),
            (Category::Impersonator, 0, false, Action::Block)
        );
        let unknown_ip = decide(&c, &browser(GOOGLEBOT), &|| None);
        assert_eq!(unknown_ip.category, Category::Impersonator);
        // The client address is only looked up for a claim.
        let v = decide(&c, &browser(CHROME), &|| panic!("looked up the client IP"));
        assert_eq!(v.category, Category::Human);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn header_anomalies() {
        let c = cfg("{}");
        let no_accept = Signals {
            accept: false,
            ..browser(CHROME)
        };
        assert_eq!(decide(&c, &no_accept, &|| None).score, 60);
        let bare = Signals {
            accept: false,
            accept_language: false,
            ..browser(CHROME)
        };
        let v = decide(&c, &bare, &|| None);
        assert_eq!(
            (v.category, v.name, v.score, v.action),
            (
                Category::Suspicious,
                Some("browser without accept"),
                30,
                Action::Tag
            )
        );
        let good_hints = Signals {
            sec_ch_ua: Some(
                br#""Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99""#,
            ),
            sec_ch_ua_platform: Some(br#""Windows""#),
            ..browser(CHROME)
        };
        assert_eq!(decide(&c, &good_hints, &|| None).score, 100);
        let wrong_version = Signals {
            sec_ch_ua: Some(br#""Chromium";v="99""#),
            ..browser(CHROME)
        };
        let v = decide(&c, &wrong_version, &|| None);
        assert_eq!(
            (v.category, v.name, v.score),
            (
                Category::Suspicious,
                Some("client hints contradict user-agent"),
                40
            )
        );
        let wrong_platform = Signals {
            sec_ch_ua_platform: Some(br#""macOS""#),
            ..browser(CHROME)
        };
        assert_eq!(decide(&c, &wrong_platform, &|| None).score, 40);
        let firefox = b"Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
        let forged = Signals {
            sec_ch_ua: Some(br#""Chromium";v="124""#),
            ..browser(firefox)
        };
        assert_eq!(decide(&c, &forged, &|| None).score, 40);
        let off = cfg(r#"{"anomalies":{"enabled":false}}"#);
        assert_eq!(decide(&off, &bare, &|| None).score, 100);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn fingerprints_and_custom_policy() {
        let c = cfg(
            r#"{"tls_fingerprint":{"header":"x-ja4","allow":["t13d1516h2_good"],"deny":["t13d_bad"]},
            "policy":[{"score_below":20,"action":"block","status":429,"body":"go away"},{"categories":["search_engine"],"action":"allow"}],
            "default_action":"tag"}"#,
        );
        let bare = Signals {
            accept: false,
            accept_language: false,
            fingerprint: Some(b"t13d1516h2_good"),
            ..browser(CHROME)
        };
        assert_eq!(
            decide(&c, &bare, &|| None).score,
            100,
            "allowed fingerprint skips anomalies"
        );
        let denied = Signals {
            fingerprint: Some(b"t13d_bad"),
            ..browser(CHROME)
        };
        let v = decide(&c, &denied, &|| None);
        assert_eq!(
            (v.category, v.name, v.score, v.action, v.status, v.body),
            (
                Category::Suspicious,
                Some("denied TLS fingerprint"),
                0,
                Action::Block,
                429,
                "go away"
            )
        );
        assert_eq!(
            decide(&c, &browser(GOOGLEBOT), &|| None).action,
            Action::Block,
            "score 10 < 20"
        );
        assert_eq!(
            decide(&c, &browser(CHROME), &|| None).action,
            Action::Tag,
            "default action"
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bad_configs_name_the_field() {
        let cases = [
            (
                r#"{"verified_bots":[{"name":"G","user_agent_contains":["g"],"ranges":{"prefixes":[{"ipv4Prefix":"66.249.64.0/33"}]}}]}"#,
                "verified_bots[0].ranges.prefixes[0].ipv4Prefix",
                "not a CIDR",
            ),
            (
                r#"{"verified_bots":[{"name":"G","user_agent_contains":["g"],"cidrs":["10.0.0.1/8"]}]}"#,
                "verified_bots[0].cidrs[0]",
                "host bits",
            ),
            (
                r#"{"patterns":[{"category":"seo","name":"x","regex":"(["}]}"#,
                "patterns[0].regex",
                "invalid regex",
            ),
            (
                r#"{"patterns":[{"category":"robots","name":"x","contains":"y"}]}"#,
                "patterns[0].category",
                "unknown variant `robots`",
            ),
            (
                r#"{"policy":[{"categories":["crawlers"],"action":"block"}]}"#,
                "policy[0].categories[0]",
                "unknown variant `crawlers`",
            ),
            (
                r#"{"policy":[{"action":"explode"}]}"#,
                "policy[0].action",
                "unknown variant `explode`",
            ),
            (
                r#"{"policy":[{"action":"tag","status":403}]}"#,
                "policy[0].status",
                "`block` only",
            ),
            (
                r#"{"headers":{"score":"bad header"}}"#,
                "headers.score",
                "not a header name",
            ),
            (
                r#"{"headers":{"category":"Cookie"}}"#,
                "headers.category",
                "must not write it",
            ),
            (
                r#"{"headers":{"verified":":path"}}"#,
                "headers.verified",
                "not a header name",
            ),
            (
                r#"{"headers":{"name":"authorization"}}"#,
                "headers.name",
                "must not write it",
            ),
            (
                r#"{"tls_fingerprint":{"allow":[]}}"#,
                "tls_fingerprint",
                "exactly one of",
            ),
            (r#"{"bogus":true}"#, "bogus", "unknown field"),
        ];
        for (json, field, msg) in cases {
            let e = Config::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.field, field, "{json}: {e}");
            assert!(e.message.contains(msg), "{json}: {e}");
        }
    }
}

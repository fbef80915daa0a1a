//! User-agent classification: one Aho-Corasick automaton over every needle (built-in data file and
//! user patterns), optional user regexes, built-in exclusions for real devices whose names contain
//! bot-like words, and a structural check of what a browser user-agent looks like.
//!
//! Order of precedence: a user allow-pattern (the UA is a browser, whatever else matches) → a user
//! pattern (regexes are ASCII case-insensitive, over bytes) → the longest built-in named pattern → a generic token (`bot`, `crawl`, a URL, ...) unless
//! a built-in exclusion matches → the browser-shape check → browser.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use edge_common::ConfigError;
use regex::bytes::RegexSet;

use crate::category::Category;

/// The built-in pattern data (see `data/user-agents.tsv`).
pub const BUILTIN: &str = include_str!("../data/user-agents.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A named bot (or app) pattern.
    Named,
    /// A generic token: lowest priority, cancelled by exclusions.
    Generic,
    /// A built-in exclusion (cancels generic tokens only).
    Exclusion,
    /// A user allow-pattern (the UA is treated as a browser).
    UserAllow,
    /// A user pattern (wins over built-in ones).
    User,
    /// Internal markers for the browser-shape check, found in the same pass.
    Marker(Marker),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Compatible,
    Msie,
    Windows,
}

const MARKERS: [(&str, Marker); 3] = [
    ("compatible;", Marker::Compatible),
    ("msie ", Marker::Msie),
    ("windows", Marker::Windows),
];

#[derive(Debug, Clone)]
struct Pattern {
    category: Category,
    name: String,
    kind: Kind,
    len: usize,
    /// A top-level domain needle (`.com`): it counts only where a domain stands, with a label
    /// right before the dot and no letter or digit right after (so `.NET CLR` is not one).
    domain: bool,
}

/// Whether the match `ua[start..end]` of a top-level domain needle ends a domain name.
fn is_domain_at(ua: &[u8], start: usize, end: usize) -> bool {
    let label = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let before = start
        .checked_sub(1)
        .and_then(|i| ua.get(i))
        .is_some_and(|&b| label(b));
    let after = ua.get(end).is_none_or(|&b| !label(b));
    before && after
}

/// A user pattern from the configuration.
#[derive(Debug, Clone)]
pub struct UserPattern {
    pub category: Category,
    pub name: String,
    pub contains: Option<String>,
    pub regex: Option<String>,
}

/// How a user-agent was classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UaClass<'a> {
    /// Missing or blank.
    Empty,
    /// Matched a pattern: its category and name.
    Matched(Category, &'a str),
    /// No pattern, and not shaped like a browser user-agent (why, in a word).
    NotBrowser(&'static str),
    /// Shaped like a browser user-agent (or a user allow-pattern matched).
    Browser,
}

/// A classification in a form that can be cached (no borrow of the matcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassKey {
    Empty,
    Pattern(u32),
    Regex(u32),
    NotBrowser(&'static str),
    Browser,
}

/// A per-worker cache of user-agent classifications: 1024 slots addressed by the UA's 64-bit
/// hash (a collision only means a recomputation). Real traffic repeats a few thousand UAs, so the
/// automaton runs once per UA rather than once per request.
#[derive(Debug, Clone)]
pub struct UaCache {
    /// (hash, class, the user-agent itself): a hit needs the same bytes, not only the same hash,
    /// so a user-agent crafted to collide with a cached browser's gets its own classification.
    slots: Vec<(u64, ClassKey, Box<[u8]>)>,
}

/// User-agents longer than this are classified every time rather than cached.
const CACHE_MAX_UA: usize = 512;

const CACHE_SLOTS: usize = 1024;

impl Default for UaCache {
    fn default() -> Self {
        Self {
            slots: vec![(0, ClassKey::Empty, Box::default()); CACHE_SLOTS],
        }
    }
}

pub struct UaMatcher {
    ac: AhoCorasick,
    patterns: Vec<Pattern>,
    regexes: Option<RegexSet>,
    regex_patterns: Vec<(Category, String)>,
}

impl std::fmt::Debug for UaMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "UaMatcher({} needles, {} regexes)",
            self.patterns.len(),
            self.regex_patterns.len()
        )
    }
}

/// Parses the built-in data file: `category<TAB>name<TAB>needle` lines, `#` comments.
fn builtin_rows() -> impl Iterator<Item = (&'static str, &'static str, &'static str)> {
    BUILTIN
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split('\t');
            Some((it.next()?, it.next()?, it.next()?))
        })
}

impl UaMatcher {
    /// Compiles the matcher. `builtin: false` drops the built-in data (user patterns only).
    pub fn new(builtin: bool, user: &[UserPattern], allow: &[String]) -> Result<Self, ConfigError> {
        let mut needles: Vec<String> = Vec::new();
        let mut patterns = Vec::new();
        for (needle, m) in MARKERS {
            needles.push(needle.to_string());
            patterns.push(Pattern {
                category: Category::Human,
                name: String::new(),
                kind: Kind::Marker(m),
                len: needle.len(),
                domain: false,
            });
        }
        if builtin {
            for (cat, name, needle) in builtin_rows() {
                let (category, kind) = match cat {
                    "allow" => (Category::Human, Kind::Exclusion),
                    "unknown_bot" => (Category::UnknownBot, Kind::Generic),
                    c => match Category::parse(c) {
                        Some(c) => (c, Kind::Named),
                        // A bad row in our own data file is a build defect; skip rather than fail.
                        None => continue,
                    },
                };
                needles.push(needle.to_ascii_lowercase());
                let domain = needle.strip_prefix('.').is_some_and(|tld| {
                    !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_alphabetic())
                });
                patterns.push(Pattern {
                    category,
                    name: name.to_string(),
                    kind,
                    len: needle.len(),
                    domain,
                });
            }
        }
        for (i, a) in allow.iter().enumerate() {
            if a.is_empty() {
                return Err(ConfigError::new(
                    format!("allow_patterns[{i}]"),
                    "must not be empty",
                ));
            }
            needles.push(a.to_ascii_lowercase());
            patterns.push(Pattern {
                category: Category::Human,
                name: a.clone(),
                kind: Kind::UserAllow,
                len: a.len(),
                domain: false,
            });
        }
        let mut regexes = Vec::new();
        let mut regex_patterns = Vec::new();
        for (i, p) in user.iter().enumerate() {
            match (&p.contains, &p.regex) {
                (Some(c), None) if !c.is_empty() => {
                    needles.push(c.to_ascii_lowercase());
                    patterns.push(Pattern {
                        category: p.category,
                        name: p.name.clone(),
                        kind: Kind::User,
                        len: c.len(),
                        domain: false,
                    });
                }
                (None, Some(r)) => {
                    // Validate each one alone, to name the one at fault.
                    regex::bytes::RegexBuilder::new(r)
                        .case_insensitive(true)
                        .unicode(false)
                        .size_limit(1 << 20)
                        .build()
                        .map_err(|e| {
                            ConfigError::new(
                                format!("patterns[{i}].regex"),
                                format!("invalid regex: {e}"),
                            )
                        })?;
                    regexes.push(r.clone());
                    regex_patterns.push((p.category, p.name.clone()));
                }
                _ => {
                    return Err(ConfigError::new(
                        format!("patterns[{i}]"),
                        "give exactly one of a non-empty `contains` or `regex`",
                    ))
                }
            }
        }
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            // A full DFA: about 3x faster per byte than the default NFA here, for a few hundred
            // KiB of memory per worker.
            .kind(Some(AhoCorasickKind::DFA))
            .build(&needles)
            .map_err(|e| ConfigError::new("patterns", format!("cannot build the matcher: {e}")))?;
        let regexes = if regexes.is_empty() {
            None
        } else {
            Some(
                regex::bytes::RegexSetBuilder::new(&regexes)
                    .case_insensitive(true)
                    .unicode(false)
                    .size_limit(4 << 20)
                    .build()
                    .map_err(|e| ConfigError::new("patterns", format!("invalid regex: {e}")))?,
            )
        };
        Ok(Self {
            ac,
            patterns,
            regexes,
            regex_patterns,
        })
    }

    /// Number of needles (built-in and user), not counting internal markers.
    pub fn len(&self) -> usize {
        self.patterns.len() - MARKERS.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Classifies a user-agent (bytes as sent; need not be UTF-8).
    pub fn classify(&self, ua: &[u8]) -> UaClass<'_> {
        self.resolve(self.classify_key(ua))
    }

    /// [`classify`](Self::classify) through a cache.
    pub fn classify_cached(&self, ua: &[u8], cache: &mut UaCache) -> UaClass<'_> {
        // Seeded so that hash 0 (an empty slot) is not what a real UA hashes to in practice.
        let h = edge_common::hash::hash64(0x75615f6361636865, ua) | 1;
        let i = (h as usize) % CACHE_SLOTS;
        if let Some((k, key, cached)) = cache.slots.get(i) {
            if *k == h && &cached[..] == ua {
                return self.resolve(*key);
            }
        }
        let key = self.classify_key(ua);
        if ua.len() <= CACHE_MAX_UA {
            if let Some(slot) = cache.slots.get_mut(i) {
                *slot = (h, key, ua.into());
            }
        }
        self.resolve(key)
    }

    pub fn resolve(&self, key: ClassKey) -> UaClass<'_> {
        match key {
            ClassKey::Empty => UaClass::Empty,
            ClassKey::Browser => UaClass::Browser,
            ClassKey::NotBrowser(why) => UaClass::NotBrowser(why),
            ClassKey::Pattern(i) => match self.patterns.get(i as usize) {
                Some(p) => UaClass::Matched(p.category, &p.name),
                None => UaClass::Browser,
            },
            ClassKey::Regex(i) => match self.regex_patterns.get(i as usize) {
                Some((c, n)) => UaClass::Matched(*c, n),
                None => UaClass::Browser,
            },
        }
    }

    fn classify_key(&self, ua: &[u8]) -> ClassKey {
        let ua = ua.trim_ascii();
        if ua.is_empty() {
            return ClassKey::Empty;
        }
        let mut user_allow = false;
        let mut exclusion = false;
        let mut user: Option<(usize, &Pattern)> = None;
        let mut named: Option<(usize, &Pattern)> = None;
        let mut generic: Option<(usize, &Pattern)> = None;
        let mut marks = Marks::default();
        for m in self.ac.find_overlapping_iter(ua) {
            let idx = m.pattern().as_usize();
            let Some(p) = self.patterns.get(idx) else {
                continue;
            };
            if p.domain && !is_domain_at(ua, m.start(), m.end()) {
                continue;
            }
            let slot = match p.kind {
                Kind::UserAllow => {
                    user_allow = true;
                    continue;
                }
                Kind::Exclusion => {
                    exclusion = true;
                    continue;
                }
                Kind::Marker(Marker::Compatible) => {
                    marks.compatible = true;
                    continue;
                }
                Kind::Marker(Marker::Msie) => {
                    marks.msie = true;
                    continue;
                }
                Kind::Marker(Marker::Windows) => {
                    marks.windows = true;
                    continue;
                }
                Kind::User => &mut user,
                Kind::Named => &mut named,
                Kind::Generic => &mut generic,
            };
            if slot.is_none_or(|(_, q)| p.len > q.len) {
                *slot = Some((idx, p));
            }
        }
        let key = |i: usize| ClassKey::Pattern(u32::try_from(i).unwrap_or(u32::MAX));
        if user_allow {
            return ClassKey::Browser;
        }
        if let Some((i, _)) = user {
            return key(i);
        }
        if let Some(set) = &self.regexes {
            if let Some(i) = set.matches(ua).iter().next() {
                return ClassKey::Regex(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        if let Some((i, _)) = named {
            return key(i);
        }
        if let (Some((i, _)), false) = (generic, exclusion) {
            return key(i);
        }
        match browser_shape(ua, marks) {
            Ok(()) => ClassKey::Browser,
            Err(why) => ClassKey::NotBrowser(why),
        }
    }
}

/// Markers seen in a user-agent (by the same automaton pass as the patterns).
#[derive(Debug, Default, Clone, Copy)]
pub struct Marks {
    pub compatible: bool,
    pub msie: bool,
    pub windows: bool,
}

/// Whether a user-agent has the shape of a browser's: `Mozilla/5.0 (...)` (or 4.0, or `Opera/`),
/// and no `compatible;` comment unless it is old Internet Explorer's.
pub fn browser_shape(ua: &[u8], m: Marks) -> Result<(), &'static str> {
    let starts = |p: &[u8]| ua.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    if !(starts(b"mozilla/5.0 (") || starts(b"mozilla/4.0 (") || starts(b"opera/")) {
        return Err("not a browser user-agent");
    }
    if m.compatible && !m.msie {
        return Err("compatible-style user-agent");
    }
    if m.msie && !m.windows {
        return Err("not a browser user-agent");
    }
    // Extra product tokens after the browser's own are NOT a bot signal: in-app browsers append
    // theirs (Instagram, BingSapphire, GrokApp, Lark, ...). Automation that does so is named by
    // the pattern data instead (Lighthouse, Synthetics, PTST, Selenium, ...).
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn m() -> UaMatcher {
        UaMatcher::new(true, &[], &[]).unwrap()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn domains_count_only_where_a_domain_stands() {
        assert!(is_domain_at(b"crawler example.com/bot", 15, 19));
        assert!(is_domain_at(b"x.net", 1, 5));
        assert!(!is_domain_at(b"; .NET CLR", 2, 6));
        assert!(!is_domain_at(b"a.NET4.0C", 1, 5));
        assert!(!is_domain_at(b"example.community", 7, 11));
        let m = m();
        assert_eq!(
            m.classify(b"Zorblax/1.0 (+ example.net)"),
            UaClass::Matched(Category::UnknownBot, "domain in user agent")
        );
    }

    const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn browsers_are_browsers() {
        let m = m();
        for ua in [
            CHROME,
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            "Mozilla/5.0 (Linux; Android 13; CUBOT KINGKONG 9) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 305.0.0.34.110 (iPhone14,2; iOS 17_1; en_US; en)",
            // `.NET CLR` and `.NET4.0C` product tokens are not domains.
            "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0; SLCC2; .NET CLR 2.0.50727; .NET CLR 3.5.30729; .NET4.0C; .NET4.0E)",
            "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; rv:11.0) like Gecko",
        ] {
            assert_eq!(m.classify(ua.as_bytes()), UaClass::Browser, "{ua}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn bots_are_named_and_categorised() {
        let m = m();
        let cases = [
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", Category::SearchEngine, "Googlebot"),
            ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", Category::AiCrawler, "GPTBot"),
            ("curl/8.5.0", Category::HttpLibrary, "curl"),
            ("python-requests/2.31.0", Category::HttpLibrary, "Python Requests"),
            ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/124.0.0.0 Safari/537.36", Category::Headless, "HeadlessChrome"),
            ("sqlmap/1.8#stable (https://sqlmap.org)", Category::Scanner, "sqlmap"),
            ("FooCrawler/1.0", Category::UnknownBot, "crawler token"),
            ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", Category::Seo, "AhrefsBot"),
            ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", Category::LinkPreview, "facebookexternalhit"),
        ];
        for (ua, cat, name) in cases {
            assert_eq!(
                m.classify(ua.as_bytes()),
                UaClass::Matched(cat, name),
                "{ua}"
            );
        }
        assert_eq!(m.classify(b"  "), UaClass::Empty);
        assert_eq!(
            m.classify(b"MyTool/2.0"),
            UaClass::NotBrowser("not a browser user-agent")
        );
        assert_eq!(
            m.classify(format!("{CHROME} Chrome-Lighthouse").as_bytes()),
            UaClass::Matched(Category::Seo, "Lighthouse")
        );
        // An in-app browser's extra product token is not a bot signal.
        assert_eq!(
            m.classify(format!("{CHROME} SomeApp/1.0").as_bytes()),
            UaClass::Browser
        );
        assert_eq!(
            m.classify(b"Mozilla/5.0 (compatible; SomeTool/1.0)"),
            UaClass::NotBrowser("compatible-style user-agent")
        );
        assert_eq!(
            m.classify(b"Dalvik/2.1.0 (Linux; U; Android 13)"),
            UaClass::Matched(Category::App, "Android app (Dalvik)")
        );
        assert_eq!(
            m.classify(&[0xff, 0xfe, b'b', b'o', b't']),
            UaClass::Matched(Category::UnknownBot, "bot token")
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn user_patterns_win_and_allow_patterns_clear() {
        let user = vec![
            UserPattern {
                category: Category::Monitor,
                name: "Our probe".into(),
                contains: Some("curl/8".into()),
                regex: None,
            },
            UserPattern {
                category: Category::Seo,
                name: "Regexed".into(),
                contains: None,
                regex: Some(r"^acme-[0-9]+$".into()),
            },
        ];
        let m = UaMatcher::new(true, &user, &["InternalApp/".into()]).unwrap();
        assert_eq!(
            m.classify(b"curl/8.1"),
            UaClass::Matched(Category::Monitor, "Our probe")
        );
        assert_eq!(
            m.classify(b"ACME-42"),
            UaClass::Matched(Category::Seo, "Regexed")
        );
        assert_eq!(m.classify(b"InternalApp/3 bot"), UaClass::Browser);
        let bad = vec![UserPattern {
            category: Category::Seo,
            name: "x".into(),
            contains: None,
            regex: Some("(".into()),
        }];
        let e = UaMatcher::new(true, &bad, &[]).unwrap_err();
        assert_eq!(e.field, "patterns[0].regex");
        let none = UaMatcher::new(false, &[], &[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(
            none.classify(b"curl/8"),
            UaClass::NotBrowser("not a browser user-agent")
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn cached_classification_equals_uncached() {
        let m = m();
        let mut cache = UaCache::default();
        let uas: Vec<String> = (0..3000)
            .map(|i| match i % 3 {
                0 => format!("{CHROME} x{i}"),
                1 => format!("FooBot/{i}"),
                _ => format!("curl/{i}"),
            })
            .collect();
        for _ in 0..2 {
            for ua in &uas {
                assert_eq!(
                    m.classify_cached(ua.as_bytes(), &mut cache),
                    m.classify(ua.as_bytes()),
                    "{ua}"
                );
            }
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn a_hash_collision_with_a_cached_browser_is_not_a_browser() {
        let m = m();
        let mut cache = UaCache::default();
        let bot = b"curl/8.5.0";
        // A slot holding a browser verdict under the bot's hash, as a crafted collision would.
        let h = edge_common::hash::hash64(0x75615f6361636865, bot) | 1;
        if let Some(slot) = cache.slots.get_mut((h as usize) % CACHE_SLOTS) {
            *slot = (h, ClassKey::Browser, CHROME.as_bytes().into());
        }
        assert_eq!(m.classify_cached(bot, &mut cache), m.classify(bot));
        assert_ne!(m.classify_cached(bot, &mut cache), UaClass::Browser);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn data_file_rows_are_all_valid() {
        for (cat, name, needle) in builtin_rows() {
            assert!(
                cat == "allow" || cat == "unknown_bot" || Category::parse(cat).is_some(),
                "bad category {cat}"
            );
            assert!(
                !name.is_empty() && !needle.is_empty() && needle.trim() == needle,
                "{name}: {needle:?}"
            );
        }
        assert!(builtin_rows().count() > 300);
    }
}

//! User-agent classification: one Aho-Corasick automaton over every needle (built-in data file and
//! user patterns), optional user regexes, built-in exclusions for real devices whose names contain
//! bot-like words, and what the user-agent says about the software that sent it.
//!
//! Needles match ASCII case-insensitively on token boundaries: a needle that starts with a letter
//! or digit does not match right after a letter or digit, and one that ends with a letter does not
//! match right before a letter (`php/` is not in `FirePHP/`, `netty` is not in `NetType`). A `*` at
//! either end of a built-in needle lifts that side's check (`semrush*` matches `SemrushBot`).
//!
//! Order of precedence:
//! 1. a user allow-pattern: the UA is a browser, whatever else matches;
//! 2. a user pattern (`contains`, then `regex`; regexes are ASCII case-insensitive, over bytes);
//! 3. a built-in named bot: the highest category priority wins ([`priority`]: a scanner over a
//!    crawler over the HTTP library it runs on), then the most specific (longest) needle; a
//!    link-preview name next to a phone's platform tokens (`Android/`, `Device/`) is the messaging
//!    app itself (`app`);
//! 4. a generic bot word (`…bot`, `crawl`, `spider`, ...) unless a built-in exclusion (a phone whose
//!    model has such a word) matches; in a UA with a browser engine it counts only as a product
//!    name (`FooBot/1.0`, `FooBot;`, `(FooBot)`), not as a word of a device model (`VR BOT 552`,
//!    or `ROBOT2` where an Android user-agent names its model);
//! 5. a contact address: `+http…` / `+www.` (the crawler convention) or an e-mail address;
//! 6. a `compatible;` comment whose first token is not a known browser or platform
//!    (`compatible; MSIE`, `compatible; Konqueror` are browsers; `compatible; Zorblax/1.0` is not),
//!    unless it is the user-agent's first comment and names a platform or browser later on (an old
//!    browser's or desktop app's form: `(compatible; Lotus-Notes/6.0; Windows-NT)`);
//! 7. evidence of who sent it: a browser engine or browser family (WebKit, Gecko, Trident, Presto,
//!    MSIE, UP.Browser, Obigo, NetFront, Opera Mini, UC Browser, MIDP/WAP browsers, text browsers)
//!    → a browser; otherwise a platform, device or app family (Android, iOS, Windows, a TV, a
//!    console, a media player, an in-app or desktop app) → `app`;
//! 8. none of that: not a browser's user-agent (an unnamed client: a script, a tool, a crawler).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use edge_common::ConfigError;
use regex::bytes::RegexSet;

use crate::category::Category;

/// The built-in pattern data (see `data/user-agents.tsv`).
pub const BUILTIN: &str = include_str!("../data/user-agents.tsv");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A named bot pattern.
    Named,
    /// A named app family (`app` rows): evidence of a user's device, with a name.
    App,
    /// A generic bot word: cancelled by exclusions, and checked in context.
    Generic,
    /// A contact address convention (`+http`): a bot, unnamed.
    Contact,
    /// A built-in exclusion (cancels generic words only).
    Exclusion,
    /// Evidence of a browser engine or browser family.
    Browser,
    /// Evidence of a platform, device or app family.
    Device,
    /// A user allow-pattern (the UA is treated as a browser).
    UserAllow,
    /// A user pattern (wins over built-in ones).
    User,
    /// Internal markers, found in the same pass.
    Marker(Marker),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Compatible,
    Msie,
    At,
    Url,
    /// A messaging app's own platform tokens (`Android/7.0`, `iPhone_OS/4.3`, `Device/Model`).
    AppPlatform,
    /// A Java ME phone's profile (`Profile/MIDP-2.0`, `Configuration/CLDC-1.1`).
    J2me,
}

const MARKERS: [(&str, Marker); 12] = [
    ("compatible", Marker::Compatible),
    ("msie ", Marker::Msie),
    ("@", Marker::At),
    ("(at)", Marker::At),
    ("[at]", Marker::At),
    ("http://", Marker::Url),
    ("https://", Marker::Url),
    ("device/", Marker::AppPlatform),
    ("android/", Marker::AppPlatform),
    ("iphone_os/", Marker::AppPlatform),
    ("profile/midp", Marker::J2me),
    ("configuration/cldc", Marker::J2me),
];

/// The priority of a named category when several match one user-agent: the more specific
/// purpose wins over the tool it is built with (LinkedInBot over the `Apache-HttpClient` it runs
/// on; a scanner over the crawler it pretends to be; Lighthouse over the headless Chrome it drives).
pub fn priority(c: Category) -> u8 {
    match c {
        Category::Scanner => 12,
        Category::AiCrawler => 11,
        Category::SearchEngine => 10,
        Category::Advertising => 9,
        Category::LinkPreview => 8,
        Category::Seo => 7,
        Category::Monitor => 6,
        Category::Archiver => 5,
        Category::FeedReader => 4,
        Category::Headless => 3,
        Category::HttpLibrary => 2,
        _ => 1,
    }
}

#[derive(Debug, Clone)]
struct Pattern {
    category: Category,
    name: String,
    kind: Kind,
    len: usize,
    /// The byte before a match must not be a letter or digit.
    left: bool,
    /// The byte after a match must not be a letter.
    right: bool,
    /// A top-level domain needle (`.com`): it counts only where a domain stands, with a label
    /// right before the dot and no letter or digit right after (so `.NET CLR` is not one).
    domain: bool,
}

impl Pattern {
    fn new(category: Category, name: &str, kind: Kind, needle: &str) -> (String, Self) {
        let open_left = needle.starts_with('*');
        let open_right = needle.len() > 1 && needle.ends_with('*');
        let n = needle.trim_start_matches('*').trim_end_matches('*');
        let first = n.bytes().next().unwrap_or(b' ');
        let last = n.bytes().last().unwrap_or(b' ');
        let domain = n
            .strip_prefix('.')
            .is_some_and(|tld| !tld.is_empty() && tld.bytes().all(|b| b.is_ascii_alphabetic()));
        let p = Pattern {
            category,
            name: name.to_string(),
            kind,
            len: n.len(),
            left: !open_left && first.is_ascii_alphanumeric(),
            right: !open_right && last.is_ascii_alphabetic(),
            domain,
        };
        (n.to_ascii_lowercase(), p)
    }

    /// Whether the match `ua[start..end]` stands on the token boundaries this needle asks for.
    fn bounded(&self, ua: &[u8], start: usize, end: usize) -> bool {
        if self.domain {
            return is_domain_at(ua, start, end);
        }
        let before = start.checked_sub(1).and_then(|i| ua.get(i));
        if self.left && before.is_some_and(|b| b.is_ascii_alphanumeric()) {
            return false;
        }
        !(self.right && ua.get(end).is_some_and(|b| b.is_ascii_alphabetic()))
    }
}

/// Whether the match `ua[start..end]` of a top-level domain needle ends a domain name.
fn is_domain_at(ua: &[u8], start: usize, end: usize) -> bool {
    let label = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    let head = ua.get(..start).unwrap_or_default();
    let name_len = head
        .iter()
        .rev()
        .take_while(|&&b| label(b) || b == b'.')
        .count();
    let name = head
        .get(head.len().saturating_sub(name_len)..)
        .unwrap_or_default();
    // The name before the top-level label has a letter: `4.3.1.11264.US` ends a version number
    // with a region, it is not a domain. Only the label right before the top-level one may be
    // all digits (`163.com`): `Version.5.8.25.XT861.ACG.en.US` is a build string.
    let mut labels = name.split(|&b| b == b'.').rev().skip(1);
    let before = name.last().is_some_and(|&b| label(b))
        && name.iter().any(u8::is_ascii_alphabetic)
        && !labels.any(|l| !l.is_empty() && l.iter().all(u8::is_ascii_digit));
    // Not followed by a label character, nor by a dot and another label: `jp.co.yahoo.app` is
    // an app id written backwards, not a domain ending in `.co`.
    let after = match ua.get(end) {
        None => true,
        Some(b'.') => ua
            .get(end.saturating_add(1))
            .is_none_or(|&b| !b.is_ascii_alphanumeric()),
        Some(&b) => !label(b),
    };
    before && after
}

/// Whether the domain whose top-level label starts at `tld` is the proxy a request came through,
/// as old proxies appended it to the user-agent (`Opera/7.50 (...) via HTTP/1.0 proxy.example.org/`),
/// not the home of the client that sent it.
fn names_a_proxy(ua: &[u8], tld: usize) -> bool {
    let head = ua.get(..tld).unwrap_or_default();
    let host = head
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        .count();
    let before = head
        .get(..head.len().saturating_sub(host))
        .unwrap_or_default();
    let via = b"via http/1.";
    before.len() > via.len().saturating_add(1)
        && before.ends_with(b" ")
        && before
            .get(before.len().saturating_sub(via.len().saturating_add(2))..)
            .and_then(|t| t.get(..via.len()))
            .is_some_and(|t| t.eq_ignore_ascii_case(via))
}

/// Whether the `@` at `at` is that of an e-mail address: a local part right before it, and a
/// domain after it (labels, a dot, and an alphabetic top-level label of 2+ letters).
fn is_email_at(ua: &[u8], at: usize, marker_len: usize) -> bool {
    let local = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+');
    if !at.checked_sub(1).and_then(|i| ua.get(i)).is_some_and(local) {
        return false;
    }
    let rest = ua.get(at.saturating_add(marker_len)..).unwrap_or_default();
    let host_len = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
        .count();
    let host = rest.get(..host_len).unwrap_or_default();
    let mut labels = host.split(|&b| b == b'.');
    let first_ok = labels.next().is_some_and(|l| !l.is_empty());
    let tld = host.rsplit(|&b| b == b'.').next().unwrap_or_default();
    first_ok
        && host.contains(&b'.')
        && tld.len() >= 2
        && tld.iter().all(|b| b.is_ascii_alphabetic())
}

/// Whether `ua[at..]` (a `compatible` marker) starts an item of a comment: right after `(` or
/// `;` (spaces aside).
fn opens_comment_item(ua: &[u8], at: usize) -> bool {
    ua.get(..at)
        .unwrap_or_default()
        .iter()
        .rev()
        .find(|b| **b != b' ')
        .is_some_and(|b| *b == b'(' || *b == b';')
}

/// How many `(` / `[` comments are open at `at`.
fn depth_at(ua: &[u8], at: usize) -> i32 {
    ua.get(..at)
        .unwrap_or_default()
        .iter()
        .fold(0i32, |d, b| match b {
            b'(' | b'[' => d.saturating_add(1),
            b')' | b']' => d.saturating_sub(1).max(0),
            _ => d,
        })
}

/// Whether a generic bot word matched at `ua[start..end]` names a product rather than a word of a
/// device model: the word it is part of ends in `/` (a product token), `;`, `)`, `,`, `:`, `+`,
/// `@`, or the end of the user-agent.
fn names_a_product(ua: &[u8], end: usize) -> bool {
    let rest = ua.get(end..).unwrap_or_default();
    let word = rest
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        .count();
    let after = rest.get(word..).unwrap_or_default();
    match after.first() {
        None => true,
        Some(b) => {
            matches!(b, b'/' | b';' | b')' | b',' | b':' | b'+' | b'@')
                // A product token in front of the browser's: `FooBot Mozilla/5.0 (...)`.
                || after
                    .get(..9)
                    .is_some_and(|t| t.eq_ignore_ascii_case(b" mozilla/"))
                || after.starts_with(b" (")
        }
    }
}

/// Whether `compatible` (ending at `end`) is in the user-agent's first comment and that comment
/// names a platform or a browser after it: an old browser's or a desktop app's form
/// (`Mozilla/4.0 (compatible; Lotus-Notes/6.0; Windows-NT)`, `(compatible; Mozilla 4; Linux;
/// Maxthon)`), not a crawler's (`(compatible; Zorblax/1.0; +https://...)`), nor a tool's comment
/// after a browser's user-agent (`(KHTML, like Gecko; compatible; Zorblax)`).
fn platform_in_first_comment(ua: &[u8], end: usize, s: &Seen) -> bool {
    let head = ua.get(..end).unwrap_or_default();
    let Some(open) = head.iter().rposition(|&b| b == b'(') else {
        return false;
    };
    if head.iter().position(|&b| b == b'(') != Some(open) {
        return false;
    }
    let rest = ua.get(end..).unwrap_or_default();
    let close = end.saturating_add(rest.iter().position(|&b| b == b')').unwrap_or(rest.len()));
    s.starts
        .iter()
        .take(s.n_starts)
        .any(|&st| st > end && st < close)
}

/// Whether a generic bot word at `ua[start..end]` stands where an Android browser's user-agent
/// names the device model: in its first comment, after `Android`, and not as a product token
/// (`(Linux; Android 8.1.0; ROBOT2)`, `(Linux; U; Android 4.0.4; en-us; Crawler Build/IMM76D)`).
fn is_android_model(ua: &[u8], start: usize, end: usize) -> bool {
    let head = ua.get(..start).unwrap_or_default();
    let Some(open) = head.iter().position(|&b| b == b'(') else {
        return false;
    };
    let comment = head.get(open..).unwrap_or_default();
    let product = ua
        .get(end..)
        .unwrap_or_default()
        .iter()
        .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
        .is_some_and(|&b| b == b'/');
    !product
        && !comment.contains(&b')')
        && comment
            .windows(7)
            .any(|w| w.eq_ignore_ascii_case(b"android"))
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
    /// No pattern, and not a browser's or an app's user-agent (why, in a few words).
    NotBrowser(&'static str),
    /// A browser's user-agent (or a user allow-pattern matched).
    Browser,
}

/// A classification in a form that can be cached (no borrow of the matcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassKey {
    Empty,
    Pattern(u32),
    Regex(u32),
    NotBrowser(&'static str),
    /// An app's user-agent, known by its platform or device rather than by name.
    App,
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

/// The kind and category of a built-in row's first column.
fn row_kind(cat: &str) -> Option<(Category, Kind)> {
    Some(match cat {
        "allow" => (Category::Human, Kind::Exclusion),
        "browser" => (Category::Human, Kind::Browser),
        "device" => (Category::App, Kind::Device),
        "contact" => (Category::UnknownBot, Kind::Contact),
        "unknown_bot" => (Category::UnknownBot, Kind::Generic),
        "app" => (Category::App, Kind::App),
        c => (Category::parse(c)?, Kind::Named),
    })
}

/// Where evidence matches start, for the `compatible;` check (a handful is enough: the check
/// looks for one at a single position).
const STARTS: usize = 24;

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
                left: matches!(m, Marker::Compatible | Marker::AppPlatform | Marker::J2me),
                right: m == Marker::Compatible,
                domain: false,
            });
        }
        if builtin {
            for (cat, name, needle) in builtin_rows() {
                // A bad row in our own data file is a build defect (a test checks every row);
                // skip rather than fail.
                let Some((category, kind)) = row_kind(cat) else {
                    continue;
                };
                let (n, p) = Pattern::new(category, name, kind, needle);
                needles.push(n);
                patterns.push(p);
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
                left: false,
                right: false,
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
                        left: false,
                        right: false,
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
            // A contiguous NFA: with ~1,700 needles a full DFA is about twice as fast per
            // user-agent (0.6 against 1.3 µs natively) but takes 6.5 MiB per worker and 4x the
            // start-up time, against 0.4 MiB here. Requests mostly hit the per-worker cache.
            .kind(Some(AhoCorasickKind::ContiguousNFA))
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

    /// Heap bytes of the automaton (per worker).
    pub fn memory_usage(&self) -> usize {
        self.ac.memory_usage()
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
            ClassKey::App => UaClass::Matched(Category::App, "app"),
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
        let mut s = Seen::default();
        for m in self.ac.find_overlapping_iter(ua) {
            let idx = m.pattern().as_usize();
            let Some(p) = self.patterns.get(idx) else {
                continue;
            };
            if !p.bounded(ua, m.start(), m.end()) {
                continue;
            }
            match p.kind {
                Kind::UserAllow => return ClassKey::Browser,
                Kind::Exclusion => s.exclusion = true,
                // Only as an item of a comment: `(compatible; ...)`, `(KHTML, like Gecko;
                // compatible; ...)`, not `(...; Android 2.3 Compatible)`.
                Kind::Marker(Marker::Compatible) if opens_comment_item(ua, m.start()) => {
                    s.compatible.get_or_insert(m.end());
                }
                Kind::Marker(Marker::Compatible) => {}
                Kind::Marker(Marker::Msie) => s.msie = true,
                Kind::Marker(Marker::At) => {
                    s.email |= is_email_at(ua, m.start(), m.len());
                }
                Kind::Marker(Marker::Url) => s.url = true,
                Kind::Marker(Marker::AppPlatform) => s.app_platform = true,
                Kind::Marker(Marker::J2me) => s.j2me = true,
                Kind::Contact => s.contact = true,
                Kind::Browser | Kind::Device => {
                    if p.kind == Kind::Browser {
                        s.browser = true;
                    } else {
                        s.device = true;
                    }
                    if let Some(slot) = s.starts.get_mut(s.n_starts) {
                        *slot = m.start();
                        s.n_starts += 1;
                    }
                }
                Kind::User => best(&mut s.user, idx, p, 0),
                Kind::Named => best(&mut s.named, idx, p, priority(p.category)),
                Kind::App => {
                    s.device = true;
                    best(&mut s.app, idx, p, 0);
                }
                Kind::Generic if p.domain && names_a_proxy(ua, m.start()) => {}
                Kind::Generic if p.domain => {
                    s.domain = true;
                    s.bare_domain |= depth_at(ua, m.start()) == 0;
                }
                Kind::Generic => {
                    if s.generic.is_none() {
                        s.generic = Some((idx, m.start(), m.end()));
                    } else if s.generic_product.is_none()
                        && names_a_product(ua, m.end())
                        && !is_android_model(ua, m.start(), m.end())
                    {
                        s.generic_product = Some(idx);
                    }
                }
            }
        }
        let key = |i: usize| ClassKey::Pattern(u32::try_from(i).unwrap_or(u32::MAX));
        if let Some((i, _, _)) = s.user {
            return key(i);
        }
        if let Some(set) = &self.regexes {
            if let Some(i) = set.matches(ua).iter().next() {
                return ClassKey::Regex(u32::try_from(i).unwrap_or(u32::MAX));
            }
        }
        if let Some((i, _, p)) = s.named {
            // A link-preview fetcher states no device: `WhatsApp/2.23.20.0 A` fetches previews,
            // `WhatsApp/2.17.427 Android/7.0 Device/motorola-Moto_C_Plus` is the app on a phone.
            if p.category == Category::LinkPreview && s.app_platform {
                return ClassKey::App;
            }
            // A Java ME phone names its own Java VM (`Java/ASVM/1.1`, `Java/SEMC-Java/2.0`): it is
            // not the Java HTTP library of a script.
            if !(p.category == Category::HttpLibrary && s.j2me) {
                return key(i);
            }
        }
        if let (Some((i, start, end)), false) = (s.generic, s.exclusion) {
            // In a UA with a browser engine, a bot word counts only where it names a product.
            if !s.browser || (names_a_product(ua, end) && !is_android_model(ua, start, end)) {
                return key(i);
            }
            if let Some(j) = s.generic_product {
                return key(j);
            }
        }
        if s.contact {
            return ClassKey::NotBrowser("contact URL in user agent");
        }
        if s.email {
            return ClassKey::NotBrowser("e-mail address in user agent");
        }
        if let (Some(end), false) = (s.compatible, s.msie) {
            // `compatible;` then the first token: a browser or a platform, or a declared product.
            let rest = ua.get(end..).unwrap_or_default();
            let skip = rest
                .iter()
                .take_while(|b| matches!(b, b';' | b' ' | b','))
                .count();
            let at = end.saturating_add(skip);
            let known = s.starts.iter().take(s.n_starts).any(|&st| st == at)
                || ua.get(at..at.saturating_add(2)).is_some_and(|t| {
                    // `compatible; U;` (the old security token) is followed by the browser.
                    t.eq_ignore_ascii_case(b"u;")
                });
            if !known && !platform_in_first_comment(ua, end, &s) {
                return ClassKey::NotBrowser("compatible-style user-agent");
            }
        }
        if s.browser {
            // A browser's user-agent names no web address, except old Internet Explorer's with a
            // toolbar's; a domain name inside a comment is a carrier or an app id, outside one
            // it is a bot's home (`Chrome/120 Safari/537.36 SiteMonitor.com`).
            if s.url && !s.msie {
                return ClassKey::NotBrowser("URL in user agent");
            }
            if s.bare_domain {
                return ClassKey::NotBrowser("domain in user agent");
            }
            return ClassKey::Browser;
        }
        if let Some((i, _, _)) = s.app {
            return key(i);
        }
        if s.device {
            return ClassKey::App;
        }
        if s.url {
            ClassKey::NotBrowser("URL in user agent")
        } else if s.domain {
            ClassKey::NotBrowser("domain in user agent")
        } else {
            ClassKey::NotBrowser("not a browser user-agent")
        }
    }
}

/// Keeps the better of two matches: higher category priority, then the longer needle.
fn best<'p>(slot: &mut Option<(usize, u8, &'p Pattern)>, idx: usize, p: &'p Pattern, prio: u8) {
    if slot.is_none_or(|(_, q_prio, q)| (prio, p.len) > (q_prio, q.len)) {
        *slot = Some((idx, prio, p));
    }
}

/// What one automaton pass saw in a user-agent.
#[derive(Default)]
struct Seen<'p> {
    user: Option<(usize, u8, &'p Pattern)>,
    named: Option<(usize, u8, &'p Pattern)>,
    app: Option<(usize, u8, &'p Pattern)>,
    /// The first generic word (pattern, start and end of match).
    generic: Option<(usize, usize, usize)>,
    /// A later generic word that names a product.
    generic_product: Option<usize>,
    exclusion: bool,
    contact: bool,
    email: bool,
    url: bool,
    domain: bool,
    /// A domain name outside any comment (`(...)`, `[...]`).
    bare_domain: bool,
    /// End of the `compatible` marker.
    compatible: Option<usize>,
    msie: bool,
    /// A messaging app's platform tokens (see [`Marker::AppPlatform`]).
    app_platform: bool,
    /// A Java ME profile (see [`Marker::J2me`]).
    j2me: bool,
    browser: bool,
    device: bool,
    starts: [usize; STARTS],
    n_starts: usize,
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
        assert!(!is_domain_at(b"Browser/4.3.1.11264.US", 19, 22));
        assert!(is_domain_at(b"x 360x.cn", 6, 9));
        // Only the label right before the top-level one may be all digits.
        assert!(is_domain_at(b"(www.163.com)", 8, 12));
        assert!(!is_domain_at(
            b"Blur_Version.5.8.25.XT861.ACG.en.US",
            32,
            35
        ));
        let m = m();
        assert!(is_domain_at(b"Foo example.co/x", 11, 14));
        // An app id written backwards is not a domain.
        assert!(!is_domain_at(b"jp.co.yahoo.android", 2, 5));
        assert_eq!(
            m.classify(b"Zorblax/1.0 (example.net)"),
            UaClass::NotBrowser("domain in user agent")
        );
        // In a browser's user-agent: outside a comment it is a bot's home, inside one it is not.
        assert_eq!(
            m.classify(format!("{CHROME} SiteWatch.io").as_bytes()),
            UaClass::NotBrowser("domain in user agent")
        );
        assert_eq!(
            m.classify(format!("{CHROME} [FBAN/FBIOS;FBCR/Vodafone.de]").as_bytes()),
            UaClass::Browser
        );
        // The proxy an old browser's request came through.
        assert_eq!(
            m.classify(b"Opera/7.50 (Macintosh; U; PPC Mac OS X 10.3.3; en-US) via HTTP/1.0 proxy.example.org/"),
            UaClass::Browser
        );
        assert_eq!(
            m.classify(
                b"Mozilla/2.0 (compatible; MSIE 3.0; Windows 95) via HTTP/1.1 cache-2.example.net/"
            ),
            UaClass::Browser
        );
        assert_eq!(
            m.classify(format!("{CHROME} via example.org").as_bytes()),
            UaClass::NotBrowser("domain in user agent")
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn needles_match_on_token_boundaries() {
        let m = m();
        for ua in [
            // `php/` inside `FirePHP/`, `netty` inside `NetType`, `ruby`/`tornado` as phone models.
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:109.0) Gecko/20100101 Firefox/115.0 FirePHP/0.7.4",
            "Mozilla/5.0 (Linux; Android 12; V2111 Build/SP1A.210812.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/86.0.4240.99 XWEB/4317 MMWEBSDK/20220903 Mobile Safari/537.36 MMWEBID/4260 MicroMessenger/8.0.28.2240(0x28001C57) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64",
            "Mozilla/5.0 (Linux; Android 7.0; S710 Ruby) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/85.0.4183.81 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 7.0; Tornado 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/106.0.5249.126 Safari/537.36",
            // A bot word in a device model is not a product name.
            "Mozilla/5.0 (Linux; Android 6.0; VR BOT 552 PLUS) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0.3904.96 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; Android 7.1.1; M_bot_tab_1150 Build/N9F27F) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/67.0.3396.87 Safari/537.36",
            "Mozilla/5.0 (Linux; Android 8.1.0; ROBOT2) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.110 Mobile Safari/537.36",
            "Mozilla/5.0 (Linux; U; Android 4.0.4; en-us; Crawler Build/IMM76D) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
            // `Compatible` that does not open a comment item.
            "Mozilla/5.0 (Linux; U; Android 2.3 Compatible) AppleWebKit/533.1 (KHTML, like Gecko) Version/4.0 Mobile Safari/533.1",
            "Mozilla/5.0 (compatible; Konqueror/3.5; Linux) KHTML/3.5.5 (like Gecko) (Kubuntu)",
            // Old and odd browsers.
            "Nokia2700c-2/2.0 (07.15) Profile/MIDP-2.1 Configuration/CLDC-1.1",
            "UCWEB/2.0 (MIDP-2.0; U; Adr 9; ru; POCOPHONE_F1) U2/1.0.0 UCBrowser/11.1.2.1113 U2/1.0.0 Mobile",
            "Opera/9.80 (J2ME/MIDP; Opera Mini/4.2.14912/870; U; id) Presto/2.4.15",
            "BlackBerry8520/5.0.0.681 Profile/MIDP-2.1 Configuration/CLDC-1.1 VendorID/600",
            "Lynx/2.8.9rel.1 libwww-FM/2.14 SSL-MM/1.4.1 OpenSSL/1.1.1d",
            // Netscape and the old Windows browsers, with `compatible;` before their names.
            "Netscape/7.2",
            "Mozilla/5.0 (compatible; Netscape6/6.2.1; Macintosh; en-US)",
            "Mozilla/4.0 (compatible; Netscape 7.0; Windows 98)",
            "Mozilla/1.0 (compatible; Crazy Browser 1.0.1; FreeBSD 3.2-RELEASE i386)",
        ] {
            assert_eq!(m.classify(ua.as_bytes()), UaClass::Browser, "{ua}");
        }
        for ua in [
            "Spotify/8.7.70 iOS/16.0 (iPhone15,3)",
            "Microsoft Office Excel/16.43.1108 (Mac OS/12.7.6; Desktop; es-MX; NonAppStore; Apple/MacPro6,1)",
            "VLC/3.0.18 LibVLC/3.0.18",
            "Windows-Media-Player/12.0.19041.1",
            "Roku/DVP-9.10 (519.10E04111A)",
            // A mail client, and an Amiga browser's scripting host.
            "Mozilla/4.0 (compatible; Lotus-Notes/6.0; Windows-NT)",
            "Mozilla/4.0 (compatible; ARexx; AmigaOS)",
            // A desktop app in the old `compatible;` form, with its platform in the comment.
            "Mozilla/4.0 (compatible; SuperCleaner 2.81; Windows NT 5.1)",
        ] {
            assert_eq!(
                m.classify(ua.as_bytes()),
                UaClass::Matched(Category::App, "app"),
                "{ua}"
            );
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn unnamed_bots_by_their_shape() {
        let m = m();
        let cases: [(&str, &str); 8] = [
            ("Mozilla/5.0 (compatible; Zorblax/2.0)", "compatible-style user-agent"),
            ("Mozilla/5.0 (compatible)", "compatible-style user-agent"),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko; compatible; Zorblax/1.0) Chrome/120.0.0.0 Safari/537.36",
                "compatible-style user-agent",
            ),
            ("Zorblax/1.0 (+https://zorblax.example/about)", "contact URL in user agent"),
            ("Zorblax/1.0 (ops@zorblax.example)", "e-mail address in user agent"),
            ("Zorblax/1.0 (ops(at)zorblax.de)", "e-mail address in user agent"),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 (https://zorblax.example/)",
                "URL in user agent",
            ),
            ("Zorblax/1.0", "not a browser user-agent"),
        ];
        for (ua, why) in cases {
            assert_eq!(m.classify(ua.as_bytes()), UaClass::NotBrowser(why), "{ua}");
        }
        // A product token in front of a browser's, and one in a comment.
        assert_eq!(
            m.classify(format!("Zorblax Bot {CHROME}").as_bytes()),
            UaClass::Matched(Category::UnknownBot, "bot token")
        );
        assert_eq!(
            m.classify(b"Mozilla/5.0 zorbot (Windows NT 10.0; Win64; x64; rv:90.0) Gecko/20100101 Firefox/118.0"),
            UaClass::Matched(Category::UnknownBot, "bot token")
        );
        // A product token where an Android user-agent names its model.
        assert_eq!(
            m.classify(b"Mozilla/5.0 (Linux; Android 8.1.0; ZorBot/1.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/70.0.3538.110 Mobile Safari/537.36"),
            UaClass::Matched(Category::UnknownBot, "bot token")
        );
        // Old Internet Explorer with a toolbar's URL is a browser.
        assert_eq!(
            m.classify(b"Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 5.1; http://www.example.com/toolbar)"),
            UaClass::Browser
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn category_priority_then_specificity() {
        let m = m();
        let cases = [
            // The service, not the HTTP library it runs on.
            ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", Category::LinkPreview, "LinkedInBot"),
            ("Scrapy/2.11.0 (+https://scrapy.org)", Category::HttpLibrary, "Scrapy"),
            // One category per crawler, whatever the form.
            ("CCBot/2.0 (https://commoncrawl.org/faq/)", Category::AiCrawler, "CCBot"),
            ("Mozilla/5.0 (compatible; CCBot/2.0; +http://commoncrawl.org/faq/)", Category::AiCrawler, "CCBot"),
        ];
        for (ua, cat, name) in cases {
            assert_eq!(
                m.classify(ua.as_bytes()),
                UaClass::Matched(cat, name),
                "{ua}"
            );
        }
        assert!(priority(Category::LinkPreview) > priority(Category::HttpLibrary));
        assert!(priority(Category::Scanner) > priority(Category::SearchEngine));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn a_messaging_app_on_a_phone_is_not_its_preview_fetcher() {
        let m = m();
        for ua in [
            "WhatsApp/2.23.20.0 A",
            "WhatsApp/2.21.12.21 i",
            "TelegramBot (like TwitterBot)",
        ] {
            assert!(
                matches!(
                    m.classify(ua.as_bytes()),
                    UaClass::Matched(Category::LinkPreview, _)
                ),
                "{ua}"
            );
        }
        for ua in [
            "WhatsApp/2.17.427 Android/7.0 Device/motorola-Moto_C_Plus",
            "WhatsApp/2.6.4 iPhone_OS/4.3.3 Device/iPhone_4",
        ] {
            assert_eq!(
                m.classify(ua.as_bytes()),
                UaClass::Matched(Category::App, "app"),
                "{ua}"
            );
        }
        // Only a link-preview match yields to the platform tokens: a crawler keeps its name.
        assert!(matches!(
            m.classify(b"Googlebot/2.1 Android/7.0 Device/x"),
            UaClass::Matched(Category::SearchEngine, _)
        ));
        // `Device/` counts only as a token of its own, not inside a word.
        assert!(matches!(
            m.classify(b"WhatsApp/2.23.20.0 A XDevice/1"),
            UaClass::Matched(Category::LinkPreview, _)
        ));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn a_java_me_phone_is_not_the_java_http_library() {
        let m = m();
        for ua in [
            "LG-BL20f Browser/Obigo-Q7.3 MMS/LG-MMS-V1.0/1.2 Java/ASVM/1.1 Profile/MIDP-2.1 Configuration/CLDC-1.1",
            "SonyEricssonW666i/R2BA Java/SEMC-Java/2.0 Profile/MIDP-2.0 Configuration/CLDC-1.1 UNTRUSTED/1.0",
            "HuaweiU3200/B000 Browser/NetFront/3.5 Java/HWJa/2.0 Profile/MIDP-2.0 Configuration/CLDC-1.1",
        ] {
            assert!(
                matches!(
                    m.classify(ua.as_bytes()),
                    UaClass::Browser | UaClass::Matched(Category::App, _)
                ),
                "{ua}"
            );
        }
        // The library itself, and a crawler on a phone's profile, keep their names.
        for (ua, category) in [
            ("Java/1.8.0_151", Category::HttpLibrary),
            ("Java/17.0.2", Category::HttpLibrary),
            (
                "Nokia6230/2.0 Profile/MIDP-2.0 Configuration/CLDC-1.1 (compatible; Googlebot-Mobile/2.1)",
                Category::SearchEngine,
            ),
        ] {
            assert!(
                matches!(m.classify(ua.as_bytes()), UaClass::Matched(c, _) if c == category),
                "{ua}"
            );
        }
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
            // A command-line tool on macOS: an executable with no app bundle has no version.
            ("node (unknown version) CFNetwork/1220.1 Darwin/20.3.0", Category::HttpLibrary, "CFNetwork command-line tool"),
            // QtWebKit's headless tools (PhantomJS, wkhtmltopdf and their kin) on a server name no
            // platform; TVs with the same engine run on ARM.
            ("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) Zorblax/1.0 Safari/538.1", Category::Headless, "QtWebKit headless (Unknown platform)"),
            // A tool's token after a full browser user-agent.
            ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/132.0.0.0 Safari/537.36 SecurityHeaders", Category::Scanner, "SecurityHeaders"),
            ("Mozilla/5.0 (compatible; MSIE 7.0; Windows NT 5.1; .NET CLR 1.1.4322) 360JK yunjiankong 12345", Category::Monitor, "360 Monitoring"),
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
            UaClass::Matched(Category::Monitor, "Lighthouse")
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
            assert!(row_kind(cat).is_some(), "bad kind {cat}");
            assert!(
                !name.is_empty() && !needle.is_empty() && needle.trim() == needle,
                "{name}: {needle:?}"
            );
        }
        assert!(builtin_rows().count() > 300);
    }
}

//! One canonical form of a request path, for every prefix, exact and regex match and every token
//! scope check of every filter.
//!
//! Origins and proxies read a path in many ways: `//a` as `/a`, `/x/../a` as `/a`, `%61` as `a`,
//! `%2F` and `\` as `/` (many application servers), `/a;jsessionid=1/b` as `/a/b` (Java servlet
//! containers), `/A` as `/a` (case-insensitive file systems). A filter that matched the raw bytes
//! would let every such spelling of a protected path through unchecked. So filters match the
//! canonical form built here, which reads the path the widest way any common origin does:
//!
//! - The query (from the first `?`) is not part of the path.
//! - Percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; every other escape
//!   is kept, with upper-case hex digits (RFC 3986 section 6.2.2).
//! - `%2F`, `%5C` and a raw `\` are path separators.
//! - `;` (raw or `%3B`) starts path parameters, which are removed up to the end of their segment:
//!   `/a;x=1/b` reads as `/a/b`, and `/..;/` as `/../`.
//! - Empty segments are merged (`//` is `/`), then the dot segments `.` and `..` are removed
//!   (RFC 3986 section 5.2.4; a `..` above the root stays at the root).
//! - A byte outside ASCII is percent-encoded, as RFC 3987 maps an IRI to a URI.
//!
//! Some paths cannot be read one way safely, and are [`PathError`]s: a path that does not start
//! with `/` (only `*` is allowed, for `OPTIONS *`), a malformed escape (`%zz`), an encoded NUL or
//! control character, a raw control character or `#`, a double encoding (`%25` followed by two
//! hex digits, which an origin that decodes twice reads as another character), and an overlong
//! UTF-8 sequence (`%C0%AF`, which a lenient decoder reads as `/`).
//!
//! Case is kept: [`PathMatcher`] folds ASCII case itself when told to.

use std::borrow::Cow;

use crate::ConfigError;

/// Why a path has no safe canonical form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Empty, or not starting with `/` (other than `*`).
    NotAbsolute,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// `%00`.
    EncodedNul,
    /// An encoded control character (`%01`..`%1F`, `%7F`), or a raw one.
    ControlCharacter,
    /// A raw `#`: a fragment, which clients never send.
    Fragment,
    /// `%25` followed by two hex digits.
    DoubleEncoding,
    /// An overlong UTF-8 encoding (`%C0%AF` for `/`), which lenient decoders read as ASCII.
    OverlongUtf8,
}

impl PathError {
    /// A short code for responses, logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "not_absolute",
            PathError::BadEscape => "bad_escape",
            PathError::EncodedNul => "encoded_nul",
            PathError::ControlCharacter => "control_character",
            PathError::Fragment => "fragment",
            PathError::DoubleEncoding => "double_encoding",
            PathError::OverlongUtf8 => "overlong_utf8",
        }
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether a path (without query) is already canonical, checked in one pass without allocating:
/// the common case on the request path.
fn is_plain(p: &[u8]) -> bool {
    if p.first() != Some(&b'/') {
        return false;
    }
    let mut prev_slash = false;
    let mut i = 0;
    while let Some(&b) = p.get(i) {
        match b {
            b'/' => {
                if prev_slash {
                    return false;
                }
                prev_slash = true;
                i += 1;
                continue;
            }
            b'.' if prev_slash => {
                // `/.` or `/..` as a whole segment.
                let next = p.get(i + 1).copied();
                let seg_end = |j: usize| matches!(p.get(j), None | Some(b'/'));
                if seg_end(i + 1) || (next == Some(b'.') && seg_end(i + 2)) {
                    return false;
                }
            }
            b'%' | b'\\' | b';' | b'#' | b'?' => return false,
            b if !(0x20..0x7f).contains(&b) => return false,
            _ => {}
        }
        prev_slash = false;
        i += 1;
    }
    true
}

/// The canonical form of `path`, which may carry a query (it is dropped). Borrowed when the
/// path already is canonical.
pub fn canonical_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    let p = path.split_once('?').map_or(path, |(p, _)| p);
    if is_plain(p.as_bytes()) {
        return Ok(Cow::Borrowed(p));
    }
    if p == "*" {
        return Ok(Cow::Borrowed(p));
    }
    let bytes = p.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Pass 1: decode into `flat`, where `/` is a separator and `;` starts parameters.
    let mut flat: Vec<u8> = Vec::with_capacity(bytes.len() + 8);
    // The previous byte decoded from an escape (for overlong UTF-8 sequences).
    let mut prev_escaped: Option<u8> = None;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex_value);
                let lo = bytes.get(i + 2).copied().and_then(hex_value);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                let v = (hi << 4) | lo;
                let overlong = matches!(v, 0xC0 | 0xC1)
                    || matches!(
                        (prev_escaped, v),
                        (Some(0xE0), 0x80..=0x9F) | (Some(0xF0), 0x80..=0x8F)
                    );
                if overlong {
                    return Err(PathError::OverlongUtf8);
                }
                prev_escaped = Some(v);
                match v {
                    0 => return Err(PathError::EncodedNul),
                    0x01..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    b'/' | b'\\' => flat.push(b'/'),
                    b';' => flat.push(b';'),
                    v if is_unreserved(v) => flat.push(v),
                    v => flat.extend_from_slice(&[
                        b'%',
                        HEX[usize::from(v >> 4)],
                        HEX[usize::from(v & 0xf)],
                    ]),
                }
                i += 3;
                continue;
            }
            b'\\' => flat.push(b'/'),
            b'#' => return Err(PathError::Fragment),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlCharacter),
            b if b >= 0x80 => {
                flat.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]])
            }
            b => flat.push(b),
        }
        prev_escaped = None;
        i += 1;
    }
    // Pass 2: segments without parameters, dot segments resolved.
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for raw in flat.split(|&b| b == b'/').skip(1) {
        let seg = raw.split(|&b| b == b';').next().unwrap_or(&[]);
        match seg {
            b"" => trailing_slash = true,
            b"." => trailing_slash = true,
            b".." => {
                segments.pop();
                trailing_slash = true;
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(flat.len());
    for s in &segments {
        out.push('/');
        // Every byte of `flat` is ASCII: non-ASCII bytes were percent-encoded above.
        out.extend(s.iter().map(|&b| char::from(b)));
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    // A `%25` the origin may decode twice into another character.
    let ob = out.as_bytes();
    let double = ob.windows(5).any(|w| {
        matches!(w, [b'%', b'2', b'5', a, b] if hex_value(*a).is_some() && hex_value(*b).is_some())
    });
    if double {
        return Err(PathError::DoubleEncoding);
    }
    Ok(Cow::Owned(out))
}

/// How a filter treats a request whose path is not canonical under one of its path conditions,
/// and how it compares letters (the `paths` section of a filter's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PathPolicy {
    /// `reject` (400, the default) or `forward_canonical` (rewrite `:path` to the canonical form
    /// that was checked, query kept).
    #[serde(default)]
    pub non_canonical: NonCanonical,
    /// Compare path prefixes and exact paths case-sensitively. Off by default: `/API/x` is under
    /// `/api/`, because many origins fold case.
    #[serde(default)]
    pub case_sensitive: bool,
}

impl Default for PathPolicy {
    fn default() -> Self {
        PathPolicy {
            non_canonical: NonCanonical::Reject,
            case_sensitive: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NonCanonical {
    #[default]
    Reject,
    ForwardCanonical,
}

/// A request's path as the filters check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestPath<'a> {
    /// The canonical form (without query). Equal to the raw path when `raw_is_canonical`.
    Ok {
        canonical: Cow<'a, str>,
        raw_is_canonical: bool,
    },
    Unsafe(PathError),
}

impl<'a> RequestPath<'a> {
    /// Reads `:path` (query included, which is ignored).
    pub fn new(path: &'a str) -> Self {
        match canonical_path(path) {
            Ok(c) => {
                let raw = path.split_once('?').map_or(path, |(p, _)| p);
                RequestPath::Ok {
                    raw_is_canonical: c == raw,
                    canonical: c,
                }
            }
            Err(e) => RequestPath::Unsafe(e),
        }
    }

    /// The canonical path, or `""` for an unsafe one (which matches no `/` prefix).
    pub fn canonical(&self) -> &str {
        match self {
            RequestPath::Ok { canonical, .. } => canonical,
            RequestPath::Unsafe(_) => "",
        }
    }
}

/// The canonical path with the raw query appended: what is forwarded upstream under
/// `forward_canonical`.
pub fn with_query(canonical: &str, raw_path: &str) -> String {
    match raw_path.split_once('?') {
        Some((_, q)) => format!("{canonical}?{q}"),
        None => canonical.to_string(),
    }
}

/// Checks that a configured prefix or exact path is canonical (so it can match at all), naming
/// `field` and the canonical spelling otherwise.
pub fn check_config_path(field: &str, p: &str) -> Result<(), ConfigError> {
    if !p.starts_with('/') {
        return Err(ConfigError::new(
            field,
            format!("`{p}` must start with `/`"),
        ));
    }
    match canonical_path(p) {
        Ok(c) if c == p && !p.contains('?') => Ok(()),
        Ok(c) => Err(ConfigError::new(
            field,
            format!("`{p}` is not a canonical path; write `{c}`"),
        )),
        Err(e) => Err(ConfigError::new(
            field,
            format!("`{p}` is not a valid path ({e})"),
        )),
    }
}

/// Whether `path` starts with `prefix`, folding ASCII case unless `case_sensitive`.
pub fn has_prefix(path: &str, prefix: &str, case_sensitive: bool) -> bool {
    match path.as_bytes().get(..prefix.len()) {
        Some(head) if case_sensitive => head == prefix.as_bytes(),
        Some(head) => head.eq_ignore_ascii_case(prefix.as_bytes()),
        None => false,
    }
}

/// Whether `path` equals `exact`, folding ASCII case unless `case_sensitive`.
pub fn is_exact(path: &str, exact: &str, case_sensitive: bool) -> bool {
    if case_sensitive {
        path == exact
    } else {
        path.eq_ignore_ascii_case(exact)
    }
}

/// The verdict on a request's path against a filter's path conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathVerdict {
    /// Match against this path (the canonical one).
    Check,
    /// Refuse with 400: the path is unsafe, or not canonical under a path condition and the
    /// policy rejects such paths. The code says which.
    Reject(&'static str),
    /// Match against the canonical path and forward it (query kept) in place of the raw one.
    Rewrite(String),
}

/// Decides what to do with a request path, given whether its canonical or its raw form falls
/// under one of the filter's path conditions (`covered`).
pub fn verdict(
    req: &RequestPath<'_>,
    raw: &str,
    policy: PathPolicy,
    covered: impl Fn(&str) -> bool,
) -> PathVerdict {
    match req {
        RequestPath::Unsafe(e) => PathVerdict::Reject(e.code()),
        RequestPath::Ok {
            raw_is_canonical: true,
            ..
        } => PathVerdict::Check,
        RequestPath::Ok { canonical, .. } => {
            let raw_path = raw.split_once('?').map_or(raw, |(p, _)| p);
            if !covered(canonical) && !covered(raw_path) {
                return PathVerdict::Check;
            }
            match policy.non_canonical {
                NonCanonical::Reject => PathVerdict::Reject("non_canonical_path"),
                NonCanonical::ForwardCanonical => PathVerdict::Rewrite(with_query(canonical, raw)),
            }
        }
    }
}

/// The JSON body of the 400 for a path refused with `code`.
pub fn reject_body(code: &str) -> String {
    format!("{{\"error\":\"bad_path\",\"reason\":\"{code}\"}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn c(p: &str) -> Result<String, PathError> {
        canonical_path(p).map(Cow::into_owned)
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn canonical_forms() {
        for (raw, want) in [
            ("/media/a.mp4", "/media/a.mp4"),
            ("/media/a.mp4?x=1", "/media/a.mp4"),
            ("//media/a.mp4", "/media/a.mp4"),
            ("/./media/a.mp4", "/media/a.mp4"),
            ("/x/../media/a.mp4", "/media/a.mp4"),
            ("/%6Dedia/a.mp4", "/media/a.mp4"),
            ("/%6dedia/a.mp4", "/media/a.mp4"),
            ("/videos/a/../b/x", "/videos/b/x"),
            ("/a/%2e%2E/b", "/b"),
            ("/a%2Fb", "/a/b"),
            ("/a%2fb", "/a/b"),
            ("/a%5Cb", "/a/b"),
            ("/a\\b", "/a/b"),
            ("/api;x=1/y", "/api/y"),
            ("/api%3Bx/y", "/api/y"),
            ("/x/..;/api/y", "/api/y"),
            ("/;/api", "/api"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/../../a", "/a"),
            ("/", "/"),
            ("/a/", "/a/"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/%E0%A4%85", "/%E0%A4%85"),
            ("/%25zz", "/%25zz"),
            ("*", "*"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a..b/.c", "/a..b/.c"),
        ] {
            assert_eq!(c(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn unsafe_paths() {
        for (raw, want) in [
            ("", PathError::NotAbsolute),
            ("a/b", PathError::NotAbsolute),
            ("http://h/a", PathError::NotAbsolute),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%", PathError::BadEscape),
            ("/a%00b", PathError::EncodedNul),
            ("/a%0Ab", PathError::ControlCharacter),
            ("/a%7f", PathError::ControlCharacter),
            ("/a\u{1}b", PathError::ControlCharacter),
            ("/a#b", PathError::Fragment),
            ("/%2561pi", PathError::DoubleEncoding),
            ("/%25%34%31", PathError::DoubleEncoding),
            ("/a%c0%afb", PathError::OverlongUtf8),
            ("/a%C1%9C", PathError::OverlongUtf8),
            ("/a%E0%80%AF", PathError::OverlongUtf8),
            ("/a%F0%80%80%AF", PathError::OverlongUtf8),
        ] {
            assert_eq!(c(raw), Err(want), "{raw:?}");
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn plain_paths_are_borrowed() {
        for p in ["/", "/a/b.c", "/a/b/", "/.well-known/x", "/a..b", "/-_~"] {
            assert!(
                matches!(canonical_path(p), Ok(Cow::Borrowed(x)) if x == p),
                "{p}"
            );
        }
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn verdicts() {
        let under_api = |p: &str| has_prefix(p, "/api/", false);
        let pol = PathPolicy::default();
        let v = |raw: &str, pol| verdict(&RequestPath::new(raw), raw, pol, under_api);
        assert_eq!(v("/api/x", pol), PathVerdict::Check);
        assert_eq!(v("//static/x", pol), PathVerdict::Check);
        assert_eq!(
            v("//api/x?q=1", pol),
            PathVerdict::Reject("non_canonical_path")
        );
        assert_eq!(
            v("/%61pi/x", pol),
            PathVerdict::Reject("non_canonical_path")
        );
        // The raw form is under the prefix, the canonical one is not: still refused.
        assert_eq!(
            v("/api/../static", pol),
            PathVerdict::Reject("non_canonical_path")
        );
        assert_eq!(v("/static/%00", pol), PathVerdict::Reject("encoded_nul"));
        let fwd = PathPolicy {
            non_canonical: NonCanonical::ForwardCanonical,
            ..pol
        };
        assert_eq!(
            v("//api/./x?q=1", fwd),
            PathVerdict::Rewrite("/api/x?q=1".into())
        );
        assert!(has_prefix("/API/x", "/api/", false));
        assert!(!has_prefix("/API/x", "/api/", true));
        assert!(!has_prefix("/ap", "/api/", false));
        assert!(is_exact("/Login", "/login", false));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn config_paths_must_be_canonical() {
        assert!(check_config_path("f", "/api/").is_ok());
        assert_eq!(
            check_config_path("f", "api").unwrap_err().to_string(),
            "invalid configuration: f: `api` must start with `/`"
        );
        assert_eq!(
            check_config_path("f", "//api").unwrap_err().to_string(),
            "invalid configuration: f: `//api` is not a canonical path; write `/api`"
        );
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod props {
    use super::*;
    use proptest::prelude::*;

    fn path_strategy() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just("//".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just(";".to_string()),
            Just("\\".to_string()),
            Just("%2F".to_string()),
            Just("%2e".to_string()),
            Just("%25".to_string()),
            Just("%3B".to_string()),
            "%[0-9a-fA-F]{2}",
            "[a-zA-Z0-9_~-]{1,4}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..16).prop_map(|v| format!("/{}", v.concat()))
    }

    proptest! {
        #[test]
        fn canonical_is_idempotent(p in path_strategy()) {
            if let Ok(c) = canonical_path(&p) {
                let again = canonical_path(&c);
                prop_assert_eq!(again.as_deref(), Ok(c.as_ref()));
                prop_assert!(c.starts_with('/'));
                prop_assert!(!c.contains("//"));
                prop_assert!(!c.contains(';'));
                prop_assert!(!c.contains('\\'));
            }
        }

        #[test]
        fn never_panics(s in any::<String>()) {
            let _ = canonical_path(&s);
            let _ = RequestPath::new(&s);
        }
    }
}

//! Akamai EdgeAuth token 2.0 (the scheme of Akamai's EdgeAuth-Token-* reference libraries).
//!
//! A token is `~`-joined fields in this order: `ip=`, `st=`, `exp=`, `acl=` (ACL tokens only),
//! `id=`, `data=`, then `hmac=`. The HMAC (SHA-256 by default, SHA-1 or MD5) with the hex-decoded
//! key is taken over the fields before `hmac=` as they appear in the token, followed for URL
//! tokens by `url=<path>` and then, with a salt, by `salt=<salt>`; it is written as lowercase hex.
//! With `escape_early`, `ip`, `id`, `data` and the URL are percent-encoded as Python's
//! `quote_plus` does (lowercase hex digits) before signing.

use hmac::Hmac;

use super::{check_time, ct_eq, mac, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha256,
    Sha1,
    Md5,
}

impl Algorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sha256" => Some(Self::Sha256),
            "sha1" => Some(Self::Sha1),
            "md5" => Some(Self::Md5),
            _ => None,
        }
    }
}

/// Decodes a hex key (`None` for odd length or a non-hex digit).
pub fn decode_hex_key(hex: &str) -> Option<Vec<u8>> {
    let b = hex.as_bytes();
    if !b.len().is_multiple_of(2) || b.is_empty() {
        return None;
    }
    let d = |c: u8| (c as char).to_digit(16);
    b.chunks_exact(2)
        .map(|p| match p {
            [hi, lo] => Some((d(*hi)? * 16 + d(*lo)?) as u8),
            _ => None,
        })
        .collect()
}

/// What is wrong with a hex key that [`decode_hex_key`] refuses, for the config error line.
pub fn hex_key_problem(hex: &str) -> String {
    if hex.is_empty() {
        return "must not be empty".into();
    }
    if let Some(c) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
        return format!("`{hex}` is not hex: `{c}` is not a hex digit (0-9, a-f)");
    }
    format!(
        "`{hex}` has an odd number of hex digits ({}); a key is whole bytes",
        hex.len()
    )
}

/// HMAC of `msg` as lowercase hex.
pub fn hmac_hex(key: &[u8], alg: Algorithm, msg: &[u8]) -> String {
    let raw = match alg {
        Algorithm::Sha256 => mac::<Hmac<sha2::Sha256>>(key, msg),
        Algorithm::Sha1 => mac::<Hmac<sha1::Sha1>>(key, msg),
        Algorithm::Md5 => mac::<Hmac<md5::Md5>>(key, msg),
    };
    let mut out = String::with_capacity(raw.len() * 2);
    for b in raw {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Python's `quote_plus(text)` with the `%XX` hex digits lowercased (the reference's
/// `escape_early`): unreserved bytes `A-Za-z0-9_.-~` kept, space as `+`, the rest `%xx`.
pub fn escape_early(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for &b in text.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
                out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
            }
        }
    }
    out
}

/// What a token is minted for.
#[derive(Debug, Clone, Default)]
pub struct TokenSpec<'a> {
    pub ip: Option<&'a str>,
    pub start: Option<u64>,
    pub exp: u64,
    /// ACL token: the `!`-joined ACL. Exactly one of `acl` and `url`.
    pub acl: Option<&'a str>,
    /// URL token: the URL path signed (not written into the token).
    pub url: Option<&'a str>,
    pub id: Option<&'a str>,
    pub data: Option<&'a str>,
    pub salt: Option<&'a str>,
    pub escape_early: bool,
}

/// Mints a token exactly as the reference implementation does.
pub fn generate(key: &[u8], alg: Algorithm, s: &TokenSpec<'_>) -> String {
    let esc = |v: &str| {
        if s.escape_early {
            escape_early(v)
        } else {
            v.to_string()
        }
    };
    let mut fields: Vec<String> = Vec::new();
    if let Some(ip) = s.ip {
        fields.push(format!("ip={}", esc(ip)));
    }
    if let Some(st) = s.start {
        fields.push(format!("st={st}"));
    }
    fields.push(format!("exp={}", s.exp));
    if let Some(acl) = s.acl {
        fields.push(format!("acl={acl}"));
    }
    if let Some(id) = s.id {
        fields.push(format!("id={}", esc(id)));
    }
    if let Some(data) = s.data {
        fields.push(format!("data={}", esc(data)));
    }
    let mut source = fields.join("~");
    if let (None, Some(url)) = (s.acl, s.url) {
        source.push_str("~url=");
        source.push_str(&esc(url));
    }
    if let Some(salt) = s.salt {
        source.push_str("~salt=");
        source.push_str(salt);
    }
    let mac = hmac_hex(key, alg, source.as_bytes());
    fields.push(format!("hmac={mac}"));
    fields.join("~")
}

/// The parts of a received token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<'a> {
    /// Everything before `~hmac=`, exactly as received (the signed fields).
    pub signed: &'a str,
    pub hmac: &'a str,
    pub ip: Option<&'a str>,
    pub start: Option<u64>,
    pub exp: u64,
    pub acl: Option<&'a str>,
}

/// Parses a token; `hmac` must be the last field and `exp` present.
pub fn parse(token: &str) -> Result<Token<'_>, Refusal> {
    if token.is_empty() {
        return Err(Refusal::Missing);
    }
    let (signed, hmac) = match token.rsplit_once("~hmac=") {
        Some(p) => p,
        None => match token.strip_prefix("hmac=") {
            Some(h) => ("", h),
            None => return Err(Refusal::Malformed),
        },
    };
    if hmac.is_empty() || !hmac.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::Malformed);
    }
    let mut t = Token {
        signed,
        hmac,
        ip: None,
        start: None,
        exp: 0,
        acl: None,
    };
    let mut have_exp = false;
    for field in signed.split('~') {
        let (k, v) = field.split_once('=').ok_or(Refusal::Malformed)?;
        match k {
            "ip" => t.ip = Some(v),
            "st" => t.start = Some(v.parse().map_err(|_| Refusal::Malformed)?),
            "exp" => {
                t.exp = v.parse().map_err(|_| Refusal::Malformed)?;
                have_exp = true;
            }
            "acl" => t.acl = Some(v),
            "id" | "data" => {}
            _ => return Err(Refusal::Malformed),
        }
    }
    if !have_exp {
        return Err(Refusal::Malformed);
    }
    Ok(t)
}

/// The request a token is checked against.
#[derive(Clone, Copy)]
pub struct Check<'a> {
    /// The request path (without the token parameter), for ACLs and URL tokens.
    pub path: &'a str,
    /// The client address, looked up only for tokens bound to an `ip`.
    pub client_ip: &'a dyn Fn() -> Option<String>,
    pub now: u64,
    pub leeway: u64,
    pub salt: Option<&'a str>,
    pub escape_early: bool,
    /// This exact ACL token's signature was verified before (see `SignatureCache`): skip the
    /// HMAC. Expiry, IP and ACL are still checked on every request.
    pub signature_known: bool,
}

/// Verifies a token against any of `keys` (rotation: each is tried; constant-time compare).
pub fn verify(token: &str, keys: &[(Vec<u8>, Algorithm)], c: &Check<'_>) -> Result<(), Refusal> {
    let t = parse(token)?;
    // An ACL token this worker verified already: the HMAC is not computed again.
    let good = (c.signature_known && t.acl.is_some()) || signed_by_any(&t, keys, c);
    if !good {
        return Err(Refusal::BadSignature);
    }
    check_time(c.now, t.start, t.exp, c.leeway)?;
    if let Some(ip) = t.ip {
        // Tokens minted with escape_early carry the escaped form.
        let same = (c.client_ip)().is_some_and(|cl| ip == cl || ip == escape_early(&cl));
        if !same {
            return Err(Refusal::WrongScope);
        }
    }
    if let Some(acl) = t.acl {
        if !acl
            .split('!')
            .any(|pattern| glob(pattern.as_bytes(), c.path.as_bytes()))
        {
            return Err(Refusal::WrongScope);
        }
    }
    Ok(())
}

/// Whether the token's HMAC is right under any of `keys` (constant-time compare).
fn signed_by_any(t: &Token<'_>, keys: &[(Vec<u8>, Algorithm)], c: &Check<'_>) -> bool {
    let mut source = t.signed.to_string();
    if t.acl.is_none() {
        source.push_str(if source.is_empty() { "url=" } else { "~url=" });
        if c.escape_early {
            source.push_str(&escape_early(c.path));
        } else {
            source.push_str(c.path);
        }
    }
    if let Some(salt) = c.salt {
        source.push_str("~salt=");
        source.push_str(salt);
    }
    let received = t.hmac.to_ascii_lowercase();
    keys.iter().any(|(k, alg)| {
        ct_eq(
            hmac_hex(k, *alg, source.as_bytes()).as_bytes(),
            received.as_bytes(),
        )
    })
}

/// `*` matches any run of bytes (`/` included), `?` any one byte; everything else literally.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some(p);
                mark = t;
                p += 1;
            }
            Some(&c) if c == b'?' || Some(&c) == text.get(t) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some(s) => {
                    p = s + 1;
                    mark += 1;
                    t = mark;
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const KEY: &str = "52a152a152a152a152a152a152a1";

    fn key() -> Vec<u8> {
        decode_hex_key(KEY).unwrap()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn acl_token_round_trip_and_tampering() {
        let spec = TokenSpec {
            start: Some(1_700_000_000),
            exp: 1_700_003_600,
            acl: Some("/videos/*!/images/*"),
            ..Default::default()
        };
        let tok = generate(&key(), Algorithm::Sha256, &spec);
        assert!(
            tok.starts_with("st=1700000000~exp=1700003600~acl=/videos/*!/images/*~hmac="),
            "{tok}"
        );
        let keys = vec![(key(), Algorithm::Sha256)];
        let c = Check {
            path: "/videos/a/b.mp4",
            client_ip: &|| None,
            now: 1_700_000_100,
            leeway: 0,
            salt: None,
            escape_early: false,
            signature_known: false,
        };
        assert_eq!(verify(&tok, &keys, &c), Ok(()));
        assert_eq!(
            verify(
                &tok,
                &keys,
                &Check {
                    path: "/private/x",
                    ..c
                }
            ),
            Err(Refusal::WrongScope)
        );
        assert_eq!(
            verify(
                &tok,
                &keys,
                &Check {
                    now: 1_700_003_600,
                    ..c
                }
            ),
            Err(Refusal::Expired)
        );
        assert_eq!(
            verify(
                &tok,
                &keys,
                &Check {
                    now: 1_699_999_000,
                    ..c
                }
            ),
            Err(Refusal::NotYetValid)
        );
        let tampered = tok.replace("exp=1700003600", "exp=1700009999");
        assert_eq!(verify(&tampered, &keys, &c), Err(Refusal::BadSignature));
        assert_eq!(verify("exp=1~acl=/x", &keys, &c), Err(Refusal::Malformed));
        assert_eq!(verify("", &keys, &c), Err(Refusal::Missing));
        // Rotation: an old key still in the list verifies; a wrong algorithm does not.
        let rotated = vec![
            (decode_hex_key("00ff").unwrap(), Algorithm::Sha256),
            (key(), Algorithm::Sha256),
        ];
        assert_eq!(verify(&tok, &rotated, &c), Ok(()));
        assert_eq!(
            verify(&tok, &[(key(), Algorithm::Sha1)], &c),
            Err(Refusal::BadSignature)
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn url_token_signs_the_path_without_writing_it() {
        let spec = TokenSpec {
            exp: 2_000_000_000,
            url: Some("/a b/c.mp4"),
            ip: Some("192.0.2.1"),
            salt: Some("pepper"),
            escape_early: true,
            ..Default::default()
        };
        let tok = generate(&key(), Algorithm::Md5, &spec);
        assert!(
            tok.starts_with("ip=192.0.2.1~exp=2000000000~hmac="),
            "{tok}"
        );
        let keys = vec![(key(), Algorithm::Md5)];
        let c = Check {
            path: "/a b/c.mp4",
            client_ip: &|| Some("192.0.2.1".into()),
            now: 1_900_000_000,
            leeway: 0,
            salt: Some("pepper"),
            escape_early: true,
            signature_known: false,
        };
        assert_eq!(verify(&tok, &keys, &c), Ok(()));
        assert_eq!(
            verify(
                &tok,
                &keys,
                &Check {
                    path: "/a b/d.mp4",
                    ..c
                }
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(
                &tok,
                &keys,
                &Check {
                    client_ip: &|| Some("192.0.2.2".into()),
                    ..c
                }
            ),
            Err(Refusal::WrongScope)
        );
        assert_eq!(
            verify(&tok, &keys, &Check { salt: None, ..c }),
            Err(Refusal::BadSignature)
        );
    }

    /// Tokens minted by the reference implementation (PyPI `akamai-edgeauth` 0.3.2), with:
    /// `EdgeAuth(key=KEY, start_time=1700000000, end_time=1700003600).generate_acl_token(["/videos/*","/images/*"])`,
    /// `EdgeAuth(key=KEY, end_time=2000000000, ip="192.0.2.1", salt="pepper", escape_early=True, algorithm="md5").generate_url_token("/a b/c.mp4")`,
    /// `EdgeAuth(key=KEY, end_time=2000000000, session_id="s 1", payload="x/y", algorithm="sha1", escape_early=True).generate_acl_token("/*")`.
    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn byte_exact_with_the_reference_implementation() {
        let acl = generate(
            &key(),
            Algorithm::Sha256,
            &TokenSpec {
                start: Some(1_700_000_000),
                exp: 1_700_003_600,
                acl: Some("/videos/*!/images/*"),
                ..Default::default()
            },
        );
        assert_eq!(acl, "st=1700000000~exp=1700003600~acl=/videos/*!/images/*~hmac=d54fe247515ce6d48c54471b894c3d093c667e257119231ba0b30494a9afe899");
        let url = generate(
            &key(),
            Algorithm::Md5,
            &TokenSpec {
                exp: 2_000_000_000,
                url: Some("/a b/c.mp4"),
                ip: Some("192.0.2.1"),
                salt: Some("pepper"),
                escape_early: true,
                ..Default::default()
            },
        );
        assert_eq!(
            url,
            "ip=192.0.2.1~exp=2000000000~hmac=55579d27e3068d040c6de071bd45cdea"
        );
        let fields = generate(
            &key(),
            Algorithm::Sha1,
            &TokenSpec {
                exp: 2_000_000_000,
                acl: Some("/*"),
                id: Some("s 1"),
                data: Some("x/y"),
                escape_early: true,
                ..Default::default()
            },
        );
        assert_eq!(
            fields,
            "exp=2000000000~acl=/*~id=s+1~data=x%2fy~hmac=48c5ff5a951a7bd553dd03ab19e7697fbdd0267a"
        );
        let c = Check {
            path: "/any/thing",
            client_ip: &|| None,
            now: 1_900_000_000,
            leeway: 0,
            salt: None,
            escape_early: true,
            signature_known: false,
        };
        assert_eq!(verify(&fields, &[(key(), Algorithm::Sha1)], &c), Ok(()));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn helpers() {
        assert_eq!(escape_early("/a b?c=Ä~"), "%2fa+b%3fc%3d%c3%84~");
        assert_eq!(decode_hex_key("0aFf"), Some(vec![10, 255]));
        assert_eq!(decode_hex_key("abc"), None);
        assert_eq!(decode_hex_key("zz"), None);
        assert_eq!(
            hex_key_problem("zz12"),
            "`zz12` is not hex: `z` is not a hex digit (0-9, a-f)"
        );
        assert_eq!(
            hex_key_problem("abc"),
            "`abc` has an odd number of hex digits (3); a key is whole bytes"
        );
        assert!(glob(b"/videos/*", b"/videos/a/b"));
        assert!(glob(b"/v?/*.mp4", b"/v1/x/y.mp4"));
        assert!(!glob(b"/videos/*", b"/video"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"/a", b"/ab"));
        assert_eq!(
            hmac_hex(
                b"key",
                Algorithm::Sha256,
                b"The quick brown fox jumps over the lazy dog"
            ),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}

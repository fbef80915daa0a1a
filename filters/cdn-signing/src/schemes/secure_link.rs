//! Expiring links compatible with nginx `secure_link` / `secure_link_md5`, and an HMAC-SHA256
//! variant.
//!
//! nginx: `secure_link $arg_md5,$arg_expires; secure_link_md5 "$secure_link_expires$uri$remote_addr secret";`
//! The expression is a template of literal text and variables; the token is the MD5 of the
//! expanded expression, base64url without padding. The HMAC variant takes a separate key and
//! writes HMAC-SHA256 of the expansion the same way.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::Hmac;
use md5::{Digest, Md5};

use super::{check_time, ct_eq, mac, Refusal};

/// One piece of an expression template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// `$secure_link_expires`
    Expires,
    /// `$uri` (the path without the query)
    Uri,
    /// `$remote_addr`
    RemoteAddr,
    /// `$host`
    Host,
}

/// Parses `"$secure_link_expires$uri$remote_addr secret"` into parts. Unknown `$variables` are
/// an error naming them (nginx would expand them to something we cannot know).
pub fn parse_template(t: &str) -> Result<Vec<Part>, String> {
    const VARS: [(&str, Part); 4] = [
        ("$secure_link_expires", Part::Expires),
        ("$remote_addr", Part::RemoteAddr),
        ("$host", Part::Host),
        ("$uri", Part::Uri),
    ];
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut rest = t;
    while !rest.is_empty() {
        if rest.starts_with('$') {
            match VARS.iter().find(|(name, _)| rest.starts_with(name)) {
                Some((name, part)) => {
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(part.clone());
                    rest = rest.get(name.len()..).unwrap_or("");
                    continue;
                }
                None => {
                    let var: String = rest
                        .chars()
                        .take_while(|c| *c == '$' || c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    return Err(format!("unsupported variable `{var}` (supported: $secure_link_expires, $uri, $remote_addr, $host)"));
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            lit.push(c);
        }
        rest = chars.as_str();
    }
    if !lit.is_empty() {
        parts.push(Part::Literal(lit));
    }
    Ok(parts)
}

/// The values the template's variables take for a request.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub expires: &'a str,
    pub uri: &'a str,
    pub remote_addr: &'a str,
    pub host: &'a str,
}

pub fn expand(parts: &[Part], v: &Vars<'_>) -> String {
    let mut out = String::new();
    for p in parts {
        out.push_str(match p {
            Part::Literal(s) => s,
            Part::Expires => v.expires,
            Part::Uri => v.uri,
            Part::RemoteAddr => v.remote_addr,
            Part::Host => v.host,
        });
    }
    out
}

/// The token: MD5 (no key) or HMAC-SHA256 (with a key) of the expansion, base64url unpadded.
pub fn token(parts: &[Part], v: &Vars<'_>, hmac_key: Option<&[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(digest(parts, v, hmac_key))
}

fn digest(parts: &[Part], v: &Vars<'_>, hmac_key: Option<&[u8]>) -> Vec<u8> {
    let msg = expand(parts, v);
    match hmac_key {
        None => Md5::digest(msg.as_bytes()).to_vec(),
        Some(k) => mac::<Hmac<sha2::Sha256>>(k, msg.as_bytes()),
    }
}

/// Verifies `received` (the `md5` argument) for a request, with the `expires` argument.
pub fn verify(
    parts: &[Part],
    v: &Vars<'_>,
    received: Option<&str>,
    hmac_keys: &[Vec<u8>],
    now: u64,
    leeway: u64,
) -> Result<(), Refusal> {
    let received = received.filter(|r| !r.is_empty()).ok_or(Refusal::Missing)?;
    let got = URL_SAFE_NO_PAD
        .decode(received.trim_end_matches('='))
        .map_err(|_| Refusal::Malformed)?;
    let uses_expiry = parts.contains(&Part::Expires);
    let exp: Option<u64> = if uses_expiry {
        Some(v.expires.parse().map_err(|_| {
            if v.expires.is_empty() {
                Refusal::Missing
            } else {
                Refusal::Malformed
            }
        })?)
    } else {
        None
    };
    let good = if hmac_keys.is_empty() {
        ct_eq(&digest(parts, v, None), &got)
    } else {
        hmac_keys
            .iter()
            .any(|k| ct_eq(&digest(parts, v, Some(k)), &got))
    };
    if !good {
        return Err(Refusal::BadSignature);
    }
    if let Some(exp) = exp {
        check_time(now, None, exp, leeway)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn nginx_known_answer() {
        // nginx documentation's example configuration, expires 2147483647, /s/link, 127.0.0.1.
        let parts = parse_template("$secure_link_expires$uri$remote_addr secret").unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Expires,
                Part::Uri,
                Part::RemoteAddr,
                Part::Literal(" secret".into())
            ]
        );
        let v = Vars {
            expires: "2147483647",
            uri: "/s/link",
            remote_addr: "127.0.0.1",
            host: "",
        };
        assert_eq!(token(&parts, &v, None), "_e4Nc3iduzkWRm01TBBNYw");
        assert_eq!(
            verify(
                &parts,
                &v,
                Some("_e4Nc3iduzkWRm01TBBNYw"),
                &[],
                2_000_000_000,
                0
            ),
            Ok(())
        );
        assert_eq!(
            verify(
                &parts,
                &Vars {
                    uri: "/s/other",
                    ..v
                },
                Some("_e4Nc3iduzkWRm01TBBNYw"),
                &[],
                0,
                0
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(
                &parts,
                &Vars {
                    remote_addr: "127.0.0.2",
                    ..v
                },
                Some("_e4Nc3iduzkWRm01TBBNYw"),
                &[],
                0,
                0
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            verify(
                &parts,
                &v,
                Some("_e4Nc3iduzkWRm01TBBNYw"),
                &[],
                2_147_483_647,
                0
            ),
            Err(Refusal::Expired)
        );
        assert_eq!(verify(&parts, &v, None, &[], 0, 0), Err(Refusal::Missing));
        assert_eq!(
            verify(&parts, &v, Some("not base64!"), &[], 0, 0),
            Err(Refusal::Malformed)
        );
        assert_eq!(
            verify(
                &parts,
                &Vars {
                    expires: "soon",
                    ..v
                },
                Some("_e4Nc3iduzkWRm01TBBNYw"),
                &[],
                0,
                0
            ),
            Err(Refusal::Malformed)
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn hmac_variant_and_templates() {
        let parts = parse_template("$secure_link_expires|$host|$uri").unwrap();
        let v = Vars {
            expires: "2000000000",
            uri: "/f",
            remote_addr: "",
            host: "cdn.example",
        };
        let t = token(&parts, &v, Some(b"k1"));
        assert_eq!(t.len(), 43, "SHA-256, base64url without padding");
        assert_eq!(
            verify(
                &parts,
                &v,
                Some(&t),
                &[b"old".to_vec(), b"k1".to_vec()],
                1_000,
                0
            ),
            Ok(())
        );
        assert_eq!(
            verify(&parts, &v, Some(&t), &[b"k2".to_vec()], 1_000, 0),
            Err(Refusal::BadSignature)
        );
        assert!(parse_template("$uri $arg_x")
            .unwrap_err()
            .contains("`$arg_x`"));
    }
}

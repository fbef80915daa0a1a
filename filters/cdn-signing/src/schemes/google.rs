//! Google Cloud CDN signed requests: signed URLs, signed URL prefixes and signed cookies.
//!
//! - Signed URL: `<url>?...&Expires=<unix>&KeyName=<name>&Signature=<sig>`; the signed string is
//!   the full URL up to (not including) `&Signature=`.
//! - Signed URL prefix: `...?URLPrefix=<base64url(prefix)>&Expires=..&KeyName=..&Signature=..`;
//!   the signed string is `URLPrefix=..&Expires=..&KeyName=..`, and the request URL must start
//!   with the decoded prefix.
//! - Signed cookie `Cloud-CDN-Cookie=URLPrefix=<b64>:Expires=<unix>:KeyName=<name>:Signature=<sig>`;
//!   the signed string is the value up to `:Signature=` (fields joined with `:`).
//!
//! `<sig>` is base64url (with padding) of HMAC-SHA1 under the 16-byte key named by `KeyName`
//! (keys are given base64url-encoded).

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::Hmac;

use super::{check_time, ct_eq, mac, Refusal};

/// Decodes a key as Google shows it (base64url, padded or not).
pub fn decode_key(b64: &str) -> Option<Vec<u8>> {
    let t = b64.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(t).ok().filter(|k| !k.is_empty())
}

fn sign_raw(key: &[u8], msg: &[u8]) -> Vec<u8> {
    mac::<Hmac<sha1::Sha1>>(key, msg)
}

/// The signature of `msg`, base64url with padding (as Google's examples write it).
pub fn signature(key: &[u8], msg: &str) -> String {
    URL_SAFE.encode(sign_raw(key, msg.as_bytes()))
}

/// Signs a URL: appends `Expires`, `KeyName` and `Signature`.
pub fn sign_url(url: &str, key_name: &str, key: &[u8], expires: u64) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    let to_sign = format!("{url}{sep}Expires={expires}&KeyName={key_name}");
    let sig = signature(key, &to_sign);
    format!("{to_sign}&Signature={sig}")
}

/// Signs a URL prefix: the query string to append to any URL under `prefix`.
pub fn sign_prefix(prefix: &str, key_name: &str, key: &[u8], expires: u64) -> String {
    let to_sign = format!(
        "URLPrefix={}&Expires={expires}&KeyName={key_name}",
        URL_SAFE.encode(prefix.as_bytes())
    );
    let sig = signature(key, &to_sign);
    format!("{to_sign}&Signature={sig}")
}

/// The value of a `Cloud-CDN-Cookie` for `prefix`.
pub fn sign_cookie(prefix: &str, key_name: &str, key: &[u8], expires: u64) -> String {
    let to_sign = format!(
        "URLPrefix={}:Expires={expires}:KeyName={key_name}",
        URL_SAFE.encode(prefix.as_bytes())
    );
    let sig = signature(key, &to_sign);
    format!("{to_sign}:Signature={sig}")
}

/// The request as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// `scheme://authority/path?query`, as received.
    pub url: &'a str,
    pub now: u64,
    pub leeway: u64,
}

fn compare(key: &[u8], signed: &str, received_b64: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(received_b64.trim_end_matches('=')) {
        Ok(got) => ct_eq(&sign_raw(key, signed.as_bytes()), &got),
        Err(_) => false,
    }
}

/// Verifies a signed URL or signed URL prefix carried in `c.url`'s query.
/// `key` looks a key up by name (`None`: unknown key name).
pub fn verify_url(c: &Check<'_>, key: &dyn Fn(&str) -> Option<Vec<u8>>) -> Result<(), Refusal> {
    let Some((signed, sig)) = c.url.rsplit_once("&Signature=") else {
        return Err(if c.url.contains("Signature=") {
            Refusal::Malformed
        } else {
            Refusal::Missing
        });
    };
    if sig.contains('&') || sig.is_empty() {
        return Err(Refusal::Malformed);
    }
    let query = signed
        .split_once('?')
        .map(|(_, q)| q)
        .ok_or(Refusal::Malformed)?;
    let (mut expires, mut key_name, mut prefix) = (None, None, None);
    for (k, v) in edge_common::http::query_pairs(query) {
        match k {
            "Expires" => expires = Some(v),
            "KeyName" => key_name = Some(v),
            "URLPrefix" => prefix = Some(v),
            _ => {}
        }
    }
    let exp: u64 = expires
        .ok_or(Refusal::Malformed)?
        .parse()
        .map_err(|_| Refusal::Malformed)?;
    let name = key_name.ok_or(Refusal::Malformed)?;
    // With a prefix, only `URLPrefix=..&Expires=..&KeyName=..` is signed.
    let signed = match prefix {
        Some(_) => signed
            .find("URLPrefix=")
            .and_then(|i| signed.get(i..))
            .ok_or(Refusal::Malformed)?,
        None => signed,
    };
    let k = key(name).ok_or(Refusal::BadSignature)?;
    if !compare(&k, signed, sig) {
        return Err(Refusal::BadSignature);
    }
    check_time(c.now, None, exp, c.leeway)?;
    if let Some(p) = prefix {
        let p = URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| Refusal::Malformed)?;
        if !c.url.as_bytes().starts_with(&p) {
            return Err(Refusal::WrongScope);
        }
    }
    Ok(())
}

/// Verifies a `Cloud-CDN-Cookie` value for the request URL `c.url`.
pub fn verify_cookie(
    value: &str,
    c: &Check<'_>,
    key: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<(), Refusal> {
    if value.is_empty() {
        return Err(Refusal::Missing);
    }
    let (signed, sig) = value.rsplit_once(":Signature=").ok_or(Refusal::Malformed)?;
    let (mut expires, mut key_name, mut prefix) = (None, None, None);
    for part in signed.split(':') {
        match part.split_once('=') {
            Some(("Expires", v)) => expires = Some(v),
            Some(("KeyName", v)) => key_name = Some(v),
            Some(("URLPrefix", v)) => prefix = Some(v),
            _ => return Err(Refusal::Malformed),
        }
    }
    let exp: u64 = expires
        .ok_or(Refusal::Malformed)?
        .parse()
        .map_err(|_| Refusal::Malformed)?;
    let k = key(key_name.ok_or(Refusal::Malformed)?).ok_or(Refusal::BadSignature)?;
    let prefix = prefix.ok_or(Refusal::Malformed)?;
    if !compare(&k, signed, sig) {
        return Err(Refusal::BadSignature);
    }
    check_time(c.now, None, exp, c.leeway)?;
    let p = URL_SAFE_NO_PAD
        .decode(prefix.trim_end_matches('='))
        .map_err(|_| Refusal::Malformed)?;
    if !c.url.as_bytes().starts_with(&p) {
        return Err(Refusal::WrongScope);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    /// Google's published example: key `nZtRohdNF9m3cKM24IcK4w==` named `my-key`.
    const KEY: &str = "nZtRohdNF9m3cKM24IcK4w==";

    fn keys(name: &str) -> Option<Vec<u8>> {
        (name == "my-key").then(|| decode_key(KEY)).flatten()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn published_known_answer() {
        let k = decode_key(KEY).unwrap();
        assert_eq!(k.len(), 16);
        let url = sign_url("http://35.186.234.33/index.html", "my-key", &k, 1549751401);
        assert_eq!(url, "http://35.186.234.33/index.html?Expires=1549751401&KeyName=my-key&Signature=CRFqQnVfFyiUyR63OQf-HRUpIwc=");
        let c = Check {
            url: &url,
            now: 1549751000,
            leeway: 0,
        };
        assert_eq!(verify_url(&c, &keys), Ok(()));
        assert_eq!(
            verify_url(
                &Check {
                    now: 1549751401,
                    ..c
                },
                &keys
            ),
            Err(Refusal::Expired)
        );
        assert_eq!(
            verify_url(
                &Check {
                    now: 1549751401,
                    leeway: 30,
                    ..c
                },
                &keys
            ),
            Ok(())
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn every_single_field_tamper_is_refused() {
        let k = decode_key(KEY).unwrap();
        let url = sign_url("http://cdn.example/a.mp4?x=1", "my-key", &k, 2_000_000_000);
        let c = |u: &str| {
            verify_url(
                &Check {
                    url: u,
                    now: 1_900_000_000,
                    leeway: 0,
                },
                &keys,
            )
        };
        assert_eq!(c(&url), Ok(()));
        assert_eq!(
            c(&url.replace("a.mp4", "b.mp4")),
            Err(Refusal::BadSignature)
        );
        assert_eq!(c(&url.replace("x=1", "x=2")), Err(Refusal::BadSignature));
        assert_eq!(
            c(&url.replace("Expires=2000000000", "Expires=2000000001")),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            c(&url.replace("KeyName=my-key", "KeyName=other")),
            Err(Refusal::BadSignature)
        );
        assert_eq!(
            c(&url.replace("Expires=2000000000", "Expires=soon")),
            Err(Refusal::Malformed)
        );
        assert_eq!(c("http://cdn.example/a.mp4"), Err(Refusal::Missing));
        let sig_at = url.find("Signature=").unwrap() + 10;
        let mut flipped = url.clone().into_bytes();
        flipped[sig_at] = if flipped[sig_at] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            c(std::str::from_utf8(&flipped).unwrap()),
            Err(Refusal::BadSignature)
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn prefixes_and_cookies() {
        let k = decode_key(KEY).unwrap();
        let q = sign_prefix("http://cdn.example/videos/", "my-key", &k, 2_000_000_000);
        let ok = format!("http://cdn.example/videos/a/b.m3u8?{q}");
        let c = |u: &str| {
            verify_url(
                &Check {
                    url: u,
                    now: 1_900_000_000,
                    leeway: 0,
                },
                &keys,
            )
        };
        assert_eq!(c(&ok), Ok(()));
        assert_eq!(
            c(&format!("http://cdn.example/private/x?{q}")),
            Err(Refusal::WrongScope)
        );
        let cookie = sign_cookie("http://cdn.example/videos/", "my-key", &k, 2_000_000_000);
        assert!(cookie.starts_with("URLPrefix=aHR0cDovL2Nkbi5leGFtcGxlL3ZpZGVvcy8=:Expires=2000000000:KeyName=my-key:Signature="), "{cookie}");
        let check = Check {
            url: "http://cdn.example/videos/1.ts",
            now: 1_900_000_000,
            leeway: 0,
        };
        assert_eq!(verify_cookie(&cookie, &check, &keys), Ok(()));
        assert_eq!(
            verify_cookie(
                &cookie,
                &Check {
                    url: "http://cdn.example/x",
                    ..check
                },
                &keys
            ),
            Err(Refusal::WrongScope)
        );
        assert_eq!(
            verify_cookie(
                &cookie.replace("Expires=2000000000", "Expires=2000000009"),
                &check,
                &keys
            ),
            Err(Refusal::BadSignature)
        );
        assert_eq!(verify_cookie("", &check, &keys), Err(Refusal::Missing));
    }
}

//! AWS CloudFront signed URLs (canned and custom policies), as botocore's `CloudFrontSigner` makes
//! them: RSA PKCS#1 v1.5 over the policy JSON with SHA-1 (or SHA-256 with `Hash-Algorithm=SHA256`),
//! in CloudFront's base64 variant (`+` `=` `/` written `-` `_` `~`).
//!
//! - Canned: `...?Expires=<unix>&Signature=<sig>&Key-Pair-Id=<id>`; the policy is rebuilt as
//!   `{"Statement":[{"Resource":"<url without these parameters>","Condition":{"DateLessThan":{"AWS:EpochTime":<unix>}}}]}`.
//! - Custom: `...?Policy=<base64 policy>&Signature=..&Key-Pair-Id=..`; the policy's `Resource`
//!   (with `*` / `?` wildcards), `DateLessThan`, `DateGreaterThan` and `IpAddress.AWS:SourceIp` are
//!   enforced.
//! - Signed cookies: the same fields as `CloudFront-Expires` / `CloudFront-Policy`,
//!   `CloudFront-Signature`, `CloudFront-Key-Pair-Id` (and `CloudFront-Hash-Algorithm`).
//!
//! Signing (sign mode, the `sign` command) makes the same fields with a private key.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use edge_common::http::{query_pairs, split_path, strip_query_params};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};

use super::akamai::glob;
use super::{check_time, Refusal};

const PARAMS: [&str; 5] = [
    "Expires",
    "Policy",
    "Signature",
    "Key-Pair-Id",
    "Hash-Algorithm",
];

/// Parses a public key in PEM: `BEGIN PUBLIC KEY` (SPKI) or `BEGIN RSA PUBLIC KEY` (PKCS#1).
pub fn parse_public_key(pem: &str) -> Result<RsaPublicKey, String> {
    RsaPublicKey::from_public_key_pem(pem.trim())
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| format!("not an RSA public key in PEM: {e}"))
}

/// Decodes CloudFront's base64 variant.
pub fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let std: String = s
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    STANDARD.decode(std).ok()
}

/// The canned policy botocore signs for `url` and `expires`.
pub fn canned_policy(url: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{url}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// A custom policy as botocore's `build_policy` writes it (same key order, no spaces).
pub fn custom_policy(
    resource: &str,
    date_less_than: u64,
    date_greater_than: Option<u64>,
    ip_address: Option<&str>,
) -> String {
    let mut cond = format!(r#"{{"DateLessThan":{{"AWS:EpochTime":{date_less_than}}}"#);
    if let Some(ip) = ip_address {
        // botocore writes a bare address as a /32.
        let suffix = if ip.contains('/') { "" } else { "/32" };
        cond.push_str(&format!(
            r#","IpAddress":{{"AWS:SourceIp":"{ip}{suffix}"}}"#
        ));
    }
    if let Some(st) = date_greater_than {
        cond.push_str(&format!(r#","DateGreaterThan":{{"AWS:EpochTime":{st}}}"#));
    }
    cond.push('}');
    format!(r#"{{"Statement":[{{"Resource":"{resource}","Condition":{cond}}}]}}"#)
}

/// Encodes in CloudFront's base64 variant.
pub fn encode_b64(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// Parses a private key in PEM: `BEGIN PRIVATE KEY` (PKCS#8) or `BEGIN RSA PRIVATE KEY` (PKCS#1).
pub fn parse_private_key(pem: &str) -> Result<RsaPrivateKey, String> {
    RsaPrivateKey::from_pkcs8_pem(pem.trim())
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem.trim()))
        .map_err(|e| format!("not an RSA private key in PEM: {e}"))
}

/// A private key ready to sign with either hash, with its key pair id.
#[derive(Debug, Clone)]
pub struct CfSigner {
    pub key_pair_id: String,
    pub sha256: bool,
    key: RsaPrivateKey,
}

impl CfSigner {
    pub fn new(key_pair_id: &str, key: RsaPrivateKey, sha256: bool) -> Self {
        Self {
            key_pair_id: key_pair_id.to_string(),
            sha256,
            key,
        }
    }

    /// The signature of a policy, in CloudFront's base64 (PKCS#1 v1.5 is deterministic).
    pub fn signature(&self, policy: &str) -> String {
        let sig = if self.sha256 {
            SigningKey::<sha2::Sha256>::new(self.key.clone()).sign(policy.as_bytes())
        } else {
            SigningKey::<sha1::Sha1>::new(self.key.clone()).sign(policy.as_bytes())
        };
        encode_b64(&sig.to_bytes())
    }

    /// The name/value pairs that sign a request: with `policy` (custom) or for `url` until
    /// `expires` (canned). Names are the query parameter names; cookies prefix `CloudFront-`.
    pub fn fields(
        &self,
        url: &str,
        expires: u64,
        policy: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(4);
        match policy {
            Some(p) => {
                out.push(("Policy", encode_b64(p.as_bytes())));
                out.push(("Signature", self.signature(p)));
            }
            None => {
                out.push(("Expires", expires.to_string()));
                out.push(("Signature", self.signature(&canned_policy(url, expires))));
            }
        }
        out.push(("Key-Pair-Id", self.key_pair_id.clone()));
        if self.sha256 {
            out.push(("Hash-Algorithm", "SHA256".to_string()));
        }
        out
    }

    /// A signed URL (canned policy unless `policy` is given), as botocore makes it.
    pub fn sign_url(&self, url: &str, expires: u64, policy: Option<&str>) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        let q: Vec<String> = self
            .fields(url, expires, policy)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{url}{sep}{}", q.join("&"))
    }
}

/// A public key ready to verify with either hash (built once, at configure time).
#[derive(Debug, Clone)]
pub struct CfKey {
    sha1: VerifyingKey<sha1::Sha1>,
    sha256: VerifyingKey<sha2::Sha256>,
}

impl CfKey {
    pub fn new(key: RsaPublicKey) -> Self {
        Self {
            sha1: VerifyingKey::new(key.clone()),
            sha256: VerifyingKey::new(key),
        }
    }
}

fn verify_sig(key: &CfKey, sha256: bool, msg: &[u8], sig: &[u8]) -> bool {
    let Ok(sig) = Signature::try_from(sig) else {
        return false;
    };
    if sha256 {
        key.sha256.verify(msg, &sig).is_ok()
    } else {
        key.sha1.verify(msg, &sig).is_ok()
    }
}

#[derive(Clone, Copy)]
pub struct Check<'a> {
    /// `scheme://authority/path?query`, as received.
    pub url: &'a str,
    pub client_ip: &'a dyn Fn() -> Option<IpAddr>,
    pub now: u64,
    pub leeway: u64,
}

/// The CloudFront fields of a request, from its query or its `CloudFront-*` cookies.
#[derive(Debug, Clone, Copy, Default)]
struct Fields<'a> {
    expires: Option<&'a str>,
    policy: Option<&'a str>,
    signature: Option<&'a str>,
    key_pair_id: Option<&'a str>,
    hash_algorithm: Option<&'a str>,
}

/// Verifies a signed URL; `key` finds the public key of a `Key-Pair-Id`.
pub fn verify_url<'k>(
    c: &Check<'_>,
    key: &dyn Fn(&str) -> Option<&'k CfKey>,
) -> Result<(), Refusal> {
    let (_, query) = split_path(c.url);
    let mut f = Fields::default();
    for (k, v) in query_pairs(query.unwrap_or("")) {
        match k {
            "Expires" => f.expires = Some(v),
            "Policy" => f.policy = Some(v),
            "Signature" => f.signature = Some(v),
            "Key-Pair-Id" => f.key_pair_id = Some(v),
            "Hash-Algorithm" => f.hash_algorithm = Some(v),
            _ => {}
        }
    }
    let base = strip_query_params(c.url, |n| PARAMS.contains(&n));
    verify_fields(&f, base.as_deref().unwrap_or(c.url), c, key)
}

/// Verifies CloudFront signed cookies (`CloudFront-Expires` or `CloudFront-Policy`,
/// `CloudFront-Signature`, `CloudFront-Key-Pair-Id`, optional `CloudFront-Hash-Algorithm`) from a
/// `cookie` header, for the request URL `c.url`.
pub fn verify_cookies<'k>(
    cookie_header: &str,
    c: &Check<'_>,
    key: &dyn Fn(&str) -> Option<&'k CfKey>,
) -> Result<(), Refusal> {
    let mut f = Fields::default();
    for (k, v) in edge_common::http::cookie_pairs(cookie_header) {
        match k {
            "CloudFront-Expires" => f.expires = Some(v),
            "CloudFront-Policy" => f.policy = Some(v),
            "CloudFront-Signature" => f.signature = Some(v),
            "CloudFront-Key-Pair-Id" => f.key_pair_id = Some(v),
            "CloudFront-Hash-Algorithm" => f.hash_algorithm = Some(v),
            _ => {}
        }
    }
    verify_fields(&f, c.url, c, key)
}

/// Whether a `cookie` header carries any CloudFront signed cookie.
pub fn has_cookies(cookie_header: &str) -> bool {
    edge_common::http::cookie_pairs(cookie_header).any(|(k, _)| COOKIES.contains(&k))
}

/// The cookie names CloudFront signed cookies use.
pub const COOKIES: [&str; 5] = [
    "CloudFront-Expires",
    "CloudFront-Policy",
    "CloudFront-Signature",
    "CloudFront-Key-Pair-Id",
    "CloudFront-Hash-Algorithm",
];

/// Verifies the fields against `base` (the request URL without CloudFront's parameters).
fn verify_fields<'k>(
    f: &Fields<'_>,
    base: &str,
    c: &Check<'_>,
    key: &dyn Fn(&str) -> Option<&'k CfKey>,
) -> Result<(), Refusal> {
    let sig = match f.signature {
        None if f.expires.is_none() && f.policy.is_none() => return Err(Refusal::Missing),
        None => return Err(Refusal::Malformed),
        Some(s) => decode_b64(s).ok_or(Refusal::Malformed)?,
    };
    let sha256 = match f.hash_algorithm {
        None | Some("SHA1") => false,
        Some("SHA256") => true,
        Some(_) => return Err(Refusal::Malformed),
    };
    let key = key(f.key_pair_id.ok_or(Refusal::Malformed)?).ok_or(Refusal::BadSignature)?;
    match (f.expires, f.policy) {
        (Some(e), None) => {
            let exp: u64 = e.parse().map_err(|_| Refusal::Malformed)?;
            if !verify_sig(key, sha256, canned_policy(base, exp).as_bytes(), &sig) {
                return Err(Refusal::BadSignature);
            }
            check_time(c.now, None, exp, c.leeway)
        }
        (None, Some(p)) => {
            let json = decode_b64(p).ok_or(Refusal::Malformed)?;
            if !verify_sig(key, sha256, &json, &sig) {
                return Err(Refusal::BadSignature);
            }
            check_policy(&json, base, c)
        }
        _ => Err(Refusal::Malformed),
    }
}

/// Enforces a (signature-checked) custom policy.
fn check_policy(json: &[u8], url: &str, c: &Check<'_>) -> Result<(), Refusal> {
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|_| Refusal::Malformed)?;
    let st = v.pointer("/Statement/0").ok_or(Refusal::Malformed)?;
    let epoch = |name: &str| {
        st.pointer(&format!("/Condition/{name}/AWS:EpochTime"))
            .and_then(serde_json::Value::as_u64)
    };
    let exp = epoch("DateLessThan").ok_or(Refusal::Malformed)?;
    check_time(c.now, epoch("DateGreaterThan"), exp, c.leeway)?;
    if let Some(resource) = st.get("Resource") {
        let r = resource.as_str().ok_or(Refusal::Malformed)?;
        if !glob(r.as_bytes(), url.as_bytes()) {
            return Err(Refusal::WrongScope);
        }
    }
    if let Some(cidr) = st.pointer("/Condition/IpAddress/AWS:SourceIp") {
        let net = edge_common::cidr::parse_net(cidr.as_str().ok_or(Refusal::Malformed)?)
            .map_err(|_| Refusal::Malformed)?;
        let set = edge_common::CidrSet::from_nets([net]);
        if !(c.client_ip)().is_some_and(|ip| set.contains(ip)) {
            return Err(Refusal::WrongScope);
        }
    }
    Ok(())
}

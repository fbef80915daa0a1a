//! AWS CloudFront signed URLs (canned and custom policies), as botocore's `CloudFrontSigner` makes
//! them: RSA PKCS#1 v1.5 over the policy JSON with SHA-1 (or SHA-256 with `Hash-Algorithm=SHA256`),
//! in CloudFront's base64 variant (`+` `=` `/` written `-` `_` `~`).
//!
//! - Canned: `...?Expires=<unix>&Signature=<sig>&Key-Pair-Id=<id>`; the policy is rebuilt as
//!   `{"Statement":[{"Resource":"<url without these parameters>","Condition":{"DateLessThan":{"AWS:EpochTime":<unix>}}}]}`.
//! - Custom: `...?Policy=<base64 policy>&Signature=..&Key-Pair-Id=..`; the policy's `Resource`
//!   (with `*` / `?` wildcards), `DateLessThan`, `DateGreaterThan` and `IpAddress.AWS:SourceIp` are
//!   enforced.

use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use edge_common::http::{query_pairs, split_path, strip_query_params};
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use rsa::RsaPublicKey;

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

/// Verifies a signed URL; `key` finds the public key of a `Key-Pair-Id`.
pub fn verify_url<'k>(
    c: &Check<'_>,
    key: &dyn Fn(&str) -> Option<&'k CfKey>,
) -> Result<(), Refusal> {
    let (_, query) = split_path(c.url);
    let (mut expires, mut policy, mut sig, mut kid, mut alg) = (None, None, None, None, None);
    for (k, v) in query_pairs(query.unwrap_or("")) {
        match k {
            "Expires" => expires = Some(v),
            "Policy" => policy = Some(v),
            "Signature" => sig = Some(v),
            "Key-Pair-Id" => kid = Some(v),
            "Hash-Algorithm" => alg = Some(v),
            _ => {}
        }
    }
    let sig = match sig {
        None if expires.is_none() && policy.is_none() => return Err(Refusal::Missing),
        None => return Err(Refusal::Malformed),
        Some(s) => decode_b64(s).ok_or(Refusal::Malformed)?,
    };
    let sha256 = match alg {
        None | Some("SHA1") => false,
        Some("SHA256") => true,
        Some(_) => return Err(Refusal::Malformed),
    };
    let key = key(kid.ok_or(Refusal::Malformed)?).ok_or(Refusal::BadSignature)?;
    let base = strip_query_params(c.url, |n| PARAMS.contains(&n));
    let base = base.as_deref().unwrap_or(c.url);
    match (expires, policy) {
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

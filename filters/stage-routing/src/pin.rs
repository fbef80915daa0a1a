//! The signed pin cookie: `<stage>.<issued>.<mac>`, where `issued` is the Unix second the filter
//! set it and `mac` is the first 16 bytes, in hex, of HMAC-SHA256 under the first configured
//! secret of `v1|<stage>|<issued>|<sticky key>`.
//!
//! The sticky key is the value the request would be hashed on (the configured cookie or header,
//! else the client address), so a pin cannot be copied to another user, forged without the
//! secret, or kept past `max_age_seconds` (checked here, not trusted to the browser). Every
//! configured secret verifies, so secrets can be rotated: add the new one first, drop the old
//! one after `max_age_seconds`.

use edge_common::crypto::{ct_eq, hmac_sha256};

/// Bytes of the MAC kept in the cookie.
const MAC_BYTES: usize = 16;
/// A pin issued this far in the future (clock skew between Envoys) is still accepted.
const SKEW_S: u64 = 60;

fn mac_hex(secret: &[u8], stage: &str, issued: u64, key: &[u8]) -> String {
    let mut msg = Vec::with_capacity(16 + stage.len() + key.len());
    msg.extend_from_slice(b"v1|");
    msg.extend_from_slice(stage.as_bytes());
    msg.push(b'|');
    msg.extend_from_slice(issued.to_string().as_bytes());
    msg.push(b'|');
    msg.extend_from_slice(key);
    hmac_sha256(secret, &msg)
        .iter()
        .take(MAC_BYTES)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cookie value pinning `stage` for the holder of sticky `key`.
pub fn mint(secret: &[u8], stage: &str, key: &[u8], now: u64) -> String {
    format!("{stage}.{now}.{}", mac_hex(secret, stage, now, key))
}

/// The stage a pin names, if some secret signed it for this sticky `key` and it is no older than
/// `max_age` seconds.
pub fn verify<'v>(
    value: &'v str,
    secrets: &[Vec<u8>],
    key: &[u8],
    now: u64,
    max_age: u64,
) -> Option<&'v str> {
    let (rest, mac) = value.rsplit_once('.')?;
    let (stage, issued_s) = rest.rsplit_once('.')?;
    if issued_s.is_empty() || !issued_s.bytes().all(|b| b.is_ascii_digit()) || issued_s.len() > 19 {
        return None;
    }
    let issued: u64 = issued_s.parse().ok()?;
    if issued > now.saturating_add(SKEW_S) || now.saturating_sub(issued) > max_age {
        return None;
    }
    secrets
        .iter()
        .any(|s| ct_eq(mac_hex(s, stage, issued, key).as_bytes(), mac.as_bytes()))
        .then_some(stage)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn pins_verify_only_for_their_key_secret_and_age() {
        let new = b"0123456789abcdef-new".to_vec();
        let old = b"0123456789abcdef-old".to_vec();
        let v = mint(&old, "canary", b"user-1", 1000);
        assert!(v.starts_with("canary.1000."));
        assert_eq!(v.len(), "canary.1000.".len() + 32);
        let both = [new.clone(), old.clone()];
        assert_eq!(verify(&v, &both, b"user-1", 1500, 3600), Some("canary"));
        // Another user, another stage, a dropped secret, an old or future pin: refused.
        assert_eq!(verify(&v, &both, b"user-2", 1500, 3600), None);
        let forged = v.replacen("canary", "next", 1);
        assert_eq!(verify(&forged, &both, b"user-1", 1500, 3600), None);
        assert_eq!(
            verify(&v, std::slice::from_ref(&new), b"user-1", 1500, 3600),
            None
        );
        assert_eq!(verify(&v, &both, b"user-1", 1000 + 3601, 3600), None);
        assert_eq!(verify(&v, &both, b"user-1", 900, 3600), None);
        for junk in [
            "canary",
            "canary.x.y",
            "..",
            "canary..ab",
            "canary.99999999999999999999.ab",
        ] {
            assert_eq!(verify(junk, &both, b"user-1", 1500, 3600), None, "{junk}");
        }
    }
}

//! The signing schemes, as pure functions over strings and bytes.

pub mod akamai;
pub mod cloudfront;
pub mod google;
pub mod secure_link;

/// Why a token was refused; each maps to a distinct response reason and metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The token, or a field the scheme requires, is absent.
    Missing,
    /// Not in the scheme's syntax (bad field, bad encoding, bad number).
    Malformed,
    /// Past its expiry (beyond the leeway).
    Expired,
    /// Before its start time (beyond the leeway).
    NotYetValid,
    /// Valid signature, but not for this request (path outside the ACL, other client IP).
    WrongScope,
    /// The signature does not match (or the key is unknown).
    BadSignature,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongScope => "wrong_scope",
            Refusal::BadSignature => "bad_signature",
        }
    }
}

pub use edge_common::crypto::{ct_eq, mac};

/// Checks a validity window in whole seconds: `start <= now + leeway` and `now - leeway < exp`.
pub fn check_time(now: u64, start: Option<u64>, exp: u64, leeway: u64) -> Result<(), Refusal> {
    if let Some(st) = start {
        if st > now.saturating_add(leeway) {
            return Err(Refusal::NotYetValid);
        }
    }
    if now.saturating_sub(leeway) >= exp {
        return Err(Refusal::Expired);
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
    fn time_windows_with_leeway() {
        assert_eq!(check_time(100, None, 101, 0), Ok(()));
        assert_eq!(check_time(101, None, 101, 0), Err(Refusal::Expired));
        assert_eq!(check_time(101, None, 101, 5), Ok(()));
        assert_eq!(
            check_time(100, Some(110), 200, 5),
            Err(Refusal::NotYetValid)
        );
        assert_eq!(check_time(100, Some(105), 200, 5), Ok(()));
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"ab", b"abc"));
    }
}

//! Client addresses as Envoy reports them.

use std::net::{IpAddr, SocketAddr};

/// Parses the IP out of an Envoy address property such as `source.address`:
/// `203.0.113.7:52100`, `[2001:db8::1]:443`, or a bare `203.0.113.7` / `2001:db8::1`.
///
/// Returns `None` for anything else (a pipe path, an empty value), never panics.
pub fn parse_address_ip(value: &str) -> Option<IpAddr> {
    let value = value.trim();
    if let Ok(sock) = value.parse::<SocketAddr>() {
        return Some(canonical(sock.ip()));
    }
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    bare.parse::<IpAddr>().ok().map(canonical)
}

/// Same as [`parse_address_ip`] for the raw bytes a host property returns.
pub fn parse_address_ip_bytes(value: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(value).ok().and_then(parse_address_ip)
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, seen on dual-stack listeners) become IPv4, so
/// that one set of rules and ranges covers both forms.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn parses_envoy_address_forms() {
        assert_eq!(
            parse_address_ip("203.0.113.7:52100"),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            parse_address_ip("[2001:db8::1]:443"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_address_ip("203.0.113.7"), Some(ip("203.0.113.7")));
        assert_eq!(parse_address_ip("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_address_ip("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_address_ip_bytes(b"10.0.0.1:1"), Some(ip("10.0.0.1")));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn maps_v4_mapped_v6_to_v4() {
        assert_eq!(
            parse_address_ip("[::ffff:192.0.2.1]:80"),
            Some(ip("192.0.2.1"))
        );
        assert_eq!(parse_address_ip("::1"), Some(ip("::1")));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn rejects_non_addresses() {
        for bad in [
            "",
            "/tmp/envoy.sock",
            "1.2.3",
            "1.2.3.4:",
            "[::1",
            "example.com:80",
        ] {
            assert_eq!(parse_address_ip(bad), None, "{bad}");
        }
        assert_eq!(parse_address_ip_bytes(&[0xff, 0xfe]), None);
    }
}

//! Reading a whole header map in one host call, without copies and without trusting its bytes.
//!
//! Proxy-Wasm serializes a header map as: `u32` pair count N, then N × (`u32` name length, `u32`
//! value length), then each name and value followed by a NUL, all little-endian. The SDK's own
//! readers (`get_http_request_header`, `get_http_request_headers`) turn names and values into
//! `String` with `unwrap()`: a client sending one header byte outside UTF-8 (obs-text, which HTTP/1.1
//! allows and Envoy forwards) panics the VM, and every later request on that worker fails. This
//! view keeps values as bytes and bounds-checks every offset, so no input can panic it; it also
//! costs one host call for any number of headers instead of one per header.

/// A parsed view over a serialized header map. Construction checks the whole layout once; lookups
/// then slice without further checks that could fail.
#[derive(Debug, Clone, Copy)]
pub struct HeaderMapView<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> HeaderMapView<'a> {
    /// Validates the layout. `None` if it is malformed (never expected from Envoy; handled anyway).
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        if bytes.is_empty() {
            return Some(Self { bytes, count: 0 });
        }
        let count = read_u32(bytes, 0)? as usize;
        let mut data = count.checked_mul(8)?.checked_add(4)?;
        for i in 0..count {
            let (k, v) = (read_u32(bytes, 4 + i * 8)?, read_u32(bytes, 8 + i * 8)?);
            let end = data
                .checked_add(k as usize)?
                .checked_add(v as usize)?
                .checked_add(2)?;
            if end > bytes.len() {
                return None;
            }
            data = end;
        }
        Some(Self { bytes, count })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Iterates (name, value) pairs in order; names are lowercase as Envoy stores them.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let bytes = self.bytes;
        let count = self.count;
        let mut data = 4 + count * 8;
        (0..count).filter_map(move |i| {
            let k = read_u32(bytes, 4 + i * 8)? as usize;
            let v = read_u32(bytes, 8 + i * 8)? as usize;
            let name = bytes.get(data..data + k)?;
            let value = bytes.get(data + k + 1..data + k + 1 + v)?;
            data += k + v + 2;
            Some((name, value))
        })
    }

    /// The first value of header `name` (lowercase), as bytes.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        // Lengths first: a name's bytes are compared only when its length matches, and a value
        // is sliced only for the match (the hot path of every feature's lookups).
        let (bytes, want) = (self.bytes, name.as_bytes());
        let mut data = 4 + self.count * 8;
        for i in 0..self.count {
            let k = read_u32(bytes, 4 + i * 8)? as usize;
            let v = read_u32(bytes, 8 + i * 8)? as usize;
            if k == want.len() && bytes.get(data..data + k)? == want {
                return bytes.get(data + k + 1..data + k + 1 + v);
            }
            data += k + v + 2;
        }
        None
    }

    /// The first value of header `name` if it is valid UTF-8 (pseudo-headers always are).
    pub fn get_str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every `cookie` header, joined with `; ` as RFC 6265 section 5.4 (and RFC 9113 for HTTP/2
    /// crumbs) defines: an HTTP/1.1 client may send several. Borrowed when there is one. Values
    /// that are not UTF-8 are skipped.
    pub fn cookies(&self) -> Option<std::borrow::Cow<'a, str>> {
        let mut values = self
            .iter()
            .filter(|(n, _)| *n == b"cookie")
            .filter_map(|(_, v)| std::str::from_utf8(v).ok());
        let first = values.next()?;
        let Some(second) = values.next() else {
            return Some(std::borrow::Cow::Borrowed(first));
        };
        let mut all = format!("{first}; {second}");
        for v in values {
            all.push_str("; ");
            all.push_str(v);
        }
        Some(std::borrow::Cow::Owned(all))
    }

    /// Whether header `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

fn read_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Serializes pairs in the Proxy-Wasm layout (tests, fuzzing, fake hosts).
pub fn serialize(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k);
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// The host side: one `proxy_get_header_map_pairs` call (wasm32-wasip1 builds only).
#[cfg(target_os = "wasi")]
pub mod host {
    /// The request header map, owned (freed on drop).
    pub struct OwnedHeaderMap(Vec<u8>);

    impl OwnedHeaderMap {
        pub fn view(&self) -> Option<super::HeaderMapView<'_>> {
            super::HeaderMapView::parse(&self.0)
        }

        /// The serialized map.
        pub fn into_bytes(self) -> Vec<u8> {
            self.0
        }
    }

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }

    /// Map types of the ABI.
    pub const REQUEST_HEADERS: u32 = 0;
    pub const RESPONSE_HEADERS: u32 = 2;
    pub const HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

    /// Reads a whole header map. `None` if the host refuses (e.g. outside a request).
    pub fn header_map(map_type: u32) -> Option<OwnedHeaderMap> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: the host writes a pointer to `size` bytes it allocated through this module's
        // `proxy_on_memory_allocate` (the SDK's allocator, a boxed byte slice), which we take
        // ownership of exactly as the SDK's own `get_map_bytes` does.
        unsafe {
            if proxy_get_header_map_pairs(map_type, &mut data, &mut size) != 0 {
                return None;
            }
            if data.is_null() {
                return Some(OwnedHeaderMap(Vec::new()));
            }
            Some(OwnedHeaderMap(Vec::from_raw_parts(data, size, size)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn reads_pairs_and_bytes_that_are_not_utf8() {
        let bytes = serialize(&[
            (b":path", b"/a?b"),
            (b"user-agent", b"curl/8"),
            (b"x-key", b"caf\xe9"),
            (b"x-empty", b""),
            (b"x-dup", b"1"),
            (b"x-dup", b"2"),
        ]);
        let m = HeaderMapView::parse(&bytes).unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m.get_str(":path"), Some("/a?b"));
        assert_eq!(m.get("x-key"), Some(&b"caf\xe9"[..]));
        assert_eq!(m.get_str("x-key"), None, "not UTF-8: no str, no panic");
        assert_eq!(m.get("x-empty"), Some(&b""[..]));
        assert_eq!(m.get("x-dup"), Some(&b"1"[..]));
        assert!(m.contains("user-agent") && !m.contains("accept"));
        assert_eq!(m.iter().count(), 6);
        assert!(HeaderMapView::parse(b"").unwrap().is_empty());
        assert_eq!(m.cookies(), None);
        let two = serialize(&[(b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2; c=3")]);
        let m = HeaderMapView::parse(&two).unwrap();
        assert_eq!(m.cookies().as_deref(), Some("a=1; b=2; c=3"));
        let one = serialize(&[(b"cookie", b"a=1")]);
        let m = HeaderMapView::parse(&one).unwrap();
        assert!(matches!(
            m.cookies(),
            Some(std::borrow::Cow::Borrowed("a=1"))
        ));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn rejects_every_truncation_and_lying_length() {
        let bytes = serialize(&[(b"a", b"bc"), (b"dd", b"")]);
        for cut in 1..bytes.len() {
            assert!(
                HeaderMapView::parse(&bytes[..cut]).is_none(),
                "cut at {cut}"
            );
        }
        let mut lying = bytes.clone();
        lying[0] = 200; // claims 200 pairs
        assert!(HeaderMapView::parse(&lying).is_none());
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(HeaderMapView::parse(&huge).is_none());
    }

    #[cfg(not(target_arch = "wasm32"))]
    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any bytes: parse never panics, and whatever it accepts iterates within bounds.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
                if let Some(m) = HeaderMapView::parse(&bytes) {
                    prop_assert_eq!(m.iter().count(), m.len());
                }
            }

            /// Serialized maps round-trip.
            #[test]
            fn round_trips(pairs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..20), proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
                let refs: Vec<(&[u8], &[u8])> = pairs.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
                let bytes = serialize(&refs);
                let m = HeaderMapView::parse(&bytes).unwrap();
                let back: Vec<(&[u8], &[u8])> = m.iter().collect();
                prop_assert_eq!(back, refs);
            }
        }
    }
}

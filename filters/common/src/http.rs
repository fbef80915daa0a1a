//! Zero-allocation readers for the parts of a request line and headers that filters look at:
//! path and query, query parameters, cookies, comma-separated header lists.

/// Splits `:path` into the path and the query (without `?`). A fragment, which clients must not
/// send but some do, stays in the query as received.
pub fn split_path(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// Iterates `name=value` pairs of a query string, raw (not percent-decoded): a signature or a
/// token must be compared byte for byte as sent. A pair without `=` has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// The raw value of the first query parameter called `name`.
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query_pairs(query).find(|(k, _)| *k == name).map(|(_, v)| v)
}

/// Iterates `name=value` pairs of a `Cookie` header (RFC 6265 `; ` separators, whitespace
/// tolerated). A pair without `=` is skipped, as browsers do.
pub fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|c| {
        let (k, v) = c.split_once('=')?;
        let v = v.trim();
        // A quoted value is the value without its quotes (RFC 6265 cookie-value).
        let v = v
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .unwrap_or(v);
        Some((k.trim(), v))
    })
}

/// The value of the first cookie called `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    cookie_pairs(header)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Iterates the trimmed, non-empty elements of a comma-separated header value
/// (`accept-encoding: gzip, br`, `x-forwarded-for: a, b`).
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Whether a raw (percent-encoded) query parameter name decodes to `want`: `%5F%5Ftoken%5F%5F`
/// and `__token__` are the same name to an origin that decodes names, so a filter that strips a
/// parameter strips every spelling of it. `+` decodes to a space, as in form encoding.
pub fn param_name_is(raw: &str, want: &str) -> bool {
    if !raw.contains(['%', '+']) {
        return raw == want;
    }
    let b = raw.as_bytes();
    let mut want = want.bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let (decoded, step) = match c {
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => ((h << 4) | l, 3),
                _ => (b'%', 1),
            },
            b'+' => (b' ', 1),
            c => (c, 1),
        };
        if want.next() != Some(decoded) {
            return false;
        }
        i += step;
    }
    want.next().is_none()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Removes the query parameters for which `drop` returns true, keeping every other byte of the
/// path as received (order, encoding, empty pairs). Returns `None` when nothing was removed, so the
/// caller can skip rewriting `:path`.
pub fn strip_query_params(path: &str, mut drop: impl FnMut(&str) -> bool) -> Option<String> {
    let (base, query) = split_path(path);
    let query = query?;
    let mut removed = false;
    let mut out = String::with_capacity(path.len());
    out.push_str(base);
    let mut first = true;
    for part in query.split('&') {
        let name = part.split_once('=').map_or(part, |(k, _)| k);
        if !part.is_empty() && drop(name) {
            removed = true;
            continue;
        }
        out.push(if first { '?' } else { '&' });
        out.push_str(part);
        first = false;
    }
    removed.then_some(out)
}

/// Removes the cookies for which `drop` returns true from a `Cookie` header, keeping every other
/// cookie byte for byte, joined with `; `. `None` when nothing was removed; `Some("")` when every
/// cookie was (the caller removes the header).
pub fn strip_cookies(header: &str, mut drop: impl FnMut(&str) -> bool) -> Option<String> {
    let mut removed = false;
    let mut out = String::with_capacity(header.len());
    for c in header.split(';') {
        let name = c.split_once('=').map_or(c, |(k, _)| k).trim();
        if drop(name) {
            removed = true;
            continue;
        }
        let c = c.trim();
        if c.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(c);
    }
    removed.then_some(out)
}

/// Appends `name=value` to a path's query (after any existing parameters).
pub fn append_query_param(path: &mut String, name: &str, value: &str) {
    path.push(if path.contains('?') { '&' } else { '?' });
    path.push_str(name);
    path.push('=');
    path.push_str(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn strips_cookies_and_appends_params() {
        assert_eq!(
            strip_cookies("a=1; __token__=x;b=2", |n| n == "__token__").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(
            strip_cookies("__token__=x", |n| n == "__token__").as_deref(),
            Some("")
        );
        assert_eq!(strip_cookies("a=1; b=2", |n| n == "c"), None);
        let mut p = "/a".to_string();
        append_query_param(&mut p, "x", "1");
        append_query_param(&mut p, "y", "2");
        assert_eq!(p, "/a?x=1&y=2");
    }
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn param_names_match_every_spelling() {
        assert!(param_name_is("__token__", "__token__"));
        assert!(param_name_is("%5F%5Ftoken%5F%5F", "__token__"));
        assert!(param_name_is("%5f_tok%65n__", "__token__"));
        assert!(param_name_is("a+b", "a b"));
        assert!(!param_name_is("__token_", "__token__"));
        assert!(!param_name_is("__token__x", "__token__"));
        assert!(!param_name_is("%5F%5Ftoken%5F", "__token__"));
        assert!(!param_name_is("%zz", "__token__"));
        assert!(param_name_is("%", "%"));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn splits_paths() {
        assert_eq!(split_path("/a/b?x=1&y"), ("/a/b", Some("x=1&y")));
        assert_eq!(split_path("/a"), ("/a", None));
        assert_eq!(split_path("/a?"), ("/a", Some("")));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn reads_query_params_raw() {
        let q = "Expires=1549751401&KeyName=my-key&Signature=CRFq%3D&flag&=v";
        assert_eq!(query_param(q, "KeyName"), Some("my-key"));
        assert_eq!(query_param(q, "Signature"), Some("CRFq%3D"));
        assert_eq!(query_param(q, "flag"), Some(""));
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(
            query_pairs("a=1&&b=2").collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2")]
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn reads_cookies() {
        let h = "a=1; stage=canary;b=\"quoted\" ; junk; c=";
        assert_eq!(cookie(h, "stage"), Some("canary"));
        assert_eq!(cookie(h, "b"), Some("quoted"));
        assert_eq!(cookie(h, "c"), Some(""));
        assert_eq!(cookie(h, "junk"), None);
        assert_eq!(cookie(h, "stag"), None);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn lists_items() {
        assert_eq!(
            list_items(" gzip, ,br ,").collect::<Vec<_>>(),
            vec!["gzip", "br"]
        );
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn strips_only_named_params_and_keeps_the_rest_byte_exact() {
        let drop = |n: &str| n == "__token__" || n == "sig";
        assert_eq!(
            strip_query_params("/v?a=%2F&__token__=x~y&b&sig=1", drop).as_deref(),
            Some("/v?a=%2F&b")
        );
        assert_eq!(
            strip_query_params("/v?__token__=x", drop).as_deref(),
            Some("/v")
        );
        assert_eq!(strip_query_params("/v?a=1", drop), None);
        assert_eq!(strip_query_params("/v", drop), None);
    }
}

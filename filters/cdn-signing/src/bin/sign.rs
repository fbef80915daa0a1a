//! `cargo run -p cdn-signing --bin sign -- <scheme> [options]`: mints signed URLs and tokens, for
//! testing a setup. Prints the token or URL on stdout.
//!
//!   sign akamai  --key HEX [--algorithm sha256|sha1|md5] (--acl ACL | --url PATH) [--start UNIX]
//!                (--exp UNIX | --ttl SECONDS) [--ip IP] [--id ID] [--data DATA] [--salt SALT] [--escape-early]
//!   sign google  --key-name NAME --key BASE64URL (--url URL | --prefix URL [--cookie]) (--exp UNIX | --ttl SECONDS)
//!   sign cloudfront --key-pair-id ID --private-key PEM_FILE --url URL [--resource PATTERN] [--start UNIX]
//!                [--ip CIDR] [--sha256] [--cookie] (--exp UNIX | --ttl SECONDS)
//!   sign nginx   --expression EXPR --uri PATH --remote-addr IP [--host HOST] (--exp UNIX | --ttl SECONDS) [--hmac-key KEY]
//!
//! `--ttl` counts from now. CloudFront uses a canned policy for `--url` unless `--resource`,
//! `--start` or `--ip` asks for a custom one; `--cookie` prints `CloudFront-*` cookies instead. The nginx form prints the `md5`/`expires` query to append to the URI.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use cdn_signing::schemes::{akamai, cloudfront, google, secure_link};

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sign: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let (scheme, rest) = args.split_first().ok_or(
        "usage: sign akamai|google|cloudfront|nginx [options] (see --help in the source header)",
    )?;
    let mut opts: HashMap<&str, String> = HashMap::new();
    let mut flags: Vec<&str> = Vec::new();
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {a:?}"))?;
        match name {
            "escape-early" | "cookie" | "sha256" => flags.push(name),
            _ => {
                let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                opts.insert(name, v.clone());
            }
        }
    }
    let get = |k: &str| opts.get(k).map(String::as_str);
    let need = |k: &str| get(k).ok_or_else(|| format!("--{k} is required"));
    let num = |k: &str| -> Result<Option<u64>, String> {
        get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("--{k} must be a number"))
            })
            .transpose()
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let exp = match (num("exp")?, num("ttl")?) {
        (Some(e), None) => e,
        (None, Some(t)) => now + t,
        _ => return Err("give exactly one of --exp or --ttl".into()),
    };
    match scheme.as_str() {
        "akamai" => {
            let key = akamai::decode_hex_key(need("key")?)
                .ok_or("--key must be an even number of hex digits")?;
            let alg = akamai::Algorithm::parse(get("algorithm").unwrap_or("sha256"))
                .ok_or("--algorithm: sha256, sha1 or md5")?;
            if get("acl").is_some() == get("url").is_some() {
                return Err("give exactly one of --acl or --url".into());
            }
            let spec = akamai::TokenSpec {
                ip: get("ip"),
                start: num("start")?,
                exp,
                acl: get("acl"),
                url: get("url"),
                id: get("id"),
                data: get("data"),
                salt: get("salt"),
                escape_early: flags.contains(&"escape-early"),
            };
            Ok(akamai::generate(&key, alg, &spec))
        }
        "google" => {
            let key = google::decode_key(need("key")?).ok_or("--key must be base64url")?;
            let name = need("key-name")?;
            match (get("url"), get("prefix")) {
                (Some(url), None) => Ok(google::sign_url(url, name, &key, exp)),
                (None, Some(p)) if flags.contains(&"cookie") => Ok(format!(
                    "Cloud-CDN-Cookie={}",
                    google::sign_cookie(p, name, &key, exp)
                )),
                (None, Some(p)) => Ok(google::sign_prefix(p, name, &key, exp)),
                _ => Err("give exactly one of --url or --prefix".into()),
            }
        }
        "cloudfront" => {
            let path = need("private-key")?;
            let pem =
                std::fs::read_to_string(path).map_err(|e| format!("--private-key {path}: {e}"))?;
            let key = cloudfront::parse_private_key(&pem)?;
            let signer =
                cloudfront::CfSigner::new(need("key-pair-id")?, key, flags.contains(&"sha256"));
            let url = need("url")?;
            let start = num("start")?;
            let custom = get("resource").is_some() || start.is_some() || get("ip").is_some();
            let policy = custom.then(|| {
                cloudfront::custom_policy(get("resource").unwrap_or(url), exp, start, get("ip"))
            });
            if flags.contains(&"cookie") {
                let cookies: Vec<String> = signer
                    .fields(url, exp, policy.as_deref())
                    .into_iter()
                    .map(|(k, v)| format!("CloudFront-{k}={v}"))
                    .collect();
                Ok(cookies.join("; "))
            } else {
                Ok(signer.sign_url(url, exp, policy.as_deref()))
            }
        }
        "nginx" => {
            let parts = secure_link::parse_template(need("expression")?)?;
            let expires = exp.to_string();
            let vars = secure_link::Vars {
                expires: &expires,
                uri: need("uri")?,
                remote_addr: get("remote-addr").unwrap_or(""),
                host: get("host").unwrap_or(""),
            };
            let token = secure_link::token(&parts, &vars, get("hmac-key").map(str::as_bytes));
            Ok(format!("md5={token}&expires={expires}"))
        }
        other => Err(format!(
            "unknown scheme {other:?}: akamai, google, cloudfront or nginx"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::run;

    fn args(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn mints_the_known_answers() {
        assert_eq!(
            run(args("google --key-name my-key --key nZtRohdNF9m3cKM24IcK4w== --url http://35.186.234.33/index.html --exp 1549751401")).unwrap(),
            "http://35.186.234.33/index.html?Expires=1549751401&KeyName=my-key&Signature=CRFqQnVfFyiUyR63OQf-HRUpIwc="
        );
        assert_eq!(
            run(vec![
                "nginx".into(),
                "--expression".into(),
                "$secure_link_expires$uri$remote_addr secret".into(),
                "--uri".into(),
                "/s/link".into(),
                "--remote-addr".into(),
                "127.0.0.1".into(),
                "--exp".into(),
                "2147483647".into()
            ])
            .unwrap(),
            "md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647"
        );
        assert_eq!(
            run(args("akamai --key 52a152a152a152a152a152a152a1 --start 1700000000 --exp 1700003600 --acl /videos/*!/images/*")).unwrap(),
            "st=1700000000~exp=1700003600~acl=/videos/*!/images/*~hmac=d54fe247515ce6d48c54471b894c3d093c667e257119231ba0b30494a9afe899"
        );
        assert!(run(args("akamai --key abc --exp 1 --acl /x"))
            .unwrap_err()
            .contains("hex"));
        assert!(run(args(
            "google --key-name k --key nZtRohdNF9m3cKM24IcK4w== --url u"
        ))
        .unwrap_err()
        .contains("--exp or --ttl"));
        assert!(run(args("fastly --exp 1"))
            .unwrap_err()
            .contains("unknown scheme"));
    }
}

//! `cargo run -p cdn-signing --bin sign -- <scheme> [options]`: mints signed URLs and tokens, for
//! testing a setup. Prints the token or URL on stdout. `sign --help` and `sign <scheme> --help`
//! list the options:
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

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use cdn_signing::schemes::{akamai, cloudfront, google, secure_link};
use clap::{Args, Parser, Subcommand};

/// Mints signed URLs and tokens the cdn-signing filter verifies, for testing a setup. Prints the
/// token, URL, cookie or query on stdout.
#[derive(Parser, Debug)]
#[command(name = "sign", version)]
struct Cli {
    #[command(subcommand)]
    scheme: Scheme,
}

/// When the token expires: exactly one of `--exp` and `--ttl`.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct Expiry {
    /// Expiry, Unix seconds.
    #[arg(long)]
    exp: Option<u64>,
    /// Lifetime in seconds from now.
    #[arg(long)]
    ttl: Option<u64>,
}

impl Expiry {
    fn at(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        match (self.exp, self.ttl) {
            (Some(e), _) => e,
            (None, Some(t)) => now.saturating_add(t),
            (None, None) => now,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Scheme {
    /// Akamai EdgeAuth token (`st=..~exp=..~acl=..~hmac=..`).
    Akamai {
        /// The key, hex.
        #[arg(long)]
        key: String,
        /// sha256, sha1 or md5.
        #[arg(long, default_value = "sha256")]
        algorithm: String,
        /// ACL the token grants (`/videos/*`, several joined with `!`).
        #[arg(long, conflicts_with = "url", required_unless_present = "url")]
        acl: Option<String>,
        /// A single URL path the token grants.
        #[arg(long)]
        url: Option<String>,
        /// Start, Unix seconds.
        #[arg(long)]
        start: Option<u64>,
        #[command(flatten)]
        expiry: Expiry,
        /// Bind the token to this client IP.
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        data: Option<String>,
        #[arg(long)]
        salt: Option<String>,
        /// Escape the fields before signing (EdgeAuth's escape_early).
        #[arg(long)]
        escape_early: bool,
    },
    /// Google Cloud CDN signed URL, URL prefix or cookie.
    Google {
        #[arg(long)]
        key_name: String,
        /// The key, base64url.
        #[arg(long)]
        key: String,
        /// Sign this URL.
        #[arg(long, conflicts_with = "prefix", required_unless_present = "prefix")]
        url: Option<String>,
        /// Sign this URL prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// With --prefix: print a `Cloud-CDN-Cookie` instead.
        #[arg(long, requires = "prefix")]
        cookie: bool,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// CloudFront signed URL or cookies (canned policy, or custom with --resource/--start/--ip).
    Cloudfront {
        #[arg(long)]
        key_pair_id: String,
        /// PEM file of the RSA private key.
        #[arg(long)]
        private_key: String,
        #[arg(long)]
        url: String,
        /// Resource pattern of a custom policy (default: the URL).
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        start: Option<u64>,
        /// Client CIDR of a custom policy.
        #[arg(long)]
        ip: Option<String>,
        /// RSA-SHA256 signatures (CloudFront's newer hash), else SHA-1.
        #[arg(long)]
        sha256: bool,
        /// Print `CloudFront-*` cookies instead of a URL.
        #[arg(long)]
        cookie: bool,
        #[command(flatten)]
        expiry: Expiry,
    },
    /// nginx secure_link: the `md5=..&expires=..` query to append to the URI.
    Nginx {
        /// The secure_link_md5 expression, e.g. `$secure_link_expires$uri$remote_addr secret`.
        #[arg(long)]
        expression: String,
        #[arg(long)]
        uri: String,
        #[arg(long, default_value = "")]
        remote_addr: String,
        #[arg(long, default_value = "")]
        host: String,
        /// HMAC key (the filter's HMAC variant), else MD5.
        #[arg(long)]
        hmac_key: Option<String>,
        #[command(flatten)]
        expiry: Expiry,
    },
}

fn main() -> ExitCode {
    match Cli::try_parse() {
        Err(e) => e.exit(),
        Ok(cli) => match mint(cli.scheme) {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sign: {e}");
                ExitCode::from(2)
            }
        },
    }
}

/// Parses `args` (without the program name) and mints (tests).
#[cfg(test)]
fn run(args: Vec<String>) -> Result<String, String> {
    let cli = Cli::try_parse_from(std::iter::once("sign".to_string()).chain(args))
        .map_err(|e| e.to_string())?;
    mint(cli.scheme)
}

fn mint(scheme: Scheme) -> Result<String, String> {
    match scheme {
        Scheme::Akamai {
            key,
            algorithm,
            acl,
            url,
            start,
            expiry,
            ip,
            id,
            data,
            salt,
            escape_early,
        } => {
            let key =
                akamai::decode_hex_key(&key).ok_or("--key must be an even number of hex digits")?;
            let alg =
                akamai::Algorithm::parse(&algorithm).ok_or("--algorithm: sha256, sha1 or md5")?;
            let spec = akamai::TokenSpec {
                ip: ip.as_deref(),
                start,
                exp: expiry.at(),
                acl: acl.as_deref(),
                url: url.as_deref(),
                id: id.as_deref(),
                data: data.as_deref(),
                salt: salt.as_deref(),
                escape_early,
            };
            Ok(akamai::generate(&key, alg, &spec))
        }
        Scheme::Google {
            key_name,
            key,
            url,
            prefix,
            cookie,
            expiry,
        } => {
            let key = google::decode_key(&key).ok_or("--key must be base64url")?;
            let exp = expiry.at();
            match (url, prefix) {
                (Some(url), _) => Ok(google::sign_url(&url, &key_name, &key, exp)),
                (None, Some(p)) if cookie => Ok(format!(
                    "Cloud-CDN-Cookie={}",
                    google::sign_cookie(&p, &key_name, &key, exp)
                )),
                (None, Some(p)) => Ok(google::sign_prefix(&p, &key_name, &key, exp)),
                (None, None) => Err("give --url or --prefix".into()),
            }
        }
        Scheme::Cloudfront {
            key_pair_id,
            private_key,
            url,
            resource,
            start,
            ip,
            sha256,
            cookie,
            expiry,
        } => {
            let pem = std::fs::read_to_string(&private_key)
                .map_err(|e| format!("--private-key {private_key}: {e}"))?;
            let key = cloudfront::parse_private_key(&pem)?;
            let signer = cloudfront::CfSigner::new(&key_pair_id, key, sha256);
            let exp = expiry.at();
            let custom = resource.is_some() || start.is_some() || ip.is_some();
            let policy = custom.then(|| {
                cloudfront::custom_policy(
                    resource.as_deref().unwrap_or(&url),
                    exp,
                    start,
                    ip.as_deref(),
                )
            });
            if cookie {
                let cookies: Vec<String> = signer
                    .fields(&url, exp, policy.as_deref())
                    .into_iter()
                    .map(|(k, v)| format!("CloudFront-{k}={v}"))
                    .collect();
                Ok(cookies.join("; "))
            } else {
                Ok(signer.sign_url(&url, exp, policy.as_deref()))
            }
        }
        Scheme::Nginx {
            expression,
            uri,
            remote_addr,
            host,
            hmac_key,
            expiry,
        } => {
            let parts = secure_link::parse_template(&expression)?;
            let expires = expiry.at().to_string();
            let vars = secure_link::Vars {
                expires: &expires,
                uri: &uri,
                remote_addr: &remote_addr,
                host: &host,
            };
            let token = secure_link::token(&parts, &vars, hmac_key.as_deref().map(str::as_bytes));
            Ok(format!("md5={token}&expires={expires}"))
        }
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
        .contains("--exp <EXP>|--ttl <TTL>"));
        assert!(run(args("fastly --exp 1"))
            .unwrap_err()
            .contains("unrecognized subcommand 'fastly'"));
    }
}

//! cdn_signing.wasm (verify and sign modes) in real Envoy (`--concurrency 2`): Google Cloud CDN signed URLs,
//! nginx secure_link (the published vector) and Akamai EdgeAuth ACL tokens; valid ones pass with
//! the token stripped, every tamper, expiry and absence is refused with its reason; under load
//! every response is right.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cdn_signing::schemes::akamai::{self, Algorithm, TokenSpec};
use cdn_signing::schemes::google;
use edge_tests::client::RequestSpec;
use edge_tests::echo::EchoReply;
use edge_tests::{Gateway, Load, RunningGateway};
use serde_json::json;

const GOOGLE_KEY: &str = "nZtRohdNF9m3cKM24IcK4w==";
const AKAMAI_KEY: &str = "52a152a152a152a152a152a152a1";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A CloudFront key pair made at test time by `cryptography`: (public key PEM, private key PEM).
fn cloudfront_keys() -> (String, String) {
    let script = "from cryptography.hazmat.primitives import serialization as s\nfrom cryptography.hazmat.primitives.asymmetric import rsa\nk=rsa.generate_private_key(public_exponent=65537,key_size=2048)\nprint(k.public_key().public_bytes(s.Encoding.PEM,s.PublicFormat.SubjectPublicKeyInfo).decode()+'|'+k.private_bytes(s.Encoding.PEM,s.PrivateFormat.PKCS8,s.NoEncryption()).decode(),end='')";
    let text = python(script);
    let (public, private) = text.split_once('|').unwrap();
    (public.to_string(), private.to_string())
}

/// botocore's CloudFrontSigner signs `url` (canned policy) with the private key.
fn cloudfront_sign(private: &str, url: &str, expires: u64) -> String {
    let script = format!(
        "import datetime\nfrom botocore.signers import CloudFrontSigner\nfrom cryptography.hazmat.primitives import hashes, serialization\nfrom cryptography.hazmat.primitives.asymmetric import padding\nk=serialization.load_pem_private_key({private:?}.encode(),None)\ns=CloudFrontSigner('KCF1',lambda m:k.sign(m,padding.PKCS1v15(),hashes.SHA1()))\nprint(s.generate_presigned_url({url:?},date_less_than=datetime.datetime.fromtimestamp({expires},datetime.timezone.utc)),end='')"
    );
    python(&script)
}

async fn gateway() -> RunningGateway {
    gateway_with(None).await
}

async fn gateway_with(cloudfront_pem: Option<&str>) -> RunningGateway {
    gateway_opts(cloudfront_pem, false, 2).await
}

/// The test gateway with Envoy's path normalisation on or off, at `workers` workers.
async fn gateway_opts(
    cloudfront_pem: Option<&str>,
    normalize: bool,
    workers: u32,
) -> RunningGateway {
    let mut config = json!({
        "leeway_seconds": 0,
        "expired_status": 410,
        "routes": [
            {"name": "google", "path_prefix": "/g/", "verify": {"scheme": "google_cdn", "keys": {"my-key": GOOGLE_KEY}}},
            {"name": "nginx", "path_prefix": "/s/", "verify": {"scheme": "secure_link",
                "expression": "$secure_link_expires$uri$remote_addr secret"}},
            {"name": "akamai", "path_prefix": "/videos/", "verify": {"scheme": "akamai_edgeauth",
                "keys": [{"hex": "00ff"}, {"hex": AKAMAI_KEY}]}}
        ]
    });
    if let Some(routes) = config["routes"].as_array_mut() {
        routes.push(json!({"name": "akamai_cookie", "path_prefix": "/ck/", "verify": {"scheme": "akamai_edgeauth",
            "location": "cookie", "keys": [{"hex": AKAMAI_KEY}]}}));
        routes.push(
            json!({"name": "media", "path_prefix": "/media/", "verify": {"scheme": "google_cdn",
            "keys": {"my-key": GOOGLE_KEY}}}),
        );
        routes.push(
            json!({"name": "tls", "path_prefix": "/tls/", "scheme": "https",
            "verify": {"scheme": "google_cdn", "keys": {"my-key": GOOGLE_KEY}}}),
        );
        if let Some(pem) = cloudfront_pem {
            routes.push(json!({"name": "cf", "path_prefix": "/cf/", "verify": {"scheme": "cloudfront", "keys": {"KCF1": pem}}}));
        }
    }
    Gateway::new()
        .runtime(common::runtime())
        .wasm(common::filter("cdn_signing", config))
        .echo_cluster("prod")
        .workers(workers)
        .normalize_paths(normalize)
        .xff_num_trusted_hops(1)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The path and query of a Google-signed URL for this gateway (the signature covers the host).
fn google_path(gw: &RunningGateway, path: &str, expires: u64) -> String {
    let key = google::decode_key(GOOGLE_KEY).unwrap();
    let signed = google::sign_url(&format!("{}{path}", gw.url), "my-key", &key, expires);
    signed.strip_prefix(&gw.url).unwrap().to_string()
}

async fn reason(
    gw: &RunningGateway,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Option<String>) {
    let r = gw.get(path, headers).await.unwrap();
    (
        r.status,
        r.header("x-cdn-signing-reason").map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_signed_urls_verify_strip_and_refuse_with_reasons() {
    let gw = gateway().await;
    let ok = google_path(&gw, "/g/movie.mp4?quality=hd", now() + 600);
    let seen: EchoReply = gw.echo(&ok, &[]).await.unwrap();
    assert_eq!(
        seen.uri, "/g/movie.mp4?quality=hd",
        "signature parameters stripped, the rest intact"
    );
    assert_eq!(
        reason(&gw, "/g/movie.mp4", &[]).await,
        (403, Some("missing".into()))
    );
    assert_eq!(
        reason(&gw, &ok.replace("movie", "other"), &[]).await,
        (403, Some("bad_signature".into()))
    );
    assert_eq!(
        reason(&gw, &ok.replace("quality=hd", "quality=4k"), &[]).await,
        (403, Some("bad_signature".into()))
    );
    let expired = google_path(&gw, "/g/movie.mp4", now() - 10);
    assert_eq!(
        reason(&gw, &expired, &[]).await,
        (410, Some("expired".into()))
    );
    let r = gw.get(&expired, &[]).await.unwrap();
    assert_eq!(
        r.text(),
        "{\"error\":\"invalid_token\",\"reason\":\"expired\"}\n"
    );
    // Unprotected paths pass untouched.
    assert_eq!(
        gw.echo("/public?Signature=x", &[]).await.unwrap().uri,
        "/public?Signature=x"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.stat("wasmcustom.cdn_signing.google.valid")
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        gw.stat("wasmcustom.cdn_signing.google.bad_signature")
            .await
            .unwrap(),
        Some(2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_secure_link_published_vector_and_akamai_acl_tokens() {
    let gw = gateway().await;
    // nginx's documented example: expires 2147483647, uri /s/link, client 127.0.0.1.
    let link = "/s/link?md5=_e4Nc3iduzkWRm01TBBNYw&expires=2147483647";
    let seen = gw
        .echo(link, &[("x-forwarded-for", "127.0.0.1")])
        .await
        .unwrap();
    assert_eq!(seen.uri, "/s/link");
    assert_eq!(
        reason(&gw, link, &[("x-forwarded-for", "127.0.0.2")]).await,
        (403, Some("bad_signature".into()))
    );
    assert_eq!(
        reason(&gw, "/s/link?expires=2147483647", &[]).await,
        (403, Some("missing".into()))
    );

    let key = akamai::decode_hex_key(AKAMAI_KEY).unwrap();
    let tok = akamai::generate(
        &key,
        Algorithm::Sha256,
        &TokenSpec {
            start: Some(now() - 60),
            exp: now() + 600,
            acl: Some("/videos/*"),
            ..Default::default()
        },
    );
    let seen = gw
        .echo(&format!("/videos/a/1.ts?__token__={tok}&x=1"), &[])
        .await
        .unwrap();
    assert_eq!(seen.uri, "/videos/a/1.ts?x=1");
    let narrow = akamai::generate(
        &key,
        Algorithm::Sha256,
        &TokenSpec {
            exp: now() + 600,
            acl: Some("/videos/free/*"),
            ..Default::default()
        },
    );
    assert_eq!(
        reason(&gw, &format!("/videos/paid/1.ts?__token__={narrow}"), &[]).await,
        (403, Some("wrong_scope".into()))
    );
    let future = akamai::generate(
        &key,
        Algorithm::Sha256,
        &TokenSpec {
            start: Some(now() + 3600),
            exp: now() + 7200,
            acl: Some("/*"),
            ..Default::default()
        },
    );
    assert_eq!(
        reason(&gw, &format!("/videos/1.ts?__token__={future}"), &[]).await,
        (403, Some("not_yet_valid".into()))
    );
    assert_eq!(
        reason(&gw, "/videos/1.ts?__token__=exp=oops~hmac=00", &[]).await,
        (403, Some("malformed".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudfront_urls_signed_by_botocore_verify_in_envoy() {
    let (public, private) = cloudfront_keys();
    let gw = gateway_with(Some(&public)).await;
    let signed = cloudfront_sign(
        &private,
        &format!("{}/cf/movie.mp4?q=1", gw.url),
        now() + 600,
    );
    let path = signed.strip_prefix(&gw.url).unwrap().to_string();
    let seen = gw.echo(&path, &[]).await.unwrap();
    assert_eq!(
        seen.uri, "/cf/movie.mp4?q=1",
        "CloudFront parameters stripped"
    );
    assert_eq!(
        reason(&gw, &path.replace("q=1", "q=2"), &[]).await,
        (403, Some("bad_signature".into()))
    );
    let expired = cloudfront_sign(&private, &format!("{}/cf/movie.mp4", gw.url), now() - 5);
    assert_eq!(
        reason(&gw, expired.strip_prefix(&gw.url).unwrap(), &[]).await,
        (410, Some("expired".into()))
    );
}

/// Runs Python in the project's `.venv` and returns its stdout.
fn python(script: &str) -> String {
    let py = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let out = std::process::Command::new(py)
        .args(["-c", script])
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The `exp=` of an EdgeAuth token.
fn token_exp(token: &str) -> u64 {
    token
        .split('~')
        .find_map(|f| f.strip_prefix("exp="))
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("no exp in {token}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_tokens_verify_and_only_the_token_cookies_are_stripped() {
    let (public, private) = cloudfront_keys();
    let gw = gateway_with(Some(&public)).await;
    let key = akamai::decode_hex_key(AKAMAI_KEY).unwrap();
    let tok = akamai::generate(
        &key,
        Algorithm::Sha256,
        &TokenSpec {
            exp: now() + 600,
            acl: Some("/ck/*"),
            ..Default::default()
        },
    );
    let cookie = format!("sid=abc; __token__={tok}; theme=dark");
    let seen = gw.echo("/ck/a.ts", &[("cookie", &cookie)]).await.unwrap();
    assert_eq!(seen.header("cookie"), Some("sid=abc; theme=dark"));
    assert_eq!(
        reason(&gw, "/ck/a.ts", &[("cookie", "sid=abc")]).await,
        (403, Some("missing".into()))
    );
    let forged = cookie.replace("hmac=", "hmac=0");
    assert_eq!(
        reason(&gw, "/ck/a.ts", &[("cookie", &forged)]).await,
        (403, Some("bad_signature".into()))
    );

    // CloudFront signed cookies (custom policy over a wildcard), minted by botocore.
    let script = format!(
        "import datetime\nfrom botocore.signers import CloudFrontSigner\nfrom cryptography.hazmat.primitives import hashes, serialization\nfrom cryptography.hazmat.primitives.asymmetric import padding\nk=serialization.load_pem_private_key({private:?}.encode(),None)\ns=CloudFrontSigner('KCF1',lambda m:k.sign(m,padding.PKCS1v15(),hashes.SHA1()))\np=s.build_policy({res:?},datetime.datetime.fromtimestamp({exp},datetime.timezone.utc))\nimport base64\nb=lambda v: base64.b64encode(v).decode().replace('+','-').replace('=','_').replace('/','~')\nprint('CloudFront-Policy='+b(p.encode())+'; CloudFront-Signature='+b(k.sign(p.encode(),padding.PKCS1v15(),hashes.SHA1()))+'; CloudFront-Key-Pair-Id=KCF1',end='')",
        res = format!("{}/cf/*", gw.url),
        exp = now() + 600
    );
    let cf = python(&script);
    let seen = gw
        .echo("/cf/b.mp4", &[("cookie", &format!("{cf}; sid=1"))])
        .await
        .unwrap();
    assert_eq!(seen.header("cookie"), Some("sid=1"));
    let tampered = cf.replace("KCF1", "KCF2");
    assert_eq!(
        reason(&gw, "/cf/b.mp4", &[("cookie", &tampered)]).await,
        (403, Some("bad_signature".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_mode_adds_tokens_the_references_accept() {
    let (public, private) = cloudfront_keys();
    let key_hex = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let config = json!({
        "routes": [
            {"name": "acl", "path_prefix": "/oa/", "sign": {"scheme": "akamai_edgeauth",
                "key": {"hex": key_hex}, "acl": "/oa/*", "lifetime_seconds": 600}},
            {"name": "url", "path_prefix": "/ou/", "sign": {"scheme": "akamai_edgeauth",
                "key": {"hex": key_hex, "algorithm": "sha1"}, "location": "header",
                "token_name": "x-origin-token", "lifetime_seconds": 60}},
            {"name": "g", "path_prefix": "/og/", "sign": {"scheme": "google_cdn", "key_name": "my-key",
                "key": GOOGLE_KEY, "base_url": "https://origin.example", "lifetime_seconds": 120}},
            {"name": "cf", "path_prefix": "/oc/", "sign": {"scheme": "cloudfront", "key_pair_id": "KCF1",
                "private_key": private, "resource": "https://origin.example/oc/*", "location": "cookie",
                "hash_algorithm": "sha256", "lifetime_seconds": 300}},
            // Verify the client's token, then sign for the origin with another scheme.
            {"name": "chain", "path_prefix": "/chain/", "verify": {"scheme": "akamai_edgeauth",
                "location": "header", "token_name": "x-edge-token", "keys": [{"hex": AKAMAI_KEY}]},
             "sign": {"scheme": "secure_link", "expression": "$secure_link_expires$uri$remote_addr secret",
                "remote_addr": "10.0.0.1", "lifetime_seconds": 60}}
        ]
    });
    let gw = Gateway::new()
        .runtime(common::runtime())
        .wasm(common::filter("cdn_signing", config))
        .echo_cluster("prod")
        .workers(2)
        .start()
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));

    // Akamai ACL token in the query, replacing a client-sent one; equal to the reference's.
    let seen = gw.echo("/oa/v.ts?x=1&__token__=forged", &[]).await.unwrap();
    let tok = seen
        .uri
        .strip_prefix("/oa/v.ts?x=1&__token__=")
        .unwrap_or_else(|| panic!("upstream saw {}", seen.uri))
        .to_string();
    let exp = token_exp(&tok);
    assert!((now() + 590..=now() + 600).contains(&exp), "exp {exp}");
    let theirs = python(&format!(
        "from akamai.edgeauth import EdgeAuth\nprint(EdgeAuth(key={key_hex:?}, end_time={exp}).generate_acl_token('/oa/*'), end='')"
    ));
    assert_eq!(tok, theirs);
    // Each worker mints once and reuses its token: at most one per worker (two) over many requests.
    let mut tokens = std::collections::BTreeSet::new();
    for i in 0..20 {
        let seen = gw.echo(&format!("/oa/{i}.ts"), &[]).await.unwrap();
        let t = seen
            .uri
            .split_once("?__token__=")
            .map(|(_, t)| t.to_string())
            .unwrap_or_else(|| panic!("upstream saw {}", seen.uri));
        tokens.insert(t);
    }
    assert!((1..=2).contains(&tokens.len()), "{tokens:?}");

    // Akamai URL token (SHA-1) in a header.
    let seen = gw.echo("/ou/a/b.mp4?q=1", &[]).await.unwrap();
    assert_eq!(seen.uri, "/ou/a/b.mp4?q=1");
    let tok = seen
        .header("x-origin-token")
        .expect("token header")
        .to_string();
    let exp = token_exp(&tok);
    let theirs = python(&format!(
        "from akamai.edgeauth import EdgeAuth\nprint(EdgeAuth(key={key_hex:?}, algorithm='sha1', end_time={exp}).generate_url_token('/ou/a/b.mp4'), end='')"
    ));
    assert_eq!(tok, theirs);

    // Google signed URL for the origin's base URL.
    let seen = gw.echo("/og/i.png?w=10", &[]).await.unwrap();
    let exp: u64 = seen
        .uri
        .split("Expires=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("upstream saw {}", seen.uri));
    let want = google::sign_url(
        "https://origin.example/og/i.png?w=10",
        "my-key",
        &google::decode_key(GOOGLE_KEY).unwrap(),
        exp,
    );
    assert_eq!(format!("https://origin.example{}", seen.uri), want);

    // CloudFront signed cookies (SHA-256 custom policy): cryptography verifies them.
    let seen = gw.echo("/oc/x.mp4", &[("cookie", "sid=7")]).await.unwrap();
    let cookie = seen.header("cookie").expect("cookie").to_string();
    assert!(cookie.starts_with("sid=7; CloudFront-Policy="), "{cookie}");
    let verified = python(&format!(
        "import base64, json\nfrom cryptography.hazmat.primitives import hashes, serialization\nfrom cryptography.hazmat.primitives.asymmetric import padding\npub=serialization.load_pem_public_key({public:?}.encode())\nc=dict(p.split('=',1) for p in {cookie:?}.split('; '))\nu=lambda v: base64.b64decode(v.replace('-','+').replace('_','=').replace('~','/'))\npol=u(c['CloudFront-Policy'])\npub.verify(u(c['CloudFront-Signature']),pol,padding.PKCS1v15(),hashes.SHA256())\nprint(json.loads(pol)['Statement'][0]['Resource'], c['CloudFront-Key-Pair-Id'], c['CloudFront-Hash-Algorithm'], end='')"
    ));
    assert_eq!(verified, "https://origin.example/oc/* KCF1 SHA256");

    // Verify then sign: the client's header token is checked and removed, the origin gets a
    // secure_link for its own view of the client address.
    let key = akamai::decode_hex_key(AKAMAI_KEY).unwrap();
    let edge = akamai::generate(
        &key,
        Algorithm::Sha256,
        &TokenSpec {
            exp: now() + 600,
            acl: Some("/chain/*"),
            ..Default::default()
        },
    );
    let seen = gw
        .echo("/chain/f.bin", &[("x-edge-token", &edge)])
        .await
        .unwrap();
    assert_eq!(seen.header("x-edge-token"), None, "verified token stripped");
    let q = seen.query.clone().unwrap_or_default();
    let expires: u64 = q
        .split("expires=")
        .nth(1)
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| panic!("upstream saw {}", seen.uri));
    let parts = cdn_signing::schemes::secure_link::parse_template(
        "$secure_link_expires$uri$remote_addr secret",
    )
    .unwrap();
    let md5 = cdn_signing::schemes::secure_link::token(
        &parts,
        &cdn_signing::schemes::secure_link::Vars {
            expires: &expires.to_string(),
            uri: "/chain/f.bin",
            remote_addr: "10.0.0.1",
            host: "",
        },
        None,
    );
    assert_eq!(q, format!("md5={md5}&expires={expires}"));
    assert_eq!(
        reason(&gw, "/chain/f.bin", &[]).await,
        (403, Some("missing".into()))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.stat("wasmcustom.cdn_signing.acl.signed").await.unwrap(),
        Some(21)
    );
    assert_eq!(
        gw.stat("wasmcustom.cdn_signing.chain.signed")
            .await
            .unwrap(),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_valid_and_invalid_tokens_under_load() {
    let gw = gateway().await;
    let good = google_path(&gw, "/g/seg.ts", now() + 600);
    let bad = good.replace("seg.ts", "seh.ts");
    let expired = google_path(&gw, "/g/seg.ts", now() - 60);
    let report = Load::new(&gw.url)
        .connections(32)
        .max_requests(2_000)
        .request(move |i| {
            RequestSpec::get(match i % 4 {
                0 => bad.clone(),
                1 => expired.clone(),
                2 => "/g/seg.ts".to_string(),
                _ => good.clone(),
            })
        })
        .check(|i, _, reply| {
            let (want, why) = match i % 4 {
                0 => (403, Some("bad_signature")),
                1 => (410, Some("expired")),
                2 => (403, Some("missing")),
                _ => (200, None),
            };
            if reply.header("x-cdn-signing-reason") != why {
                return Err(format!(
                    "reason {:?} (want {why:?})",
                    reply.header("x-cdn-signing-reason")
                ));
            }
            if reply.status != want {
                return Err(format!("status {} (want {want})", reply.status));
            }
            if want == 200 {
                let seen: EchoReply = reply.json().map_err(|e| e.to_string())?;
                if seen.uri != "/g/seg.ts" {
                    return Err(format!("upstream saw {}", seen.uri));
                }
            }
            Ok(())
        })
        .run()
        .await
        .unwrap();
    assert_eq!(
        (report.completed, report.check_failures),
        (2_000, 0),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_are_rejected_naming_the_field() {
    let cases = [
        (json!({"routes": [{"name": "a", "verify": {"scheme": "akamai_edgeauth", "keys": [{"hex": "abc"}]}}]}),
         "invalid configuration: routes[0].verify.keys[0].hex: `abc` has an odd number of hex digits (3)"),
        (json!({"routes": [{"name": "a", "verify": {"scheme": "akamai_edgeauth", "keys": [{"hex": "zz12"}]}}]}),
         "invalid configuration: routes[0].verify.keys[0].hex: `zz12` is not hex: `z` is not a hex digit"),
        (json!({"leeway_seconds": 18446744073709551615u64, "routes": [{"name": "a", "verify": {"scheme": "google_cdn", "keys": {"k": GOOGLE_KEY}}}]}),
         "invalid configuration: leeway_seconds: 18446744073709551615 is more than 3600"),
        (json!({"routes": [{"name": "a", "sign": {"scheme": "akamai_edgeauth", "key": {"hex": "00ff"},
                "location": "header", "token_name": "authorization"}}]}),
         "invalid configuration: routes[0].sign.token_name: `authorization` is a credential"),
        (json!({"routes": [{"name": "a", "path_prefix": "/media//", "verify": {"scheme": "google_cdn", "keys": {"k": GOOGLE_KEY}}}]}),
         "invalid configuration: routes[0].path_prefix: `/media//` is not a canonical path; write `/media/`"),
        (json!([]), "invalid configuration: (root): must be a JSON object"),
        (json!({"routes": [{"name": "a", "verify": {"scheme": "fastly", "keys": []}}]}),
         "invalid configuration: routes[0].verify.scheme: unknown variant `fastly`"),
        (json!({"routes": [{"name": "a", "verify": {"scheme": "cloudfront", "keys": {"K1": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"}}}]}),
         "invalid configuration: routes[0].verify.keys.K1: not an RSA public key in PEM"),
    ];
    common::assert_configs_rejected("cdn_signing", &cases).await;
}

/// Every spelling of a protected path, sent raw. None may reach the upstream without a token.
const PATH_FORMS: [&str; 14] = [
    "//videos/a.mp4",
    "/./videos/a.mp4",
    "/x/../videos/a.mp4",
    "/%76ideos/a.mp4",
    "/%76IDEOS/../videos/a.mp4",
    "/videos;x=1/a.mp4",
    "/x/..;/videos/a.mp4",
    "/videos%2Fa.mp4",
    "/videos%2fa.mp4",
    "/videos%5Ca.mp4",
    "//s/link",
    "/%73/link",
    "/%2e/media/a.mp4",
    "/media/%2e%2e/media/a.mp4",
];

/// Refused with 400 and a reason by the filter, whatever Envoy's path settings: a non-canonical
/// path under a route, or a path with no safe canonical form.
const REFUSED_BY_FILTER: [(&str, &str); 4] = [
    ("/videos/a%00.mp4", "encoded_nul"),
    ("/x%c0%af..%c0%afvideos/a.mp4", "overlong_utf8"),
    ("/videos/%zz.mp4", "bad_escape"),
    ("/videos/%2561.mp4", "double_encoding"),
];

async fn path_forms_are_refused(normalize: bool) {
    let gw = gateway_opts(None, normalize, 4).await;
    for form in PATH_FORMS {
        let r = gw
            .get_raw(form, &[("x-forwarded-for", "127.0.0.1")])
            .await
            .unwrap();
        assert!(
            r.header("x-echo-name").is_none(),
            "{form} reached the upstream: {}",
            r.text()
        );
        if normalize {
            // Envoy normalises the path first (or refuses an escaped slash), then the filter
            // refuses the token-less request (or the `;` form it still sees).
            assert!(
                matches!(r.status, 400 | 403),
                "{form}: {} {:?}",
                r.status,
                r.header("x-cdn-signing-reason")
            );
        } else {
            assert_eq!(
                (r.status, r.header("x-cdn-signing-reason")),
                (400, Some("non_canonical_path")),
                "{form}: {}",
                r.text()
            );
            assert_eq!(
                r.text(),
                "{\"error\":\"bad_path\",\"reason\":\"non_canonical_path\"}\n"
            );
        }
    }
    for (form, why) in REFUSED_BY_FILTER {
        let r = gw.get_raw(form, &[]).await.unwrap();
        assert!(
            r.header("x-echo-name").is_none(),
            "{form} reached the upstream"
        );
        assert_eq!(r.status, 400, "{form}");
        if let Some(reason) = r.header("x-cdn-signing-reason") {
            assert_eq!(reason, why, "{form}");
        }
    }
    // Case: `/VIDEOS/` is under `/videos/` (origins that fold case serve it).
    assert_eq!(
        reason(&gw, "/VIDEOS/a.mp4", &[]).await,
        (403, Some("missing".into()))
    );
    // A token's scope holds against `..`: an ACL for /videos/a/* and a Google URL prefix for
    // /media/a/ admit nothing outside them.
    let key = akamai::decode_hex_key(AKAMAI_KEY).unwrap();
    let tok = akamai::generate(
        &key,
        Algorithm::Sha256,
        &TokenSpec {
            exp: now() + 600,
            acl: Some("/videos/a/*"),
            ..Default::default()
        },
    );
    let seen = gw
        .echo(&format!("/videos/a/x?__token__={tok}"), &[])
        .await
        .unwrap();
    assert_eq!(seen.uri, "/videos/a/x");
    let escape = gw
        .get_raw(&format!("/videos/a/../b/x?__token__={tok}"), &[])
        .await
        .unwrap();
    let gkey = google::decode_key(GOOGLE_KEY).unwrap();
    let prefix = google::sign_prefix(
        &format!("{}/media/a/", gw.url),
        "my-key",
        &gkey,
        now() + 600,
    );
    let ok = gw
        .echo(&format!("/media/a/x.mp4?{prefix}"), &[])
        .await
        .unwrap();
    assert_eq!(ok.uri, "/media/a/x.mp4");
    let gescape = gw
        .get_raw(&format!("/media/a/../b/x.mp4?{prefix}"), &[])
        .await
        .unwrap();
    for (r, what) in [(escape, "akamai acl"), (gescape, "google url prefix")] {
        assert!(
            r.header("x-echo-name").is_none(),
            "{what} escaped its scope"
        );
        let want = if normalize {
            (403, Some("wrong_scope"))
        } else {
            (400, Some("non_canonical_path"))
        };
        assert_eq!((r.status, r.header("x-cdn-signing-reason")), want, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_forms_never_pass_unchecked_with_envoy_defaults() {
    path_forms_are_refused(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_forms_never_pass_unchecked_with_envoy_normalisation() {
    path_forms_are_refused(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggled_token_spellings_cookies_and_scheme() {
    let gw = gateway_opts(None, false, 4).await;
    let key = akamai::decode_hex_key(AKAMAI_KEY).unwrap();
    let acl = |acl: &'static str| {
        akamai::generate(
            &key,
            Algorithm::Sha256,
            &TokenSpec {
                exp: now() + 600,
                acl: Some(acl),
                ..Default::default()
            },
        )
    };
    // An encoded spelling of the token name never reaches the origin next to the real one.
    let tok = acl("/videos/*");
    let seen = gw
        .echo(
            &format!("/videos/1.ts?a=1&%5F%5Ftoken%5F%5F=evil&__token__={tok}&_%5Ftoken__=x"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(seen.uri, "/videos/1.ts?a=1");
    // On a cookie route, a query copy of the token is stripped too.
    let ck = acl("/ck/*");
    let seen = gw
        .echo(
            "/ck/a.ts?__token__=evil&b=2",
            &[("cookie", &format!("__token__={ck}"))],
        )
        .await
        .unwrap();
    assert_eq!(seen.uri, "/ck/a.ts?b=2");
    assert_eq!(seen.header("cookie"), None);
    // A token in a second HTTP/1.1 Cookie header counts; the other cookies are kept.
    let r = gw
        .get_raw(
            "/ck/a.ts",
            &[
                ("cookie", "sid=1"),
                ("cookie", &format!("__token__={ck}; theme=dark")),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let seen: EchoReply = r.json().unwrap();
    assert_eq!(seen.header("cookie"), Some("sid=1; theme=dark"));
    // Behind a TLS-terminating balancer, a URL signed with https:// verifies on a route that
    // says `scheme: https` (Envoy itself sees http).
    let gkey = google::decode_key(GOOGLE_KEY).unwrap();
    let authority = gw.url.strip_prefix("http://").unwrap();
    let signed = google::sign_url(
        &format!("https://{authority}/tls/a.mp4"),
        "my-key",
        &gkey,
        now() + 600,
    );
    let path = signed
        .strip_prefix(&format!("https://{authority}"))
        .unwrap();
    let seen = gw.echo(path, &[]).await.unwrap();
    assert_eq!(seen.uri, "/tls/a.mp4");
    let on_http = google_path(&gw, "/tls/a.mp4", now() + 600);
    assert_eq!(
        reason(&gw, &on_http, &[]).await,
        (403, Some("bad_signature".into()))
    );
}

//! Interop with Akamai's reference implementation (PyPI `akamai-edgeauth`, installed into .venv
//! by `make setup`): for a spread of parameters, the reference mints a token, ours must verify it
//! and must mint the very same bytes; every single-field tamper must be refused.

use std::path::PathBuf;
use std::process::Command;

use cdn_signing::schemes::akamai::{self, Algorithm, Check, TokenSpec};
use cdn_signing::schemes::Refusal;

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

/// Runs `script` with the `.venv`'s Python; returns its stdout. `what` names the step in a failure.
fn run_python(what: &str, script: &str) -> String {
    let out = Command::new(python())
        .args(["-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", python().display()));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the reference with these keyword arguments and path; returns its token.
fn reference(kwargs: &str, method: &str, path: &str) -> String {
    run_python(
        "reference",
        &format!(
            "from akamai.edgeauth import EdgeAuth\nprint(EdgeAuth({kwargs}).{method}({path:?}), end='')"
        ),
    )
}

/// One parameter set: algorithm (name and ours), escape_early, ip, id, data, salt.
struct Case {
    alg_name: &'static str,
    alg: Algorithm,
    esc: bool,
    ip: Option<&'static str>,
    id: Option<&'static str>,
    data: Option<&'static str>,
    salt: Option<&'static str>,
}

#[test]
fn tokens_minted_by_the_reference_verify_and_ours_are_identical() {
    let key_hex = "0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    let key = akamai::decode_hex_key(key_hex).unwrap();
    let case = |alg_name: &'static str, alg, esc, ip, id, data, salt| Case {
        alg_name,
        alg,
        esc,
        ip,
        id,
        data,
        salt,
    };
    let cases = [
        case("sha256", Algorithm::Sha256, false, None, None, None, None),
        case(
            "sha1",
            Algorithm::Sha1,
            false,
            Some("198.51.100.7"),
            None,
            None,
            None,
        ),
        case(
            "md5",
            Algorithm::Md5,
            true,
            None,
            Some("session 42"),
            Some("a/b c"),
            None,
        ),
        case(
            "sha256",
            Algorithm::Sha256,
            true,
            Some("2001:db8::1"),
            None,
            None,
            Some("s4lt"),
        ),
        case(
            "sha256",
            Algorithm::Sha256,
            false,
            None,
            Some("id"),
            Some("payload"),
            Some("x"),
        ),
        case(
            "sha1",
            Algorithm::Sha1,
            true,
            None,
            None,
            Some("ä ö/ü"),
            None,
        ),
    ];
    for (
        i,
        Case {
            alg_name,
            alg,
            esc,
            ip,
            id,
            data,
            salt,
        },
    ) in cases.into_iter().enumerate()
    {
        let (start, exp) = (1_900_000_000 + i as u64, 2_000_000_000 + i as u64);
        let opt = |k: &str, v: Option<&str>| v.map_or(String::new(), |v| format!(", {k}={v:?}"));
        let kwargs = format!(
            "key={key_hex:?}, algorithm={alg_name:?}, start_time={start}, end_time={exp}, escape_early={}{}{}{}{}",
            if esc { "True" } else { "False" },
            opt("ip", ip), opt("session_id", id), opt("payload", data), opt("salt", salt)
        );
        for (is_url, path) in [(false, "/videos/*"), (true, "/videos/a b/1.ts")] {
            let theirs = if is_url {
                reference(&kwargs, "generate_url_token", path)
            } else {
                reference(&kwargs, "generate_acl_token", path)
            };
            let spec = TokenSpec {
                ip,
                start: Some(start),
                exp,
                id,
                data,
                salt,
                escape_early: esc,
                acl: (!is_url).then_some(path),
                url: is_url.then_some(path),
            };
            assert_eq!(
                akamai::generate(&key, alg, &spec),
                theirs,
                "case {i} url={is_url}"
            );
            let req_path = if is_url { path } else { "/videos/x/2.ts" };
            let client = move || ip.map(str::to_string);
            let check = Check {
                path: req_path,
                client_ip: &client,
                now: start + 10,
                leeway: 0,
                salt,
                escape_early: esc,
                signature_known: false,
            };
            let keys = [(key.clone(), alg)];
            assert_eq!(
                akamai::verify(&theirs, &keys, &check),
                Ok(()),
                "case {i}: {theirs}"
            );
            // Every single-field tamper is refused.
            for (j, field) in theirs.split('~').enumerate() {
                let (k, v) = field.split_once('=').unwrap();
                let changed = if k == "hmac" {
                    format!("{}0", &v[..v.len() - 1])
                } else {
                    format!("{v}9")
                };
                let tampered: Vec<String> = theirs
                    .split('~')
                    .enumerate()
                    .map(|(n, f)| {
                        if n == j {
                            format!("{k}={changed}")
                        } else {
                            f.to_string()
                        }
                    })
                    .collect();
                let tampered = tampered.join("~");
                if tampered == theirs {
                    continue;
                }
                assert!(
                    akamai::verify(&tampered, &keys, &check).is_err(),
                    "case {i}: tamper of {k} accepted"
                );
            }
            assert_eq!(
                akamai::verify(&theirs, &keys, &Check { now: exp, ..check }),
                Err(Refusal::Expired)
            );
            assert_eq!(
                akamai::verify(
                    &theirs,
                    &keys,
                    &Check {
                        now: start - 1,
                        ..check
                    }
                ),
                Err(Refusal::NotYetValid)
            );
        }
    }
}

/// CloudFront: botocore's `CloudFrontSigner` (with a `cryptography` RSA key generated at test
/// time) signs canned and custom-policy URLs; ours verify them and refuse tampers and scope.
#[test]
fn cloudfront_urls_signed_by_botocore_verify() {
    use cdn_signing::schemes::cloudfront::{self, Check as CfCheck};
    let script = r#"
import datetime, json
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
s1 = CloudFrontSigner("K2JCJMDEHXQW5F", lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA1()))
t = lambda e: datetime.datetime.fromtimestamp(e, datetime.timezone.utc)
canned = s1.generate_presigned_url("https://d111111abcdef8.cloudfront.net/videos/a.mp4?q=1", date_less_than=t(2000000000))
policy = s1.build_policy("https://d111111abcdef8.cloudfront.net/videos/*", t(2000000000), date_greater_than=t(1900000000), ip_address="198.51.100.0/24")
custom = s1.generate_presigned_url("https://d111111abcdef8.cloudfront.net/videos/b.mp4", policy=policy)
s256 = CloudFrontSigner("K2JCJMDEHXQW5F", lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA256()))
sha256 = s256.generate_presigned_url("https://d111111abcdef8.cloudfront.net/c.mp4", date_less_than=t(2000000000)) + "&Hash-Algorithm=SHA256"
print(json.dumps({"pem": pem, "canned": canned, "custom": custom, "sha256": sha256}))
"#;
    let v: serde_json::Value =
        serde_json::from_str(&run_python("botocore's CloudFrontSigner", script)).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_string();
    let key = cloudfront::CfKey::new(cloudfront::parse_public_key(&s("pem")).unwrap());
    let lookup = |id: &str| (id == "K2JCJMDEHXQW5F").then_some(&key);
    let inside = || "198.51.100.9".parse().ok();
    let outside = || "203.0.113.9".parse().ok();
    let check = |url: &str, ip: &dyn Fn() -> Option<std::net::IpAddr>, now| {
        cloudfront::verify_url(
            &CfCheck {
                url,
                client_ip: ip,
                now,
                leeway: 0,
            },
            &lookup,
        )
    };
    let canned = s("canned");
    assert_eq!(check(&canned, &inside, 1_950_000_000), Ok(()));
    assert_eq!(
        check(&canned, &inside, 2_000_000_000),
        Err(Refusal::Expired)
    );
    assert_eq!(
        check(&canned.replace("q=1", "q=2"), &inside, 1_950_000_000),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        check(
            &canned.replace("Expires=2000000000", "Expires=2000000001"),
            &inside,
            1_950_000_000
        ),
        Err(Refusal::BadSignature)
    );
    assert_eq!(
        check(
            &canned.replace("K2JCJMDEHXQW5F", "KOTHER"),
            &inside,
            1_950_000_000
        ),
        Err(Refusal::BadSignature)
    );
    let custom = s("custom");
    assert_eq!(check(&custom, &inside, 1_950_000_000), Ok(()));
    assert_eq!(
        check(&custom, &outside, 1_950_000_000),
        Err(Refusal::WrongScope)
    );
    assert_eq!(
        check(&custom, &inside, 1_800_000_000),
        Err(Refusal::NotYetValid)
    );
    assert_eq!(
        check(
            &custom.replace("/videos/b.mp4", "/audio/b.mp4"),
            &inside,
            1_950_000_000
        ),
        Err(Refusal::WrongScope)
    );
    assert_eq!(check(&s("sha256"), &inside, 1_950_000_000), Ok(()));
    assert_eq!(
        check(
            &s("sha256").replace("SHA256", "SHA1"),
            &inside,
            1_950_000_000
        ),
        Err(Refusal::BadSignature)
    );
    assert_eq!(check("https://d/x.mp4", &inside, 1), Err(Refusal::Missing));
}

/// CloudFront signing: with the same private key, our canned and custom-policy URLs are
/// byte-identical to botocore's (PKCS#1 v1.5 is deterministic), and `cryptography` verifies our
/// SHA-256 signatures and signed cookies under the public key.
#[test]
fn cloudfront_urls_we_sign_equal_botocore_and_verify_with_cryptography() {
    use cdn_signing::schemes::cloudfront::{self, CfSigner};
    let make_key = r#"
from cryptography.hazmat.primitives import serialization as s
from cryptography.hazmat.primitives.asymmetric import rsa
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
print(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.TraditionalOpenSSL, s.NoEncryption()).decode(), end='')
"#;
    let pem = run_python("making an RSA key", make_key);
    let key = cloudfront::parse_private_key(&pem).expect("PKCS#1 private key");
    let sha1 = CfSigner::new("K2JCJMDEHXQW5F", key.clone(), false);
    let sha256 = CfSigner::new("K2JCJMDEHXQW5F", key, true);

    let url = "https://d111111abcdef8.cloudfront.net/videos/a.mp4?q=1";
    let policy = cloudfront::custom_policy(
        "https://d111111abcdef8.cloudfront.net/videos/*",
        2_000_000_000,
        Some(1_900_000_000),
        Some("198.51.100.0/24"),
    );
    let ours_canned = sha1.sign_url(url, 2_000_000_000, None);
    let ours_custom = sha1.sign_url(
        "https://d111111abcdef8.cloudfront.net/videos/b.mp4",
        0,
        Some(&policy),
    );
    let ours_sha256 = sha256.sign_url(
        "https://d111111abcdef8.cloudfront.net/c.mp4",
        2_000_000_000,
        None,
    );
    let cookie_policy = cloudfront::custom_policy(
        "https://d111111abcdef8.cloudfront.net/*",
        2_000_000_000,
        None,
        None,
    );
    let cookie_fields = sha256.fields("", 0, Some(&cookie_policy));
    let field = |k: &str| {
        cookie_fields
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let check = format!(
        r#"
import base64, datetime, json, sys
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
key = serialization.load_pem_private_key({pem:?}.encode(), password=None)
pub = key.public_key()
t = lambda e: datetime.datetime.fromtimestamp(e, datetime.timezone.utc)
s1 = CloudFrontSigner("K2JCJMDEHXQW5F", lambda m: key.sign(m, padding.PKCS1v15(), hashes.SHA1()))
canned = s1.generate_presigned_url({url:?}, date_less_than=t(2000000000))
policy = s1.build_policy("https://d111111abcdef8.cloudfront.net/videos/*", t(2000000000), date_greater_than=t(1900000000), ip_address="198.51.100.0/24")
custom = s1.generate_presigned_url("https://d111111abcdef8.cloudfront.net/videos/b.mp4", policy=policy)
unb64 = lambda v: base64.b64decode(v.replace("-", "+").replace("_", "=").replace("~", "/"))
def verify(sig, msg, h):
    pub.verify(unb64(sig), msg, padding.PKCS1v15(), h)
q = dict(p.split("=", 1) for p in {ours_sha256:?}.split("?", 1)[1].split("&"))
canned256 = '{{"Statement":[{{"Resource":"https://d111111abcdef8.cloudfront.net/c.mp4","Condition":{{"DateLessThan":{{"AWS:EpochTime":2000000000}}}}}}]}}'
verify(q["Signature"], canned256.encode(), hashes.SHA256())
verify({cookie_sig:?}, unb64({cookie_policy:?}), hashes.SHA256())
print(json.dumps({{"canned": canned, "custom": custom, "policy": policy}}))
"#,
        cookie_sig = field("Signature"),
        cookie_policy = field("Policy"),
    );
    let v: serde_json::Value = serde_json::from_str(&run_python(
        "cryptography's verification of a signature we made",
        &check,
    ))
    .unwrap();
    assert_eq!(v["policy"].as_str().unwrap(), policy, "custom policy JSON");
    assert_eq!(v["canned"].as_str().unwrap(), ours_canned);
    assert_eq!(v["custom"].as_str().unwrap(), ours_custom);
    assert!(
        ours_sha256.ends_with("&Key-Pair-Id=K2JCJMDEHXQW5F&Hash-Algorithm=SHA256"),
        "{ours_sha256}"
    );
}

/// The `sign` command mints EdgeAuth tokens equal to the reference's for the same inputs.
#[test]
fn sign_command_equals_the_edgeauth_reference() {
    let out = Command::new(env!("CARGO_BIN_EXE_sign"))
        .args([
            "akamai",
            "--key",
            "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
            "--algorithm",
            "sha1",
            "--acl",
            "/a/*!/b/*",
            "--start",
            "1700000000",
            "--exp",
            "1700000600",
            "--id",
            "u1",
            "--salt",
            "s",
        ])
        .output()
        .expect("sign");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = String::from_utf8(out.stdout).unwrap();
    let theirs = reference(
        "key='0a1b2c3d4e5f60718293a4b5c6d7e8f9', algorithm='sha1', start_time=1700000000, end_time=1700000600, session_id='u1', salt='s'",
        "generate_acl_token",
        "/a/*!/b/*",
    );
    assert_eq!(ours.trim_end(), theirs);
}

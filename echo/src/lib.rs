//! The echo upstream: answers every request with JSON describing what it received, so tests can
//! assert exactly what Envoy and the filters forwarded.
//!
//! ```json
//! {"name":"prod","method":"GET","uri":"/a?x=1","path":"/a","query":"x=1",
//!  "version":"HTTP/1.1","headers":{"host":"...","x-bot-score":"87"},"body_length":0}
//! ```
//!
//! Header names are lowercase; a header sent several times is joined with `, ` (`; ` for `cookie`),
//! which is how HTTP defines combining them. `GET /status/NNN` answers with status NNN (100..=999
//! excluding 1xx, which cannot carry a body) and the same JSON. Every response carries
//! `x-echo-name: <name>` so a test can see which upstream answered from the response headers alone.
//!
//! Scripted replies, for tests that need an upstream with a will of its own (a control plane):
//! `PUT /__script/<path>` with a [`Script`] as JSON makes every later request for `/<path>` answer
//! with that status, body and `etag` (304 when `if-none-match` equals it) after `delay_ms`;
//! `GET /__hits/<path>` reports how often `/<path>` was requested and the last `if-none-match`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// What the echo upstream saw, as it reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EchoReply {
    pub name: String,
    pub method: String,
    pub uri: String,
    pub path: String,
    pub query: Option<String>,
    pub version: String,
    pub headers: BTreeMap<String, String>,
    pub body_length: u64,
}

impl EchoReply {
    /// The value of a request header as the upstream received it (name is case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// A scripted reply (see the module documentation).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Script {
    pub status: u16,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub delay_ms: u64,
}

/// What `GET /__hits/<path>` reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Hits {
    pub hits: u64,
    pub if_none_match: Option<String>,
}

#[derive(Default)]
struct Scripts {
    by_path: std::collections::HashMap<String, (Script, Hits)>,
}

type SharedScripts = Arc<std::sync::Mutex<Scripts>>;

/// Binds `addr` and serves until the task is dropped or the process ends. Returns the bound
/// address (useful with port 0) and the server task.
pub async fn spawn(
    addr: SocketAddr,
    name: &str,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let name: Arc<str> = Arc::from(name);
    let scripts: SharedScripts = Arc::default();
    let task = tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let name = name.clone();
            let scripts = scripts.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(name.clone(), scripts.clone(), req));
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}

fn reply(status: u16, body: String, etag: Option<&str>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        resp.headers_mut().insert(http::header::ETAG, v);
    }
    resp
}

async fn handle(
    name: Arc<str>,
    scripts: SharedScripts,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // Count the body; keep it only for a script (bounded).
    let mut body_length = 0u64;
    let mut kept: Vec<u8> = Vec::new();
    let keep = parts.uri.path().starts_with("/__script/");
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    body_length += d.len() as u64;
                    if keep && kept.len() < 1 << 20 {
                        kept.extend_from_slice(d);
                    }
                }
            }
            Err(_) => break,
        }
    }
    let path = parts.uri.path();
    if let Some(target) = path.strip_prefix("/__script") {
        return Ok(match serde_json::from_slice::<Script>(&kept) {
            Ok(script) => {
                if let Ok(mut s) = scripts.lock() {
                    let e = s.by_path.entry(target.to_string()).or_default();
                    e.0 = script;
                }
                reply(204, String::new(), None)
            }
            Err(e) => reply(400, format!("{{\"error\":\"{e}\"}}"), None),
        });
    }
    if let Some(target) = path.strip_prefix("/__hits") {
        let hits = scripts
            .lock()
            .ok()
            .and_then(|s| s.by_path.get(target).map(|(_, h)| h.clone()))
            .unwrap_or_default();
        return Ok(reply(
            200,
            serde_json::to_string(&hits).unwrap_or_default(),
            None,
        ));
    }
    let scripted = scripts.lock().ok().and_then(|mut s| {
        s.by_path.get_mut(path).map(|(script, hits)| {
            hits.hits += 1;
            hits.if_none_match = parts
                .headers
                .get(http::header::IF_NONE_MATCH)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            (script.clone(), hits.if_none_match.clone())
        })
    });
    if let Some((script, inm)) = scripted {
        if script.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(script.delay_ms)).await;
        }
        let etag = script.etag.as_deref();
        if etag.is_some() && inm.as_deref() == etag {
            return Ok(reply(304, String::new(), etag));
        }
        return Ok(reply(script.status, script.body, etag));
    }
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes());
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(if k == http::header::COOKIE {
                    "; "
                } else {
                    ", "
                });
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let path = parts.uri.path().to_string();
    let status = path
        .strip_prefix("/status/")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| *s >= 200)
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::OK);
    let reply = EchoReply {
        name: name.to_string(),
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_string()),
        path,
        query: parts.uri.query().map(str::to_string),
        version: format!("{:?}", parts.version),
        headers,
        body_length,
    };
    let mut body = serde_json::to_vec_pretty(&reply).unwrap_or_default();
    body.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&name) {
        resp.headers_mut().insert("x-echo-name", v);
    }
    Ok(resp)
}

/// `echo-upstream [--listen ADDR] [--name NAME]` (see the binary).
pub fn cli() -> ExitCode {
    let mut listen = std::env::var("ECHO_LISTEN").unwrap_or_else(|_| "0.0.0.0:8000".into());
    let mut name = std::env::var("ECHO_NAME").unwrap_or_else(|_| "echo".into());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--name", Some(v)) => name = v,
            _ => {
                eprintln!("usage: echo-upstream [--listen ADDR] [--name NAME]");
                return ExitCode::from(2);
            }
        }
    }
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo-upstream: bad --listen {listen:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo-upstream: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let (local, _task) = match spawn(addr, &name).await {
            Ok(v) => v,
            Err(e) => {
                eprintln!("echo-upstream: cannot listen on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {local}");
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("echo-upstream: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        ExitCode::SUCCESS
    })
}

//! A small HTTP/1.1 client over hyper's connection API, shared by the harness's one-off requests
//! and the load driver (which keeps one connection per task alive across requests).

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request to send: method, path (with query) and headers. `host` is filled in when absent.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl RequestSpec {
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Adds a header. Names and values come from test code; an invalid one is a bug in the test,
    /// reported when the request is sent.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(n), Ok(v)) => self.headers.push((n, v)),
            _ => self.headers.push((
                HeaderName::from_static("x-invalid-test-header"),
                HeaderValue::from_static("invalid header name or value in the test"),
            )),
        }
        self
    }

    /// Adds a header whose value is raw bytes (e.g. obs-text 0x80..=0xFF, which HTTP/1.1 allows
    /// and Envoy forwards), to test that filters survive values that are not UTF-8.
    pub fn header_bytes(mut self, name: &str, value: &[u8]) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            (Ok(n), Ok(v)) => self.headers.push((n, v)),
            _ => self.headers.push((
                HeaderName::from_static("x-invalid-test-header"),
                HeaderValue::from_static("invalid header name or value in the test"),
            )),
        }
        self
    }

    pub fn headers<'a>(mut self, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        for (n, v) in headers {
            self = self.header(n, v);
        }
        self
    }

    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response (status {}) is not the expected JSON: {}",
                self.status,
                self.text()
            )
        })
    }
}

/// An open keep-alive HTTP/1.1 connection.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Connection {
    /// Connects to `authority` (`127.0.0.1:8080`).
    pub async fn open(authority: &str) -> Result<Self> {
        let stream = TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Self {
            sender,
            authority: authority.to_string(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Sends one request and reads the whole response.
    pub async fn send(&mut self, spec: &RequestSpec) -> Result<Reply> {
        let mut builder = Request::builder()
            .method(spec.method.clone())
            .uri(spec.path.as_str());
        let mut has_host = false;
        for (n, v) in &spec.headers {
            has_host |= n == http::header::HOST;
            builder = builder.header(n, v);
        }
        if !has_host {
            builder = builder.header(http::header::HOST, self.authority.as_str());
        }
        let req = builder.body(Full::new(spec.body.clone()))?;
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// Splits `http://host:port[/...]` into `host:port`.
pub fn authority_of(url: &str) -> Result<&str> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// URLs are supported, got {url}"))?;
    Ok(rest.split('/').next().unwrap_or(rest))
}

/// Sends one request on a fresh connection, with a timeout.
pub async fn send(base_url: &str, spec: &RequestSpec, timeout: Duration) -> Result<Reply> {
    let authority = authority_of(base_url)?;
    let fut = async {
        let mut conn = Connection::open(authority).await?;
        conn.send(spec).await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r.with_context(|| format!("{} {}{}", spec.method, base_url, spec.path)),
        Err(_) => bail!(
            "{} {}{} timed out after {:?}",
            spec.method,
            base_url,
            spec.path,
            timeout
        ),
    }
}

/// `GET base_url + path`, returning status and body as text (for admin endpoints).
pub async fn get_text(base_url: &str, path: &str) -> Result<(u16, String)> {
    let r = send(base_url, &RequestSpec::get(path), Duration::from_secs(10)).await?;
    Ok((r.status, r.text()))
}

/// Sends `GET <raw_path>` exactly as written (no URI parsing, so `//a`, `\`, `%2F` and `;` reach
/// Envoy byte for byte) with these headers, `Connection: close`, and reads the whole response.
pub async fn send_raw(base_url: &str, raw_path: &str, headers: &[(&str, &str)]) -> Result<Reply> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let authority = authority_of(base_url)?;
    let fut = async {
        let mut stream = TcpStream::connect(authority).await?;
        let mut req =
            format!("GET {raw_path} HTTP/1.1\r\nhost: {authority}\r\nconnection: close\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        parse_raw_response(&buf)
    };
    match tokio::time::timeout(Duration::from_secs(10), fut).await {
        Ok(r) => r.with_context(|| format!("GET {base_url}{raw_path} (raw)")),
        Err(_) => bail!("GET {base_url}{raw_path} (raw) timed out"),
    }
}

fn parse_raw_response(buf: &[u8]) -> Result<Reply> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no complete response head in {} bytes", buf.len()))?;
    let head = std::str::from_utf8(&buf[..end])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    let mut chunked = false;
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            let (n, v) = (n.trim(), v.trim());
            chunked |=
                n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked");
            headers.append(
                HeaderName::from_bytes(n.as_bytes())?,
                HeaderValue::from_str(v)?,
            );
        }
    }
    let mut body = buf[end + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(i) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..i])?.trim(), 16)?;
            if size == 0 {
                break;
            }
            let start = i + 2;
            out.extend_from_slice(rest.get(start..start + size).unwrap_or_default());
            rest = rest.get(start + size + 2..).unwrap_or_default();
        }
        body = out;
    }
    Ok(Reply {
        status,
        headers,
        body: Bytes::from(body),
    })
}

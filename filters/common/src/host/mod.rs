//! The host layer: everything a feature asks of Envoy, behind one trait.
//!
//! A *feature* (rate limiting, bot detection, CDN signing, stage routing) is a type implementing
//! [`Feature`]: it is configured from its JSON document once, then sees each request's headers
//! ([`Request`]), decides, and acts only through a [`Host`]. Two hosts implement the trait:
//!
//! - `wasm::WasmHost` (wasm32-wasip1 only) over the Proxy-Wasm SDK's Result-returning
//!   `hostcalls`; `wasm::start` installs the one shared root context every module uses: config
//!   load with the field-named error line, metric definition, the tick, a panic hook that logs;
//! - [`fake::FakeHost`], in memory, for native tests: headers, shared data with real CAS
//!   versions, a settable clock, metrics, and recorded replies, callouts, logs and host calls.
//!
//! What the layer promises a feature: the request header map is read once per request and passed
//! in as bytes (the client's headers as sent, even after an earlier feature changed some); the
//! client address and the clock are looked up at most once per request, and only if asked;
//! counters are batched per worker and added to Envoy's on the tick; no call panics on a host
//! error (each returns a `Result` or an `Option`). What a feature promises: no `proxy_wasm` import,
//! and every effect on the request through the host.

pub mod fake;
#[cfg(target_os = "wasi")]
pub mod wasm;

use std::cell::Cell;
use std::net::IpAddr;
use std::time::Duration;

use crate::headermap::HeaderMapView;
use crate::ConfigError;

/// A log line's level (the subset of Envoy's the features use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Critical,
}

/// Envoy metric kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// Why a host call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    /// A compare-and-swap lost: the value changed since it was read.
    CasMismatch,
    /// The host refused or failed the call (bad argument, unknown cluster, not available here).
    Failed,
}

/// Envoy shared data, as a feature sees it (the `Host` methods of the same names).
pub trait SharedData {
    /// The value and its version (`None` if absent).
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError>;
    /// Writes if the version still is `cas` (`None`: unconditionally).
    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError>;
}

/// What a feature may ask of Envoy. Request-only calls (headers, replies) do nothing, or return
/// `None`, outside a request.
pub trait Host: SharedData {
    /// The request's header map in the Proxy-Wasm serialization (one host call).
    fn request_header_map(&self) -> Option<Vec<u8>>;
    /// Replaces (or with `None` removes) every value of a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    /// Adds a request header value next to any existing ones.
    fn add_request_header(&self, name: &str, value: &str);
    /// Replaces (or removes) a response header.
    fn set_response_header(&self, name: &str, value: Option<&str>);
    /// Adds a response header value.
    fn add_response_header(&self, name: &str, value: &str);
    /// An Envoy attribute such as `["source", "address"]` or `["filter_state", key]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Sets a Wasm filter state value (`%FILTER_STATE(wasm.<key>)%` in access logs).
    fn set_filter_state(&self, key: &str, value: &[u8]) -> Result<(), HostError>;
    /// Wall-clock time in nanoseconds since the Unix epoch (0 if the host cannot tell).
    fn now_ns(&self) -> u64;
    /// Defines a metric; the id is what `count` and `record` take.
    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError>;
    /// Adds to a counter (batched: Envoy sees it on the next tick).
    fn count(&self, id: u32, n: u64);
    /// Sets a gauge.
    fn record(&self, id: u32, value: u64);
    /// Answers the request locally; the filter then stops the request's processing. `details`
    /// (`<feature>.<reason>`, no spaces) is what access logs show as `%RESPONSE_CODE_DETAILS%`.
    fn send_reply(&self, status: u32, details: &str, headers: &[(&str, &str)], body: &[u8]);
    /// An HTTP call to an Envoy cluster; the response arrives on the root context with the token.
    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// A unary gRPC call to an Envoy cluster; the response arrives like an HTTP call's.
    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError>;
    /// The headers of the HTTP call response being delivered (serialized, like the request's).
    fn call_response_header_map(&self) -> Option<Vec<u8>>;
    /// The body of the HTTP call response being delivered.
    fn call_response_body(&self, size: usize) -> Option<Vec<u8>>;
    /// The message of the gRPC call response being delivered.
    fn grpc_response_body(&self, size: usize) -> Option<Vec<u8>>;
    fn log(&self, level: LogLevel, message: &str);
    /// The address Envoy attributes the request to (`source.address`, which honours
    /// `xff_num_trusted_hops`).
    fn client_ip(&self) -> Option<IpAddr> {
        self.property(&["source", "address"])
            .and_then(|b| crate::ip::parse_address_ip_bytes(&b))
    }
}

/// What a feature's request step decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go on (to the next feature, then upstream).
    Continue,
    /// The feature sent a local reply: the pass ends here.
    Replied,
    /// The request waits for a callout the feature dispatched (a gRPC call to a rate limit
    /// service): [`Feature::on_request_call_response`] decides when it answers. Envoy enforces
    /// the call's timeout, so the wait is bounded.
    Pause,
}

/// Decisions one feature makes for later ones in the same pass (in `edge.wasm`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// The bot verdict: its category (`search_engine`, `unknown_bot`, `human`, ...).
    pub bot_category: Option<&'static str>,
    /// The verified bot's name (`Googlebot`), when the client is one.
    pub verified_bot: Option<String>,
    /// The assigned deploy stage.
    pub stage: Option<String>,
    /// The decisions in words for the access log, when a feature's configuration asks for them
    /// (`decision_filter_state: true`): `key=value` items separated by spaces, written once per
    /// request step to the filter state key [`Feature::decision_filter_state`] names. `None`: not
    /// asked for, nothing is built.
    pub explain: Option<String>,
}

impl Decisions {
    /// Decisions that collect their explanation (see [`Decisions::explain`]).
    pub fn explaining(on: bool) -> Self {
        Self {
            explain: on.then(String::new),
            ..Self::default()
        }
    }

    /// Adds `key=value` to the explanation, if one is collected. Spaces in the value become `_`,
    /// so that items stay one word each.
    pub fn note(&mut self, key: &str, value: &str) {
        let Some(e) = &mut self.explain else {
            return;
        };
        if !e.is_empty() {
            e.push(' ');
        }
        e.push_str(key);
        e.push('=');
        e.extend(value.chars().map(|c| if c == ' ' { '_' } else { c }));
    }
}

/// One request as the features see it: the headers as the client sent them (read once), and
/// the client address and clock, each looked up at most once and only if asked.
pub struct Request<'a> {
    pub headers: HeaderMapView<'a>,
    client_ip: Cell<Option<Option<IpAddr>>>,
    now_ns: Cell<Option<u64>>,
}

impl<'a> Request<'a> {
    pub fn new(headers: HeaderMapView<'a>) -> Self {
        Self {
            headers,
            client_ip: Cell::new(None),
            now_ns: Cell::new(None),
        }
    }

    /// A header's first value (lowercase name), as bytes.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.get(name)
    }

    /// A header's first value if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&'a str> {
        self.headers.get_str(name)
    }

    /// `:path`, or `""`.
    pub fn path(&self) -> &'a str {
        self.header_str(":path").unwrap_or("")
    }

    pub fn client_ip(&self, host: &impl Host) -> Option<IpAddr> {
        if let Some(ip) = self.client_ip.get() {
            return ip;
        }
        let ip = host.client_ip();
        self.client_ip.set(Some(ip));
        ip
    }

    pub fn now_ns(&self, host: &impl Host) -> u64 {
        if let Some(t) = self.now_ns.get() {
            return t;
        }
        let t = host.now_ns();
        self.now_ns.set(Some(t));
        t
    }
}

/// Why a feature could not start: its configuration (one line naming the field), or the host
/// (a metric it could not define).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    Config(ConfigError),
    Host(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => e.fmt(f),
            StartError::Host(m) => f.write_str(m),
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        StartError::Config(e)
    }
}

/// Defines a metric, naming it in the error.
pub fn metric(host: &impl Host, kind: MetricKind, name: &str) -> Result<u32, StartError> {
    host.define_metric(kind, name)
        .map_err(|e| StartError::Host(format!("cannot define metric {name}: {e:?}")))
}

/// A counter (see [`metric`]).
pub fn counter(host: &impl Host, name: &str) -> Result<u32, StartError> {
    metric(host, MetricKind::Counter, name)
}

/// A feature: configured once per plugin configuration, then run on every request.
pub trait Feature: Sized + 'static {
    /// State a request keeps from its request headers to its response headers.
    type Request: Default;

    /// Whether the request step runs at all (the no-op module sets `false`: no header-map read).
    const RUNS_ON_REQUESTS: bool = true;

    /// Parses and checks the JSON configuration, defines metrics, and sets up per-worker state.
    fn configure(json: &[u8], host: &impl Host) -> Result<Self, StartError>;

    /// One line describing the configuration, logged at `info` when it is applied.
    fn describe(&self) -> String;

    /// The request step. `decisions` carries what earlier features decided (in `edge.wasm`).
    fn on_request_headers(
        &self,
        host: &impl Host,
        req: &Request<'_>,
        decisions: &mut Decisions,
        state: &mut Self::Request,
    ) -> Decision;

    /// The response step (only for requests that went upstream).
    fn on_response_headers(&self, _host: &impl Host, _state: &mut Self::Request) {}

    /// Every 100 ms on each worker (after its counters were flushed).
    fn on_tick(&self, _host: &impl Host) {}

    /// The response to an HTTP or gRPC call this feature made outside a request (the tick).
    fn on_call_response(&self, _host: &impl Host, _token: u32, _response: CallResponse) {}

    /// The response to a call a request's step made before it returned [`Decision::Pause`]:
    /// `Continue` resumes the request, `Replied` means a local reply was sent, `Pause` waits for
    /// another call. `decisions` are the request step's, explanation included.
    fn on_request_call_response(
        &self,
        _host: &impl Host,
        _state: &mut Self::Request,
        _decisions: &mut Decisions,
        _token: u32,
        _response: CallResponse,
    ) -> Decision {
        Decision::Continue
    }

    /// The filter state key the request's [`Decisions::explain`] is written to (Envoy's access
    /// log reads it as `%FILTER_STATE(wasm.<key>:PLAIN)%`), when the configuration asks for it.
    fn decision_filter_state(&self) -> Option<&'static str> {
        None
    }
}

/// What arrived for a call: sizes to read with the host, and for gRPC the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResponse {
    Http {
        headers: usize,
        body: usize,
    },
    /// `status` 0 is OK; `message` is the size of the response message.
    Grpc {
        status: u32,
        message: usize,
    },
}

/// The tick period of every module.
pub const TICK: Duration = Duration::from_millis(100);

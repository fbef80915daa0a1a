//! An in-memory host for native tests: it records what a feature did, and counts host calls.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::Duration;

use super::{
    CallResponse, Decision, Decisions, Feature, Host, HostError, LogLevel, MetricKind, Request,
    SharedData,
};
use crate::headermap::{serialize, HeaderMapView};

/// A local reply the feature sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub details: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP or gRPC call the feature made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub token: u32,
    pub cluster: String,
    /// HTTP headers, or for gRPC `[(":service", ..), (":method", ..)]`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// Header pairs in order.
type Headers = Vec<(String, String)>;

#[derive(Debug, Clone)]
struct Metric {
    name: String,
    kind: MetricKind,
    value: u64,
}

/// The fake host. Build it, set request headers and properties, run a feature with [`run`],
/// then look at what it did.
#[derive(Debug, Default)]
pub struct FakeHost {
    request: RefCell<Vec<(String, Vec<u8>)>>,
    response: RefCell<Vec<(String, String)>>,
    properties: RefCell<BTreeMap<String, Vec<u8>>>,
    filter_state: RefCell<BTreeMap<String, Vec<u8>>>,
    shared: RefCell<BTreeMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Upcoming `shared_set` calls to fail with a CAS mismatch.
    pub conflicts: Cell<u32>,
    /// Shared data calls fail.
    pub shared_down: Cell<bool>,
    now_ns: Cell<u64>,
    metrics: RefCell<Vec<Metric>>,
    replies: RefCell<Vec<Reply>>,
    calls: RefCell<Vec<Call>>,
    /// Calls fail to dispatch.
    pub calls_fail: Cell<bool>,
    call_response: RefCell<(Headers, Vec<u8>)>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    host_calls: Cell<u64>,
    trace: RefCell<Vec<&'static str>>,
}

impl FakeHost {
    pub fn new() -> Self {
        let h = Self::default();
        h.now_ns.set(1_800_000_000 * 1_000_000_000);
        h
    }

    fn tick_call(&self, name: &'static str) {
        self.host_calls.set(self.host_calls.get() + 1);
        self.trace.borrow_mut().push(name);
    }

    /// The host calls made so far, by name, in order (e.g. `["request_header_map", "now_ns"]`).
    pub fn trace(&self) -> Vec<&'static str> {
        self.trace.borrow().clone()
    }

    /// Host calls made so far (each one a VM exit in Envoy).
    pub fn host_calls(&self) -> u64 {
        self.host_calls.get()
    }

    /// Starts a new request: these headers (lowercase names; pseudo-headers included), no
    /// response headers, no reply.
    pub fn request(&self, headers: &[(&str, &str)]) -> &Self {
        *self.request.borrow_mut() = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect();
        self.response.borrow_mut().clear();
        self.replies.borrow_mut().clear();
        self
    }

    /// Adds a request header with a value that need not be UTF-8.
    pub fn request_header_bytes(&self, name: &str, value: &[u8]) {
        self.request
            .borrow_mut()
            .push((name.to_string(), value.to_vec()));
    }

    /// The client address (`source.address`), e.g. `"203.0.113.7:5555"`.
    pub fn client(&self, address: &str) -> &Self {
        self.set_property(&["source", "address"], address.as_bytes());
        self
    }

    pub fn set_property(&self, path: &[&str], value: &[u8]) {
        self.properties
            .borrow_mut()
            .insert(path.join("."), value.to_vec());
    }

    /// Sets the clock (nanoseconds since the Unix epoch).
    pub fn set_now_ns(&self, t: u64) {
        self.now_ns.set(t);
    }

    pub fn advance(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.now_ns.set(self.now_ns.get().saturating_add(ns));
    }

    /// The request headers as they would be forwarded: name, value.
    pub fn forwarded(&self) -> Vec<(String, String)> {
        self.request
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    /// A forwarded request header's first value.
    pub fn forwarded_header(&self, name: &str) -> Option<String> {
        self.request
            .borrow()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// Every value of a forwarded request header.
    pub fn forwarded_all(&self, name: &str) -> Vec<String> {
        self.request
            .borrow()
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// Response headers the feature set, in order.
    pub fn response_headers(&self) -> Vec<(String, String)> {
        self.response.borrow().clone()
    }

    pub fn response_header(&self, name: &str) -> Option<String> {
        self.response
            .borrow()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    /// The local reply sent for the current request, if any.
    pub fn reply(&self) -> Option<Reply> {
        self.replies.borrow().last().cloned()
    }

    /// A metric's value by name (`None` if never defined).
    pub fn metric(&self, name: &str) -> Option<u64> {
        self.metrics
            .borrow()
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }

    /// Every metric name defined, in order.
    pub fn metric_names(&self) -> Vec<String> {
        self.metrics
            .borrow()
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    pub fn filter_state(&self, key: &str) -> Option<Vec<u8>> {
        self.filter_state.borrow().get(key).cloned()
    }

    pub fn shared_keys(&self) -> usize {
        self.shared.borrow().len()
    }

    pub fn has_shared(&self, key: &str) -> bool {
        self.shared.borrow().contains_key(key)
    }

    /// Shared-data writes so far (each took a new CAS version).
    pub fn shared_writes(&self) -> u32 {
        self.next_cas.get()
    }

    pub fn remove_shared(&self, key: &str) {
        self.shared.borrow_mut().remove(key);
    }

    /// Sets the response the next [`Feature::on_call_response`] reads.
    pub fn set_call_response(&self, headers: &[(&str, &str)], body: &[u8]) {
        *self.call_response.borrow_mut() = (
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body.to_vec(),
        );
    }
}

impl SharedData for FakeHost {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.tick_call("shared_get");
        if self.shared_down.get() {
            return Err(HostError::Failed);
        }
        Ok(match self.shared.borrow().get(key) {
            Some((v, c)) => (Some(v.clone()), Some(*c)),
            None => (None, None),
        })
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        self.tick_call("shared_set");
        if self.shared_down.get() {
            return Err(HostError::Failed);
        }
        if self.conflicts.get() > 0 {
            self.conflicts.set(self.conflicts.get() - 1);
            return Err(HostError::CasMismatch);
        }
        let mut m = self.shared.borrow_mut();
        // Envoy's semantics: a CAS is checked against an existing key only.
        if let (Some(c), Some((_, cur))) = (cas, m.get(key)) {
            if c != *cur {
                return Err(HostError::CasMismatch);
            }
        }
        let next = self.next_cas.get().wrapping_add(1).max(1);
        self.next_cas.set(next);
        m.insert(key.to_string(), (value.to_vec(), next));
        Ok(())
    }
}

fn set_in(list: &mut Vec<(String, Vec<u8>)>, name: &str, value: Option<&[u8]>) {
    let at = list.iter().position(|(k, _)| k == name);
    list.retain(|(k, _)| k != name);
    if let Some(v) = value {
        let entry = (name.to_string(), v.to_vec());
        match at {
            Some(i) if i <= list.len() => list.insert(i, entry),
            _ => list.push(entry),
        }
    }
}

impl Host for FakeHost {
    fn request_header_map(&self) -> Option<Vec<u8>> {
        self.tick_call("request_header_map");
        let r = self.request.borrow();
        let pairs: Vec<(&[u8], &[u8])> = r.iter().map(|(k, v)| (k.as_bytes(), &v[..])).collect();
        Some(serialize(&pairs))
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        self.tick_call("set_request_header");
        set_in(
            &mut self.request.borrow_mut(),
            name,
            value.map(str::as_bytes),
        );
    }

    fn add_request_header(&self, name: &str, value: &str) {
        self.tick_call("add_request_header");
        self.request
            .borrow_mut()
            .push((name.to_string(), value.as_bytes().to_vec()));
    }

    fn set_response_header(&self, name: &str, value: Option<&str>) {
        self.tick_call("set_response_header");
        let mut r = self.response.borrow_mut();
        r.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            r.push((name.to_string(), v.to_string()));
        }
    }

    fn add_response_header(&self, name: &str, value: &str) {
        self.tick_call("add_response_header");
        self.response
            .borrow_mut()
            .push((name.to_string(), value.to_string()));
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.tick_call("property");
        self.properties.borrow().get(&path.join(".")).cloned()
    }

    fn set_filter_state(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        self.tick_call("set_filter_state");
        self.filter_state
            .borrow_mut()
            .insert(key.to_string(), value.to_vec());
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        self.tick_call("now_ns");
        self.now_ns.get()
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let mut m = self.metrics.borrow_mut();
        if let Some(i) = m.iter().position(|x| x.name == name) {
            return u32::try_from(i).map_err(|_| HostError::Failed);
        }
        m.push(Metric {
            name: name.to_string(),
            kind,
            value: 0,
        });
        u32::try_from(m.len() - 1).map_err(|_| HostError::Failed)
    }

    fn count(&self, id: u32, n: u64) {
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            debug_assert_eq!(m.kind, MetricKind::Counter);
            m.value += n;
        }
    }

    fn record(&self, id: u32, value: u64) {
        self.tick_call("record");
        if let Some(m) = self.metrics.borrow_mut().get_mut(id as usize) {
            m.value = value;
        }
    }

    fn send_reply(&self, status: u32, details: &str, headers: &[(&str, &str)], body: &[u8]) {
        self.tick_call("send_reply");
        self.replies.borrow_mut().push(Reply {
            status,
            details: details.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        });
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.tick_call("http_call");
        if self.calls_fail.get() {
            return Err(HostError::Failed);
        }
        let mut calls = self.calls.borrow_mut();
        let token = u32::try_from(calls.len() + 1).map_err(|_| HostError::Failed)?;
        calls.push(Call {
            token,
            cluster: cluster.to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.unwrap_or_default().to_vec(),
            timeout,
        });
        Ok(token)
    }

    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        self.http_call(
            cluster,
            &[(":service", service), (":method", method)],
            Some(message),
            timeout,
        )
    }

    fn call_response_header_map(&self) -> Option<Vec<u8>> {
        self.tick_call("call_response_header_map");
        let r = self.call_response.borrow();
        let pairs: Vec<(&[u8], &[u8])> =
            r.0.iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect();
        Some(serialize(&pairs))
    }

    fn call_response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.tick_call("call_response_body");
        let r = self.call_response.borrow();
        Some(r.1.get(..size.min(r.1.len())).unwrap_or_default().to_vec())
    }

    fn grpc_response_body(&self, size: usize) -> Option<Vec<u8>> {
        self.call_response_body(size)
    }

    fn log(&self, level: LogLevel, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

/// What one request did, as the shared root's HTTP context would run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<S> {
    pub decision: Decision,
    /// The feature's per-request state after the request step.
    pub state: S,
    pub decisions: Decisions,
    /// Host calls the request step made (the header map read included).
    pub host_calls: u64,
}

/// Runs a feature's request step on the fake host's current request, as the shared root does:
/// one header-map read, then the feature. The response step is [`respond`].
pub fn run<F: Feature>(f: &F, host: &FakeHost) -> Outcome<F::Request> {
    let before = host.host_calls();
    let bytes = host.request_header_map().unwrap_or_default();
    let mut state = F::Request::default();
    let mut decisions = Decisions::explaining(f.decision_filter_state().is_some());
    let decision = match HeaderMapView::parse(&bytes) {
        Some(view) => {
            let req = Request::new(view);
            f.on_request_headers(host, &req, &mut decisions, &mut state)
        }
        None => Decision::Continue,
    };
    Outcome {
        decision,
        state,
        decisions,
        host_calls: host.host_calls() - before,
    }
}

/// Delivers the response to a call a paused request made (the fake host's current call
/// response: [`FakeHost::set_call_response`]), as the request's context would.
pub fn answer<F: Feature>(
    f: &F,
    host: &FakeHost,
    state: &mut F::Request,
    token: u32,
    status: u32,
) -> Decision {
    let message = host.call_response.borrow().1.len();
    f.on_request_call_response(
        host,
        state,
        &mut Decisions::default(),
        token,
        CallResponse::Grpc { status, message },
    )
}

/// Runs the response step for a request that went upstream.
pub fn respond<F: Feature>(f: &F, host: &FakeHost, state: &mut F::Request) {
    host.response.borrow_mut().clear();
    f.on_response_headers(host, state);
}

/// Configures a feature on a fresh fake host (panics with the error line: test helper).
pub fn configure<F: Feature>(json: &str) -> (F, FakeHost) {
    let host = FakeHost::new();
    match F::configure(json.as_bytes(), &host) {
        Ok(f) => (f, host),
        Err(e) => panic!("{e}"),
    }
}

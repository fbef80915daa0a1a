//! The Proxy-Wasm host (wasm32-wasip1 only): [`WasmHost`] over the SDK's Result-returning
//! `hostcalls`, and the one root and HTTP context every module runs ([`start`]).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, LogLevel as SdkLevel, MapType, MetricType, Status,
};

use super::{
    CallResponse, Decision, Decisions, Feature, Host, HostError, LogLevel, MetricKind, Request,
    SharedData,
};
use crate::headermap::{host as raw, HeaderMapView};
use crate::metrics::host::BatchedCounters;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
}

/// The host for one context: every call goes to Envoy; counters go to the worker's batch.
pub struct WasmHost<'a> {
    counters: &'a RefCell<BatchedCounters>,
}

fn sdk_level(l: LogLevel) -> SdkLevel {
    match l {
        LogLevel::Debug => SdkLevel::Debug,
        LogLevel::Info => SdkLevel::Info,
        LogLevel::Warn => SdkLevel::Warn,
        LogLevel::Error => SdkLevel::Error,
        LogLevel::Critical => SdkLevel::Critical,
    }
}

fn failed<T>(_: Status) -> Result<T, HostError> {
    Err(HostError::Failed)
}

impl SharedData for WasmHost<'_> {
    fn shared_get(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        hostcalls::get_shared_data(key).or_else(failed)
    }

    fn shared_set(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), HostError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(HostError::CasMismatch),
            Err(_) => Err(HostError::Failed),
        }
    }
}

impl Host for WasmHost<'_> {
    fn request_header_map(&self) -> Option<Vec<u8>> {
        raw::header_map(raw::REQUEST_HEADERS).map(raw::OwnedHeaderMap::into_bytes)
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn add_request_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn set_response_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn add_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpResponseHeaders, name, value);
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_filter_state(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        hostcalls::set_property(vec![key], Some(value)).or_else(failed)
    }

    fn now_ns(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }

    fn define_metric(&self, kind: MetricKind, name: &str) -> Result<u32, HostError> {
        let t = match kind {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(t, name).or_else(failed)
    }

    fn count(&self, id: u32, n: u64) {
        if let Ok(mut c) = self.counters.try_borrow_mut() {
            c.add(id, n);
        }
    }

    fn record(&self, id: u32, value: u64) {
        let _ = hostcalls::record_metric(id, value);
    }

    fn send_reply(&self, status: u32, details: &str, headers: &[(&str, &str)], body: &[u8]) {
        // The SDK's `send_http_response` passes no details (and panics on an unexpected status):
        // the ABI call directly, with `details` for `%RESPONSE_CODE_DETAILS%`.
        let pairs: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
            .collect();
        let map = crate::headermap::serialize(&pairs);
        // SAFETY: every pointer/length pair describes a live buffer for the call's duration;
        // the host copies them.
        unsafe {
            proxy_send_local_response(
                status,
                details.as_ptr(),
                details.len(),
                body.as_ptr(),
                body.len(),
                map.as_ptr(),
                map.len(),
                -1,
            );
        }
    }

    fn http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(cluster, headers.to_vec(), body, vec![], timeout)
            .or_else(failed)
    }

    fn grpc_call(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_grpc_call(cluster, service, method, vec![], Some(message), timeout)
            .or_else(failed)
    }

    fn call_response_header_map(&self) -> Option<Vec<u8>> {
        raw::header_map(raw::HTTP_CALL_RESPONSE_HEADERS).map(raw::OwnedHeaderMap::into_bytes)
    }

    fn call_response_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, size)
            .ok()
            .flatten()
    }

    fn grpc_response_body(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size)
            .ok()
            .flatten()
    }

    fn log(&self, level: LogLevel, message: &str) {
        let _ = hostcalls::log(sdk_level(level), message);
    }
}

/// Installs the shared root context for feature `F` (call it from `proxy_wasm::main!`), and a
/// panic hook that logs the panic before the VM dies.
pub fn start<F: Feature>() {
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(SdkLevel::Critical, &format!("panic: {info}"));
    }));
    proxy_wasm::set_log_level(SdkLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root::<F> {
            feature: None,
            counters: Rc::default(),
        })
    });
}

/// The shared root context: configuration, metrics, tick, callouts.
struct Root<F: Feature> {
    feature: Option<Rc<F>>,
    counters: Rc<RefCell<BatchedCounters>>,
}

impl<F: Feature> Root<F> {
    fn host(&self) -> WasmHost<'_> {
        WasmHost {
            counters: &self.counters,
        }
    }

    fn flush(&self) {
        if let Ok(mut c) = self.counters.try_borrow_mut() {
            c.flush();
        }
    }
}

impl<F: Feature> Context for Root<F> {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        if let Some(f) = self.feature.clone() {
            f.on_call_response(&self.host(), token, CallResponse::Http { headers, body });
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, message: usize) {
        if let Some(f) = self.feature.clone() {
            f.on_call_response(&self.host(), token, CallResponse::Grpc { status, message });
        }
    }
}

impl<F: Feature> RootContext for Root<F> {
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        self.flush();
        let host = self.host();
        match F::configure(&bytes, &host) {
            Ok(f) => {
                host.log(LogLevel::Info, &format!("configured: {}", f.describe()));
                self.feature = Some(Rc::new(f));
                let _ = hostcalls::set_tick_period(super::TICK);
                true
            }
            Err(e) => {
                host.log(LogLevel::Error, &e.to_string());
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.flush();
        if let Some(f) = self.feature.clone() {
            f.on_tick(&self.host());
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::<F> {
            feature: self.feature.clone(),
            counters: self.counters.clone(),
            state: F::Request::default(),
            went_upstream: false,
            decisions: Decisions::default(),
        }))
    }
}

/// The per-request context: one header-map read, the feature's request step, its response step.
struct Http<F: Feature> {
    feature: Option<Rc<F>>,
    counters: Rc<RefCell<BatchedCounters>>,
    state: F::Request,
    went_upstream: bool,
    /// The request step's decisions, kept while the request waits for a callout.
    decisions: Decisions,
}

/// Writes the explanation of a request's decisions to filter state, if one was asked for.
fn write_explanation(host: &WasmHost<'_>, key: Option<&'static str>, d: &Decisions) {
    if let (Some(key), Some(text)) = (key, d.explain.as_deref()) {
        if !text.is_empty() && host.set_filter_state(key, text.as_bytes()).is_err() {
            host.log(LogLevel::Warn, "cannot write the decision filter state");
        }
    }
}

impl<F: Feature> Http<F> {
    /// A request's callout answered: the feature decides; `Continue` resumes the request.
    fn call_answered(&mut self, token: u32, response: CallResponse) {
        let Some(f) = self.feature.clone() else {
            return;
        };
        let host = WasmHost {
            counters: &self.counters,
        };
        let d = f.on_request_call_response(
            &host,
            &mut self.state,
            &mut self.decisions,
            token,
            response,
        );
        if d != Decision::Pause {
            write_explanation(&host, f.decision_filter_state(), &self.decisions);
        }
        if d == Decision::Continue {
            self.went_upstream = true;
            if hostcalls::resume_http_request().is_err() {
                host.log(
                    LogLevel::Error,
                    "could not resume a request after its callout",
                );
            }
        }
    }
}

impl<F: Feature> Context for Http<F> {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, message: usize) {
        self.call_answered(token, CallResponse::Grpc { status, message });
    }

    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        self.call_answered(token, CallResponse::Http { headers, body });
    }
}

impl<F: Feature> HttpContext for Http<F> {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if !F::RUNS_ON_REQUESTS {
            return Action::Continue;
        }
        let Some(f) = self.feature.clone() else {
            return Action::Continue;
        };
        let host = WasmHost {
            counters: &self.counters,
        };
        let Some(bytes) = host.request_header_map() else {
            return Action::Continue;
        };
        let Some(view) = HeaderMapView::parse(&bytes) else {
            host.log(
                LogLevel::Error,
                "malformed request header map from the host",
            );
            return Action::Continue;
        };
        let req = Request::new(view);
        let key = f.decision_filter_state();
        self.decisions = Decisions::explaining(key.is_some());
        let d = f.on_request_headers(&host, &req, &mut self.decisions, &mut self.state);
        if d != Decision::Pause {
            write_explanation(&host, key, &self.decisions);
        }
        match d {
            Decision::Continue => {
                self.went_upstream = true;
                Action::Continue
            }
            Decision::Replied | Decision::Pause => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if self.went_upstream {
            if let Some(f) = self.feature.clone() {
                let host = WasmHost {
                    counters: &self.counters,
                };
                f.on_response_headers(&host, &mut self.state);
            }
        }
        Action::Continue
    }
}

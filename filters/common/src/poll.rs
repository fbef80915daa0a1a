//! Polling a source of live data (stage data, published bot IP ranges) from an Envoy cluster, once
//! for all workers:
//!
//! - [`Source`]: where and how often (a configuration section, validated with the field named);
//! - [`Poller`]: when to poll next (interval with jitter, exponential backoff after failures), the
//!   conditional request (`If-None-Match` with the last ETag), and what a response status means;
//! - [`SharedPoll`]: the shared-data side. One VM at a time polls (a lease it renews on every
//!   tick, taken over when it lapses); it publishes good data in shared data; every worker picks
//!   it up on its tick. A bad answer keeps the last good data.
//!
//! What counts as good data is the caller's: it parses the body and tells the poller whether it
//! was accepted.

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::headermap::HeaderMapView;
use crate::host::Host;

/// A poller that stops renewing its lease (its VM went away) is replaced after this long.
pub const LEASE_MS: u64 = 3_000;

/// A source as configured (before checks).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The Envoy cluster that serves the data.
    pub cluster: String,
    /// The request path (starts with `/`).
    pub path: String,
    /// The `:authority` of the request (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    /// Time between polls, 100 ms to 24 h.
    #[serde(default)]
    pub poll_interval_ms: Option<u64>,
    /// Time to wait for an answer, 1 ms to 60 s.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Random spread added to each interval, in percent of it (0 to 50).
    #[serde(default)]
    pub jitter_percent: Option<u64>,
    /// The longest wait after repeated failures (at least `poll_interval_ms`).
    #[serde(default)]
    pub max_backoff_ms: Option<u64>,
}

/// A checked source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub cluster: String,
    pub path: String,
    pub authority: String,
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub jitter_percent: u64,
    pub max_backoff_ms: u64,
}

/// Defaults of the optional fields, per use.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub poll_interval_ms: u64,
    pub timeout_ms: u64,
    pub jitter_percent: u64,
    pub max_backoff_ms: u64,
}

impl Source {
    /// Checks a source; errors name `at.<field>`.
    pub fn compile(raw: RawSource, at: &str, d: Defaults) -> Result<Self, ConfigError> {
        let err = |f: &str, m: String| ConfigError::new(format!("{at}.{f}"), m);
        if raw.cluster.is_empty() {
            return Err(err("cluster", "must not be empty".into()));
        }
        if !raw.path.starts_with('/') || !crate::valid_header_value(&raw.path) {
            return Err(err("path", format!("`{}` must start with `/`", raw.path)));
        }
        let poll_interval_ms = raw.poll_interval_ms.unwrap_or(d.poll_interval_ms);
        if !(100..=86_400_000).contains(&poll_interval_ms) {
            return Err(err(
                "poll_interval_ms",
                format!("{poll_interval_ms} must be from 100 to 86400000"),
            ));
        }
        let timeout_ms = raw.timeout_ms.unwrap_or(d.timeout_ms);
        if timeout_ms == 0 || timeout_ms > 60_000 {
            return Err(err(
                "timeout_ms",
                format!("{timeout_ms} must be from 1 to 60000"),
            ));
        }
        let jitter_percent = raw.jitter_percent.unwrap_or(d.jitter_percent);
        if jitter_percent > 50 {
            return Err(err(
                "jitter_percent",
                format!("{jitter_percent} must be at most 50"),
            ));
        }
        let max_backoff_ms = raw
            .max_backoff_ms
            .unwrap_or(d.max_backoff_ms.max(poll_interval_ms));
        if max_backoff_ms < poll_interval_ms {
            return Err(err(
                "max_backoff_ms",
                format!("{max_backoff_ms} must be at least poll_interval_ms ({poll_interval_ms})"),
            ));
        }
        let authority = raw.authority.unwrap_or_else(|| raw.cluster.clone());
        if authority.is_empty() || !crate::valid_header_value(&authority) {
            return Err(err("authority", "must be a host name".into()));
        }
        Ok(Source {
            cluster: raw.cluster,
            path: raw.path,
            authority,
            poll_interval_ms,
            timeout_ms,
            jitter_percent,
            max_backoff_ms,
        })
    }
}

/// A poll's answer as the host reports it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// `None`: no response (timeout, connection failure, no such cluster).
    pub status: Option<u16>,
    pub etag: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a response status says, before the caller looks at the body.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// 200: a body to parse; then call [`Poller::accepted`] or [`Poller::rejected`].
    Body(&'a [u8]),
    /// 304: unchanged (the poll is done).
    NotModified,
    /// No usable answer (the poll is done, backoff applies); why.
    Failed(String),
}

/// Names why a poll got status `status`: Envoy answers a callout it could not complete with a
/// local reply (504 `upstream request timeout`, 503 `no healthy upstream` or `upstream connect
/// error ... reset reason: ...`), which says more than the status.
pub fn failure_cause(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body.get(..512).unwrap_or(body));
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("upstream request timeout") {
        return format!("timeout (status {status}: no answer within timeout_ms)");
    }
    if lower.starts_with("no healthy upstream") {
        return format!("no healthy upstream (status {status}: the cluster has no endpoint up)");
    }
    if lower.contains("connection refused") {
        return format!("connection refused (status {status})");
    }
    if let Some((_, reason)) = lower.split_once("reset reason: ") {
        let reason = reason.split(',').next().unwrap_or(reason).trim();
        return format!("connection failed: {reason} (status {status})");
    }
    format!("status {status} from the server")
}

/// When to poll, and the conditional request.
#[derive(Debug, Clone)]
pub struct Poller {
    pub etag: Option<String>,
    failures: u32,
    next_at_ms: u64,
    in_flight_since: Option<u64>,
}

impl Poller {
    /// A poller that polls first at `now_ms` (after a jitter of up to one interval's
    /// `jitter_percent`, so workers and restarts spread out).
    pub fn new(src: &Source, now_ms: u64, noise: u64) -> Self {
        Self {
            etag: None,
            failures: 0,
            next_at_ms: now_ms.saturating_add(jitter(src, noise)),
            in_flight_since: None,
        }
    }

    /// Whether a poll should start now.
    pub fn due(&self, src: &Source, now_ms: u64) -> bool {
        match self.in_flight_since {
            // A lost callback must not stop polling forever.
            Some(t) => now_ms >= t.saturating_add(src.timeout_ms).saturating_add(5_000),
            None => now_ms >= self.next_at_ms,
        }
    }

    pub fn started(&mut self, now_ms: u64) {
        self.in_flight_since = Some(now_ms);
    }

    /// The request headers of a poll.
    pub fn request_headers<'a>(&'a self, src: &'a Source) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            (":method", "GET"),
            (":path", src.path.as_str()),
            (":authority", src.authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(e) = &self.etag {
            h.push(("if-none-match", e.as_str()));
        }
        h
    }

    /// The dispatch failed before any request went out.
    pub fn dispatch_failed(&mut self, src: &Source, now_ms: u64, noise: u64) {
        self.in_flight_since = None;
        self.fail(src, now_ms, noise);
    }

    /// Another VM holds the poller lease: look again after one interval (no backoff, no count).
    pub fn dispatch_failed_quietly(&mut self, src: &Source, now_ms: u64) {
        self.next_at_ms = now_ms.saturating_add(src.poll_interval_ms);
    }

    fn fail(&mut self, src: &Source, now_ms: u64, noise: u64) {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.min(20);
        let backoff = src
            .poll_interval_ms
            .saturating_mul(1u64 << shift)
            .min(src.max_backoff_ms);
        self.next_at_ms = now_ms
            .saturating_add(backoff)
            .saturating_add(jitter(src, noise));
    }

    fn succeed(&mut self, src: &Source, now_ms: u64, noise: u64) {
        self.failures = 0;
        self.next_at_ms = now_ms
            .saturating_add(src.poll_interval_ms)
            .saturating_add(jitter(src, noise));
    }

    /// Reads a response's status; a 304 or a failure schedules the next poll.
    pub fn answer<'r>(
        &mut self,
        src: &Source,
        now_ms: u64,
        noise: u64,
        r: &Response<'r>,
    ) -> Answer<'r> {
        self.in_flight_since = None;
        let a = match r.status {
            None => Answer::Failed("no response (timeout or connection failure)".into()),
            Some(304) => Answer::NotModified,
            Some(200) => return Answer::Body(r.body),
            Some(s) => Answer::Failed(failure_cause(s, r.body)),
        };
        match a {
            Answer::Failed(_) => self.fail(src, now_ms, noise),
            _ => self.succeed(src, now_ms, noise),
        }
        a
    }

    /// The body of a 200 was good (or the same as before): remember its ETag, poll again after
    /// an interval.
    pub fn accepted(&mut self, src: &Source, now_ms: u64, noise: u64, etag: Option<&str>) {
        self.etag = etag.map(str::to_string);
        self.succeed(src, now_ms, noise);
    }

    /// The body of a 200 was refused: back off, keep the last good data.
    pub fn rejected(&mut self, src: &Source, now_ms: u64, noise: u64) {
        self.fail(src, now_ms, noise);
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn next_at_ms(&self) -> u64 {
        self.next_at_ms
    }
}

/// Up to `jitter_percent` of the interval, from a noise value.
fn jitter(src: &Source, noise: u64) -> u64 {
    let span = src.poll_interval_ms.saturating_mul(src.jitter_percent) / 100;
    if span == 0 {
        0
    } else {
        noise % (span.saturating_add(1))
    }
}

/// What a worker's tick did about polling.
#[derive(Debug, PartialEq, Eq)]
pub enum Tick {
    /// Nothing to do (not due, another VM polls, or a call is in flight).
    Idle,
    /// A poll went out.
    Polling,
    /// A poll could not be dispatched; why.
    DispatchFailed(String),
}

/// One worker's side of a shared poll: the lease, the call in flight, and the last published
/// data it applied.
#[derive(Debug)]
pub struct SharedPoll {
    pub poller: Poller,
    /// Shared-data keys: lease, published data, VM id counter.
    keys: [String; 3],
    /// Unique among this plugin's VMs (from a shared counter).
    id: u64,
    /// CAS of the published data last returned by [`SharedPoll::changed`].
    data_cas: Option<u32>,
    pending_call: Option<u32>,
    /// Whether this VM holds the poller lease.
    holder: bool,
}

fn now_ms(host: &impl Host) -> u64 {
    host.now_ns() / 1_000_000
}

impl SharedPoll {
    /// A worker's poll of `src`, its shared data under `prefix` (unique per plugin and source).
    pub fn new(host: &impl Host, prefix: &str, src: &Source) -> Self {
        let keys = [
            format!("{prefix}/lease"),
            format!("{prefix}/data"),
            format!("{prefix}/ids"),
        ];
        let id = next_id(host, &keys[2]);
        let poller = Poller::new(src, now_ms(host), crate::hash::hash64(id, b"start"));
        Self {
            poller,
            keys,
            id,
            data_cas: None,
            pending_call: None,
            holder: false,
        }
    }

    /// A noise value for jitter, different per VM and per call.
    pub fn noise(&self, now_ms: u64) -> u64 {
        crate::hash::hash64(self.id, &now_ms.to_le_bytes())
    }

    /// On each tick: takes or renews the lease, and polls when due and holding it.
    pub fn tick(&mut self, host: &impl Host, src: &Source) -> Tick {
        let now = now_ms(host);
        let due = self.poller.due(src, now);
        // The holder renews on every tick; the others look only when their own poll is due.
        if self.holder || due {
            self.holder = self.hold_lease(host, now);
        }
        if !self.holder {
            if due {
                // Not ours to poll: look again after an interval.
                self.poller.dispatch_failed_quietly(src, now);
            }
            return Tick::Idle;
        }
        if !due || self.pending_call.is_some() {
            return Tick::Idle;
        }
        let noise = self.noise(now);
        let headers = self.poller.request_headers(src);
        match host.http_call(
            &src.cluster,
            &headers,
            None,
            Duration::from_millis(src.timeout_ms),
        ) {
            Ok(token) => {
                self.poller.started(now);
                self.pending_call = Some(token);
                Tick::Polling
            }
            Err(e) => {
                self.poller.dispatch_failed(src, now, noise);
                Tick::DispatchFailed(format!("cannot call cluster `{}` ({e:?})", src.cluster))
            }
        }
    }

    /// Whether the call `token` is this poll's (then it is no longer pending).
    pub fn owns(&mut self, token: u32) -> bool {
        if self.pending_call == Some(token) {
            self.pending_call = None;
            true
        } else {
            false
        }
    }

    /// Publishes good data for every worker.
    pub fn publish(&self, host: &impl Host, bytes: &[u8]) -> bool {
        host.shared_set(&self.keys[1], bytes, None).is_ok()
    }

    /// The published data, if it changed since this worker last looked.
    pub fn changed(&mut self, host: &impl Host) -> Option<Vec<u8>> {
        let Ok((Some(bytes), cas)) = host.shared_get(&self.keys[1]) else {
            return None;
        };
        if cas == self.data_cas {
            return None;
        }
        self.data_cas = cas;
        Some(bytes)
    }

    fn hold_lease(&self, host: &impl Host, now: u64) -> bool {
        let (bytes, cas) = host.shared_get(&self.keys[0]).unwrap_or((None, None));
        let current = bytes.and_then(|b| String::from_utf8(b).ok()).and_then(|s| {
            let (id, exp) = s.split_once(' ')?;
            Some((id.parse::<u64>().ok()?, exp.parse::<u64>().ok()?))
        });
        let free = match current {
            None => true,
            Some((holder, exp)) => holder == self.id || exp <= now,
        };
        free && host
            .shared_set(
                &self.keys[0],
                format!("{} {}", self.id, now.saturating_add(LEASE_MS)).as_bytes(),
                cas,
            )
            .is_ok()
    }
}

/// The shared-data prefix of a feature's poll: `<feature>/<plugin name>` (the Envoy plugin's
/// `name`, so that two plugins of one VM poll apart), then `rest`.
pub fn shared_prefix(host: &impl Host, feature: &str, rest: &str) -> String {
    let plugin = host
        .property(&["plugin_name"])
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| feature.to_string());
    format!("{feature}/{plugin}{rest}")
}

/// Reads a callout's answer: status, ETag and body (`headers` / `body` as the host reported them).
pub fn read_response(
    host: &impl Host,
    headers: usize,
    body: usize,
) -> (Option<u16>, Option<String>, Vec<u8>) {
    let map = if headers > 0 {
        host.call_response_header_map()
    } else {
        None
    };
    let view = map.as_deref().and_then(HeaderMapView::parse);
    let status = view
        .as_ref()
        .and_then(|h| h.get_str(":status"))
        .and_then(|s| s.parse::<u16>().ok());
    let etag = view
        .as_ref()
        .and_then(|h| h.get_str("etag"))
        .map(str::to_string);
    let body = if body > 0 {
        host.call_response_body(body).unwrap_or_default()
    } else {
        Vec::new()
    };
    (status, etag, body)
}

/// A number unique among the VMs sharing `key` (a shared counter bumped by CAS).
fn next_id(host: &impl Host, key: &str) -> u64 {
    for _ in 0..16 {
        let (bytes, cas) = host.shared_get(key).unwrap_or((None, None));
        let n = bytes
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_add(1);
        if host.shared_set(key, n.to_string().as_bytes(), cas).is_ok() {
            return n;
        }
    }
    // Contention beyond reason: fall back to the clock, unique enough for a lease owner.
    now_ms(host)
}

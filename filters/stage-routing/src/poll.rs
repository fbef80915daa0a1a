//! The control-plane poll, as a state machine over plain inputs: when to poll next (interval with
//! jitter, exponential backoff after failures), the conditional request (`If-None-Match`), and
//! what a response means. The adapter does the I/O: one worker at a time polls (a lease in shared
//! data), publishes good data in shared data, and every worker applies it on its tick.

use crate::config::{Config, ControlPlane, StageData};

/// A control-plane response as the host reports it.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    /// `None`: no response (timeout, connection failure, no such cluster).
    pub status: Option<u16>,
    pub etag: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a poll came to.
#[derive(Debug)]
pub enum Outcome {
    /// New, valid data (publish it). `etag` is remembered for the next request.
    Updated(Box<StageData>),
    /// 304, or the same version again: nothing to do.
    Unchanged,
    /// Keep the last good data; the message says why.
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
    format!("status {status} from the control plane")
}

#[derive(Debug, Clone)]
pub struct Poller {
    pub etag: Option<String>,
    /// The version of the data last published (0: the configuration's).
    pub version: u64,
    failures: u32,
    next_at_ms: u64,
    in_flight_since: Option<u64>,
}

impl Poller {
    /// A poller that polls first at `now_ms` (after a jitter of up to one interval's
    /// `jitter_percent`, so workers and restarts spread out).
    pub fn new(cp: &ControlPlane, now_ms: u64, noise: u64) -> Self {
        Self {
            etag: None,
            version: 0,
            failures: 0,
            next_at_ms: now_ms + jitter(cp, noise),
            in_flight_since: None,
        }
    }

    /// Whether a poll should start now.
    pub fn due(&self, cp: &ControlPlane, now_ms: u64) -> bool {
        match self.in_flight_since {
            // A lost callback must not stop polling forever.
            Some(t) => now_ms >= t + cp.timeout_ms + 5_000,
            None => now_ms >= self.next_at_ms,
        }
    }

    pub fn started(&mut self, now_ms: u64) {
        self.in_flight_since = Some(now_ms);
    }

    /// The request headers of a poll.
    pub fn request_headers<'a>(&'a self, cp: &'a ControlPlane) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![
            (":method", "GET"),
            (":path", cp.path.as_str()),
            (":authority", cp.authority.as_str()),
            ("accept", "application/json"),
        ];
        if let Some(e) = &self.etag {
            h.push(("if-none-match", e.as_str()));
        }
        h
    }

    /// The dispatch failed before any request went out.
    pub fn dispatch_failed(&mut self, cp: &ControlPlane, now_ms: u64, noise: u64) {
        self.in_flight_since = None;
        self.fail(cp, now_ms, noise);
    }

    /// Another VM holds the poller lease: look again after one interval (no backoff, no count).
    pub fn dispatch_failed_quietly(&mut self, cp: &ControlPlane, now_ms: u64) {
        self.next_at_ms = now_ms + cp.poll_interval_ms;
    }

    fn fail(&mut self, cp: &ControlPlane, now_ms: u64, noise: u64) {
        self.failures = self.failures.saturating_add(1);
        let shift = self.failures.min(20);
        let backoff = cp
            .poll_interval_ms
            .saturating_mul(1u64 << shift)
            .min(cp.max_backoff_ms);
        self.next_at_ms = now_ms + backoff + jitter(cp, noise);
    }

    /// Interprets a response; schedules the next poll.
    pub fn on_response(
        &mut self,
        cfg: &Config,
        now_ms: u64,
        noise: u64,
        r: &Response<'_>,
    ) -> Outcome {
        self.in_flight_since = None;
        let cp = match &cfg.control_plane {
            Some(cp) => cp,
            None => return Outcome::Failed("no control plane configured".into()),
        };
        let outcome = match r.status {
            None => Outcome::Failed("no response (timeout or connection failure)".into()),
            Some(304) => Outcome::Unchanged,
            Some(200) => match cfg.parse_stage_data(r.body) {
                Ok(d) if d.version == self.version && self.version != 0 => {
                    self.etag = r.etag.map(str::to_string);
                    Outcome::Unchanged
                }
                Ok(d) if d.version < self.version => Outcome::Failed(format!(
                    "version {} is older than the current {}",
                    d.version, self.version
                )),
                Ok(d) => {
                    self.etag = r.etag.map(str::to_string);
                    self.version = d.version;
                    Outcome::Updated(Box::new(d))
                }
                Err(e) => Outcome::Failed(format!(
                    "invalid stage data: {}: {}",
                    if e.field.is_empty() {
                        "(root)"
                    } else {
                        &e.field
                    },
                    e.message
                )),
            },
            Some(s) => Outcome::Failed(failure_cause(s, r.body)),
        };
        match outcome {
            Outcome::Failed(_) => self.fail(cp, now_ms, noise),
            _ => {
                self.failures = 0;
                self.next_at_ms = now_ms + cp.poll_interval_ms + jitter(cp, noise);
            }
        }
        outcome
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn next_at_ms(&self) -> u64 {
        self.next_at_ms
    }
}

/// Up to `jitter_percent` of the interval, from a noise value.
fn jitter(cp: &ControlPlane, noise: u64) -> u64 {
    let span = cp.poll_interval_ms * cp.jitter_percent / 100;
    if span == 0 {
        0
    } else {
        noise % (span + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    fn cfg() -> Config {
        Config::from_json(br#"{"stages":[{"name":"prod","weight":90},{"name":"canary","weight":10}],
            "control_plane":{"cluster":"cp","path":"/stages","poll_interval_ms":1000,"timeout_ms":500,"jitter_percent":10,"max_backoff_ms":8000}}"#).unwrap()
    }

    fn ok(body: &str, etag: Option<&'static str>) -> (String, Option<&'static str>) {
        (body.to_string(), etag)
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn polls_update_back_off_and_keep_etags() {
        let c = cfg();
        let cp = c.control_plane.clone().unwrap();
        let mut p = Poller::new(&cp, 0, 42);
        assert!(!p.due(&cp, 0) || p.next_at_ms() == 0);
        assert!(p.due(&cp, 100));
        p.started(100);
        assert!(!p.due(&cp, 200), "one poll at a time");
        let (body, etag) = ok(
            r#"{"version":3,"stages":[{"name":"prod","weight":80},{"name":"canary","weight":20}]}"#,
            Some("\"v3\""),
        );
        let o = p.on_response(
            &c,
            150,
            0,
            &Response {
                status: Some(200),
                etag,
                body: body.as_bytes(),
            },
        );
        assert!(matches!(&o, Outcome::Updated(d) if d.weights == vec![8000, 2000]));
        assert_eq!(p.next_at_ms(), 1150);
        assert!(p
            .request_headers(&cp)
            .contains(&("if-none-match", "\"v3\"")));
        let o = p.on_response(
            &c,
            1200,
            0,
            &Response {
                status: Some(304),
                etag: None,
                body: b"",
            },
        );
        assert!(matches!(o, Outcome::Unchanged));
        // Failures back off 2 s, 4 s, 8 s, then stay at the maximum.
        for (i, want) in [2000u64, 4000, 8000, 8000].iter().enumerate() {
            let r = match i {
                0 => Response {
                    status: Some(500),
                    etag: None,
                    body: b"",
                },
                1 => Response {
                    status: None,
                    etag: None,
                    body: b"",
                },
                _ => Response {
                    status: Some(200),
                    etag: None,
                    body: b"{bad json",
                },
            };
            let o = p.on_response(&c, 10_000, 0, &r);
            assert!(matches!(o, Outcome::Failed(_)), "{o:?}");
            assert_eq!(p.next_at_ms(), 10_000 + want);
        }
        assert_eq!(p.failures(), 4);
        let o = p.on_response(
            &c,
            10_000,
            0,
            &Response {
                status: Some(200),
                etag: None,
                body: br#"{"version":9,"stages":[{"name":"prod","weight":50}]}"#,
            },
        );
        assert!(
            matches!(&o, Outcome::Failed(m) if m == "invalid stage data: stages: weights sum to 50, not 100"),
            "{o:?}"
        );
        assert_eq!(p.failures(), 5);
        // The etag and version survive failures; an older version is refused.
        let (body, _) = ok(
            r#"{"version":2,"stages":[{"name":"prod","weight":100}]}"#,
            None,
        );
        let o = p.on_response(
            &c,
            20_000,
            0,
            &Response {
                status: Some(200),
                etag: None,
                body: body.as_bytes(),
            },
        );
        assert!(
            matches!(&o, Outcome::Failed(m) if m.contains("older")),
            "{o:?}"
        );
        let (body, _) = ok(
            r#"{"version":4,"stages":[{"name":"prod","weight":100}]}"#,
            None,
        );
        let o = p.on_response(
            &c,
            30_000,
            7,
            &Response {
                status: Some(200),
                etag: None,
                body: body.as_bytes(),
            },
        );
        assert!(matches!(o, Outcome::Updated(_)));
        assert_eq!(p.failures(), 0);
        assert_eq!(p.next_at_ms(), 31_007, "interval plus jitter");
        assert_eq!(p.etag, None);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn failures_name_their_cause() {
        assert_eq!(
            failure_cause(504, b"upstream request timeout"),
            "timeout (status 504: no answer within timeout_ms)"
        );
        assert_eq!(
            failure_cause(503, b"no healthy upstream"),
            "no healthy upstream (status 503: the cluster has no endpoint up)"
        );
        assert_eq!(
            failure_cause(503, b"upstream connect error or disconnect/reset before headers. reset reason: connection failure, transport failure reason: delayed connect error: Connection refused"),
            "connection refused (status 503)"
        );
        assert_eq!(
            failure_cause(503, b"upstream connect error or disconnect/reset before headers. reset reason: connection termination"),
            "connection failed: connection termination (status 503)"
        );
        assert_eq!(
            failure_cause(500, b"oops"),
            "status 500 from the control plane"
        );
    }
}

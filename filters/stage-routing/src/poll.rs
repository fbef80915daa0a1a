//! The control-plane poll of stage data: the shared poller of `edge_common::poll` (interval with
//! jitter, backoff, `If-None-Match`, one poller for all workers), plus what stage data adds: a
//! version that only moves forward.

pub use edge_common::poll::{failure_cause, Response};

use crate::config::{Config, ControlPlane, StageData};

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

/// A stage-data poller on its own (the feature keeps the same two parts in its shared poll).
#[derive(Debug, Clone)]
pub struct Poller {
    inner: edge_common::poll::Poller,
    /// The version of the data last published (0: the configuration's).
    pub version: u64,
}

impl std::ops::Deref for Poller {
    type Target = edge_common::poll::Poller;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Poller {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Poller {
    pub fn new(cp: &ControlPlane, now_ms: u64, noise: u64) -> Self {
        Self {
            inner: edge_common::poll::Poller::new(cp, now_ms, noise),
            version: 0,
        }
    }

    /// Interprets a response; schedules the next poll.
    pub fn on_response(
        &mut self,
        cfg: &Config,
        now_ms: u64,
        noise: u64,
        r: &Response<'_>,
    ) -> Outcome {
        on_response(&mut self.inner, &mut self.version, cfg, now_ms, noise, r)
    }
}

/// Interprets a response to a poll of stage data, `version` being the version in force; schedules
/// the next poll.
pub fn on_response(
    p: &mut edge_common::poll::Poller,
    version: &mut u64,
    cfg: &Config,
    now_ms: u64,
    noise: u64,
    r: &Response<'_>,
) -> Outcome {
    let Some(cp) = &cfg.control_plane else {
        return Outcome::Failed("no control plane configured".into());
    };
    let body = match p.answer(cp, now_ms, noise, r) {
        edge_common::poll::Answer::Body(b) => b,
        edge_common::poll::Answer::NotModified => return Outcome::Unchanged,
        edge_common::poll::Answer::Failed(why) => return Outcome::Failed(why),
    };
    match cfg.parse_stage_data(body) {
        Ok(d) if d.version == *version && *version != 0 => {
            p.accepted(cp, now_ms, noise, r.etag);
            Outcome::Unchanged
        }
        Ok(d) if d.version < *version => {
            p.rejected(cp, now_ms, noise);
            Outcome::Failed(format!(
                "version {} is older than the current {}",
                d.version, *version
            ))
        }
        Ok(d) => {
            p.accepted(cp, now_ms, noise, r.etag);
            *version = d.version;
            Outcome::Updated(Box::new(d))
        }
        Err(e) => {
            p.rejected(cp, now_ms, noise);
            Outcome::Failed(format!(
                "invalid stage data: {}: {}",
                if e.field.is_empty() {
                    "(root)"
                } else {
                    &e.field
                },
                e.message
            ))
        }
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
        assert_eq!(failure_cause(500, b"oops"), "status 500 from the server");
    }
}

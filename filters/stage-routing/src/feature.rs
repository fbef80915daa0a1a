//! The stage-routing feature: per request, the assignment and the stage header (Envoy then picks
//! the route again by itself); on the tick, stage data from shared data, and (on the one worker
//! holding the lease) the control-plane poll.

use std::cell::RefCell;
use std::rc::Rc;

use edge_common::host::{
    counter, metric, CallResponse, Decision, Decisions, Feature, Host, LogLevel, MetricKind,
    Request, StartError,
};

use crate::assign::{assign, pin_cookie, Assignment, Reason, Request as Ask};
use crate::config::{Config, Mode, StageData};
use crate::poll::{on_response, Outcome, Response};
use edge_common::poll::{SharedPoll, Tick};

struct Metrics {
    /// Requests per stage.
    stages: Vec<u32>,
    /// Assignments per reason, in `Reason::ALL` order.
    reasons: Vec<u32>,
    override_rejected: u32,
    /// Pin cookies ignored: forged, stale or for another user.
    pin_rejected: u32,
    version: u32,
    updates: u32,
    not_modified: u32,
    failures: u32,
}

/// The control-plane side of one worker: the shared poll, and the stage-data version in force.
struct Poll {
    shared: SharedPoll,
    version: u64,
}

pub struct StageRouting {
    pub cfg: Config,
    metrics: Metrics,
    /// The stage data in force on this worker.
    data: RefCell<Rc<StageData>>,
    poll: Option<RefCell<Poll>>,
}

/// What a request keeps for its response: the pin cookie to set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PinState {
    pub set_cookie: Option<String>,
}

fn now_ms(host: &impl Host) -> u64 {
    host.now_ns() / 1_000_000
}

impl StageRouting {
    pub fn with_config(cfg: Config, host: &impl Host) -> Result<Self, StartError> {
        let mut stages = Vec::new();
        for s in &cfg.stages {
            stages.push(counter(
                host,
                &format!(
                    "stage_routing.stage.{}.requests",
                    edge_common::metrics::segment(s)
                ),
            )?);
        }
        let mut reasons = Vec::new();
        for r in Reason::ALL {
            reasons.push(counter(
                host,
                &format!("stage_routing.assigned.{}", r.as_str()),
            )?);
        }
        let metrics = Metrics {
            stages,
            reasons,
            override_rejected: counter(host, "stage_routing.override_rejected")?,
            pin_rejected: counter(host, "stage_routing.pin_rejected")?,
            version: metric(host, MetricKind::Gauge, "stage_routing.data_version")?,
            updates: counter(host, "stage_routing.control_plane.updates")?,
            not_modified: counter(host, "stage_routing.control_plane.not_modified")?,
            failures: counter(host, "stage_routing.control_plane.failures")?,
        };
        host.record(metrics.version, 0);
        let data = RefCell::new(Rc::new(cfg.data.clone()));
        let poll = cfg.control_plane.as_ref().map(|cp| {
            RefCell::new(Poll {
                shared: SharedPoll::new(
                    host,
                    &edge_common::poll::shared_prefix(host, "stage_routing", ""),
                    cp,
                ),
                version: 0,
            })
        });
        let f = Self {
            cfg,
            metrics,
            data,
            poll,
        };
        f.sync_data(host);
        Ok(f)
    }

    /// The stage data in force on this worker.
    pub fn data(&self) -> Rc<StageData> {
        self.data.borrow().clone()
    }

    /// Decides the stage of a request (pure: nothing is applied).
    pub fn assign(&self, host: &impl Host, req: &Request<'_>, data: &StageData) -> Assignment {
        let h = &req.headers;
        let header = |n: &str| h.get_str(n);
        let ip = || req.client_ip(host);
        // The cookie header is joined only when the configuration reads a cookie.
        let cookies = if self.cfg.reads_cookies() {
            h.cookies()
        } else {
            None
        };
        // The clock is read only when pins are configured (they carry an issue time).
        let now = if self.cfg.pin.is_some() {
            req.now_ns(host) / 1_000_000_000
        } else {
            0
        };
        assign(
            &self.cfg,
            data,
            &Ask {
                authority: h.get_str(":authority").unwrap_or(""),
                path: req.path(),
                header: &header,
                cookie: cookies.as_deref(),
                client_ip: &ip,
                now,
            },
        )
    }

    /// Applies an assignment: counters, the stage header, and the pin cookie for the response.
    /// Adds the assignment to the request's explanation (`stage=<stage>/<reason>`).
    pub fn note(&self, a: &Assignment, decisions: &mut Decisions) {
        if decisions.explain.is_some() {
            let stage = self.cfg.stages.get(a.stage).map_or("", String::as_str);
            decisions.note("stage", &format!("{stage}/{}", a.reason.as_str()));
        }
    }

    pub fn apply(&self, host: &impl Host, req: &Request<'_>, a: Assignment, state: &mut PinState) {
        let cfg = &self.cfg;
        let h = &req.headers;
        let stage = cfg.stages.get(a.stage).map_or("", String::as_str);
        let m = &self.metrics;
        if let Some(&id) = m.stages.get(a.stage) {
            host.count(id, 1);
        }
        if let Some(&id) = m.reasons.get(a.reason.index()) {
            host.count(id, 1);
        }
        if a.override_rejected {
            host.count(m.override_rejected, 1);
        }
        if a.pin_rejected {
            host.count(m.pin_rejected, 1);
        }
        let client_sent = h.contains(&cfg.stage_header);
        // Changing a request header makes Envoy clear its route cache and match the routes again
        // (for modules of Proxy-Wasm ABI 0.2.1, which the Rust SDK exports; Envoy 1.33+ stopped
        // doing so only for later ABIs), so the route follows the header without a
        // `clear_route_cache` call, which would cost a second host call per request.
        if cfg.mode == Mode::Shadow {
            // Shadow: the route stays as it was, but a client never chooses it.
            if client_sent {
                host.set_request_header(&cfg.stage_header, None);
            }
            return;
        }
        if client_sent || a.stage != cfg.base || cfg.header_on_base_stage {
            host.set_request_header(&cfg.stage_header, Some(stage));
        }
        if matches!(a.reason, Reason::Hash | Reason::Fallback) && cfg.pin.is_some() {
            let header = |n: &str| h.get_str(n);
            let ip = || req.client_ip(host);
            let cookies = h.cookies();
            let ask = Ask {
                authority: "",
                path: "",
                header: &header,
                cookie: cookies.as_deref(),
                client_ip: &ip,
                now: req.now_ns(host) / 1_000_000_000,
            };
            state.set_cookie = pin_cookie(cfg, &ask, stage);
        }
    }

    /// Applies the stage data a poller published, if it changed since the last look.
    fn sync_data(&self, host: &impl Host) {
        let Some(Ok(mut poll)) = self.poll.as_ref().map(RefCell::try_borrow_mut) else {
            return;
        };
        let Some(bytes) = poll.shared.changed(host) else {
            return;
        };
        match self.cfg.parse_stage_data(&bytes) {
            Ok(d) => {
                let v = d.version;
                if let Ok(mut cur) = self.data.try_borrow_mut() {
                    if cur.allowlists != d.allowlists {
                        host.log(
                            LogLevel::Info,
                            &format!(
                                "stage data version {v} changes the allowlists: {} entr(y/ies) now, {} before",
                                d.allowlists.len(),
                                cur.allowlists.len()
                            ),
                        );
                    }
                    if cur.overrides_enabled != d.overrides_enabled {
                        host.log(
                            LogLevel::Info,
                            &format!(
                                "stage data version {v} sets overrides_enabled to {:?} (was {:?})",
                                d.overrides_enabled, cur.overrides_enabled
                            ),
                        );
                    }
                    *cur = Rc::new(d);
                }
                host.record(self.metrics.version, v);
                poll.version = poll.version.max(v);
            }
            // Written by a VM with another configuration (e.g. before a reload): ignore it.
            Err(e) => host.log(
                LogLevel::Warn,
                &format!(
                    "shared stage data does not fit this configuration, keeping version {}: {e}",
                    self.data().version
                ),
            ),
        }
    }

    fn poll(&self, host: &impl Host) {
        let (Some(cp), Some(Ok(mut poll))) = (
            &self.cfg.control_plane,
            self.poll.as_ref().map(RefCell::try_borrow_mut),
        ) else {
            return;
        };
        if let Tick::DispatchFailed(why) = poll.shared.tick(host, cp) {
            host.count(self.metrics.failures, 1);
            host.log(
                LogLevel::Warn,
                &format!("{why}; keeping stage data version {}", self.data().version),
            );
        }
    }
}

impl Feature for StageRouting {
    type Request = PinState;

    fn configure(json: &[u8], host: &impl Host) -> Result<Self, StartError> {
        Self::with_config(Config::from_json(json)?, host)
    }

    fn describe(&self) -> String {
        format!(
            "stage_routing: {} stage(s), mode {:?}",
            self.cfg.stages.len(),
            self.cfg.mode
        )
    }

    fn on_request_headers(
        &self,
        host: &impl Host,
        req: &Request<'_>,
        decisions: &mut Decisions,
        state: &mut PinState,
    ) -> Decision {
        let data = self.data();
        let a = self.assign(host, req, &data);
        decisions.stage = self.cfg.stages.get(a.stage).cloned();
        self.note(&a, decisions);
        self.apply(host, req, a, state);
        Decision::Continue
    }

    fn decision_filter_state(&self) -> Option<&'static str> {
        self.cfg
            .decision_filter_state
            .then_some("stage_routing.decision")
    }

    fn on_response_headers(&self, host: &impl Host, state: &mut PinState) {
        if let Some(c) = state.set_cookie.take() {
            host.add_response_header("set-cookie", &c);
        }
    }

    fn on_tick(&self, host: &impl Host) {
        self.sync_data(host);
        self.poll(host);
    }

    fn on_call_response(&self, host: &impl Host, token: u32, response: CallResponse) {
        let CallResponse::Http { headers, body } = response else {
            return;
        };
        let Some(cell) = &self.poll else {
            return;
        };
        if !cell
            .try_borrow_mut()
            .is_ok_and(|mut p| p.shared.owns(token))
        {
            return;
        }
        let (status, etag, body) = edge_common::poll::read_response(host, headers, body);
        let now = now_ms(host);
        let outcome = {
            let Ok(mut poll) = cell.try_borrow_mut() else {
                return;
            };
            let noise = poll.shared.noise(now);
            let Poll { shared, version } = &mut *poll;
            on_response(
                &mut shared.poller,
                version,
                &self.cfg,
                now,
                noise,
                &Response {
                    status,
                    etag: etag.as_deref(),
                    body: &body,
                },
            )
        };
        let m = &self.metrics;
        match outcome {
            Outcome::Updated(d) => {
                let v = d.version;
                let published = cell
                    .try_borrow()
                    .is_ok_and(|p| p.shared.publish(host, &body));
                if published {
                    host.count(m.updates, 1);
                    host.log(LogLevel::Info, &format!("applying stage data version {v}"));
                    self.sync_data(host);
                } else {
                    host.count(m.failures, 1);
                    host.log(LogLevel::Warn, "cannot publish stage data in shared data");
                }
            }
            Outcome::Unchanged => host.count(m.not_modified, 1),
            Outcome::Failed(why) => {
                host.count(m.failures, 1);
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "control plane poll failed: {why}; keeping stage data version {}",
                        self.data().version
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_common::host::fake::{configure, respond, run, FakeHost};
    use std::time::Duration;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test;

    const SECRET: &str = "0123456789abcdef-secret";

    fn stage(extra: &str) -> (StageRouting, FakeHost) {
        configure::<StageRouting>(&format!(
            r#"{{"stages":[{{"name":"prod","weight":50}},{{"name":"canary","weight":50}}],
                "sticky_key":[{{"type":"header","name":"x-user-id"}}]{extra}}}"#
        ))
    }

    fn user_on(f: &StageRouting, h: &FakeHost, stage: &str) -> String {
        (0..)
            .map(|i| format!("u{i}"))
            .find(|id| {
                h.request(&[(":path", "/"), ("x-user-id", id)]);
                run(f, h).decisions.stage.as_deref() == Some(stage)
            })
            .unwrap_or_default()
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn the_stage_header_is_ours_and_the_pin_is_set_on_the_response() {
        let (f, h) = stage(&format!(
            r#","pin_cookie":{{"secret":"{SECRET}","max_age_seconds":600}}"#
        ));
        let canary = user_on(&f, &h, "canary");
        let prod = user_on(&f, &h, "prod");
        h.request(&[(":path", "/"), ("x-user-id", &canary), ("x-stage", "prod")]);
        let mut out = run(&f, &h);
        assert_eq!(h.forwarded_header("x-stage").as_deref(), Some("canary"));
        respond(&f, &h, &mut out.state);
        let cookie = h.response_header("set-cookie").unwrap();
        assert!(cookie.starts_with("stage=canary.1800000000."), "{cookie}");
        assert!(
            cookie.ends_with("; Max-Age=600; Path=/; HttpOnly; SameSite=Lax"),
            "{cookie}"
        );
        // Base stage: the header by default; none with `header_on_base_stage: false` (a
        // client's own is still replaced).
        h.request(&[(":path", "/"), ("x-user-id", &prod)]);
        run(&f, &h);
        assert_eq!(h.forwarded_header("x-stage").as_deref(), Some("prod"));
        let (quiet, hq) = stage(r#","header_on_base_stage":false"#);
        hq.request(&[(":path", "/"), ("x-user-id", &prod)]);
        let out = run(&quiet, &hq);
        assert_eq!((out.host_calls, hq.forwarded_header("x-stage")), (1, None));
        hq.request(&[(":path", "/"), ("x-user-id", &prod), ("x-stage", "canary")]);
        run(&quiet, &hq);
        assert_eq!(hq.forwarded_header("x-stage").as_deref(), Some("prod"));
        // A valid pin keeps the stage and is not set again.
        let pin = cookie.split(';').next().unwrap().to_string();
        h.request(&[(":path", "/"), ("x-user-id", &canary), ("cookie", &pin)]);
        let mut out = run(&f, &h);
        respond(&f, &h, &mut out.state);
        assert_eq!(h.response_header("set-cookie"), None);
        assert_eq!(h.metric("stage_routing.assigned.cookie"), Some(1));
        // A forged one is ignored and counted.
        h.request(&[
            (":path", "/"),
            ("x-user-id", &prod),
            ("cookie", "stage=canary"),
        ]);
        assert_eq!(run(&f, &h).decisions.stage.as_deref(), Some("prod"));
        assert_eq!(h.metric("stage_routing.pin_rejected"), Some(1));
        assert!(h.metric("stage_routing.stage.canary.requests").unwrap() >= 3);
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn shadow_mode_only_removes_a_client_stage_header() {
        let (f, h) = stage(r#","mode":"shadow""#);
        let canary = user_on(&f, &h, "canary");
        h.request(&[(":path", "/"), ("x-user-id", &canary), ("x-stage", "prod")]);
        run(&f, &h);
        assert_eq!(h.forwarded_header("x-stage"), None);
        h.request(&[(":path", "/"), ("x-user-id", &canary)]);
        let out = run(&f, &h);
        assert_eq!((out.host_calls, h.forwarded_header("x-stage")), (1, None));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test)]
    fn control_plane_polls_applies_and_keeps_the_last_good_data() {
        let (f, h) = stage(
            r#","control_plane":{"cluster":"cp","path":"/stages","poll_interval_ms":1000,"jitter_percent":0}"#,
        );
        f.on_tick(&h);
        let calls = h.calls();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].cluster, "cp");
        assert!(calls[0]
            .headers
            .contains(&(":path".into(), "/stages".into())));
        h.set_call_response(
            &[(":status", "200"), ("etag", "\"v7\"")],
            br#"{"version":7,"stages":[{"name":"prod","weight":0},{"name":"canary","weight":100}]}"#,
        );
        let body_len = h.calls().len();
        assert_eq!(body_len, 1);
        f.on_call_response(
            &h,
            1,
            CallResponse::Http {
                headers: 2,
                body: 200,
            },
        );
        assert_eq!(f.data().version, 7);
        assert_eq!(h.metric("stage_routing.data_version"), Some(7));
        assert_eq!(h.metric("stage_routing.control_plane.updates"), Some(1));
        h.request(&[(":path", "/"), ("x-user-id", "anyone")]);
        assert_eq!(run(&f, &h).decisions.stage.as_deref(), Some("canary"));
        // The next poll sends the ETag; a 304 changes nothing; bad data is refused.
        h.advance(Duration::from_millis(1_100));
        f.on_tick(&h);
        let poll = h.calls().pop().unwrap();
        assert!(poll
            .headers
            .contains(&("if-none-match".into(), "\"v7\"".into())));
        h.set_call_response(&[(":status", "304")], b"");
        f.on_call_response(
            &h,
            poll.token,
            CallResponse::Http {
                headers: 1,
                body: 0,
            },
        );
        assert_eq!(
            h.metric("stage_routing.control_plane.not_modified"),
            Some(1)
        );
        h.advance(Duration::from_millis(1_100));
        f.on_tick(&h);
        let poll = h.calls().pop().unwrap();
        h.set_call_response(
            &[(":status", "200")],
            br#"{"version":8,"stages":[{"name":"beta","weight":100}]}"#,
        );
        f.on_call_response(
            &h,
            poll.token,
            CallResponse::Http {
                headers: 1,
                body: 100,
            },
        );
        assert_eq!(f.data().version, 7);
        assert_eq!(h.metric("stage_routing.control_plane.failures"), Some(1));
        assert!(h
            .logs()
            .iter()
            .any(|(_, m)| m.contains("keeping stage data version 7")));
    }
}

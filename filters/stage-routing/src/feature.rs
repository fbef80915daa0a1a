//! The stage-routing feature: per request, the assignment and the stage header (Envoy then picks
//! the route again by itself); on the tick, stage data from shared data, and (on the one worker
//! holding the lease) the control-plane poll.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use edge_common::headermap::HeaderMapView;
use edge_common::host::{
    counter, metric, CallResponse, Decision, Decisions, Feature, Host, LogLevel, MetricKind,
    Request, StartError,
};

use crate::assign::{assign, pin_cookie, Assignment, Reason, Request as Ask};
use crate::config::{Config, Mode, StageData};
use crate::poll::{Outcome, Poller, Response};

/// A poller that stops renewing its lease (its VM went away) is replaced after this long.
const LEASE_MS: u64 = 3_000;

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

/// The control-plane side of one worker.
#[derive(Default)]
struct Poll {
    poller: Option<Poller>,
    /// Unique among this plugin's VMs (from a shared counter).
    id: u64,
    /// CAS of the shared stage data last applied.
    data_cas: Option<u32>,
    pending_call: Option<u32>,
    /// Whether this VM holds the poller lease.
    holder: bool,
}

pub struct StageRouting {
    pub cfg: Config,
    metrics: Metrics,
    /// The stage data in force on this worker.
    data: RefCell<Rc<StageData>>,
    /// Shared-data keys: lease, data, id counter.
    keys: [String; 3],
    poll: RefCell<Poll>,
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
        let plugin = host
            .property(&["plugin_name"])
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_else(|| "stage_routing".into());
        let keys = [
            format!("stage_routing/{plugin}/lease"),
            format!("stage_routing/{plugin}/data"),
            format!("stage_routing/{plugin}/ids"),
        ];
        host.record(metrics.version, 0);
        let data = RefCell::new(Rc::new(cfg.data.clone()));
        let f = Self {
            cfg,
            metrics,
            data,
            keys,
            poll: RefCell::default(),
        };
        let id = f.next_id(host);
        let now = now_ms(host);
        if let Ok(mut p) = f.poll.try_borrow_mut() {
            p.id = id;
            p.poller = f
                .cfg
                .control_plane
                .as_ref()
                .map(|cp| Poller::new(cp, now, edge_common::hash::hash64(id, b"start")));
        }
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
        let cookies = h.cookies();
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

    fn next_id(&self, host: &impl Host) -> u64 {
        let key = &self.keys[2];
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

    /// Applies the stage data a poller published, if it changed since the last look.
    fn sync_data(&self, host: &impl Host) {
        let Ok((Some(bytes), cas)) = host.shared_get(&self.keys[1]) else {
            return;
        };
        let Ok(mut poll) = self.poll.try_borrow_mut() else {
            return;
        };
        if cas == poll.data_cas {
            return;
        }
        poll.data_cas = cas;
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
                if let Some(p) = &mut poll.poller {
                    p.version = p.version.max(v);
                }
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

    /// Takes or renews the poller lease; true if this VM holds it.
    fn hold_lease(&self, host: &impl Host, id: u64, now: u64) -> bool {
        let (bytes, cas) = host.shared_get(&self.keys[0]).unwrap_or((None, None));
        let current = bytes.and_then(|b| String::from_utf8(b).ok()).and_then(|s| {
            let (id, exp) = s.split_once(' ')?;
            Some((id.parse::<u64>().ok()?, exp.parse::<u64>().ok()?))
        });
        let free = match current {
            None => true,
            Some((holder, exp)) => holder == id || exp <= now,
        };
        free && host
            .shared_set(
                &self.keys[0],
                format!("{id} {}", now.saturating_add(LEASE_MS)).as_bytes(),
                cas,
            )
            .is_ok()
    }

    fn poll(&self, host: &impl Host) {
        let Some(cp) = &self.cfg.control_plane else {
            return;
        };
        let Ok(mut poll) = self.poll.try_borrow_mut() else {
            return;
        };
        let now = now_ms(host);
        let due = poll.poller.as_ref().is_some_and(|p| p.due(cp, now));
        // The holder renews on every tick; the others look only when their own poll is due.
        if poll.holder || due {
            poll.holder = self.hold_lease(host, poll.id, now);
        }
        if !poll.holder {
            if due {
                if let Some(p) = &mut poll.poller {
                    // Not ours to poll: look again after an interval.
                    p.dispatch_failed_quietly(cp, now);
                }
            }
            return;
        }
        if !due || poll.pending_call.is_some() {
            return;
        }
        let noise = edge_common::hash::hash64(poll.id, &now.to_le_bytes());
        let Some(p) = &mut poll.poller else { return };
        let headers = p.request_headers(cp);
        match host.http_call(
            &cp.cluster,
            &headers,
            None,
            Duration::from_millis(cp.timeout_ms),
        ) {
            Ok(token) => {
                p.started(now);
                poll.pending_call = Some(token);
            }
            Err(e) => {
                p.dispatch_failed(cp, now, noise);
                host.count(self.metrics.failures, 1);
                host.log(
                    LogLevel::Warn,
                    &format!(
                        "cannot call control plane cluster `{}` ({e:?}); keeping stage data version {}",
                        cp.cluster,
                        self.data().version
                    ),
                );
            }
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
        self.apply(host, req, a, state);
        Decision::Continue
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
        {
            let Ok(mut poll) = self.poll.try_borrow_mut() else {
                return;
            };
            if poll.pending_call != Some(token) {
                return;
            }
            poll.pending_call = None;
        }
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
        let etag = view.as_ref().and_then(|h| h.get_str("etag"));
        let body = if body > 0 {
            host.call_response_body(body).unwrap_or_default()
        } else {
            Vec::new()
        };
        let now = now_ms(host);
        let outcome = {
            let Ok(mut poll) = self.poll.try_borrow_mut() else {
                return;
            };
            let noise = edge_common::hash::hash64(poll.id, &now.to_le_bytes());
            let Some(p) = &mut poll.poller else { return };
            p.on_response(
                &self.cfg,
                now,
                noise,
                &Response {
                    status,
                    etag,
                    body: &body,
                },
            )
        };
        let m = &self.metrics;
        match outcome {
            Outcome::Updated(d) => {
                let v = d.version;
                if host.shared_set(&self.keys[1], &body, None).is_ok() {
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

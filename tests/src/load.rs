//! The load driver: many keep-alive connections sending as fast as the target answers, bounded by
//! a request count and a duration, with a status-code histogram and latency percentiles.
//!
//! Each request is built by a function of its index, so a test can vary headers per request (a
//! different key or user-agent each time), and an optional check sees every reply, so a test can
//! assert that every single request got the expected treatment, not just the totals.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use hdrhistogram::Histogram;

use crate::client::{authority_of, Connection, Reply, RequestSpec};

type BuildFn = dyn Fn(u64) -> RequestSpec + Send + Sync;
type CheckFn = dyn Fn(u64, &RequestSpec, &Reply) -> Result<(), String> + Send + Sync;

/// A load run's definition. Build with [`Load::new`], then the `with_*`/setter methods.
#[derive(Clone)]
pub struct Load {
    base_url: String,
    connections: usize,
    max_requests: u64,
    max_duration: Duration,
    request: Arc<BuildFn>,
    check: Option<Arc<CheckFn>>,
}

impl Load {
    /// `GET /` on `base_url` over 64 connections, at most 10,000 requests or 30 seconds.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            connections: 64,
            max_requests: 10_000,
            max_duration: Duration::from_secs(30),
            request: Arc::new(|_| RequestSpec::get("/")),
            check: None,
        }
    }

    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n.max(1);
        self
    }

    pub fn max_requests(mut self, n: u64) -> Self {
        self.max_requests = n;
        self
    }

    pub fn max_duration(mut self, d: Duration) -> Self {
        self.max_duration = d;
        self
    }

    /// The request to send as request number `i` (0-based, across all connections).
    pub fn request(mut self, f: impl Fn(u64) -> RequestSpec + Send + Sync + 'static) -> Self {
        self.request = Arc::new(f);
        self
    }

    /// Checks every reply; failures are counted and the first few kept for the report.
    pub fn check(
        mut self,
        f: impl Fn(u64, &RequestSpec, &Reply) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.check = Some(Arc::new(f));
        self
    }

    /// Runs the load and returns its report. Fails only if no connection could be opened at all.
    pub async fn run(&self) -> Result<LoadReport> {
        let authority = authority_of(&self.base_url)?.to_string();
        let next = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::<String>::new()));
        let start = Instant::now();
        let deadline = start + self.max_duration;
        let mut tasks = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            let w = Worker {
                authority: authority.clone(),
                next: next.clone(),
                max: self.max_requests,
                deadline,
                request: self.request.clone(),
                check: self.check.clone(),
                failures: failures.clone(),
            };
            tasks.push(tokio::spawn(w.run()));
        }
        let mut report = LoadReport::empty();
        for t in tasks {
            match t.await {
                Ok(part) => report.merge(part),
                Err(e) => report.errors.push(format!("load task failed: {e}")),
            }
        }
        report.elapsed = start.elapsed();
        report.failures = std::mem::take(&mut *failures.lock().unwrap_or_else(|e| e.into_inner()));
        if report.completed == 0 && report.transport_errors > 0 {
            bail!("no request completed: {}", report.errors.join("; "));
        }
        Ok(report)
    }
}

struct Worker {
    authority: String,
    next: Arc<AtomicU64>,
    max: u64,
    deadline: Instant,
    request: Arc<BuildFn>,
    check: Option<Arc<CheckFn>>,
    failures: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    async fn run(self) -> LoadReport {
        let mut rep = LoadReport::empty();
        let mut conn: Option<Connection> = None;
        let mut consecutive_connect_failures = 0u32;
        loop {
            if Instant::now() >= self.deadline {
                break;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.max {
                break;
            }
            let c = match conn.as_mut().filter(|c| !c.is_closed()) {
                Some(c) => c,
                None => match Connection::open(&self.authority).await {
                    Ok(c) => {
                        consecutive_connect_failures = 0;
                        conn.insert(c)
                    }
                    Err(e) => {
                        rep.record_error(format!("connect: {e:#}"));
                        consecutive_connect_failures += 1;
                        if consecutive_connect_failures >= 5 {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                },
            };
            let spec = (self.request)(i);
            let t0 = Instant::now();
            rep.first_sent = Some(rep.first_sent.map_or(t0, |f| f.min(t0)));
            rep.last_sent = Some(rep.last_sent.map_or(t0, |l| l.max(t0)));
            match c.send(&spec).await {
                Ok(reply) => {
                    let us = t0.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                    let _ = rep.latency_us.record(us.max(1));
                    rep.completed += 1;
                    *rep.statuses.entry(reply.status).or_insert(0) += 1;
                    if let Some(check) = &self.check {
                        if let Err(msg) = check(i, &spec, &reply) {
                            rep.check_failures += 1;
                            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
                            if f.len() < 20 {
                                f.push(format!(
                                    "request #{i} {} {}: {msg}",
                                    spec.method, spec.path
                                ));
                            }
                        }
                    }
                }
                Err(e) => {
                    rep.record_error(format!("request: {e:#}"));
                    conn = None;
                }
            }
        }
        rep
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    /// Requests that got a complete response.
    pub completed: u64,
    /// Connect or request failures (no response).
    pub transport_errors: u64,
    /// Replies per HTTP status.
    pub statuses: BTreeMap<u16, u64>,
    /// Replies the check refused.
    pub check_failures: u64,
    /// The first check failures, for the test's message.
    pub failures: Vec<String>,
    /// The first transport errors.
    pub errors: Vec<String>,
    pub elapsed: Duration,
    first_sent: Option<Instant>,
    last_sent: Option<Instant>,
    latency_us: Histogram<u64>,
}

impl LoadReport {
    fn empty() -> Self {
        Self {
            completed: 0,
            transport_errors: 0,
            statuses: BTreeMap::new(),
            check_failures: 0,
            failures: Vec::new(),
            errors: Vec::new(),
            elapsed: Duration::ZERO,
            first_sent: None,
            last_sent: None,
            // 1 us .. 1 h at 3 significant digits; new_with_bounds only fails on bad bounds.
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("constant histogram bounds are valid"),
        }
    }

    fn record_error(&mut self, e: String) {
        self.transport_errors += 1;
        if self.errors.len() < 10 {
            self.errors.push(e);
        }
    }

    fn merge(&mut self, o: LoadReport) {
        self.completed += o.completed;
        self.transport_errors += o.transport_errors;
        for (s, n) in o.statuses {
            *self.statuses.entry(s).or_insert(0) += n;
        }
        self.check_failures += o.check_failures;
        self.first_sent = match (self.first_sent, o.first_sent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_sent = match (self.last_sent, o.last_sent) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        for e in o.errors {
            if self.errors.len() < 10 {
                self.errors.push(e);
            }
        }
        let _ = self.latency_us.add(&o.latency_us);
    }

    /// Replies with this status.
    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    /// Replies with a status outside 200..=299.
    pub fn non_2xx(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Time from the first request sent to the last one sent: the window a rate limiter saw
    /// requests arrive in (without connection set-up or the wait for the last replies).
    pub fn send_span(&self) -> Duration {
        match (self.first_sent, self.last_sent) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        }
    }

    /// Latency at a quantile (0.5 = median, 0.99 = p99).
    pub fn latency(&self, q: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(q))
    }

    pub fn requests_per_second(&self) -> f64 {
        self.completed as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} completed in {:.2?} ({:.0} req/s), statuses {:?}, transport errors {}, check failures {}, \
             latency p50 {:?} p99 {:?} max {:?}",
            self.completed,
            self.elapsed,
            self.requests_per_second(),
            self.statuses,
            self.transport_errors,
            self.check_failures,
            self.latency(0.5),
            self.latency(0.99),
            Duration::from_micros(self.latency_us.max()),
        )?;
        for e in self.failures.iter().chain(&self.errors) {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

//! The `ShouldRateLimit` handler and its gRPC wiring (tonic, prost messages from
//! `edge_common::rls`).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use edge_common::rls::{
    Code, DescriptorStatus, Duration, RateLimit, RateLimitRequest, RateLimitResponse,
};
use sha2::{Digest, Sha256};
use tonic::codegen::BoxFuture;

use crate::config::{Limit, Limits, Rule};
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Bounds on what one request may ask, so a client cannot make the service do unbounded work.
pub const MAX_DESCRIPTORS: usize = 16;
pub const MAX_ENTRIES: usize = 16;
pub const MAX_HITS: u32 = 1_000_000;

pub struct Rls {
    pub limits: RwLock<Arc<Limits>>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    redis_ok: AtomicBool,
}

/// The Redis key of a descriptor's bucket: a digest of the domain and entries, so that keys stay
/// short and bounded whatever clients send, and `:` in values cannot make two descriptors meet.
pub fn bucket_key(domain: &str, entries: &[edge_common::rls::Entry]) -> String {
    let mut h = Sha256::new();
    h.update((domain.len() as u64).to_be_bytes());
    h.update(domain.as_bytes());
    for e in entries {
        for part in [&e.key, &e.value] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    let d = h.finalize();
    let hex: String = d.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("erl:{hex}")
}

impl Rls {
    pub fn new(limits: Limits, store: Arc<Store>, metrics: Arc<Metrics>) -> Rls {
        Rls {
            limits: RwLock::new(Arc::new(limits)),
            store,
            metrics,
            redis_ok: AtomicBool::new(true),
        }
    }

    fn limits(&self) -> Arc<Limits> {
        match self.limits.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub async fn should_rate_limit(
        &self,
        req: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        if req.domain.is_empty() {
            return Err(tonic::Status::invalid_argument("domain must not be empty"));
        }
        if req.descriptors.is_empty() || req.descriptors.len() > MAX_DESCRIPTORS {
            return Err(tonic::Status::invalid_argument(format!(
                "1..={MAX_DESCRIPTORS} descriptors expected, got {}",
                req.descriptors.len()
            )));
        }
        if let Some(d) = req
            .descriptors
            .iter()
            .find(|d| d.entries.is_empty() || d.entries.len() > MAX_ENTRIES)
        {
            return Err(tonic::Status::invalid_argument(format!(
                "a descriptor has {} entries (1..={MAX_ENTRIES} expected)",
                d.entries.len()
            )));
        }
        let hits = req.hits_addend.clamp(1, MAX_HITS);
        let limits = self.limits();
        let rules: Vec<Option<&Limit>> = req
            .descriptors
            .iter()
            .map(|d| match limits.find(&req.domain, &d.entries) {
                Some(Rule::Limit(l)) => Some(l),
                _ => None,
            })
            .collect();
        let buckets: Vec<(String, &Limit)> = req
            .descriptors
            .iter()
            .zip(&rules)
            .filter_map(|(d, r)| r.map(|l| (bucket_key(&req.domain, &d.entries), l)))
            .collect();
        let verdicts = if buckets.is_empty() {
            Ok(vec![])
        } else {
            self.store.take(&buckets, hits).await
        };
        let verdicts = match verdicts {
            Ok(v) => {
                if !self.redis_ok.swap(true, Ordering::Relaxed) {
                    tracing::info!(event = "redis_recovered", "redis answers again");
                }
                v
            }
            Err(e) => {
                self.metrics.redis_error(&e);
                if self.redis_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(event = "redis_failing", error = %e, "answering UNKNOWN until redis answers");
                }
                if matches!(e, StoreError::Protocol(_)) {
                    tracing::debug!(error = %e, "redis protocol error");
                }
                self.metrics.answer(Code::Unknown);
                return Ok(RateLimitResponse {
                    overall_code: Code::Unknown as i32,
                    statuses: req
                        .descriptors
                        .iter()
                        .map(|_| DescriptorStatus {
                            code: Code::Unknown as i32,
                            ..Default::default()
                        })
                        .collect(),
                });
            }
        };
        let mut v = verdicts.iter();
        let statuses: Vec<DescriptorStatus> = rules
            .iter()
            .map(|r| match r {
                None => DescriptorStatus {
                    code: Code::Ok as i32,
                    ..Default::default()
                },
                Some(l) => {
                    let x = v.next().copied().unwrap_or(crate::store::Verdict {
                        admitted: false,
                        remaining: 0,
                        until_full_us: 0,
                    });
                    DescriptorStatus {
                        code: if x.admitted {
                            Code::Ok
                        } else {
                            Code::OverLimit
                        } as i32,
                        current_limit: Some(RateLimit {
                            name: l.name.clone(),
                            requests_per_unit: l.requests_per_unit,
                            unit: l.unit as i32,
                        }),
                        limit_remaining: x.remaining,
                        duration_until_reset: Some(Duration::from_micros(x.until_full_us)),
                    }
                }
            })
            .collect();
        let over = statuses.iter().any(|s| s.code == Code::OverLimit as i32);
        let code = if over { Code::OverLimit } else { Code::Ok };
        self.metrics.answer(code);
        Ok(RateLimitResponse {
            overall_code: code as i32,
            statuses,
        })
    }
}

/// What answers `ShouldRateLimit`: [`Rls`], or a test double.
pub trait Handler: Send + Sync + 'static {
    fn answer(
        self: Arc<Self>,
        req: RateLimitRequest,
    ) -> BoxFuture<RateLimitResponse, tonic::Status>;
}

impl Handler for Rls {
    fn answer(
        self: Arc<Self>,
        req: RateLimitRequest,
    ) -> BoxFuture<RateLimitResponse, tonic::Status> {
        Box::pin(async move { self.should_rate_limit(req).await })
    }
}

/// The gRPC service `envoy.service.ratelimit.v3.RateLimitService` around a handler.
pub struct RlsServer<H: ?Sized = Rls>(pub Arc<H>);

impl<H: ?Sized> Clone for RlsServer<H> {
    fn clone(&self) -> Self {
        RlsServer(self.0.clone())
    }
}

impl<H: ?Sized> tonic::server::NamedService for RlsServer<H> {
    const NAME: &'static str = edge_common::rls::SERVICE;
}

struct ShouldRateLimit<H: ?Sized>(Arc<H>);

impl<H: Handler + ?Sized> tonic::server::UnaryService<RateLimitRequest> for ShouldRateLimit<H> {
    type Response = RateLimitResponse;
    type Future = BoxFuture<tonic::Response<RateLimitResponse>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let fut = self.0.clone().answer(request.into_inner());
        Box::pin(async move { fut.await.map(tonic::Response::new) })
    }
}

impl<H: Handler + ?Sized, B> tower_service::Service<http::Request<B>> for RlsServer<H>
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let rls = self.0.clone();
        if req.uri().path() == "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit" {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(ShouldRateLimit(rls), req).await)
            })
        } else {
            Box::pin(async move {
                let mut r = http::Response::new(tonic::body::Body::default());
                r.headers_mut().insert(
                    "grpc-status",
                    http::HeaderValue::from(tonic::Code::Unimplemented as i32),
                );
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                Ok(r)
            })
        }
    }
}

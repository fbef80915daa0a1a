//! `edge-ratelimit`: a rate limit service speaking Envoy's `envoy.service.ratelimit.v3`
//! protocol, stateless, with every counter a GCRA token bucket in Redis.

pub mod config;
pub mod metrics;
pub mod service;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use edge_ratelimit::config::Limits;
use edge_ratelimit::metrics::Metrics;
use edge_ratelimit::service::{Rls, RlsServer};
use edge_ratelimit::store::Store;
use http_body_util::Full;

/// A rate limit service for Envoy (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit):
/// GCRA token buckets in Redis, limits from a YAML/JSON file reloaded on change.
#[derive(Parser, Debug)]
#[command(name = "edge-ratelimit", version)]
struct Args {
    /// The limits file (YAML or JSON).
    #[arg(long, env = "EDGE_RATELIMIT_CONFIG")]
    config: PathBuf,
    /// gRPC listen address.
    #[arg(long, default_value = "0.0.0.0:8081", env = "EDGE_RATELIMIT_LISTEN")]
    listen: SocketAddr,
    /// Prometheus metrics (`/metrics`) and health (`/healthz`) listen address.
    #[arg(long, default_value = "0.0.0.0:9102", env = "EDGE_RATELIMIT_METRICS")]
    metrics: SocketAddr,
    /// Redis URL (`redis://[user:password@]host:port/db`; TLS is not built in).
    #[arg(
        long,
        default_value = "redis://127.0.0.1:6379",
        env = "EDGE_RATELIMIT_REDIS"
    )]
    redis: String,
    /// Longest wait for Redis on a request, in milliseconds; past it the answer is UNKNOWN.
    #[arg(long, default_value_t = 50, env = "EDGE_RATELIMIT_REDIS_TIMEOUT_MS")]
    redis_timeout_ms: u64,
    /// How often the limits file is checked for changes, in seconds.
    #[arg(long, default_value_t = 2, env = "EDGE_RATELIMIT_RELOAD_SECONDS")]
    reload_seconds: u64,
    /// Log format: json or text.
    #[arg(long, default_value = "json", env = "EDGE_RATELIMIT_LOG_FORMAT")]
    log_format: String,
}

fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("EDGE_RATELIMIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_format == "text" {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-ratelimit: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("edge-ratelimit: {e:#}");
        std::process::exit(1);
    }
}

async fn read_limits(path: &PathBuf) -> anyhow::Result<(String, Limits)> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let limits = Limits::parse(&text)
        .map_err(|e| anyhow::anyhow!("invalid limits in {}: {e}", path.display()))?;
    Ok((text, limits))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let (mut text, limits) = read_limits(&args.config).await?;
    let metrics = Arc::new(Metrics::default());
    let store = Store::new(
        &args.redis,
        Duration::from_millis(args.redis_timeout_ms.max(1)),
    )?;
    tracing::info!(
        event = "start",
        listen = %args.listen,
        metrics = %args.metrics,
        domains = limits.domains(),
        "edge-ratelimit starting"
    );
    let rls = Arc::new(Rls::new(limits, store, metrics.clone()));

    // Reload the limits file when it changes; a bad file is logged and the old limits stay.
    let reload = rls.clone();
    let path = args.config.clone();
    let every = Duration::from_secs(args.reload_seconds.max(1));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            match tokio::fs::read_to_string(&path).await {
                Ok(t) if t == text => {}
                Ok(t) => {
                    match Limits::parse(&t) {
                        Ok(l) => {
                            let n = l.domains();
                            if let Ok(mut g) = reload.limits.write() {
                                *g = Arc::new(l);
                            }
                            reload.metrics.reload(true);
                            tracing::info!(
                                event = "limits_reloaded",
                                domains = n,
                                "limits reloaded"
                            );
                        }
                        Err(e) => {
                            reload.metrics.reload(false);
                            tracing::error!(event = "limits_rejected", error = %e, "limits file rejected; the previous limits stay");
                        }
                    }
                    text = t;
                }
                Err(e) => {
                    tracing::warn!(event = "limits_unreadable", error = %e, "limits file unreadable; the previous limits stay");
                }
            }
        }
    });

    // Metrics and health.
    let m = metrics.clone();
    let listener = tokio::net::TcpListener::bind(args.metrics)
        .await
        .with_context(|| format!("binding {}", args.metrics))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let m = m.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let m = m.clone();
                        async move {
                            let (status, body) = match req.uri().path() {
                                "/metrics" => (200, m.render()),
                                "/healthz" => (200, "ok\n".to_string()),
                                _ => (404, "not found\n".to_string()),
                            };
                            let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
                            *r.status_mut() =
                                hyper::StatusCode::from_u16(status).unwrap_or_default();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            });
        }
    });

    let shutdown = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
        }
        tracing::info!(event = "stop", "shutting down");
    };
    tonic::transport::Server::builder()
        .add_service(RlsServer(rls))
        .serve_with_shutdown(args.listen, shutdown)
        .await
        .with_context(|| format!("serving gRPC on {}", args.listen))?;
    Ok(())
}

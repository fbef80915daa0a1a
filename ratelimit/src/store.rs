//! GCRA token buckets in Redis, one key per descriptor, decided by one Lua script run with
//! `EVALSHA` (loaded on first use and after a Redis restart): atomic per request across every
//! RLS replica, and the clock is Redis's own (`TIME`), so replicas need no synchronised clocks.
//!
//! A bucket admits at most `burst + rate × t` hits over any interval `t`. A request of `hits`
//! is admitted whole or not at all, and a refused request spends nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::Mutex;

use crate::config::Limit;

/// KEYS: bucket keys. ARGV[1]: hits; then per key its emission interval and tolerance (µs).
/// All keys must admit for any to be spent. Returns per key: admitted (1/0), tokens remaining,
/// µs until the bucket is full again.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hits = tonumber(ARGV[1])
local all = 1
local tats = {}
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  tats[i] = tat
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  if tat + hits * interval - now > tolerance then all = 0 end
end
local out = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local tolerance = tonumber(ARGV[2 * i + 1])
  local tat = tats[i]
  if all == 1 then
    tat = tat + hits * interval
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1)
  end
  local remaining = math.floor((tolerance - (tat - now)) / interval)
  if remaining < 0 then remaining = 0 end
  out[3 * i - 2] = all
  out[3 * i - 1] = remaining
  out[3 * i] = tat - now
end
return out
"#;

/// One descriptor's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub admitted: bool,
    pub remaining: u32,
    /// Until the bucket is full again.
    pub until_full_us: u64,
}

#[derive(Debug)]
pub enum StoreError {
    /// No connection (Redis down, or reconnecting).
    Unavailable(String),
    /// Redis did not answer within the timeout.
    Timeout,
    /// Redis answered something else than the script's result.
    Protocol(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Unavailable(e) => write!(f, "redis unavailable: {e}"),
            StoreError::Timeout => write!(f, "redis timeout"),
            StoreError::Protocol(e) => write!(f, "redis protocol: {e}"),
        }
    }
}

/// A Redis connection (multiplexed, reconnecting) with a timeout on every call. When Redis is
/// down, requests fail at once (no queueing) and a reconnect is tried at most every
/// `reconnect_every`.
pub struct Store {
    client: redis::Client,
    conn: Mutex<(Option<ConnectionManager>, Option<Instant>)>,
    script: Script,
    timeout: Duration,
    reconnect_every: Duration,
}

impl Store {
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Arc<Store>> {
        Ok(Arc::new(Store {
            client: redis::Client::open(url)?,
            conn: Mutex::new((None, None)),
            script: Script::new(GCRA),
            timeout,
            reconnect_every: Duration::from_millis(500),
        }))
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut g = self.conn.lock().await;
        if let Some(c) = &g.0 {
            return Ok(c.clone());
        }
        if g.1.is_some_and(|t| t.elapsed() < self.reconnect_every) {
            return Err(StoreError::Unavailable("reconnecting".into()));
        }
        g.1 = Some(Instant::now());
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(self.timeout.max(Duration::from_millis(200)))
            .set_response_timeout(self.timeout)
            .set_number_of_retries(0);
        match tokio::time::timeout(
            self.timeout.max(Duration::from_millis(200)),
            ConnectionManager::new_with_config(self.client.clone(), cfg),
        )
        .await
        {
            Ok(Ok(c)) => {
                tracing::info!(event = "redis_connected", "connected to redis");
                g.0 = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Spends `hits` from every bucket if all of them have that many tokens.
    pub async fn take(
        &self,
        buckets: &[(String, &Limit)],
        hits: u32,
    ) -> Result<Vec<Verdict>, StoreError> {
        let mut conn = self.connection().await?;
        let mut inv = self.script.prepare_invoke();
        inv.arg(hits.max(1));
        for (key, limit) in buckets {
            inv.key(key);
            inv.arg(limit.interval_us()).arg(limit.tolerance_us());
        }
        let res: Result<Vec<i64>, redis::RedisError> =
            match tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn)).await {
                Ok(r) => r,
                Err(_) => return Err(StoreError::Timeout),
            };
        let vals = res.map_err(|e| {
            if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                StoreError::Unavailable(e.to_string())
            } else if e.is_timeout() {
                StoreError::Timeout
            } else {
                StoreError::Protocol(e.to_string())
            }
        })?;
        if vals.len() != buckets.len() * 3 {
            return Err(StoreError::Protocol(format!(
                "script returned {} values for {} keys",
                vals.len(),
                buckets.len()
            )));
        }
        Ok(vals
            .chunks(3)
            .map(|c| Verdict {
                admitted: c.first() == Some(&1),
                remaining: c.get(1).and_then(|v| u32::try_from(*v).ok()).unwrap_or(0),
                until_full_us: c.get(2).and_then(|v| u64::try_from(*v).ok()).unwrap_or(0),
            })
            .collect())
    }
}

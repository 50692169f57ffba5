//! Shared state: in process by default, in Redis when `state.redis_url` is set.
//!
//! [`State`] is built once per gateway and outlives reloads (the counters of limits and
//! the cache must not reset because a config changed). With Redis it holds one
//! multiplexed connection that reconnects by itself; every call through [`Redis::run`] is
//! bounded by `state.redis_timeout_ms`, reconnecting included, so Redis being down costs
//! a request at most that long and never hangs it.

use std::{future::Future, sync::OnceLock, time::Duration};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::{OnRedisError, StateConfig};

/// The shared state's backends for one gateway.
pub struct State {
    config: StateConfig,
    redis: Option<Redis>,
}

impl State {
    /// The state `config` describes. No connection is made here: Redis is reached on
    /// first use, and a Redis that is down at start-up is retried on every call.
    pub fn new(config: &StateConfig) -> Result<State, String> {
        let redis = config
            .redis_url
            .as_ref()
            .map(|url| Redis::new(url.expose(), config.redis_timeout))
            .transpose()?;
        Ok(State {
            config: config.clone(),
            redis,
        })
    }

    /// The `[state]` this was built from (a reload may not change it).
    pub fn config(&self) -> &StateConfig {
        &self.config
    }

    /// Redis, when configured.
    pub fn redis(&self) -> Option<&Redis> {
        self.redis.as_ref()
    }

    /// What limits and budgets do while Redis cannot be reached.
    pub fn on_redis_error(&self) -> OnRedisError {
        self.config.on_redis_error
    }
}

/// One Redis server, reached through one auto-reconnecting multiplexed connection.
pub struct Redis {
    client: redis::Client,
    timeout: Duration,
    /// Made on first use, inside the runtime (the manager spawns its driver task).
    conn: OnceLock<Result<ConnectionManager, String>>,
    /// Until when (ms after `epoch`) Redis is taken as down after a call timed out (a
    /// host that does not answer): calls fail at once meanwhile instead of each waiting
    /// out the timeout. 0: not down.
    down_until: std::sync::atomic::AtomicU64,
    epoch: tokio::time::Instant,
    /// A second connection for [`Redis::run_with_timeout`], made on its first use.
    off_path: OnceLock<Result<ConnectionManager, String>>,
}

/// How long Redis is taken as down after a call timed out.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Why a Redis call failed; never carries the URL (it may hold a password).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RedisError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis error: {0}")]
    Failed(String),
    #[error("Redis is taken as down for a moment after a call timed out")]
    Down,
}

impl Redis {
    fn new(url: &str, timeout: Duration) -> Result<Redis, String> {
        let client = redis::Client::open(url)
            .map_err(|_| "state.redis_url is not a Redis URL".to_owned())?;
        Ok(Redis {
            client,
            timeout,
            conn: OnceLock::new(),
            down_until: std::sync::atomic::AtomicU64::new(0),
            epoch: tokio::time::Instant::now(),
            off_path: OnceLock::new(),
        })
    }

    /// The client, for connections of their own (a pub/sub subscriber).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// The longest one call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection in `cell`, made on first use with these timeouts.
    fn connection(
        &self,
        cell: &OnceLock<Result<ConnectionManager, String>>,
        connect: Duration,
        response: Option<Duration>,
    ) -> Result<ConnectionManager, RedisError> {
        let made = cell.get_or_init(|| {
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect))
                .set_response_timeout(response)
                // Reconnect attempts inside one call; the call's own bound cuts them.
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(Duration::from_millis(100));
            ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                .map_err(|e| e.to_string())
        });
        made.clone().map_err(RedisError::Failed)
    }

    /// Runs `op` on `conn` within `timeout`, counting a failure under `what`; a timeout
    /// marks Redis down when `marks_down` (the shared connection's calls).
    async fn bounded<T, F, Fut>(
        &self,
        what: &'static str,
        timeout: Duration,
        conn: Result<ConnectionManager, RedisError>,
        marks_down: bool,
        op: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = match conn {
            Ok(conn) => match tokio::time::timeout(timeout, op(conn)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => {
                    // Only a timeout: a refused or dropped connection fails fast by
                    // itself, and the connection is remade by a later call.
                    if marks_down && e.is_timeout() {
                        self.mark_down();
                    }
                    Err(RedisError::Failed(describe(&e)))
                }
                Err(_) => {
                    if marks_down {
                        self.mark_down();
                    }
                    Err(RedisError::Timeout(timeout))
                }
            },
            Err(e) => Err(e),
        };
        if result.is_err() {
            metrics::counter!("switchyard_redis_errors_total", "op" => what).increment(1);
        }
        result
    }

    fn mark_down(&self) {
        let until = self.epoch.elapsed() + DOWN_FOR;
        self.down_until.store(
            until.as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// Ends the moment Redis is taken as down (a connection of another kind reached it).
    pub fn mark_up(&self) {
        self.down_until
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether Redis answers a `PING` now.
    pub async fn ping(&self) -> Result<(), RedisError> {
        self.run("ping", |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    /// Runs `op` on the shared connection, bounded by the Redis timeout. `what` names the
    /// operation in the error counter (`switchyard_redis_errors_total{op}`).
    pub async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        use std::sync::atomic::Ordering;
        let now = self.epoch.elapsed().as_millis() as u64;
        if now < self.down_until.load(Ordering::Relaxed) {
            metrics::counter!("switchyard_redis_errors_total", "op" => what).increment(1);
            return Err(RedisError::Down);
        }
        let conn = self.connection(&self.conn, self.timeout, Some(self.timeout));
        self.bounded(what, self.timeout, conn, true, op).await
    }
}

impl Redis {
    /// Like [`Redis::run`], but bounded by `timeout` instead of the state's: for work off
    /// the request path (ledger writes) that may rightly take longer than a request should
    /// wait. It runs on a connection of its own, with no response timeout but this bound,
    /// so a large write neither queues a request's call behind it nor is cut short by the
    /// shared connection's timeout.
    pub async fn run_with_timeout<T, F, Fut>(
        &self,
        what: &'static str,
        timeout: Duration,
        op: F,
    ) -> Result<T, RedisError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection(&self.off_path, timeout, None);
        self.bounded(what, timeout, conn, false, op).await
    }
}

/// A Redis error without anything that could echo a credential.
pub(crate) fn describe(e: &redis::RedisError) -> String {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code}: {detail}"),
        (Some(code), None) => code.to_owned(),
        _ if e.is_connection_refusal() => "connection refused".to_owned(),
        _ if e.is_timeout() => "timed out".to_owned(),
        _ if e.is_connection_dropped() => "connection dropped".to_owned(),
        _ => format!("{:?}", e.kind()),
    }
}

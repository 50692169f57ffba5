//! The subscriber that keeps a replica's route overrides in step with Redis.
//!
//! It holds a pub/sub connection of its own on [`shared::CHANNEL`]; each message names a
//! model whose key it then reads and applies. After every (re)connect it re-reads every
//! override, so a change published while it was disconnected is not lost, and it re-reads
//! them every [`RESYNC_EVERY`] besides, as a safety net. A ping every [`PING_EVERY`]
//! notices a dead connection; reconnects back off from [`BACKOFF_MIN`] to
//! [`BACKOFF_MAX`]. While Redis is unreachable the replica keeps the overrides it last read.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures_util::StreamExt;
use redis::aio::{PubSubSink, PubSubStream};
use tokio_util::sync::CancellationToken;

use super::{Applied, Origin, shared};
use crate::{error::Error, gateway::Gateway};

/// How often every override is re-read while subscribed.
pub const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How often the subscription's connection is pinged.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// The first wait before reconnecting, doubled after each failure up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Reads every override from Redis and makes them the gateway's (replacing what it held).
/// Returns how many there are. Without Redis there is nothing to read.
pub async fn sync(gateway: &Arc<Gateway>) -> Result<usize, String> {
    let Some(redis) = gateway.state().redis() else {
        return Ok(0);
    };
    // Read and apply in one turn: a read applied after a later one would undo it.
    let _turn = gateway.routes().read_turn().await;
    let all = redis
        .run("routes_read", |mut conn| async move {
            shared::read_all(&mut conn).await
        })
        .await
        .map_err(|e| e.to_string())?;
    let n = all.len();
    let all: BTreeMap<String, Applied> = all
        .into_iter()
        .map(|(model, route)| {
            let applied = Applied {
                route,
                origin: Origin::Redis,
            };
            (model, applied)
        })
        .collect();
    apply(gateway, move |gw| gw.replace_routes(all)).await?;
    Ok(n)
}

/// Reads `model`'s override from Redis and applies it (or its absence). The subscriber
/// runs it on every announcement, and `PUT`/`DELETE /admin/routes` after their write: they
/// apply what Redis holds, never what they wrote, which a concurrent change may already
/// have replaced.
pub async fn refresh(gateway: &Arc<Gateway>, model: String) -> Result<(), String> {
    let Some(redis) = gateway.state().redis() else {
        return Ok(());
    };
    let _turn = gateway.routes().read_turn().await;
    let name = model.clone();
    let route = redis
        .run("routes_read", |mut conn| async move {
            shared::read(&mut conn, &name).await
        })
        .await
        .map_err(|e| e.to_string())?;
    let applied = route.map(|route| Applied {
        route,
        origin: Origin::Redis,
    });
    apply(gateway, move |gw| gw.apply_route(&model, applied)).await
}

/// Runs a rebuild off the runtime's workers (it builds a catalog and may load policies).
async fn apply(
    gateway: &Arc<Gateway>,
    change: impl FnOnce(&Gateway) -> Result<(), Error> + Send + 'static,
) -> Result<(), String> {
    let gw = gateway.clone();
    match tokio::task::spawn_blocking(move || change(&gw)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(Error::Internal { detail })) => Err(detail),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("route override task: {e}")),
    }
}

/// The subscriber loop: until `stop`, subscribed when Redis can be reached, reconnecting
/// with backoff when it cannot. Returns at once on a gateway without Redis.
pub async fn run(gateway: Arc<Gateway>, stop: CancellationToken) {
    let Some(redis) = gateway.state().redis() else {
        return;
    };
    let (client, timeout) = (redis.client().clone(), redis.timeout());
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let subscribed = tokio::select! {
            () = stop.cancelled() => return,
            s = subscribe(&client, timeout) => s,
        };
        match subscribed {
            Ok((sink, stream)) => {
                backoff = BACKOFF_MIN;
                failing = false;
                tracing::info!(channel = shared::CHANNEL, "route overrides: subscribed");
                // A connection just made proves Redis is back: no need to wait out the
                // moment it is taken as down after a failure.
                if let Some(redis) = gateway.state().redis() {
                    redis.mark_up();
                }
                match sync(&gateway).await {
                    Ok(n) => tracing::info!(overrides = n, "route overrides read from Redis"),
                    Err(error) => tracing::warn!(%error, "route overrides: cannot read them"),
                }
                listen(&gateway, sink, stream, &stop, timeout).await;
                if stop.is_cancelled() {
                    return;
                }
                tracing::warn!("route overrides: subscription lost; reconnecting");
            }
            Err(error) => {
                // Once per outage at warn: a long outage is not a log flood.
                if failing {
                    tracing::debug!(%error, "route overrides: still cannot subscribe");
                } else {
                    tracing::warn!(%error, "route overrides: cannot subscribe; retrying");
                }
                failing = true;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A pub/sub connection subscribed to the channel, within `timeout`.
async fn subscribe(
    client: &redis::Client,
    timeout: Duration,
) -> Result<(PubSubSink, PubSubStream), String> {
    let connect = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(shared::CHANNEL).await?;
        Ok::<_, redis::RedisError>(pubsub.split())
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(split)) => Ok(split),
        Ok(Err(e)) => Err(crate::state::describe(&e)),
        Err(_) => Err(format!("Redis did not answer within {timeout:?}")),
    }
}

/// Applies each announced change until the connection is lost or `stop`.
async fn listen(
    gateway: &Arc<Gateway>,
    mut sink: PubSubSink,
    mut stream: PubSubStream,
    stop: &CancellationToken,
    timeout: Duration,
) {
    let start = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(start + PING_EVERY, PING_EVERY);
    let mut resync = tokio::time::interval_at(start + RESYNC_EVERY, RESYNC_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let Ok(model) = msg.get_payload::<String>() else { continue };
                if let Err(error) = refresh(gateway, model.clone()).await {
                    tracing::warn!(%model, %error, "route override change not applied");
                }
            }
            _ = ping.tick() => {
                let alive = tokio::time::timeout(timeout, sink.ping::<redis::Value>()).await;
                if !matches!(alive, Ok(Ok(_))) {
                    return;
                }
            }
            _ = resync.tick() => {
                if let Err(error) = sync(gateway).await {
                    tracing::warn!(%error, "route overrides: periodic re-read failed");
                }
            }
        }
    }
}

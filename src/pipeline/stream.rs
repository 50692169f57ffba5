//! A streamed answer: fail over until a deployment's first content chunk, then deliver
//! the committed stream with its accounting.

use std::time::Duration;

use futures_util::{Stream, StreamExt, stream};

use crate::{
    cache,
    chat::{ChatChunk, ChatRequest},
    error::Error,
    failover::{self, Failed, Served},
    gateway::{Admitted, Gateway, Live},
    health,
    providers::{ChunkStream, ProviderError},
    routing::{Deployment, Route},
    telemetry::{Outcome, RequestRecord},
};

/// A stream committed to one deployment: the chunks read up to and including the first
/// content chunk, then the rest as it arrives. It carries its own deployment and, once
/// served, the deployment's lease and the gateway slot it holds until it ends.
pub struct OpenStream {
    head: Vec<ChatChunk>,
    rest: ChunkStream,
    idle_timeout: Duration,
    deployment: Deployment,
    /// The deployment's hold, told how the stream ends; and the gateway's.
    lease: Option<health::Lease>,
    admitted: Option<Admitted>,
}

/// One step of a committed stream as a surface delivers it.
pub enum Delivered {
    /// A chunk to send.
    Chunk(ChatChunk),
    /// The stream broke after commit; send this error and end.
    Broken(Error),
    /// The provider finished; send the terminator (REST `[DONE]`) and end.
    Done,
}

impl Gateway {
    /// Fails over until a deployment's stream produces its first content chunk (or ends
    /// cleanly); from then on the stream is committed.
    pub(super) async fn attempt_stream(
        &self,
        live: &Live,
        request: &ChatRequest,
        route: &Route,
        trace: Option<crate::telemetry::trace::Propagation>,
    ) -> Result<Served<OpenStream>, Failed> {
        let default_idle = live.config.failover.attempt_timeout;
        failover::run(
            &route.plan,
            &super::settings(live, route, true, trace),
            |d| async move {
                let open = async {
                    let mut rest = d.provider.chat_stream(request, &d.model).await?;
                    let mut head = Vec::new();
                    while let Some(item) = rest.next().await {
                        let chunk = item?;
                        let committed = chunk.has_content();
                        head.push(chunk);
                        if committed {
                            break;
                        }
                    }
                    Ok(OpenStream {
                        head,
                        rest,
                        idle_timeout: d.timeouts.idle.unwrap_or(default_idle),
                        deployment: d.clone(),
                        lease: None,
                        admitted: None,
                    })
                };
                // A stream stalled before its first content chunk fails over.
                match d.timeouts.ttft {
                    Some(ttft) => tokio::time::timeout(ttft, open)
                        .await
                        .unwrap_or(Err(ProviderError::Timeout)),
                    None => open.await,
                }
            },
        )
        .await
    }
}

impl OpenStream {
    /// Gives the stream the deployment's lease (told how the stream ends) and the gateway
    /// slot, both held until it ends.
    pub(super) fn hold(mut self, lease: Option<health::Lease>, admitted: Admitted) -> OpenStream {
        self.lease = lease;
        self.admitted = Some(admitted);
        self
    }

    /// The committed stream: buffered head first, then the rest, each later chunk due
    /// within the idle timeout.
    fn into_chunks(
        head: Vec<ChatChunk>,
        rest: ChunkStream,
        idle: Duration,
    ) -> impl Stream<Item = Result<ChatChunk, ProviderError>> + Send {
        // Ends after the first error: a broken stream has nothing more to give.
        let rest = stream::unfold(Some(rest), move |rest| async move {
            let mut rest = rest?;
            match tokio::time::timeout(idle, rest.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(rest))),
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(None) => None,
                Err(_) => Some((Err(ProviderError::Timeout), None)),
            }
        });
        stream::iter(head.into_iter().map(Ok)).chain(rest)
    }

    /// The committed stream as the caller should see it, with accounting: usage is recorded
    /// from the provider's final chunk, and withheld from the caller unless it asked for it
    /// (`include_usage`), since the gateway asks upstream for usage for its own sake. The
    /// record is written when the stream is dropped: at its end, or when the caller goes.
    /// With a cache `fill`, the chunks are folded as they pass and the answer is stored
    /// only when the stream finishes cleanly.
    pub(super) fn deliver(
        self,
        record: RequestRecord,
        include_usage: bool,
        fill: Option<cache::Fill>,
    ) -> impl Stream<Item = Delivered> + Send {
        let state = Delivery {
            record,
            lease: self.lease,
            deployment: self.deployment,
            fill,
            _admitted: self.admitted,
        };
        let chunks = Box::pin(OpenStream::into_chunks(
            self.head,
            self.rest,
            self.idle_timeout,
        ));
        stream::unfold(Some((chunks, state)), move |state| async move {
            let (mut chunks, mut state) = state?;
            loop {
                match chunks.next().await {
                    Some(Ok(mut chunk)) => {
                        if let Some(fill) = &mut state.fill {
                            fill.push(&chunk);
                        }
                        if let Some(u) = &chunk.usage {
                            state.record.usage = Some(u.clone());
                        }
                        if let Some(trace) = &mut state.record.trace {
                            trace.on_chunk(&chunk);
                        }
                        if !include_usage {
                            if chunk.choices.is_empty() && chunk.usage.is_some() {
                                continue;
                            }
                            chunk.usage = None;
                        }
                        state.record.first_byte();
                        return Some((Delivered::Chunk(chunk), Some((chunks, state))));
                    }
                    Some(Err(error)) => {
                        let error = state.broken(error);
                        return Some((Delivered::Broken(error), None));
                    }
                    None => {
                        if let Some(fill) = state.fill.take() {
                            fill.store_stream(&state.deployment);
                        }
                        state.record.end(Outcome::Ok);
                        state.tell(health::Outcome::Completed);
                        return Some((Delivered::Done, None));
                    }
                }
            }
        })
    }
}

/// What a delivered stream holds until it ends: dropping it writes the record
/// (a cancellation unless an end was set) and frees the deployment and gateway slots.
struct Delivery {
    record: RequestRecord,
    /// Told how the stream ended; dropped unused when the caller went away (an abandoned
    /// stream tells the deployment nothing).
    lease: Option<health::Lease>,
    deployment: Deployment,
    /// Where a cleanly finished stream is stored; dropped unused otherwise.
    fill: Option<cache::Fill>,
    _admitted: Option<Admitted>,
}

impl Delivery {
    /// Tells the deployment how its stream ended.
    fn tell(&mut self, outcome: health::Outcome) {
        if let Some(lease) = &mut self.lease {
            lease.record(outcome, tokio::time::Instant::now());
        }
    }

    /// The stream broke after commit: the caller's error, the record's end and the
    /// deployment's outcome.
    fn broken(&mut self, error: ProviderError) -> Error {
        let error = Error::upstream(self.deployment.provider_name.clone(), error);
        tracing::warn!(request_id = %self.record.request_id, %error, "stream broke after commit");
        self.record.end(Outcome::StreamBroken);
        if let Error::Upstream { error, .. } = &error
            && let Some(o) = failover::health_outcome(error, Duration::ZERO)
        {
            self.tell(o);
        }
        error
    }
}

//! A streamed answer: fail over until a deployment's first content chunk, then deliver
//! the committed stream with its accounting.

use std::{sync::Arc, time::Duration};

use futures_util::{Stream, StreamExt, stream};
use tokio::sync::watch;

use crate::{
    cache,
    chat::{ChatChunk, ChatRequest, ChunkChoice, Delta, Extra, Role},
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

/// One step of a stream as a surface delivers it.
pub enum Delivered {
    /// A chunk to send.
    Chunk(ChatChunk),
    /// The stream broke after its headers went out; send this error and end.
    Broken(Error, Trailer),
    /// The provider finished; send the terminator (REST `[DONE]`) and end.
    Done(Trailer),
}

/// What a stream's headers could not say, as it ends: the provider that served and every
/// attempt (the headers went out when the first stream opened, before any failover).
/// REST sends it as SSE comments before the last event; gRPC as trailing metadata on an
/// error.
#[derive(Debug, Clone, Default)]
pub struct Trailer {
    pub provider: Option<Arc<str>>,
    /// As `x-switchyard-attempts` lists them.
    pub attempts: String,
}

impl Trailer {
    pub(super) fn of(record: &RequestRecord) -> Trailer {
        Trailer {
            provider: record.provider.clone(),
            attempts: record.attempts.header_value(),
        }
    }
}

/// The first deployment whose stream opened.
#[derive(Debug, Clone)]
pub struct Opened {
    pub provider: Arc<str>,
    pub model: Arc<str>,
    /// `x-switchyard-attempts` as of the opening: those before it, and this one (`ok`).
    pub attempts: String,
}

/// The stream's own id and creation time, minted by the gateway when it opens: every
/// chunk carries them whichever deployment produced it, so that a failover before the
/// first content is invisible to the caller.
pub(super) struct Minted {
    id: String,
    created: i64,
}

impl Minted {
    pub(super) fn new() -> Minted {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Minted {
            id: format!(
                "chatcmpl-{:016x}{:08x}",
                fastrand::u64(..),
                fastrand::u32(..)
            ),
            created,
        }
    }

    /// The first chunk, sent as soon as a stream opens: the assistant's role (one choice
    /// per `n`), no content.
    pub(super) fn role_chunk(&self, model: &str, choices: u32) -> ChatChunk {
        ChatChunk {
            native: None,
            id: self.id.clone(),
            object: "chat.completion.chunk".to_owned(),
            created: self.created,
            model: model.to_owned(),
            choices: (0..choices.max(1))
                .map(|index| ChunkChoice {
                    index,
                    delta: Delta {
                        role: Some(Role::Assistant),
                        content: Some(String::new()),
                        ..Delta::default()
                    },
                    finish_reason: None,
                    logprobs: None,
                    extra: Extra::default(),
                })
                .collect(),
            usage: None,
            system_fingerprint: None,
            extra: Extra::default(),
        }
    }

    /// A provider's chunk as the caller gets it: the minted id and time, no role (the role
    /// chunk said it). `None` for the provider's own role chunk when the role was all it
    /// said; every other chunk passes, whatever it holds.
    pub(super) fn restamp(&self, mut chunk: ChatChunk) -> Option<ChatChunk> {
        chunk.id.clone_from(&self.id);
        chunk.created = self.created;
        let mut had_role = false;
        for choice in &mut chunk.choices {
            had_role |= choice.delta.role.take().is_some();
        }
        let role_only = had_role
            && !chunk.has_content()
            && chunk.usage.is_none()
            && chunk.extra.is_empty()
            && chunk
                .choices
                .iter()
                .all(|c| c.delta.extra.is_empty() && c.logprobs.is_none() && c.extra.is_empty());
        // A passed-through event is the caller's to see, whatever it holds.
        (!role_only || chunk.native.is_some()).then_some(chunk)
    }
}

impl Gateway {
    /// Fails over until a deployment's stream produces its first content chunk (or ends
    /// cleanly); from then on the stream is committed.
    ///
    /// `opened` is told the first deployment whose stream opens (the provider answered
    /// with a stream), so the caller can have its headers and the role chunk before the
    /// first content.
    pub(super) async fn attempt_stream(
        &self,
        live: &Live,
        request: &ChatRequest,
        route: &Route,
        trace: Option<crate::telemetry::trace::Propagation>,
        opened: &watch::Sender<Option<Opened>>,
    ) -> Result<Served<OpenStream>, Failed> {
        let default_idle = live.config.failover.attempt_timeout;
        failover::run_seeing(
            &route.plan,
            &super::settings(live, route, true, trace),
            |d, before| {
                // What `x-switchyard-attempts` says if this attempt's stream opens first.
                let mut so_far = before.clone();
                so_far.skipped_first(&route.skipped);
                async move {
                    let open = async {
                        let mut rest = d.provider.chat_stream(request, &d.model).await?;
                        opened.send_if_modified(|first| {
                            if first.is_some() {
                                return false;
                            }
                            so_far.push(failover::Attempt::ok(&d, Duration::ZERO));
                            *first = Some(Opened {
                                provider: d.provider_name.clone(),
                                model: d.model.clone(),
                                attempts: so_far.header_value(),
                            });
                            true
                        });
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
    /// only when the stream finishes cleanly. With a data `filter` ([`super::data`]), the
    /// chunks go through it after the fill (the cache keeps placeholders) and a blocking
    /// content rule ends the stream with its error.
    ///
    /// `max_duration` (`server.max_stream_duration_s`), counted from the request's
    /// arrival: past it the stream ends with [`Error::StreamTooLong`], whatever the
    /// provider is doing (the deployment is told nothing: it did not fail).
    pub(super) fn deliver(
        self,
        record: RequestRecord,
        include_usage: bool,
        fill: Option<cache::Fill>,
        filter: Option<super::data::StreamFilter>,
        max_duration: Option<Duration>,
    ) -> impl Stream<Item = Delivered> + Send {
        let deadline = max_duration.map(|d| (record.started() + d, d));
        let state = Delivery {
            record,
            lease: self.lease,
            deployment: self.deployment,
            fill,
            filter,
            flushed: super::data::Pending::new(),
            ended: false,
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
                if let Some(chunk) = state.flushed.pop_front() {
                    return Some((Delivered::Chunk(chunk), Some((chunks, state))));
                }
                if state.ended {
                    return Some((Delivered::Done(Trailer::of(&state.record)), None));
                }
                let next = match deadline {
                    None => chunks.next().await,
                    Some((at, limit)) => match tokio::time::timeout_at(at, chunks.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            let error = Error::StreamTooLong {
                                limit_s: limit.as_secs(),
                            };
                            tracing::info!(
                                request_id = %state.record.request_id,
                                limit_s = limit.as_secs(),
                                "stream ended at server.max_stream_duration_s"
                            );
                            state.record.failed(&error);
                            let trailer = Trailer::of(&state.record);
                            return Some((Delivered::Broken(error, trailer), None));
                        }
                    },
                };
                match next {
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
                        if let Some(filter) = &mut state.filter {
                            match filter.pass(chunk, &mut state.record) {
                                Ok(Some(passed)) => chunk = passed,
                                Ok(None) => continue,
                                Err(error) => {
                                    let trailer = state.screened(&error);
                                    return Some((Delivered::Broken(error, trailer), None));
                                }
                            }
                        }
                        state.record.first_byte();
                        return Some((Delivered::Chunk(chunk), Some((chunks, state))));
                    }
                    Some(Err(error)) => {
                        let error = state.broken(error);
                        let trailer = Trailer::of(&state.record);
                        return Some((Delivered::Broken(error, trailer), None));
                    }
                    None => {
                        if let Some(mut filter) = state.filter.take() {
                            match filter.finish(&mut state.record) {
                                Ok(rest) => state.flushed.extend(rest),
                                Err(error) => {
                                    let trailer = state.screened(&error);
                                    return Some((Delivered::Broken(error, trailer), None));
                                }
                            }
                        }
                        if let Some(fill) = state.fill.take() {
                            fill.store_stream(&state.deployment);
                        }
                        state.record.end(Outcome::Ok);
                        state.tell(health::Outcome::Completed);
                        if state.flushed.is_empty() {
                            return Some((Delivered::Done(Trailer::of(&state.record)), None));
                        }
                        // The flushed chunks go first; the loop then ends the stream.
                        state.ended = true;
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
    /// Restore and the answer's content rules, when configured.
    filter: Option<super::data::StreamFilter>,
    /// Chunks the filter released at the end, sent before the terminator.
    flushed: super::data::Pending,
    /// The provider's stream ended and only `flushed` is left to send.
    ended: bool,
    _admitted: Option<Admitted>,
}

impl Delivery {
    /// Tells the deployment how its stream ended.
    fn tell(&mut self, outcome: health::Outcome) {
        if let Some(lease) = &mut self.lease {
            lease.record(outcome, tokio::time::Instant::now());
        }
    }

    /// A content rule blocked the rest of the stream: the provider did nothing wrong (its
    /// stream is not read further, and nothing is cached); the record ends refused.
    fn screened(&mut self, error: &Error) -> Trailer {
        self.fill = None;
        self.record.refused_by = Some(super::data::SCREEN);
        self.record.failed(error);
        self.tell(health::Outcome::Completed);
        Trailer::of(&self.record)
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

//! The gateway core both surfaces call: validate, route, attempt, and hand back the answer.
//!
//! Config-derived state (the catalog and its providers) lives in one [`Live`] snapshot
//! behind an `ArcSwap`: a request takes the snapshot once and finishes on it.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use futures_util::{Stream, StreamExt, stream};

use crate::{
    chat::{ChatChunk, ChatRequest, ChatResponse},
    config::Config,
    error::Error,
    failover::{self, Attempts, Failed, Served},
    providers::{self, ChunkStream, ProviderError},
    routing::{Catalog, Needs},
    telemetry::{Outcome, RequestRecord},
};

/// Everything built from one config.
pub struct Live {
    pub config: Config,
    pub catalog: Catalog,
}

/// The gateway: a swappable [`Live`] snapshot and the pooled upstream client.
pub struct Gateway {
    live: ArcSwap<Live>,
    client: reqwest::Client,
}

/// A stream committed to one deployment: the chunks read up to and including the first
/// content chunk, then the rest as it arrives.
pub struct OpenStream {
    head: Vec<ChatChunk>,
    rest: ChunkStream,
    idle_timeout: Duration,
}

impl Gateway {
    /// Builds the gateway and its providers from a validated config.
    pub fn new(config: Config) -> Result<Gateway, Error> {
        let client = providers::http_client(config.failover.connect_timeout)
            .map_err(|detail| Error::Internal { detail })?;
        let catalog = Catalog::build(&config, &client)?;
        Ok(Gateway {
            live: ArcSwap::from_pointee(Live { config, catalog }),
            client,
        })
    }

    /// The current snapshot.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Builds a new snapshot from `config` and swaps it in; in-flight requests keep theirs.
    pub fn reload(&self, config: Config) -> Result<(), Error> {
        let catalog = Catalog::build(&config, &self.client)?;
        self.live.store(Arc::new(Live { config, catalog }));
        Ok(())
    }

    /// One completion, failing over across the model's deployments.
    pub async fn chat(&self, request: &ChatRequest) -> Result<Served<ChatResponse>, Failed> {
        let live = self.live();
        let plan = plan(&live, request)?;
        failover::run(&plan, &live.config.failover, |d| async move {
            d.provider.chat(request, &d.model).await
        })
        .await
    }

    /// A streamed completion. Fails over until a deployment's stream produces its first
    /// content chunk (or ends cleanly); from then on the stream is committed.
    pub async fn chat_stream(&self, request: &ChatRequest) -> Result<Served<OpenStream>, Failed> {
        let live = self.live();
        let plan = plan(&live, request)?;
        let idle_timeout = live.config.failover.attempt_timeout;
        failover::run(&plan, &live.config.failover, |d| async move {
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
                idle_timeout,
            })
        })
        .await
    }
}

fn plan(live: &Live, request: &ChatRequest) -> Result<Arc<[crate::routing::Deployment]>, Failed> {
    validate(request)
        .and_then(|()| live.catalog.plan_for(request, &Needs::of(request)))
        .map_err(|error| Failed {
            error,
            attempts: Attempts::default(),
        })
}

/// Checks the request is one any provider could serve.
fn validate(request: &ChatRequest) -> Result<(), Error> {
    if request.model.trim().is_empty() {
        return Err(Error::bad_param("model", "`model` must not be empty"));
    }
    if request.messages.is_empty() {
        return Err(Error::bad_param(
            "messages",
            "`messages` must contain at least one message",
        ));
    }
    Ok(())
}

impl OpenStream {
    /// The committed stream: buffered head first, then the rest, each later chunk due
    /// within the idle timeout.
    fn into_stream(self) -> impl Stream<Item = Result<ChatChunk, ProviderError>> + Send {
        let idle = self.idle_timeout;
        // Ends after the first error: a broken stream has nothing more to give.
        let rest = stream::unfold(Some(self.rest), move |rest| async move {
            let mut rest = rest?;
            match tokio::time::timeout(idle, rest.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(rest))),
                Ok(Some(Err(e))) => Some((Err(e), None)),
                Ok(None) => None,
                Err(_) => Some((Err(ProviderError::Timeout), None)),
            }
        });
        stream::iter(self.head.into_iter().map(Ok)).chain(rest)
    }
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

/// Writes the request record when the stream ends however it ends: a stream the client
/// abandoned is dropped before its end, which records a cancellation.
struct RecordGuard {
    record: Option<RequestRecord>,
    outcome: Outcome,
}

impl Drop for RecordGuard {
    fn drop(&mut self) {
        if let Some(record) = self.record.take() {
            record.finish(self.outcome);
        }
    }
}

impl OpenStream {
    /// The committed stream as the caller should see it, with accounting: usage is recorded
    /// from the provider's final chunk, and withheld from the caller unless it asked for it
    /// (`include_usage`), since the gateway asks upstream for usage for its own sake.
    pub fn deliver(
        self,
        record: RequestRecord,
        include_usage: bool,
    ) -> impl Stream<Item = Delivered> + Send {
        let guard = RecordGuard {
            record: Some(record),
            outcome: Outcome::Cancelled,
        };
        let chunks = Box::pin(self.into_stream());
        stream::unfold(Some((chunks, guard)), move |state| async move {
            let (mut chunks, mut guard) = state?;
            loop {
                match chunks.next().await {
                    Some(Ok(mut chunk)) => {
                        let record = guard.record.as_mut()?;
                        if let Some(u) = &chunk.usage {
                            record.usage = Some(u.clone());
                        }
                        if !include_usage {
                            if chunk.choices.is_empty() && chunk.usage.is_some() {
                                continue;
                            }
                            chunk.usage = None;
                        }
                        record.first_byte();
                        return Some((Delivered::Chunk(chunk), Some((chunks, guard))));
                    }
                    Some(Err(error)) => {
                        let record = guard.record.as_ref()?;
                        let provider = record.provider.clone().unwrap_or_else(|| "upstream".into());
                        let error = Error::upstream(provider, error);
                        tracing::warn!(request_id = %record.request_id, %error, "stream broke after commit");
                        guard.outcome = Outcome::StreamBroken;
                        return Some((Delivered::Broken(error), None));
                    }
                    None => {
                        guard.outcome = Outcome::Ok;
                        return Some((Delivered::Done, None));
                    }
                }
            }
        })
    }
}

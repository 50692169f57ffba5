//! The cache step of [`Gateway::serve`]: the lookup after the stages, and a hit as the
//! call's answer — the stored response, or its replay as a stream.

use futures_util::{Stream, stream};

use super::{Answer, Call, Completed, Delivered, Head, Streaming};
use crate::{
    cache::{self, Hit, Query},
    chat::{ChatChunk, ChatRequest},
    gateway::Gateway,
    telemetry::Outcome,
};

impl Gateway {
    /// Looks the call up in the response cache and notes what it did on the call and its
    /// record; a hit is returned for the caller, a miss leaves the call its fill.
    pub(super) async fn look_up(&self, call: &mut Call, request: &ChatRequest) -> Option<Hit> {
        let lookup = self
            .cache()
            .look_up(Query {
                live: &call.live,
                caller: &call.caller,
                directive: call.directive,
                request,
            })
            .await;
        call.cache = lookup.status;
        call.record.cache = Some(lookup.status);
        call.fill = lookup.fill;
        lookup.hit
    }
}

impl Call {
    /// Answers from the cache. Nothing reached a provider: the record has no provider,
    /// usage or cost, and notes what the hit saved.
    /// The entry holds placeholders when the prompt was redacted: this caller's originals
    /// are restored, and the answer's content rules checked, as for a fresh answer.
    pub(super) fn answer_from_cache(mut self, mut hit: Hit, request: &ChatRequest) -> Answer {
        if let Err(error) = super::data::finish_answer(&mut self, &mut hit.response) {
            self.record.refused_by = Some(super::data::SCREEN);
            return Answer::Refused(self.refuse(error));
        }
        let head = Head {
            request_id: self.record.request_id.clone(),
            provider: hit.deployment.provider_name.clone(),
            attempts: String::new(),
            cache: cache::Status::Hit,
            rate_limits: crate::limits::Granted::default(),
        };
        self.fill = None;
        self.record.saved_usd = hit.saved_usd;
        self.record.first_byte();
        if request.is_stream() {
            let chunks = cache::replay(&hit.response, request.wants_stream_usage());
            Answer::Stream(Streaming {
                head,
                chunks: Box::pin(replayed(chunks, self)),
            })
        } else {
            self.record.end(Outcome::Ok);
            Answer::Complete(Completed {
                head,
                response: hit.response,
            })
        }
    }
}

/// The replayed chunks, then the end. The call (its record and gateway slot) lives until
/// the replay ends or the caller goes away (recorded as a cancellation).
fn replayed(chunks: Vec<ChatChunk>, call: Call) -> impl Stream<Item = Delivered> + Send {
    stream::unfold(Some((chunks.into_iter(), call)), |state| async move {
        let (mut chunks, mut call) = state?;
        match chunks.next() {
            Some(chunk) => Some((Delivered::Chunk(chunk), Some((chunks, call)))),
            None => {
                call.record.end(Outcome::Ok);
                // A hit made no attempt: the headers said all there is.
                Some((Delivered::Done(super::Trailer::default()), None))
            }
        }
    })
}

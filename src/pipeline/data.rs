//! The data controls on the request path: three stages before the cache lookup — the
//! model's Lua [`Guard`], the prompt's content rules ([`Screen`]), PII redaction
//! ([`Redact`]) — and, on the way back, the originals restored and the answer's content
//! rules checked, in a whole answer ([`finish_answer`]) and in a stream ([`StreamFilter`]).
//!
//! Redaction runs before the cache lookup on purpose: the cache key is made from the text
//! the provider would see, never from unredacted text. Two callers whose redacted prompts
//! are the same (`<EMAIL_1>` standing for different addresses) share an entry, which
//! holds placeholders only; each gets its own originals back from its own session. A
//! caller with other redaction settings sends other text and so has other keys.
//!
//! None of this costs anything when no control is configured: each stage returns at
//! once, and streams get no filter.

use std::{collections::VecDeque, sync::Arc};

use super::{Call, stages::Stage};
use crate::{
    chat::{ChatChunk, ChatRequest, ChatResponse, Content, ContentPart, ToolCallDelta},
    content_rules::{self, Hit, RuleSet, Window},
    error::Error,
    guard::Verdict,
    redaction::{
        Session,
        restore::{Originals, Restorer, Target},
    },
    telemetry::{
        RequestRecord,
        audit::{DataAudit, GuardDecision},
    },
};

/// The stage name a refused answer is recorded under.
pub const SCREEN: &str = "content_rules";

fn audit(record: &mut RequestRecord) -> &mut DataAudit {
    record.data.get_or_insert_with(Box::default)
}

/// `[[models]] guard`: the model's guard script allows the request, or it is refused
/// (403 `guardrail_denied` with the script's reason).
pub struct Guard;

impl Stage for Guard {
    const NAME: &'static str = "guard";

    async fn run(&self, call: &mut Call, request: &mut ChatRequest) -> Result<(), Error> {
        // Checked through the call's own snapshot: no reference count is taken unless a
        // guard is configured.
        if call.live.guards.is_empty() {
            return Ok(());
        }
        let live = call.live.clone();
        let Ok(model) = live.catalog.model(&request.model) else {
            return Ok(());
        };
        let Some(script) = live.guards.of(&model.name) else {
            return Ok(());
        };
        let verdict = script.decide(request, &call.caller);
        audit(&mut call.record).guard = Some(GuardDecision {
            name: script.name.clone(),
            decision: match verdict {
                Verdict::Allow => "allow",
                Verdict::Deny(_) => "deny",
            },
        });
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Deny(reason) => Err(Error::Forbidden {
                message: reason,
                code: "guardrail_denied",
            }),
        }
    }
}

/// `[[content_rules]]` on the prompt: a `block` refuses (400 `content_policy_violation`),
/// a `flag` is recorded. Checked on the text as the caller sent it, before redaction.
pub struct Screen;

impl Stage for Screen {
    const NAME: &'static str = SCREEN;

    async fn run(&self, call: &mut Call, request: &mut ChatRequest) -> Result<(), Error> {
        let Some(rules) = call.live.config.data.rules.prompt.clone() else {
            return Ok(());
        };
        let mut hits = Vec::new();
        for_each_text(request, |t| rules.check(t, &mut hits));
        if hits.is_empty() {
            return Ok(());
        }
        audit(&mut call.record).ruled(&hits);
        match content_rules::blocked(&hits) {
            Some(hit) => Err(hit.refusal()),
            None => Ok(()),
        }
    }
}

/// PII redaction under the most specific profile that applies to the caller (key, then
/// security level, then `[redaction]`).
pub struct Redact;

impl Stage for Redact {
    const NAME: &'static str = "redact";

    async fn run(&self, call: &mut Call, request: &mut ChatRequest) -> Result<(), Error> {
        let key = call.caller.key.as_ref().map(|k| k.name.as_str());
        let Some(policy) = call
            .live
            .config
            .data
            .redaction(key, call.caller.level)
            .cloned()
        else {
            return Ok(());
        };
        let mut session = Session::new(policy.restore);
        let result = policy.redact(request, &mut session);
        if session.any() {
            audit(&mut call.record).redacted(session.counts());
            // The caller's own body still holds what was redacted: a pass-through must not
            // send it, so the redacted canonical request is translated instead.
            request.native = None;
        }
        result?;
        call.restore = session.into_restore();
        Ok(())
    }
}

/// Calls `f` on every text of the request a provider sees.
fn for_each_text(request: &ChatRequest, mut f: impl FnMut(&str)) {
    for m in &request.messages {
        match &m.content {
            Some(Content::Text(t)) => f(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if let ContentPart::Text { text, .. } = p {
                        f(text);
                    }
                }
            }
            None => {}
        }
        for c in m.tool_calls.iter().flatten() {
            f(&c.function.arguments);
        }
    }
}

/// A whole answer on its way to the caller: the originals restored, then the answer's
/// content rules checked on what the caller would read. `Ok(Some(stored))`: the answer as
/// the provider gave it (placeholders, for the cache) when restoring changed it.
pub(super) fn finish_answer(
    call: &mut Call,
    response: &mut ChatResponse,
) -> Result<Option<ChatResponse>, Error> {
    let rules = call.live.config.data.rules.response.clone();
    if call.restore.is_none() && rules.is_none() {
        return Ok(None);
    }
    let stored = call.restore.as_ref().map(|originals| {
        let stored = response.clone();
        for choice in &mut response.choices {
            let m = &mut choice.message;
            if let Some(Content::Text(t)) = &mut m.content
                && let Some(r) = originals.restore(t, Target::Text)
            {
                *t = r;
            }
            if let Some(Content::Parts(parts)) = &mut m.content {
                for p in parts {
                    if let ContentPart::Text { text, .. } = p
                        && let Some(r) = originals.restore(text, Target::Text)
                    {
                        *text = r;
                    }
                }
            }
            for c in m.tool_calls.iter_mut().flatten() {
                if let Some(r) = originals.restore(&c.function.arguments, Target::JsonString) {
                    c.function.arguments = r;
                }
            }
        }
        stored
    });
    if let Some(rules) = rules {
        let mut hits = Vec::new();
        for choice in &response.choices {
            let m = &choice.message;
            match &m.content {
                Some(c @ Content::Parts(_)) => rules.check(&c.joined_text(), &mut hits),
                Some(Content::Text(t)) => rules.check(t, &mut hits),
                None => {}
            }
            for c in m.tool_calls.iter().flatten() {
                rules.check(&c.function.arguments, &mut hits);
            }
        }
        if !hits.is_empty() {
            audit(&mut call.record).ruled(&hits);
            if let Some(hit) = content_rules::blocked(&hits) {
                return Err(hit.refusal());
            }
        }
    }
    Ok(stored)
}

/// One choice's state in a filtered stream.
#[derive(Debug)]
struct ChoiceFilter {
    index: u32,
    text: Restorer,
    window: Window,
    /// Tool-call deltas held until the choice finishes, merged by index.
    tools: Vec<ToolCallDelta>,
}

/// A stream on its way to the caller: content restored as it passes (holding back only a
/// possible placeholder's start), checked by the answer's content rules window by window,
/// and tool calls held until their choice finishes, then restored and checked whole.
#[derive(Debug)]
pub struct StreamFilter {
    originals: Option<Arc<Originals>>,
    rules: Option<Arc<RuleSet>>,
    choices: Vec<ChoiceFilter>,
    /// The envelope of the last chunk, for what is flushed at the end.
    template: Option<ChatChunk>,
}

impl StreamFilter {
    /// The filter a call's stream needs; `None` when nothing is to be restored or checked.
    pub(super) fn for_call(call: &mut Call) -> Option<StreamFilter> {
        let rules = call.live.config.data.rules.response.clone();
        let originals = call.restore.take();
        (originals.is_some() || rules.is_some()).then(|| StreamFilter::new(originals, rules))
    }

    pub fn new(originals: Option<Arc<Originals>>, rules: Option<Arc<RuleSet>>) -> StreamFilter {
        StreamFilter {
            originals,
            rules,
            choices: Vec::new(),
            template: None,
        }
    }

    fn choice(&mut self, index: u32) -> &mut ChoiceFilter {
        let at = match self.choices.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                self.choices.push(ChoiceFilter {
                    index,
                    text: Restorer::new(Target::Text),
                    window: Window::default(),
                    tools: Vec::new(),
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[at]
    }

    /// One chunk in, what may go out now (nothing, while a placeholder's start or tool
    /// calls are held), or the refusal of a blocking rule. Rule hits go to `record`.
    pub fn pass(
        &mut self,
        mut chunk: ChatChunk,
        record: &mut RequestRecord,
    ) -> Result<Option<ChatChunk>, Error> {
        let mut hits = Vec::new();
        if self.template.is_none() {
            let mut t = chunk.clone();
            t.choices.clear();
            t.usage = None;
            self.template = Some(t);
        }
        let originals = self.originals.clone();
        let rules = self.rules.clone();
        for c in &mut chunk.choices {
            let finished = c.finish_reason.is_some();
            let state = self.choice(c.index);
            let mut text = match (c.delta.content.take(), &originals) {
                (Some(piece), Some(o)) => state.text.push(o, &piece),
                (Some(piece), None) => piece,
                (None, _) => String::new(),
            };
            if let Some(calls) = c.delta.tool_calls.take() {
                merge(&mut state.tools, calls);
            }
            if finished && let Some(o) = &originals {
                text.push_str(&state.text.finish(o));
            }
            if let Some(rules) = &rules {
                state.window.check(rules, &text, &mut hits);
            }
            if !text.is_empty() {
                c.delta.content = Some(text);
            }
            if finished && !state.tools.is_empty() {
                let calls = release(
                    &mut state.tools,
                    originals.as_deref(),
                    rules.as_deref(),
                    &mut hits,
                );
                c.delta.tool_calls = Some(calls);
            }
        }
        if !hits.is_empty() {
            audit(record).ruled(&hits);
            if let Some(hit) = content_rules::blocked(&hits) {
                return Err(hit.refusal());
            }
        }
        let empty = chunk.usage.is_none()
            && chunk.choices.iter().all(|c| {
                c.finish_reason.is_none()
                    && c.logprobs.is_none()
                    && c.delta.content.is_none()
                    && c.delta.tool_calls.is_none()
                    && c.delta.refusal.is_none()
                    && c.delta.role.is_none()
                    && c.delta.extra.is_empty()
            });
        Ok((!empty).then_some(chunk))
    }

    /// The stream ended: what is still held (a tail that looked like a placeholder's
    /// start, tool calls of a choice that never said it finished).
    pub fn finish(&mut self, record: &mut RequestRecord) -> Result<Vec<ChatChunk>, Error> {
        let Some(template) = self.template.take() else {
            return Ok(Vec::new());
        };
        let originals = self.originals.clone();
        let rules = self.rules.clone();
        let mut hits = Vec::new();
        let mut out = Vec::new();
        for state in &mut self.choices {
            let text = match &originals {
                Some(o) if state.text.holding() => state.text.finish(o),
                _ => String::new(),
            };
            if let Some(rules) = &rules {
                state.window.check_last(rules, &text, &mut hits);
            }
            let calls = (!state.tools.is_empty()).then(|| {
                release(
                    &mut state.tools,
                    originals.as_deref(),
                    rules.as_deref(),
                    &mut hits,
                )
            });
            if text.is_empty() && calls.is_none() {
                continue;
            }
            let mut chunk = template.clone();
            chunk.choices.push(crate::chat::ChunkChoice {
                index: state.index,
                delta: crate::chat::Delta {
                    content: (!text.is_empty()).then_some(text),
                    tool_calls: calls,
                    ..crate::chat::Delta::default()
                },
                finish_reason: None,
                logprobs: None,
                extra: crate::chat::Extra::default(),
            });
            out.push(chunk);
        }
        if !hits.is_empty() {
            audit(record).ruled(&hits);
            if let Some(hit) = content_rules::blocked(&hits) {
                return Err(hit.refusal());
            }
        }
        Ok(out)
    }
}

/// Adds streamed tool-call deltas to the held ones: the first delta of an index gives its
/// id, type and name, later ones append arguments.
fn merge(held: &mut Vec<ToolCallDelta>, calls: Vec<ToolCallDelta>) {
    for call in calls {
        match held.iter_mut().find(|h| h.index == call.index) {
            None => held.push(call),
            Some(h) => {
                if h.id.is_none() {
                    h.id = call.id;
                }
                if h.kind.is_none() {
                    h.kind = call.kind;
                }
                match (&mut h.function, call.function) {
                    (Some(f), Some(more)) => {
                        if f.name.is_none() {
                            f.name = more.name;
                        }
                        if let Some(args) = more.arguments {
                            f.arguments.get_or_insert_with(String::new).push_str(&args);
                        }
                    }
                    (f @ None, more) => *f = more,
                    (Some(_), None) => {}
                }
            }
        }
    }
}

/// The held tool calls, restored and checked whole, to send.
fn release(
    held: &mut Vec<ToolCallDelta>,
    originals: Option<&Originals>,
    rules: Option<&RuleSet>,
    hits: &mut Vec<Hit>,
) -> Vec<ToolCallDelta> {
    let mut calls = std::mem::take(held);
    for c in &mut calls {
        if let Some(args) = c.function.as_mut().and_then(|f| f.arguments.as_mut()) {
            if let Some(o) = originals
                && let Some(r) = o.restore(args, Target::JsonString)
            {
                *args = r;
            }
            if let Some(rules) = rules {
                rules.check(args, hits);
            }
        }
    }
    calls
}

/// A delivered stream's pending output: chunks released together (the end's flush).
pub(super) type Pending = VecDeque<ChatChunk>;

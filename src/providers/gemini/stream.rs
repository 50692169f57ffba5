//! Gemini `streamGenerateContent?alt=sse` frames -> canonical chunks.
//!
//! Every frame is a whole `GenerateContentResponse` holding what is new: text parts,
//! `thought` parts, whole `functionCall` parts (never fragmented), and on the last frame
//! `finishReason` and `usageMetadata`. There is no terminator: the body ending after a
//! `finishReason` is a complete stream, before one a cut stream. Each function call gets
//! the next tool-call index and its arguments in one delta.

use super::response::{GenerateResponse, UsageMetadata, finish_reason};
use crate::{
    chat::{ChatChunk, ChunkChoice, Delta, Extra, FunctionCallDelta, Role, ToolCallDelta},
    providers::{
        ProviderError, limits,
        sse::{SseEvent, StreamTranslator},
        unix_now, upstream,
    },
};

/// The translation state of one Gemini stream.
#[derive(Debug)]
pub struct GeminiStream {
    id: String,
    model: String,
    created: i64,
    started: bool,
    /// Tool calls so far, per candidate index.
    tool_calls: Vec<u32>,
    usage: Option<UsageMetadata>,
    finished: bool,
    ended: bool,
}

impl GeminiStream {
    /// A stream for `model` (the name reported until a frame says `modelVersion`).
    pub fn new(model: &str) -> Self {
        GeminiStream {
            id: format!("gen-{:016x}", fastrand::u64(..)),
            model: model.to_owned(),
            created: unix_now(),
            started: false,
            tool_calls: Vec::new(),
            usage: None,
            finished: false,
            ended: false,
        }
    }

    fn chunk(&self, choices: Vec<ChunkChoice>) -> ChatChunk {
        ChatChunk {
            native: None,
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage: None,
            system_fingerprint: None,
            extra: Extra::new(),
        }
    }

    /// Translates one frame into `out`. A candidate index or tool-call count past
    /// [`limits::MAX_INDEX`] is an error: state is kept per candidate index.
    fn translate(
        &mut self,
        frame: GenerateResponse,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), ProviderError> {
        if let Some(id) = frame.response_id.filter(|_| !self.started) {
            self.id = id;
        }
        if let Some(model) = frame.model_version {
            self.model = model;
        }
        if let Some(u) = frame.usage_metadata {
            self.usage = Some(u);
        }
        if !self.started {
            self.started = true;
            out.push(self.chunk(vec![choice(
                0,
                Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            )]));
        }
        for (i, c) in frame.candidates.into_iter().enumerate() {
            let index = match c.index {
                Some(index) => limits::index("candidate index", index)?,
                None => limits::room_for("candidate index", i)?,
            };
            let slot = index as usize;
            if self.tool_calls.len() <= slot {
                self.tool_calls.resize(slot + 1, 0);
            }
            for p in c.content.into_iter().flat_map(|c| c.parts) {
                let delta = match (p.text, p.function_call) {
                    (Some(t), _) if p.thought == Some(true) => {
                        let mut extra = Extra::new();
                        extra.insert("reasoning_content".into(), t.into());
                        Delta {
                            extra,
                            ..Delta::default()
                        }
                    }
                    (Some(t), _) if !t.is_empty() => Delta {
                        content: Some(t),
                        ..Delta::default()
                    },
                    (None, Some(call)) => {
                        let tool = call.to_tool_call();
                        let n = limits::index("tool call index", self.tool_calls[slot])?;
                        self.tool_calls[slot] = n + 1;
                        Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: n,
                                id: Some(tool.id),
                                kind: Some("function".into()),
                                function: Some(FunctionCallDelta::from(tool.function)),
                            }]),
                            ..Delta::default()
                        }
                    }
                    _ => continue,
                };
                out.push(self.chunk(vec![choice(index, delta, None)]));
            }
            if let Some(reason) = c.finish_reason {
                self.finished = true;
                let finish = finish_reason(&reason, self.tool_calls[slot] > 0);
                out.push(self.chunk(vec![choice(index, Delta::default(), Some(finish))]));
            }
        }
        Ok(())
    }
}

fn choice(index: u32, delta: Delta, finish: Option<&str>) -> ChunkChoice {
    ChunkChoice {
        index,
        delta,
        finish_reason: finish.map(str::to_owned),
        logprobs: None,
        extra: Extra::new(),
    }
}

impl StreamTranslator for GeminiStream {
    fn on_event(&mut self, event: SseEvent) -> Vec<Result<ChatChunk, ProviderError>> {
        let parsed = upstream::decode::<GenerateResponse>(event.data.as_bytes()).and_then(
            |frame| match frame.error {
                Some(err) => {
                    let field = |k: &str| err.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                    Err(ProviderError::InStream {
                        message: field("message").unwrap_or_else(|| err.to_string()),
                        kind: field("status"),
                        code: None,
                    })
                }
                None => Ok(frame),
            },
        );
        let mut chunks = Vec::new();
        let result = parsed.and_then(|frame| self.translate(frame, &mut chunks));
        let mut out: Vec<_> = chunks.into_iter().map(Ok).collect();
        if let Err(e) = result {
            self.ended = true;
            out.push(Err(e));
        }
        out
    }

    fn is_ended(&self) -> bool {
        self.ended
    }

    fn on_eof(&mut self) -> Result<Vec<ChatChunk>, ProviderError> {
        if !self.finished {
            return Err(ProviderError::Reset(
                "the stream ended before a finishReason".into(),
            ));
        }
        let mut last = self.chunk(Vec::new());
        last.usage = Some(
            self.usage
                .as_ref()
                .map(UsageMetadata::to_usage)
                .unwrap_or_default(),
        );
        Ok(vec![last])
    }
}

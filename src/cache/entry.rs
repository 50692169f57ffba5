//! A cached answer: the complete response, who produced it, and how a stream is turned
//! into one ([`Assembler`]) and one back into a stream ([`replay`]).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::{
    ChatChunk, ChatResponse, Choice, ChunkChoice, Delta, Extra, FunctionCall, FunctionCallDelta,
    Message, Role, ToolCall, ToolCallDelta, Usage,
};

/// What one cache entry holds. Its usage is the response's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The deployment that produced the answer (`provider/model`).
    pub deployment: String,
    /// Its provider's name.
    pub provider: String,
    /// The answer, under the key that says which kind it is (`response` for a chat
    /// completion, as entries have always been written; `embeddings`).
    #[serde(flatten)]
    pub body: Body,
    /// A passed-through chat answer's own body ([`ChatResponse::native`]), returned as it
    /// was on a hit so that thinking signatures and fields the gateway does not model
    /// survive the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<String>,
}

/// A stored answer of one kind.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per cache entry, moved once; boxing the common case would add an allocation"
)]
pub enum Body {
    #[serde(rename = "response")]
    Chat(ChatResponse),
    #[serde(rename = "embeddings")]
    Embeddings(crate::embeddings::EmbedResponse),
}

/// The field OpenAI-compatible reasoning models stream their reasoning text in.
const REASONING: &str = "reasoning_content";

/// Folds a stream's chunks into the complete response they spell, as the caller's SDK
/// would: content, refusal and reasoning text appended, tool calls reassembled by index,
/// the finish reason and the usage (from the usage chunk, whether or not the caller asked
/// for it).
#[derive(Debug, Default)]
pub struct Assembler {
    id: String,
    created: i64,
    model: String,
    system_fingerprint: Option<String>,
    choices: Vec<Assembling>,
    usage: Option<Usage>,
}

#[derive(Debug, Default)]
struct Assembling {
    index: u32,
    content: String,
    refusal: Option<String>,
    reasoning: String,
    tool_calls: Vec<AssemblingCall>,
    finish_reason: Option<String>,
}

#[derive(Debug, Default)]
struct AssemblingCall {
    index: u32,
    id: String,
    kind: String,
    name: String,
    arguments: String,
}

impl Assembler {
    /// Adds one chunk, as the provider sent it.
    pub fn push(&mut self, chunk: &ChatChunk) {
        if self.id.is_empty() {
            self.id.clone_from(&chunk.id);
            self.created = chunk.created;
            self.model.clone_from(&chunk.model);
        }
        if chunk.system_fingerprint.is_some() {
            self.system_fingerprint
                .clone_from(&chunk.system_fingerprint);
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        for c in &chunk.choices {
            let choice = self.choice(c.index);
            let delta = &c.delta;
            if let Some(text) = &delta.content {
                choice.content.push_str(text);
            }
            if let Some(text) = &delta.refusal {
                choice.refusal.get_or_insert_default().push_str(text);
            }
            if let Some(Value::String(text)) = delta.extra.get(REASONING) {
                choice.reasoning.push_str(text);
            }
            for t in delta.tool_calls.iter().flatten() {
                let call = choice.call(t.index);
                if let Some(id) = &t.id {
                    call.id.clone_from(id);
                }
                if let Some(kind) = &t.kind {
                    call.kind.clone_from(kind);
                }
                if let Some(f) = &t.function {
                    if let Some(name) = &f.name {
                        call.name.push_str(name);
                    }
                    if let Some(args) = &f.arguments {
                        call.arguments.push_str(args);
                    }
                }
            }
            if c.finish_reason.is_some() {
                choice.finish_reason.clone_from(&c.finish_reason);
            }
        }
    }

    fn choice(&mut self, index: u32) -> &mut Assembling {
        let at = match self.choices.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                self.choices.push(Assembling {
                    index,
                    ..Assembling::default()
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[at]
    }

    /// The complete response the chunks spell.
    pub fn finish(self) -> ChatResponse {
        let mut choices: Vec<Choice> = self
            .choices
            .into_iter()
            .map(|c| {
                let mut calls = c.tool_calls;
                calls.sort_by_key(|t| t.index);
                let calls = calls
                    .into_iter()
                    .map(|t| ToolCall {
                        id: t.id,
                        kind: if t.kind.is_empty() {
                            "function".to_owned()
                        } else {
                            t.kind
                        },
                        function: FunctionCall {
                            name: t.name,
                            arguments: t.arguments,
                        },
                    })
                    .collect();
                let mut message = Message::assistant(c.content, c.reasoning, calls);
                message.refusal = c.refusal;
                Choice {
                    index: c.index,
                    message,
                    finish_reason: c.finish_reason,
                    logprobs: None,
                    extra: Extra::new(),
                }
            })
            .collect();
        choices.sort_by_key(|c| c.index);
        ChatResponse {
            native: None,
            id: self.id,
            object: "chat.completion".to_owned(),
            created: self.created,
            model: self.model,
            choices,
            usage: self.usage,
            system_fingerprint: self.system_fingerprint,
            extra: Extra::new(),
        }
    }
}

impl Assembling {
    fn call(&mut self, index: u32) -> &mut AssemblingCall {
        let at = match self.tool_calls.iter().position(|c| c.index == index) {
            Some(at) => at,
            None => {
                self.tool_calls.push(AssemblingCall {
                    index,
                    ..AssemblingCall::default()
                });
                self.tool_calls.len() - 1
            }
        };
        &mut self.tool_calls[at]
    }
}

/// The stream a cached `response` replays as, per choice: the role, then reasoning,
/// content and refusal each whole, each tool call whole, the finish reason; then the usage
/// chunk when the caller asked for it (`include_usage`).
pub fn replay(response: &ChatResponse, include_usage: bool) -> Vec<ChatChunk> {
    let chunk = |choices: Vec<ChunkChoice>, usage: Option<Usage>| ChatChunk {
        native: None,
        id: response.id.clone(),
        object: "chat.completion.chunk".to_owned(),
        created: response.created,
        model: response.model.clone(),
        choices,
        usage,
        system_fingerprint: response.system_fingerprint.clone(),
        extra: Extra::new(),
    };
    let one = |index: u32, delta: Delta, finish_reason: Option<String>| {
        chunk(
            vec![ChunkChoice {
                index,
                delta,
                finish_reason,
                logprobs: None,
                extra: Extra::new(),
            }],
            None,
        )
    };
    let mut chunks = Vec::new();
    for c in &response.choices {
        let m = &c.message;
        chunks.push(one(
            c.index,
            Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            },
            None,
        ));
        if let Some(reasoning) = m.extra.get(REASONING) {
            let mut extra = Extra::new();
            extra.insert(REASONING.to_owned(), reasoning.clone());
            chunks.push(one(
                c.index,
                Delta {
                    extra,
                    ..Delta::default()
                },
                None,
            ));
        }
        if let Some(text) = m.content.as_ref().map(|c| c.joined_text())
            && !text.is_empty()
        {
            chunks.push(one(
                c.index,
                Delta {
                    content: Some(text),
                    ..Delta::default()
                },
                None,
            ));
        }
        if let Some(refusal) = &m.refusal {
            chunks.push(one(
                c.index,
                Delta {
                    refusal: Some(refusal.clone()),
                    ..Delta::default()
                },
                None,
            ));
        }
        for (i, call) in m.tool_calls.iter().flatten().enumerate() {
            chunks.push(one(
                c.index,
                Delta {
                    tool_calls: Some(vec![ToolCallDelta {
                        index: u32::try_from(i).unwrap_or(u32::MAX),
                        id: Some(call.id.clone()),
                        kind: Some(call.kind.clone()),
                        function: Some(FunctionCallDelta::from(call.function.clone())),
                    }]),
                    ..Delta::default()
                },
                None,
            ));
        }
        chunks.push(one(c.index, Delta::default(), c.finish_reason.clone()));
    }
    if include_usage && let Some(usage) = &response.usage {
        chunks.push(chunk(Vec::new(), Some(usage.clone())));
    }
    chunks
}

#[cfg(test)]
mod tests;

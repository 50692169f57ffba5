//! Canonical chat types: the OpenAI chat-completions schema every surface and adapter speaks.
//!
//! Typed fields are the ones the gateway reads; every struct also carries a flattened
//! `extra` map so fields it does not model pass through untouched.

pub mod native;
mod request;
mod response;

pub use request::{
    ChatRequest, Content, ContentPart, FunctionCall, FunctionDefinition, ImageUrl, Message,
    ResponseFormat, Role, Stop, StreamOptions, Tool, ToolCall, ToolChoice,
};
pub use response::{
    ChatChunk, ChatResponse, Choice, ChunkChoice, CompletionTokensDetails, Delta,
    FunctionCallDelta, PromptTokensDetails, ToolCallDelta, Usage,
};

/// A JSON object of fields the gateway does not model, kept verbatim.
pub type Extra = serde_json::Map<String, serde_json::Value>;

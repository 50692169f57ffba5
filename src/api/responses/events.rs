//! A canonical chunk stream as the Responses event sequence (API reference: "Streaming
//! events"; openai-python `types/responses/response_stream_event.py`): `response.created`,
//! `response.in_progress`, per output item `response.output_item.added`, its parts and
//! deltas and `response.output_item.done`, then `response.completed` (or
//! `response.incomplete`), each with its `sequence_number`. A stream that breaks after it
//! opened ends with `error` and `response.failed`.
//!
//! Output items open as their first delta arrives and close when another kind of item
//! starts or the stream ends, so the sequence is always well nested.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::object::{self, Frame};
use crate::{
    chat::{ChatChunk, Usage},
    error::Error,
};

/// The item being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Reasoning,
    Text,
    /// The tool call of this chunk index.
    Call(u32),
}

#[derive(Debug, Default)]
struct CallState {
    item_id: String,
    output_index: usize,
    call_id: String,
    name: String,
    arguments: String,
}

/// The encoder's state between chunks.
pub struct EventEncoder {
    id: String,
    created_at: i64,
    model: String,
    echo: Map<String, Value>,
    sequence: u64,
    started: bool,
    /// Finished output items, in order.
    output: Vec<Value>,
    open: Option<(Open, usize, String)>,
    text: String,
    reasoning: String,
    calls: BTreeMap<u32, CallState>,
    usage: Option<Usage>,
    finish: Option<String>,
}

impl EventEncoder {
    pub fn new(id: String, created_at: i64, model: String, echo: Map<String, Value>) -> Self {
        EventEncoder {
            id,
            created_at,
            model,
            echo,
            sequence: 0,
            started: false,
            output: Vec::new(),
            open: None,
            text: String::new(),
            reasoning: String::new(),
            calls: BTreeMap::new(),
            usage: None,
            finish: None,
        }
    }

    /// The model the response names, until a chunk names one.
    pub fn set_model(&mut self, model: &str) {
        if !model.is_empty() {
            self.model = model.to_owned();
        }
    }

    fn frame(&self) -> Frame<'_> {
        Frame {
            id: &self.id,
            created_at: self.created_at,
            model: &self.model,
            echo: &self.echo,
        }
    }

    fn event(&mut self, out: &mut Vec<Bytes>, kind: &str, mut body: Value) {
        if let Value::Object(o) = &mut body {
            o.insert("type".into(), json!(kind));
            o.insert("sequence_number".into(), json!(self.sequence));
        }
        self.sequence += 1;
        out.push(Bytes::from(format!("event: {kind}\ndata: {body}\n\n")));
    }

    /// `response.created` and `response.in_progress`, once.
    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self
            .frame()
            .object("in_progress", Value::Null, Vec::new(), None);
        self.event(out, "response.created", json!({ "response": response }));
        self.event(out, "response.in_progress", json!({ "response": response }));
    }

    /// The events one chunk means.
    pub fn on_chunk(&mut self, chunk: &ChatChunk) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(&mut out);
        if !chunk.model.is_empty() {
            self.model.clone_from(&chunk.model);
        }
        if let Some(u) = &chunk.usage {
            self.usage = Some(u.clone());
        }
        let Some(choice) = chunk.choices.first() else {
            return out;
        };
        let delta = &choice.delta;
        if let Some(r) = delta
            .extra
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            self.reasoning_delta(&mut out, r);
        }
        if let Some(t) = delta.content.as_deref().filter(|t| !t.is_empty()) {
            self.text_delta(&mut out, t);
        }
        for call in delta.tool_calls.iter().flatten() {
            let args = call
                .function
                .as_ref()
                .and_then(|f| f.arguments.as_deref())
                .unwrap_or("");
            self.call_delta(&mut out, call.index, call, args);
        }
        if let Some(f) = &choice.finish_reason {
            self.finish = Some(f.clone());
        }
        out
    }

    /// Opens `kind` as the next output item unless it is the open one.
    fn open(&mut self, out: &mut Vec<Bytes>, kind: Open) -> (usize, String) {
        if let Some((open, index, id)) = &self.open
            && *open == kind
        {
            return (*index, id.clone());
        }
        self.close(out);
        let index = self.output.len();
        let (id, item) = match kind {
            Open::Reasoning => {
                let id = object::mint("rs");
                let item = object::reasoning_item(&id, "");
                (id, item)
            }
            Open::Text => {
                let id = object::mint("msg");
                let mut item = object::message_item(&id, "in_progress", "");
                item["content"] = json!([]);
                (id, item)
            }
            Open::Call(k) => {
                let call = self.calls.entry(k).or_default();
                call.item_id = object::mint("fc");
                call.output_index = index;
                let item = object::function_call_item(
                    &call.item_id,
                    "in_progress",
                    &call.call_id,
                    &call.name,
                    "",
                );
                (call.item_id.clone(), item)
            }
        };
        self.event(
            out,
            "response.output_item.added",
            json!({ "output_index": index, "item": item }),
        );
        match kind {
            Open::Reasoning => self.event(
                out,
                "response.reasoning_summary_part.added",
                json!({ "item_id": id, "output_index": index, "summary_index": 0,
                        "part": { "type": "summary_text", "text": "" } }),
            ),
            Open::Text => self.event(
                out,
                "response.content_part.added",
                json!({ "item_id": id, "output_index": index, "content_index": 0,
                        "part": object::output_text("") }),
            ),
            Open::Call(_) => {}
        }
        self.open = Some((kind, index, id.clone()));
        (index, id)
    }

    fn reasoning_delta(&mut self, out: &mut Vec<Bytes>, delta: &str) {
        let (index, id) = self.open(out, Open::Reasoning);
        self.reasoning.push_str(delta);
        self.event(
            out,
            "response.reasoning_summary_text.delta",
            json!({ "item_id": id, "output_index": index, "summary_index": 0, "delta": delta }),
        );
    }

    fn text_delta(&mut self, out: &mut Vec<Bytes>, delta: &str) {
        let (index, id) = self.open(out, Open::Text);
        self.text.push_str(delta);
        self.event(
            out,
            "response.output_text.delta",
            json!({ "item_id": id, "output_index": index, "content_index": 0,
                    "delta": delta, "logprobs": [] }),
        );
    }

    fn call_delta(
        &mut self,
        out: &mut Vec<Bytes>,
        k: u32,
        call: &crate::chat::ToolCallDelta,
        args: &str,
    ) {
        {
            let state = self.calls.entry(k).or_default();
            if let Some(id) = &call.id {
                state.call_id.clone_from(id);
            }
            if let Some(name) = call.function.as_ref().and_then(|f| f.name.as_ref()) {
                state.name.clone_from(name);
            }
        }
        let is_open = matches!(self.open, Some((Open::Call(open), ..)) if open == k);
        let (index, id) = if is_open || self.calls.get(&k).is_none_or(|c| c.item_id.is_empty()) {
            self.open(out, Open::Call(k))
        } else {
            // A late fragment of a call already closed: its arguments still count.
            let c = &self.calls[&k];
            (c.output_index, c.item_id.clone())
        };
        if args.is_empty() {
            return;
        }
        if let Some(state) = self.calls.get_mut(&k) {
            state.arguments.push_str(args);
        }
        self.event(
            out,
            "response.function_call_arguments.delta",
            json!({ "item_id": id, "output_index": index, "delta": args }),
        );
    }

    /// Closes the open item: its `.done` events, then `response.output_item.done`.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some((kind, index, id)) = self.open.take() else {
            return;
        };
        let item = match kind {
            Open::Reasoning => {
                let text = std::mem::take(&mut self.reasoning);
                self.event(
                    out,
                    "response.reasoning_summary_text.done",
                    json!({ "item_id": id, "output_index": index, "summary_index": 0,
                            "text": text }),
                );
                self.event(
                    out,
                    "response.reasoning_summary_part.done",
                    json!({ "item_id": id, "output_index": index, "summary_index": 0,
                            "part": { "type": "summary_text", "text": text } }),
                );
                object::reasoning_item(&id, &text)
            }
            Open::Text => {
                let text = std::mem::take(&mut self.text);
                self.event(
                    out,
                    "response.output_text.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0,
                            "text": text, "logprobs": [] }),
                );
                self.event(
                    out,
                    "response.content_part.done",
                    json!({ "item_id": id, "output_index": index, "content_index": 0,
                            "part": object::output_text(&text) }),
                );
                object::message_item(&id, "completed", &text)
            }
            Open::Call(k) => {
                let c = self.calls.get(&k);
                let (call_id, name, args) = c
                    .map_or((String::new(), String::new(), String::new()), |c| {
                        (c.call_id.clone(), c.name.clone(), c.arguments.clone())
                    });
                self.event(
                    out,
                    "response.function_call_arguments.done",
                    json!({ "item_id": id, "output_index": index, "name": name,
                            "arguments": args }),
                );
                object::function_call_item(&id, "completed", &call_id, &name, &args)
            }
        };
        self.event(
            out,
            "response.output_item.done",
            json!({ "output_index": index, "item": item }),
        );
        self.output.push(item);
    }

    /// The last events of a finished stream, and the finished response object (to store).
    pub fn on_done(&mut self) -> (Vec<Bytes>, Value) {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close(&mut out);
        // Late fragments went into the closed items' state: write their final arguments.
        for c in self.calls.values() {
            if let Some(item) = self.output.get_mut(c.output_index)
                && item.get("type").and_then(Value::as_str) == Some("function_call")
            {
                item["arguments"] = json!(c.arguments);
            }
        }
        let (status, incomplete) = object::status_of(self.finish.as_deref());
        let response = self.frame().object(
            status,
            incomplete,
            self.output.clone(),
            self.usage.as_ref().map(object::usage),
        );
        let kind = if status == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        self.event(&mut out, kind, json!({ "response": response }));
        (out, response)
    }

    /// Takes over after `forwarded` events a provider sent itself (a pass-through stream
    /// that broke): later events continue its numbering under its response id.
    pub fn continue_after(&mut self, forwarded: u64, id: Option<String>) {
        self.sequence = forwarded;
        self.started = forwarded > 0;
        if let Some(id) = id {
            self.id = id;
        }
    }

    /// The last events of a stream that broke: `error`, then `response.failed`.
    pub fn on_broken(&mut self, error: &Error, request_id: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        self.start(&mut out);
        let fields = error.openai_fields(request_id);
        let code = match error.spec().status.as_u16() {
            429 => "rate_limit_exceeded",
            _ => "server_error",
        };
        self.event(
            &mut out,
            "error",
            json!({ "code": fields.code.as_deref().unwrap_or(code), "message": fields.message,
                    "param": fields.param }),
        );
        let mut response = self.frame().object(
            "failed",
            Value::Null,
            self.output.clone(),
            self.usage.as_ref().map(object::usage),
        );
        response["error"] = json!({ "code": code, "message": fields.message });
        self.event(&mut out, "response.failed", json!({ "response": response }));
        out
    }
}

#[cfg(test)]
mod tests;

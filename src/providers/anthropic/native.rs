//! Pass-through: a request that arrived as Anthropic Messages goes to an Anthropic
//! deployment as the caller's own bytes ([`crate::chat::native`]).
//!
//! Only `model` is rewritten (to the deployment's) and `stream` set as the attempt needs,
//! by splicing the body: everything else — unknown fields, `cache_control`, thinking
//! blocks and their signatures, number formatting, key order, whitespace — reaches the
//! provider byte for byte. The caller's `anthropic-version` and `anthropic-beta` replace
//! the deployment's own. The answer is decoded for usage, cost and the log as always,
//! and its bytes kept beside the decoded response (JSON) or each chunk (stream: one
//! chunk per event, events that translate to nothing included) for the surface to
//! return unchanged.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{
    chat::{
        ChatRequest,
        native::{NativeFormat, NativeRequest},
    },
    providers::ProviderError,
};

/// The request's native Messages body, when it has one.
pub fn messages_native(request: &ChatRequest) -> Option<&NativeRequest> {
    request
        .native
        .as_deref()
        .filter(|n| n.format == NativeFormat::AnthropicMessages)
}

#[derive(Deserialize)]
struct Top<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
}

/// The caller's body with `model` set to `model` and, when `stream` is `Some`, the
/// `stream` member set to it (added when absent and true); nothing else changes.
pub fn splice(body: &[u8], model: &str, stream: Option<bool>) -> Result<Vec<u8>, ProviderError> {
    let refuse = |why: String| ProviderError::Untranslatable(format!("anthropic: {why}"));
    let top: Top = serde_json::from_slice(body)
        .map_err(|e| refuse(format!("the Messages body is not a JSON object: {e}")))?;
    let base = body.as_ptr() as usize;
    let span = |raw: &RawValue| {
        let start = raw.get().as_ptr() as usize - base;
        (start, start + raw.get().len())
    };
    let model_json = serde_json::to_string(model)
        .map_err(|e| refuse(format!("encoding the model name: {e}")))?;
    // (start, end, replacement), applied in order of position.
    let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(2);
    let open = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .filter(|i| body[*i] == b'{')
        .ok_or_else(|| refuse("the Messages body is not a JSON object".into()))?;
    match top.model {
        Some(raw) => {
            let (s, e) = span(raw);
            edits.push((s, e, model_json));
        }
        None => edits.push((open + 1, open + 1, format!("\"model\":{model_json},"))),
    }
    match (top.stream, stream) {
        (Some(raw), Some(want)) => {
            let (s, e) = span(raw);
            edits.push((s, e, want.to_string()));
        }
        (None, Some(true)) => edits.push((open + 1, open + 1, "\"stream\":true,".into())),
        _ => {}
    }
    edits.sort_by_key(|(s, _, _)| *s);
    let mut out = Vec::with_capacity(body.len() + model.len() + 16);
    let mut at = 0;
    for (s, e, with) in edits {
        out.extend_from_slice(&body[at..s]);
        out.extend_from_slice(with.as_bytes());
        at = e;
    }
    out.extend_from_slice(&body[at..]);
    Ok(out)
}

/// One SSE event framed as Anthropic writes it: `event: {type}` then one `data:` line.
/// The data is the provider's, unchanged.
pub fn frame(event: Option<&str>, data: &str) -> bytes::Bytes {
    let name = event.unwrap_or_else(|| event_type(data));
    let mut out = Vec::with_capacity(name.len() + data.len() + 16);
    if !name.is_empty() {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    for line in data.split('\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    bytes::Bytes::from(out)
}

/// The `type` of an event's data, for events sent without an `event:` line.
fn event_type(data: &str) -> &str {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<&'a str>,
    }
    serde_json::from_str::<Typed>(data)
        .ok()
        .and_then(|t| t.kind)
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_model_and_stream_change_byte_for_byte() {
        let body = br#"{ "model" : "claude-x",  "max_tokens": 1.0e3, "x_unknown": {"b":1,"a":2},
 "messages": [{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"c2ln\u002B=="}]}], "stream":false }"#;
        let out = splice(body, "upstream-\"m\"", Some(true)).unwrap();
        let expected = br#"{ "model" : "upstream-\"m\"",  "max_tokens": 1.0e3, "x_unknown": {"b":1,"a":2},
 "messages": [{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"c2ln\u002B=="}]}], "stream":true }"#;
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected.to_vec()).unwrap()
        );
    }

    #[test]
    fn a_missing_stream_is_added_only_when_wanted() {
        let body = br#"{"model":"a","messages":[]}"#;
        assert_eq!(
            splice(body, "b", Some(true)).unwrap(),
            br#"{"stream":true,"model":"b","messages":[]}"#
        );
        assert_eq!(
            splice(body, "b", Some(false)).unwrap(),
            br#"{"model":"b","messages":[]}"#
        );
        assert_eq!(
            splice(body, "b", None).unwrap(),
            br#"{"model":"b","messages":[]}"#
        );
        assert!(splice(b"[1]", "b", None).is_err());
    }

    #[test]
    fn events_are_framed_with_their_type() {
        assert_eq!(
            &frame(None, r#"{"type":"ping"}"#)[..],
            b"event: ping\ndata: {\"type\":\"ping\"}\n\n"
        );
        assert_eq!(
            &frame(Some("message_stop"), r#"{"type":"message_stop"}"#)[..],
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        );
    }
}

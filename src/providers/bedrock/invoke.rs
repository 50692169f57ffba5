//! Pass-through of Anthropic Messages requests to Bedrock's Anthropic models through
//! InvokeModel (`POST /model/{modelId}/invoke` and `/invoke-with-response-stream`), whose
//! body is Anthropic's Messages body with three differences (Bedrock user guide,
//! "Anthropic Claude Messages API"): no `model` (it is in the path), no `stream` (the path
//! says it), `anthropic_version: "bedrock-2023-05-31"`, and beta features as an
//! `anthropic_beta` array instead of a header.
//!
//! The body is rebuilt from the caller's members with each value's bytes as sent (thinking
//! signatures, unknown fields, numbers unchanged); only the whitespace between top-level
//! members is not kept. The JSON answer is Anthropic's Message, returned as its bytes; a
//! stream is event-stream frames whose `chunk` events carry one Anthropic event each
//! (`{"bytes": base64}`), decoded and handed to the Anthropic stream translation, each
//! event's JSON kept for the caller.

use std::{borrow::Cow, collections::VecDeque, fmt};

use base64::Engine;
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use serde::{
    Deserialize, Deserializer,
    de::{MapAccess, Visitor},
};
use serde_json::value::RawValue;

use super::eventstream::{Frame, FrameDecoder};
use crate::{
    chat::native::NativeRequest,
    providers::{
        ChunkStream, ProviderError,
        anthropic::AnthropicStream,
        sse::{SseEvent, StreamTranslator},
        upstream::transport_error,
    },
};

/// The `anthropic_version` Bedrock's Anthropic models take.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Whether a Bedrock model id names one of Anthropic's models (`anthropic.claude-…`, or an
/// inference profile such as `us.anthropic.claude-…`).
pub fn is_anthropic_model(model: &str) -> bool {
    model.starts_with("anthropic.") || model.contains(".anthropic.")
}

/// The top-level members of a JSON object, values as raw text.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Members<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Members<'a>, M::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// The InvokeModel body for a Messages request: `model` and `stream` left out,
/// `anthropic_version` set, the caller's `anthropic-beta` values as `anthropic_beta`.
pub fn invoke_body(native: &NativeRequest) -> Result<Vec<u8>, ProviderError> {
    let refuse = |why: String| ProviderError::Untranslatable(format!("bedrock: {why}"));
    let members: Members = serde_json::from_slice(&native.body)
        .map_err(|e| refuse(format!("the Messages body is not a JSON object: {e}")))?;
    let betas: Vec<&str> = native
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() == "anthropic-beta")
        .filter_map(|(_, v)| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .collect();
    let mut out = Vec::with_capacity(native.body.len() + 64);
    out.push(b'{');
    let has = |k: &str| members.0.iter().any(|(key, _)| key == k);
    if !has("anthropic_version") {
        out.extend_from_slice(b"\"anthropic_version\":\"");
        out.extend_from_slice(BEDROCK_ANTHROPIC_VERSION.as_bytes());
        out.extend_from_slice(b"\"");
    }
    if !betas.is_empty() && !has("anthropic_beta") {
        let list = serde_json::to_string(&betas).map_err(|e| refuse(e.to_string()))?;
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"anthropic_beta\":");
        out.extend_from_slice(list.as_bytes());
    }
    for (key, value) in &members.0 {
        if key == "model" || key == "stream" {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        let key = serde_json::to_string(key).map_err(|e| refuse(e.to_string()))?;
        out.extend_from_slice(key.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    Ok(out)
}

/// One `chunk` event's payload.
#[derive(Deserialize)]
struct Chunk {
    bytes: String,
}

/// The Anthropic events in an InvokeModelWithResponseStream answer, translated (and, for
/// the caller, kept) as a passed-through Anthropic stream.
pub fn translate<S>(bytes: S, max_frame: usize) -> ChunkStream
where
    S: futures_util::Stream<Item = Result<Bytes, crate::providers::client::Error>> + Send + 'static,
{
    struct State<S> {
        bytes: std::pin::Pin<Box<S>>,
        frames: FrameDecoder,
        translator: AnthropicStream,
        pending: VecDeque<Result<crate::chat::ChatChunk, ProviderError>>,
        finished: bool,
    }
    let state = State {
        bytes: Box::pin(bytes),
        frames: FrameDecoder::new(max_frame),
        translator: AnthropicStream::passing_through(true),
        pending: VecDeque::new(),
        finished: false,
    };
    Box::pin(stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                return Some((item, st));
            }
            if st.finished || st.translator.is_ended() {
                return None;
            }
            match st.bytes.next().await {
                Some(Ok(b)) => {
                    for frame in st.frames.push(&b) {
                        if st.translator.is_ended() {
                            break;
                        }
                        match frame.and_then(|f| on_frame(&f, &mut st.translator)) {
                            Ok(items) => st.pending.extend(items),
                            Err(e) => {
                                st.finished = true;
                                st.pending.push_back(Err(e));
                            }
                        }
                    }
                }
                Some(Err(e)) => {
                    st.finished = true;
                    return Some((Err(transport_error(e)), st));
                }
                None => {
                    st.finished = true;
                    if st.frames.has_partial() {
                        return Some((
                            Err(ProviderError::Reset("the stream ended mid-frame".into())),
                            st,
                        ));
                    }
                    match st.translator.on_eof() {
                        Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                        Err(e) => return Some((Err(e), st)),
                    }
                }
            }
        }
    }))
}

/// One frame: a `chunk` event is one Anthropic event; an exception ends the stream.
fn on_frame(
    frame: &Frame,
    translator: &mut AnthropicStream,
) -> Result<Vec<Result<crate::chat::ChatChunk, ProviderError>>, ProviderError> {
    if frame.header(":message-type") == Some("exception") {
        let message = serde_json::from_slice::<serde_json::Value>(&frame.payload)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "the provider reported an error".into());
        return Err(ProviderError::InStream {
            message,
            kind: frame.header(":exception-type").map(str::to_owned),
            code: None,
        });
    }
    if frame.header(":event-type") != Some("chunk") {
        return Ok(Vec::new());
    }
    let chunk: Chunk = serde_json::from_slice(&frame.payload)
        .map_err(|e| ProviderError::Malformed(format!("a chunk event: {e}")))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(chunk.bytes.as_bytes())
        .map_err(|e| ProviderError::Malformed(format!("a chunk's bytes: {e}")))?;
    let data = String::from_utf8(data)
        .map_err(|e| ProviderError::Malformed(format!("a chunk's bytes: {e}")))?;
    Ok(translator.on_event(SseEvent { event: None, data }))
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;
    use crate::chat::native::NativeFormat;

    fn native(body: &str, beta: Option<&str>) -> NativeRequest {
        NativeRequest {
            format: NativeFormat::AnthropicMessages,
            body: Bytes::from(body.to_owned()),
            headers: beta
                .map(|b| {
                    (
                        HeaderName::from_static("anthropic-beta"),
                        HeaderValue::from_str(b).unwrap(),
                    )
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn the_invoke_body_drops_model_and_stream_and_keeps_every_value_as_sent() {
        let body = r#"{ "model": "claude", "stream": true, "max_tokens": 1.0e3,
            "messages": [{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"a\/b+=="}]}],
            "x_new": {"b": 1, "a": 2} }"#;
        let out = invoke_body(&native(body, Some("a-1, b-2"))).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"anthropic_version":"bedrock-2023-05-31","anthropic_beta":["a-1","b-2"],"max_tokens":1.0e3,"messages":[{"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"a\/b+=="}]}],"x_new":{"b": 1, "a": 2}}"#
        );
    }

    #[test]
    fn anthropic_models_are_recognised_by_id() {
        assert!(is_anthropic_model(
            "anthropic.claude-3-5-haiku-20241022-v1:0"
        ));
        assert!(is_anthropic_model(
            "us.anthropic.claude-sonnet-4-20250514-v1:0"
        ));
        assert!(!is_anthropic_model("amazon.nova-pro-v1:0"));
        assert!(!is_anthropic_model("meta.llama3-70b-instruct-v1:0"));
    }

    #[test]
    fn chunk_frames_become_passed_through_anthropic_events() {
        let event = r#"{"type":"message_start","message":{"id":"msg_bdrk_1","model":"m","usage":{"input_tokens":3}}}"#;
        let payload = format!(
            "{{\"bytes\":\"{}\",\"p\":\"abc\"}}",
            base64::engine::general_purpose::STANDARD.encode(event)
        );
        let frame = Frame {
            headers: vec![
                (":event-type".into(), "chunk".into()),
                (":message-type".into(), "event".into()),
            ],
            payload: Bytes::from(payload),
        };
        let mut t = AnthropicStream::passing_through(true);
        let items = on_frame(&frame, &mut t).unwrap();
        let chunk = items.into_iter().next().unwrap().unwrap();
        assert_eq!(
            chunk.native.unwrap(),
            Bytes::from(format!("event: message_start\ndata: {event}\n\n"))
        );
    }
}

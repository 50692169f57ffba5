//! The bounds on what a provider can make the gateway hold: indexes it names, the bytes of
//! one stream event or frame, and the bytes of a whole JSON answer.
//!
//! Past a bound the attempt fails as [`ProviderError::Malformed`], which failover retries
//! on the next deployment: a provider that sends this much is broken, not busy.

use super::ProviderError;
use crate::chat::ChatChunk;

/// The default `[[providers]] max_response_bytes`: 32 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// The highest choice, candidate, content-block or tool-call index a provider may send.
/// OpenAI allows `n` up to 128 and 128 tools a request; a few thousand blocks in one turn
/// leaves room for any real answer, while state kept per index stays a few KiB.
pub const MAX_INDEX: u32 = 4095;

/// `value` when it is at most [`MAX_INDEX`]; else the error naming `what` and the cap.
pub fn index(what: &str, value: u32) -> Result<u32, ProviderError> {
    if value <= MAX_INDEX {
        Ok(value)
    } else {
        Err(ProviderError::Malformed(format!(
            "{what} {value} is past the gateway's limit of {MAX_INDEX}"
        )))
    }
}

/// A count of things (tool calls, blocks) kept per stream, checked like an index: the next
/// one would get index `count`.
pub fn room_for(what: &str, count: usize) -> Result<u32, ProviderError> {
    index(what, u32::try_from(count).unwrap_or(u32::MAX))
}

/// Checks the indexes of a chunk passed through as the provider sent it (the OpenAI wire
/// format): each choice's `index` and each tool call's `index`.
pub fn check_chunk(chunk: &ChatChunk) -> Result<(), ProviderError> {
    for choice in &chunk.choices {
        index("choice index", choice.index)?;
        for call in choice.delta.tool_calls.iter().flatten() {
            index("tool call index", call.index)?;
        }
    }
    Ok(())
}

/// The error for a body or event past `limit` bytes.
pub fn too_large(what: &str, limit: usize) -> ProviderError {
    ProviderError::Malformed(format!(
        "{what} is larger than the provider's max_response_bytes ({limit} bytes)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_up_to_the_cap_pass_and_past_it_are_malformed() {
        assert_eq!(index("candidate index", MAX_INDEX).ok(), Some(MAX_INDEX));
        let err = index("candidate index", 4_000_000_000).unwrap_err();
        assert_eq!(err.label(), "malformed");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("4000000000"), "{err}");
        assert!(err.to_string().contains("4095"), "{err}");
    }
}

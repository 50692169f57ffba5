//! Property-test drivers shared by the providers' tests: random splits of a recorded
//! stream, random bytes, and recorded events replayed in random order with random indexes.

use proptest::prelude::*;
use serde_json::Value;

use super::{
    ProviderError, limits,
    sse::{SseDecoder, StreamTranslator},
};
use crate::chat::ChatChunk;

/// Cases per property: enough to find split and index bugs, few enough that every
/// property runs in well under a second in a debug build.
pub fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Up to eight cut points in a wire of `len` bytes.
pub fn cuts(len: usize) -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..=len, 0..8)
}

/// `wire` cut at `cuts` (in any order, repeats allowed) into the reads a socket might give.
pub fn pieces<'a>(wire: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(wire.len())).collect();
    cuts.sort_unstable();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts.into_iter().chain([wire.len()]) {
        out.push(&wire[at..c]);
        at = c;
    }
    out
}

/// A translation result in comparable form: chunks as JSON without the wall-clock
/// `created`, errors as their text.
pub type Outcome = Vec<Result<Value, String>>;

fn comparable(item: Result<ChatChunk, ProviderError>) -> Result<Value, String> {
    match item {
        Ok(chunk) => {
            limits::check_chunk(&chunk).map_err(|e| format!("unchecked index: {e}"))?;
            let mut v = serde_json::to_value(&chunk).map_err(|e| e.to_string())?;
            v["created"] = Value::Null;
            Ok(v)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `translator` over `reads` as the stream wrapper does, with events of at most
/// `max_event_bytes`; checks the SSE buffer never holds more than that between reads.
pub fn translate<T: StreamTranslator>(
    mut translator: T,
    reads: &[&[u8]],
    max_event_bytes: usize,
) -> Result<Outcome, TestCaseError> {
    let mut sse = SseDecoder::new(max_event_bytes);
    let mut out = Vec::new();
    let mut finished = false;
    for read in reads {
        if finished || translator.is_ended() {
            break;
        }
        for event in sse.push(read) {
            prop_assert!(sse.buffered() <= max_event_bytes);
            if translator.is_ended() {
                break;
            }
            match event {
                Ok(event) => {
                    prop_assert!(event.data.len() <= max_event_bytes);
                    out.extend(translator.on_event(event).into_iter().map(comparable));
                }
                Err(e) => {
                    out.push(Err(e.to_string()));
                    finished = true;
                }
            }
        }
    }
    if !finished && !translator.is_ended() {
        match translator.on_eof() {
            Ok(chunks) => out.extend(chunks.into_iter().map(Ok).map(comparable)),
            Err(e) => out.push(Err(e.to_string())),
        }
    }
    for item in &out {
        if let Err(e) = item {
            prop_assert!(!e.starts_with("unchecked index"), "{e}");
        }
    }
    Ok(out)
}

/// Valid input split anywhere translates to the same chunks as read whole. Ids a
/// translator draws at random (`fastrand`, thread-local) are drawn from the same seed.
pub fn same_chunks_however_split<T: StreamTranslator>(
    new: impl Fn() -> T,
    wire: &[u8],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    fastrand::seed(7);
    let whole = translate(new(), &[wire], limits::DEFAULT_MAX_RESPONSE_BYTES)?;
    prop_assert!(
        whole.iter().all(Result::is_ok),
        "the fixture is valid: {whole:?}"
    );
    fastrand::seed(7);
    let split = translate(
        new(),
        &pieces(wire, cuts),
        limits::DEFAULT_MAX_RESPONSE_BYTES,
    )?;
    prop_assert_eq!(whole, split);
    Ok(())
}

/// The `data` of each event in a recorded SSE wire.
pub fn recorded_events(wire: &str) -> Vec<String> {
    let mut sse = SseDecoder::default();
    sse.push(wire.as_bytes())
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.data)
        .collect()
}

/// Picks of recorded events, each with the indexes to write into it.
pub fn event_soup(events: usize) -> impl Strategy<Value = Vec<(usize, Vec<u32>)>> {
    let index = prop_oneof![0..4u32, 4090..4100u32, any::<u32>()];
    proptest::collection::vec((0..events, proptest::collection::vec(index, 4)), 0..24)
}

/// Writes `indexes` (cycling) over every number whose key names an index, at any depth.
pub fn rewrite_indexes(v: &mut Value, indexes: &[u32], next: &mut usize) {
    match v {
        Value::Object(map) => {
            for (k, field) in map.iter_mut() {
                if k.to_ascii_lowercase().ends_with("index") && field.is_number() {
                    if let Some(&i) = indexes.get(*next % indexes.len().max(1)) {
                        *field = i.into();
                        *next += 1;
                    }
                } else {
                    rewrite_indexes(field, indexes, next);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_indexes(item, indexes, next);
            }
        }
        _ => {}
    }
}

/// Recorded events replayed in a random order, repeated, with random indexes: the
/// translator answers with chunks whose indexes are within the limit, or an error — never
/// a panic or an allocation sized by what the provider said.
pub fn any_event_order_and_index_is_safe<T: StreamTranslator>(
    new: impl Fn() -> T,
    events: &[String],
    soup: &[(usize, Vec<u32>)],
) -> Result<(), TestCaseError> {
    let mut wire = String::new();
    for (pick, indexes) in soup {
        let Some(data) = events.get(*pick) else {
            continue;
        };
        let mut v: Value = match serde_json::from_str(data) {
            Ok(v) => v,
            Err(_) => Value::String(data.clone()),
        };
        rewrite_indexes(&mut v, indexes, &mut 0);
        let data = match v {
            Value::String(s) => s,
            v => v.to_string(),
        };
        wire.push_str(&format!("data: {data}\n\n"));
    }
    translate(
        new(),
        &[wire.as_bytes()],
        limits::DEFAULT_MAX_RESPONSE_BYTES,
    )?;
    Ok(())
}

/// Random bytes, read in random pieces through a small event limit: no panic, and the
/// buffers stay within the limit (checked in [`translate`]).
pub fn random_bytes_are_harmless<T: StreamTranslator>(
    new: impl Fn() -> T,
    bytes: &[u8],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    translate(new(), &pieces(bytes, cuts), 256)?;
    Ok(())
}

/// Bytes that look like SSE more often than uniform noise does.
pub fn sse_noise() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"data:".to_vec()),
        Just(b"event: x".to_vec()),
        Just(b": c".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b"{\"type\":".to_vec()),
        Just(b"[DONE]".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    proptest::collection::vec(token, 0..64).prop_map(|t| t.concat())
}

/// The three properties every SSE stream translator pins, as a test module: `$new` builds
/// the translator, `$recorded` is a recorded stream of the format (an `&str`).
macro_rules! translator_properties {
    ($new:expr, $recorded:expr) => {
        mod properties {
            use proptest::prelude::*;

            use super::*;
            use crate::providers::fuzz;

            proptest! {
                #![proptest_config(fuzz::config())]

                #[test]
                fn a_recorded_stream_split_anywhere_gives_the_same_chunks(
                    cuts in fuzz::cuts($recorded.len()),
                ) {
                    fuzz::same_chunks_however_split($new, $recorded.as_bytes(), &cuts)?;
                }

                #[test]
                fn random_bytes_never_panic_nor_outgrow_the_event_limit(
                    bytes in fuzz::sse_noise(),
                    cuts in fuzz::cuts(1024),
                ) {
                    fuzz::random_bytes_are_harmless($new, &bytes, &cuts)?;
                }

                #[test]
                fn recorded_events_in_any_order_with_any_index_are_chunks_or_errors(
                    soup in fuzz::event_soup(fuzz::recorded_events($recorded).len()),
                ) {
                    let events = fuzz::recorded_events($recorded);
                    fuzz::any_event_order_and_index_is_safe($new, &events, &soup)?;
                }
            }
        }
    };
}
pub(crate) use translator_properties;

//! SSE decoding across arbitrary read boundaries.

use super::*;

fn data(events: &[Result<SseEvent, ProviderError>]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.as_ref().unwrap().data.as_str())
        .collect()
}

#[test]
fn events_split_across_reads_are_reassembled() {
    let mut d = SseDecoder::default();
    assert!(d.push(b"data: {\"a\":").is_empty());
    assert!(d.push(b"1}\n").is_empty());
    let evs = d.push(b"\ndata: [DONE]\n\n");
    assert_eq!(data(&evs), vec!["{\"a\":1}", "[DONE]"]);
    assert!(!d.has_partial());
}

#[test]
fn crlf_and_cr_line_endings_are_accepted() {
    let mut d = SseDecoder::default();
    let mut evs = d.push(b"event: ping\r\ndata: x\r");
    evs.extend(d.push(b"\n\r\ndata: y\r\r\n"));
    assert_eq!(data(&evs), vec!["x", "y"]);
    assert_eq!(evs[0].as_ref().unwrap().event.as_deref(), Some("ping"));
    assert_eq!(evs[1].as_ref().unwrap().event, None);
}

#[test]
fn multiline_data_is_joined_and_comments_skipped() {
    let mut d = SseDecoder::default();
    let evs = d.push(b": keep-alive\n\ndata: a\ndata:b\n\n");
    assert_eq!(data(&evs), vec!["a\nb"]);
}

#[test]
fn unfinished_event_is_reported_as_partial() {
    let mut d = SseDecoder::default();
    assert!(d.push(b"data: {\"cut\"\n").is_empty());
    assert!(d.has_partial());
}

#[test]
fn a_line_past_the_limit_without_a_newline_is_an_error_not_a_buffer() {
    let mut d = SseDecoder::new(64);
    assert!(d.push(&[b'x'; 64]).is_empty());
    let out = d.push(b"x");
    assert_eq!(out.len(), 1);
    let err = out[0].as_ref().unwrap_err();
    assert_eq!(err.label(), "malformed");
    assert!(
        err.to_string().contains("max_response_bytes (64 bytes)"),
        "{err}"
    );
    assert_eq!(d.buffered(), 0);
    // The decoder stays failed: nothing after the error is an event.
    assert!(d.push(b"\n\ndata: late\n\n")[0].is_err());
}

#[test]
fn one_huge_read_is_refused_without_being_held_whole() {
    let mut d = SseDecoder::new(1024);
    let mut wire = b"data: ok\n\ndata: ".to_vec();
    wire.extend(std::iter::repeat_n(b'x', 10 * 1024 * 1024));
    let out = d.push(&wire);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].as_ref().unwrap().data, "ok");
    assert!(out[1].is_err());
    assert!(d.buffered() <= 1024);
}

#[test]
fn an_event_past_the_limit_in_one_read_is_an_error() {
    let mut d = SseDecoder::new(16);
    let out = d.push(b"data: 0123456789abcdefXYZ\n\n");
    assert!(out[0].is_err(), "{out:?}");
    let mut d = SseDecoder::new(16);
    let out = d.push(b"data: 0123456789\ndata: abcdefXYZ\n\n");
    assert!(out[0].is_err(), "{out:?}");
}

#[test]
fn an_event_exactly_at_the_limit_passes() {
    let mut d = SseDecoder::new(16);
    let out = d.push(b"data:0123456789\n\n");
    assert_eq!(data(&out), vec!["0123456789"]);
}

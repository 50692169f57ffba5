//! SSE decoding across arbitrary read boundaries.

use super::*;

fn data(events: &[SseEvent]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
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
    assert_eq!(evs[0].event.as_deref(), Some("ping"));
    assert_eq!(evs[1].event, None);
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

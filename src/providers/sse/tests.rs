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
fn invalid_bytes_replaced_in_data_count_against_the_limit() {
    // Found by the property test below: seven invalid bytes (seven raw bytes within a
    // 19-byte limit) become seven three-byte U+FFFD, 21 bytes of data.
    let mut d = SseDecoder::new(19);
    let evs = d.push(b"data: \x80\x80\x80\x80\x80\x80\x80\n\n");
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].as_ref().unwrap_err().label(), "malformed");
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

#[test]
fn an_event_type_without_data_does_not_leak_into_the_next_event() {
    let mut d = SseDecoder::default();
    let evs = d.push(b"event: ping\n\ndata: x\n\n");
    assert_eq!(data(&evs), vec!["x"]);
    assert_eq!(evs[0].as_ref().unwrap().event, None);
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::providers::fuzz;

    /// One generated event: its type, its data lines (none: dropped), and whether a
    /// comment line comes first.
    #[derive(Debug, Clone)]
    struct Generated {
        name: Option<String>,
        lines: Vec<String>,
        comment: bool,
    }

    fn generated() -> impl Strategy<Value = Generated> {
        (
            proptest::option::of("[a-z_]{1,12}"),
            proptest::collection::vec("[^\r\n]{0,24}", 0..4),
            any::<bool>(),
        )
            .prop_map(|(name, lines, comment)| Generated {
                name,
                lines,
                comment,
            })
    }

    fn wire(events: &[Generated], crlf: bool) -> Vec<u8> {
        let eol = if crlf { "\r\n" } else { "\n" };
        let mut out = String::new();
        for e in events {
            if e.comment {
                out.push_str(&format!(": keep-alive{eol}"));
            }
            if let Some(name) = &e.name {
                out.push_str(&format!("event: {name}{eol}"));
            }
            for line in &e.lines {
                out.push_str(&format!("data: {line}{eol}"));
            }
            out.push_str(eol);
        }
        out.into_bytes()
    }

    fn expected(events: &[Generated]) -> Vec<SseEvent> {
        events
            .iter()
            .filter(|e| !e.lines.is_empty())
            .map(|e| SseEvent {
                event: e.name.clone(),
                data: e.lines.join("\n"),
            })
            .collect()
    }

    fn decode(reads: &[&[u8]], limit: usize) -> Result<Vec<SseEvent>, TestCaseError> {
        let mut d = SseDecoder::new(limit);
        let mut out = Vec::new();
        for read in reads {
            for ev in d.push(read) {
                prop_assert!(d.buffered() <= limit);
                match ev {
                    Ok(ev) => {
                        prop_assert!(ev.data.len() <= limit);
                        out.push(ev);
                    }
                    Err(e) => return Err(TestCaseError::fail(e.to_string())),
                }
            }
        }
        Ok(out)
    }

    proptest! {
        #![proptest_config(fuzz::config())]

        #[test]
        fn valid_sse_split_anywhere_decodes_to_the_events_written(
            events in proptest::collection::vec(generated(), 0..12),
            crlf in any::<bool>(),
            cuts in fuzz::cuts(2048),
        ) {
            let wire = wire(&events, crlf);
            let whole = decode(&[&wire], 1 << 20)?;
            prop_assert_eq!(&whole, &expected(&events));
            let split = decode(&fuzz::pieces(&wire, &cuts), 1 << 20)?;
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn random_bytes_split_anywhere_decode_the_same_as_whole(
            bytes in fuzz::sse_noise(),
            cuts in fuzz::cuts(1024),
        ) {
            let whole = decode(&[&bytes], 1 << 20)?;
            let split = decode(&fuzz::pieces(&bytes, &cuts), 1 << 20)?;
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn random_bytes_never_make_the_decoder_hold_more_than_its_limit(
            bytes in prop_oneof![
                fuzz::sse_noise(),
                proptest::collection::vec(any::<u8>(), 0..2048),
            ],
            cuts in fuzz::cuts(2048),
            limit in 1usize..300,
        ) {
            let mut d = SseDecoder::new(limit);
            let mut failed = false;
            for read in fuzz::pieces(&bytes, &cuts) {
                for ev in d.push(read) {
                    if failed {
                        prop_assert!(ev.is_err(), "no event follows an error");
                        continue;
                    }
                    match ev {
                        Ok(ev) => prop_assert!(ev.data.len() <= limit),
                        Err(e) => {
                            prop_assert_eq!(e.label(), "malformed");
                            failed = true;
                        }
                    }
                }
                prop_assert!(d.buffered() <= limit, "{} > {limit}", d.buffered());
            }
        }
    }
}

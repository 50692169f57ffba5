//! Event-stream framing on a published frame, across arbitrary splits, and on damage.

use super::*;

/// A frame from awslabs/aws-c-event-stream, tests/message_deserializer_test.c
/// (`test_outgoing_application_one_compressed_header_pair_valid`): one string header
/// `content-type: application/json`, payload `{'foo':'bar'}`, prelude CRC 0x07FD8396,
/// message CRC 0x8D9C08B1.
const PUBLISHED: &[u8] = &[
    0x00, 0x00, 0x00, 0x3D, 0x00, 0x00, 0x00, 0x20, 0x07, 0xFD, 0x83, 0x96, 0x0C, b'c', b'o', b'n',
    b't', b'e', b'n', b't', b'-', b't', b'y', b'p', b'e', 0x07, 0x00, 0x10, b'a', b'p', b'p', b'l',
    b'i', b'c', b'a', b't', b'i', b'o', b'n', b'/', b'j', b's', b'o', b'n', 0x7b, 0x27, 0x66, 0x6f,
    0x6f, 0x27, 0x3a, 0x27, 0x62, 0x61, 0x72, 0x27, 0x7d, 0x8D, 0x9C, 0x08, 0xB1,
];

fn published() -> Frame {
    Frame {
        headers: vec![("content-type".into(), "application/json".into())],
        payload: Bytes::from_static(b"{'foo':'bar'}"),
    }
}

/// Feeds `wire` in pieces of `split` bytes, up to and including the first error.
fn feed(wire: &[u8], split: usize) -> (Vec<Result<Frame, ProviderError>>, FrameDecoder) {
    let mut d = FrameDecoder::default();
    let mut out = Vec::new();
    for piece in wire.chunks(split) {
        for item in d.push(piece) {
            let failed = item.is_err();
            out.push(item);
            if failed {
                return (out, d);
            }
        }
    }
    (out, d)
}

#[test]
fn the_published_frame_decodes() {
    let (frames, d) = feed(PUBLISHED, PUBLISHED.len());
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].as_ref().unwrap(), &published());
    assert_eq!(
        frames[0].as_ref().unwrap().header("content-type"),
        Some("application/json")
    );
    assert!(!d.has_partial());
}

#[test]
fn the_encoder_writes_the_published_bytes() {
    let bytes = encode(&[("content-type", "application/json")], b"{'foo':'bar'}");
    assert_eq!(&bytes[..], PUBLISHED);
}

#[test]
fn frames_split_anywhere_are_reassembled() {
    let mut wire = Vec::new();
    for i in 0..3 {
        wire.extend_from_slice(PUBLISHED);
        wire.extend_from_slice(&encode(
            &[
                (":event-type", "contentBlockDelta"),
                (":message-type", "event"),
            ],
            format!("{{\"n\":{i}}}").as_bytes(),
        ));
    }
    wire.extend_from_slice(&encode(&[], b""));
    for split in [1, 2, 3, 7, 12, 13, 61, 64, 100, wire.len()] {
        let (frames, d) = feed(&wire, split);
        let frames: Vec<Frame> = frames.into_iter().map(Result::unwrap).collect();
        assert_eq!(frames.len(), 7, "split {split}");
        assert_eq!(frames[0], published());
        assert_eq!(frames[1].header(":event-type"), Some("contentBlockDelta"));
        assert_eq!(&frames[5].payload[..], b"{\"n\":2}");
        assert!(frames[6].headers.is_empty() && frames[6].payload.is_empty());
        assert!(!d.has_partial());
    }
}

#[test]
fn a_partial_frame_is_held_until_complete() {
    let mut d = FrameDecoder::default();
    assert!(d.push(&PUBLISHED[..11]).is_empty());
    assert!(d.push(&PUBLISHED[11..60]).is_empty());
    assert!(d.has_partial());
    assert_eq!(d.push(&PUBLISHED[60..]).len(), 1);
}

#[test]
fn a_bad_message_checksum_is_malformed_after_the_good_frames() {
    let mut wire = PUBLISHED.to_vec();
    let mut bad = PUBLISHED.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xFF;
    wire.extend_from_slice(&bad);
    wire.extend_from_slice(PUBLISHED);
    for split in [1, 5, wire.len()] {
        let (items, mut d) = feed(&wire, split);
        assert!(items[0].is_ok(), "split {split}");
        assert!(
            matches!(&items[1], Err(ProviderError::Malformed(m)) if m.contains("message checksum")),
            "split {split}: {items:?}"
        );
        assert_eq!(items.len(), 2, "nothing after the damage: split {split}");
        assert!(d.push(PUBLISHED)[0].is_err(), "the decoder stays stopped");
    }
}

#[test]
fn a_bad_prelude_checksum_is_caught_before_the_body_arrives() {
    let mut bad = PUBLISHED.to_vec();
    bad[9] ^= 0x01;
    let mut d = FrameDecoder::default();
    let items = d.push(&bad[..12]);
    assert!(matches!(&items[..], [Err(ProviderError::Malformed(m))] if m.contains("prelude")));
}

#[test]
fn impossible_lengths_and_header_types_are_malformed() {
    // SSE text where a frame should be: the "length" is 1.6 GB.
    let (items, _) = feed(b"data: {\"id\": \"broken\"}\n\n", 4);
    assert!(matches!(&items[..], [Err(ProviderError::Malformed(_))]));
    // A frame whose headers claim more than the frame holds, with valid checksums.
    let mut frame = vec![0, 0, 0, 16, 0, 0, 0, 9];
    frame.extend_from_slice(&crc32fast::hash(&frame).to_be_bytes());
    let crc = crc32fast::hash(&frame);
    frame.extend_from_slice(&crc.to_be_bytes());
    let (items, _) = feed(&frame, 3);
    assert!(matches!(&items[..], [Err(ProviderError::Malformed(m))] if m.contains("lengths")));
    // A header of unknown type 12.
    let mut head = vec![1, b'x', 12];
    head.extend_from_slice(b"zz");
    let wire = frame_with_raw_headers(&head, b"{}");
    let (items, _) = feed(&wire, 1);
    assert!(matches!(&items[..], [Err(ProviderError::Malformed(m))] if m.contains("type 12")));
}

#[test]
fn headers_of_every_type_are_read_and_only_strings_kept() {
    let mut head = Vec::new();
    let mut put = |name: &str, kind: u8, value: &[u8]| {
        head.push(name.len() as u8);
        head.extend_from_slice(name.as_bytes());
        head.push(kind);
        head.extend_from_slice(value);
    };
    put("t", 0, &[]);
    put("f", 1, &[]);
    put("b", 2, &[7]);
    put("s", 3, &[0, 7]);
    put("i", 4, &[0, 0, 0, 7]);
    put("l", 5, &[0; 8]);
    put("a", 6, &[0, 2, 0xAB, 0xCD]);
    put(":event-type", 7, b"\x00\x0bmessageStop");
    put("ts", 8, &[0; 8]);
    put("u", 9, &[0; 16]);
    let wire = frame_with_raw_headers(&head, b"{\"stopReason\":\"end_turn\"}");
    let (items, _) = feed(&wire, 2);
    let frame = items.into_iter().next().unwrap().unwrap();
    assert_eq!(
        frame.headers,
        vec![(":event-type".to_owned(), "messageStop".to_owned())]
    );
    assert_eq!(&frame.payload[..], b"{\"stopReason\":\"end_turn\"}");
}

fn frame_with_raw_headers(head: &[u8], payload: &[u8]) -> Vec<u8> {
    let total = (12 + head.len() + payload.len() + 4) as u32;
    let mut out = total.to_be_bytes().to_vec();
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out.extend_from_slice(head);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[test]
fn a_frame_past_the_limit_is_refused_at_its_prelude() {
    let big = encode(&[(":message-type", "event")], &[b'x'; 4096]);
    let mut d = FrameDecoder::new(1024);
    let items = d.push(&big[..PRELUDE]);
    assert!(
        matches!(&items[..], [Err(ProviderError::Malformed(m))]
            if m.contains("4") && m.contains("max_response_bytes (1024 bytes)")),
        "{items:?}"
    );
    assert_eq!(d.buffered(), 0, "nothing of the frame is kept");
    // The same frame passes a decoder whose limit it fits.
    let mut d = FrameDecoder::new(big.len());
    assert!(matches!(&d.push(&big)[..], [Ok(_)]));
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::providers::fuzz;

    /// A frame to encode: its string headers and payload.
    type Plain = (Vec<(String, String)>, Vec<u8>);

    /// Frames with string headers and any payload.
    fn frames() -> impl Strategy<Value = Vec<Plain>> {
        let header = ("[a-z:-]{1,16}", "[^\u{0}]{0,24}");
        let frame = (
            proptest::collection::vec(header, 0..4),
            proptest::collection::vec(any::<u8>(), 0..96),
        );
        proptest::collection::vec(frame, 0..6)
    }

    fn wire(frames: &[Plain]) -> Vec<u8> {
        let mut out = Vec::new();
        for (headers, payload) in frames {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            out.extend_from_slice(&encode(&headers, payload));
        }
        out
    }

    fn decode(reads: &[&[u8]], limit: usize) -> Result<Vec<Result<Frame, String>>, TestCaseError> {
        let mut d = FrameDecoder::new(limit);
        let mut out = Vec::new();
        for read in reads {
            out.extend(
                d.push(read)
                    .into_iter()
                    .map(|f| f.map_err(|e| e.to_string())),
            );
            prop_assert!(d.buffered() <= limit, "{} > {limit}", d.buffered());
        }
        Ok(out)
    }

    proptest! {
        #![proptest_config(fuzz::config())]

        #[test]
        fn frames_split_anywhere_decode_to_the_frames_encoded(
            frames in frames(),
            cuts in fuzz::cuts(1024),
        ) {
            let wire = wire(&frames);
            let whole = decode(&[&wire], MAX_FRAME)?;
            let expected: Vec<Result<Frame, String>> = frames
                .iter()
                .map(|(headers, payload)| {
                    Ok(Frame {
                        headers: headers.clone(),
                        payload: Bytes::from(payload.clone()),
                    })
                })
                .collect();
            prop_assert_eq!(&whole, &expected);
            let split = decode(&fuzz::pieces(&wire, &cuts), MAX_FRAME)?;
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn a_damaged_byte_is_caught_after_the_frames_before_it(
            frames in frames().prop_filter("some bytes", |f| !f.is_empty()),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
            cuts in fuzz::cuts(1024),
        ) {
            let mut wire = wire(&frames);
            let at = at.index(wire.len());
            wire[at] ^= flip;
            // The frame holding the damaged byte, and how many come whole before it.
            let mut end = 0;
            let mut intact = 0;
            for (headers, payload) in &frames {
                let pairs: Vec<(&str, &str)> =
                    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
                end += encode(&pairs, payload).len();
                if end > at {
                    break;
                }
                intact += 1;
            }
            let out = decode(&fuzz::pieces(&wire, &cuts), MAX_FRAME)?;
            // The frames before the damage arrive; CRC32 catches every single-byte error,
            // so the damaged frame and everything after it are errors, never frames.
            prop_assert!(out.len() > intact, "{out:?}");
            prop_assert!(out[..intact].iter().all(Result::is_ok), "{out:?}");
            prop_assert!(out[intact..].iter().all(Result::is_err), "{out:?}");
        }

        #[test]
        fn random_bytes_never_make_the_decoder_hold_more_than_its_limit(
            bytes in proptest::collection::vec(any::<u8>(), 0..4096),
            cuts in fuzz::cuts(4096),
            limit in 16usize..2048,
        ) {
            let out = decode(&fuzz::pieces(&bytes, &cuts), limit)?;
            let first_error = out.iter().position(Result::is_err).unwrap_or(out.len());
            prop_assert!(out[first_error..].iter().all(Result::is_err), "{out:?}");
        }
    }
}

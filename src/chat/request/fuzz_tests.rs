//! Property tests of the REST request parser (`api::openai::chat::parse_request`) over
//! the canonical request: hostile bytes are a 400, never a panic; valid requests parse the
//! same however they are laid out.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{api::openai::chat::parse_request, error::Error, providers::fuzz};

/// Bytes that are JSON-shaped more often than uniform noise is.
fn json_noise() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"\"model\":".to_vec()),
        Just(b"\"messages\":".to_vec()),
        Just(b"\"role\":\"user\"".to_vec()),
        Just(b"\"content\":".to_vec()),
        Just(b",".to_vec()),
        Just(b"1e400".to_vec()),
        Just(b"\"\\ud800\"".to_vec()),
        Just(b"null".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(token, 0..48).prop_map(|t| t.concat())
}

fn message() -> impl Strategy<Value = Value> {
    let role = prop_oneof![
        Just("system"),
        Just("user"),
        Just("assistant"),
        Just("developer")
    ];
    let content = prop_oneof![
        ".{0,40}".prop_map(Value::from),
        ".{0,20}".prop_map(|t| json!([{"type": "text", "text": t}])),
    ];
    (role, content).prop_map(|(role, content)| json!({"role": role, "content": content}))
}

fn request() -> impl Strategy<Value = Value> {
    (
        "[a-z0-9.-]{1,20}",
        proptest::collection::vec(message(), 1..5),
        proptest::option::of(0.0f64..2.0),
        proptest::option::of(1u32..100_000),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::collection::vec("[a-z]{1,5}", 0..4)),
        proptest::option::of(".{0,16}"),
    )
        .prop_map(
            |(model, messages, temperature, max_tokens, stream, stop, user)| {
                let mut v = json!({"model": model, "messages": messages});
                let put = |v: &mut Value, k: &str, x: Option<Value>| {
                    if let Some(x) = x {
                        v[k] = x;
                    }
                };
                put(&mut v, "temperature", temperature.map(Value::from));
                put(&mut v, "max_tokens", max_tokens.map(Value::from));
                put(&mut v, "stream", stream.map(Value::from));
                put(&mut v, "stop", stop.map(Value::from));
                put(&mut v, "user", user.map(Value::from));
                // A field the gateway does not know travels through untouched.
                v["x_vendor"] = json!({"k": [1, 2, 3]});
                v
            },
        )
}

/// What a parsed request says, in one comparable value (model and stream are not
/// serialized from the canonical request, so they are added here).
fn said(bytes: &[u8]) -> Result<Value, TestCaseError> {
    let req = parse_request(bytes).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
    let mut v = serde_json::to_value(&req).map_err(|e| TestCaseError::fail(e.to_string()))?;
    v["model"] = req.model.clone().into();
    v["stream"] = req.stream.into();
    Ok(v)
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn random_bytes_are_a_bad_request_never_a_panic(
        bytes in prop_oneof![json_noise(), proptest::collection::vec(any::<u8>(), 0..512)],
    ) {
        if let Err(e) = parse_request(&bytes) {
            prop_assert!(matches!(e, Error::BadRequest { .. }), "{e:?}");
        }
    }

    #[test]
    fn json_nested_without_bound_is_a_bad_request_not_a_stack_overflow(
        depth in 100usize..100_000,
        open in prop_oneof![Just("["), Just("{\"a\":")],
    ) {
        let body = format!(
            "{{\"model\":\"m\",\"messages\":[],\"x\":{}",
            open.repeat(depth)
        );
        let refused = matches!(parse_request(body.as_bytes()), Err(Error::BadRequest { .. }));
        prop_assert!(refused, "depth {}", depth);
    }

    #[test]
    fn a_valid_request_parses_the_same_however_it_is_laid_out(request in request()) {
        let compact = serde_json::to_vec(&request).unwrap();
        let pretty = serde_json::to_vec_pretty(&request).unwrap();
        let parsed = said(&compact)?;
        prop_assert_eq!(&parsed, &said(&pretty)?);
        // Parsing, then serializing, then parsing again changes nothing.
        let again = serde_json::to_vec(&parsed).unwrap();
        prop_assert_eq!(&parsed, &said(&again)?);
        prop_assert_eq!(&parsed["model"], &request["model"]);
        prop_assert_eq!(&parsed["messages"], &request["messages"]);
        prop_assert_eq!(&parsed["x_vendor"], &request["x_vendor"]);
    }
}

use serde_json::json;

use super::*;

fn parse(v: serde_json::Value) -> EmbedRequest {
    serde_json::from_value(v).unwrap()
}

#[test]
fn every_input_shape_openai_documents_parses() {
    assert_eq!(
        parse(json!({"model": "m", "input": "a"})).input,
        EmbedInput::Text("a".into())
    );
    assert_eq!(
        parse(json!({"model": "m", "input": ["a", "b"]})).input,
        EmbedInput::Texts(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        parse(json!({"model": "m", "input": [1, 2]})).input,
        EmbedInput::Tokens(vec![1, 2])
    );
    assert_eq!(
        parse(json!({"model": "m", "input": [[1], [2, 3]]}))
            .input
            .len(),
        2
    );
    let r = parse(json!({"model": "m", "input": "a", "encoding_format": "base64", "x": 1}));
    assert_eq!(r.encoding_format, Some(EncodingFormat::Base64));
    assert_eq!(r.extra["x"], 1);
    assert!(wire::parse_request(br#"{"model":"m","input":"a","encoding_format":"hex"}"#).is_err());
    assert!(wire::parse_request(br#"{"model":"m","input":{"a":1}}"#).is_err());
}

#[test]
fn validation_refuses_what_openai_refuses() {
    let bad = [
        json!({"model": "", "input": "a"}),
        json!({"model": "m", "input": ""}),
        json!({"model": "m", "input": []}),
        json!({"model": "m", "input": ["a", ""]}),
        json!({"model": "m", "input": [[1], []]}),
        json!({"model": "m", "input": "a", "dimensions": 0}),
    ];
    for b in bad {
        let e = validate(&parse(b.clone())).unwrap_err();
        assert_eq!(e.spec().status, 400, "{b}");
    }
    let many: Vec<String> = (0..=MAX_INPUTS).map(|i| i.to_string()).collect();
    assert!(validate(&parse(json!({"model": "m", "input": many}))).is_err());
    assert!(
        validate(&parse(
            json!({"model": "m", "input": ["a"], "dimensions": 8})
        ))
        .is_ok()
    );
}

#[test]
fn base64_is_little_endian_f32_and_round_trips() {
    let v = vec![1.0f32, -0.5, 0.125, f32::MIN_POSITIVE];
    let text = wire::to_base64(&v);
    assert_eq!(&wire::to_base64(&[1.0])[..], "AACAPw==");
    assert_eq!(wire::from_base64(&text).unwrap(), v);
    assert!(wire::from_base64("AAA=").is_err());
}

#[test]
fn the_answer_is_openais_list_in_either_encoding() {
    let response = EmbedResponse {
        model: "text-embedding-3-small".into(),
        data: vec![vec![0.5, 0.25], vec![1.0, 0.0]],
        usage: EmbedUsage::reported(7),
    };
    let floats: serde_json::Value =
        serde_json::from_slice(&wire::encode_response(&response, EncodingFormat::Float)).unwrap();
    assert_eq!(
        floats,
        json!({"object": "list", "model": "text-embedding-3-small",
               "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]},
                        {"object": "embedding", "index": 1, "embedding": [1.0, 0.0]}],
               "usage": {"prompt_tokens": 7, "total_tokens": 7}})
    );
    let b64 = wire::encode_response(&response, EncodingFormat::Base64);
    let decoded =
        wire::decode_response(&b64, &parse(json!({"model": "m", "input": ["a", "b"]}))).unwrap();
    assert_eq!(decoded.data, response.data);
    assert_eq!(decoded.usage, EmbedUsage::reported(7));
}

#[test]
fn upstream_answers_are_put_in_index_order_and_checked() {
    let request = parse(json!({"model": "m", "input": ["a", "b"]}));
    let body = br#"{"data":[{"index":1,"embedding":[2]},{"index":0,"embedding":[1]}],"model":"x"}"#;
    let r = wire::decode_response(body, &request).unwrap();
    assert_eq!(r.data, vec![vec![1.0], vec![2.0]]);
    // No usage reported: estimated, and marked so.
    assert!(r.usage.estimated && r.usage.prompt_tokens > 0);
    let missing = br#"{"data":[{"index":0,"embedding":[1]}]}"#;
    assert!(wire::decode_response(missing, &request).is_err());
    // Indexes that are not 0..n (a compatible server's, or none): the order sent.
    let numbered_wrongly = br#"{"data":[{"index":0,"embedding":[1]},{"index":5,"embedding":[2]}]}"#;
    let r = wire::decode_response(numbered_wrongly, &request).unwrap();
    assert_eq!(r.data, vec![vec![1.0], vec![2.0]]);
    let twice = br#"{"data":[{"index":1,"embedding":[1]},{"index":1,"embedding":[2]}]}"#;
    assert_eq!(
        wire::decode_response(twice, &request).unwrap().data[0],
        vec![1.0]
    );
}

#[test]
fn tokens_are_counted_by_length_and_text_estimated() {
    let tokens = parse(json!({"model": "m", "input": [[1, 2, 3], [4]]}));
    assert_eq!(estimate_tokens(&tokens), 4);
    let text = parse(json!({"model": "m", "input": "abcdefgh"}));
    assert!(estimate_tokens(&text) >= 1);
}

#[test]
fn the_built_in_table_prices_embedding_models_by_input_only() {
    let table = crate::usage::pricing::PriceTable::builtin();
    for (model, input) in [
        ("text-embedding-3-small", 0.02),
        ("text-embedding-3-large", 0.13),
        ("gemini-embedding-001", 0.15),
        ("embed-v4.0", 0.12),
        ("amazon.titan-embed-text-v2:0", 0.02),
        ("cohere.embed-english-v3", 0.10),
        ("us.cohere.embed-v4:0", 0.12),
    ] {
        let price = table
            .lookup(model)
            .unwrap_or_else(|| panic!("{model} is not priced"));
        assert_eq!(price.input, input, "{model}");
        assert_eq!(price.output, 0.0, "{model}");
    }
    // 1M input tokens cost the input price.
    let usage = EmbedUsage::reported(1_000_000).as_chat_usage();
    let price = table.lookup("text-embedding-3-small").unwrap();
    let cost = price
        .cost(&crate::usage::cost::Tokens::of(&usage))
        .total_usd();
    assert!((cost - 0.02).abs() < 1e-9, "{cost}");
}

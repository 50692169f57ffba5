//! `POST /v1/embeddings` over real sockets: the gateway in front of a simulated provider of
//! each wire format, and the pipeline's pieces (failover, limits, cache, routing's
//! embeddings filter, errors) on the embeddings surface.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly"
)]

mod common;

use base64::Engine;
use common::*;
use serde_json::{Value, json};
use switchyard::mock::{self, MockFormat};

/// A `[[providers]]` entry for `m`.
fn provider(m: &Mock) -> String {
    let mut text = format!(
        "\n[[providers]]\nname = \"{}\"\nkind = \"{}\"\nbase_url = \"{}\"\n",
        m.name,
        m.kind(),
        m.base_url()
    );
    if m.format == MockFormat::Bedrock {
        text.push_str(&format!(
            "region = \"us-east-1\"\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
            mock::EXAMPLE_ACCESS_KEY_ID,
            mock::EXAMPLE_SECRET_ACCESS_KEY
        ));
    } else {
        text.push_str(&format!("api_key = \"sk-test-{}\"\n", m.name));
    }
    text
}

/// A config with `mocks` as providers and one model `name` served by `deployments`
/// (`(provider, upstream model)` in order), plus `extra` TOML before them.
fn config(mocks: &[&Mock], models: &[(&str, &[(&str, &str)])], extra: &str) -> String {
    let mut text = format!(
        "[server]\nhttp_addr = \"127.0.0.1:0\"\ngrpc_addr = \"none\"\nmax_body_bytes = 1048576\n{FAST}{extra}"
    );
    for m in mocks {
        text.push_str(&provider(m));
    }
    for (name, deployments) in models {
        let list: Vec<String> = deployments
            .iter()
            .map(|(p, model)| format!("{{ provider = \"{p}\", model = \"{model}\" }}"))
            .collect();
        text.push_str(&format!(
            "\n[[models]]\nname = \"{name}\"\ndeployments = [{}]\n",
            list.join(", ")
        ));
    }
    text
}

async fn embed(gw: &TestGateway, body: &Value) -> reqwest::Response {
    embed_as(gw, body, None).await
}

async fn embed_as(gw: &TestGateway, body: &Value, key: Option<&str>) -> reqwest::Response {
    let mut req = client().post(gw.url("/v1/embeddings")).json(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    within(req.send()).await.unwrap()
}

/// The float vectors of an answer (base64 ones decoded as the SDKs do).
fn vectors(answer: &Value) -> Vec<Vec<f32>> {
    answer["data"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            match &item["embedding"] {
                Value::String(b64) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                Value::Array(v) => v.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
                other => panic!("an embedding is {other}"),
            }
        })
        .collect()
}

fn unit_length(v: &[f32]) -> bool {
    (v.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-3
}

#[tokio::test]
async fn openai_format_answers_floats_and_base64_that_decode_to_the_same_vectors() {
    let m = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let gw = TestGateway::start(&config(
        &[&m],
        &[("embed", &[("oa", "text-embedding-3-small")])],
        "",
    ))
    .await;
    let body = json!({ "model": "embed", "input": ["alpha", "beta"], "dimensions": 64 });
    let resp = embed(&gw, &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "oa");
    let floats: Value = resp.json().await.unwrap();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "text-embedding-3-small");
    assert!(floats["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        floats["usage"]["prompt_tokens"],
        floats["usage"]["total_tokens"]
    );
    let float_vectors = vectors(&floats);
    assert_eq!(float_vectors.len(), 2);
    assert!(
        float_vectors
            .iter()
            .all(|v| v.len() == 64 && unit_length(v))
    );
    // The upstream got the deployment's model, the input and the dimensions as sent.
    let sent = &m.stats().await["last_request"];
    assert_eq!(sent["model"], "text-embedding-3-small");
    assert_eq!(sent["input"], json!(["alpha", "beta"]));
    assert_eq!(sent["dimensions"], 64);

    let mut b64 = body.clone();
    b64["encoding_format"] = json!("base64");
    let resp = embed(&gw, &b64).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert!(answer["data"][0]["embedding"].is_string());
    assert_eq!(vectors(&answer), float_vectors);
}

#[tokio::test]
async fn every_wire_format_embeds_through_the_gateway_with_dimensions_honoured() {
    let azure = Mock::speaking(MockFormat::Azure, "az", "").await;
    let gemini = Mock::speaking(MockFormat::Gemini, "gm", "").await;
    let cohere = Mock::speaking(MockFormat::Cohere, "co", "").await;
    let bedrock = Mock::speaking(MockFormat::Bedrock, "br", "").await;
    let gw = TestGateway::start(&config(
        &[&azure, &gemini, &cohere, &bedrock],
        &[
            ("az", &[("az", "embed-deployment")]),
            ("gm", &[("gm", "gemini-embedding-001")]),
            ("co", &[("co", "embed-v4.0")]),
            ("titan", &[("br", "amazon.titan-embed-text-v2:0")]),
            ("br-cohere", &[("br", "cohere.embed-v4:0")]),
        ],
        "",
    ))
    .await;
    for (model, mock) in [
        ("az", &azure),
        ("gm", &gemini),
        ("co", &cohere),
        ("titan", &bedrock),
        ("br-cohere", &bedrock),
    ] {
        for input in [json!("one text"), json!(["first", "second", "third"])] {
            let n = input.as_array().map_or(1, Vec::len);
            let body = json!({ "model": model, "input": input, "dimensions": 256 });
            let resp = embed(&gw, &body).await;
            let status = resp.status();
            let answer: Value = resp.json().await.unwrap();
            assert_eq!(status, 200, "{model}: {answer}");
            let vs = vectors(&answer);
            assert_eq!(vs.len(), n, "{model}");
            assert!(
                vs.iter().all(|v| v.len() == 256 && unit_length(v)),
                "{model}"
            );
            assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
            // Each input gets its own vector.
            if n > 1 {
                assert_ne!(vs[0], vs[1], "{model}");
            }
            assert!(mock.stats().await["requests"].as_u64().unwrap() >= 1);
        }
    }
    // What each upstream was sent, in its own fields.
    let sent = gemini.stats().await["last_request"].clone();
    assert_eq!(sent["requests"].as_array().unwrap().len(), 3);
    assert_eq!(sent["requests"][0]["model"], "models/gemini-embedding-001");
    assert_eq!(sent["requests"][0]["outputDimensionality"], 256);
    assert!(sent["requests"][0].get("taskType").is_none());
    let sent = cohere.stats().await["last_request"].clone();
    assert_eq!(sent["input_type"], "search_document");
    assert_eq!(sent["embedding_types"], json!(["float"]));
    assert_eq!(sent["output_dimension"], 256);
    assert_eq!(sent["texts"], json!(["first", "second", "third"]));
    let sent = azure.stats().await["last_request"].clone();
    assert_eq!(sent["model"], "embed-deployment");
}

#[tokio::test]
async fn gemini_usage_is_estimated_and_the_callers_task_type_is_passed() {
    let gemini = Mock::speaking(MockFormat::Gemini, "gm", "").await;
    let gw = TestGateway::start(&config(
        &[&gemini],
        &[("gm", &[("gm", "text-embedding-004")])],
        "",
    ))
    .await;
    let resp = embed(
        &gw,
        &json!({ "model": "gm", "input": "twelve chars", "task_type": "RETRIEVAL_QUERY" }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    // Gemini reports no tokens: the gateway's estimate (about 4 characters a token).
    assert!(answer["usage"]["prompt_tokens"].as_u64().unwrap() >= 2);
    let sent = gemini.stats().await["last_request"].clone();
    assert_eq!(sent["taskType"], "RETRIEVAL_QUERY");
    assert_eq!(sent["content"]["parts"][0]["text"], "twelve chars");
}

#[tokio::test]
async fn a_failing_deployment_fails_over_to_the_next() {
    let bad = Mock::speaking(MockFormat::OpenAi, "bad", "status=503").await;
    let good = Mock::speaking(MockFormat::Cohere, "good", "").await;
    let gw = TestGateway::start(&config(
        &[&bad, &good],
        &[(
            "embed",
            &[("bad", "text-embedding-3-small"), ("good", "embed-v4.0")],
        )],
        "",
    ))
    .await;
    let resp = embed(&gw, &json!({ "model": "embed", "input": "hello" })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "good");
    let attempts = header(&resp, "x-switchyard-attempts").to_owned();
    assert!(
        attempts.contains("bad/text-embedding-3-small=503"),
        "{attempts}"
    );
    assert!(attempts.contains("good/embed-v4.0=ok"), "{attempts}");
    assert_eq!(bad.stats().await["requests"], 1);
    // The caller's own 400 is not failed over.
    let resp = embed(
        &gw,
        &json!({ "model": "embed", "input": "x", "dimensions": 7 }),
    )
    .await;
    assert_eq!(resp.status(), 400, "Cohere refuses output_dimension 7");
}

#[tokio::test]
async fn a_chat_only_deployment_is_skipped_and_a_model_with_none_that_embeds_is_a_400() {
    let claude = Mock::speaking(MockFormat::Anthropic, "claude", "").await;
    let oa = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let gw = TestGateway::start(&config(
        &[&claude, &oa],
        &[
            (
                "mixed",
                &[
                    ("claude", "claude-sonnet-4-5"),
                    ("oa", "text-embedding-3-small"),
                ],
            ),
            ("chat-only", &[("claude", "claude-sonnet-4-5")]),
        ],
        "",
    ))
    .await;
    let resp = embed(&gw, &json!({ "model": "mixed", "input": "hi" })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "oa");
    assert!(!header(&resp, "x-switchyard-attempts").contains("claude"));
    assert_eq!(claude.stats().await["requests"], 0);

    let resp = embed(&gw, &json!({ "model": "chat-only", "input": "hi" })).await;
    assert_eq!(resp.status(), 400);
    let error = resp.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "unsupported_capability");
    assert!(error["message"].as_str().unwrap().contains("embeddings"));
    assert_eq!(claude.stats().await["requests"], 0);
}

#[tokio::test]
async fn bad_input_is_a_400_in_openais_shape_and_tokens_go_only_where_they_can() {
    let gemini = Mock::speaking(MockFormat::Gemini, "gm", "").await;
    let oa = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let gw = TestGateway::start(&config(
        &[&gemini, &oa],
        &[
            ("gm", &[("gm", "gemini-embedding-001")]),
            (
                "both",
                &[
                    ("gm", "gemini-embedding-001"),
                    ("oa", "text-embedding-3-small"),
                ],
            ),
        ],
        "",
    ))
    .await;
    for (body, param) in [
        (json!({ "model": "gm", "input": "" }), Some("input")),
        (json!({ "model": "gm", "input": [] }), Some("input")),
        (json!({ "model": "gm", "input": ["a", ""] }), Some("input")),
        (
            json!({ "model": "gm", "input": "a", "dimensions": 0 }),
            Some("dimensions"),
        ),
        (json!({ "model": "gm", "input": { "a": 1 } }), None),
        (
            json!({ "model": "gm", "input": "a", "encoding_format": "hex" }),
            None,
        ),
        (json!({ "input": "a" }), None),
    ] {
        let resp = embed(&gw, &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let error = resp.json::<Value>().await.unwrap()["error"].clone();
        assert_eq!(error["type"], "invalid_request_error", "{body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        if let Some(p) = param {
            assert_eq!(error["param"], p, "{body}");
        }
    }
    let resp = embed(&gw, &json!({ "model": "nope", "input": "a" })).await;
    assert_eq!(resp.status(), 404);
    // Token arrays: Gemini cannot take them (a clear 400), the OpenAI deployment can.
    let tokens = json!({ "model": "gm", "input": [[1, 2, 3]] });
    let resp = embed(&gw, &tokens).await;
    assert_eq!(resp.status(), 400);
    let error = resp.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(error["code"], "unsupported_by_provider");
    assert!(error["message"].as_str().unwrap().contains("token"));
    assert_eq!(gemini.stats().await["requests"], 0);
    let resp = embed(&gw, &json!({ "model": "both", "input": [[1, 2, 3]] })).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-switchyard-provider"), "oa");
}

#[tokio::test]
async fn a_cache_hit_replays_the_vectors_and_the_key_holds_input_dimensions_and_encoding() {
    let m = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let gw = TestGateway::start(&config(
        &[&m],
        &[("embed", &[("oa", "text-embedding-3-small")])],
        "[cache]\nenabled = true\n",
    ))
    .await;
    let body = json!({ "model": "embed", "input": ["cached text"], "dimensions": 32 });
    let first = embed(&gw, &body).await;
    assert_eq!(header(&first, "x-switchyard-cache"), "miss");
    let first: Value = first.json().await.unwrap();
    // The fill runs off the caller's path: wait until a replay is served.
    let mut hit = None;
    for _ in 0..100 {
        let resp = embed(&gw, &body).await;
        if header(&resp, "x-switchyard-cache") == "hit" {
            hit = Some(resp);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let hit = hit.expect("the second call was never a hit");
    assert_eq!(header(&hit, "x-switchyard-provider"), "oa");
    let requests = m.stats().await["requests"].as_u64().unwrap();
    let replayed: Value = hit.json().await.unwrap();
    assert_eq!(vectors(&replayed), vectors(&first));
    assert_eq!(replayed["usage"], first["usage"]);
    // Another dimension, another encoding, another input: each a miss of its own.
    for other in [
        json!({ "model": "embed", "input": ["cached text"], "dimensions": 16 }),
        json!({ "model": "embed", "input": ["cached text"], "dimensions": 32, "encoding_format": "base64" }),
        json!({ "model": "embed", "input": ["other text"], "dimensions": 32 }),
    ] {
        let resp = embed(&gw, &other).await;
        assert_eq!(header(&resp, "x-switchyard-cache"), "miss", "{other}");
    }
    assert_eq!(m.stats().await["requests"].as_u64().unwrap(), requests + 3);
}

#[tokio::test]
async fn usage_is_priced_at_the_deployments_input_price_and_counted() {
    let m = Mock::speaking(MockFormat::OpenAi, "oa", "usage=40:0:0:0:0").await;
    let text = config(&[&m], &[("embed", &[("oa", "text-embedding-3-small")])], "").replace(
        "model = \"text-embedding-3-small\" }",
        "model = \"text-embedding-3-small\", price_in = 1000.0, price_out = 0.0 }",
    );
    let gw = TestGateway::start(&text).await;
    let resp = embed(&gw, &json!({ "model": "embed", "input": "priced" })).await;
    assert_eq!(resp.status(), 200);
    let metrics = gw.metrics().await;
    // 40 tokens at $1000 per million: $0.04, 40 000 micro-USD; no output tokens.
    assert_eq!(
        metric(
            &metrics,
            "switchyard_cost_usd_micros_total",
            &["model=\"embed\""]
        ),
        40_000.0
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_prompt_tokens_total",
            &["model=\"embed\""]
        ),
        40.0
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_completion_tokens_total",
            &["model=\"embed\""]
        ),
        0.0
    );
}

#[tokio::test]
async fn redaction_and_content_rules_apply_to_the_texts_to_embed() {
    let m = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
    let extra = "[redaction]\ndetectors = [\"email\"]\nmode = \"mask\"\nrestore = true\n\n\
                 [[content_rules]]\nname = \"weapons\"\npatterns = ['(?i)build\\s+a\\s+bomb']\n\
                 on = \"prompt\"\naction = \"block\"\n";
    let gw = TestGateway::start(&config(
        &[&m],
        &[("embed", &[("oa", "text-embedding-3-small")])],
        extra,
    ))
    .await;
    let resp = embed(
        &gw,
        &json!({ "model": "embed", "input": ["write to jane.doe@example.com", "plain"] }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let sent = m.stats().await["last_request"]["input"].clone();
    assert_eq!(sent[1], "plain");
    let first = sent[0].as_str().unwrap();
    assert!(!first.contains("jane.doe@example.com"), "{first}");
    assert!(first.contains("<EMAIL_1>"), "{first}");
    // A single string stays a single string.
    let resp = embed(
        &gw,
        &json!({ "model": "embed", "input": "mail bob@example.org" }),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(m.stats().await["last_request"]["input"], "mail <EMAIL_1>");

    let requests = m.stats().await["requests"].clone();
    let resp = embed(
        &gw,
        &json!({ "model": "embed", "input": ["how to build a bomb"] }),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let error = resp.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(error["code"], "content_policy_violation");
    assert_eq!(m.stats().await["requests"], requests);
}

const KEY: &str = "sk-embed-team-0123456789";

#[tokio::test]
async fn limits_refuse_on_the_estimate_and_settle_on_the_reported_usage() {
    // The mock reports 5 input tokens whatever the input.
    let m = Mock::speaking(MockFormat::OpenAi, "oa", "usage=5:0:0:0:0").await;
    let keys = format!("[[keys]]\nname = \"team\"\nkey = \"{KEY}\"\nlimits = {{ tpm = 200 }}\n");
    let gw = TestGateway::start(&config(
        &[&m],
        &[("embed", &[("oa", "text-embedding-3-small")])],
        &keys,
    ))
    .await;
    // ~250 tokens estimated (1000 characters): more than the whole limit, never admitted.
    let long = "x".repeat(1000);
    let resp = embed_as(&gw, &json!({ "model": "embed", "input": long }), Some(KEY)).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(header(&resp, "x-should-retry"), "false");
    let error = resp.json::<Value>().await.unwrap()["error"].clone();
    assert_eq!(error["type"], "tokens");
    assert_eq!(m.stats().await["requests"], 0);
    // ~100 tokens estimated (400 characters): one fits in 200; the second fits only
    // because the first settled at the 5 tokens the provider reported.
    let medium = json!({ "model": "embed", "input": "y".repeat(400) });
    let first = embed_as(&gw, &medium, Some(KEY)).await;
    assert_eq!(first.status(), 200);
    let remaining: u64 = header(&first, "x-ratelimit-remaining-tokens")
        .parse()
        .unwrap();
    assert!(remaining <= 100, "{remaining} left after a ~100 token hold");
    assert_eq!(
        first.json::<Value>().await.unwrap()["usage"]["prompt_tokens"],
        5
    );
    for _ in 0..2 {
        let resp = embed_as(&gw, &medium, Some(KEY)).await;
        assert_eq!(resp.status(), 200);
    }
    // Without a key: 401 in OpenAI's shape.
    let resp = embed(&gw, &medium).await;
    assert_eq!(resp.status(), 401);
}

mod grpc {
    use super::*;
    use switchyard::api::grpc::pb::{self, gateway_client::GatewayClient};
    use tonic::Code;

    async fn client_for(gw: &TestGateway) -> GatewayClient<tonic::transport::Channel> {
        within(GatewayClient::connect(format!("http://{}", gw.addr)))
            .await
            .unwrap()
    }

    fn embed_request(model: &str, input: &[&str]) -> pb::EmbedRequest {
        pb::EmbedRequest {
            model: model.into(),
            input: input.iter().map(|s| (*s).to_owned()).collect(),
            dimensions: Some(48),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn embed_answers_the_same_vectors_as_rest_with_metadata_and_failover() {
        let bad = Mock::speaking(MockFormat::OpenAi, "bad", "status=503").await;
        let good = Mock::speaking(MockFormat::OpenAi, "good", "").await;
        let gw = TestGateway::start(&config(
            &[&bad, &good],
            &[(
                "embed",
                &[
                    ("bad", "text-embedding-3-small"),
                    ("good", "text-embedding-3-small"),
                ],
            )],
            "",
        ))
        .await;
        let mut client = client_for(&gw).await;
        let resp = within(client.embed(embed_request("embed", &["a", "b"])))
            .await
            .unwrap();
        let md = resp.metadata().clone();
        assert_eq!(md.get("x-switchyard-provider").unwrap(), "good");
        assert_eq!(
            md.get("x-switchyard-attempts").unwrap(),
            "bad/text-embedding-3-small=503, good/text-embedding-3-small=ok"
        );
        let r = resp.into_inner();
        assert_eq!(r.data.len(), 2);
        assert_eq!(r.data[1].index, 1);
        assert!(r.data.iter().all(|d| d.embedding.len() == 48));
        assert!(r.usage.unwrap().prompt_tokens > 0);
        let rest: Value = embed(
            &gw,
            &json!({ "model": "embed", "input": ["a", "b"], "dimensions": 48 }),
        )
        .await
        .json()
        .await
        .unwrap();
        let grpc_vectors: Vec<Vec<f32>> = r.data.into_iter().map(|d| d.embedding).collect();
        assert_eq!(grpc_vectors, vectors(&rest));
    }

    #[tokio::test]
    async fn embed_errors_map_to_status_codes_as_chat_does() {
        let claude = Mock::speaking(MockFormat::Anthropic, "claude", "").await;
        let oa = Mock::speaking(MockFormat::OpenAi, "oa", "").await;
        let gw = TestGateway::start(&config(
            &[&claude, &oa],
            &[
                ("chat-only", &[("claude", "claude-sonnet-4-5")]),
                ("embed", &[("oa", "text-embedding-3-small")]),
            ],
            "",
        ))
        .await;
        let mut client = client_for(&gw).await;
        let err = within(client.embed(embed_request("chat-only", &["a"])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("embeddings"));
        let err = within(client.embed(embed_request("missing", &["a"])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = within(client.embed(embed_request("embed", &[])))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        // Token input goes to the OpenAI-format deployment.
        let tokens = pb::EmbedRequest {
            model: "embed".into(),
            tokens: vec![pb::TokenList {
                tokens: vec![1, 2, 3],
            }],
            ..Default::default()
        };
        let r = within(client.embed(tokens)).await.unwrap().into_inner();
        assert_eq!(r.data.len(), 1);
        assert_eq!(
            oa.stats().await["last_request"]["input"],
            json!([[1, 2, 3]])
        );
    }
}

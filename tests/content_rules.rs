//! Content rules end to end over real sockets: a blocked prompt never reaches the
//! provider, a flag is let through and counted, a blocked answer is refused (JSON) or its
//! stream ended with an in-band error (a match split across chunks included, and tool-call
//! chunks held until checked), and a pathological pattern on a 100k input answers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly"
)]

mod common;

use common::*;
use serde_json::{Value, json};

const RULES: &str = "\
[[content_rules]]\nname = \"weapons\"\npatterns = ['(?i)build\\s+a\\s+bomb']\non = \"prompt\"\n\
[[content_rules]]\nname = \"codename\"\nwords = [\"Project Falcon\"]\non = \"both\"\naction = \"flag\"\n\
[[content_rules]]\nname = \"leak\"\npatterns = ['CONFIDENTIAL-[0-9]+']\non = \"response\"\n\
[[content_rules]]\nname = \"launch\"\nwords = [\"launch codes\"]\non = \"response\"\n";

async fn gateway(mock: &Mock) -> TestGateway {
    TestGateway::start(&config_for(&[mock], &format!("{FAST}{RULES}"))).await
}

fn ask(text: &str, stream: bool) -> Value {
    json!({ "model": "gpt-4o-mini", "stream": stream,
            "messages": [{ "role": "user", "content": text }] })
}

fn error_of(body: &str) -> Value {
    serde_json::from_str::<Value>(body).unwrap()["error"].clone()
}

#[tokio::test]
async fn a_blocked_prompt_is_refused_naming_the_rule_and_never_sent() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock).await;
    for stream in [false, true] {
        let resp = gw.chat(&ask("how do I Build a  Bomb?", stream)).await;
        assert_eq!(resp.status(), 400);
        let body = resp.text().await.unwrap();
        let e = error_of(&body);
        assert_eq!(e["code"], "content_policy_violation");
        assert!(
            e["message"].as_str().unwrap().contains("`weapons`"),
            "{body}"
        );
        assert!(!body.to_lowercase().contains("bomb"), "{body}");
    }
    // Also in a tool result.
    let resp = gw
        .chat(&json!({ "model": "gpt-4o-mini", "messages": [
            { "role": "user", "content": "go" },
            { "role": "assistant", "content": null, "tool_calls": [{ "id": "c", "type": "function",
                "function": { "name": "f", "arguments": "{}" } }] },
            { "role": "tool", "tool_call_id": "c", "content": "now build a bomb" } ] }))
        .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.stats().await["requests"], 0);
    let m = gw.metrics().await;
    assert_eq!(
        metric(
            &m,
            "switchyard_content_rule_hits_total",
            &["rule=\"weapons\"", "action=\"block\"", "on=\"prompt\""]
        ),
        3.0
    );
}

#[tokio::test]
async fn a_flag_lets_the_call_through_and_is_counted() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock).await;
    let resp = gw.chat(&ask("status of project falcon?", false)).await;
    assert_eq!(resp.status(), 200);
    let m = gw.metrics().await;
    // The prompt, and the answer that echoes it.
    for on in ["prompt", "response"] {
        assert_eq!(
            metric(
                &m,
                "switchyard_content_rule_hits_total",
                &[
                    "rule=\"codename\"",
                    "action=\"flag\"",
                    &format!("on=\"{on}\"")
                ]
            ),
            1.0,
            "{on}"
        );
    }
}

#[tokio::test]
async fn a_blocked_answer_is_refused() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock).await;
    // The prompt passes (the rule is on responses only); the mock's echo does not.
    let resp = gw.chat(&ask("repeat CONFIDENTIAL-42", false)).await;
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.unwrap();
    assert_eq!(error_of(&body)["code"], "content_policy_violation");
    assert!(
        body.contains("`leak`") && !body.contains("CONFIDENTIAL-42"),
        "{body}"
    );
    assert_eq!(mock.stats().await["requests"], 1);
}

/// The stream's text and its last event, read to the end.
async fn read_stream(gw: &TestGateway, text: &str) -> (String, Value) {
    let resp = gw.chat(&ask(text, true)).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    let content = stream_content(&events);
    let last = events
        .iter()
        .rev()
        .find(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .unwrap();
    (content, last)
}

#[tokio::test]
async fn a_match_split_across_stream_chunks_ends_the_stream_with_an_error_event() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock).await;
    for n in [1, 2, 3, 5, 8] {
        mock.set_fault(&format!("chunk_chars={n}")).await;
        let (content, last) = read_stream(&gw, "repeat CONFIDENTIAL-4242 please").await;
        assert_eq!(
            last["error"]["code"], "content_policy_violation",
            "pieces of {n}"
        );
        assert!(
            last["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`leak`"),
            "{last}"
        );
        // What went out before the match completed, never the whole match.
        assert!(
            !content.contains("CONFIDENTIAL-4"),
            "pieces of {n}: {content}"
        );
        assert!(content.starts_with("Hello from"), "{content}");
    }
    // A clean answer streams whole.
    mock.set_fault("chunk_chars=2").await;
    let (content, last) = read_stream(&gw, "nothing to see").await;
    assert!(content.ends_with("You said: nothing to see"), "{content}");
    assert!(last.get("error").is_none(), "{last}");
}

#[tokio::test]
async fn tool_call_chunks_are_held_until_checked() {
    let mock = Mock::start("a", "").await;
    let gw = gateway(&mock).await;
    let body = |value: &str| {
        json!({ "model": "gpt-4o-mini", "stream": true,
            "messages": [{ "role": "user", "content": "go" }],
            "tools": [{ "type": "function", "function": { "name": "act",
                "parameters": { "type": "object", "required": ["what"],
                    "properties": { "what": { "type": "string", "const": value } } } } }],
            "tool_choice": "required" })
    };
    mock.set_fault("chunk_chars=2").await;
    let events = sse_events(gw.chat(&body("send the launch codes")).await).await;
    let payloads: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    // Not one piece of the arguments went out before the rule saw them whole.
    assert!(
        payloads
            .iter()
            .all(|p| p.pointer("/choices/0/delta/tool_calls").is_none()),
        "{events:?}"
    );
    assert_eq!(
        payloads.last().unwrap()["error"]["code"],
        "content_policy_violation"
    );
    // Clean arguments arrive, whole, in one delta.
    let events = sse_events(gw.chat(&body("water the plants")).await).await;
    let calls: Vec<Value> = events
        .iter()
        .filter(|e| *e != "[DONE]")
        .filter_map(|e| {
            serde_json::from_str::<Value>(e)
                .unwrap()
                .pointer("/choices/0/delta/tool_calls/0")
                .cloned()
        })
        .collect();
    assert_eq!(calls.len(), 1, "{events:?}");
    assert_eq!(calls[0]["function"]["name"], "act");
    assert_eq!(
        serde_json::from_str::<Value>(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap()
            ["what"],
        "water the plants"
    );
}

#[tokio::test]
async fn a_pathological_pattern_on_a_large_input_answers() {
    let mock = Mock::start("a", "").await;
    let rules = "[[content_rules]]\nname = \"nested\"\npatterns = ['(a+)+$']\non = \"prompt\"\n";
    let config = config_for(&[&mock], &format!("{FAST}{rules}"))
        .replace("max_body_bytes = 65536", "max_body_bytes = 1048576");
    let gw = TestGateway::start(&config).await;
    // Matches: blocked.
    let resp = gw.chat(&ask(&"a".repeat(100_000), false)).await;
    assert_eq!(resp.status(), 400);
    // Nearly matches (the classic backtracking trap): let through.
    let resp = gw
        .chat(&ask(&format!("{}!", "a".repeat(100_000)), false))
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_invalid_rule_is_a_config_error_naming_it() {
    let mock = Mock::start("a", "").await;
    let bad = "[[content_rules]]\nname = \"x\"\npatterns = ['(unclosed']\n";
    let err = switchyard::config::Config::parse(&config_for(&[&mock], bad)).unwrap_err();
    assert_eq!(err.key, "content_rules[0].patterns");
    let none = "[[content_rules]]\nname = \"x\"\n";
    let err = switchyard::config::Config::parse(&config_for(&[&mock], none)).unwrap_err();
    assert_eq!(err.key, "content_rules[0].patterns");
}

#[tokio::test]
async fn the_request_log_records_rule_decisions_and_the_guard_verdict() {
    use common::process::Served;
    let mock = Mock::start("a", "").await;
    let dir = std::env::temp_dir().join(format!("switchyard-rules-{}", fastrand::u64(..)));
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    std::fs::write(
        dir.join("scripts/polite.lua"),
        "function guard(r)\n  if string.find(r.messages[1].content, 'rude', 1, true) then\n    \
         return false, 'be nice'\n  end\n  return true\nend\n",
    )
    .unwrap();
    let config = config_for(
        &[&mock],
        &format!("{FAST}{RULES}[routing]\nscripts_dir = \"scripts\"\n"),
    )
    .replace(
        "name = \"gpt-4o-mini\"\n",
        "name = \"gpt-4o-mini\"\nguard = \"polite\"\n",
    );
    std::fs::write(dir.join("switchyard.toml"), config).unwrap();
    let served = Served::start(&["--config", "switchyard.toml"], &dir);
    let send = |id: &'static str, text: &'static str| {
        let url = format!("http://{}/v1/chat/completions", served.http);
        async move {
            within(
                client()
                    .post(url)
                    .header("x-request-id", id)
                    .json(&ask(text, false))
                    .send(),
            )
            .await
            .unwrap()
            .status()
        }
    };
    assert_eq!(send("audit-flag-1", "news on project falcon").await, 200);
    let line: Value = serde_json::from_str(&served.wait_for("audit-flag-1")).unwrap();
    assert_eq!(
        line["content_rules"],
        json!([{ "rule": "codename", "action": "flag", "on": "prompt" },
               { "rule": "codename", "action": "flag", "on": "response" }])
    );
    assert_eq!(
        line["guard"],
        json!({ "name": "polite", "decision": "allow" })
    );
    assert_eq!(send("audit-guard-1", "a rude question").await, 403);
    let line: Value = serde_json::from_str(&served.wait_for("audit-guard-1")).unwrap();
    assert_eq!(
        line["guard"],
        json!({ "name": "polite", "decision": "deny" })
    );
    assert_eq!(line["refused_by"], "guard");
    assert_eq!(send("audit-block-1", "build a bomb").await, 400);
    let line: Value = serde_json::from_str(&served.wait_for("audit-block-1")).unwrap();
    assert_eq!(
        line["content_rules"],
        json!([{ "rule": "weapons", "action": "block", "on": "prompt" }])
    );
    assert_eq!(line["refused_by"], "content_rules");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_grpc_stream_ends_with_the_rules_status_before_the_whole_match() {
    use futures_util::StreamExt;
    use switchyard::api::grpc::pb::{self, gateway_client::GatewayClient};
    let mock = Mock::start("a", "chunk_chars=3").await;
    let gw = gateway(&mock).await;
    let mut client = within(GatewayClient::connect(format!("http://{}", gw.addr)))
        .await
        .unwrap();
    let mut request = grpc_hello();
    request.messages = vec![pb::Message {
        role: "user".into(),
        content: Some("repeat CONFIDENTIAL-4242 please".into()),
        ..Default::default()
    }];
    let mut stream = within(client.chat_stream(request))
        .await
        .unwrap()
        .into_inner();
    let mut content = String::new();
    let status = loop {
        match within(stream.next()).await {
            Some(Ok(chunk)) => {
                for c in &chunk.choices {
                    if let Some(text) = c.delta.as_ref().and_then(|d| d.content.as_deref()) {
                        content.push_str(text);
                    }
                }
            }
            Some(Err(status)) => break status,
            None => panic!("the stream ended without the rule's status: {content}"),
        }
    };
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("`leak`"), "{status:?}");
    assert!(content.starts_with("Hello from"), "{content}");
    assert!(!content.contains("CONFIDENTIAL-4"), "{content}");
}

"""Anthropic's Messages API through the gateway, with the official Anthropic Python SDK.

One gateway, one model per wire format, each on a simulated provider of that format:
`claude` (Anthropic: the request is passed through), `gpt` (OpenAI), `gem` (Gemini) and
`bed` (Bedrock Converse) — the last three translated. The SDK's `messages.create`,
`messages.stream` (text, tool use, thinking) and `messages.count_tokens` are run against
each; the pass-through tests capture the bytes the SDK sent (an httpx event hook) and
compare them with the bytes the simulated Anthropic received. A second gateway points its
Anthropic provider at Steady serving Anthropic's OpenAPI spec, which validates the body the
pass-through sends.
"""

from __future__ import annotations

import json
import re

import anthropic
import httpx2
import pytest

from conftest import (
    HTTP_TIMEOUT,
    SPECS_DIR,
    SWITCHYARD_BIN,
    Gateway,
    Processes,
    Provider,
    _toml_str,
    start_gateway,
    start_mock,
    start_steady,
)

FORMATS = {"claude": "anthropic", "gpt": "openai", "gem": "gemini", "bed": "bedrock"}
UPSTREAM = {
    "claude": "claude-sonnet-4-5",
    "gpt": "gpt-4o",
    "gem": "gemini-2.5-flash",
    "bed": "anthropic.claude-3-5-haiku-20241022-v1:0",
}
BEDROCK_KEYS = {
    "region": "us-east-1",
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}
WEATHER = {
    "name": "get_weather",
    "description": "The forecast for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


class World:
    def __init__(self, gateway, mocks):
        self.gateway = gateway
        self.mocks = mocks
        self.sent: list[bytes] = []

    def client(self, capture: bool = False) -> anthropic.Anthropic:
        hooks = {"request": [lambda r: self.sent.append(r.read())]} if capture else {}
        return anthropic.Anthropic(
            base_url=f"http://{self.gateway.http}",
            api_key="sk-e2e-client-key",
            max_retries=0,
            timeout=HTTP_TIMEOUT,
            http_client=httpx2.Client(event_hooks=hooks, timeout=HTTP_TIMEOUT),
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory, request) -> World:
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    mocks = {alias: start_mock(procs, f"m-{alias}", fmt=fmt) for alias, fmt in FORMATS.items()}
    out = ["[server]", 'http_addr = "127.0.0.1:0"', 'grpc_addr = "127.0.0.1:0"', ""]
    out += ["[failover]", "attempt_timeout_ms = 2000", "deadline_ms = 5000"]
    for alias, fmt in FORMATS.items():
        mock = mocks[alias]
        out += ["", "[[providers]]", f"name = {_toml_str(mock.name)}", f"kind = {_toml_str(fmt)}"]
        out.append(f"base_url = {_toml_str(mock.url)}")
        if fmt == "bedrock":
            out += [f"{k} = {_toml_str(v)}" for k, v in BEDROCK_KEYS.items()]
        else:
            out.append(f"api_key = {_toml_str(f'sk-e2e-{fmt}')}")
    for alias in FORMATS:
        dep = f"{{ provider = {_toml_str(mocks[alias].name)}, model = {_toml_str(UPSTREAM[alias])} }}"
        out += ["", "[[models]]", f"name = {_toml_str(alias)}", f"deployments = [ {dep} ]"]
    directory = tmp_path_factory.mktemp("messages")
    config = directory / "switchyard.toml"
    config.write_text("\n".join(out) + "\n")
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway messages")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    gateway = Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=list(FORMATS))
    return World(gateway, mocks)


@pytest.mark.parametrize("model", list(FORMATS))
def test_create_answers_a_message_from_every_format(world, model):
    raw = world.client().messages.with_raw_response.create(
        model=model,
        max_tokens=256,
        system="Be brief.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    message = raw.parse()
    assert raw.headers["x-switchyard-provider"] == f"m-{model}"
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    text = "".join(b.text for b in message.content if b.type == "text")
    assert "capital of France" in text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.parametrize("model", list(FORMATS))
def test_stream_reassembles_the_text(world, model):
    with world.client().messages.stream(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "Say hello" in text
    assert "".join(b.text for b in final.content if b.type == "text") == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", list(FORMATS))
def test_stream_with_tool_use_gives_a_tool_call_with_valid_input(world, model):
    with world.client().messages.stream(
        model=model,
        max_tokens=256,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    ) as stream:
        final = stream.get_final_message()
    (tool,) = [b for b in final.content if b.type == "tool_use"]
    assert tool.name == "get_weather"
    assert isinstance(tool.input, dict) and isinstance(tool.input.get("city"), str)
    assert final.stop_reason == "tool_use"
    # The round trip: the result goes back and the model answers in text.
    answer = world.client().messages.create(
        model=model,
        max_tokens=256,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": tool.id, "content": "Sunny, 21 C"}]},
        ],
    )
    assert answer.type == "message"


def expected_at_provider(sent: bytes, upstream: str) -> str:
    """The SDK's body with only the model's value replaced, as the gateway must splice it."""
    text = sent.decode()
    replaced, n = re.subn(r'("model"\s*:\s*)"claude"', lambda m: m.group(1) + json.dumps(upstream), text, count=1)
    assert n == 1, text
    return replaced


@pytest.mark.parametrize("model", ["claude", "bed"])
def test_thinking_passes_through_with_its_signature_byte_for_byte(world, model):
    client = world.client(capture=True)
    with client.messages.stream(
        model=model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": "Think, then answer."}],
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    thinking = final.content[0]
    assert thinking.type == "thinking" and thinking.signature
    assert "content_block_delta" in events and "message_stop" in events
    # Second turn: the thinking block goes back with its signature, plus a field no
    # schema knows and an anthropic-beta header.
    world.sent.clear()
    answer = client.messages.create(
        model=model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[
            {"role": "user", "content": "Think, then answer."},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in final.content]},
            {"role": "user", "content": "And again?"},
        ],
        extra_body={"x_future_field": {"nested": [1, 2.5, "three"]}},
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14"},
    )
    assert answer.content[0].type == "thinking"
    (sent,) = world.sent
    stats = world.mocks[model].stats()
    if model == "claude":
        # Anthropic: the SDK's bytes with only the model's value replaced.
        assert stats["last_body"] == expected_at_provider(sent, UPSTREAM["claude"])
        assert stats["last_headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"
    else:
        # Bedrock InvokeModel: model out, anthropic_version and anthropic_beta in, every
        # other member's value as the SDK wrote it.
        sent_json = json.loads(sent)
        expected = {k: v for k, v in sent_json.items() if k not in ("model", "stream")}
        expected["anthropic_version"] = "bedrock-2023-05-31"
        expected["anthropic_beta"] = ["interleaved-thinking-2025-05-14"]
        assert json.loads(stats["last_body"]) == expected
        for member in ("x_future_field", "messages", "thinking"):
            raw = raw_member(sent.decode(), member)
            assert raw in stats["last_body"], (member, raw)
    assert json.dumps(thinking.signature) in stats["last_body"]


def raw_member(text: str, key: str) -> str:
    """A top-level member's value exactly as written in `text` (a JSON object)."""
    decoder = json.JSONDecoder()
    at = text.index(json.dumps(key)) + len(json.dumps(key))
    at = text.index(":", at) + 1
    while text[at].isspace():
        at += 1
    _, end = decoder.raw_decode(text, at)
    return text[at:end]


def test_thinking_to_an_openai_deployment_asks_for_reasoning(world):
    world.client().messages.create(
        model="gpt",
        max_tokens=20000,
        thinking={"type": "enabled", "budget_tokens": 16000},
        messages=[{"role": "user", "content": "Think hard."}],
    )
    sent = world.mocks["gpt"].stats()["last_request"]
    assert sent["reasoning_effort"] == "high"
    assert "thinking" not in sent


@pytest.mark.parametrize(
    "model, source", [("claude", "provider"), ("gpt", "tiktoken"), ("gem", "estimate"), ("bed", "estimate")]
)
def test_count_tokens_says_where_the_count_came_from(world, model, source):
    raw = world.client().messages.with_raw_response.count_tokens(
        model=model,
        system="Be brief.",
        messages=[{"role": "user", "content": "How many tokens is this sentence?"}],
    )
    counted = raw.parse()
    assert raw.headers["x-switchyard-token-count"] == source
    assert counted.input_tokens > 0
    if model == "claude":
        assert world.mocks["claude"].stats()["last_request"]["model"] == UPSTREAM["claude"]


def test_errors_come_back_as_the_sdks_own_exceptions(world):
    with pytest.raises(anthropic.NotFoundError) as e:
        world.client().messages.create(
            model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    assert e.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        world.client().messages.create(
            model="claude",
            max_tokens=100,
            thinking={"type": "enabled", "budget_tokens": 2048},
            messages=[{"role": "user", "content": "x"}],
        )


# --- the pass-through body, validated by Steady against Anthropic's spec --------------------


@pytest.fixture(scope="module")
def steady_gateway(tmp_path_factory, request):
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    steady = start_steady(procs, SPECS_DIR / "anthropic-openapi.json")
    provider = Provider("anthropic-spec", steady.base_url, api_key="sk-ant-spec", kind="anthropic")
    gateway = start_gateway(
        procs,
        tmp_path_factory.mktemp("messages-spec"),
        [provider],
        {"claude": [("anthropic-spec", "claude-sonnet-4-5")]},
        failover={"max_attempts": 1},
    )
    return steady, gateway


def test_the_passed_through_body_validates_against_anthropics_spec(steady_gateway):
    steady, gateway = steady_gateway
    client = anthropic.Anthropic(
        base_url=f"http://{gateway.http}", api_key="sk-e2e", max_retries=0, timeout=HTTP_TIMEOUT
    )
    before = len(steady.request_events())
    message = client.messages.create(
        model="claude",
        max_tokens=4096,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER],
        tool_choice={"type": "auto"},
        metadata={"user_id": "user-1"},
        stop_sequences=["END"],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "EqQBCkYIARgCIkD+/=="},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "Sunny"}]},
        ],
    )
    assert message.type == "message"
    events = steady.wait_for_requests(before + 1)
    (event,) = events[before:]
    assert event["request"]["path"] == "/v1/messages"
    assert event["response"]["status"] == 200, event
    assert event["diagnostics"] == [], event["diagnostics"]
    # count_tokens passes through to the spec's own endpoint too.
    before = len(steady.request_events())
    raw = client.messages.with_raw_response.count_tokens(
        model="claude", messages=[{"role": "user", "content": "Hello"}]
    )
    assert raw.headers["x-switchyard-token-count"] == "provider"
    (event,) = steady.wait_for_requests(before + 1)[before:]
    assert event["request"]["path"] == "/v1/messages/count_tokens"
    assert event["response"]["status"] == 200 and event["diagnostics"] == [], event

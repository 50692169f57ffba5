"""The REST surface through the official OpenAI Python SDK: what an application sees when it
changes only its base URL to the gateway's."""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conftest import SIM_MODEL, Provider, mock_text, mock_usage, start_gateway

PROMPT = "What is the capital of France?"
MESSAGES = [{"role": "user", "content": PROMPT}]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "detailed": {"type": "boolean"},
            },
            "required": ["city", "days", "unit", "detailed"],
            "additionalProperties": False,
        },
    },
}

ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "capital": {"type": "string"},
        "population_millions": {"type": "number"},
        "landmarks": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["capital", "population_millions", "landmarks"],
    "additionalProperties": False,
}

JSON_TYPES = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
}


def assert_matches_schema(value: dict, schema: dict) -> None:
    """Required keys present, each property of its declared type, enums respected, no extras."""
    assert isinstance(value, dict), value
    props = schema["properties"]
    for key in schema["required"]:
        assert key in value, f"required `{key}` missing from {value}"
    for key, v in value.items():
        assert key in props, f"`{key}` is not in the schema"
        spec = props[key]
        kind = JSON_TYPES[spec["type"]]
        assert isinstance(v, kind) and not (spec["type"] != "boolean" and isinstance(v, bool)), (
            f"`{key}` = {v!r} is not a {spec['type']}"
        )
        if "enum" in spec:
            assert v in spec["enum"]
        if "minimum" in spec:
            assert spec["minimum"] <= v <= spec["maximum"]


@pytest.fixture(scope="module")
def client(sim):
    return sim.gateway.client()


def collect(stream) -> list[ChatCompletionChunk]:
    return list(stream)


# --- plain completions ---------------------------------------------------------------------------


def test_create_returns_a_typed_completion_with_content_and_usage(client):
    raw = client.chat.completions.with_raw_response.create(model=SIM_MODEL, messages=MESSAGES)
    completion = raw.parse()

    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.id
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == mock_text("primary", PROMPT)
    assert choice.finish_reason == "stop"
    expected = mock_usage(MESSAGES, choice.message.content)
    assert completion.usage is not None
    assert completion.usage.model_dump(include=set(expected)) == expected
    assert raw.headers["x-switchyard-provider"] == "primary"
    assert raw.headers["x-switchyard-attempts"] == f"primary/{SIM_MODEL}=ok"


def test_stream_with_include_usage_reassembles_content_and_ends_with_a_usage_chunk(client):
    raw = client.chat.completions.with_raw_response.create(
        model=SIM_MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-switchyard-provider"] == "primary"
    chunks = collect(raw.parse())

    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock_text("primary", PROMPT)
    # Content arrives in pieces, not as one buffered chunk.
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["stop"]
    # Exactly one usage chunk, the last, with no choices (OpenAI's include_usage shape).
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == [chunks[-1]]
    assert chunks[-1].choices == []
    expected = mock_usage(MESSAGES, text)
    assert chunks[-1].usage.model_dump(include=set(expected)) == expected


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = collect(
        client.chat.completions.create(model=SIM_MODEL, messages=MESSAGES, stream=True)
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock_text("primary", PROMPT)
    # The gateway asks upstream for usage for its own accounting; the caller did not ask.
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


# --- tools and structured output -----------------------------------------------------------------


def test_tool_call_arguments_are_json_matching_the_tool_schema(client):
    completion = client.chat.completions.create(
        model=SIM_MODEL,
        messages=[{"role": "user", "content": "Weather in Paris for three days?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert_matches_schema(
        json.loads(call.function.arguments), WEATHER_TOOL["function"]["parameters"]
    )


def test_streamed_tool_call_fragments_reassemble_to_valid_json_under_one_id(client):
    chunks = collect(
        client.chat.completions.create(
            model=SIM_MODEL,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            stream=True,
        )
    )

    fragments = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(fragments) > 2, "arguments should arrive in several fragments"
    assert {f.index for f in fragments} == {0}
    ids = {f.id for f in fragments if f.id}
    assert len(ids) == 1, f"one call, one id; got {ids}"
    assert fragments[0].id and fragments[0].function.name == "get_weather"
    arguments = "".join(f.function.arguments or "" for f in fragments if f.function)
    assert_matches_schema(json.loads(arguments), WEATHER_TOOL["function"]["parameters"])
    finishes = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finishes == ["tool_calls"]


def test_response_format_json_schema_content_has_the_schema_keys(client):
    completion = client.chat.completions.create(
        model=SIM_MODEL,
        messages=MESSAGES,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": ANSWER_SCHEMA, "strict": True},
        },
    )

    assert_matches_schema(json.loads(completion.choices[0].message.content), ANSWER_SCHEMA)


def test_response_format_json_object_content_is_a_json_object(client):
    completion = client.chat.completions.create(
        model=SIM_MODEL,
        messages=[{"role": "user", "content": "Answer in JSON."}],
        response_format={"type": "json_object"},
    )

    assert isinstance(json.loads(completion.choices[0].message.content), dict)


# --- passthrough ---------------------------------------------------------------------------------


def test_unknown_request_fields_reach_the_provider_untouched(sim):
    recorder = sim.mocks["recorder"]
    before = recorder.stats()["requests"]
    sim.gateway.client().chat.completions.create(
        model="passthrough",
        messages=MESSAGES,
        extra_body={"my_custom_field": {"x": 1}},
    )

    stats = recorder.stats()
    assert stats["requests"] == before + 1
    sent = stats["last_request"]
    assert sent["my_custom_field"] == {"x": 1}
    assert sent["messages"] == MESSAGES
    assert sent["model"] == SIM_MODEL  # the deployment's model, not the alias
    # The provider's key goes upstream, never the caller's.
    assert stats["last_authorization"] == "Bearer sk-test-recorder"


# --- errors --------------------------------------------------------------------------------------


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)

    assert info.value.status_code == 404
    assert info.value.code == "model_not_found"
    assert "no-such-model" in info.value.message


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param([], id="empty-messages"),
        pytest.param([{"role": "wizard", "content": "hi"}], id="unknown-role"),
    ],
)
def test_malformed_request_is_a_bad_request(client, messages):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=SIM_MODEL, messages=messages)

    assert info.value.status_code == 400
    assert info.value.type == "invalid_request_error"


def test_all_deployments_rate_limited_is_a_rate_limit_error_with_the_provider_message(client):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="rate-limited", messages=MESSAGES)

    err = info.value
    assert err.status_code == 429
    # The last provider's own words, not a gateway paraphrase.
    assert err.body["message"] == "simulated 429 from limited-b"
    assert err.type == "rate_limit_error"
    assert err.response.headers["retry-after"] == "1"
    assert err.response.headers["x-switchyard-attempts"] == (
        f"limited-a/{SIM_MODEL}=429, limited-b/{SIM_MODEL}=429"
    )


def test_a_deployment_that_said_retry_after_is_skipped_until_then(client):
    # limited-a and limited-b both answer 429 with `retry-after: 1`. Within that second the
    # gateway does not send limited-a anything; limited-b, the last hope, is still tried.
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="rate-limited", messages=MESSAGES)
    assert info.value.response.headers["x-switchyard-attempts"] == (
        f"limited-a/{SIM_MODEL}=circuit_open, limited-b/{SIM_MODEL}=429"
    )


def test_503_on_primary_fails_over_to_backup(client):
    raw = client.chat.completions.with_raw_response.create(model="failover-503", messages=MESSAGES)

    assert raw.parse().choices[0].message.content == mock_text("backup", PROMPT)
    assert raw.headers["x-switchyard-provider"] == "backup"
    assert raw.headers["x-switchyard-attempts"] == f"down/{SIM_MODEL}=503, backup/{SIM_MODEL}=ok"


# --- streams that break --------------------------------------------------------------------------


def test_stream_cut_after_first_content_raises_while_iterating(client):
    stream = client.chat.completions.create(model="cut-midstream", messages=MESSAGES, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    # Committed: the content before the cut was delivered, then the break was reported
    # instead of a silently truncated "complete" stream.
    assert received == ["Hello ", "from "]
    assert not isinstance(info.value, openai.APIStatusError)


@pytest.mark.parametrize(
    ("model", "primary_outcome"),
    [
        pytest.param("failover-503", ("down", "503"), id="primary-503"),
        pytest.param("cut-before-content", ("early-cut", "reset"), id="primary-cut-before-content"),
    ],
)
def test_stream_failing_before_first_content_fails_over_to_a_complete_stream(
    client, model, primary_outcome
):
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = collect(raw.parse())

    primary, outcome = primary_outcome
    if outcome == "503":
        # Refused before its stream opened: the headers name the backup and the refusal.
        assert raw.headers["x-switchyard-provider"] == "backup"
        assert raw.headers["x-switchyard-attempts"] == (
            f"{primary}/{SIM_MODEL}={outcome}, backup/{SIM_MODEL}=ok"
        )
    else:
        # Cut after its stream opened: the headers went out naming it; the failover is
        # invisible in the body (one id on every chunk).
        assert raw.headers["x-switchyard-provider"] == primary
        assert raw.headers["x-switchyard-attempts"] == f"{primary}/{SIM_MODEL}=ok"
    assert len({c.id for c in chunks}) == 1
    # Only the backup's stream: one role chunk, all the content, one finish, usage last.
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock_text("backup", PROMPT)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def sse(*events: dict | str) -> bytes:
    return b"".join(
        b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events
    )


def test_chunks_read_together_with_an_in_stream_error_are_delivered_before_it(
    procs, tmp_path, scripted_upstream
):
    # The upstream's content chunks and its in-band error arrive in one read. What the caller
    # sees must not depend on how TCP split the bytes: the content first, then the error.
    def chunk(delta, finish=None):
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": SIM_MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    upstream = scripted_upstream(
        sse(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Hello "}),
            chunk({"content": "world"}),
            {"error": {"message": "overloaded mid-stream", "type": "server_error", "code": None}},
        )
    )
    gateway = start_gateway(
        procs,
        tmp_path,
        [Provider("scripted", upstream.url)],
        {SIM_MODEL: [("scripted", SIM_MODEL)]},
    )
    try:
        stream = gateway.client().chat.completions.create(
            model=SIM_MODEL, messages=MESSAGES, stream=True
        )
    except openai.APIStatusError as e:
        pytest.fail(
            f"the stream was refused with {e.status_code} ({e.message}) although the upstream "
            "sent content before its error"
        )
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for c in stream:
            if c.choices and c.choices[0].delta.content:
                received.append(c.choices[0].delta.content)

    assert received == ["Hello ", "world"]
    assert info.value.message == "overloaded mid-stream"

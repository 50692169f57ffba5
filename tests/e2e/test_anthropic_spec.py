"""The Anthropic adapter's upstream requests, validated against Anthropic's own OpenAPI spec.

Steady serves tests/specs/anthropic-openapi.json as it is: 400 to a request the spec
rejects outright, 200 otherwise, and for some mismatches (a oneOf no variant matches, a
number out of range, a string too long) only a diagnostic in its JSON log. So "valid" below
means status 200 *and* no diagnostics. A gateway provider of kind `anthropic` points at it:
every request an application sends to the gateway in OpenAI's shape reaches "Anthropic" as
the adapter translated it, and the gateway must parse the Message Steady generates back.
Steady does not stream SSE for this spec (its only 200 body is application/json).
"""

from __future__ import annotations

import json

import openai
import pytest
from openai.types.chat import ChatCompletion

from conftest import SPECS_DIR, Processes, Provider, http_post_json, start_gateway, start_steady

MODEL = "claude"
UPSTREAM_MODEL = "claude-sonnet-4-5"
PROVIDER = "anthropic-spec"
API_KEY = "sk-ant-spec-test"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
]
VALID = {
    "model": UPSTREAM_MODEL,
    "max_tokens": 16,
    "messages": [{"role": "user", "content": "Hello"}],
}
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The forecast for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def post_messages(steady, body: dict) -> tuple[int, dict, dict]:
    return http_post_json(steady.base_url + "/v1/messages", body)


@pytest.fixture(scope="module")
def steady(request):
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    steady = start_steady(procs, SPECS_DIR / "anthropic-openapi.json")
    # Steady must be validating before any result below means anything: a request without
    # the required `max_tokens` has to be refused. If not, every test here fails.
    body = {k: v for k, v in VALID.items() if k != "max_tokens"}
    status, _, answer = post_messages(steady, body)
    assert 400 <= status < 500, f"Steady accepted a request without max_tokens: {status} {answer}"
    assert "max_tokens" in str(answer)
    return steady


@pytest.fixture(scope="module")
def example(steady) -> dict:
    """The Message Steady generates for a valid request (the same for every request)."""
    status, _, body = post_messages(steady, VALID)
    assert status == 200, body
    assert body["type"] == "message" and body["content"], body
    return body


@pytest.fixture(scope="module")
def gateway(steady, tmp_path_factory, request):
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    provider = Provider(PROVIDER, steady.base_url, api_key=API_KEY, kind="anthropic")
    return start_gateway(
        procs,
        tmp_path_factory.mktemp("anthropic-spec"),
        [provider],
        {MODEL: [(PROVIDER, UPSTREAM_MODEL)]},
        failover={"max_attempts": 1},
    )


@pytest.fixture
def client(gateway):
    return gateway.client()


def new_events(steady, before: int, count: int = 1) -> list[dict]:
    events = steady.wait_for_requests(before + count)
    assert len(events) == before + count, events[before:]
    return events[before:]


def assert_steady_accepted_one_more(steady, before: int) -> dict:
    """Steady logged exactly one new request to /v1/messages, answered 200 with no
    diagnostics (not even info-level ones: those are spec violations Steady tolerates)."""
    (event,) = new_events(steady, before)
    assert event["request"]["path"] == "/v1/messages"
    assert event["response"]["status"] == 200, event
    assert event["diagnostics"] == [], event["diagnostics"]
    return event


def assert_parsed_like(completion: ChatCompletion, example: dict) -> None:
    """The gateway's completion is Steady's generated Message, translated."""
    assert isinstance(completion, ChatCompletion)
    assert completion.id == example["id"]
    assert completion.model == example["model"]
    (choice,) = completion.choices
    text = "".join(b["text"] for b in example["content"] if b["type"] == "text")
    assert choice.message.role == "assistant"
    assert choice.message.content == text
    expected_finish = {"end_turn": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
    assert choice.finish_reason == expected_finish.get(example["stop_reason"], "stop")
    u = example["usage"]
    prompt = (
        u["input_tokens"]
        + (u.get("cache_creation_input_tokens") or 0)
        + (u.get("cache_read_input_tokens") or 0)
    )
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt
    assert completion.usage.completion_tokens == u["output_tokens"]
    assert completion.usage.total_tokens == prompt + u["output_tokens"]


def create_through_gateway(client, steady, example, **kwargs) -> ChatCompletion:
    before = len(steady.request_events())
    raw = client.chat.completions.with_raw_response.create(model=MODEL, **kwargs)
    completion = raw.parse()
    assert raw.headers["x-switchyard-provider"] == PROVIDER
    assert raw.headers["x-switchyard-attempts"] == f"{PROVIDER}/{UPSTREAM_MODEL}=ok"
    assert_steady_accepted_one_more(steady, before)
    assert_parsed_like(completion, example)
    return completion


# --- Steady is a validating mock of this spec (negative controls) --------------------------------


def test_steady_rejects_a_request_without_max_tokens(steady):
    before = len(steady.request_events())
    body = {k: v for k, v in VALID.items() if k != "max_tokens"}
    status, headers, answer = post_messages(steady, body)

    assert status == 400
    assert headers.get("x-steady-request-valid") == "false"
    assert "max_tokens" in headers.get("x-steady-error-1-message", "")
    (event,) = new_events(steady, before)
    assert event["response"]["status"] == 400
    assert [(d["severity"], d["requestPath"]) for d in event["diagnostics"]] == [("error", "body")]
    assert "max_tokens" in event["diagnostics"][0]["message"]


def test_steady_flags_an_invalid_block_it_answers_200(steady):
    # A bmp image matches none of the content variants: Steady answers 200 and reports it
    # only in its log. That is why every check below also requires no diagnostics.
    before = len(steady.request_events())
    bmp = {"type": "base64", "media_type": "image/bmp", "data": "Qk0="}
    image = {"type": "image", "source": bmp}
    status, _, _ = post_messages(
        steady, {**VALID, "messages": [{"role": "user", "content": [image]}]}
    )

    assert status == 200
    (event,) = new_events(steady, before)
    assert any(
        d["requestPath"].startswith("body.messages.0.content") for d in event["diagnostics"]
    ), event["diagnostics"]


def test_steady_flags_an_out_of_range_value_it_answers_200(steady):
    before = len(steady.request_events())
    status, _, _ = post_messages(steady, {**VALID, "temperature": 1.5})

    assert status == 200
    (event,) = new_events(steady, before)
    assert [d["requestPath"] for d in event["diagnostics"]] == ["body.temperature"]


def test_a_spec_violation_forwarded_by_the_gateway_comes_back_as_a_bad_request(client, steady):
    # The adapter passes `top_k` through; a string is not an integer. Steady must refuse it
    # and the caller must hear so, with Steady's words.
    before = len(steady.request_events())
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES, extra_body={"top_k": "many"})

    assert info.value.status_code == 400
    (event,) = new_events(steady, before)
    assert event["response"]["status"] == 400
    assert [d["requestPath"] for d in event["diagnostics"]] == ["body.top_k"]


# --- what the gateway sends is valid, and what comes back is parsed ------------------------------


def test_plain_request_is_valid(client, steady, example):
    create_through_gateway(client, steady, example, messages=[MESSAGES[1]])


def test_system_and_multi_turn_request_is_valid(client, steady, example):
    create_through_gateway(
        client,
        steady,
        example,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Bonjour."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "user", "content": [{"type": "text", "text": "One word."}]},
        ],
        max_completion_tokens=64,
    )


@pytest.mark.parametrize(
    "tool_choice",
    [{"type": "function", "function": {"name": "get_weather"}}, "required", "auto", "none"],
    ids=["named", "required", "auto", "none"],
)
def test_tools_and_tool_choice_request_is_valid(client, steady, example, tool_choice):
    create_through_gateway(
        client,
        steady,
        example,
        messages=MESSAGES,
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        parallel_tool_calls=False,
    )


def test_tool_without_parameters_request_is_valid(client, steady, example):
    no_args = {"type": "function", "function": {"name": "get_time"}}
    create_through_gateway(client, steady, example, messages=MESSAGES, tools=[no_args])


def test_tool_round_trip_request_is_valid(client, steady, example):
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "19"}]},
        {"role": "user", "content": "Which is warmer?"},
    ]
    create_through_gateway(client, steady, example, messages=messages, tools=[WEATHER_TOOL])


def test_response_format_json_schema_request_is_valid(client, steady, example):
    create_through_gateway(
        client,
        steady,
        example,
        messages=MESSAGES,
        response_format={
            "type": "json_schema",
            "json_schema": {
                "name": "capital",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"capital": {"type": "string"}},
                    "required": ["capital"],
                    "additionalProperties": False,
                },
            },
        },
    )


def test_response_format_json_object_request_is_valid(client, steady, example):
    create_through_gateway(
        client, steady, example, messages=MESSAGES, response_format={"type": "json_object"}
    )


@pytest.mark.parametrize(
    "url",
    [f"data:image/png;base64,{PNG_B64}", "https://example.com/cat.png"],
    ids=["base64", "url"],
)
def test_image_request_is_valid(client, steady, example, url):
    create_through_gateway(
        client,
        steady,
        example,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image?"},
                    {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                ],
            }
        ],
    )


@pytest.mark.parametrize("stop", ["END", ["END", "STOP"]], ids=["one", "many"])
def test_stop_sequences_request_is_valid(client, steady, example, stop):
    create_through_gateway(client, steady, example, messages=MESSAGES, stop=stop)


def test_sampling_and_user_request_is_valid(client, steady, example):
    create_through_gateway(
        client,
        steady,
        example,
        messages=MESSAGES,
        temperature=0.2,
        top_p=0.9,
        max_tokens=32,
        user="e2e-user",
        extra_body={"top_k": 5},
    )


# --- OpenAI-valid requests outside Anthropic's ranges: translated validly, or refused ------------


def _tool_history(call_id: str) -> list[dict]:
    call = {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": "21"},
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        # OpenAI allows temperature up to 2; Anthropic's maximum is 1.
        pytest.param({"messages": MESSAGES, "temperature": 1.5}, id="temperature-1.5"),
        # OpenAI's `parameters` is any JSON Schema object; Anthropic requires `type: object`.
        pytest.param(
            {
                "messages": MESSAGES,
                "tools": [{"type": "function", "function": {"name": "get_time", "parameters": {}}}],
            },
            id="tool-parameters-empty-object",
        ),
        # Tool-call ids from other providers (here Kimi's style) are free strings in OpenAI's
        # API; Anthropic's tool_use ids must match ^[a-zA-Z0-9_-]+$.
        pytest.param(
            {"messages": _tool_history("functions.get_weather:0"), "tools": [WEATHER_TOOL]},
            id="foreign-tool-call-id",
        ),
        # OpenAI's `user` has no length limit; Anthropic's metadata.user_id has 512.
        pytest.param({"messages": MESSAGES, "user": "u" * 600}, id="user-600-chars"),
    ],
)
def test_openai_valid_request_never_reaches_anthropic_invalid(client, steady, example, kwargs):
    # The right behaviours: translate into a valid request (clamp, default, rewrite the id
    # consistently, ...), or refuse it as untranslatable (400 unsupported_by_provider, which
    # lets a deployment of another format take it). Wrong: forwarding a request the provider
    # refuses, which is a non-retryable 400 that never reaches a backup.
    before = len(steady.request_events())
    try:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, **kwargs)
    except openai.BadRequestError as e:
        assert e.code == "unsupported_by_provider", (e.code, e.message)
        assert len(steady.request_events()) == before, "refused, yet it reached the provider"
        return
    sent = steady.wait_for_requests(before + 1)[before:]
    assert len(sent) == 1
    assert sent[0]["response"]["status"] == 200 and sent[0]["diagnostics"] == [], (
        f"the gateway forwarded a request Anthropic's spec rejects: {sent[0]['diagnostics']}"
    )
    assert_parsed_like(raw.parse(), example)


# --- streaming -----------------------------------------------------------------------------------


def test_streaming_request_is_valid_and_a_json_answer_is_not_a_silent_empty_stream(client, steady):
    # Steady answers a streaming request with the JSON Message (it has no SSE for this
    # spec). The request must be valid. What the caller then gets must be the provider's
    # fault (a 5xx, or the Message's content as a stream), never a "successful" stream with
    # nothing in it nor a 4xx blaming the caller. (Today: 502 upstream_error, attempt
    # labelled `reset`, "the stream ended without message_stop".)
    before = len(steady.request_events())
    chunks = []
    error: Exception | None = None
    try:
        stream = client.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        for chunk in stream:
            chunks.append(chunk)
    except openai.APIError as e:
        error = e

    assert_steady_accepted_one_more(steady, before)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert error is not None or content, (
        f"the stream ended cleanly with no content: {len(chunks)} chunks"
    )
    if isinstance(error, openai.APIStatusError):
        assert error.status_code >= 500, (error.status_code, error.message)

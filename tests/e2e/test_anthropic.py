"""The Anthropic Messages adapter through the official OpenAI Python SDK.

An application speaks OpenAI chat completions to the gateway; the deployment is a provider
of `kind = "anthropic"`, here a simulated provider speaking the Messages API
(`switchyard mock --format anthropic`, which validates requests the way the real API does:
`max_tokens` required, only user/assistant turns, every `tool_use` answered by a
`tool_result` at the start of the next turn). Its `/_mock/stats` shows the Anthropic body
the gateway sent, so each test checks both what the caller sees and the translation.
"""

from __future__ import annotations

import json
import math

import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conftest import Processes, Provider, start_gateway, start_mock
from test_openai_sdk import ANSWER_SCHEMA, WEATHER_TOOL, assert_matches_schema

CLAUDE = "claude-sonnet-4-5"  # the deployment's upstream model name
MODEL = "claude"  # the alias callers use: only the Anthropic deployment
LIMITED = "claude-limited"  # only an Anthropic deployment that always answers 429
WITH_BACKUP = "claude-then-openai"  # the Anthropic deployment, then an OpenAI-format one
BACKUP_MODEL = "gpt-4o-mini"
API_KEY = "sk-ant-e2e-key"

PROMPT = "What is the capital of France?"
MESSAGES = [{"role": "user", "content": PROMPT}]
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)


# Misbehaving Anthropic-format providers: name -> --fault. Stream faults count SSE events:
# message_start, content_block_start, ping, then one text_delta a word.
FAULTY = {
    "claude-cut": "cut_after_chunks=5",  # ends cleanly after "Hello ", "from ", no message_stop
    "claude-early-cut": "cut_after_chunks=3",  # ends before any content
    "claude-stream-error": "error_after_chunks=5",  # an `event: error` after two words
    "claude-529": "status=529",  # Anthropic's overloaded_error
    # HTTP 200, message_start, then `event: error` (overloaded_error) before any content
    "claude-overloaded-stream": "error_after_chunks=1",
    "claude-malformed": "malformed",
}


class World:
    def __init__(self, gateway, mocks):
        self.gateway = gateway
        self.mocks = mocks
        self.claude = mocks["claude"]
        self.limited = mocks["claude-429"]
        self.backup = mocks["oa-backup"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, request) -> World:
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    anthropic = {"claude": "", "claude-429": "status=429", **FAULTY}
    mocks = {name: start_mock(procs, name, f, fmt="anthropic") for name, f in anthropic.items()}
    mocks["oa-backup"] = start_mock(procs, "oa-backup")
    providers = [
        Provider(name, mocks[name].url, api_key=API_KEY, kind="anthropic") for name in anthropic
    ]
    providers.append(Provider("oa-backup", mocks["oa-backup"].url, api_key="sk-test-backup"))
    backup = ("oa-backup", BACKUP_MODEL)
    models = {
        MODEL: [("claude", CLAUDE)],
        LIMITED: [("claude-429", CLAUDE)],
        WITH_BACKUP: [("claude", CLAUDE), backup],
        "cut-midstream": [("claude-cut", CLAUDE), backup],
        "cut-before-content": [("claude-early-cut", CLAUDE), backup],
        "stream-error": [("claude-stream-error", CLAUDE), backup],
        "overloaded": [("claude-529", CLAUDE), backup],
        "overloaded-stream": [("claude-overloaded-stream", CLAUDE), backup],
        "malformed": [("claude-malformed", CLAUDE)],
    }
    gateway = start_gateway(procs, tmp_path_factory.mktemp("anthropic"), providers, models)
    return World(gateway, mocks)


@pytest.fixture(scope="module")
def client(world):
    return world.gateway.client()


def claude_text(prompt: str) -> str:
    """What the simulated Anthropic provider named `claude` answers to `prompt`."""
    return f"Hello from claude! You said: {prompt}"


def anthropic_input_tokens(sent: dict) -> int:
    """The `input_tokens` the simulated provider reports for the Anthropic body `sent`:
    4 per message plus ~4 characters a token of the message's compact JSON content."""
    return sum(
        4 + math.ceil(len(json.dumps(m["content"], separators=(",", ":"))) / 4)
        for m in sent["messages"]
    )


def last_sent(mock) -> dict:
    return mock.stats()["last_request"]


def stream_chunks(client, **kwargs) -> list[ChatCompletionChunk]:
    return list(client.chat.completions.create(model=MODEL, stream=True, **kwargs))


def finishes(chunks) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


# --- plain completions ---------------------------------------------------------------------------


def test_create_returns_content_usage_and_finish_reason(world, client):
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    completion = raw.parse()

    assert isinstance(completion, ChatCompletion)
    assert completion.object == "chat.completion"
    assert completion.id.startswith("msg_")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == claude_text(PROMPT)
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"  # end_turn
    assert raw.headers["x-switchyard-provider"] == "claude"
    assert raw.headers["x-switchyard-attempts"] == f"claude/{CLAUDE}=ok"

    stats = world.claude.stats()
    sent = stats["last_request"]
    assert sent["model"] == CLAUDE
    assert sent["max_tokens"] >= 1  # required by Anthropic, absent from the OpenAI request
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    assert "stream" not in sent or sent["stream"] is False
    headers = stats["last_headers"]
    assert headers["x-api-key"] == API_KEY
    assert headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers, "the caller's bearer key must not go upstream"

    prompt = anthropic_input_tokens(sent)
    completion_tokens = len(choice.message.content.split(" "))
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == prompt
    assert completion.usage.completion_tokens == completion_tokens
    assert completion.usage.total_tokens == prompt + completion_tokens


def test_max_completion_tokens_becomes_max_tokens_and_a_cut_answer_is_length(world, client):
    completion = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_completion_tokens=3
    )

    assert last_sent(world.claude)["max_tokens"] == 3
    assert completion.choices[0].message.content == "Hello from claude!"
    assert completion.choices[0].finish_reason == "length"  # max_tokens


def test_stream_with_include_usage_reassembles_content_and_ends_with_a_usage_chunk(world, client):
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-switchyard-provider"] == "claude"
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())

    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    sent = last_sent(world.claude)
    assert sent["stream"] is True
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == claude_text(PROMPT)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    assert finishes(chunks) == ["stop"]
    assert len({c.id for c in chunks}) == 1, "every chunk of one stream has the message id"
    # Exactly one usage chunk, the last, with no choices; usage from message_start
    # (input_tokens) and message_delta (output_tokens) combined.
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == [chunks[-1]]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.prompt_tokens == anthropic_input_tokens(sent) > 0
    assert usage.completion_tokens == len(text.split(" "))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_stream_cut_by_max_tokens_finishes_with_length(world, client):
    chunks = stream_chunks(client, messages=MESSAGES, max_tokens=3)

    assert last_sent(world.claude)["max_tokens"] == 3
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from claude!"
    assert finishes(chunks) == ["length"]


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = stream_chunks(client, messages=MESSAGES)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == claude_text(PROMPT)
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "no choice-less usage chunk when not asked for"
    assert chunks[-1].choices[0].finish_reason == "stop"


# --- tools ---------------------------------------------------------------------------------------


def test_tool_call_arguments_are_json_matching_the_tool_schema(world, client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris for three days?"}],
        tools=[WEATHER_TOOL],
        tool_choice="auto",
    )

    sent = last_sent(world.claude)
    fn = WEATHER_TOOL["function"]
    assert sent["tools"] == [
        {"name": fn["name"], "description": fn["description"], "input_schema": fn["parameters"]}
    ]
    assert sent["tool_choice"] == {"type": "auto"}

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"  # tool_use
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id.startswith("toolu_")
    assert call.function.name == "get_weather"
    assert_matches_schema(json.loads(call.function.arguments), fn["parameters"])


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "expected"),
    [
        pytest.param("required", None, {"type": "any"}, id="required-is-any"),
        pytest.param(
            {"type": "function", "function": {"name": "get_weather"}},
            False,
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            id="named-no-parallel",
        ),
        pytest.param("none", None, {"type": "none"}, id="none"),
    ],
)
def test_tool_choice_translation(world, client, tool_choice, parallel, expected):
    kwargs = {"parallel_tool_calls": parallel} if parallel is not None else {}
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice=tool_choice,
        **kwargs,
    )

    assert last_sent(world.claude)["tool_choice"] == expected
    choice = completion.choices[0]
    if expected["type"] == "none":
        assert choice.finish_reason == "stop" and choice.message.tool_calls is None
    else:
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls[0].function.name == "get_weather"


def test_streamed_tool_call_fragments_reassemble_under_one_id(client):
    chunks = stream_chunks(
        client,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    fragments = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(fragments) > 2, "arguments should arrive in several fragments"
    assert {f.index for f in fragments} == {0}
    ids = {f.id for f in fragments if f.id}
    assert len(ids) == 1, f"one call, one id; got {ids}"
    assert fragments[0].id and fragments[0].id.startswith("toolu_")
    assert fragments[0].type == "function"
    assert fragments[0].function.name == "get_weather"
    assert all(f.function.name is None for f in fragments[1:]), "the name is sent once"
    arguments = "".join(f.function.arguments or "" for f in fragments if f.function)
    assert_matches_schema(json.loads(arguments), WEATHER_TOOL["function"]["parameters"])
    assert finishes(chunks) == ["tool_calls"]


def test_tool_round_trip_sends_the_result_right_after_the_tool_use_turn(world, client):
    question = {"role": "user", "content": "Weather in Paris for three days?"}
    first = client.chat.completions.create(
        model=MODEL, messages=[question], tools=[WEATHER_TOOL], tool_choice="required"
    )
    call = first.choices[0].message.tool_calls[0]
    result = '{"celsius": 21, "sky": "clear"}'

    # Tools stay declared (the Messages API wants them when tool blocks are present);
    # tool_choice none so the model answers in text.
    second = client.chat.completions.create(
        model=MODEL,
        messages=[
            question,
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("Hello from claude!")
    sent = last_sent(world.claude)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [
        {
            "type": "tool_use",
            "id": call.id,
            "name": "get_weather",
            "input": json.loads(call.function.arguments),
        }
    ]
    assert sent[2]["content"][0]["type"] == "tool_result"
    assert sent[2]["content"][0]["tool_use_id"] == call.id
    assert sent[2]["content"][0]["content"] == [{"type": "text", "text": result}]


def test_parallel_tool_results_share_one_user_turn_before_the_next_text(world, client):
    def call(call_id: str, city: str) -> dict:
        arguments = json.dumps({"city": city, "days": 1, "unit": "celsius", "detailed": False})
        return {
            "id": call_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": arguments},
        }

    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [call("call_a", "Paris"), call("call_b", "Rome")],
            },
            {"role": "tool", "tool_call_id": "call_a", "content": "21"},
            {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "19"}]},
            {"role": "user", "content": "Which is warmer?"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="none",
    )

    # The simulated provider refuses a tool_use not answered at the start of the next turn,
    # so an answer at all means the order is right; the body shows the shape.
    assert completion.choices[0].message.content == claude_text("Which is warmer?")
    sent = last_sent(world.claude)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert [b["type"] for b in sent[1]["content"]] == ["tool_use", "tool_use"]
    assert [b["id"] for b in sent[1]["content"]] == ["call_a", "call_b"]

    def result(call_id: str, text: str) -> dict:
        content = [{"type": "text", "text": text}]
        return {"type": "tool_result", "tool_use_id": call_id, "content": content}

    assert sent[2]["content"] == [
        result("call_a", "21"),
        result("call_b", "19"),
        {"type": "text", "text": "Which is warmer?"},
    ]


# --- structured output, system prompt, images ----------------------------------------------------


def test_response_format_json_schema_becomes_output_config(world, client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": ANSWER_SCHEMA, "strict": True},
        },
    )

    assert last_sent(world.claude)["output_config"] == {
        "format": {"type": "json_schema", "schema": ANSWER_SCHEMA}
    }
    assert_matches_schema(json.loads(completion.choices[0].message.content), ANSWER_SCHEMA)
    assert completion.choices[0].finish_reason == "stop"


def test_system_and_developer_messages_are_hoisted_into_system(world, client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": PROMPT},
        ],
    )

    sent = last_sent(world.claude)
    assert sent["system"] == [
        {"type": "text", "text": "You are terse."},
        {"type": "text", "text": "Answer in French."},
    ]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}]
    assert completion.choices[0].message.content == claude_text(PROMPT)


def test_multi_turn_keeps_alternating_turns(world, client):
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "First question."},
            {"role": "user", "content": PROMPT},
        ],
    )

    sent = last_sent(world.claude)["messages"]
    # Consecutive user messages share one turn (the API wants alternation).
    assert sent == [
        {"role": "user", "content": [{"type": "text", "text": "Hi."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Hello! How can I help?"}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "First question."},
                {"type": "text", "text": PROMPT},
            ],
        },
    ]
    assert completion.choices[0].message.content.startswith("Hello from claude!")


def test_image_data_url_becomes_a_base64_image_block_and_url_a_url_block(world, client):
    client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these images?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                ],
            }
        ],
    )

    blocks = last_sent(world.claude)["messages"][0]["content"]
    assert blocks == [
        {"type": "text", "text": "What is in these images?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


def test_sampling_stop_and_user_are_translated(world, client):
    client.chat.completions.create(
        model=MODEL,
        messages=MESSAGES,
        temperature=0.3,
        top_p=0.9,
        stop=["END", "\n\n"],
        user="e2e-user-1",
    )

    sent = last_sent(world.claude)
    assert sent["temperature"] == 0.3
    assert sent["top_p"] == 0.9
    assert sent["stop_sequences"] == ["END", "\n\n"]
    assert sent["metadata"] == {"user_id": "e2e-user-1"}
    assert "stop" not in sent and "user" not in sent


# --- errors --------------------------------------------------------------------------------------


def test_provider_429_is_a_rate_limit_error_with_the_provider_message(world, client):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=LIMITED, messages=MESSAGES)

    err = info.value
    assert err.status_code == 429
    assert err.body["message"] == "simulated 429 from claude-429"
    assert err.type == "rate_limit_error"
    assert err.response.headers["retry-after"] == "1"
    assert err.response.headers["x-switchyard-attempts"] == f"claude-429/{CLAUDE}=429"


def test_provider_429_on_a_stream_is_a_rate_limit_error(client):
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=LIMITED, messages=MESSAGES, stream=True)

    assert info.value.body["message"] == "simulated 429 from claude-429"


UNTRANSLATABLE = [
    pytest.param({"messages": MESSAGES, "n": 2}, "`n`", id="n-2"),
    pytest.param({"messages": MESSAGES, "logprobs": True}, "logprobs", id="logprobs"),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Transcribe this."},
                        {
                            "type": "input_audio",
                            "input_audio": {"data": "UklGRg==", "format": "wav"},
                        },
                    ],
                }
            ]
        },
        "input_audio",
        id="input-audio-part",
    ),
    pytest.param(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
                    ],
                }
            ]
        },
        "image/bmp",
        id="bmp-image",
    ),
]


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(("kwargs", "named"), UNTRANSLATABLE)
def test_untranslatable_request_is_a_bad_request_naming_the_problem(
    world, client, kwargs, named, stream
):
    before = world.claude.stats()["requests"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, stream=stream, **kwargs)

    err = info.value
    assert err.status_code == 400
    assert err.type == "invalid_request_error"
    assert named in err.message, err.message
    assert "anthropic" in err.message.lower(), err.message
    assert err.response.headers["x-switchyard-attempts"] == f"claude/{CLAUDE}=untranslatable"
    # Refused by the gateway: nothing reached the provider.
    assert world.claude.stats()["requests"] == before


@pytest.mark.parametrize(("kwargs", "named"), UNTRANSLATABLE)
def test_untranslatable_request_is_served_by_an_openai_backup(world, client, kwargs, named):
    before = world.claude.stats()["requests"]
    raw = client.chat.completions.with_raw_response.create(model=WITH_BACKUP, **kwargs)
    completion = raw.parse()

    assert raw.headers["x-switchyard-provider"] == "oa-backup"
    assert raw.headers["x-switchyard-attempts"] == (
        f"claude/{CLAUDE}=untranslatable, oa-backup/{BACKUP_MODEL}=ok"
    )
    assert completion.choices[0].message.content.startswith("Hello from oa-backup!")
    assert world.claude.stats()["requests"] == before
    # The backup got the caller's request as it was, not a degraded copy.
    sent = last_sent(world.backup)
    assert sent["messages"] == kwargs["messages"]
    assert sent.get("n") == kwargs.get("n")


def test_audio_output_request_is_refused_not_silently_answered_in_text(world, client):
    # The Messages API cannot answer in audio. The adapter's own rule (request.rs: "What
    # has no equivalent is refused, never silently dropped") says this is untranslatable:
    # a 400 here, and with a backup deployment the backup (which can) serves it.
    before = world.claude.stats()["requests"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
        )

    assert info.value.code == "unsupported_by_provider", info.value.message
    assert "audio" in info.value.message
    assert world.claude.stats()["requests"] == before


def test_untranslatable_stream_is_served_by_an_openai_backup(world, client):
    raw = client.chat.completions.with_raw_response.create(
        model=WITH_BACKUP, messages=MESSAGES, n=2, stream=True
    )
    chunks = list(raw.parse())

    assert raw.headers["x-switchyard-attempts"] == (
        f"claude/{CLAUDE}=untranslatable, oa-backup/{BACKUP_MODEL}=ok"
    )
    text = "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices and c.choices[0].index == 0
    )
    assert text.startswith("Hello from oa-backup!")


# --- provider failures ---------------------------------------------------------------------------


def test_529_overloaded_fails_over_to_the_backup(client):
    raw = client.chat.completions.with_raw_response.create(model="overloaded", messages=MESSAGES)

    assert raw.parse().choices[0].message.content.startswith("Hello from oa-backup!")
    assert raw.headers["x-switchyard-attempts"] == (
        f"claude-529/{CLAUDE}=529, oa-backup/{BACKUP_MODEL}=ok"
    )


def test_overloaded_error_event_before_content_fails_over_to_the_backup(client):
    # The Messages API can answer 200 and then send `event: error` (overloaded_error) first:
    # nothing was delivered yet, so the next deployment may still take the request.
    raw = client.chat.completions.with_raw_response.create(
        model="overloaded-stream", messages=MESSAGES, stream=True
    )
    chunks = list(raw.parse())

    # The headers went out when Claude's stream opened; the failover after them is
    # invisible in the body: one id on every chunk, the backup's answer.
    assert raw.headers["x-switchyard-provider"] == "claude-overloaded-stream"
    assert raw.headers["x-switchyard-attempts"] == f"claude-overloaded-stream/{CLAUDE}=ok"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from oa-backup! You said: {PROMPT}"
    assert len({c.id for c in chunks}) == 1


def test_malformed_anthropic_body_is_a_bad_gateway(client):
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="malformed", messages=MESSAGES)

    assert info.value.status_code == 502
    assert info.value.response.headers["x-switchyard-attempts"] == (
        f"claude-malformed/{CLAUDE}=malformed"
    )


def test_stream_cut_before_message_stop_raises_after_the_content_it_had(client):
    stream = client.chat.completions.create(model="cut-midstream", messages=MESSAGES, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    # Committed after the first content: no failover, no silently "complete" stream.
    assert received == ["Hello ", "from "]
    assert not isinstance(info.value, openai.APIStatusError)


def test_stream_cut_before_content_fails_over_to_a_complete_stream(client):
    raw = client.chat.completions.with_raw_response.create(
        model="cut-before-content",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(raw.parse())

    # The headers went out when Claude's stream opened, before it was cut.
    assert raw.headers["x-switchyard-provider"] == "claude-early-cut"
    assert raw.headers["x-switchyard-attempts"] == f"claude-early-cut/{CLAUDE}=ok"
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"], "one role chunk: the failover is invisible"
    assert len({c.id for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"Hello from oa-backup! You said: {PROMPT}"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_in_stream_error_event_is_raised_after_the_content_before_it(client):
    stream = client.chat.completions.create(model="stream-error", messages=MESSAGES, stream=True)
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    assert received == ["Hello ", "from "]
    assert info.value.message == "simulated in-stream error"


# --- Anthropic answers the simulated provider does not produce (scripted upstream) ---------------


def anthropic_gateway(procs, tmp_path, upstream):
    return start_gateway(
        procs,
        tmp_path,
        [Provider("scripted", upstream.root, api_key=API_KEY, kind="anthropic")],
        {MODEL: [("scripted", CLAUDE)]},
    )


def named_sse(*events: dict) -> bytes:
    return b"".join(
        f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events
    )


def tool_use(tool_id: str, tool_input: dict) -> dict:
    return {"type": "tool_use", "id": tool_id, "name": "get_weather", "input": tool_input}


def block_start(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def text_delta(index: int, text: str) -> dict:
    delta = {"type": "text_delta", "text": text}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def json_delta(index: int, partial: str) -> dict:
    delta = {"type": "input_json_delta", "partial_json": partial}
    return {"type": "content_block_delta", "index": index, "delta": delta}


CACHED_USAGE = {
    "input_tokens": 3,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 10,
    "output_tokens": 7,
}


def test_parallel_tool_uses_thinking_and_cached_usage_are_translated(
    procs, tmp_path, scripted_upstream
):
    body = {
        "id": "msg_scripted",
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": [
            {"type": "thinking", "thinking": "Two cities.", "signature": "c2ln"},
            {"type": "text", "text": "Checking both."},
            tool_use("toolu_a", {"city": "Paris"}),
            tool_use("toolu_b", {"city": "Rome"}),
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": CACHED_USAGE,
    }
    upstream = scripted_upstream(json.dumps(body).encode(), "application/json")
    gateway = anthropic_gateway(procs, tmp_path, upstream)

    completion = gateway.client().chat.completions.create(
        model=MODEL, messages=MESSAGES, tools=[WEATHER_TOOL]
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Checking both."
    assert (choice.message.model_extra or {}).get("reasoning_content") == "Two cities."
    calls = [
        (c.id, c.function.name, json.loads(c.function.arguments))
        for c in choice.message.tool_calls
    ]
    assert calls == [
        ("toolu_a", "get_weather", {"city": "Paris"}),
        ("toolu_b", "get_weather", {"city": "Rome"}),
    ]
    # OpenAI's prompt_tokens include cached input; Anthropic's input_tokens do not.
    usage = completion.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (18, 7, 25)
    assert usage.prompt_tokens_details.cached_tokens == 10


def test_streamed_parallel_tool_uses_get_their_own_indices(procs, tmp_path, scripted_upstream):
    start_usage = {**CACHED_USAGE, "output_tokens": 1}
    upstream = scripted_upstream(
        named_sse(
            {
                "type": "message_start",
                "message": {
                    "id": "msg_scripted",
                    "type": "message",
                    "role": "assistant",
                    "model": CLAUDE,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                },
            },
            block_start(0, {"type": "text", "text": ""}),
            {"type": "ping"},
            text_delta(0, "Checking "),
            text_delta(0, "both."),
            {"type": "content_block_stop", "index": 0},
            block_start(1, tool_use("toolu_a", {})),
            json_delta(1, ""),
            json_delta(1, '{"city": '),
            json_delta(1, '"Paris"}'),
            {"type": "content_block_stop", "index": 1},
            block_start(2, tool_use("toolu_b", {})),
            json_delta(2, '{"city":'),
            json_delta(2, ' "Rome"}'),
            {"type": "content_block_stop", "index": 2},
            {
                "type": "message_delta",
                "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                "usage": {"output_tokens": 7},
            },
            {"type": "message_stop"},
        )
    )
    gateway = anthropic_gateway(procs, tmp_path, upstream)

    chunks = list(
        gateway.client().chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Checking both."
    fragments = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    by_index: dict[int, list] = {}
    for f in fragments:
        by_index.setdefault(f.index, []).append(f)
    assert sorted(by_index) == [0, 1]
    for index, (tool_id, city) in enumerate([("toolu_a", "Paris"), ("toolu_b", "Rome")]):
        frags = by_index[index]
        assert [f.id for f in frags if f.id] == [tool_id]
        assert frags[0].function.name == "get_weather"
        arguments = "".join(f.function.arguments or "" for f in frags)
        assert json.loads(arguments) == {"city": city}
    assert finishes(chunks) == ["tool_calls"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (18, 7, 25)
    assert usage.prompt_tokens_details.cached_tokens == 10

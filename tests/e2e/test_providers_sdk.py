"""Every provider wire format through the official OpenAI Python SDK.

One gateway serves one model per wire format (`via-openai`, `via-azure`, `via-anthropic`,
`via-gemini`, `via-cohere`, `via-bedrock`), each deployed on a simulated provider speaking
that format (`switchyard mock --format ...`), plus one model per format whose provider always
answers 429 (`via-<format>-429`). The same application code (the OpenAI SDK, no retries) runs
against each, and must see the same OpenAI answers whatever the provider speaks.

Bedrock is included only when `switchyard mock --format bedrock` starts; otherwise its
parametrizations are skipped, saying why. If that mock starts but the gateway will not take
a kind `bedrock` provider, the other formats run on a gateway without it and the Bedrock
tests fail with the gateway's error. Converse cannot express `tool_choice: "none"` once the
conversation holds tool calls, so Bedrock's tool round trip is tested with `auto`, and `none`
there must be an honest 400.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from conftest import (
    SWITCHYARD_BIN,
    Gateway,
    Mock,
    Processes,
    _toml_str,
    start_mock,
)
from test_openai_sdk import ANSWER_SCHEMA, WEATHER_TOOL, assert_matches_schema

FORMATS = ["openai", "azure", "anthropic", "gemini", "cohere", "bedrock"]

# The upstream model (for Azure: the deployment name) each format's deployment names.
UPSTREAM = {
    "openai": "gpt-4o-mini",
    "azure": "e2e-gpt-4o-mini-deployment",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-flash",
    "cohere": "command-a-03-2025",
    "bedrock": "anthropic.claude-3-5-haiku-20241022-v1:0",
}

BEDROCK_KEYS = {
    "region": "us-east-1",
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}

PROMPT = "What is the capital of France?"
MESSAGES = [{"role": "user", "content": PROMPT}]
# A 1x1 PNG.
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQ"
    "AAAABJRU5ErkJggg=="
)
WEATHER_SCHEMA = WEATHER_TOOL["function"]["parameters"]
FORCE_WEATHER = {"type": "function", "function": {"name": "get_weather"}}


def mock_name(fmt: str) -> str:
    return f"mock-{fmt}"


def limited_name(fmt: str) -> str:
    return f"limited-{fmt}"


def model(fmt: str) -> str:
    return f"via-{fmt}"


def limited_model(fmt: str) -> str:
    return f"via-{fmt}-429"


def expected_text(fmt: str, prompt: str = PROMPT) -> str:
    """What the simulated provider of `fmt` answers to the user message `prompt`."""
    return f"Hello from {mock_name(fmt)}! You said: {prompt}"


# --- the world -----------------------------------------------------------------------------------


def probe_mock_format(fmt: str, timeout: float = 10.0) -> str | None:
    """None when `switchyard mock --format fmt` starts; otherwise why not."""
    procs = Processes()
    argv = [str(SWITCHYARD_BIN), "mock", "--format", fmt, "--addr", "127.0.0.1:0"]
    proc = procs.start(argv, f"probe mock {fmt}")
    try:
        proc.wait_for(r"switchyard mock listening: http://127\.0\.0\.1:\d+", timeout=timeout)
        return None
    except (RuntimeError, TimeoutError):
        said = proc.output(last=1).strip() or "no output"
        return f"no {fmt} simulated provider yet (`switchyard mock --format {fmt}`: {said})"
    finally:
        procs.stop_all()


def provider_block(fmt: str, name: str, mock: Mock) -> list[str]:
    # Each format's config `kind` has the format's name.
    out = ["", "[[providers]]", f"name = {_toml_str(name)}", f"kind = {_toml_str(fmt)}"]
    out.append(f"base_url = {_toml_str(mock.url)}")  # /v1 for openai, the root for the rest
    if fmt == "bedrock":
        # SigV4 with AWS's documented example key, whose signatures the mock recomputes.
        out += [f"{k} = {_toml_str(v)}" for k, v in BEDROCK_KEYS.items()]
    else:
        out.append(f"api_key = {_toml_str(f'sk-e2e-{fmt}-key')}")
    return out


def config_text(formats: list[str], mocks: dict[str, Mock]) -> str:
    out = ["[server]", 'http_addr = "127.0.0.1:0"', 'grpc_addr = "127.0.0.1:0"', ""]
    out += ["[failover]", "attempt_timeout_ms = 2000", "deadline_ms = 5000"]
    for fmt in formats:
        for name in (mock_name(fmt), limited_name(fmt)):
            out += provider_block(fmt, name, mocks[name])
    for fmt in formats:
        pairs = ((model(fmt), mock_name(fmt)), (limited_model(fmt), limited_name(fmt)))
        for alias, provider in pairs:
            dep = f"{{ provider = {_toml_str(provider)}, model = {_toml_str(UPSTREAM[fmt])} }}"
            out += ["", "[[models]]", f"name = {_toml_str(alias)}", f"deployments = [ {dep} ]"]
    return "\n".join(out) + "\n"


def launch_gateway(procs: Processes, directory, label: str, formats, mocks) -> Gateway:
    config = directory / f"{label}.toml"
    config.write_text(config_text(formats, mocks))
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], f"gateway {label}")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[model(f) for f in formats])


@dataclass
class World:
    gateway: Gateway
    client: openai.OpenAI
    mocks: dict[str, Mock]
    # Why a format cannot be tested: skipped (its mock does not exist yet) or failed (the
    # gateway does not take its config).
    skipped: dict[str, str]
    broken: dict[str, str]

    def require(self, fmt: str) -> None:
        if fmt in self.skipped:
            pytest.skip(self.skipped[fmt])
        if fmt in self.broken:
            pytest.fail(self.broken[fmt])

    def sent(self, fmt: str) -> dict:
        """The body the simulated provider of `fmt` last received."""
        return self.mocks[mock_name(fmt)].stats()["last_request"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, request) -> World:
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    skipped: dict[str, str] = {}
    reason = probe_mock_format("bedrock")
    if reason:
        skipped["bedrock"] = reason
    formats = [f for f in FORMATS if f not in skipped]
    mocks: dict[str, Mock] = {}
    for fmt in formats:
        mocks[mock_name(fmt)] = start_mock(procs, mock_name(fmt), fmt=fmt)
        mocks[limited_name(fmt)] = start_mock(procs, limited_name(fmt), "status=429", fmt=fmt)
    directory = tmp_path_factory.mktemp("providers")
    broken: dict[str, str] = {}
    try:
        gateway = launch_gateway(procs, directory, "all", formats, mocks)
    except (RuntimeError, TimeoutError) as e:
        if "bedrock" not in formats:
            raise
        # The gateway refuses the Bedrock provider config: the other formats still run, on a
        # gateway without it; the Bedrock tests fail with the gateway's own words.
        broken["bedrock"] = f"the gateway does not start with a kind `bedrock` provider: {e}"
        formats.remove("bedrock")
        gateway = launch_gateway(procs, directory, "no-bedrock", formats, mocks)
    return World(gateway, gateway.client(), mocks, skipped, broken)


@pytest.fixture(params=FORMATS)
def fmt(request, world) -> str:
    world.require(request.param)
    return request.param


# --- helpers -------------------------------------------------------------------------------------


def content_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def finishes(chunks: list[ChatCompletionChunk]) -> list[str]:
    return [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]


def tool_fragments(chunks: list[ChatCompletionChunk]) -> list:
    return [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]


# --- (1) create ----------------------------------------------------------------------------------


def test_create_returns_the_provider_text_usage_and_headers(world, fmt):
    raw = world.client.chat.completions.with_raw_response.create(
        model=model(fmt), messages=MESSAGES
    )
    completion = raw.parse()

    assert completion.object == "chat.completion"
    assert completion.id
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content == expected_text(fmt)
    assert choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    # Every simulated provider counts one completion token a word.
    assert usage.completion_tokens == len(expected_text(fmt).split(" "))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert raw.headers["x-switchyard-provider"] == mock_name(fmt)
    assert raw.headers["x-switchyard-attempts"] == f"{mock_name(fmt)}/{UPSTREAM[fmt]}=ok"


# --- (2) stream ----------------------------------------------------------------------------------


def test_stream_with_include_usage_reassembles_the_text_and_ends_with_usage(world, fmt):
    raw = world.client.chat.completions.with_raw_response.create(
        model=model(fmt),
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-switchyard-provider"] == mock_name(fmt)
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parse())

    assert chunks
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = content_of(chunks)
    assert text == expected_text(fmt)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1, (
        "the text should arrive in pieces, not buffered into one chunk"
    )
    roles = [c.choices[0].delta.role for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == ["assistant"]
    assert finishes(chunks) == ["stop"]
    assert len({c.id for c in chunks}) == 1, "every chunk of one stream carries one id"
    # Exactly one usage chunk, the last, with no choices (OpenAI's include_usage shape).
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == [chunks[-1]]
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage.prompt_tokens > 0
    assert usage.completion_tokens == len(text.split(" "))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


# --- (3) tool call -------------------------------------------------------------------------------


def test_tool_call_arguments_are_json_valid_against_the_tool_schema(world, fmt):
    completion = world.client.chat.completions.create(
        model=model(fmt),
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
    assert_matches_schema(json.loads(call.function.arguments), WEATHER_SCHEMA)


# --- (4) streamed tool call ----------------------------------------------------------------------


def test_streamed_tool_call_reassembles_to_valid_json_under_one_id(world, fmt):
    chunks = list(
        world.client.chat.completions.create(
            model=model(fmt),
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice=FORCE_WEATHER,
            stream=True,
        )
    )

    # One fragment or several: Gemini sends a function call whole.
    fragments = tool_fragments(chunks)
    assert fragments, "no tool call in the stream"
    assert {f.index for f in fragments} == {0}
    ids = {f.id for f in fragments if f.id}
    assert len(ids) == 1, f"one call, one id; got {ids}"
    first = fragments[0]
    assert first.id, "the first fragment carries the id"
    assert first.type == "function"
    assert first.function.name == "get_weather"
    # The SDK's stream accumulator concatenates strings: a repeated name would corrupt it.
    assert all(f.function is None or f.function.name is None for f in fragments[1:])
    arguments = "".join(f.function.arguments or "" for f in fragments if f.function)
    assert_matches_schema(json.loads(arguments), WEATHER_SCHEMA)
    assert finishes(chunks) == ["tool_calls"]


# --- (5) tool round trip -------------------------------------------------------------------------


TOOL_RESULT = '{"celsius": 21, "sky": "clear-skies-over-paris"}'


def tool_turns(world: World, fmt: str) -> tuple[list[dict], str]:
    """A question, the assistant's tool call for it (from the gateway), and the tool's result:
    the messages of the round trip's second request, and the call's id."""
    question = {"role": "user", "content": "Weather in Paris for three days?"}
    first = world.client.chat.completions.create(
        model=model(fmt), messages=[question], tools=[WEATHER_TOOL], tool_choice="required"
    )
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    messages = [
        question,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": TOOL_RESULT},
    ]
    return messages, call.id


# Converse has no `none` tool choice and requires the tools once the conversation holds tool
# blocks, so the Bedrock adapter refuses `none` there (tested below) instead of dropping it.
@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "bedrock"], indirect=True)
def test_tool_round_trip_with_tool_choice_none_answers_in_text(world, fmt):
    messages, _ = tool_turns(world, fmt)

    raw = world.client.chat.completions.with_raw_response.create(
        model=model(fmt), messages=messages, tools=[WEATHER_TOOL], tool_choice="none"
    )
    second = raw.parse()

    assert raw.headers["x-switchyard-provider"] == mock_name(fmt)
    choice = second.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert choice.message.content.startswith(f"Hello from {mock_name(fmt)}! You said: ")
    # The tool's result reached the provider (in whatever shape the format has).
    assert "clear-skies-over-paris" in json.dumps(world.sent(fmt))


def test_bedrock_tool_round_trip_pairs_the_result_with_the_call(world):
    world.require("bedrock")
    messages, call_id = tool_turns(world, "bedrock")

    # `auto`, the choice Converse can express with tool blocks in the conversation. The
    # simulated provider checks toolUse/toolResult pairing as Bedrock does, so a 200 means
    # the pairing is right (its answer is another tool call: it calls a tool whenever one
    # is offered and allowed).
    raw = world.client.chat.completions.with_raw_response.create(
        model=model("bedrock"), messages=messages, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    raw.parse()

    assert raw.headers["x-switchyard-attempts"] == f"mock-bedrock/{UPSTREAM['bedrock']}=ok"
    sent = world.sent("bedrock")
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    tool_use = sent["messages"][1]["content"][0]["toolUse"]
    assert tool_use["toolUseId"] == call_id
    assert tool_use["name"] == "get_weather"
    assert_matches_schema(tool_use["input"], WEATHER_SCHEMA)
    tool_result = sent["messages"][2]["content"][0]["toolResult"]
    assert tool_result["toolUseId"] == call_id
    assert "clear-skies-over-paris" in json.dumps(tool_result["content"])
    assert sent["toolConfig"]["toolChoice"] == {"auto": {}}


def test_bedrock_tool_choice_none_after_tool_calls_is_refused_not_dropped(world):
    world.require("bedrock")
    messages, _ = tool_turns(world, "bedrock")
    before = world.mocks["mock-bedrock"].stats()["requests"]

    with pytest.raises(openai.BadRequestError) as info:
        world.client.chat.completions.create(
            model=model("bedrock"), messages=messages, tools=[WEATHER_TOOL], tool_choice="none"
        )

    err = info.value
    assert err.status_code == 400
    assert err.code == "unsupported_by_provider", err.message
    assert "`none`" in err.message and "bedrock" in err.message.lower(), err.message
    assert err.response.headers["x-switchyard-attempts"] == (
        f"mock-bedrock/{UPSTREAM['bedrock']}=untranslatable"
    )
    assert world.mocks["mock-bedrock"].stats()["requests"] == before, "nothing goes upstream"


# --- (6) structured output -----------------------------------------------------------------------


def test_response_format_json_schema_answers_json_with_the_required_keys(world, fmt):
    completion = world.client.chat.completions.create(
        model=model(fmt),
        messages=MESSAGES,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": ANSWER_SCHEMA, "strict": True},
        },
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.tool_calls is None
    assert_matches_schema(json.loads(choice.message.content), ANSWER_SCHEMA)


# --- (7) max_tokens ------------------------------------------------------------------------------


def test_max_tokens_cuts_the_answer_with_finish_reason_length(world, fmt):
    completion = world.client.chat.completions.create(
        model=model(fmt), messages=MESSAGES, max_tokens=3
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    # One token a word: the first three words of the answer.
    assert choice.message.content == f"Hello from {mock_name(fmt)}!"
    assert completion.usage.completion_tokens == 3


# --- (8) images ----------------------------------------------------------------------------------


def test_image_data_url_part_is_accepted_and_reaches_the_provider(world, fmt):
    question = "What is in this image?"
    completion = world.client.chat.completions.create(
        model=model(fmt),
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": question},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_B64}"},
                    },
                ],
            }
        ],
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content == expected_text(fmt, question)
    assert PNG_B64 in json.dumps(world.sent(fmt)), "the image did not reach the provider"


# --- (9) provider 429 ----------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_provider_429_is_a_rate_limit_error_with_the_provider_message(world, fmt, stream):
    with pytest.raises(openai.RateLimitError) as info:
        world.client.chat.completions.create(
            model=limited_model(fmt), messages=MESSAGES, stream=stream
        )

    err = info.value
    assert err.status_code == 429
    assert isinstance(err.body, dict), err.body
    assert err.body["message"] == f"simulated 429 from {limited_name(fmt)}"
    assert err.type == "rate_limit_error"
    assert err.response.headers["x-switchyard-attempts"] == (
        f"{limited_name(fmt)}/{UPSTREAM[fmt]}=429"
    )

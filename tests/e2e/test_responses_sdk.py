"""OpenAI's Responses API through the gateway, with the official OpenAI Python SDK.

One gateway serves one model per wire format (`via-<format>`), each on a simulated provider
speaking that format. To OpenAI and Azure the Responses body is passed through (their mocks
speak `/v1/responses` themselves); to Anthropic, Gemini, Cohere and Bedrock it is translated.
The same application code runs against each: `responses.create`, `responses.stream` (text,
and a function call round trip continued with `previous_response_id`), `retrieve` and
`delete` of the stored responses.

A second gateway points an OpenAI provider at Steady serving the vendored OpenAI spec, so the
body the gateway sends upstream on a pass-through is validated against `POST /responses`.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import (
    SPECS_DIR,
    SWITCHYARD_BIN,
    Gateway,
    Mock,
    Processes,
    Provider,
    start_gateway,
    start_mock,
    start_steady,
)
from test_providers_sdk import (
    UPSTREAM,
    mock_name,
    model,
    probe_mock_format,
    provider_block,
)

FORMATS = ["openai", "azure", "anthropic", "gemini", "cohere", "bedrock"]
PASS_THROUGH = {"openai", "azure"}
PROMPT = "What is the capital of France?"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def expected_text(fmt: str, prompt: str = PROMPT) -> str:
    return f"Hello from {mock_name(fmt)}! You said: {prompt}"


class World:
    def __init__(self, gateway: Gateway, mocks: dict[str, Mock], skipped: dict[str, str]):
        self.gateway = gateway
        self.client = gateway.client()
        self.mocks = mocks
        self.skipped = skipped

    def sent(self, fmt: str) -> dict:
        return self.mocks[fmt].stats()["last_request"]


@pytest.fixture(scope="module")
def world(tmp_path_factory, request) -> World:
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    skipped: dict[str, str] = {}
    reason = probe_mock_format("bedrock")
    if reason:
        skipped["bedrock"] = reason
    formats = [f for f in FORMATS if f not in skipped]
    mocks = {fmt: start_mock(procs, mock_name(fmt), fmt=fmt) for fmt in formats}
    out = ["[server]", 'http_addr = "127.0.0.1:0"', 'grpc_addr = "127.0.0.1:0"', ""]
    out += ["[failover]", "attempt_timeout_ms = 2000", "deadline_ms = 5000"]
    for fmt in formats:
        out += provider_block(fmt, mock_name(fmt), mocks[fmt])
    for fmt in formats:
        dep = f'{{ provider = "{mock_name(fmt)}", model = "{UPSTREAM[fmt]}" }}'
        out += ["", "[[models]]", f'name = "{model(fmt)}"', f"deployments = [ {dep} ]"]
    config = tmp_path_factory.mktemp("responses") / "switchyard.toml"
    config.write_text("\n".join(out) + "\n")
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway responses")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    gateway = Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[model(f) for f in formats])
    return World(gateway, mocks, skipped)


@pytest.fixture(params=FORMATS)
def fmt(request, world) -> str:
    if request.param in world.skipped:
        pytest.skip(world.skipped[request.param])
    return request.param


def test_create_answers_a_response_object(world, fmt):
    raw = world.client.responses.with_raw_response.create(
        model=model(fmt), input=PROMPT, instructions="Answer briefly.", max_output_tokens=200
    )
    response = raw.parse()
    assert response.object == "response"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.output_text == expected_text(fmt)
    assert response.output[0].type == "message"
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert raw.headers["x-switchyard-provider"] == mock_name(fmt)
    sent = world.sent(fmt)
    if fmt in PASS_THROUGH:
        # The caller's own body, with the deployment's model.
        assert response.id.startswith("resp_mock")
        assert sent["input"] == PROMPT
        assert sent["instructions"] == "Answer briefly."
        assert sent["model"] == UPSTREAM[fmt]
    else:
        assert "Answer briefly." in json.dumps(sent)


def test_stream_delivers_the_event_sequence_the_sdk_accumulates(world, fmt):
    with world.client.responses.stream(model=model(fmt), input=PROMPT) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    for kind in (
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ):
        assert kind in kinds, kinds
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == expected_text(fmt)
    assert final.output_text == expected_text(fmt)
    assert final.id == events[0].response.id


def test_a_streamed_function_call_round_trip_continues_with_previous_response_id(world, fmt):
    with world.client.responses.stream(
        model=model(fmt), input="What is the weather in Paris?", tools=[WEATHER]
    ) as stream:
        events = list(stream)
        first = stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    call = calls[0]
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments)["city"], str)
    args_done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert args_done and args_done[0].arguments == call.arguments
    # Bedrock's Converse cannot express `none` once the conversation holds tool calls.
    choice = "auto" if fmt == "bedrock" else "none"
    with world.client.responses.stream(
        model=model(fmt),
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": '{"temp_c": 21}'}],
        tools=[WEATHER],
        tool_choice=choice,
    ) as stream:
        list(stream)
        second = stream.get_final_response()
    assert second.status == "completed"
    assert second.previous_response_id == first.id
    if choice == "none":
        assert second.output_text
    sent = json.dumps(world.sent(fmt))
    # The provider got the whole conversation, rebuilt from the gateway's store.
    assert "What is the weather in Paris?" in sent
    assert "temp_c" in sent
    if fmt in PASS_THROUGH:
        assert "previous_response_id" not in world.sent(fmt)


def test_stored_responses_are_retrieved_and_deleted(world):
    client = world.client
    response = client.responses.create(model=model("anthropic"), input="Keep this")
    got = client.responses.retrieve(response.id)
    assert got.id == response.id
    assert got.output_text == response.output_text
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model=model("anthropic"), input="x", previous_response_id=response.id)


def test_built_in_tools_are_a_clear_400(world):
    with pytest.raises(openai.BadRequestError) as e:
        world.client.responses.create(
            model=model("gemini"), input="search", tools=[{"type": "web_search"}]
        )
    assert "web_search" in str(e.value)


# --- the pass-through body, validated by Steady against OpenAI's spec --------------------------


@pytest.fixture(scope="module")
def steady_world(tmp_path_factory, request):
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    steady = start_steady(procs, SPECS_DIR / "openai-openapi.yaml")
    provider = Provider("openai-spec", steady.base_url, api_key="sk-spec-test")
    gateway = start_gateway(
        procs,
        tmp_path_factory.mktemp("responses-spec"),
        [provider],
        {"gpt-4o-mini": [("openai-spec", "gpt-4o-mini")]},
        failover={"max_attempts": 1},
    )
    return steady, gateway


def test_the_pass_through_body_is_valid_against_openais_spec(steady_world):
    steady, gateway = steady_world
    before = len(steady.request_events())
    raw = gateway.client().responses.with_raw_response.create(
        model="gpt-4o-mini",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": PROMPT}]},
        ],
        instructions="Be terse.",
        tools=[WEATHER],
        tool_choice="auto",
        text={"format": {"type": "text"}},
        max_output_tokens=64,
        reasoning={"effort": "low"},
        metadata={"team": "e2e"},
        store=False,
    )
    assert raw.headers["x-switchyard-provider"] == "openai-spec"
    events = steady.wait_for_requests(before + 1)
    event = events[-1]
    assert event["request"]["path"] == "/responses", event["request"]
    assert event["response"]["status"] == 200, event
    assert event["diagnostics"] == [], event["diagnostics"]
    assert raw.parse().object == "response"


def test_steady_rejects_an_invalid_responses_body(steady_world):
    # The negative control: Steady must refuse what the spec refuses, and the caller hears it.
    steady, gateway = steady_world
    with pytest.raises(openai.BadRequestError):
        gateway.client().responses.create(model="gpt-4o-mini", input=PROMPT, temperature="hot")

"""`client.embeddings.create` from the official OpenAI Python SDK through the gateway, to a
simulated provider of every wire format that has embeddings (OpenAI, Azure, Gemini, Cohere,
Bedrock Titan and Cohere Embed), and to Steady serving OpenAI's own spec, which validates the
request the gateway sends upstream.

The SDK asks for base64 by default and decodes it itself; asked for `float` it gets lists;
asked for `base64` explicitly it hands back the strings. All three must be the same vectors.
"""

from __future__ import annotations

import base64
import math
import struct

import openai
import pytest

from conftest import (
    SPECS_DIR,
    SWITCHYARD_BIN,
    Gateway,
    Processes,
    _toml_str,
    http_post_json,
    start_mock,
    start_steady,
)

BEDROCK_KEYS = {
    "region": "us-east-1",
    "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
}

# model name at the gateway -> (mock format, upstream model, dimensions to ask for or None)
MODELS = {
    "via-openai": ("openai", "text-embedding-3-small", 256),
    "via-azure": ("azure", "e2e-embedding-deployment", 256),
    "via-gemini": ("gemini", "gemini-embedding-001", 256),
    "via-cohere": ("cohere", "embed-v4.0", 256),
    "via-titan": ("bedrock", "amazon.titan-embed-text-v2:0", 256),
    "via-bedrock-cohere": ("bedrock", "cohere.embed-english-v3", None),
}
FORMATS = sorted({fmt for fmt, _, _ in MODELS.values()})
TEXTS = ["The quick brown fox", "jumps over the lazy dog"]


def decode(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def assert_same(a: list[list[float]], b: list[list[float]]) -> None:
    """The same vectors, up to f32 precision (JSON prints an f32's shortest decimal)."""
    assert [len(v) for v in a] == [len(v) for v in b]
    for va, vb in zip(a, b):
        assert va == pytest.approx(vb, rel=1e-6, abs=1e-9)


def unit_length(v: list[float]) -> bool:
    return abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3


def config_text(mocks) -> str:
    out = ["[server]", 'http_addr = "127.0.0.1:0"', 'grpc_addr = "127.0.0.1:0"', ""]
    out += ["[failover]", "attempt_timeout_ms = 2000", "deadline_ms = 5000"]
    for fmt in FORMATS:
        out += ["", "[[providers]]", f"name = {_toml_str('mock-' + fmt)}"]
        out += [f"kind = {_toml_str(fmt)}", f"base_url = {_toml_str(mocks[fmt].url)}"]
        if fmt == "bedrock":
            out += [f"{k} = {_toml_str(v)}" for k, v in BEDROCK_KEYS.items()]
        else:
            out.append(f"api_key = {_toml_str('sk-e2e-' + fmt)}")
    for name, (fmt, upstream, _) in MODELS.items():
        dep = f"{{ provider = {_toml_str('mock-' + fmt)}, model = {_toml_str(upstream)} }}"
        out += ["", "[[models]]", f"name = {_toml_str(name)}", f"deployments = [ {dep} ]"]
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory, request):
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    mocks = {fmt: start_mock(procs, f"mock-{fmt}", fmt=fmt) for fmt in FORMATS}
    config = tmp_path_factory.mktemp("embeddings") / "switchyard.toml"
    config.write_text(config_text(mocks))
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway embed")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    gateway = Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=list(MODELS))
    return gateway, mocks


def create(client, name: str, **kwargs):
    fmt, _, dims = MODELS[name]
    if dims is not None:
        kwargs.setdefault("dimensions", dims)
    raw = client.embeddings.with_raw_response.create(model=name, input=TEXTS, **kwargs)
    assert raw.headers["x-switchyard-provider"] == f"mock-{fmt}"
    return raw.parse()


@pytest.mark.parametrize("name", list(MODELS))
def test_the_sdks_default_base64_float_and_explicit_base64_are_the_same_vectors(world, name):
    gateway, mocks = world
    client = gateway.client()
    fmt, upstream, dims = MODELS[name]

    default = create(client, name)  # the SDK sends base64 and decodes it
    floats = create(client, name, encoding_format="float")
    strings = create(client, name, encoding_format="base64")

    assert default.object == "list"
    assert [d.index for d in default.data] == [0, 1]
    vectors = [d.embedding for d in default.data]
    assert all(isinstance(x, float) for x in vectors[0])
    assert all(unit_length(v) for v in vectors)
    if dims is not None:
        assert all(len(v) == dims for v in vectors)
    assert vectors[0] != vectors[1]
    assert_same([d.embedding for d in floats.data], vectors)
    assert all(isinstance(d.embedding, str) for d in strings.data)
    assert_same([decode(d.embedding) for d in strings.data], vectors)
    assert default.usage.prompt_tokens > 0
    assert default.usage.total_tokens == default.usage.prompt_tokens
    # The provider got the texts in its own format.
    sent = mocks[fmt].stats()["last_request"]
    if fmt in ("openai", "azure"):
        assert sent["input"] == TEXTS and sent["model"] == upstream
        assert sent["encoding_format"] == "base64"
    elif fmt == "gemini":
        assert [r["content"]["parts"][0]["text"] for r in sent["requests"]] == TEXTS
    elif fmt == "cohere" or upstream.startswith("cohere."):
        assert sent["texts"] == TEXTS and sent["input_type"] == "search_document"
    else:
        # Titan: one call per input, sent concurrently, so the last to arrive is either.
        assert sent["inputText"] in TEXTS


def test_an_unknown_model_is_404_and_token_input_to_gemini_a_clear_400(world):
    gateway, _ = world
    client = gateway.client()
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="via-gemini", input=[[1, 2, 3]])
    assert info.value.status_code == 400
    assert "token" in str(info.value.body)


# --- the upstream request, validated by Steady against OpenAI's spec -----------------------------


@pytest.fixture(scope="module")
def steady(request):
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    steady = start_steady(procs, SPECS_DIR / "openai-openapi.yaml")
    # Steady must be validating: a request without `input` has to be refused.
    status, _, body = http_post_json(
        steady.base_url + "/embeddings", {"model": "text-embedding-3-small"}
    )
    assert 400 <= status < 500, f"Steady accepted an embeddings request without input: {body}"
    return steady


@pytest.fixture(scope="module")
def spec_gateway(steady, tmp_path_factory, request):
    procs = Processes()
    request.addfinalizer(procs.stop_all)
    # One input, one generated item: Steady makes every array one long.
    out = ["[server]", 'http_addr = "127.0.0.1:0"', 'grpc_addr = "127.0.0.1:0"', ""]
    out += ["[failover]", "max_attempts = 1", "", "[[providers]]", 'name = "openai-spec"']
    out += ['kind = "openai"', f"base_url = {_toml_str(steady.base_url)}"]
    out += ['api_key = "sk-spec-test"', 'headers = { "X-Steady-Array-Size" = "1" }']
    out += ["", "[[models]]", 'name = "text-embedding-3-small"']
    out += ['deployments = [ { provider = "openai-spec", model = "text-embedding-3-small" } ]']
    config = tmp_path_factory.mktemp("embed-spec") / "switchyard.toml"
    config.write_text("\n".join(out) + "\n")
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway spec")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[])


def sent_to_steady(steady, before: int) -> dict:
    events = steady.wait_for_requests(before + 1)
    assert len(events) == before + 1, events[before:]
    return events[-1]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"encoding_format": "float"},
        {"dimensions": 256, "user": "end-user-7"},
        {"input_as_tokens": True},
    ],
    ids=["sdk-default-base64", "float", "dimensions-and-user", "token-array"],
)
def test_the_request_sent_upstream_validates_against_openais_spec(steady, spec_gateway, kwargs):
    client = spec_gateway.client()
    tokens = kwargs.pop("input_as_tokens", False)
    before = len(steady.request_events())
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=[[9906, 1917]] if tokens else "hello", **kwargs
    )
    answer = raw.parse()
    assert raw.headers["x-switchyard-attempts"] == "openai-spec/text-embedding-3-small=ok"
    event = sent_to_steady(steady, before)
    assert event["request"]["path"] == "/embeddings"
    assert event["response"]["status"] == 200, event
    assert event["diagnostics"] == [], event["diagnostics"]
    assert len(answer.data) == 1 and answer.data[0].index == 0
    assert all(isinstance(x, float) for x in answer.data[0].embedding)


def test_a_spec_violation_passed_through_comes_back_as_a_bad_request(steady, spec_gateway):
    # Negative control: the spec allows no extra properties; the gateway passes fields it
    # does not model to OpenAI-format upstreams, so Steady must refuse this one.
    client = spec_gateway.client()
    before = len(steady.request_events())
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(
            model="text-embedding-3-small", input="hello", extra_body={"input_type": "query"}
        )
    assert info.value.status_code == 400
    assert sent_to_steady(steady, before)["response"]["status"] == 400

"""PII redaction and content rules seen through the official OpenAI Python SDK.

A gateway with every detector on, masking with restore, and a content rule; a simulated
OpenAI-format provider that echoes the user's message (`mock_text`) and reports the body it
received (`/_mock/stats`). Each test checks both sides: what the provider saw (placeholders,
never the originals) and what the SDK got back (the originals, in JSON and in a stream
whose chunks split the placeholders), and that refusals reach the SDK as its typed errors
with the gateway's codes. The request log is searched for every planted value.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from conftest import SWITCHYARD_BIN, Gateway, Mock, Processes, mock_text, start_mock

MODEL = "gpt-4o-mini"
BLOCKING = "gpt-4o-mini-strict"  # the same deployment under a key whose policy blocks

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"  # Luhn-valid
SECRET = "sk-proj-Zq3vT8mW1xR5nB7kL2pH9cF4dG6sJ0aY"
PROMPT = f"Mail {EMAIL} the receipt for card {CARD}; the token is {SECRET}."
PLANTED = [EMAIL, CARD, SECRET, CARD.replace(" ", "")]

CLIENT_KEY = "sk-e2e-redaction-client-0001"
STRICT_KEY = "sk-e2e-redaction-strict-0002"


def serve(procs: Processes, tmp_path: Path, mock: Mock) -> Gateway:
    config = tmp_path / "switchyard.toml"
    config.write_text(
        "\n".join(
            [
                "[server]",
                'http_addr = "127.0.0.1:0"',
                'grpc_addr = "127.0.0.1:0"',
                "[failover]",
                "deadline_ms = 5000",
                "[redaction]",
                'detectors = ["email", "phone", "card", "iban", "ssn", "ip", "secret"]',
                'mode = "mask"',
                "restore = true",
                "[redaction.profiles.strict]",
                'detectors = ["email", "card", "secret"]',
                'mode = "block"',
                "[[content_rules]]",
                'name = "no-exfiltration"',
                'words = ["internal only"]',
                'on = "prompt"',
                'action = "block"',
                "[[keys]]",
                'name = "team-a"',
                f'key = "{CLIENT_KEY}"',
                "[[keys]]",
                'name = "team-strict"',
                f'key = "{STRICT_KEY}"',
                'redaction = "strict"',
                "[[providers]]",
                f'name = "{mock.name}"',
                'kind = "openai"',
                f'base_url = "{mock.url}"',
                "[[models]]",
                f'name = "{MODEL}"',
                f'deployments = [ {{ provider = "{mock.name}", model = "up" }} ]',
            ]
        )
        + "\n"
    )
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway pii")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[MODEL])


@pytest.fixture
def world(procs: Processes, tmp_path: Path):
    # Streams three characters a chunk: every placeholder is split across chunks.
    mock = start_mock(procs, "pii", fault="chunk_chars=3")
    gateway = serve(procs, tmp_path, mock)
    return mock, gateway


def client(gateway: Gateway, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=10)


def sent_user_text(mock: Mock) -> str:
    """The user message the provider last received."""
    body = mock.stats()["last_request"]
    users = [m for m in body["messages"] if m["role"] == "user"]
    return users[-1]["content"]


def assert_redacted(text: str) -> None:
    for value in PLANTED:
        assert value not in text, f"{value!r} reached the provider: {text!r}"
    assert "<EMAIL_1>" in text and "<CARD_1>" in text and "<SECRET_1>" in text, text


def test_json_answers_get_the_originals_back_and_the_provider_sees_placeholders(world):
    mock, gateway = world
    answer = client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}]
    )
    sent = sent_user_text(mock)
    assert_redacted(sent)
    # The provider echoed the placeholders; the caller reads its own data again.
    assert answer.choices[0].message.content == mock_text("pii", PROMPT)


def test_streamed_answers_restore_placeholders_split_across_chunks(world):
    mock, gateway = world
    stream = client(gateway).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    sent = sent_user_text(mock)
    assert_redacted(sent)
    # The provider streamed its ~90 characters (placeholders, not originals) three a
    # chunk, so every placeholder (9+ characters) came split over chunks; the gateway held
    # back only the pieces of a placeholder, and the caller got every original whole.
    assert len(pieces) >= 20
    assert "".join(pieces) == mock_text("pii", PROMPT)


def test_tool_arguments_and_results_are_redacted_too(world):
    mock, gateway = world
    messages = [
        {"role": "user", "content": "Who is on file?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps({"email": EMAIL})},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": f"card on file: {CARD}"},
        {"role": "user", "content": "Thanks."},
    ]
    client(gateway).chat.completions.create(model=MODEL, messages=messages)
    sent = json.dumps(mock.stats()["last_request"]["messages"])
    for value in (EMAIL, CARD):
        assert value not in sent, sent
    assert "<EMAIL_1>" in sent and "<CARD_1>" in sent


def test_a_blocking_profile_refuses_with_the_sdks_bad_request_error(world):
    mock, gateway = world
    before = mock.stats()["requests"]
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway, STRICT_KEY).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}]
        )
    assert err.value.code == "pii_detected"
    message = str(err.value)
    for value in PLANTED:
        assert value not in message
    assert mock.stats()["requests"] == before


def test_a_content_rule_names_itself_and_not_the_text(world):
    mock, gateway = world
    before = mock.stats()["requests"]
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "This memo is INTERNAL ONLY, summarise it."}],
        )
    assert err.value.code == "content_policy_violation"
    assert "no-exfiltration" in str(err.value)
    assert "memo" not in str(err.value)
    assert mock.stats()["requests"] == before


def test_no_log_line_holds_a_planted_value(world):
    mock, gateway = world
    c = client(gateway)
    c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}])
    list(
        c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
    )
    with pytest.raises(openai.BadRequestError):
        client(gateway, STRICT_KEY).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}]
        )
    assert gateway.proc.wait_until(
        lambda lines: sum('"redactions"' in line for line in lines) >= 3, timeout=5
    ), gateway.proc.output()
    for line in gateway.proc.lines:
        for value in PLANTED + [CLIENT_KEY, STRICT_KEY]:
            assert value not in line, line

"""Resilience as the official OpenAI SDK sees it: load shedding with retry-after (which the
SDK's own retries honour), and a hedged stream that does not wait for a stalled provider.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import openai
import pytest

from conftest import SWITCHYARD_BIN, Gateway, Mock, mock_text, start_mock

MODEL = "gpt-4o-mini"


def serve(procs, tmp_path: Path, mocks: list[Mock], server: str = "", model: str = "") -> Gateway:
    """A gateway serving MODEL from `mocks` in order, with extra `[server]` and model keys."""
    lines = [
        "[server]",
        'http_addr = "127.0.0.1:0"',
        'grpc_addr = "127.0.0.1:0"',
        server,
        "[failover]",
        "attempt_timeout_ms = 3000",
        "deadline_ms = 8000",
    ]
    for m in mocks:
        lines += ["[[providers]]", f'name = "{m.name}"', 'kind = "openai"', f'base_url = "{m.url}"']
    deployments = ", ".join(f'{{ provider = "{m.name}", model = "up-{m.name}" }}' for m in mocks)
    lines += ["[[models]]", f'name = "{MODEL}"', model, f"deployments = [ {deployments} ]"]
    config = tmp_path / "switchyard.toml"
    config.write_text("\n".join(lines) + "\n")
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway resilience")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[MODEL])


def hello() -> list[dict]:
    return [{"role": "user", "content": "Hello"}]


def test_a_shed_request_is_a_503_with_retry_after_that_the_sdk_retries(procs, tmp_path):
    slow = start_mock(procs, "slow", "latency_ms=1200")
    gw = serve(procs, tmp_path, [slow], server="max_in_flight = 1")

    holder = threading.Thread(
        target=lambda: gw.client().chat.completions.create(model=MODEL, messages=hello())
    )
    holder.start()
    deadline = time.monotonic() + 5
    while slow.stats()["requests"] < 1:
        assert time.monotonic() < deadline, "the first request never reached the mock"
        time.sleep(0.02)

    # Without retries the SDK raises the gateway's answer as it is.
    with pytest.raises(openai.InternalServerError) as refused:
        gw.client().chat.completions.create(model=MODEL, messages=hello())
    assert refused.value.status_code == 503
    assert refused.value.response.headers["retry-after"] == "1"
    assert refused.value.body["code"] == "overloaded"

    # With its default retries, the SDK waits the retry-after and is served once the
    # slot is free.
    answer = gw.client(max_retries=2).chat.completions.create(model=MODEL, messages=hello())
    assert answer.choices[0].message.content == mock_text("slow", "Hello")
    holder.join(timeout=10)
    assert not holder.is_alive()


def test_a_hedged_stream_is_answered_by_the_second_provider_while_the_first_stalls(procs, tmp_path):
    stalled = start_mock(procs, "stalled", "latency_ms=6000")
    quick = start_mock(procs, "quick")
    gw = serve(procs, tmp_path, [stalled, quick], model="hedge_delay_ms = 150")

    started = time.monotonic()
    raw = gw.client().chat.completions.with_raw_response.create(
        model=MODEL, messages=hello(), stream=True
    )
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices
    )
    took = time.monotonic() - started
    assert text == mock_text("quick", "Hello")
    # The headers went out when the hedge's stream opened, the stalled attempt still running.
    assert raw.headers["x-switchyard-attempts"] == "quick/up-quick=ok"
    assert 0.15 <= took < 3.0, f"the stall was not waited out: {took:.2f} s"

"""Rate limits and budgets as the official OpenAI SDK sees them: a rate limit is a
RateLimitError the SDK's own retries wait out (retry-after), and a spent budget is an
insufficient_quota error the SDK does not retry (x-should-retry: false).
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import openai
import pytest

from conftest import SWITCHYARD_BIN, Gateway, Mock, mock_text, start_mock

MODEL = "gpt-4o-mini"
KEY = "sk-e2e-team-a-0123456789"


def serve(procs, tmp_path: Path, mock: Mock, key_limits: str) -> Gateway:
    """A gateway serving MODEL from `mock` at $1000 per million tokens, for one key."""
    lines = [
        "[server]",
        'http_addr = "127.0.0.1:0"',
        'grpc_addr = "127.0.0.1:0"',
        "[[keys]]",
        'name = "team-a"',
        f'key = "{KEY}"',
        key_limits,
        "[[providers]]",
        f'name = "{mock.name}"',
        'kind = "openai"',
        f'base_url = "{mock.url}"',
        "[[models]]",
        f'name = "{MODEL}"',
        f'deployments = [ {{ provider = "{mock.name}", model = "up", '
        "price_in = 1000.0, price_out = 1000.0 } ]",
    ]
    config = tmp_path / "switchyard.toml"
    config.write_text("\n".join(lines) + "\n")
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway limits")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[MODEL])


def client(gw: Gateway, **kwargs) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    return openai.OpenAI(base_url=gw.base_url, api_key=KEY, timeout=10.0, **kwargs)


def hello() -> list[dict]:
    return [{"role": "user", "content": "Hello"}]


def test_a_rate_limit_is_a_rate_limit_error_with_openais_headers(procs, tmp_path):
    mock = start_mock(procs, "limited")
    gw = serve(procs, tmp_path, mock, "limits = { rpm = 2 }")
    raw = client(gw).chat.completions.with_raw_response.create(model=MODEL, messages=hello())
    assert raw.headers["x-ratelimit-limit-requests"] == "2"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert raw.parse().choices[0].message.content == mock_text("limited", "Hello")
    client(gw).chat.completions.create(model=MODEL, messages=hello())

    with pytest.raises(openai.RateLimitError) as limited:
        client(gw).chat.completions.create(model=MODEL, messages=hello())
    error = limited.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    retry_after = int(error.response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert mock.stats()["requests"] == 2


def test_a_spent_budget_is_insufficient_quota_which_the_sdk_does_not_retry(procs, tmp_path):
    mock = start_mock(procs, "budgeted")
    gw = serve(procs, tmp_path, mock, "budget = { usd_per_day = 0.05 }")
    sdk = client(gw, max_retries=3)
    served = 0
    with pytest.raises(openai.RateLimitError) as spent:
        for _ in range(50):
            sdk.chat.completions.create(model=MODEL, messages=hello(), max_tokens=8)
            served += 1
    assert served > 0
    error = spent.value
    assert error.code == "insufficient_quota"
    assert error.response.headers["x-should-retry"] == "false"
    # The SDK, with three retries allowed, asked once: the refusal told it not to retry.
    before = refusals(gw)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model=MODEL, messages=hello(), max_tokens=8)
    assert refusals(gw) == before + 1
    assert time.monotonic() - started < 1.0, "the SDK waited to retry a spent budget"
    assert mock.stats()["requests"] == served


def refusals(gw: Gateway) -> int:
    """The gateway's count of budget refusals, from /metrics."""
    with urllib.request.urlopen(f"http://{gw.http}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    for line in text.splitlines():
        if line.startswith('switchyard_limited_total{limit="budget_day"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0

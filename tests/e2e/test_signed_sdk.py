"""HMAC-signed requests from the official OpenAI Python SDK, signed by an httpx event hook
(the README's snippet): served, streamed, listed; refused with the SDK's
AuthenticationError when unsigned or signed with the wrong secret; the SDK's own retries
are not taken for replays; the request log names the key and `auth_method`, never the
secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import time
from pathlib import Path

import openai

try:  # the SDK's HTTP client: httpx2 for openai 3.x, httpx before
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx
import pytest

from conftest import SWITCHYARD_BIN, Gateway, Mock, Processes, start_mock

MODEL = "gpt-4o-mini"
SECRET = "e2e-hmac-secret-0123456789abcdef-team-a"


def signer(key_id: str, secret: bytes):
    """The README's signing hook: signs each request as httpx is about to send it."""

    def sign(request: httpx.Request) -> None:
        ts = f"{time.time():.3f}"  # a fraction: an SDK retry in the same second signs anew
        body_hash = hashlib.sha256(request.content).hexdigest()
        text = f"v1\n{request.method}\n{request.url.raw_path.decode()}\n{ts}\n{body_hash}"
        sig = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
        request.headers["x-switchyard-key-id"] = key_id
        request.headers["x-switchyard-timestamp"] = ts
        request.headers["x-switchyard-signature"] = f"v1={sig}"

    return sign


def serve(procs: Processes, tmp_path: Path, mock: Mock) -> Gateway:
    """A gateway with one signing key (its secret read from the environment)."""
    config = tmp_path / "switchyard.toml"
    config.write_text(
        "\n".join(
            [
                "[server]",
                'http_addr = "127.0.0.1:0"',
                'grpc_addr = "127.0.0.1:0"',
                "[failover]",
                "deadline_ms = 5000",
                "[[keys]]",
                'name = "team-a"',
                'hmac_secret = "env:SWITCHYARD_E2E_HMAC_SECRET"',
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
    os.environ["SWITCHYARD_E2E_HMAC_SECRET"] = SECRET
    try:
        proc = procs.start(
            [str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway signed"
        )
    finally:
        del os.environ["SWITCHYARD_E2E_HMAC_SECRET"]
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[MODEL])


def client(gw: Gateway, secret: str = SECRET, **kwargs) -> openai.OpenAI:
    kwargs.setdefault("max_retries", 0)
    http_client = httpx.Client(event_hooks={"request": [signer("team-a", secret.encode())]})
    return openai.OpenAI(
        base_url=gw.base_url, api_key="unused", timeout=10.0, http_client=http_client, **kwargs
    )


def hello() -> list[dict]:
    return [{"role": "user", "content": "Hello"}]


def test_the_sdk_signing_through_its_http_client_is_served(procs, tmp_path):
    mock = start_mock(procs, "signed")
    gw = serve(procs, tmp_path, mock)
    c = client(gw)
    r = c.chat.completions.create(model=MODEL, messages=hello())
    assert r.choices[0].message.content == "Hello from signed! You said: Hello"
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in c.chat.completions.create(model=MODEL, messages=hello(), stream=True)
        if chunk.choices
    )
    assert text == "Hello from signed! You said: Hello"
    assert [m.id for m in c.models.list()] == [MODEL]
    # The request log: the key and how it proved itself, and nowhere the secret.
    assert gw.proc.wait_until(
        lambda lines: sum('"auth_method":"hmac"' in ln for ln in lines) >= 2, timeout=5
    ), gw.proc.output()
    logged = [json.loads(ln) for ln in gw.proc.lines if '"auth_method"' in ln]
    assert all(v["key"] == "team-a" for v in logged)
    assert not any(SECRET in ln for ln in gw.proc.lines)


def test_unsigned_or_wrongly_signed_calls_are_authentication_errors(procs, tmp_path):
    mock = start_mock(procs, "signed")
    gw = serve(procs, tmp_path, mock)
    plain = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=10.0)
    with pytest.raises(openai.AuthenticationError) as e:
        plain.chat.completions.create(model=MODEL, messages=hello())
    assert e.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError) as e:
        client(gw, secret="not-the-secret-0123456789abcdef0").chat.completions.create(
            model=MODEL, messages=hello()
        )
    assert e.value.code == "signature_invalid"
    assert SECRET not in str(e.value.body)
    assert mock.stats()["requests"] == 0


def test_the_sdks_own_retries_are_signed_afresh_not_refused_as_replays(procs, tmp_path):
    mock = start_mock(procs, "down", fault="status=503")
    gw = serve(procs, tmp_path, mock)
    with pytest.raises(openai.APIStatusError) as e:
        client(gw, max_retries=2).chat.completions.create(model=MODEL, messages=hello())
    # Three tries, each reaching the provider: none was refused as a replay (401).
    assert e.value.status_code == 503
    assert mock.stats()["requests"] == 3

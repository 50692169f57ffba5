"""Network controls as real clients meet them: a browser (Playwright driving Debian's
`chromium`) calling the gateway from an allowed and from a disallowed origin, so the
preflight and the CORS headers are judged by a real CORS implementation; and the official
OpenAI Python SDK over TLS, trusting the test CA (tests/certs/)."""

from __future__ import annotations

import http.server
import os
import shutil
import ssl
import threading
from pathlib import Path

import openai
import pytest
from playwright.sync_api import sync_playwright

from conftest import (
    HTTP_TIMEOUT,
    ROOT,
    SWITCHYARD_BIN,
    Processes,
    Provider,
    gateway_config,
    start_mock,
)

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
KEY = "sk-e2e-network-0123456789"
CERTS = ROOT / "tests" / "certs"


class _Page(http.server.BaseHTTPRequestHandler):
    """Serves an empty page: the origin the browser's script runs in."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = b"<!doctype html><title>app</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def app_origin():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def _start(procs: Processes, dir_: Path, server: str = "", rest: str = "") -> str:
    """A gateway over one mock with the key `KEY`; `server` goes into `[server]`, `rest`
    after everything else. Its `host:port`."""
    mock = start_mock(procs, "net")
    config = dir_ / "switchyard.toml"
    text = gateway_config(
        [Provider("net", mock.url, api_key="sk-upstream-net")], {"gpt-4o-mini": [("net", "gpt-4o-mini")]}
    )
    text = text.replace("[server]\n", "[server]\n" + server + "\n", 1)
    config.write_text(text + f'\n[[keys]]\nname = "app"\nkey = "{KEY}"\n' + rest)
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], f"gateway {dir_.name}")
    return proc.wait_for(r"switchyard listening: http=(\S+) grpc=").group(1)


FETCH = """async ([url, key]) => {
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: { "authorization": "Bearer " + key, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
    });
    const body = await r.json();
    return { status: r.status, provider: r.headers.get("x-switchyard-provider"),
             content: body.choices ? body.choices[0].message.content : null,
             code: body.error ? body.error.code : null };
  } catch (e) {
    return { error: String(e) };
  }
}"""


def test_a_browser_calls_from_an_allowed_origin_and_is_blocked_from_another(tmp_path, app_origin):
    procs = Processes()
    try:
        allowed = f"http://127.0.0.1:{app_origin}"
        gateway = _start(
            procs,
            tmp_path,
            rest=f"[security.cors]\nallowed_origins = [\"{allowed}\"]\n",
        )
        url = f"http://{gateway}/v1/chat/completions"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            try:
                page = browser.new_page()
                console: list[str] = []
                page.on("console", lambda msg: console.append(msg.text))
                # The allowed origin: the preflight (authorization, a JSON body) passes, the
                # answer and its exposed headers are readable.
                page.goto(allowed + "/")
                got = page.evaluate(FETCH, [url, KEY])
                assert got.get("status") == 200, got
                assert got["provider"] == "net", got
                assert got["content"], got
                # The same page served as another origin (localhost is not 127.0.0.1): the
                # browser refuses the call after the preflight.
                page.goto(f"http://localhost:{app_origin}/")
                got = page.evaluate(FETCH, [url, KEY])
                assert "error" in got and "Failed to fetch" in got["error"], got
                # Refused by the browser's CORS check (the preflight got no allow headers),
                # not by the network.
                assert any("CORS policy" in line for line in console), console
            finally:
                browser.close()
    finally:
        procs.stop_all()


def test_a_refusal_is_readable_by_the_allowed_origins_script(tmp_path, app_origin):
    procs = Processes()
    try:
        allowed = f"http://127.0.0.1:{app_origin}"
        # 127.0.0.1 is not in the allowlist: every call is refused with 403.
        gateway = _start(
            procs,
            tmp_path,
            rest=f"[security]\nip_allowlist = [\"192.0.2.0/24\"]\n"
            f"[security.cors]\nallowed_origins = [\"{allowed}\"]\n",
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            try:
                page = browser.new_page()
                page.goto(allowed + "/")
                got = page.evaluate(FETCH, [f"http://{gateway}/v1/chat/completions", KEY])
                assert got.get("status") == 403, got
                assert got["code"] == "ip_not_allowed", got
            finally:
                browser.close()
    finally:
        procs.stop_all()


def test_the_openai_sdk_over_tls(tmp_path):
    procs = Processes()
    try:
        for name in ("leaf-a.pem", "leaf-a.key"):
            shutil.copy(CERTS / name, tmp_path / name)
        gateway = _start(procs, tmp_path, server='tls_cert = "leaf-a.pem"\ntls_key = "leaf-a.key"')
        port = gateway.rsplit(":", 1)[1]
        ca = ssl.create_default_context(cafile=str(CERTS / "ca.pem"))
        with openai.DefaultHttpxClient(verify=ca, timeout=HTTP_TIMEOUT) as http_client:
            client = openai.OpenAI(
                base_url=f"https://localhost:{port}/v1",
                api_key=KEY,
                http_client=http_client,
                max_retries=0,
            )
            reply = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
            )
            assert reply.choices[0].message.content
            stream = client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == reply.choices[0].message.content
        # A client that does not trust the CA is refused at the handshake.
        with openai.DefaultHttpxClient(timeout=HTTP_TIMEOUT) as untrusting:
            client = openai.OpenAI(
                base_url=f"https://localhost:{port}/v1",
                api_key=KEY,
                http_client=untrusting,
                max_retries=0,
            )
            with pytest.raises(openai.APIConnectionError):
                client.models.list()
    finally:
        procs.stop_all()

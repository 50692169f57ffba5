"""The status page in a real browser: Playwright for Python driving Debian's `chromium`
(Playwright's own browser download is not used) against a gateway with simulated traffic
sent through the official OpenAI SDK and one failing provider.

The page must show the failing deployment's open circuit and non-zero spend, raise no
console error, ask for the admin key (the data is 401 without it), and leave a screenshot
in target/e2e-artifacts/ for a person to look at.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from conftest import (
    HTTP_TIMEOUT,
    ROOT,
    SWITCHYARD_BIN,
    Gateway,
    Processes,
    Provider,
    gateway_config,
    start_mock,
)

CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
ARTIFACTS = ROOT / "target/e2e-artifacts"
ADMIN_KEY = "status-admin-key-0123456789"
KEYS = {"team-a": "sk-team-a-0123456789", "team-b": "sk-team-b-0123456789"}
# The mocks answer as the upstream model `gpt-4o-mini`, which the built-in price table prices.
UPSTREAM = "gpt-4o-mini"
# What the browser waits for at most, in ms.
UI_TIMEOUT_MS = 15_000


@dataclass
class World:
    gateway: Gateway
    failed_request_id: str

    def url(self, path: str) -> str:
        return f"http://{self.gateway.http}{path}"


def _extra_config(dir_: Path) -> str:
    """Two failures open a circuit (for ten minutes); the admin key; two caller keys."""
    out = [
        "[breaker]",
        "failures = 2",
        "cool_down_ms = 600000",
        "[admin]",
        f'api_key = "{ADMIN_KEY}"',
        "[state]",
        f"dir = {json.dumps(str(dir_ / 'data'))}",
        "[cache]",
        'scope = "key"',
    ]
    for name, key in KEYS.items():
        out += ["[[keys]]", f'name = "{name}"', f'key = "{key}"']
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    procs = Processes()
    try:
        good = start_mock(procs, "good")
        down = start_mock(procs, "down", "status=503")
        providers = [Provider(m.name, m.url, api_key=f"sk-upstream-{m.name}") for m in (good, down)]
        models = {
            # `down` first: every call tries it, fails over to `good`, until its circuit opens.
            "chat": [("down", UPSTREAM), ("good", UPSTREAM)],
            # Only `down` (under another upstream name, so another circuit): the caller gets
            # its 503.
            "down-only": [("down", "gpt-4o")],
        }
        dir_ = tmp_path_factory.mktemp("status")
        config = dir_ / "switchyard.toml"
        config.write_text(gateway_config(providers, models) + _extra_config(dir_))
        proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway status")
        m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
        gateway = Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=list(models))

        def client(key: str) -> openai.OpenAI:
            return openai.OpenAI(
                base_url=gateway.base_url, api_key=key, max_retries=0, timeout=HTTP_TIMEOUT
            )

        a, b = client(KEYS["team-a"]), client(KEYS["team-b"])
        for i in range(3):
            reply = a.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": f"question {i}"}]
            )
            assert reply.choices[0].message.content
        b.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hello"}])
        # The first question again, by the same key, once its answer is stored (off the
        # caller's path): a cache hit.
        _wait_for_metric(gateway, "switchyard_cache_stores_total", 4)
        again = a.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "question 0"}]
        )
        assert again.headers["x-switchyard-cache"] == "hit"
        with pytest.raises(openai.InternalServerError) as failed:
            b.chat.completions.create(
                model="down-only", messages=[{"role": "user", "content": "anyone?"}]
            )
        assert failed.value.status_code == 503
        request_id = failed.value.response.headers["x-request-id"]
        # A reload through the admin API, for the reload history.
        reload = urllib.request.Request(
            f"http://{gateway.http}/admin/reload",
            method="POST",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
        )
        with urllib.request.urlopen(reload, timeout=HTTP_TIMEOUT) as resp:
            assert resp.status == 200
        yield World(gateway=gateway, failed_request_id=request_id)
    finally:
        procs.stop_all()


def _wait_for_metric(gateway: Gateway, name: str, at_least: float) -> None:
    """Waits (bounded) until the gateway's Prometheus counter `name` reaches `at_least`."""
    deadline = time.monotonic() + HTTP_TIMEOUT
    while True:
        with urllib.request.urlopen(f"http://{gateway.http}/metrics", timeout=HTTP_TIMEOUT) as r:
            text = r.read().decode()
        value = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") or line.startswith(name + " ")
        )
        if value >= at_least:
            return
        assert time.monotonic() < deadline, f"{name} stayed at {value}, below {at_least}"
        time.sleep(0.02)


def _get(url: str, key: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    problems: list[str] = []
    page.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}")
        if msg.type in ("error", "warning")
        else None,
    )
    page.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    page.problems = problems  # type: ignore[attr-defined]
    yield page
    context.close()


def _sign_in(page: Page, key: str) -> None:
    expect(page.locator("#auth")).to_be_visible()
    page.fill("#auth-key", key)
    page.click("#auth button[type=submit]")


def test_the_data_is_401_without_the_admin_key(world):
    for key in (None, "not-the-admin-key-0123", KEYS["team-a"]):
        status, body = _get(world.url("/status/data"), key)
        assert status == 401, (key, body)
        assert body["error"]["code"] == "invalid_api_key"
    status, body = _get(world.url("/status/data"), ADMIN_KEY)
    assert status == 200
    assert body["object"] == "switchyard.status"


def test_the_page_shows_the_open_circuit_spend_and_errors_without_console_errors(world, page):
    page.goto(world.url("/status"))
    # The key is asked for before any data is fetched; nothing is shown without it.
    expect(page.locator("#content")).to_be_hidden()
    _sign_in(page, ADMIN_KEY)

    open_row = page.locator('#deployments tr[data-deployment="down/gpt-4o-mini"]')
    expect(open_row).to_have_attribute("data-circuit", "open")
    expect(open_row.locator(".pill")).to_contain_text("Open")
    healthy = page.locator('#deployments tr[data-deployment="good/gpt-4o-mini"]')
    expect(healthy).to_have_attribute("data-circuit", "closed")
    expect(page.locator("#t-deployments-sub")).to_have_text("1 open circuit")

    chat = page.locator('#models tr[data-name="chat"]')
    expect(chat).to_be_visible()
    assert float(chat.get_attribute("data-cost")) > 0
    assert chat.locator("td").last.inner_text() not in ("$0.00", "–")
    for key in KEYS:
        row = page.locator(f'#keys tr[data-name="{key}"]')
        expect(row).to_be_visible()
        assert float(row.get_attribute("data-cost")) > 0, key
    assert page.locator("#t-spend").inner_text().startswith("$")
    assert page.locator("#t-spend").inner_text() != "$0.00"

    error = page.locator(f'#errors tr[data-request-id="{world.failed_request_id}"]')
    expect(error).to_contain_text("503")
    expect(error).to_contain_text("down-only")
    expect(page.locator("#alerts")).to_contain_text("breaker_open")
    # Six requests, one of them answered from the cache.
    expect(page.locator("#t-cache")).to_have_text("16.7%")
    expect(page.locator("#reloads")).to_contain_text("admin")
    expect(page.locator("#conn")).to_contain_text("Live")
    # The key is sent as a header, never put in the address.
    assert ADMIN_KEY not in page.url

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page.png"), full_page=True)
    assert page.problems == []  # type: ignore[attr-defined]


def test_a_wrong_key_is_refused_and_the_key_can_be_entered_again(world, page):
    page.goto(world.url("/status"))
    _sign_in(page, "not-the-admin-key-0123")
    expect(page.locator("#auth-error")).to_have_text("That key was not accepted.")
    expect(page.locator("#content")).to_be_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "status-page-key.png"))
    _sign_in(page, ADMIN_KEY)
    expect(page.locator('#deployments tr[data-deployment="down/gpt-4o-mini"]')).to_have_attribute(
        "data-circuit", "open"
    )
    expect(page.locator("#auth")).to_be_hidden()
    # The only problem is the refused fetch itself, which the browser logs.
    assert all("401" in p for p in page.problems), page.problems  # type: ignore[attr-defined]

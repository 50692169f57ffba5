"""Process fixtures for the end-to-end tests.

Every process (simulated providers, gateways, Steady) is started on 127.0.0.1 with port 0
(or, for Steady, which needs a number, a port the OS just handed out), its stdout drained by
a thread so the pipe never fills, every wait bounded by a timeout, and every process killed
at teardown. The gRPC stubs are generated from proto/ once per session.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SWITCHYARD_BIN = Path(os.environ.get("SWITCHYARD_BIN") or ROOT / "target/debug/switchyard")
STEADY_BIN = Path(os.environ.get("STEADY_BIN") or ROOT / ".tools/node_modules/.bin/steady")
# The OpenAPI specs the tests use, vendored (tests/specs/README.md): a clone needs nothing beside it.
SPECS_DIR = ROOT / "tests/specs"

STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0
HTTP_TIMEOUT = 10.0


# --- processes ---------------------------------------------------------------------------


class Process:
    """A child process in its own process group, its output collected line by line."""

    def __init__(self, argv: list[str], label: str, cwd: Path | None = None):
        self.label = label
        self.argv = argv
        self.lines: list[str] = []
        self._eof = False
        self._cond = threading.Condition()
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._drain, name=f"drain-{label}", daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = STARTUP_TIMEOUT, start: int = 0) -> re.Match:
        """The first output line from index `start` on matching `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.lines):
                    m = regex.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                if self._eof:
                    raise RuntimeError(
                        f"{self.label} exited (code {self.popen.poll()}) before printing "
                        f"/{pattern}/:\n{self.output()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.label} did not print /{pattern}/ in {timeout}s:\n{self.output()}"
                    )
                self._cond.wait(remaining)

    def wait_until(self, predicate, timeout: float) -> bool:
        """Waits until `predicate(lines)` holds; False on timeout or exit."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.lines):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    return predicate(self.lines)
                self._cond.wait(remaining)
            return True

    def output(self, last: int = 40, width: int = 400) -> str:
        """The last lines of output, each cut to `width` characters, for failure messages."""
        with self._cond:
            return "\n".join(ln[:width] for ln in self.lines[-last:])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        # The group too: Steady's launcher leaves a child behind if only it is killed.
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(STOP_TIMEOUT)
        if self.popen.stdout is not None:
            self.popen.stdout.close()

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class Processes:
    """Processes started for one scope; all stopped when the scope ends."""

    def __init__(self) -> None:
        self._procs: list[Process] = []

    def start(self, argv: list[str], label: str) -> Process:
        proc = Process(argv, label)
        self._procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()


@pytest.fixture(scope="session")
def session_procs():
    procs = Processes()
    yield procs
    procs.stop_all()


@pytest.fixture
def procs():
    procs = Processes()
    yield procs
    procs.stop_all()


def http_get_json(url: str, timeout: float = HTTP_TIMEOUT) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def http_post_json(url: str, body: dict, timeout: float = HTTP_TIMEOUT) -> tuple[int, dict, dict]:
    """POSTs JSON; returns (status, headers, parsed body) for success and error statuses alike."""
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read() or b"null")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- simulated providers ------------------------------------------------------------------


@dataclass
class Mock:
    """A `switchyard mock` process."""

    proc: Process
    name: str
    url: str  # http://127.0.0.1:PORT/v1 (OpenAI format) or http://127.0.0.1:PORT (Anthropic)

    def stats(self) -> dict:
        return http_get_json(self.url.removesuffix("/v1") + "/_mock/stats")


def start_mock(procs: Processes, name: str, fault: str = "", fmt: str = "openai") -> Mock:
    """A simulated provider speaking `fmt`: `openai` (url ends in /v1) or `anthropic`
    (url is http://127.0.0.1:PORT, the gateway appends /v1/messages)."""
    argv = [str(SWITCHYARD_BIN), "mock", "--addr", "127.0.0.1:0", "--name", name]
    if fault:
        argv += ["--fault", fault]
    if fmt != "openai":
        argv += ["--format", fmt]
    proc = procs.start(argv, f"mock {name}")
    suffix = "/v1" if fmt == "openai" else ""
    m = proc.wait_for(rf"switchyard mock listening: (http://127\.0\.0\.1:\d+{suffix})\s*$")
    return Mock(proc=proc, name=name, url=m.group(1))


# --- gateways -------------------------------------------------------------------------------


@dataclass
class Provider:
    name: str
    base_url: str
    api_key: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = "openai"


@dataclass
class Gateway:
    """A `switchyard serve` process."""

    proc: Process
    http: str  # 127.0.0.1:PORT
    grpc: str  # 127.0.0.1:PORT
    models: list[str]

    @property
    def base_url(self) -> str:
        return f"http://{self.http}/v1"

    def client(self, **kwargs):
        """The official OpenAI SDK pointed at the gateway; no SDK retries, so every
        error the test sees is the gateway's own answer."""
        import openai

        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return openai.OpenAI(base_url=self.base_url, api_key="sk-e2e-client-key", **kwargs)


def _toml_str(s: str) -> str:
    # A JSON string of printable text is a valid TOML basic string.
    return json.dumps(s)


def gateway_config(
    providers: list[Provider],
    models: dict[str, list[tuple[str, str]]],
    failover: dict[str, int] | None = None,
) -> str:
    failover = {"attempt_timeout_ms": 2000, "deadline_ms": 5000, **(failover or {})}
    out = ["[server]", 'http_addr = "127.0.0.1:0"', 'grpc_addr = "127.0.0.1:0"', "", "[failover]"]
    out += [f"{k} = {v}" for k, v in failover.items()]
    for p in providers:
        out += ["", "[[providers]]", f"name = {_toml_str(p.name)}", f"kind = {_toml_str(p.kind)}"]
        out.append(f"base_url = {_toml_str(p.base_url)}")
        if p.api_key:
            out.append(f"api_key = {_toml_str(p.api_key)}")
        if p.headers:
            pairs = ", ".join(f"{_toml_str(k)} = {_toml_str(v)}" for k, v in p.headers.items())
            out.append(f"headers = {{ {pairs} }}")
    for name, deployments in models.items():
        deps = ", ".join(
            f"{{ provider = {_toml_str(p)}, model = {_toml_str(m)} }}" for p, m in deployments
        )
        out += ["", "[[models]]", f"name = {_toml_str(name)}", f"deployments = [ {deps} ]"]
    return "\n".join(out) + "\n"


def start_gateway(
    procs: Processes,
    config_dir: Path,
    providers: list[Provider],
    models: dict[str, list[tuple[str, str]]],
    failover: dict[str, int] | None = None,
) -> Gateway:
    config = config_dir / "switchyard.toml"
    config.write_text(gateway_config(providers, models, failover))
    proc = procs.start(
        [str(SWITCHYARD_BIN), "serve", "--config", str(config)], f"gateway {config_dir.name}"
    )
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=list(models))


# --- the shared simulated world ----------------------------------------------------------------


@dataclass
class Sim:
    """One gateway over simulated providers, one model per behaviour under test.

    - `gpt-4o-mini`: primary, then backup (both healthy)
    - `failover-503`: `down` (always 503), then backup
    - `rate-limited`: `limited-a` and `limited-b`, both always 429 with `retry-after: 1`
    - `rate-limited-grpc`: the same providers under another upstream model name. The
      gateway honours a 429's retry-after per deployment (`provider/model`): a second test
      on the same deployments within a second would find `limited-a` skipped
      (`circuit_open`), so each test that exhausts them gets deployments of its own.
    - `cut-midstream`: only `cutter`, whose streams end after 3 chunks without `[DONE]`
      (the role chunk and two content chunks)
    - `cut-before-content`: `early-cut` (streams end after the role chunk), then backup
    - `passthrough`: only `recorder`, whose stats the passthrough tests read
    """

    gateway: Gateway
    mocks: dict[str, Mock]


SIM_MODEL = "gpt-4o-mini"
GRPC_LIMITED = "gpt-4o-mini-grpc"


@pytest.fixture(scope="session")
def sim(session_procs, tmp_path_factory) -> Sim:
    specs = {
        "primary": "",
        "backup": "",
        "down": "status=503",
        "limited-a": "status=429",
        "limited-b": "status=429",
        "cutter": "cut_after_chunks=3",
        "early-cut": "cut_after_chunks=1",
        "recorder": "",
    }
    mocks = {name: start_mock(session_procs, name, fault) for name, fault in specs.items()}
    providers = [Provider(name, m.url, api_key=f"sk-test-{name}") for name, m in mocks.items()]
    upstream = SIM_MODEL
    models = {
        SIM_MODEL: [("primary", upstream), ("backup", upstream)],
        "failover-503": [("down", upstream), ("backup", upstream)],
        "rate-limited": [("limited-a", upstream), ("limited-b", upstream)],
        "rate-limited-grpc": [("limited-a", GRPC_LIMITED), ("limited-b", GRPC_LIMITED)],
        "cut-midstream": [("cutter", upstream)],
        "cut-before-content": [("early-cut", upstream), ("backup", upstream)],
        "passthrough": [("recorder", upstream)],
    }
    gateway = start_gateway(session_procs, tmp_path_factory.mktemp("sim"), providers, models)
    return Sim(gateway=gateway, mocks=mocks)


def mock_text(name: str, prompt: str) -> str:
    """What a simulated provider named `name` answers to the user message `prompt`."""
    return f"Hello from {name}! You said: {prompt}"


def mock_usage(messages: list[dict], text: str) -> dict[str, int]:
    """The usage a simulated provider reports: ~4 characters a token of each message's JSON
    content plus 4 per message; one completion token per word."""
    prompt = sum(
        4 + -(-len(json.dumps(m["content"], separators=(",", ":"))) // 4) for m in messages
    )
    completion = len(text.split(" "))
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


# --- scripted upstream ---------------------------------------------------------------------------


class ScriptedUpstream:
    """An upstream in this process that answers every POST (whatever the path: OpenAI's
    /v1/chat/completions or Anthropic's /v1/messages) with the same raw bytes, SSE unless
    `content_type` says otherwise, written in one `sendall`, so the gateway reads them in
    one piece. `url` ends in /v1 (OpenAI base URL); `root` has no path (Anthropic's)."""

    def __init__(self, sse_body: bytes, content_type: str = "text/event-stream"):
        body = sse_body
        ctype = content_type.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("content-length", "0")))
                head = (
                    b"HTTP/1.1 200 OK\r\ncontent-type: " + ctype + b"\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n"
                )
                self.wfile.write(head + body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.root + "/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(STOP_TIMEOUT)


@pytest.fixture
def scripted_upstream():
    """A factory of scripted upstreams, all stopped at teardown."""
    started: list[ScriptedUpstream] = []

    def start(sse_body: bytes, content_type: str = "text/event-stream") -> ScriptedUpstream:
        upstream = ScriptedUpstream(sse_body, content_type)
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()


# --- gRPC stubs -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pb(tmp_path_factory):
    """The Python modules generated from proto/switchyard/v1/gateway.proto."""
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("grpc_stubs")
    proto = ROOT / "proto"
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(proto / "switchyard/v1/gateway.proto"),
        ]
    )
    assert rc == 0, f"protoc failed with {rc}"
    sys.path.insert(0, str(out))
    from switchyard.v1 import gateway_pb2, gateway_pb2_grpc

    class Stubs:
        msgs = gateway_pb2
        grpc = gateway_pb2_grpc

    return Stubs


# --- Steady (validating mock of OpenAI's OpenAPI spec) -------------------------------------------


@dataclass
class Steady:
    proc: Process
    base_url: str  # http://127.0.0.1:PORT, no /v1: the spec's paths have none

    def request_events(self) -> list[dict]:
        """The per-request records of Steady's JSON log, in order."""
        events = []
        for line in self.proc.lines[:]:
            if line.startswith("{") and '"type":"request"' in line:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return events

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[dict]:
        """Waits until Steady has logged at least `count` requests; returns them all."""
        self.proc.wait_until(
            lambda lines: sum('"type":"request"' in ln for ln in lines) >= count, timeout
        )
        events = self.request_events()
        assert len(events) >= count, (
            f"Steady logged {len(events)} requests, expected {count}:\n{self.proc.output()}"
        )
        return events


def start_steady(procs: Processes, spec: Path, attempts: int = 3) -> Steady:
    last_error: Exception | None = None
    for attempt in range(attempts):
        port = free_port()
        argv = [
            str(STEADY_BIN),
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--log-format",
            "json",
            "--no-color",
            "--validator-query-array-format=brackets",
            "--validator-query-object-format=brackets",
            "--validator-form-array-format=brackets",
            "--validator-form-object-format=brackets",
            str(spec),
        ]
        proc = procs.start(argv, f"steady#{attempt}")
        try:
            proc.wait_for(r'"type":"startup"', timeout=30)
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(proc, base + "/_x-steady/health", timeout=15)
            return Steady(proc=proc, base_url=base)
        except (RuntimeError, TimeoutError) as e:
            last_error = e
            proc.stop()
    raise RuntimeError(f"Steady did not start after {attempts} tries: {last_error}")


def _wait_healthy(proc: Process, url: str, timeout: float) -> None:
    """Polls Steady's health endpoint (it has no other readiness signal), bounded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_get_json(url, timeout=2).get("status") == "healthy":
                return
        except (OSError, ValueError):
            pass
        if proc.popen.poll() is not None:
            raise RuntimeError(f"Steady exited:\n{proc.output()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Steady not healthy within {timeout}s:\n{proc.output()}")
        time.sleep(0.05)

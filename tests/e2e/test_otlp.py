"""OTLP traces as an OpenTelemetry collector sees them: a receiver built on the
`opentelemetry-proto` package decodes the gateway's HTTP/protobuf export of a request the
official OpenAI SDK sent, which failed over from a 503 to a backup; and a collector that is
down costs the SDK's requests nothing but the drop counter.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
import urllib.request
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from conftest import HTTP_TIMEOUT, SWITCHYARD_BIN, Gateway, Mock, start_mock

MODEL = "gpt-4o-mini"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


class Collector:
    """An OTLP/HTTP trace receiver on 127.0.0.1 (port 0): every span it decodes."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.content_types: list[str] = []
        self._cond = threading.Condition()
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with collector._cond:
                    collector.content_types.append(self.headers["content-type"])
                    for rs in request.resource_spans:
                        for ss in rs.scope_spans:
                            collector.spans.extend(ss.spans)
                    collector._cond.notify_all()
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, trace_id: str, count: int, timeout: float = 15.0) -> list[Span]:
        """The spans of `trace_id`, once there are at least `count` of them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                mine = [s for s in self.spans if s.trace_id.hex() == trace_id]
                if len(mine) >= count:
                    return mine
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{len(mine)} spans of {trace_id} arrived, not {count}"
                self._cond.wait(remaining)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(procs, tmp_path: Path, mocks: list[Mock], endpoint: str) -> Gateway:
    lines = [
        "[server]",
        'http_addr = "127.0.0.1:0"',
        'grpc_addr = "127.0.0.1:0"',
        "[failover]",
        "attempt_timeout_ms = 3000",
        "deadline_ms = 8000",
        "backoff_initial_ms = 5",
        "backoff_max_ms = 20",
        "[telemetry]",
        f'otlp_endpoint = "{endpoint}"',
        "sampling_ratio = 1.0",
    ]
    for m in mocks:
        lines += ["[[providers]]", f'name = "{m.name}"', 'kind = "openai"', f'base_url = "{m.url}"']
    deployments = ", ".join(f'{{ provider = "{m.name}", model = "up-{m.name}" }}' for m in mocks)
    lines += ["[[models]]", f'name = "{MODEL}"', f"deployments = [ {deployments} ]"]
    config = tmp_path / "switchyard.toml"
    config.write_text("\n".join(lines) + "\n")
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway otlp")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    return Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=[MODEL])


def attrs(span: Span) -> dict:
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = [v.string_value for v in kv.value.array_value.values]
        else:
            out[kv.key] = getattr(kv.value, kind)
    return out


def test_a_failed_over_request_arrives_as_a_server_span_with_one_client_span_per_attempt(
    procs, tmp_path
):
    collector = Collector()
    try:
        down = start_mock(procs, "down", "status=503")
        backup = start_mock(procs, "backup")
        gw = serve(procs, tmp_path, [down, backup], collector.url)
        raw = gw.client().chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Hello"}],
            max_tokens=40,
            extra_headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"},
        )
        completion = raw.parse()
        assert completion.choices[0].message.content
        assert raw.headers["x-switchyard-attempts"] == "down/up-down=503, backup/up-backup=ok"

        spans = collector.wait_for(TRACE_ID, 3)
        assert len(spans) == 3
        assert set(collector.content_types) == {"application/x-protobuf"}
        (request,) = [s for s in spans if s.kind == Span.SPAN_KIND_SERVER]
        assert request.parent_span_id.hex() == CALLER_SPAN
        a = attrs(request)
        assert a["gen_ai.operation.name"] == "chat"
        assert a["gen_ai.provider.name"] == "openai"
        assert a["gen_ai.request.model"] == MODEL
        assert a["gen_ai.response.model"] == completion.model
        assert a["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
        assert a["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
        assert a["gen_ai.request.max_tokens"] == 40
        assert a["gen_ai.response.finish_reasons"] == [completion.choices[0].finish_reason]
        assert a["server.address"] == "127.0.0.1"
        assert a["switchyard.outcome"] == "ok"
        assert a["switchyard.attempts"] == "down/up-down=503, backup/up-backup=ok"
        assert "error.type" not in a
        assert "gen_ai.input.messages" not in a, "content is off by default"

        attempts = sorted(
            (s for s in spans if s.kind == Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
        )
        assert [attrs(s)["switchyard.attempt.outcome"] for s in attempts] == ["503", "ok"]
        for s in attempts:
            assert s.parent_span_id == request.span_id
            assert request.start_time_unix_nano <= s.start_time_unix_nano
            assert s.end_time_unix_nano <= request.end_time_unix_nano
        failed, served = attempts
        assert attrs(failed)["error.type"] == "503"
        assert failed.status.code == Status.STATUS_CODE_ERROR
        assert attrs(failed)["gen_ai.request.model"] == "up-down"
        assert attrs(served)["switchyard.provider"] == "backup"

        # Each upstream saw the trace, its own attempt's span as the parent.
        for mock, span in [(down, failed), (backup, served)]:
            sent = mock.stats()["last_headers"]["traceparent"]
            assert sent == f"00-{TRACE_ID}-{span.span_id.hex()}-01", mock.name
    finally:
        collector.close()


def dropped(gw: Gateway) -> float:
    with urllib.request.urlopen(f"http://{gw.http}/metrics", timeout=HTTP_TIMEOUT) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("switchyard_otlp_spans_dropped_total{")
        and 'reason="export_failed"' in line
    )


def test_a_collector_that_is_down_costs_the_sdk_nothing_but_the_drop_counter(procs, tmp_path):
    # A port that refuses connections for as long as the socket is held.
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    try:
        backup = start_mock(procs, "backup")
        gw = serve(procs, tmp_path, [backup], f"http://127.0.0.1:{held.getsockname()[1]}")
        client = gw.client()
        for i in range(10):
            completion = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"hi {i}"}]
            )
            assert completion.choices[0].message.content
            with client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "stream"}], stream=True
            ) as stream:
                assert any(c.choices and c.choices[0].delta.content for c in stream)
        deadline = time.monotonic() + 15
        while dropped(gw) == 0:
            assert time.monotonic() < deadline, "no span was counted as dropped"
            time.sleep(0.05)
        assert dropped(gw) >= 2
    finally:
        held.close()

"""The deployment files agree with the gateway: the Kubernetes ConfigMap's switchyard.toml
and policies pass `switchyard check-config`, the manifests agree with that config and with
each other (ports, drain and grace period, secrets, Redis), and every metric the Grafana
dashboard queries is one a running gateway exports (the GenAI histograms and the OTLP export
counters included).

(hadolint and kubernetes-validate check the Dockerfile and the manifests' schemas in
tests/run.sh; these tests check what the schemas cannot.)
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import subprocess
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SWITCHYARD_BIN, Gateway, http_post_json, start_mock

KUBE = ROOT / "deploy/kubernetes"
DASHBOARD = ROOT / "deploy/grafana/switchyard.json"


def manifests() -> dict[str, dict]:
    """Every resource in deploy/kubernetes, by `kind/name`."""
    out = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def configmap_files(tmp_path: Path) -> Path:
    """The ConfigMap's keys written as files, as the volume mounts them; returns the folder."""
    data = manifests()["ConfigMap/switchyard-config"]["data"]
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def gateway_container(docs: dict[str, dict]) -> dict:
    (container,) = docs["Deployment/switchyard"]["spec"]["template"]["spec"]["containers"]
    return container


def env_refs(text: str) -> set[str]:
    """The environment variables a config's values name as `env:NAME`."""
    found = set()

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value.startswith("env:"):
            found.add(value.removeprefix("env:"))

    walk(tomllib.loads(text))
    return found


def test_the_configmaps_config_and_policies_pass_check_config(tmp_path):
    folder = configmap_files(tmp_path)
    config = (folder / "switchyard.toml").read_text()
    # What the Deployment sets from the Secret, with made-up values.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for name in env_refs(config):
        env[name] = f"test-value-for-{name.lower()}-0123456789"
    out = subprocess.run(
        [str(SWITCHYARD_BIN), "check-config", str(folder / "switchyard.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "ok (2 providers, 2 models" in out.stdout, out.stdout

    # The policy is really loaded and self-checked: a wrong case rejects the file.
    cases = folder / "region.cases.json"
    broken = json.loads(cases.read_text())
    broken[1]["expect"].reverse()
    cases.write_text(json.dumps(broken))
    out = subprocess.run(
        [str(SWITCHYARD_BIN), "check-config", str(folder / "switchyard.toml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 1 and "policy `region`" in out.stderr, out.stderr


def test_the_manifests_agree_with_the_config_and_each_other(tmp_path):
    docs = manifests()
    text = configmap_files(tmp_path).joinpath("switchyard.toml").read_text()
    config = tomllib.loads(text)
    deployment = docs["Deployment/switchyard"]
    pod = deployment["spec"]["template"]["spec"]
    container = gateway_container(docs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    # Listeners: the config's ports are the container's, the Service's and the image's.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert config["server"]["http_addr"] == f"0.0.0.0:{ports['http']}"
    assert config["server"]["grpc_addr"] == f"0.0.0.0:{ports['grpc']}"
    service = docs["Service/switchyard"]["spec"]
    assert {p["targetPort"] for p in service["ports"]} == set(ports)
    assert service["selector"] == labels
    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed and set(exposed.group(1).split()) == {str(p) for p in ports.values()}

    # Probes on the gateway's health endpoints.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}

    # Shutdown: the grace period covers the preStop sleep and the whole drain.
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = config["server"]["drain_timeout_ms"] / 1000
    grace = pod["terminationGracePeriodSeconds"]
    assert grace >= sleep + drain, (grace, sleep, drain)
    assert grace <= sleep + drain + 15, "a grace period far past the drain only delays rollouts"

    # The config is read from the mounted ConfigMap.
    args = container["args"]
    config_path = Path(args[args.index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    assert Path(mount["mountPath"]) == config_path.parent and mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == "switchyard-config"
    assert config["routing"]["scripts_dir"] == ".", "the policies are keys of the ConfigMap"

    # Every env:NAME of the config comes from the Secret, and nothing else is set.
    from_secret = {
        e["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert from_secret == env_refs(text)
    assert all("value" not in e for e in container["env"]), "no literal values in the manifest"

    # Shared state: the config points at the Redis Service, which selects the StatefulSet.
    redis = docs["Service/switchyard-redis"]["spec"]
    assert config["state"]["redis_url"] == f"redis://switchyard-redis:{redis['ports'][0]['port']}/0"
    statefulset = docs["StatefulSet/switchyard-redis"]["spec"]
    assert redis["selector"] == statefulset["template"]["metadata"]["labels"]
    assert docs[f"Service/{statefulset['serviceName']}"]["spec"]["clusterIP"] == "None"

    # Scaling and disruptions act on these pods.
    hpa = docs["HorizontalPodAutoscaler/switchyard"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "switchyard"
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] == 3
    assert docs["PodDisruptionBudget/switchyard"]["spec"]["selector"]["matchLabels"] == labels

    # Locked down: non-root, read-only root, no capabilities, for every container.
    for name in ("Deployment/switchyard", "StatefulSet/switchyard-redis"):
        spec = docs[name]["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name


# --- the dashboard ---------------------------------------------------------------------------

# PromQL words that are not metric names (functions are recognised by the `(` after them).
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                   "unless", "bool", "offset", "inf", "nan"}


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return exprs


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values)
    e = re.sub(r"\{[^}]*\}", " ", e)  # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)  # range selectors
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\w+", " ", e)  # dashboard variables
    e = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", " ", e)  # numbers
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("("):
            continue  # a function
        if m.group(0).lower() not in PROMQL_KEYWORDS:
            names.add(m.group(0))
    return names


def test_metric_names_are_parsed_out_of_promql():
    assert metric_names(
        'histogram_quantile(0.95, sum by (model, le) (rate(a_seconds_bucket{model=~"$model"}'
        "[$__rate_interval]))) / on (x) group_left b_total * 3600 / 1e6"
    ) == {"a_seconds_bucket", "b_total"}


def exported(metrics_text: str) -> set[str]:
    """The metric names in Prometheus text, histograms by their series names too."""
    names = set()
    for line in metrics_text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) in ("histogram", "summary"):
                names |= {m.group(1) + s for s in ("_bucket", "_sum", "_count")}
    return names


class TraceSink:
    """An OTLP/HTTP receiver on 127.0.0.1 (port 0) that accepts every POST /v1/traces with
    200 until `failing` is set, then answers 503 (a collector in trouble)."""

    def __init__(self) -> None:
        self.failing = False
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers["content-length"]))
                ok = self.path == "/v1/traces" and not sink.failing
                self.send_response(200 if ok else 503)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def trace_sink():
    sink = TraceSink()
    yield sink
    sink.close()


def test_every_metric_the_dashboard_queries_is_one_the_gateway_exports(
    procs, tmp_path, trace_sink
):
    ok = start_mock(procs, "ok")
    down = start_mock(procs, "down", "status=503")
    slow = start_mock(procs, "slow", "chunk_delay_ms=200")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts/boom.lua").write_text('function route(r, c)\n  if r.model == "fallback" then error("boom") end\n  return { c[1].id }\nend\n')
    admin = "admin-key-0123456789abcdef"
    priced = 'price_in = 1.0, price_out = 2.0'
    lines = [
        "[server]",
        'http_addr = "127.0.0.1:0"',
        'grpc_addr = "127.0.0.1:0"',
        "max_in_flight = 1",
        "[failover]",
        "attempt_timeout_ms = 3000",
        "deadline_ms = 8000",
        "backoff_initial_ms = 5",
        "backoff_max_ms = 20",
        "[breaker]",
        "failures = 1",
        "[cache]",
        "ttl_s = 60",
        "[routing]",
        'scripts_dir = "scripts"',
        "[admin]",
        f'api_key = "{admin}"',
        "[telemetry]",
        f'otlp_endpoint = "{trace_sink.url}"',
        "sampling_ratio = 1.0",
    ]
    for m in (ok, down, slow):
        lines += ["[[providers]]", f'name = "{m.name}"', 'kind = "openai"', f'base_url = "{m.url}"']
    models = {
        "chat": (f'{{ provider = "ok", model = "up", {priced} }}', ""),
        "limited": ('{ provider = "ok", model = "up" }', "limits = { rpm = 1 }"),
        "failing": (f'{{ provider = "down", model = "up-f" }}, {{ provider = "ok", model = "up", {priced} }}', ""),
        "broken": ('{ provider = "down", model = "up-b" }', ""),
        "slow": ('{ provider = "slow", model = "up" }', ""),
        "fallback": ('{ provider = "ok", model = "up" }', 'policy = "boom"'),
        "streamed": ('{ provider = "ok", model = "up" }', ""),
    }
    for name, (deployments, extra) in models.items():
        ttl = "" if name == "chat" else "cache_ttl_s = 0"
        lines += ["[[models]]", f'name = "{name}"', extra, ttl, f"deployments = [ {deployments} ]"]
    config = tmp_path / "switchyard.toml"
    config.write_text("\n".join(lines) + "\n")
    proc = procs.start([str(SWITCHYARD_BIN), "serve", "--config", str(config)], "gateway deploy")
    m = proc.wait_for(r"switchyard listening: http=(\S+) grpc=(\S+)")
    gw = Gateway(proc=proc, http=m.group(1), grpc=m.group(2), models=list(models))

    def chat(model: str) -> int:
        body = {"model": model, "messages": [{"role": "user", "content": "Hello"}]}
        status, _, _ = http_post_json(f"http://{gw.http}/v1/chat/completions", body)
        return status

    def metrics() -> set[str]:
        with urllib.request.urlopen(f"http://{gw.http}/metrics", timeout=10) as r:
            return exported(r.read().decode())

    def await_metric(name: str) -> None:
        """Until /metrics names `name` (OTLP export runs in the background, in batches)."""
        deadline = time.monotonic() + 15
        while name not in metrics():
            assert time.monotonic() < deadline, f"{name} never appeared in /metrics"
            time.sleep(0.05)

    assert [chat("chat"), chat("chat")] == [200, 200]  # a miss, then a hit
    assert [chat("limited"), chat("limited")] == [200, 429]
    assert chat("failing") == 200  # its first deployment's circuit opens
    assert chat("broken") == 503  # every attempt failed: a 5xx, and an alert
    assert chat("fallback") == 200  # the policy fails; the configured order serves

    # A whole stream: the GenAI time-to-first-token and time-per-output-token histograms.
    with urllib.request.urlopen(
        urllib.request.Request(
            f"http://{gw.http}/v1/chat/completions",
            data=json.dumps(
                {"model": "streamed", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}
            ).encode(),
            headers={"content-type": "application/json"},
        ),
        timeout=10,
    ) as r:
        assert r.status == 200
        assert r.read().rstrip().endswith(b"data: [DONE]")

    # Shed: a stream holds the only max_in_flight slot while another request arrives.
    stream = http.client.HTTPConnection(gw.http, timeout=10)
    stream.request(
        "POST",
        "/v1/chat/completions",
        json.dumps({"model": "slow", "stream": True, "messages": [{"role": "user", "content": "Hi"}]}),
        {"content-type": "application/json"},
    )
    resp = stream.getresponse()
    assert resp.status == 200
    assert resp.readline().startswith(b"data: ")  # in flight
    assert chat("chat") == 503
    stream.close()

    req = urllib.request.Request(
        f"http://{gw.http}/admin/reload", method="POST", headers={"authorization": f"Bearer {admin}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200

    # Trace export: the collector accepts the spans so far, then fails, so the next
    # request's spans are dropped.
    await_metric("switchyard_otlp_spans_exported_total")
    trace_sink.failing = True
    assert chat("streamed") == 200
    await_metric("switchyard_otlp_spans_dropped_total")

    have = metrics()

    wanted: dict[str, list[str]] = {}
    for expr in dashboard_exprs():
        for name in metric_names(expr):
            wanted.setdefault(name, []).append(expr)
    assert "switchyard_requests_total" in wanted and len(wanted) >= 15, sorted(wanted)
    panels_for = {
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_token_usage_sum",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "gen_ai_server_time_per_output_token_seconds_bucket",
        "switchyard_otlp_spans_exported_total",
        "switchyard_otlp_spans_dropped_total",
    }
    assert panels_for <= set(wanted), f"no panel for {sorted(panels_for - set(wanted))}"
    missing = {name: exprs[0] for name, exprs in wanted.items() if name not in have}
    assert not missing, f"the dashboard queries metrics /metrics does not export: {missing}"


def test_the_alerting_examples_in_the_docs_name_metrics_the_code_records():
    recorded = set()
    consts: dict[str, str] = {}
    via_const = set()
    for path in (ROOT / "src").rglob("*.rs"):
        text = path.read_text()
        recorded |= set(re.findall(r'(?:counter|gauge|histogram)!\(\s*"(\w+)"', text))
        # A name in a constant: `const DROPPED: &str = "..."` and `counter!(DROPPED, ...)`.
        consts |= dict(re.findall(r'\bconst (\w+): &str = "(\w+)";', text))
        via_const |= set(re.findall(r"(?:counter|gauge|histogram)!\(\s*([A-Z][A-Z0-9_]*)\b", text))
    recorded |= {consts[c] for c in via_const if c in consts}
    assert "switchyard_otlp_spans_dropped_total" in recorded, sorted(recorded)
    assert "switchyard_requests_total" in recorded and len(recorded) >= 25, sorted(recorded)
    docs = (ROOT / "docs/operations.md").read_text()
    section = docs.split("### What to alert on", 1)[1].split("\n### ", 1)[0]
    (promql,) = re.findall(r"```promql\n(.*?)```", section, re.S)
    named = set()
    for line in promql.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            named |= metric_names(line)
    base = {re.sub(r"_(bucket|sum|count)$", "", n) for n in named}
    assert len(base) >= 10, sorted(base)
    assert base <= recorded, f"not recorded anywhere in src/: {sorted(base - recorded)}"

"""The gRPC surface through a client generated from proto/switchyard/v1/gateway.proto, plus
the standard health and reflection services."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from conftest import GRPC_LIMITED, SIM_MODEL, mock_text, mock_usage

PROMPT = "Say hello over gRPC."
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def channel(sim):
    with grpc.insecure_channel(sim.gateway.grpc) as ch:
        grpc.channel_ready_future(ch).result(timeout=TIMEOUT)
        yield ch


@pytest.fixture(scope="module")
def stub(pb, channel):
    return pb.grpc.GatewayStub(channel)


def chat_request(pb, model=SIM_MODEL, **kwargs):
    return pb.msgs.ChatRequest(
        model=model, messages=[pb.msgs.Message(role="user", content=PROMPT)], **kwargs
    )


def metadata(pairs) -> dict[str, str]:
    return {k: v for k, v in (pairs or ())}


def test_chat_returns_content_usage_and_the_serving_provider(pb, stub):
    resp, call = stub.Chat.with_call(chat_request(pb), timeout=TIMEOUT)

    assert resp.id
    [choice] = resp.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == mock_text("primary", PROMPT)
    assert choice.finish_reason == "stop"
    expected = mock_usage([{"content": PROMPT}], choice.message.content)
    assert resp.HasField("usage")
    assert {k: getattr(resp.usage, k) for k in expected} == expected
    md = metadata(call.initial_metadata())
    assert md["x-switchyard-provider"] == "primary"
    assert md["x-switchyard-attempts"] == f"primary/{SIM_MODEL}=ok"
    assert md["x-request-id"]


def test_chat_stream_chunks_reassemble_and_include_usage_ends_with_usage(pb, stub):
    call = stub.ChatStream(chat_request(pb, include_usage=True), timeout=TIMEOUT)
    chunks = list(call)

    text = "".join(c.choices[0].delta.content for c in chunks if c.choices)
    assert text == mock_text("primary", PROMPT)
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 3
    assert [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ] == ["stop"]
    with_usage = [c for c in chunks if c.HasField("usage")]
    assert with_usage == [chunks[-1]]
    assert len(chunks[-1].choices) == 0
    expected = mock_usage([{"content": PROMPT}], text)
    assert {k: getattr(chunks[-1].usage, k) for k in expected} == expected
    assert metadata(call.initial_metadata())["x-switchyard-provider"] == "primary"
    assert call.code() == grpc.StatusCode.OK


def test_chat_stream_without_include_usage_has_no_usage(pb, stub):
    chunks = list(stub.ChatStream(chat_request(pb), timeout=TIMEOUT))

    assert "".join(c.choices[0].delta.content for c in chunks if c.choices) == mock_text(
        "primary", PROMPT
    )
    assert not any(c.HasField("usage") for c in chunks)


def test_chat_tool_call_arguments_are_json(pb, stub):
    params = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    tool = pb.msgs.Tool(
        function=pb.msgs.FunctionDefinition(name="get_weather", parameters_json=json.dumps(params))
    )
    resp = stub.Chat(
        chat_request(pb, tools=[tool], tool_choice=pb.msgs.ToolChoice(function="get_weather")),
        timeout=TIMEOUT,
    )

    [choice] = resp.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.id and call.name == "get_weather"
    args = json.loads(call.arguments)
    assert isinstance(args["city"], str) and isinstance(args["days"], int)


def test_list_models_lists_the_configured_models(pb, stub, sim):
    resp = stub.ListModels(pb.msgs.ListModelsRequest(), timeout=TIMEOUT)

    assert sorted(m.id for m in resp.models) == sorted(sim.gateway.models)


def test_unknown_model_is_not_found(pb, stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Chat(chat_request(pb, model="no-such-model"), timeout=TIMEOUT)

    err = info.value
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in err.details()
    assert metadata(err.trailing_metadata())["x-switchyard-http-status"] == "404"


def test_empty_messages_is_invalid_argument(pb, stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Chat(pb.msgs.ChatRequest(model=SIM_MODEL), timeout=TIMEOUT)

    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_all_deployments_rate_limited_is_resource_exhausted(pb, stub):
    with pytest.raises(grpc.RpcError) as info:
        stub.Chat(chat_request(pb, model="rate-limited-grpc"), timeout=TIMEOUT)

    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "simulated 429 from limited-b"
    md = metadata(err.trailing_metadata())
    assert md["retry-after"] == "1"
    assert md["x-switchyard-attempts"] == (
        f"limited-a/{GRPC_LIMITED}=429, limited-b/{GRPC_LIMITED}=429"
    )


def test_failover_shows_in_metadata(pb, stub):
    resp, call = stub.Chat.with_call(chat_request(pb, model="failover-503"), timeout=TIMEOUT)

    assert resp.choices[0].message.content == mock_text("backup", PROMPT)
    md = metadata(call.initial_metadata())
    assert md["x-switchyard-provider"] == "backup"
    assert md["x-switchyard-attempts"] == f"down/{SIM_MODEL}=503, backup/{SIM_MODEL}=ok"


def test_stream_failover_before_first_content_is_invisible(pb, stub):
    call = stub.ChatStream(chat_request(pb, model="cut-before-content"), timeout=TIMEOUT)
    chunks = list(call)

    assert "".join(c.choices[0].delta.content for c in chunks if c.choices) == mock_text(
        "backup", PROMPT
    )
    assert len({c.id for c in chunks}) == 1
    # The metadata went out when the first stream opened, before it was cut.
    md = metadata(call.initial_metadata())
    assert md["x-switchyard-provider"] == "early-cut"
    assert md["x-switchyard-attempts"] == f"early-cut/{SIM_MODEL}=ok"


def test_stream_cut_after_first_content_ends_with_an_error_status(pb, stub):
    call = stub.ChatStream(chat_request(pb, model="cut-midstream"), timeout=TIMEOUT)
    received = []
    with pytest.raises(grpc.RpcError) as info:
        for chunk in call:
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)

    assert received == ["Hello ", "from "]
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("service", ["", "switchyard.v1.Gateway"])
def test_health_check_reports_serving(channel, service):
    resp = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT
    )

    assert resp.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_gateway_service(channel):
    # grpcio-reflection's client speaks only v1alpha; the v1 protocol is the same messages
    # under the package `grpc.reflection.v1`, so the v1alpha classes encode it exactly.
    info = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="switchyard.v1.Gateway"),
    ]
    listed, described = list(info(iter(requests), timeout=TIMEOUT))

    names = {s.name for s in listed.list_services_response.service}
    assert {"switchyard.v1.Gateway", "grpc.health.v1.Health"} <= names
    assert described.WhichOneof("message_response") == "file_descriptor_response"
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(b)
        for b in described.file_descriptor_response.file_descriptor_proto
    ]
    gateway = next(f for f in files if f.package == "switchyard.v1")
    [service] = [s for s in gateway.service if s.name == "Gateway"]
    assert {m.name for m in service.method} == {"Chat", "ChatStream", "ListModels", "Embed"}

"""The LLM gateway against the project's OpenAI-compatible test server on loopback."""

from __future__ import annotations

import json
import logging
import multiprocessing
import sqlite3
from pathlib import Path

import openai
import pytest
from pydantic import BaseModel

from models.llm import GatewayConfig, LLMGateway, LLMRequest, LLMUnavailable
from models.llm.cache import ResponseCache
from models.llm.test_server import FaultPlan, scripted_responder

pytest_plugins = ["conftest_llm"]


class TrackPick(BaseModel):
    title: str
    energy: int


class SearchTracks(BaseModel):
    """Find tracks by mood."""

    mood: str


def _requests(n: int, prompt_version: str = "v1") -> list[LLMRequest]:
    return [
        LLMRequest(
            messages=[{"role": "user", "content": f"pick a track #{i}"}],
            output_schema=TrackPick,
            prompt_version=prompt_version,
            id=f"req-{i}",
        )
        for i in range(n)
    ]


def test_fault_storm_loses_and_duplicates_nothing(start_server, make_gateway) -> None:
    faults = FaultPlan(
        latency_ms=2,
        probabilities={"rate_limit": 0.10, "server_error": 0.05, "timeout": 0.02, "malformed": 0.03},
        seed=7,
        retry_after_s=0.01,
        timeout_sleep_s=1.0,
    )
    server = start_server(faults=faults)
    # One transport retry and no re-asks, so some items really fail and the reasons show.
    gateway = make_gateway(server, timeout_s=0.3, max_retries=1, max_validation_retries=0)

    batch = gateway.map(_requests(1000))

    assert [r.request_id for r in batch] == [f"req-{i}" for i in range(1000)]
    assert [r.index for r in batch] == list(range(1000))
    assert all(r.ok == (r.failure is None) and (r.ok == (r.output is not None)) for r in batch)
    stats = batch.stats
    assert stats.requests == 1000 and stats.succeeded + stats.failed == 1000
    assert stats.failed == sum(stats.failures_by_reason.values()) > 0
    assert set(stats.failures_by_reason) <= {"rate_limited", "server_error", "timeout", "invalid_output"}
    assert stats.failures_by_reason.get("invalid_output", 0) > 0
    # Every attempt the server handled was counted by the client; under load a few more can time out in the
    # client before the server reads them, so the client's count may be higher, never lower.
    assert stats.http_requests >= server.request_count > 1000
    assert stats.prompt_tokens > 0 and stats.cost_usd > 0
    flat = stats.as_flat_dict()
    assert flat["llm_requests"] == 1000
    assert all(isinstance(v, int | float) for v in flat.values())


def test_rerun_hits_cache_and_new_prompt_version_misses(start_server, make_gateway) -> None:
    server = start_server()
    gateway = make_gateway(server)
    first = gateway.map(_requests(50))
    assert first.stats.succeeded == 50 and server.request_count == 50

    again = make_gateway(server).map(_requests(50))  # a fresh gateway: the cache is on disk
    assert server.request_count == 50
    assert again.stats.cache_hits == 50 and again.stats.http_requests == 0
    assert [r.output for r in again] == [r.output for r in first]

    bumped = gateway.map(_requests(50, prompt_version="v2"))
    assert bumped.stats.cache_hits == 0 and server.request_count == 100


def test_errors_are_not_cached(start_server, make_gateway) -> None:
    server = start_server(faults=FaultPlan(script=["server_error"]))
    gateway = make_gateway(server, max_retries=0)
    assert gateway.map(_requests(1))[0].failure == "server_error"
    assert gateway.map(_requests(1))[0].ok
    assert server.request_count == 2


def test_identical_requests_in_one_batch_are_asked_once(start_server, make_gateway) -> None:
    server = start_server()
    batch = make_gateway(server).map(_requests(1) * 3)
    assert server.request_count == 1 and len(batch) == 3 and all(r.ok for r in batch)


def _write_cache_rows(path: str, first: int, last: int) -> None:
    cache = ResponseCache(path)
    for start in range(first, last, 10):
        rows = [
            (f"key-{k}", "m", "v1", {"content": f"answer-{k}"}) for k in range(start, min(start + 10, last))
        ]
        cache.put_many(rows)
        cache.get_many(row[0] for row in rows)
    cache.close()


def test_two_processes_write_the_cache_consistently(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite")
    ResponseCache(path).close()
    context = multiprocessing.get_context("spawn")
    writers = [
        context.Process(target=_write_cache_rows, args=(path, a, b)) for a, b in [(0, 600), (100, 700)]
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
        assert writer.exitcode == 0

    cache = ResponseCache(path)
    assert len(cache) == 700
    stored = cache.get_many(f"key-{k}" for k in range(700))
    assert all(stored[f"key-{k}"] == {"content": f"answer-{k}"} for k in range(700))
    cache.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_api_key_never_leaks(start_server, make_gateway, fake_api_key: str, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    wrong_key_server = start_server(api_key="the-right-key")  # answers 401 quoting the key it got
    flaky_server = start_server(faults=FaultPlan(script=["server_error", "drop", "rate_limit"]))

    rejected = make_gateway(wrong_key_server).map(_requests(2))
    assert {r.failure for r in rejected} == {"auth_error"}
    assert "[REDACTED]" in (rejected[0].detail or "")  # the server did echo it; we scrubbed it
    flaky_gateway = make_gateway(flaky_server, max_retries=0, cache_path=None)
    flaky = flaky_gateway.map(_requests(3, prompt_version="other"))
    assert {r.failure for r in flaky} >= {"server_error", "rate_limited"}

    with pytest.raises(LLMUnavailable) as offline:
        LLMGateway(GatewayConfig()).map(_requests(1))

    seen = [
        caplog.text,
        repr(rejected),
        repr(flaky),
        json.dumps(rejected.stats.as_flat_dict()),
        repr(flaky_gateway),
        repr(flaky_gateway.config),
        str(offline.value),
    ]
    assert not any(fake_api_key in text for text in seen)


def test_offline_mode_says_what_to_set(tmp_path: Path) -> None:
    gateway = LLMGateway(GatewayConfig(cache_path=tmp_path / "never.sqlite"))
    assert not gateway.available and gateway.mode == "offline"
    with pytest.raises(LLMUnavailable, match="base_url"):
        gateway.map(_requests(1))
    assert not (tmp_path / "never.sqlite").exists()


def test_invalid_output_is_reasked_with_the_error_then_fails(start_server, make_gateway) -> None:
    server = start_server(responder=scripted_responder(["not json", {"title": "x"}, {"energy": 1}]))
    result = make_gateway(server, max_validation_retries=2).map(_requests(1))[0]

    assert result.failure == "invalid_output" and result.attempts == 3
    reasks = [body["messages"][-1]["content"] for body in server.bodies[1:]]
    assert all("does not match the required JSON schema" in text for text in reasks)
    assert "Invalid JSON" in reasks[0] and "energy" in reasks[1]  # the errors name what was wrong


def test_invalid_output_then_valid_answer_succeeds(start_server, make_gateway) -> None:
    server = start_server(responder=scripted_responder(["{oops", {"title": "Clair de Lune", "energy": 2}]))
    result = make_gateway(server).map(_requests(1))[0]
    assert result.ok and result.output == TrackPick(title="Clair de Lune", energy=2) and result.attempts == 2


def test_refusal_and_truncation_are_failures_with_reasons(start_server, make_gateway) -> None:
    server = start_server(faults=FaultPlan(script=["refusal", "truncated"]))
    batch = make_gateway(server, max_concurrency=1).map(_requests(2))
    assert [r.failure for r in batch] == ["refusal", "truncated"]


def test_tool_call_round_trip(start_server, make_gateway) -> None:
    server = start_server()
    gateway = make_gateway(server)
    tools = [openai.pydantic_function_tool(SearchTracks)]
    question = [{"role": "user", "content": "something mellow"}]

    call = gateway.map([LLMRequest(messages=question, tools=tools)])[0]
    assert call.ok and call.tool_calls is not None
    function = call.tool_calls[0]["function"]
    assert function["name"] == "SearchTracks"
    assert SearchTracks.model_validate_json(function["arguments"]) == SearchTracks(mood="x")

    follow_up = [
        *question,
        {"role": "assistant", "content": None, "tool_calls": call.tool_calls},
        {"role": "tool", "tool_call_id": call.tool_calls[0]["id"], "content": '["Gymnopedie No.1"]'},
    ]
    answer = gateway.map([LLMRequest(messages=follow_up, tools=tools)])[0]
    assert answer.ok and answer.tool_calls is None and "Gymnopedie" in (answer.content or "")


def test_json_schema_rejected_falls_back_to_json_mode(start_server, make_gateway) -> None:
    server = start_server(reject_json_schema=True, responder=lambda _body: {"title": "Naima", "energy": 1})
    gateway = make_gateway(server)
    first = gateway.map(_requests(1))[0]
    assert first.ok and first.output == TrackPick(title="Naima", energy=1)
    formats = [body["response_format"]["type"] for body in server.bodies]
    assert formats == ["json_schema", "json_object"]
    assert "JSON schema" in server.bodies[1]["messages"][0]["content"]

    gateway.map(_requests(2, prompt_version="v2"))  # the gateway remembers: no more rejected tries
    assert [body["response_format"]["type"] for body in server.bodies[2:]] == ["json_object"] * 2


def test_dagster_resource_builds_gateway_and_metadata(
    start_server, tmp_path: Path, fake_api_key: str
) -> None:
    import dagster as dg

    from orchestration.llm_resource import LLMGatewayResource, batch_stats_metadata

    server = start_server(faults=FaultPlan(script=["server_error"]))
    resource = LLMGatewayResource(
        base_url=server.base_url, max_retries=0, cache_path=str(tmp_path / "c.sqlite")
    )
    gateway = resource.get_gateway()
    assert gateway is resource.get_gateway() and gateway.config.max_retries == 0
    assert "api_key" not in LLMGatewayResource.model_fields

    metadata = batch_stats_metadata(gateway.map(_requests(2)).stats)
    assert metadata["llm_requests"] == dg.MetadataValue.int(2)
    assert metadata["llm_failures_server_error"] == dg.MetadataValue.int(1)
    assert "server_error" in metadata["llm_failures"].value
    assert all(fake_api_key not in str(value) for value in metadata.values())
    gateway.close()

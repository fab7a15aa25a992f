"""The OpenAI-compatible test server itself: responders, faults, and running as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import openai
import pytest
from pydantic import BaseModel

from models.llm.test_server import FaultPlan, Reply, minimal_instance, start_subprocess

pytest_plugins = ["conftest_llm"]


class Track(BaseModel):
    title: str
    year: int
    tags: list[str]


class Playlist(BaseModel):
    name: str
    mood: str | None
    tracks: list[Track]
    lead: Track


def _client(base_url: str, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="test", max_retries=0, **kwargs)


def _ask(client: openai.OpenAI) -> openai.types.chat.ChatCompletion:
    return client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def test_minimal_instance_satisfies_nested_schema() -> None:
    instance = minimal_instance(Playlist.model_json_schema())
    assert Playlist.model_validate(instance).lead.title == "x"


def test_scripted_faults_look_like_a_real_server(start_server) -> None:
    server = start_server(
        faults=FaultPlan(script=["rate_limit", "server_error", "malformed", "truncated", "refusal"])
    )
    client = _client(server.base_url)

    with pytest.raises(openai.RateLimitError) as limited:
        _ask(client)
    assert limited.value.response.headers["retry-after-ms"] == "50"
    with pytest.raises(openai.InternalServerError):
        _ask(client)
    with pytest.raises(json.JSONDecodeError):
        json.loads(_ask(client).choices[0].message.content or "")
    assert _ask(client).choices[0].finish_reason == "length"
    assert _ask(client).choices[0].message.refusal
    assert _ask(client).choices[0].message.content == "echo: hi"
    assert server.request_count == 6
    assert server.fault_counts["ok"] == 1


def test_timeouts_and_dropped_connections(start_server) -> None:
    server = start_server(faults=FaultPlan(script=["timeout", "drop"], timeout_sleep_s=5))
    client = _client(server.base_url, timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        _ask(client)
    with pytest.raises(openai.APIConnectionError):
        _ask(client)


def test_latency_and_probabilities_are_seeded(start_server) -> None:
    server = start_server(faults=FaultPlan(latency_ms=(30, 40), probabilities={"server_error": 0.5}, seed=3))
    client = _client(server.base_url)
    started = time.perf_counter()
    outcomes = []
    for _ in range(10):
        try:
            _ask(client)
            outcomes.append("ok")
        except openai.InternalServerError:
            outcomes.append("500")
    assert time.perf_counter() - started >= 0.3
    assert 0 < outcomes.count("500") < 10


def test_structured_and_tool_responses(start_server) -> None:
    server = start_server(responder=lambda body: Reply(content=f"fixed for {body['model']}"))
    client = _client(server.base_url)
    assert _ask(client).choices[0].message.content == "fixed for m"

    echo = start_server()
    parsed = _client(echo.base_url).chat.completions.parse(
        model="m", messages=[{"role": "user", "content": "list"}], response_format=Playlist
    )
    assert parsed.choices[0].message.parsed == Playlist.model_validate(
        minimal_instance(Playlist.model_json_schema())
    )


def test_subprocess_server_started_and_stopped_by_pid() -> None:
    process, base_url = start_subprocess("--port", "0", "--latency-ms", "1", "--p-server-error", "0")
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
            assert json.load(response)["data"][0]["id"] == "test-model"
        assert _ask(_client(base_url)).choices[0].message.content == "echo: hi"
        stats_url = base_url.removesuffix("/v1") + "/_stats"
        with urllib.request.urlopen(stats_url, timeout=5) as response:
            assert json.load(response)["requests"] == 1
    finally:
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=10) == 0

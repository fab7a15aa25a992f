"""Fixtures for the LLM gateway tests: in-process test servers and gateways wired to them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from models.lifecycle.build import Resolved
from models.lifecycle.candidates import AGENT_PROMPT, PARSER_PROMPT, STORY_PROMPT, Candidate
from models.llm import GatewayConfig, LLMGateway
from models.llm.test_server import LLMTestServer
from models.prompts import load_prompt

FAKE_KEY = "sk-setlist-FAKE-7f3a9c2e5b1d4e6f8a0b"


@pytest.fixture
def fake_api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SETLIST_LLM_API_KEY", FAKE_KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return FAKE_KEY


@pytest.fixture
def start_server() -> Iterator[Callable[..., LLMTestServer]]:
    """Start in-process servers (``LLMTestServer`` kwargs); all are stopped after the test."""
    servers: list[LLMTestServer] = []

    def start(**kwargs: Any) -> LLMTestServer:
        server = LLMTestServer(**kwargs).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def make_gateway(tmp_path: Path, fake_api_key: str) -> Iterator[Callable[..., LLMGateway]]:
    """Gateways on a server with short timeouts and a per-test cache; settings override by kwarg."""
    gateways: list[LLMGateway] = []

    def make(server: LLMTestServer, **overrides: Any) -> LLMGateway:
        settings: dict[str, Any] = {
            "base_url": server.base_url,
            "model": "gpt-4o-mini",
            "timeout_s": 2.0,
            "max_retries": 2,
            "max_concurrency": 64,
            "cache_path": tmp_path / "llm_cache.sqlite",
        }
        gateway = LLMGateway(GatewayConfig(**(settings | overrides)))
        gateways.append(gateway)
        return gateway

    yield make
    for gateway in gateways:
        gateway.close()


def from_files(key: str) -> Resolved:
    """An LLM candidate whose prompts are the reviewed files, as `prompt_versions` registers them: for tests
    of the assistant's LLM path that need no MLflow store (the product resolves them from the registry)."""
    candidate = Candidate.from_key(key)
    names = [PARSER_PROMPT, AGENT_PROMPT] if candidate.parser_kind == "llm" else []
    names += [STORY_PROMPT] if candidate.story_version else []
    return Resolved(candidate, prompts={name: load_prompt(name) for name in names})

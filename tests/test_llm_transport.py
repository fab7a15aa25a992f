"""The gateway's HTTP layer under the openai client: errors, retries and encodings as the client expects."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import web

from models.llm import LLMRequest
from models.llm.test_server import FaultPlan, LLMTestServer
from models.llm.transport import AiohttpClient, OpenAIClient

pytest_plugins = ["conftest_llm"]


def _requests(n: int) -> list[LLMRequest]:
    return [LLMRequest(messages=[{"role": "user", "content": f"hello {i}"}], id=str(i)) for i in range(n)]


def test_timeouts_and_dropped_connections_become_openai_errors(start_server, make_gateway) -> None:
    server = start_server(faults=FaultPlan(script=["timeout", "drop"], timeout_sleep_s=5))
    gateway = make_gateway(server, timeout_s=0.3, max_retries=0, max_concurrency=1, cache_path=None)
    assert [r.failure for r in gateway.map(_requests(2))] == ["timeout", "connection_error"]


def test_the_openai_client_retries_transport_failures(start_server, make_gateway) -> None:
    server = start_server(faults=FaultPlan(script=["drop", "timeout"], timeout_sleep_s=5))
    batch = make_gateway(server, timeout_s=0.3, max_retries=2, cache_path=None).map(_requests(1))
    assert batch[0].ok and batch[0].content == "echo: hello 0"
    assert batch.stats.http_requests == 3 and batch.stats.api_calls == 1


def test_retry_after_is_honoured(start_server, make_gateway) -> None:
    server = start_server(faults=FaultPlan(script=["rate_limit"], retry_after_s=0.5))
    started = time.perf_counter()
    batch = make_gateway(server, max_retries=1, cache_path=None).map(_requests(1))
    assert batch[0].ok and server.request_count == 2
    assert time.perf_counter() - started >= 0.5


class _GzipServer(LLMTestServer):
    """Compresses every answer, as api.openai.com does for clients that accept gzip."""

    def app(self) -> web.Application:
        app = super().app()

        @web.middleware
        async def gzip(request: web.Request, handler: Any) -> web.StreamResponse:
            response = await handler(request)
            response.enable_compression(web.ContentCoding.gzip)
            return response

        app.middlewares.append(gzip)
        return app


def test_compressed_answers_are_decoded(make_gateway) -> None:
    with _GzipServer() as server:
        batch = make_gateway(server, cache_path=None).map(_requests(3))
    assert [r.content for r in batch] == [f"echo: hello {i}" for i in range(3)]
    assert batch.stats.prompt_tokens > 0


def test_endpoint_url_is_resolved_once_per_client() -> None:
    client = OpenAIClient(base_url="http://127.0.0.1:9/v1", api_key="unused")
    # The hook the override replaces still exists upstream, so it is on the client's request path.
    assert any("_prepare_url" in vars(base) for base in OpenAIClient.__mro__[1:])
    first = client._prepare_url("/chat/completions")
    assert str(first) == "http://127.0.0.1:9/v1/chat/completions"
    assert client._prepare_url("/chat/completions") is first


def test_only_whole_bodies_are_sent() -> None:
    client = AiohttpClient(timeout_s=1, max_connections=1)
    with pytest.raises(NotImplementedError, match="files"):
        client.build_request("POST", "http://127.0.0.1:9/upload", files={"f": b"x"})

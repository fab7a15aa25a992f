"""The gateway's ``openai.AsyncOpenAI`` and the HTTP client under it: httpx's interface, aiohttp's wire.

``AsyncOpenAI(http_client=...)`` is the client's supported way to change transport, and
everything above it stays the openai client's: auth and default headers, base URL,
retries with backoff honouring ``Retry-After``, typed errors. What this replaces is the
layer below. ``openai.DefaultAioHttpClient`` already puts aiohttp there, but behind all of
httpx's client machinery (client-level header/cookie/URL merging on every request, auth
and redirect flows, response byte streams), which the openai client never uses: it sends
complete requests and reads whole bodies. On this 2-core machine that machinery is about
a fifth of the client's CPU per call, and at 64 calls in flight the client's CPU is what
limits throughput (``benchmarks/llm_gateway.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx2
import openai

RequestHook = Callable[[httpx2.Request], Awaitable[None]]


@functools.lru_cache(maxsize=64)
def _url(url: str) -> httpx2.URL:
    # A batch posts to one URL thousands of times; httpx URLs are immutable, so parse once.
    return httpx2.URL(url)


@functools.lru_cache(maxsize=16)
def _timeout(connect: float | None, read: float | None, pool: float | None) -> aiohttp.ClientTimeout:
    # The same mapping as openai's vendored aiohttp transport.
    return aiohttp.ClientTimeout(sock_connect=connect, sock_read=read, connect=pool)


class _NoTransport(httpx2.AsyncBaseTransport):
    """Stands in for httpx's default transport, which would build an unused SSL context per client."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError("AiohttpClient sends through aiohttp, never through an httpx transport")


class AiohttpClient(httpx2.AsyncClient):
    """An ``httpx2.AsyncClient`` whose ``build_request``/``send`` go straight to one aiohttp session.

    Not a general httpx client: no client-level base URL, headers, cookies, auth or
    redirects (the openai client sets none of them), and bodies are always read whole.
    ``on_request`` is awaited before every HTTP request, retries included.
    """

    def __init__(
        self, *, timeout_s: float, max_connections: int, on_request: RequestHook | None = None
    ) -> None:
        super().__init__(timeout=timeout_s, transport=_NoTransport())
        self._max_connections = max_connections
        self._on_request = on_request
        self._session: aiohttp.ClientSession | None = None

    def build_request(  # type: ignore[override]
        self,
        method: str,
        url: httpx2.URL | str,
        *,
        content: bytes | None = None,
        headers: Any = None,
        timeout: Any = httpx2.USE_CLIENT_DEFAULT,
        extensions: dict[str, Any] | None = None,
        **other: Any,
    ) -> httpx2.Request:
        unsupported = sorted(name for name, value in other.items() if value is not None)
        if unsupported:
            raise NotImplementedError(f"AiohttpClient sends whole bodies only, not {unsupported}")
        timeout = self.timeout if timeout is httpx2.USE_CLIENT_DEFAULT else httpx2.Timeout(timeout)
        return httpx2.Request(
            method,
            _url(url) if isinstance(url, str) else url,
            content=content,
            headers=headers,
            extensions={**(extensions or {}), "timeout": timeout.as_dict()},
        )

    async def send(self, request: httpx2.Request, *, stream: bool = False, **_: Any) -> httpx2.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self._max_connections))
        if self._on_request is not None:
            await self._on_request(request)
        timeout = request.extensions.get("timeout", {})
        try:
            async with self._session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes, as it does for every transport
                timeout=_timeout(timeout.get("connect"), timeout.get("read"), timeout.get("pool")),
            ) as response:
                body = await response.read()
        # Into httpx's exception types, which the openai client retries and then raises as
        # APITimeoutError / APIConnectionError.
        except TimeoutError as exc:  # aiohttp's timeouts subclass it
            raise httpx2.ReadTimeout(str(exc) or type(exc).__name__, request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx2.ConnectError(str(exc), request=request) from exc
        except aiohttp.ClientError as exc:  # dropped connection, malformed HTTP
            raise httpx2.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        return httpx2.Response(
            response.status,
            headers=response.raw_headers,
            content=body,
            request=request,
            extensions={"reason_phrase": (response.reason or "").encode(), "http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await super().aclose()


class OpenAIClient(openai.AsyncOpenAI):
    """``AsyncOpenAI`` that resolves each endpoint path against ``base_url`` once, not per call.

    ``_prepare_url`` is the client's own hook; it parses the path and rebuilds the URL on
    every request, a tenth of the client's CPU per call here. The gateway never changes a
    client's ``base_url``. Should an openai release rename the hook, this override simply
    stops being called.
    """

    def _prepare_url(self, url: str) -> httpx2.URL:
        urls: dict[str, httpx2.URL] = self.__dict__.setdefault("_prepared_urls", {})
        if url not in urls:
            urls[url] = super()._prepare_url(url)
        return urls[url]

"""The one way Setlist calls an LLM: batched, cached, rate-limited, accounted, key-safe."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import gc
import json
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import openai
from openai.lib._pydantic import to_strict_json_schema
from pydantic import BaseModel, ValidationError

from models.llm.cache import ResponseCache, cache_key
from models.llm.config import API_KEY_ENV_VARS, GatewayConfig, api_key_from_env
from models.llm.rate_limit import PerMinuteLimiter
from models.llm.request import LLMRequest, LLMResult, LLMUnavailable
from models.llm.stats import BatchStats
from models.llm.transport import AiohttpClient, OpenAIClient
from models.progress import PROGRESS_EVERY_S, Progress

log = logging.getLogger(__name__)

_CACHE_FLUSH_EVERY = 256
_DETAIL_MAX_CHARS = 500
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)


@dataclass(frozen=True)
class BatchResult:
    """One result per request, in request order, and the batch's accounting."""

    results: list[LLMResult]
    stats: BatchStats

    def __iter__(self) -> Iterator[LLMResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, index: int) -> LLMResult:
        return self.results[index]


@dataclass(frozen=True, slots=True)
class _Prepared:
    model: str
    key: str
    schema: dict[str, Any] | None


@functools.cache
def _strict_schema(schema: type[BaseModel]) -> dict[str, Any]:
    # openai's own converter: strict mode needs every property required and no extras.
    return to_strict_json_schema(schema)


def failure_reason(exc: Exception) -> str:
    """A short, stable reason code for an exception from the openai client."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error"
    if isinstance(exc, openai.RateLimitError):
        return "rate_limited"
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return "auth_error"
    if isinstance(exc, openai.BadRequestError):
        return "bad_request"
    if isinstance(exc, openai.APIStatusError):
        return "server_error" if exc.status_code >= 500 else f"http_{exc.status_code}"
    return "unexpected_error"


class _BatchRun:
    """What one batch shares: a client bound to the running loop, limits and counters."""

    def __init__(self, gateway: LLMGateway) -> None:
        config = gateway.config
        self.api_calls = 0
        self.http_requests = 0
        self.semaphore = asyncio.Semaphore(config.max_concurrency)
        self.rpm = PerMinuteLimiter(config.requests_per_minute) if config.requests_per_minute else None
        self.tpm = PerMinuteLimiter(config.tokens_per_minute) if config.tokens_per_minute else None
        api_key = gateway._api_key.get_secret_value() if gateway._api_key else "unset"

        async def count_http_request(_request: object) -> None:
            self.http_requests += 1

        # `client.post` with raw bytes rather than `chat.completions.create`: `create` spends a
        # third of its CPU transforming TypedDict params and building typed responses we would
        # only turn back into dicts. The openai client still does auth, base_url, retries
        # honouring Retry-After and typed errors; `AiohttpClient` (see models/llm/transport.py)
        # is the lean HTTP layer under it.
        self.client = OpenAIClient(
            base_url=config.base_url,
            api_key=api_key,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
            http_client=AiohttpClient(
                timeout_s=config.timeout_s,
                max_connections=config.max_concurrency,
                on_request=count_http_request,
            ),
        )

    async def post(self, body: dict[str, Any], estimated_tokens: int) -> dict[str, Any]:
        if self.rpm:
            await self.rpm.acquire()
        if self.tpm:
            await self.tpm.acquire(estimated_tokens)
        async with self.semaphore:
            self.api_calls += 1
            raw = await self.client.post("/chat/completions", cast_to=bytes, body=body)
        return json.loads(raw)


class LLMGateway:
    """Batches of chat completions against an OpenAI-compatible endpoint.

    ``map``/``amap`` return one ``LLMResult`` per request, in order; a failing item is a
    result with ``failure`` set, never an exception. With no ``base_url`` the gateway is
    offline: ``available`` is False and ``map`` raises ``LLMUnavailable``.
    """

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig()
        self._api_key = api_key_from_env()
        self._cache = (
            ResponseCache(self.config.cache_path) if self.available and self.config.cache_path else None
        )
        self._json_object_models: set[str] = set()  # endpoints that rejected json_schema
        # Running totals over every batch (requests, api_calls, tokens, wall_s): a caller that makes
        # several batches (an assistant replay) reads its usage as the difference.
        self.totals: Counter[str] = Counter()

    @property
    def available(self) -> bool:
        return self.config.base_url is not None

    @property
    def mode(self) -> Literal["online", "offline"]:
        return "online" if self.available else "offline"

    def __repr__(self) -> str:
        return (
            f"LLMGateway(mode={self.mode!r}, base_url={self.config.base_url!r}, model={self.config.model!r})"
        )

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()

    def map(self, requests: Iterable[LLMRequest]) -> BatchResult:
        """Blocking ``amap``; from inside a running event loop it runs the batch on a worker thread."""
        batch = list(requests)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.amap(batch))
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self.amap(batch)).result()

    async def amap(self, requests: Sequence[LLMRequest]) -> BatchResult:
        self._require_online()
        started = time.perf_counter()
        prepared = [self._prepare(request) for request in requests]
        hits = self._cache.get_many(p.key for p in prepared) if self._cache else {}

        results: list[LLMResult | None] = [None] * len(requests)
        misses: dict[str, list[int]] = {}
        for i, (request, prep) in enumerate(zip(requests, prepared, strict=True)):
            if prep.key in hits:
                results[i] = self._from_cache(i, request, hits[prep.key])
            else:
                misses.setdefault(prep.key, []).append(i)

        run = _BatchRun(self)
        pending = sum(len(indices) for indices in misses.values())
        answered, reported = 0, started
        to_store: list[tuple[str, str, str, dict[str, Any]]] = []
        flushes: list[asyncio.Task[None]] = []

        async def settle(key: str, indices: list[int]) -> None:
            first = indices[0]
            request, prep = requests[first], prepared[first]
            result = await self._complete_safely(run, first, request, prep)
            results[first] = result
            nonlocal answered, reported
            answered += len(indices)
            now = time.perf_counter()
            if now - reported >= PROGRESS_EVERY_S and answered < pending:  # a local model judges for minutes
                reported = now
                log.info("LLM batch: %s", Progress(answered, pending, now - started, "answered", "requests"))
            # Identical requests in one batch are asked once; the copies are not paid for again.
            for i in indices[1:]:
                results[i] = dataclasses.replace(result, index=i, request_id=requests[i].id, cached=True)
            if result.ok:
                to_store.append((key, prep.model, request.prompt_version, _payload(result)))
                if len(to_store) >= _CACHE_FLUSH_EVERY:
                    # On a worker thread: a SQLite write (or a wait for another process's
                    # write lock) must not stall the responses this loop is handling.
                    flushes.append(asyncio.create_task(asyncio.to_thread(self._store, to_store[:])))
                    to_store.clear()

        # Frozen, the pre-batch heap is skipped by the collector, which then walks only the
        # batch's own objects: in a process that has imported Dagster or MLflow a full collection
        # stalls this loop for tens of milliseconds, delaying every response waiting meanwhile.
        gc.freeze()
        try:
            async with run.client:
                await asyncio.gather(*(settle(key, indices) for key, indices in misses.items()))
        finally:
            gc.unfreeze()
            await asyncio.gather(*flushes, asyncio.to_thread(self._store, to_store))

        final = [r for r in results if r is not None]
        assert len(final) == len(requests), "every request gets exactly one result"
        cost = math.fsum(
            self.config.cost_usd(prep.model, r.prompt_tokens, r.completion_tokens)
            for r, prep in zip(final, prepared, strict=True)
            if not r.cached
        )
        stats = BatchStats.from_results(
            final,
            api_calls=run.api_calls,
            http_requests=run.http_requests,
            cost_usd=cost,
            wall_s=time.perf_counter() - started,
        )
        self.totals.update(
            requests=stats.requests,
            api_calls=stats.api_calls,
            prompt_tokens=stats.prompt_tokens,
            completion_tokens=stats.completion_tokens,
            failed=stats.failed,
            wall_s=stats.wall_s,
        )
        log.info(
            "LLM batch: %d requests, %d cached, %d failed%s, $%.4f",
            stats.requests,
            stats.cache_hits,
            stats.failed,
            f" {stats.failures_by_reason}" if stats.failures_by_reason else "",
            stats.cost_usd,
        )
        return BatchResult(final, stats)

    def _require_online(self) -> None:
        if not self.available:
            raise LLMUnavailable(
                "The LLM gateway is offline: no endpoint configured. Set SETLIST_LLM__BASE_URL "
                "(GatewayConfig.base_url) to an OpenAI-compatible URL and put the key in "
                f"{' or '.join(API_KEY_ENV_VARS)}; until then use the offline implementation of this task."
            )

    def _prepare(self, request: LLMRequest) -> _Prepared:
        model = request.model or self.config.model
        schema = _strict_schema(request.output_schema) if request.output_schema else None
        key = cache_key(
            model=model,
            messages=request.messages,
            params=request.params,
            schema=schema,
            tools=request.tools,
            prompt_version=request.prompt_version,
        )
        return _Prepared(model, key, schema)

    def _store(self, entries: list[tuple[str, str, str, dict[str, Any]]]) -> None:
        if self._cache is not None and entries:
            self._cache.put_many(entries)

    def _from_cache(self, index: int, request: LLMRequest, payload: dict[str, Any]) -> LLMResult:
        content = payload.get("content")
        output = (
            request.output_schema.model_validate_json(content) if request.output_schema and content else None
        )
        return LLMResult(
            index=index,
            request_id=request.id,
            content=content,
            output=output,
            tool_calls=payload.get("tool_calls"),
            logprobs=payload.get("logprobs"),
            cached=True,
            prompt_tokens=payload.get("prompt_tokens", 0),
            completion_tokens=payload.get("completion_tokens", 0),
        )

    async def _complete_safely(
        self, run: _BatchRun, index: int, request: LLMRequest, prep: _Prepared
    ) -> LLMResult:
        try:
            return await self._complete(run, index, request, prep)
        except Exception as exc:  # one bad item must never sink the batch
            detail = self._scrub(f"{type(exc).__name__}: {exc}")
            log.warning("LLM request %s failed unexpectedly: %s", request.id or index, detail)
            return LLMResult(index=index, request_id=request.id, failure="unexpected_error", detail=detail)

    async def _complete(self, run: _BatchRun, index: int, request: LLMRequest, prep: _Prepared) -> LLMResult:
        messages = list(request.messages)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        latency = 0.0
        attempts = 0
        estimated_tokens = self._estimated_tokens(request) if run.tpm else 0

        def finish(failure: str | None = None, detail: str | None = None, **answer: Any) -> LLMResult:
            return LLMResult(
                index=index,
                request_id=request.id,
                failure=failure,
                detail=detail,
                latency_s=latency,
                attempts=attempts,
                **usage,
                **answer,
            )

        validation_retries_left = self.config.max_validation_retries
        while True:
            json_schema_mode = (
                prep.schema is not None
                and self.config.structured_output == "json_schema"
                and prep.model not in self._json_object_models
            )
            body = self._body(request, prep, messages, json_schema_mode)
            attempts += 1
            started = time.perf_counter()
            try:
                data = await run.post(body, estimated_tokens)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if json_schema_mode:
                    # The endpoint has no structured outputs (llama-cpp-python answers 422): use JSON mode
                    # and validate ourselves.
                    self._json_object_models.add(prep.model)
                    log.info("%s rejected response_format json_schema; using JSON mode", prep.model)
                    continue
                return finish(failure_reason(exc), self._scrub(str(exc)))
            except openai.APIError as exc:
                return finish(failure_reason(exc), self._scrub(str(exc)))
            except json.JSONDecodeError as exc:
                return finish("malformed_response", str(exc))
            finally:
                latency += time.perf_counter() - started

            for name in usage:
                usage[name] += (data.get("usage") or {}).get(name) or 0
            choice = data["choices"][0]
            message = choice["message"]
            content = message.get("content")
            logprobs = (choice.get("logprobs") or {}).get("content")
            if message.get("refusal"):
                return finish("refusal", self._scrub(str(message["refusal"])))
            if choice.get("finish_reason") == "length":
                return finish("truncated", "the answer hit max_tokens", content=content)
            if message.get("tool_calls"):
                return finish(content=content, tool_calls=message["tool_calls"])
            if request.output_schema is None:
                return finish(content=content, logprobs=logprobs)
            try:
                output = request.output_schema.model_validate_json(content or "")
            except ValidationError as exc:
                if validation_retries_left == 0:
                    return finish("invalid_output", str(exc)[:_DETAIL_MAX_CHARS], content=content)
                validation_retries_left -= 1
                messages += [
                    {"role": "assistant", "content": content or ""},
                    {
                        "role": "user",
                        "content": f"That answer does not match the required JSON schema:\n{exc}\n"
                        "Reply again with only the corrected JSON.",
                    },
                ]
                continue
            return finish(content=content, output=output, logprobs=logprobs)

    def _body(
        self, request: LLMRequest, prep: _Prepared, messages: list[dict[str, Any]], json_schema_mode: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"model": prep.model, "messages": messages, **request.params}
        if request.tools:
            body["tools"] = list(request.tools)
        if prep.schema is not None and request.output_schema is not None:
            if json_schema_mode:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": request.output_schema.__name__,
                        "schema": prep.schema,
                        "strict": True,
                    },
                }
            else:
                instruction = f"Answer with one JSON object that conforms to this JSON schema:\n{json.dumps(prep.schema)}"
                body["messages"] = [{"role": "system", "content": instruction}, *messages]
                # Servers whose JSON mode takes a schema (llama.cpp) constrain decoding to it; others ignore it.
                body["response_format"] = {"type": "json_object", "schema": prep.schema}
        return body

    @staticmethod
    def _estimated_tokens(request: LLMRequest) -> int:
        prompt = len(json.dumps(request.messages, default=str)) // 4
        completion = request.params.get("max_completion_tokens") or request.params.get("max_tokens") or 0
        return prompt + int(completion)

    def _scrub(self, text: str) -> str:
        """Remove the API key (and any bearer token) from text that may reach logs or results."""
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            if secret:
                text = text.replace(secret, "[REDACTED]")
        return _BEARER.sub(r"\1[REDACTED]", text)


def _payload(result: LLMResult) -> dict[str, Any]:
    return {
        "content": result.content,
        "tool_calls": result.tool_calls,
        "logprobs": result.logprobs,
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
    }

"""An OpenAI-compatible chat server on loopback for offline tests and benchmarks.

Run it in-process (``with LLMTestServer(...) as server: server.base_url``) or as a
subprocess (``python -m models.llm.test_server --port 0 --latency-ms 100``, which prints
its base URL on the first stdout line and serves until SIGTERM/SIGINT).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Fault = Literal["ok", "rate_limit", "server_error", "timeout", "drop", "malformed", "truncated", "refusal"]
FAULTS: tuple[Fault, ...] = (
    "rate_limit",
    "server_error",
    "timeout",
    "drop",
    "malformed",
    "truncated",
    "refusal",
)


@dataclass
class Reply:
    """What a responder answers: text content and/or tool calls (each ``{"name", "arguments"}``)."""

    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


Responder = Callable[[dict[str, Any]], "Reply | str | dict[str, Any]"]


@dataclass
class FaultPlan:
    """Latency and faults for one server: by probability (seeded) and/or scripted per request.

    ``script[i]`` is the fault for the i-th request received; later requests fall back to
    the probabilities. ``latency_ms`` is fixed, or a ``(low, high)`` uniform range.
    """

    latency_ms: float | tuple[float, float] = 0.0
    probabilities: Mapping[Fault, float] = field(default_factory=dict)
    script: Sequence[Fault] = ()
    seed: int = 0
    retry_after_s: float = 0.05
    timeout_sleep_s: float = 30.0

    def __post_init__(self) -> None:
        unknown = set(self.probabilities) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; choose from {FAULTS}")
        if sum(self.probabilities.values()) > 1:
            raise ValueError("fault probabilities sum to more than 1")
        self._rng = random.Random(self.seed)

    def next_fault(self, index: int) -> Fault:
        if index < len(self.script):
            return self.script[index]
        roll = self._rng.random()
        for fault, p in self.probabilities.items():
            if roll < p:
                return fault
            roll -= p
        return "ok"

    def latency_s(self) -> float:
        if isinstance(self.latency_ms, tuple):
            return self._rng.uniform(*self.latency_ms) / 1000
        return self.latency_ms / 1000


def minimal_instance(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """The smallest value that satisfies a JSON schema as pydantic/OpenAI strict mode emit them."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return minimal_instance(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for union in ("anyOf", "oneOf", "allOf"):
        if union in schema:
            return minimal_instance(schema[union][0], defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: minimal_instance(props[name], defs) for name in schema.get("required", props)}
    if kind == "array":
        return [minimal_instance(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind == "string":
        return "x" * max(1, schema.get("minLength", 1))
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


def schema_echo_responder(body: dict[str, Any]) -> Reply:
    """Default: call the first tool, else answer a minimal schema-valid JSON, else echo the prompt."""
    messages = body.get("messages", [])
    tools = body.get("tools") or []
    if tools and body.get("tool_choice") != "none" and messages and messages[-1].get("role") != "tool":
        function = tools[0]["function"]
        arguments = minimal_instance(function.get("parameters", {"type": "object"}))
        return Reply(tool_calls=[{"name": function["name"], "arguments": json.dumps(arguments)}])
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return Reply(content=json.dumps(minimal_instance(response_format["json_schema"]["schema"])))
    if response_format.get("type") == "json_object":
        return Reply(content="{}")
    last = messages[-1].get("content") if messages else ""
    return Reply(content=f"echo: {last}")


def scripted_responder(answers: Sequence[Reply | str | dict[str, Any]]) -> Responder:
    """Answer from a list in request order, repeating the last answer once the list runs out."""
    position = 0

    def respond(_body: dict[str, Any]) -> Reply | str | dict[str, Any]:
        nonlocal position
        answer = answers[min(position, len(answers) - 1)]
        position += 1
        return answer

    return respond


def _as_reply(answer: Reply | str | dict[str, Any]) -> Reply:
    if isinstance(answer, Reply):
        return answer
    if isinstance(answer, str):
        return Reply(content=answer)
    return Reply(content=json.dumps(answer))


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": None}}
    return web.json_response(body, status=status, headers=headers)


class LLMTestServer:
    """OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models`` with fault injection.

    ``request_count`` (also ``GET /_stats``) counts chat-completion requests received,
    ``bodies`` keeps their JSON bodies and ``faults`` counts the faults injected.
    ``reject_json_schema`` answers ``reject_status`` (400, or 422 like llama-cpp-python) to
    ``response_format: json_schema`` like servers without structured outputs; ``api_key`` makes it
    answer 401 to any other key.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        responder: Responder = schema_echo_responder,
        faults: FaultPlan | None = None,
        *,
        reject_json_schema: bool = False,
        reject_status: int = 400,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder = responder
        self.faults = faults or FaultPlan()
        self.reject_json_schema, self.reject_status = reject_json_schema, reject_status
        self.api_key = api_key
        self.host, self.port = host, port
        self.request_count = 0
        self.bodies: list[dict[str, Any]] = []
        self.fault_counts: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/_stats", self._stats)
        return app

    async def start_async(self) -> None:
        # handler_cancellation: a client that times out cancels the handler sleeping for it.
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, shutdown_timeout=0.1)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop_async(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self) -> LLMTestServer:
        """Serve from a background thread with its own event loop."""
        self._loop = asyncio.new_event_loop()
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self.start_async())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="llm-test-server", daemon=True)
        self._thread.start()
        started.wait(timeout=10)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self.stop_async(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _models(self, _request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "test-model", "object": "model"}]})

    async def _stats(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": self.request_count, "faults": dict(self.fault_counts)})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        index = self.request_count
        self.request_count += 1
        body = await request.json()
        self.bodies.append(body)
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            # Echo the key back, as some real servers partly do, so redaction gets tested.
            sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {sent}", "invalid_request_error")
        response_format = body.get("response_format") or {}
        if self.reject_json_schema and response_format.get("type") == "json_schema":
            return _error(
                self.reject_status, "response_format json_schema is not supported", "invalid_request_error"
            )

        fault = self.faults.next_fault(index)
        self.fault_counts[fault] += 1
        if fault == "timeout":
            await asyncio.sleep(self.faults.timeout_sleep_s)
        latency = self.faults.latency_s()
        if latency:
            await asyncio.sleep(latency)
        if fault == "rate_limit":
            retry_ms = str(int(self.faults.retry_after_s * 1000))
            headers = {
                "retry-after-ms": retry_ms,
                "retry-after": str(max(1, round(self.faults.retry_after_s))),
            }
            return _error(429, "Rate limit reached", "rate_limit_exceeded", headers)
        if fault == "server_error":
            return _error(500, "The server had an error", "server_error")
        if fault == "drop":
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        return web.json_response(self._completion(body, fault))

    def _completion(self, body: dict[str, Any], fault: Fault) -> dict[str, Any]:
        reply = _as_reply(self.responder(body))
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        finish_reason = "stop"
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": call}
                for i, call in enumerate(reply.tool_calls)
            ]
            finish_reason = "tool_calls"
        content = reply.content or ""
        if fault == "malformed":
            message["content"] = content[: len(content) // 2] + '{"oops": '
        elif fault == "truncated":
            message["content"] = content[: len(content) // 2]
            finish_reason = "length"
        elif fault == "refusal":
            message.update(content=None, refusal="I can't help with that.")
        prompt_chars = sum(len(str(m.get("content") or "")) for m in body.get("messages", []))
        return {
            "id": f"chatcmpl-{self.request_count}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
            "usage": {
                "prompt_tokens": 1 + prompt_chars // 4,
                "completion_tokens": 1 + len(message["content"] or "") // 4,
                "total_tokens": 2 + prompt_chars // 4 + len(message["content"] or "") // 4,
            },
        }


def start_subprocess(*cli_args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m models.llm.test_server`` with these options; return (process, base URL).

    Stop it with ``process.terminate()``: the caller owns exactly this PID.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "models.llm.test_server", *cli_args], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise RuntimeError(f"test server did not start (first line: {url!r})")
    return process, url


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--latency-max-ms", type=float, help="with --latency-ms: uniform latency range")
    for fault in FAULTS:
        parser.add_argument(f"--p-{fault.replace('_', '-')}", type=float, default=0.0, dest=f"p_{fault}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retry-after-s", type=float, default=0.05)
    parser.add_argument("--timeout-sleep-s", type=float, default=30.0)
    parser.add_argument("--reject-json-schema", action="store_true")
    parser.add_argument("--api-key", help="answer 401 unless this key is sent")
    return parser.parse_args(argv)


async def _serve_until_signalled(server: LLMTestServer) -> None:
    await server.start_async()
    print(server.base_url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop_async()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    latency: float | tuple[float, float] = args.latency_ms
    if args.latency_max_ms is not None:
        latency = (args.latency_ms, args.latency_max_ms)
    probabilities = {f: getattr(args, f"p_{f}") for f in FAULTS if getattr(args, f"p_{f}")}
    plan = FaultPlan(
        latency_ms=latency,
        probabilities=probabilities,
        seed=args.seed,
        retry_after_s=args.retry_after_s,
        timeout_sleep_s=args.timeout_sleep_s,
    )
    server = LLMTestServer(
        faults=plan,
        reject_json_schema=args.reject_json_schema,
        api_key=args.api_key,
        host=args.host,
        port=args.port,
    )
    asyncio.run(_serve_until_signalled(server))


if __name__ == "__main__":
    main()

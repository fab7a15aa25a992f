"""Gateway throughput against a 100 ms OpenAI-compatible server on loopback.

    python benchmarks/llm_gateway.py [--calls 2000] [--latency-ms 100]

The ideal for N calls in flight at latency L is N / L calls/s; the table shows how close
each client gets. The test server runs in its own process so its CPU does not share the
client's interpreter (the machine has 2 cores, so the two still compete for them).
Concurrency 1 uses fewer calls (``--sequential-calls``) because it is 10 calls/s at best.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import openai

from models.llm import GatewayConfig, LLMGateway, LLMRequest
from models.llm.test_server import start_subprocess


@dataclass
class Row:
    run: str
    concurrency: int
    calls: int
    wall_s: float
    http_requests: int
    latency_s: float

    def markdown(self) -> str:
        rate = self.calls / self.wall_s
        limit = self.concurrency / self.latency_s
        return (
            f"| {self.run} | {self.concurrency} | {self.calls} | {self.wall_s:.2f} | {rate:,.0f} "
            f"| {limit:,.0f} | {100 * rate / limit:.0f}% | {self.http_requests} |"
        )


def _requests(n: int, tag: str) -> list[LLMRequest]:
    return [
        LLMRequest(messages=[{"role": "user", "content": f"{tag} request {i}"}], id=str(i)) for i in range(n)
    ]


def _server_requests(base_url: str) -> int:
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_stats") as response:
        return json.load(response)["requests"]


def naive_sequential(base_url: str, calls: int) -> float:
    """What a script without a gateway does: the plain client, one call after another."""
    client = openai.OpenAI(base_url=base_url, api_key="bench")
    started = time.perf_counter()
    for i in range(calls):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"naive {i}"}])
    return time.perf_counter() - started


async def _bounded(concurrency: int, calls: int, call) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            await call(i)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return time.perf_counter() - started


async def openai_default_client(base_url: str, concurrency: int, calls: int) -> float:
    """Reference: AsyncOpenAI as shipped (httpx transport, typed request and response)."""
    async with openai.AsyncOpenAI(base_url=base_url, api_key="bench") as client:

        async def call(i: int) -> None:
            await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": f"sdk {i}"}]
            )

        return await _bounded(concurrency, calls, call)


async def bare_aiohttp(base_url: str, concurrency: int, calls: int) -> float:
    """Reference ceiling: a plain aiohttp POST with no SDK at all."""
    async with aiohttp.ClientSession() as session:

        async def call(i: int) -> None:
            body = {"model": "m", "messages": [{"role": "user", "content": f"bare {i}"}]}
            async with session.post(f"{base_url}/chat/completions", json=body) as response:
                json.loads(await response.read())

        return await _bounded(concurrency, calls, call)


def gateway_run(
    base_url: str, concurrency: int, calls: int, cache_path: Path | None, tag: str
) -> tuple[float, int]:
    config = GatewayConfig(base_url=base_url, max_concurrency=concurrency, cache_path=cache_path)
    gateway = LLMGateway(config)
    batch = gateway.map(_requests(calls, tag))
    gateway.close()
    assert batch.stats.failed == 0, batch.stats.failures_by_reason
    return batch.stats.wall_s, batch.stats.http_requests


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--sequential-calls", type=int, default=50)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    args = parser.parse_args()
    latency = args.latency_ms / 1000

    process, base_url = start_subprocess("--latency-ms", str(args.latency_ms))
    rows: list[Row] = []

    def measured(run: str, concurrency: int, calls: int, action) -> None:
        before = _server_requests(base_url)
        wall = action()
        rows.append(Row(run, concurrency, calls, wall, _server_requests(base_url) - before, latency))

    try:
        seq = args.sequential_calls
        measured("naive loop, plain openai client", 1, seq, lambda: naive_sequential(base_url, seq))
        for concurrency in (1, 8, 32, 64):
            calls = seq if concurrency == 1 else args.calls
            measured(
                "gateway",
                concurrency,
                calls,
                lambda c=concurrency, n=calls: gateway_run(base_url, c, n, None, f"c{c}")[0],
            )
        measured(
            "reference: AsyncOpenAI default client",
            64,
            args.calls,
            lambda: asyncio.run(openai_default_client(base_url, 64, args.calls)),
        )
        measured(
            "reference: bare aiohttp",
            64,
            args.calls,
            lambda: asyncio.run(bare_aiohttp(base_url, 64, args.calls)),
        )
        with tempfile.TemporaryDirectory() as scratch:
            cache = Path(scratch) / "cache.sqlite"
            measured(
                "gateway, cold cache",
                64,
                args.calls,
                lambda: gateway_run(base_url, 64, args.calls, cache, "warm")[0],
            )
            measured(
                "gateway, warm-cache rerun",
                64,
                args.calls,
                lambda: gateway_run(base_url, 64, args.calls, cache, "warm")[0],
            )
    finally:
        process.terminate()
        process.wait(timeout=10)

    print(f"Server latency {args.latency_ms:.0f} ms (fixed), server in a separate process, 2-core machine.\n")
    print(
        "| run | concurrency | calls | wall s | calls/s | limit (conc./latency) | % of limit | HTTP requests |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())


if __name__ == "__main__":
    main()

"""Gateway throughput against a 100 ms OpenAI-compatible server on loopback.

    python -m benchmarks.llm_gateway [--calls 2000] [--latency-ms 100] [--repeats 3]

The ideal for N calls in flight at latency L is N / L calls/s; the table shows how close
each client gets. The test server runs in its own process so its CPU does not share the
client's interpreter (the machine has 2 cores, so the two still compete for them).
Concurrency 1 uses fewer calls (``--sequential-calls``) because it is 10 calls/s at best.

At concurrency 64 the gateway and the reference clients run ``--repeats`` times in
interleaved rounds, so each sees the same machine; the table gives the median run and the
range. On a shared VM the hypervisor can take CPU away (``steal`` in /proc/stat); the
table prints how much it took during each row, since that, not the code, moves these
numbers by several points from one run to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import openai

from models.llm import GatewayConfig, LLMGateway, LLMRequest
from models.llm.test_server import start_subprocess


def _python_speed_ms() -> float:
    """One core's pure-Python speed, so tables from different machines or days can be compared."""
    started = time.perf_counter()
    sum(range(10_000_000))
    return 1000 * (time.perf_counter() - started)


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far, or None where /proc/stat does not exist."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    return fields[7], sum(fields[:8])


@dataclass
class Run:
    wall_s: float
    http_requests: int
    steal: float | None  # share of CPU time the hypervisor took during the run


@dataclass
class Row:
    run: str
    concurrency: int
    calls: int
    latency_s: float
    runs: list[Run] = field(default_factory=list)

    def percent(self, run: Run) -> float:
        return 100 * self.calls / run.wall_s / (self.concurrency / self.latency_s)

    def markdown(self) -> str:
        median = sorted(self.runs, key=lambda r: r.wall_s)[len(self.runs) // 2]
        rate = self.calls / median.wall_s
        spread = ""
        if len(self.runs) > 1:
            low, high = min(map(self.percent, self.runs)), max(map(self.percent, self.runs))
            spread = f" ({low:.0f}–{high:.0f})"
        steals = [r.steal for r in self.runs if r.steal is not None]
        steal = f"{100 * statistics.median(steals):.1f}%" if steals else "n/a"
        return (
            f"| {self.run} | {self.concurrency} | {self.calls} | {len(self.runs)} | {median.wall_s:.2f} "
            f"| {rate:,.0f} | {self.concurrency / self.latency_s:,.0f} | {self.percent(median):.0f}%{spread} "
            f"| {median.http_requests} | {steal} |"
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
    parser.add_argument("--repeats", type=int, default=3, help="runs of each concurrency-64 row")
    args = parser.parse_args()
    latency = args.latency_ms / 1000

    process, base_url = start_subprocess("--latency-ms", str(args.latency_ms))

    def measure(row: Row, action: Callable[[], float]) -> None:
        before, cpu_before = _server_requests(base_url), _cpu_times()
        wall = action()
        cpu_after = _cpu_times()
        steal = None
        if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
            steal = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
        row.runs.append(Run(wall, _server_requests(base_url) - before, steal))

    seq, n = args.sequential_calls, args.calls
    rows: list[Row] = []
    try:
        naive = Row("naive loop, plain openai client", 1, seq, latency)
        measure(naive, lambda: naive_sequential(base_url, seq))
        rows.append(naive)
        for concurrency in (1, 8, 32):
            calls = seq if concurrency == 1 else n
            row = Row("gateway", concurrency, calls, latency)
            measure(row, lambda c=concurrency, k=calls: gateway_run(base_url, c, k, None, f"c{c}")[0])
            rows.append(row)

        gateway = Row("gateway", 64, n, latency)
        default = Row("reference: AsyncOpenAI default client", 64, n, latency)
        bare = Row("reference: bare aiohttp", 64, n, latency)
        cold = Row("gateway, cold cache", 64, n, latency)
        warm = Row("gateway, warm-cache rerun", 64, n, latency)
        with tempfile.TemporaryDirectory() as scratch:
            for round_ in range(args.repeats):
                cache = Path(scratch) / f"cache-{round_}.sqlite"
                measure(gateway, lambda r=round_: gateway_run(base_url, 64, n, None, f"c64-{r}")[0])
                measure(default, lambda: asyncio.run(openai_default_client(base_url, 64, n)))
                measure(bare, lambda: asyncio.run(bare_aiohttp(base_url, 64, n)))
                measure(cold, lambda c=cache, r=round_: gateway_run(base_url, 64, n, c, f"warm-{r}")[0])
                measure(warm, lambda c=cache, r=round_: gateway_run(base_url, 64, n, c, f"warm-{r}")[0])
        rows += [gateway, default, bare, cold, warm]
    finally:
        process.terminate()
        process.wait(timeout=10)

    print(
        f"Server latency {args.latency_ms:.0f} ms (fixed), server in a separate process, 2-core machine; "
        f"sum(range(10**7)) takes {_python_speed_ms():.0f} ms here.\n"
    )
    print(
        "| run | concurrency | calls | runs | wall s | calls/s | limit (conc./latency) "
        "| % of limit (range) | HTTP requests | CPU steal |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())


if __name__ == "__main__":
    main()

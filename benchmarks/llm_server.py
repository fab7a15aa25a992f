"""Throughput of the local LLM server: judgements/s and generated tokens/s.

    python -m benchmarks.llm_server [--judgements 8] [--in-flight 4] [--rounds 4] [--skip-slots]

Every row sends the same relevance judgements (the `judge_relevance` prompt, JSON mode with the schema,
the gateway's cache off) to a fresh `llama_cpp.server` (what `setlist llm serve` runs) on a free
127.0.0.1 port, with the model `setlist llm install` assembled. Rows:

- 2 CPU threads, one request in flight: the default (`SETLIST_LOCAL_LLM__THREADS=2`), the baseline;
- 1 thread, one in flight: on a machine whose cores are busy with other work, two threads that must meet
  at a barrier every step lose far more than the second core gives;
- 1 thread, `--in-flight` requests: llama-cpp-python 0.3.36's server has no parallel slots (one model
  behind a lock, no continuous batching), so more in flight only queue: the gateway's concurrency
  follows the server's one slot (`SETLIST_LLM__MAX_CONCURRENCY=1`);
- llama.cpp's own `llama-server` (`setlist llm install --llama-server`, models/llm/llama_server.py), 2
  threads: one slot with one request in flight, then `--in-flight` slots with as many in flight
  (continuous batching: each decode step carries every busy slot's next token).

`--rounds N` adds a second table, the lever this server does have: tasks that alternate, as an LLM
candidate's turns do (a parse with its ~5,000-token prompt, then another task's prompt), with the server's
RAM prompt cache off and on (`SETLIST_LOCAL_LLM__PROMPT_CACHE_MB`), with the server's peak RSS. Without it
the one context holds only the previous request, so every parse reads its whole prompt again. When built,
llama-server with two slots follows: it sends a request to the slot whose cached prompt shares most of it,
so each task keeps its own prefix.

The table prints the machine's load average beside it: these figures move with what else runs.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.memory import PeakMemory
from models.assistant.llm_parser import LLMParser
from models.eval.judges import LLMRelevanceJudge, RelevanceItem
from models.llm import GatewayConfig, LLMGateway
from models.llm.llama_server import binary_path
from models.llm.local_server import (
    LOOPBACK,
    QWEN_CODER_1_5B,
    LocalLLMError,
    ServerConfig,
    start_server,
    stop_server,
)
from models.taxonomy import load_curated
from orchestration.settings import load_settings

REQUESTS = [
    "calm piano music for reading",
    "something energetic for a morning run",
    "sad songs with acoustic guitar",
    "90s hip hop for a road trip",
    "relaxing jazz for dinner, no vocals",
    "epic orchestral music for studying",
]
TRACKS = [
    ("Gymnopédie No. 1", "Erik Satie", ("genre/classical", "instrument/piano", "mood/calm")),
    ("Lose Yourself", "Eminem", ("genre/hiphop", "mood/energetic")),
    ("Hurt", "Johnny Cash", ("genre/country", "instrument/acousticguitar", "mood/sad")),
    ("So What", "Miles Davis", ("genre/jazz", "instrument/trumpet", "mood/relaxing")),
]


def items(n: int) -> list[RelevanceItem]:
    return [
        RelevanceItem(
            f"bench-{i}",
            f"user: {REQUESTS[i % len(REQUESTS)]}",
            TRACKS[i % len(TRACKS)][0],
            (TRACKS[i % len(TRACKS)][1],),
            tags=TRACKS[i % len(TRACKS)][2],
        )
        for i in range(n)
    ]


@dataclass
class Row:
    server: str
    slots: int
    in_flight: int
    judgements: int
    failed: int
    wall_s: float
    completion_tokens: int
    latency_p50_s: float

    @property
    def judgements_per_s(self) -> float:
        return (self.judgements - self.failed) / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def gateway_for(base_url: str, in_flight: int, timeout_s: float) -> LLMGateway:
    return LLMGateway(
        GatewayConfig(
            base_url=base_url,
            model=QWEN_CODER_1_5B.name,
            max_concurrency=in_flight,
            timeout_s=timeout_s,
            max_retries=0,
            structured_output="json_object",
            cache_path=None,  # every request reaches the server
        )
    )


def judge(base_url: str, in_flight: int, n: int, timeout_s: float) -> tuple[int, float, int, float]:
    gateway = gateway_for(base_url, in_flight, timeout_s)
    started = time.perf_counter()
    judgements = LLMRelevanceJudge(gateway).judge(items(n))
    wall = time.perf_counter() - started
    stats = judgements.llm_stats
    assert stats is not None
    return judgements.failures, wall, stats.completion_tokens, stats.latency_p50_s


def server_row(
    model: Path,
    threads: int,
    in_flight: int,
    n: int,
    work: Path,
    timeout_s: float,
    binary: Path | None = None,
) -> Row:
    """`n` judgements with `in_flight` requests at a time; llama-server (`binary`) gets that many slots."""
    slots = in_flight if binary else 1
    config = ServerConfig(
        model, QWEN_CODER_1_5B.name, port=free_port(), threads=threads, ctx=4096, binary=binary, slots=slots
    )
    state = start_server(config, work / "server.json", work / "server.log")
    try:
        judge(state.base_url, 1, 1, timeout_s)  # warm-up: page the weights in, cache the system prompt
        failed, wall, tokens, p50 = judge(state.base_url, in_flight, n, timeout_s)
        name = "llama-server" if binary else "llama_cpp.server"
        return Row(f"{name}, {threads} threads", slots, in_flight, n, failed, wall, tokens, p50)
    finally:
        stop_server(work / "server.json")


def mixed_rounds(
    model: Path,
    cache_mb: int,
    rounds: int,
    work: Path,
    timeout_s: float,
    binary: Path | None = None,
    slots: int = 1,
) -> tuple[list[float], float]:
    """Seconds per round of (one parse, one judgement) on a fresh 2-thread server with the prompt cache
    at `cache_mb` (0: off), and the server's peak RSS in MB; each round's request differs, so only prompt
    prefixes can be reused. `binary`: llama-server with `slots` slots instead of llama_cpp.server."""
    config = ServerConfig(
        model,
        QWEN_CODER_1_5B.name,
        port=free_port(),
        threads=2,
        ctx=8192,
        prompt_cache_mb=cache_mb,
        binary=binary,
        slots=slots,
    )
    state = start_server(config, work / "server.json", work / "server.log")
    server = psutil.Process(state.pid)
    try:
        gateway = gateway_for(state.base_url, 1, timeout_s)
        parser = LLMParser(gateway, load_curated(load_settings().taxonomy_file))
        judges = LLMRelevanceJudge(gateway)
        seconds = []
        with PeakMemory(lambda: [server], interval_s=0.2) as memory:
            for i in range(rounds):
                started = time.perf_counter()
                parsed = parser.parse_batch([REQUESTS[i % len(REQUESTS)]], [[]])[0]
                judged = judges.judge(items(i + 1)[i:])
                seconds.append(time.perf_counter() - started)
                print(
                    f"cache {cache_mb} MB, round {i + 1}/{rounds}: {seconds[-1]:.0f} s "
                    f"(parse {parsed.failure or 'ok'}, judgement failures {judged.failures})",
                    flush=True,
                )
        return seconds, memory.peak_mb.get(server.pid, 0.0)
    finally:
        stop_server(work / "server.json")


def print_mixed(rows: dict[str, tuple[list[float], float]]) -> None:
    print("\nalternating tasks: one parse then one relevance judgement per round, 2 threads, one in flight\n")
    print("| prompt cache | round 1 s | later rounds, mean s | later rounds, speed-up | server peak RSS MB |")
    print("|---|---:|---:|---:|---:|")
    off = sum(rows["off"][0][1:]) / max(len(rows["off"][0]) - 1, 1)
    for name, (seconds, peak_mb) in rows.items():
        later = sum(seconds[1:]) / max(len(seconds) - 1, 1)
        print(f"| {name} | {seconds[0]:.0f} | {later:.1f} | {off / later:.2f}x | {peak_mb:,.0f} |")


def print_table(rows: list[Row]) -> None:
    baseline = rows[0]
    print(f"\n{baseline.judgements} relevance judgements each; baseline: the first row\n")
    print(
        "| server | slots | in flight | judgements/s | generated tokens/s | p50 latency s | failed | vs baseline |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row.server} | {row.slots} | {row.in_flight} | {row.judgements_per_s:.2f} | "
            f"{row.tokens_per_s:.1f} | {row.latency_p50_s:.1f} | {row.failed} | "
            f"{row.judgements_per_s / baseline.judgements_per_s:.2f}x |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--judgements", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--timeout-s", type=float, default=900)
    parser.add_argument("--rounds", type=int, default=0, help="alternating-task rounds per prompt-cache row")
    parser.add_argument("--skip-slots", action="store_true", help="only the alternating-task table")
    args = parser.parse_args(argv)
    model = load_settings().local_llm_dir / "models" / QWEN_CODER_1_5B.filename
    if not model.exists():
        sys.exit(f"{model} is missing: run `setlist llm install` first")
    binary = binary_path(load_settings().local_llm_dir)
    runs = [(2, 1, None), (1, 1, None), (1, args.in_flight, None)]
    if binary.exists():
        runs += [(2, 1, binary), (2, args.in_flight, binary)]
    else:
        print(f"{binary} is not built (`setlist llm install --llama-server`): no llama-server rows")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            rows = [
                server_row(model, threads, in_flight, args.judgements, Path(tmp), args.timeout_s, engine)
                for threads, in_flight, engine in runs
                if not args.skip_slots
            ]
            mixed_runs = [("off", 0, None, 1), ("on, 256 MB of KV, n_batch 128", 256, None, 1)]
            if binary.exists():
                mixed_runs.append(("llama-server, 2 slots, --cache-ram 256", 256, binary, 2))
            mixed = {
                name: mixed_rounds(model, cache_mb, args.rounds, Path(tmp), args.timeout_s, engine, slots)
                for name, cache_mb, engine, slots in mixed_runs
                if args.rounds
            }
        except LocalLLMError as err:
            sys.exit(f"error: {err}")
    if rows:
        print_table(rows)
    if mixed:
        print_mixed(mixed)
    print(f"\nload average (1, 5, 15 min) at the end: {os.getloadavg()} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

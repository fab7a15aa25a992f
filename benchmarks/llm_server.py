"""Throughput of the local LLM: judgements/s and tokens/s, one request at a time against several.

    python -m benchmarks.llm_server [--judgements 24] [--native-server PATH] [--slots 4]

Every row sends the same relevance judgements (the `judge_relevance` prompt, structured output, the
gateway's cache off) to a fresh server on a free 127.0.0.1 port with the model `setlist llm install`
assembled, and measures wall time:

- `llama_cpp.server` (llama-cpp-python, what `setlist llm serve` runs) with one request in flight: the
  baseline; then with `--slots` in flight: the server decodes one request at a time behind a lock, so
  more in flight only queue (and time out, with a short timeout).
- with `--native-server`, llama.cpp's own `llama-server` (built from the same vendored llama.cpp, see
  README) with one slot and with `--slots` parallel slots (continuous batching: the slots' tokens are
  decoded in one batch per step), the gateway's concurrency following the slots.

Tokens/s counts generated tokens; prompt tokens are processed too but not counted there.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from models.eval.judges import LLMRelevanceJudge, RelevanceItem
from models.llm import GatewayConfig, LLMGateway
from models.llm.local_server import (
    LOOPBACK,
    QWEN_CODER_1_5B,
    LocalLLMError,
    ServerConfig,
    start_server,
    stop_server,
    wait_until_ready,
)
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


def judge(base_url: str, in_flight: int, n: int, timeout_s: float) -> tuple[int, float, int, float]:
    gateway = LLMGateway(
        GatewayConfig(
            base_url=base_url,
            model=QWEN_CODER_1_5B.name,
            max_concurrency=in_flight,
            timeout_s=timeout_s,
            max_retries=0,
            cache_path=None,
        )
    )
    started = time.perf_counter()
    judgements = LLMRelevanceJudge(gateway).judge(items(n))
    wall = time.perf_counter() - started
    stats = judgements.llm_stats
    assert stats is not None
    return judgements.failures, wall, stats.completion_tokens, stats.latency_p50_s


def python_server_rows(model: Path, n: int, slots: int, work: Path, timeout_s: float) -> list[Row]:
    config = ServerConfig(model, QWEN_CODER_1_5B.name, port=free_port(), ctx=4096)
    state = start_server(config, work / "server.json", work / "server.log")
    try:
        judge(state.base_url, 1, 2, timeout_s)  # warm-up: the first prompt loads weights into the cache
        rows = []
        for in_flight in (1, slots):
            failed, wall, tokens, p50 = judge(state.base_url, in_flight, n, timeout_s)
            rows.append(Row("llama_cpp.server", 1, in_flight, n, failed, wall, tokens, p50))
        return rows
    finally:
        stop_server(work / "server.json")


def native_server_row(binary: Path, model: Path, n: int, slots: int, work: Path, timeout_s: float) -> Row:
    port = free_port()
    command = [
        str(binary), "-m", str(model), "--host", LOOPBACK, "--port", str(port), "-t", "2",
        "--parallel", str(slots), "-c", str(4096 * slots), "--cont-batching", "--no-webui",
    ]  # fmt: skip
    log = work / f"native-{slots}.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_ready(f"http://{LOOPBACK}:{port}/v1", process, log, 180)
        base_url = f"http://{LOOPBACK}:{port}/v1"
        judge(base_url, slots, 2 * slots, timeout_s)  # warm-up
        failed, wall, tokens, p50 = judge(base_url, slots, n, timeout_s)
        return Row("llama-server (llama.cpp)", slots, slots, n, failed, wall, tokens, p50)
    finally:
        process.terminate()
        process.wait(20)


def print_table(rows: list[Row]) -> None:
    baseline = rows[0]
    print(f"\n{baseline.judgements} relevance judgements each; baseline: {baseline.server}, one in flight\n")
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
    parser.add_argument("--judgements", type=int, default=24)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--native-server", type=Path, help="a llama-server binary for the parallel-slot rows")
    parser.add_argument("--timeout-s", type=float, default=600)
    args = parser.parse_args(argv)
    model = load_settings().local_llm_dir / "models" / QWEN_CODER_1_5B.filename
    if not model.exists():
        sys.exit(f"{model} is missing: run `setlist llm install` first")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            rows = python_server_rows(model, args.judgements, args.slots, work, args.timeout_s)
            if args.native_server:
                rows += [
                    native_server_row(args.native_server, model, args.judgements, slots, work, args.timeout_s)
                    for slots in (1, args.slots)
                ]
        except LocalLLMError as err:
            sys.exit(f"error: {err}")
    print_table(rows)


if __name__ == "__main__":
    main()

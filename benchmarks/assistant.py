"""Offline assistant turn latency on the full MTG-Jamendo catalog (~55k tracks), beside the bare retriever.

Parser: the keyword parser stands in for the trained intent model (not needed to time the rest of
the turn: feedback, names, state, policy, tools, steering, retrieval, stories). Each scripted conversation
runs REPEATS times; one of them rates the last slate between turns (`/like`, `/dislike`), so the steering
by likes, dislikes and shown tracks is timed too. The baseline in the same run is `CatalogIndex.search`
alone on each turn's text. The 2 cores are shared: wall-clock times include waiting for a core, so the
table also gives each turn's CPU time (`time.thread_time`), and the machine's speed and load.

    .venv/bin/python -m benchmarks.assistant [--catalog path/to/autotagging.tsv]
"""

import argparse
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from models.assistant.assistant import Assistant, Session
from models.assistant.keyword_parser import KeywordParser
from models.assistant.retrieval import CatalogIndex
from models.catalog.sources import CatalogSourceSpec, read_catalog
from models.taxonomy import load_curated

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TSV = REPO.parent / "shared" / "data" / "mtg_jamendo" / "autotagging.tsv"
REPEATS = 20
CONVERSATIONS = [
    ["something calm", "with piano", "less sad", "no vocals", "more like the second one", "not that artist"],
    ["upbeat rock for running", "under 4 minutes", "what is the first one", "more like that one"],
    ["music for studying", "play something good", "ambient with strings", "the third one, more like it"],
    ["something chill", "something faster", "under 3 minutes", "more please", "shorter"],
]
RATED = 3  # this conversation likes slate tracks 1 and 2 and dislikes 3 after every answer


def _cpu_reference_ms() -> float:
    started = time.perf_counter()
    sum(range(10_000_000))
    return (time.perf_counter() - started) * 1000


def main(tsv: Path) -> None:
    taxonomy = load_curated(REPO / "data" / "taxonomy.yaml")
    catalog = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(tsv))).kept
    started = time.perf_counter()
    index = CatalogIndex.build(catalog, taxonomy)
    build_s = time.perf_counter() - started
    assistant = Assistant(KeywordParser(taxonomy), index, taxonomy)

    by_kind: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)
    for _ in range(REPEATS):
        for number, texts in enumerate(CONVERSATIONS):
            session = Session()
            for text in texts:
                started, thread = time.perf_counter(), time.thread_time()
                index.search(text)
                by_kind["baseline: retriever alone"].append((time.perf_counter() - started) * 1000)
                cpu["baseline: retriever alone"].append((time.thread_time() - thread) * 1000)
                started, thread = time.perf_counter(), time.thread_time()
                result = assistant.respond(session, text)
                elapsed_ms, cpu_ms = (
                    (time.perf_counter() - started) * 1000,
                    (time.thread_time() - thread) * 1000,
                )
                kind = "clarification" if result.asked_clarification else result.labels.intent.value
                feedback = "with likes and dislikes" if number == RATED else "without feedback"
                for name in (kind, feedback, "all turns"):
                    by_kind[name].append(elapsed_ms)
                    cpu[name].append(cpu_ms)
                if number == RATED and len(result.track_ids) >= 3:
                    session.like(*result.track_ids[:2])
                    session.dislike(result.track_ids[2])

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table = Table(
        title=f"Offline turn latency, {catalog.height} tracks (index build {build_s:.1f}s, keyword parser); "
        f"sum(range(10**7)) {_cpu_reference_ms():.0f} ms, load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    for column in ("turn kind", "turns", "p50 ms", "p95 ms", "max ms", "CPU p50 ms", "CPU p95 ms"):
        table.add_column(column, justify="right")
    order = ["baseline: retriever alone", "without feedback", "with likes and dislikes", "all turns"]
    for kind, values in sorted(
        by_kind.items(), key=lambda kv: (kv[0] in order, order.index(kv[0]) if kv[0] in order else 0)
    ):
        v, c = np.array(values), np.array(cpu[kind])
        stats = (
            np.percentile(v, 50),
            np.percentile(v, 95),
            v.max(),
            np.percentile(c, 50),
            np.percentile(c, 95),
        )
        table.add_row(kind, str(v.size), *(f"{x:.1f}" for x in stats))
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=DEFAULT_TSV, help="an MTG-Jamendo autotagging.tsv")
    main(parser.parse_args().catalog)

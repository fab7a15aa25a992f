"""Offline assistant turn latency on the full MTG-Jamendo catalog (~55k tracks).

Parser: the keyword parser stands in for the trained intent model (not needed to time the rest of
the turn: state, policy, tools, retrieval, stories). Each scripted conversation runs REPEATS times.

    .venv/bin/python -m benchmarks.assistant [--catalog path/to/autotagging.tsv]
"""

import argparse
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
]


def main(tsv: Path) -> None:
    taxonomy = load_curated(REPO / "data" / "taxonomy.yaml")
    catalog = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(tsv))).kept
    started = time.perf_counter()
    index = CatalogIndex.build(catalog, taxonomy)
    build_s = time.perf_counter() - started
    assistant = Assistant(KeywordParser(taxonomy), index, taxonomy)

    by_intent: dict[str, list[float]] = defaultdict(list)
    for _ in range(REPEATS):
        for texts in CONVERSATIONS:
            session = Session()
            for text in texts:
                started = time.perf_counter()
                result = assistant.respond(session, text)
                elapsed_ms = (time.perf_counter() - started) * 1000
                kind = "clarification" if result.asked_clarification else result.labels.intent.value
                by_intent[kind].append(elapsed_ms)
                by_intent["all turns"].append(elapsed_ms)

    table = Table(
        title=f"Offline turn latency, {catalog.height} tracks (index build {build_s:.1f}s, keyword parser)"
    )
    for column in ("turn kind", "turns", "p50 ms", "p95 ms", "max ms"):
        table.add_column(column, justify="right")
    for kind, values in sorted(by_intent.items(), key=lambda kv: kv[0] == "all turns"):
        v = np.array(values)
        table.add_row(
            kind, str(v.size), *(f"{x:.1f}" for x in (np.percentile(v, 50), np.percentile(v, 95), v.max()))
        )
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=DEFAULT_TSV, help="an MTG-Jamendo autotagging.tsv")
    main(parser.parse_args().catalog)

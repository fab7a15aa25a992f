"""Retrieval benchmark: index build rate and query latency on MTG-Jamendo (55k and a 1M scaled copy), and the
CPCD conversational BM25 baseline on the shared CPCD file.

Each catalog size runs in a fresh subprocess that reports its own peak RSS. The scaled copy repeats the
catalog with new track and artist ids, so tag statistics stay real while the index grows.

    python -m benchmarks.retrieval --sizes 55k,1m    # from the repo root
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SETLIST_SHARED_DATA", REPO.parent / "shared" / "data"))
MTG = SHARED / "mtg_jamendo" / "autotagging.tsv"
CPCD = SHARED / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl"
SIZES = {"55k": 55_525, "1m": 1_000_000}
QUERIES = (
    "chill piano for a rainy evening",
    "drum and bass",
    "dark ambient soundtrack",
    "happy upbeat pop for summer",
    "gym workout energetic rock",
    "sad acoustic guitar",
    "epic orchestral film music",
    "deep house for a dinner party",
    "relaxing meditation music",
    "electronic",
    "jazz with saxophone",
    "something to study to",
    "heavy metal",
    "romantic violin",
    "hip hop beats",
    "lo-fi chill",
)
REPEATS = 10


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return float(p50), float(p95)


def _timed(call: Callable[..., object], *args: object, **kwargs: object) -> float:
    start = time.perf_counter()
    call(*args, **kwargs)
    return time.perf_counter() - start


def run_size(size: int) -> dict[str, float]:
    import polars as pl

    from models.assistant.retrieval import CatalogIndex, Filters
    from models.catalog.sources import CatalogSourceSpec, read_catalog
    from models.taxonomy import load_curated

    base = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(MTG))).kept
    copies = -(-size // base.height)
    catalog = pl.concat(
        base.with_columns(track_id=pl.col("track_id") + f"_r{i}", artist_id=pl.col("artist_id") + f"_r{i}")
        for i in range(copies)
    ).head(size)
    taxonomy = load_curated(REPO / "data" / "taxonomy.yaml")

    start = time.perf_counter()
    index = CatalogIndex.build(catalog, taxonomy)
    build_s = time.perf_counter() - start

    filter_sets = [
        Filters(require={"genres": {"electronic", "techno", "house", "ambient", "rock", "pop"}}),
        Filters(exclude={"moods": {"sad", "dark"}}, min_duration_s=120, max_duration_s=360),
    ]
    seeds = catalog["track_id"].sample(len(QUERIES), seed=0).to_list()
    latencies: dict[str, list[float]] = {"search": [], "search+filters": [], "similar": []}
    for _ in range(REPEATS):
        for i, query in enumerate(QUERIES):
            filters = filter_sets[i % len(filter_sets)]
            latencies["search"].append(_timed(index.search, query))
            latencies["search+filters"].append(_timed(index.search, query, filters))
            latencies["similar"].append(_timed(index.similar, [seeds[i]], filters=filters))
    out = {"tracks": float(catalog.height), "build_s": build_s, "peak_rss_mb": _peak_rss_mb()}
    for name, values in latencies.items():
        out[f"{name}_p50_ms"], out[f"{name}_p95_ms"] = _percentiles(values)
    return out


def run_cpcd() -> list[dict[str, object]]:
    """The BM25 baseline under the public CPCD protocol (models/eval/cpcd_protocol.py), the whole file."""
    from models.assistant.retrieval import CatalogIndex
    from models.eval.cpcd_protocol import PROTOCOL_KS
    from models.eval.cpcd_runs import run_bm25_baseline
    from models.golden.cpcd import import_cpcd

    golden = import_cpcd(CPCD)
    start = time.perf_counter()
    report = run_bm25_baseline(CatalogIndex.build(golden.corpus), golden.turns, golden.corpus).report
    elapsed = time.perf_counter() - start
    return [
        {
            "setting": "public protocol",
            "average": average,
            **{f"hit@{k}": values[f"hit_at_{k}"] for k in PROTOCOL_KS},
            **{f"{m}@{k}": values[f"{m}_at_{k}"] for m in ("recall", "mrr", "ndcg") for k in (10, 20)},
            "turns": report.n_evaluated,
            "corpus": golden.corpus.height,
            "seconds": elapsed,
        }
        for average, values in (("micro", report.micro), ("macro", report.macro))
    ]


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _table(rows: list[dict[str, object]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(r[h]) for h in header) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="55k,1m")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one size in this process
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_size(SIZES[args.case])))
        return

    rows = []
    for label in args.sizes.split(","):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.retrieval", "--case", label],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(
            {
                "catalog": f"MTG-Jamendo {label}",
                "tracks": f"{int(r['tracks']):,}",
                "build s": r["build_s"],
                "build tracks/s": f"{r['tracks'] / r['build_s']:,.0f}",
                "peak RSS MB": f"{r['peak_rss_mb']:,.0f}",
                **{
                    f"{name} p50/p95 ms": f"{r[f'{name}_p50_ms']:.1f} / {r[f'{name}_p95_ms']:.1f}"
                    for name in ("search", "search+filters", "similar")
                },
            }
        )
    print("## Index build and query latency (BM25 + tag vectors + RRF + artist cap)\n")
    print(_table(rows))
    if CPCD.exists():
        print(
            "\n## CPCD BM25 baseline, public protocol (query = user turns so far; corpus = the file's rated tracks)\n"
        )
        print(_table(run_cpcd()))


if __name__ == "__main__":
    main()

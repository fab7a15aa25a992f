"""Catalog sourcing benchmark: `read_catalog` (polars) beside the same normalisation in pandas.

Each case runs in a fresh subprocess that reports its own wall time and peak RSS, so one case's memory never
inflates another's. Scaled copies of the MTG-Jamendo file (new unique ids) are written to a temp dir.

    python -m benchmarks.catalog --sizes 55k,1m,10m    # from the repo root
"""

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SETLIST_SHARED_DATA", REPO.parent / "shared" / "data"))
SIZES = {"55k": 55_525, "1m": 1_000_000, "10m": 10_000_000}
MAX_DURATION_S = (
    4 * 60 * 60.0
)  # same bound as checks.quarantine_rules; not imported so pandas runs stay polars-free
FACETS = {"genre": "genres", "instrument": "instruments", "mood/theme": "moods"}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_polars(path: str) -> dict[str, int]:
    from models.catalog.sources import CatalogSourceSpec, read_catalog

    read = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=path))
    assert read.reconciles
    return {"rows": read.rows_read, "kept": read.kept.height, "quarantined": read.quarantined.height}


def run_pandas(path: str) -> dict[str, int]:
    """Idiomatic pandas: read lines, split fields, explode tags, validate, regroup tags per facet."""
    import pandas as pd

    lines = pd.read_csv(
        path,
        sep="\x1f",
        header=None,
        names=["line"],
        dtype=str,
        quoting=csv.QUOTE_NONE,
        skip_blank_lines=False,
    )["line"].iloc[1:]
    fields = lines.str.split("\t")
    frame = pd.DataFrame(
        {
            "track_id": fields.str[0],
            "artist_id": fields.str[1],
            "album_id": fields.str[2],
            "duration_s": pd.to_numeric(fields.str[4], errors="coerce"),
        }
    )
    tags = fields.str[5:].explode().dropna()
    parts = tags.str.partition("---")
    parts["facet"] = parts[0].map(FACETS)
    bad_tag = (parts["facet"].isna() | (parts[2] == "")).groupby(level=0).any()
    per_facet = parts.dropna(subset=["facet"]).groupby([parts.index, "facet"])[2].agg(list).unstack("facet")
    frame = frame.join(per_facet.reindex(columns=list(FACETS.values())))
    for facet in FACETS.values():
        frame[facet] = frame[facet].apply(lambda v: v if isinstance(v, list) else [])

    rule = pd.Series(pd.NA, index=frame.index, dtype="object")
    rule = rule.mask(rule.isna() & (fields.str.len() < 5), "malformed_line")
    rule = rule.mask(rule.isna() & bad_tag.reindex(frame.index, fill_value=False), "unknown_facet")
    rule = rule.mask(rule.isna() & frame["track_id"].fillna("").str.strip().eq(""), "missing_id")
    rule = rule.mask(rule.isna() & frame["duration_s"].isna(), "bad_duration")
    absurd = (frame["duration_s"] <= 0) | (frame["duration_s"] > MAX_DURATION_S)
    rule = rule.mask(rule.isna() & absurd, "absurd_duration")
    valid = rule.isna()
    rule = rule.mask(valid & frame["track_id"].where(valid).duplicated(keep="first"), "duplicate_id")
    kept = frame[rule.isna()]
    return {"rows": len(frame), "kept": len(kept), "quarantined": int(rule.notna().sum())}


ENGINES = {"polars": run_polars, "pandas": run_pandas}


def _child(engine: str, path: str) -> None:
    if engine == "polars":
        import models.catalog.sources  # noqa: F401  (import cost is not sourcing cost)
    else:
        import pandas  # noqa: F401
    baseline = _peak_rss_mb()
    start = time.perf_counter()
    counts = ENGINES[engine](path)
    seconds = time.perf_counter() - start
    print(json.dumps({**counts, "seconds": seconds, "peak_mb": _peak_rss_mb(), "baseline_mb": baseline}))


def scaled_copy(src: Path, rows: int, out: Path) -> Path:
    """`rows` data lines cycled from `src`, each with a fresh unique TRACK_ID."""
    import polars as pl

    from models.catalog.mtg_jamendo import read_lines

    lines = read_lines(src.read_bytes(), str(src))
    header, body = lines["line"][0], lines["line"][1:]
    repeated = body.gather(pl.int_range(rows, eager=True) % body.len())
    scaled = pl.DataFrame({"line": repeated}).select(
        pl.format("track_{}\t{}", pl.int_range(pl.len()), pl.col("line").str.splitn("\t", 2).struct[1])
    )
    out.write_text(header + "\n", encoding="utf-8")
    with out.open("ab") as fh:
        scaled.write_csv(fh, include_header=False, quote_style="never")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="55k,1m,10m", help=f"comma-separated of {','.join(SIZES)}")
    parser.add_argument("--engines", default="polars,pandas")
    # pandas holds ~3.5 GB per million rows here: 10M would need ~35 GB, more than a shared dev box has.
    parser.add_argument("--pandas-max", default="1m", help="largest size pandas runs at")
    parser.add_argument("--src", default=str(SHARED / "mtg_jamendo" / "autotagging.tsv"))
    parser.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    print("| rows | engine | wall s | rows/s | peak RSS MB | Δ over imports MB | kept | quarantined |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="setlist-bench-") as tmp:
        for size in args.sizes.split(","):
            rows = SIZES[size]
            src = Path(args.src)
            path = (
                src if rows == SIZES["55k"] else scaled_copy(src, rows, Path(tmp) / f"autotagging_{size}.tsv")
            )
            for engine in args.engines.split(","):
                if engine == "pandas" and rows > SIZES[args.pandas_max]:
                    print(f"| {rows:,} | pandas | skipped (> --pandas-max {args.pandas_max}) | | | | | |")
                    continue
                done = subprocess.run(
                    [sys.executable, "-m", "benchmarks.catalog", "--child", engine, str(path)],
                    cwd=REPO,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"| {r['rows']:,} | {engine} | {r['seconds']:.2f} | {r['rows'] / r['seconds']:,.0f} "
                    f"| {r['peak_mb']:,.0f} | {r['peak_mb'] - r['baseline_mb']:,.0f} "
                    f"| {r['kept']:,} | {r['quarantined']:,} |",
                    flush=True,
                )
            if path != src:
                path.unlink()


if __name__ == "__main__":
    main()

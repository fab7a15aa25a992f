"""Catalog sourcing benchmark: the batched `read_catalog` against the whole-file read it replaced (and pandas).

Each case runs in a fresh subprocess that reports its own wall time and peak RSS, so one case's memory never
inflates another's. Scaled copies of the MTG-Jamendo file (new unique ids) are written to a temp dir. The
`previous` engine is `read_catalog` as of `--previous-ref` (the last commit before batching), extracted
with `git archive` and imported ahead of the working tree.

    python -m benchmarks.catalog --sizes 1m,3m,10m    # from the repo root
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SETLIST_SHARED_DATA", REPO.parent / "shared" / "data"))
SIZES = {"55k": 55_525, "1m": 1_000_000, "3m": 3_000_000, "10m": 10_000_000}
PREVIOUS_REF = "91e5b97"  # read_catalog before batching: whole file in memory, one frame
MAX_DURATION_S = (
    4 * 60 * 60.0
)  # same bound as checks.quarantine_rules; not imported so pandas runs stay polars-free
FACETS = {"genre": "genres", "instrument": "instruments", "mood/theme": "moods"}


def _peak_rss_mb() -> float:
    """This process's own peak: VmHWM starts afresh at exec, while ru_maxrss carries over the parent's peak
    from the fork (the parent that wrote a 10M-row copy would otherwise set every child's figure)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024


def run_read_catalog(path: str, batch_rows: int | None) -> dict[str, int]:
    from models.catalog.sources import CatalogSourceSpec, read_catalog

    spec = CatalogSourceSpec(kind="mtg_jamendo", location=path)
    if batch_rows:
        spec = spec.model_copy(update={"batch_rows": batch_rows})
    read = read_catalog(spec)
    assert read.reconciles
    return {"rows": read.rows_read, "kept": read.kept.height, "quarantined": read.quarantined.height}


def run_pandas(path: str, batch_rows: int | None) -> dict[str, int]:
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


ENGINES = {"batched": run_read_catalog, "previous": run_read_catalog, "pandas": run_pandas}


def _child(engine: str, path: str, batch_rows: int | None) -> None:
    if engine == "pandas":
        import pandas  # noqa: F401  (import cost is not sourcing cost)
    else:
        import models.catalog.sources as sources

        checked_out = Path(sources.__file__).resolve().is_relative_to(REPO)
        assert checked_out == (engine == "batched"), f"{engine} imported {sources.__file__}"
    baseline = _peak_rss_mb()
    start = time.perf_counter()
    counts = ENGINES[engine](path, batch_rows)
    seconds = time.perf_counter() - start
    print(json.dumps({**counts, "seconds": seconds, "peak_mb": _peak_rss_mb(), "baseline_mb": baseline}))


def scaled_copy(src: Path, rows: int, out: Path) -> Path:
    """`rows` data lines cycled from `src`, each with a fresh unique TRACK_ID."""
    import polars as pl

    header, *body = src.read_text(encoding="utf-8").splitlines()
    repeated = pl.Series(body).gather(pl.int_range(rows, eager=True) % len(body))
    scaled = pl.DataFrame({"line": repeated}).select(
        pl.format("track_{}\t{}", pl.int_range(pl.len()), pl.col("line").str.splitn("\t", 2).struct[1])
    )
    out.write_text(header + "\n", encoding="utf-8")
    with out.open("ab") as fh:
        scaled.write_csv(fh, include_header=False, quote_style="never")
    return out


def extract_tree(ref: str, into: Path) -> Path:
    """`models/` and `checks/` as of `ref`, where a child process can import them ahead of the working tree."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "models", "checks"], cwd=REPO, capture_output=True, check=True
    )
    archive_path = into / "previous.tar"
    archive_path.write_bytes(archive.stdout)
    tree = into / "previous"
    with tarfile.open(archive_path) as tar:
        tar.extractall(tree, filter="data")
    return tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="55k,1m,10m", help=f"comma-separated of {','.join(SIZES)}")
    parser.add_argument(
        "--engines", default="batched,previous", help=f"comma-separated of {','.join(ENGINES)}"
    )
    parser.add_argument("--previous-ref", default=PREVIOUS_REF, help="git ref of the `previous` engine")
    parser.add_argument("--batch-rows", type=int, default=None, help="batched engine (default: the spec's)")
    # pandas holds ~3.5 GB per million rows here: 10M would need ~35 GB, more than a shared dev box has.
    parser.add_argument("--pandas-max", default="1m", help="largest size pandas runs at")
    parser.add_argument("--src", default=str(SHARED / "mtg_jamendo" / "autotagging.tsv"))
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "PATH", "BATCH_ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, path, batch_rows = args.child
        _child(engine, path, int(batch_rows) or None)
        return

    print("| rows | engine | wall s | rows/s | peak RSS MB | Δ over imports MB | kept | quarantined |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="setlist-bench-") as tmp:
        previous = extract_tree(args.previous_ref, Path(tmp)) if "previous" in args.engines else None
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
                env = dict(os.environ)
                if engine == "previous":
                    env["PYTHONPATH"] = str(previous)  # ahead of the editable install of the working tree
                done = subprocess.run(
                    [sys.executable, __file__, "--child", engine, str(path), str(args.batch_rows or 0)],
                    cwd=previous if engine == "previous" else REPO,
                    env=env,
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

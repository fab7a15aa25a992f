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
    start, cpu = time.perf_counter(), time.process_time()
    counts = ENGINES[engine](path, batch_rows)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = _peak_rss_mb()
    print(json.dumps({**counts, "seconds": seconds, "cpu": cpu, "peak_mb": peak, "baseline_mb": baseline}))


def scaled_copy(src: Path, rows: int, out: Path, chunk: int = 1_000_000) -> Path:
    """`rows` data lines cycled from `src`, each with a fresh unique TRACK_ID (written a million at a time,
    so this process stays small beside the children it measures)."""
    import polars as pl

    header, *body = src.read_text(encoding="utf-8").splitlines()
    rest = pl.Series(body).str.splitn("\t", 2).struct[1]
    out.write_text(header + "\n", encoding="utf-8")
    with out.open("ab") as fh:
        for start in range(0, rows, chunk):
            number = pl.int_range(start, min(start + chunk, rows), eager=True)
            lines = pl.DataFrame({"n": number, "rest": rest.gather(number % len(body))})
            lines.select(pl.format("track_{}\t{}", "n", "rest")).write_csv(
                fh, include_header=False, quote_style="never"
            )
    return out


def _available_gb() -> float:
    meminfo = Path("/proc/meminfo").read_text()
    return (
        int(next(line for line in meminfo.splitlines() if line.startswith("MemAvailable:")).split()[1])
        / 2**20
    )


def _watch(child: subprocess.Popen, min_available_gb: float) -> str | None:
    """Wait for `child`; stop it if the shared machine runs low on memory (before the OOM killer picks a
    victim). The reason it did not finish, or None."""
    while child.poll() is None:
        if _available_gb() < min_available_gb:
            child.kill()
            child.wait()
            return f"stopped: under {min_available_gb} GB available"
        time.sleep(0.2)
    if child.returncode:
        return "failed: " + (child.stderr.read().strip().splitlines() or ["no output"])[-1][:80]
    return None


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
    parser.add_argument(
        "--min-available-gb", type=float, default=1.5, help="stop a case when the machine gets this low"
    )
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "PATH", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, path, batch_rows = args.child
        _child(engine, path, int(batch_rows) or None)
        return

    print(
        "| rows | engine | wall s | CPU s | rows/s | peak RSS MB | Δ over imports MB | kept | quarantined |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
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
                    print(f"| {rows:,} | pandas | skipped (> --pandas-max {args.pandas_max}) | | | | | | |")
                    continue
                env = dict(os.environ)
                if engine == "previous":
                    env["PYTHONPATH"] = str(previous)  # ahead of the editable install of the working tree
                child = subprocess.Popen(
                    [sys.executable, __file__, "--child", engine, str(path), str(args.batch_rows or 0)],
                    cwd=previous if engine == "previous" else REPO,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                failure = _watch(child, args.min_available_gb)
                if failure:
                    print(f"| {rows:,} | {engine} | {failure} | | | | | | |", flush=True)
                    continue
                r = json.loads(child.stdout.read().strip().splitlines()[-1])
                print(
                    f"| {r['rows']:,} | {engine} | {r['seconds']:.2f} | {r['cpu']:.2f} "
                    f"| {r['rows'] / r['seconds']:,.0f} "
                    f"| {r['peak_mb']:,.0f} | {r['peak_mb'] - r['baseline_mb']:,.0f} "
                    f"| {r['kept']:,} | {r['quarantined']:,} |",
                    flush=True,
                )
            if path != src:
                path.unlink()


if __name__ == "__main__":
    main()

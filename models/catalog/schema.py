"""The one catalog schema every source adapter produces, the staged rows adapters hand to the quarantine rules
(`checks.quarantine_rules`), and the quarantine schema for rejected rows."""

from dataclasses import dataclass

import polars as pl

FACETS = ("genres", "instruments", "moods")

CATALOG_SCHEMA = pl.Schema(
    {
        "track_id": pl.String,
        "artist_id": pl.String,
        "album_id": pl.String,
        "title": pl.String,  # null where the source has no titles (MTG-Jamendo autotagging)
        "artists": pl.List(pl.String),
        "album": pl.String,
        "duration_s": pl.Float64,  # null where the source has no durations (CPCD)
        "genres": pl.List(pl.String),
        "instruments": pl.List(pl.String),
        "moods": pl.List(pl.String),
        "source": pl.String,
    }
)

# What every adapter hands to `apply_row_rules`: `duration_raw` stays text so that one shared rule decides
# what a bad duration is; `rule`/`detail` are pre-filled where the adapter already rejected the row.
STAGED_SCHEMA = pl.Schema(
    {
        "line_no": pl.Int64,
        "raw": pl.String,
        "rule": pl.String,
        "detail": pl.String,
        **{name: dtype for name, dtype in CATALOG_SCHEMA.items() if name != "duration_s"},
        "duration_raw": pl.String,
    }
)


@dataclass(frozen=True)
class StagedRows:
    frame: pl.DataFrame  # STAGED_SCHEMA
    repeats_merged: int = 0  # identical records folded into one row before staging (CPCD)


# Enough of a bad row to recognise it in the UI without storing blobs in the quarantine table.
RAW_PREVIEW_CHARS = 500
QUARANTINE_SCHEMA = pl.Schema(
    {
        "source_file": pl.String,
        "line_no": pl.Int64,  # 1-based physical line (or JSONL record) in the source file
        "rule": pl.String,
        "detail": pl.String,
        "raw": pl.String,  # the offending row, truncated to a readable length
    }
)


def empty_catalog() -> pl.DataFrame:
    return pl.DataFrame(schema=CATALOG_SCHEMA)


def empty_quarantine() -> pl.DataFrame:
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)

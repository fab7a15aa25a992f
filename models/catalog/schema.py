"""The one catalog schema every source adapter produces, and the quarantine schema for rejected rows."""

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

"""One way to source a catalog: `read_catalog(spec)` picks the adapter for `spec.kind` and applies the shared rules,
batch by batch, so peak memory is the rows kept plus one batch rather than the whole file several times over."""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from upath import UPath

from checks.quarantine_rules import CatalogSourceError, RowLedger
from models.catalog import cpcd, mtg_jamendo, tabular
from models.catalog.schema import CATALOG_SCHEMA, StagedRows
from models.catalog.streams import DEFAULT_BATCH_ROWS, open_location
from models.file_versions import file_version

__all__ = ["BUNDLED_SAMPLE", "CatalogRead", "CatalogSourceError", "CatalogSourceSpec", "read_catalog"]

BUNDLED_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "mtg_jamendo_sample.tsv"
_MAPPABLE = frozenset(CATALOG_SCHEMA.names()) - {"source"}


class CatalogSourceSpec(BaseModel):
    """Where a catalog comes from. `location` is a local path or any fsspec URL (http(s)://, gs://, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["mtg_jamendo", "cpcd", "tabular"] = "mtg_jamendo"
    location: str = str(BUNDLED_SAMPLE)
    source: str | None = None  # value of the `source` column; defaults to `kind`
    # tabular only
    format: Literal["parquet", "csv"] | None = None  # None: from the file suffix
    columns: dict[str, str] = {}  # our column -> their column
    list_separator: str = "|"  # for list columns stored as joined strings
    batch_rows: int = Field(default=DEFAULT_BATCH_ROWS, ge=1)  # rows (lines of a text file) per batch

    @field_validator("location", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="after")
    def _check_tabular(self) -> "CatalogSourceSpec":
        if self.kind != "tabular":
            return self
        if "track_id" not in self.columns:
            raise ValueError("a tabular source must map track_id")
        if unknown := set(self.columns) - _MAPPABLE:
            raise ValueError(f"unknown catalog columns in mapping: {sorted(unknown)}")
        if self.resolved_format is None:
            raise ValueError(f"cannot infer parquet/csv from {self.location!r}; set format")
        return self

    @property
    def source_label(self) -> str:
        return self.source or self.kind

    @property
    def resolved_format(self) -> Literal["parquet", "csv"] | None:
        if self.format:
            return self.format
        suffix = self.location.rsplit("?", 1)[0].rsplit(".", 1)[-1].lower()
        return {"parquet": "parquet", "pq": "parquet", "csv": "csv"}.get(suffix)


@dataclass(frozen=True)
class CatalogRead:
    kept: pl.DataFrame  # exactly CATALOG_SCHEMA
    quarantined: pl.DataFrame  # exactly QUARANTINE_SCHEMA
    rows_read: int
    source_file: str
    repeats_merged: int = 0  # identical repeated records folded into one row (CPCD), not counted in rows_read

    @property
    def reconciles(self) -> bool:
        return self.rows_read == self.kept.height + self.quarantined.height

    @cached_property
    def quarantine_counts(self) -> dict[str, int]:
        counts = self.quarantined.group_by("rule").len().sort("rule")
        return dict(zip(counts["rule"], counts["len"], strict=True))


def read_bytes(location: str) -> bytes:
    """The whole file, from a local path or a URL (`.gz` decompressed); a missing or unreadable location is a
    CatalogSourceError."""
    with open_location(location) as stream:
        try:
            return stream.read()
        except (OSError, EOFError) as exc:
            raise CatalogSourceError(location, "unreadable", f"{type(exc).__name__}: {exc}") from exc


_ADAPTERS: dict[str, Callable[[BinaryIO, CatalogSourceSpec], Iterator[StagedRows]]] = {
    "mtg_jamendo": lambda stream, spec: mtg_jamendo.stage_batches(
        stream, spec.location, spec.source_label, spec.batch_rows
    ),
    "cpcd": lambda stream, spec: cpcd.stage_batches(
        stream, spec.location, spec.source_label, spec.batch_rows
    ),
    "tabular": lambda stream, spec: tabular.stage_batches(
        stream,
        spec.location,
        spec.source_label,
        file_format=spec.resolved_format or "csv",
        columns=spec.columns,
        list_separator=spec.list_separator,
        batch_rows=spec.batch_rows,
    ),
}


def newest_file(location: str) -> str:
    """A folder location stands for its newest file by name (timestamped drops sort last); a file for itself."""
    path = UPath(location)
    if not path.is_dir():
        return location
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise CatalogSourceError(location, "file_missing", "the catalog folder holds no file")
    return str(files[-1])


def location_version(location: str) -> tuple[str, str]:
    """The file a location stands for now and its content version (`models.file_versions`)."""
    path = newest_file(location)
    try:
        return path, file_version(path)
    except FileNotFoundError as exc:
        raise CatalogSourceError(path, "file_missing", "no such file") from exc
    except (OSError, ValueError) as exc:
        raise CatalogSourceError(path, "unreadable", f"{type(exc).__name__}: {exc}") from exc


def read_catalog(spec: CatalogSourceSpec) -> CatalogRead:
    """Source one catalog file: valid rows in `kept`, every rejected row with its rule in `quarantined`."""
    spec = spec.model_copy(update={"location": newest_file(spec.location)})
    ledger = RowLedger(spec.location)
    with open_location(spec.location) as stream:
        try:
            for staged in _ADAPTERS[spec.kind](stream, spec):
                ledger.add(staged)
        except (OSError, EOFError) as exc:  # a broken gzip stream or connection mid-file
            raise CatalogSourceError(spec.location, "unreadable", f"{type(exc).__name__}: {exc}") from exc
    return CatalogRead(
        ledger.kept(), ledger.quarantined(), ledger.rows_read, spec.location, ledger.repeats_merged
    )

"""Tabular adapter: any Parquet or CSV catalog, mapped onto the catalog schema by a {our column: their column} map.

List columns may be native lists or strings joined by a separator. `line_no` is the physical line for CSV
(header is line 1; exact unless a quoted field spans lines) and the 1-based row number for Parquet.
"""

from typing import Literal

import polars as pl

from checks.quarantine_rules import CatalogSourceError
from models.catalog.schema import CATALOG_SCHEMA, STAGED_SCHEMA, StagedRows

_LIST_COLUMNS = ("artists", "genres", "instruments", "moods")


def _read(data: bytes, source_file: str, file_format: Literal["parquet", "csv"]) -> pl.DataFrame:
    if not data.strip():
        raise CatalogSourceError(source_file, "empty_file", "the file has no content")
    try:
        if file_format == "parquet":
            return pl.read_parquet(data)
        return pl.read_csv(data, infer_schema=False)  # every column as text; the rules decide what is valid
    except pl.exceptions.ComputeError as exc:
        rule = "not_utf8" if "utf-8" in str(exc).lower() else "unreadable"
        raise CatalogSourceError(source_file, rule, f"not a readable {file_format} file: {exc}") from exc


def _as_list(column: str, dtype: pl.DataType, separator: str) -> pl.Expr:
    if isinstance(dtype, pl.List | pl.Array):
        values = pl.col(column).cast(pl.List(pl.String))
    else:
        values = pl.col(column).cast(pl.String).str.split(separator)
    cleaned = values.list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element() != "")
    )
    return cleaned.fill_null(pl.lit([], pl.List(pl.String)))


def stage(
    data: bytes,
    source_file: str,
    source: str,
    *,
    file_format: Literal["parquet", "csv"],
    columns: dict[str, str],
    list_separator: str = "|",
) -> StagedRows:
    frame = _read(data, source_file, file_format)
    if missing := [theirs for theirs in columns.values() if theirs not in frame.columns]:
        raise CatalogSourceError(
            source_file, "missing_column", f"mapped column(s) {missing} not in {frame.columns}", line_no=1
        )
    first_line = 2 if file_format == "csv" else 1

    def mapped(ours: str) -> pl.Expr:
        theirs = columns.get(ours)
        if ours in _LIST_COLUMNS:
            return (
                _as_list(theirs, frame.schema[theirs], list_separator)
                if theirs
                else pl.lit([], pl.List(pl.String))
            )
        return pl.col(theirs).cast(pl.String) if theirs else pl.lit(None, pl.String)

    staged = frame.select(
        line_no=pl.int_range(first_line, pl.len() + first_line, dtype=pl.Int64),
        raw=pl.struct(sorted(set(columns.values()))).struct.json_encode(),
        rule=pl.lit(None, pl.String),
        detail=pl.lit(None, pl.String),
        **{ours: mapped(ours) for ours in CATALOG_SCHEMA.names() if ours not in ("duration_s", "source")},
        duration_raw=mapped("duration_s"),
        source=pl.lit(source, pl.String),
    )
    return StagedRows(staged.select(STAGED_SCHEMA.names()))

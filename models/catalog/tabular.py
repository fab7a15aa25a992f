"""Tabular adapter: any Parquet or CSV catalog, mapped onto the catalog schema by a {our column: their column} map.

Both are read in batches through pyarrow: Parquet row batches, CSV parsed with every column as text. List
columns may be native lists or strings joined by a separator. Mapped columns are type-checked against the
catalog schema (`wrong_column_type`): Parquet by its declared types before any row is read, CSV by what its
values are once the file is read (a column of numbers fed to genres, of decimals fed to an id).

`line_no` is the 1-based row number for Parquet and the record number for CSV (header = 1): the physical
line unless a quoted field spans lines or blank lines come before. A CSV record with the wrong number of
fields is quarantined as `malformed_line`.
"""

import csv
import io
from collections.abc import Iterator
from typing import BinaryIO, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from checks.quarantine_rules import CatalogSourceError
from models.catalog.schema import CATALOG_SCHEMA, STAGED_SCHEMA, StagedRows

_LIST_COLUMNS = ("artists", "genres", "instruments", "moods")
_ID_COLUMNS = ("track_id", "artist_id", "album_id")
_NEEDS = {
    **dict.fromkeys(_ID_COLUMNS, "text or integers"),
    "title": "text",
    "album": "text",
    "duration_s": "numbers or text",
    **dict.fromkeys(_LIST_COLUMNS, "text (joined by the list separator) or a list of text"),
}


def _is_text(dtype: pl.DataType) -> bool:
    return dtype in (pl.String, pl.Null) or isinstance(dtype, pl.Categorical | pl.Enum)


def _fits(ours: str, dtype: pl.DataType) -> bool:
    """Whether a column of `dtype` can feed our column without inventing text ("1.0" as a genre or an id)."""
    if ours in _LIST_COLUMNS and isinstance(dtype, pl.List | pl.Array):
        dtype = dtype.inner
    if _is_text(dtype):
        return True
    return (ours in _ID_COLUMNS and dtype.is_integer()) or (ours == "duration_s" and dtype.is_numeric())


def _check_types(
    source_file: str,
    columns: dict[str, str],
    dtypes: dict[str, pl.DataType],
    line_no: int | None,
    note: str = "",
) -> None:
    for ours, theirs in columns.items():
        if not _fits(ours, dtypes[theirs]):
            raise CatalogSourceError(
                source_file,
                "wrong_column_type",
                f"column '{theirs}' mapped to {ours} holds {dtypes[theirs]}{note}; {ours} needs {_NEEDS[ours]}",
                line_no=line_no,
            )


def _check_present(source_file: str, columns: dict[str, str], names: list[str], line_no: int | None) -> None:
    if missing := [theirs for theirs in columns.values() if theirs not in names]:
        raise CatalogSourceError(
            source_file, "missing_column", f"mapped column(s) {missing} not in {names}", line_no=line_no
        )


def _as_list(column: str, dtype: pl.DataType, separator: str) -> pl.Expr:
    if isinstance(dtype, pl.List | pl.Array):
        values = pl.col(column).cast(pl.List(pl.String))
    else:
        values = pl.col(column).cast(pl.String).str.split(separator)
    cleaned = values.list.eval(pl.element().str.strip_chars()).list.eval(
        pl.element().filter(pl.element() != "")
    )
    return cleaned.fill_null(pl.lit([], pl.List(pl.String)))


def _stage(frame: pl.DataFrame, source: str, columns: dict[str, str], list_separator: str) -> pl.DataFrame:
    """Mapped rows of one batch in STAGED_SCHEMA; `frame` carries `line_no` and `_bad` (undecodable rows)."""

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
        "line_no",
        raw=pl.struct(sorted(set(columns.values()))).struct.json_encode(),
        rule=pl.when(pl.col("_bad").is_not_null()).then(pl.lit("bad_encoding")),
        detail=pl.col("_bad"),
        **{ours: mapped(ours) for ours in CATALOG_SCHEMA.names() if ours not in ("duration_s", "source")},
        duration_raw=mapped("duration_s"),
        source=pl.lit(source, pl.String),
    )
    return staged.select(STAGED_SCHEMA.names())


def _parquet_frames(
    stream: BinaryIO, source_file: str, columns: dict[str, str], batch_rows: int
) -> Iterator[pl.DataFrame]:
    if stream.seek(0, io.SEEK_END) == 0:
        raise CatalogSourceError(source_file, "empty_file", "the file has no content")
    stream.seek(0)
    try:
        parquet = pq.ParquetFile(stream)
        schema = pl.from_arrow(parquet.schema_arrow.empty_table()).schema
    except (pa.ArrowException, OSError) as exc:
        raise CatalogSourceError(source_file, "unreadable", f"not a readable parquet file: {exc}") from exc
    _check_present(source_file, columns, schema.names(), line_no=None)
    _check_types(source_file, columns, dict(schema), line_no=None)
    first = 1
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=sorted(set(columns.values()))):
        frame = pl.from_arrow(batch)
        yield frame.with_columns(line_no=pl.int_range(first, first + frame.height, dtype=pl.Int64))
        first += frame.height


class _CsvRecords:
    """CSV record numbers: pyarrow skips a malformed record (reporting its number), so each valid row moves
    down one for every skipped record before it."""

    def __init__(self, header_line: int) -> None:
        self.header_line = header_line
        self.valid_seen = 0
        self.skipped: list[int] = []  # record numbers, in file order
        self.pending: list[dict[str, object]] = []  # skipped records not yet staged

    def on_invalid(self, row: pa_csv.InvalidRow) -> str:
        number = row.number + self.header_line  # pyarrow counts from the first record after the header
        self.skipped.append(number)
        detail = f"{row.actual_columns} fields, expected {row.expected_columns}"
        self.pending.append({"line_no": number, "raw": row.text, "rule": "malformed_line", "detail": detail})
        return "skip"

    def numbers(self, rows: int) -> pl.Series:
        position = self.header_line + 1 + self.valid_seen + np.arange(rows, dtype=np.int64)
        skipped = np.asarray(self.skipped, dtype=np.int64)
        cuts_in = skipped - np.arange(len(skipped))  # where each skipped record sits among valid positions
        self.valid_seen += rows
        return pl.Series("line_no", position + np.searchsorted(cuts_in, position, side="right"))

    def take_rejected(self) -> pl.DataFrame:
        rows, self.pending = self.pending, []
        return pl.DataFrame(rows, schema=STAGED_SCHEMA)


class _CsvValueKinds:
    """Running counts of non-empty, integer-like and number-like values per mapped column: the type a column
    of text has is only known once every row is seen."""

    def __init__(self, theirs: list[str]) -> None:
        self.counts = dict.fromkeys(theirs, np.zeros(3, dtype=np.int64))

    def add(self, frame: pl.DataFrame) -> None:
        for column in self.counts:
            value = pl.col(column).str.strip_chars()
            row = frame.select(
                non_empty=(value != "").sum(),
                ints=value.cast(pl.Int64, strict=False).is_not_null().sum(),
                numbers=value.cast(pl.Float64, strict=False).is_not_null().sum(),
            ).row(0)
            self.counts[column] = self.counts[column] + np.array(row, dtype=np.int64)

    def dtypes(self) -> dict[str, pl.DataType]:
        def kind(non_empty: int, ints: int, numbers: int) -> pl.DataType:
            if non_empty and ints == non_empty:
                return pl.Int64()
            return pl.Float64() if non_empty and numbers == non_empty else pl.String()

        return {column: kind(*counts) for column, counts in self.counts.items()}


def _csv_header(stream: BinaryIO, source_file: str) -> tuple[list[str], int]:
    """Column names from the first non-blank line, and that line's number."""
    for line_no, line in enumerate(iter(stream.readline, b""), start=1):
        if line.strip():
            try:
                return next(csv.reader([line.decode("utf-8-sig")])), line_no
            except UnicodeDecodeError as exc:
                raise CatalogSourceError(
                    source_file, "not_utf8", "the header is not valid UTF-8", line_no=line_no
                ) from exc
    raise CatalogSourceError(source_file, "empty_file", "the file has no content")


def _csv_batches(
    stream: BinaryIO, source_file: str, names: list[str], wanted: list[str], records: _CsvRecords
) -> Iterator[pa.RecordBatch]:
    """Record batches of the mapped columns as bytes (decoded per row by `_decoded`)."""
    try:
        yield from pa_csv.open_csv(
            stream,
            read_options=pa_csv.ReadOptions(column_names=names, use_threads=False),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=records.on_invalid
            ),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.binary()),
                include_columns=wanted,
                null_values=[""],  # pyarrow's default also nulls "NA", "null", "nan": a title may be "NA"
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise CatalogSourceError(source_file, "unreadable", f"not a readable csv file: {exc}") from exc


def _decoded(batch: pa.RecordBatch) -> pl.DataFrame:
    """The batch as text, with `_bad` naming the first undecodable value of a row (its bytes kept visible,
    backslash-escaped); only a column that fails UTF-8 validation is decoded value by value."""
    columns, bad = {}, [None] * batch.num_rows
    for name, values in zip(batch.schema.names, batch.columns, strict=True):
        try:
            columns[name] = values.cast(pa.string())
            continue
        except pa.ArrowInvalid:
            pass
        text = []
        for row, value in enumerate(values.to_pylist()):
            try:
                text.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError as exc:
                text.append(value.decode("utf-8", "backslashreplace"))
                bad[row] = bad[row] or (
                    f"column '{name}': invalid UTF-8 byte 0x{value[exc.start]:02x} at byte {exc.start}"
                )
        columns[name] = pa.array(text, pa.string())
    return pl.from_arrow(pa.table(columns)).with_columns(_bad=pl.Series(bad, dtype=pl.String))


def _csv_frames(
    stream: BinaryIO, source_file: str, columns: dict[str, str], batch_rows: int
) -> Iterator[tuple[pl.DataFrame, pl.DataFrame]]:
    """(rows with `line_no` and `_bad`, malformed records already staged) per batch."""
    names, header_line = _csv_header(stream, source_file)
    _check_present(source_file, columns, names, line_no=header_line)
    wanted = sorted(set(columns.values()))
    records, kinds = _CsvRecords(header_line), _CsvValueKinds(wanted)
    rows = undecodable = 0
    for batch in _csv_batches(stream, source_file, names, wanted, records):
        frame = _decoded(batch)
        rows, undecodable = rows + frame.height, undecodable + frame["_bad"].count()
        for start in range(0, frame.height, batch_rows):
            part = frame.slice(start, batch_rows)
            kinds.add(part)
            yield part.with_columns(records.numbers(part.height)), records.take_rejected()
    empty = {**dict.fromkeys(wanted, pl.String), "_bad": pl.String, "line_no": pl.Int64}
    yield pl.DataFrame(schema=empty), records.take_rejected()
    if undecodable * 2 > rows:
        raise CatalogSourceError(
            source_file, "not_utf8", f"{undecodable} of {rows} records are not valid UTF-8"
        )
    _check_types(source_file, columns, kinds.dtypes(), line_no=header_line, note=" (values read as numbers)")


def stage_batches(
    stream: BinaryIO,
    source_file: str,
    source: str,
    *,
    file_format: Literal["parquet", "csv"],
    columns: dict[str, str],
    list_separator: str,
    batch_rows: int,
) -> Iterator[StagedRows]:
    if file_format == "parquet":
        for frame in _parquet_frames(stream, source_file, columns, batch_rows):
            yield StagedRows(
                _stage(frame.with_columns(_bad=pl.lit(None, pl.String)), source, columns, list_separator)
            )
        return
    for frame, rejected in _csv_frames(stream, source_file, columns, batch_rows):
        yield StagedRows(pl.concat([_stage(frame, source, columns, list_separator), rejected]))

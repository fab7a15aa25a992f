"""Catalog quarantine rules: their names and meanings as data, and the polars functions that apply them.

Every source adapter stages its rows into `STAGED_SCHEMA` (catalog columns plus the physical line, the raw
text and any adapter-specific rule it already found), one batch at a time; a `RowLedger` applies the rules
shared by all sources to each batch (`apply_row_rules`), keeps the running account of rows read, kept and
quarantined, and finds duplicate ids across batches, so a batched read equals a whole-file read.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl

from models.catalog.schema import (
    CATALOG_SCHEMA,
    QUARANTINE_SCHEMA,
    RAW_PREVIEW_CHARS,
    StagedRows,
    empty_catalog,
    empty_quarantine,
)

# The longest MTG-Jamendo track is 69 min; 4 h still admits DJ mixes and long ambient pieces while catching
# the usual unit error (a 4-minute track given in milliseconds reads as 67 h).
MAX_DURATION_S = 4 * 60 * 60.0
# Tag, id and path fields are tens of bytes; a field of kilobytes is a broken quote or a pasted blob.
MAX_FIELD_BYTES = 4096


@dataclass(frozen=True)
class Rule:
    name: str
    scope: Literal["file", "row"]
    meaning: str


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("file_missing", "file", "the location does not exist"),
        Rule("unreadable", "file", "the location exists but cannot be read or parsed as the declared format"),
        Rule("empty_file", "file", "the file has no content (or only blank lines)"),
        Rule("wrong_header", "file", "the header line is not the one the adapter expects"),
        Rule("not_utf8", "file", "the file is not UTF-8 text (undecodable header or most lines undecodable)"),
        Rule("wrong_format", "file", "no record of the file has the shape the adapter expects"),
        Rule("missing_column", "file", "a column named in the mapping is not in the file"),
        Rule("wrong_column_type", "file", "a mapped column's type cannot feed its catalog column"),
        Rule(
            "malformed_line",
            "row",
            "a line or record that cannot be parsed (too few fields, bad JSON, blank)",
        ),
        Rule(
            "bad_encoding",
            "row",
            "the line (a CSV record's value) is not valid UTF-8; `raw` shows its bytes backslash-escaped",
        ),
        Rule(
            "wrong_value_type",
            "row",
            "a record's value has the wrong JSON type (e.g. a number where a title or artist name belongs)",
        ),
        Rule(
            "control_character",
            "row",
            "a catalog field holds a control character (C0, DEL or C1: NUL, escape, line breaks, ...)",
        ),
        Rule("field_too_long", "row", f"a field is longer than {MAX_FIELD_BYTES} bytes"),
        Rule(
            "unknown_facet", "row", "a tag is not `facet---value` with facet genre, instrument or mood/theme"
        ),
        Rule("missing_id", "row", "the track id is empty"),
        Rule("bad_duration", "row", "the duration is not a finite number"),
        Rule("absurd_duration", "row", f"the duration is <= 0 s or > {MAX_DURATION_S:.0f} s (4 h)"),
        Rule("duplicate_id", "row", "the track id already appeared on an earlier valid row (first one kept)"),
        Rule(
            "conflicting_duplicate",
            "row",
            "the track id appeared earlier with different metadata (first kept; identical repeats merge)",
        ),
    )
}
ROW_RULES = tuple(name for name, rule in RULES.items() if rule.scope == "row")


class CatalogSourceError(ValueError):
    """A whole-file problem: the file cannot be sourced at all, so no partial catalog is produced."""

    def __init__(self, source_file: str, rule: str, detail: str, line_no: int | None = None) -> None:
        if RULES[rule].scope != "file":
            raise ValueError(f"{rule} is a row rule, not a file rule")
        self.source_file, self.rule, self.detail, self.line_no = source_file, rule, detail, line_no
        where = source_file if line_no is None else f"{source_file}, line {line_no}"
        super().__init__(f"{where}: {rule}: {detail}")


TEXT_FIELDS = ("track_id", "artist_id", "album_id", "title", "album", "duration_raw")
LIST_FIELDS = ("artists", "genres", "instruments", "moods")
# C0 (with tab and line breaks: a parsed field never needs them), DEL and C1.
CONTROL_CHARACTERS = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))]
_CONTROL_NAMES = {c: f"U+{ord(c):04X}" for c in CONTROL_CHARACTERS}
# How `raw` shows them (as bad bytes are shown: backslash-escaped); a tab stays, it separates TSV fields.
_RAW_ESCAPES = {c: f"\\x{ord(c):02x}" for c in CONTROL_CHARACTERS if c != "\t"}


def _on_field(name: str, check: Callable[[pl.Expr], pl.Expr], pick: str = "any") -> pl.Expr:
    """`check` on a text field, or on every element of a list field reduced by `pick` (any, max, first)."""
    if name not in LIST_FIELDS:
        return check(pl.col(name))
    values = pl.col(name).list.eval(check(pl.element()))
    return {
        "any": values.list.any(),
        "max": values.list.max(),
        "first": values.list.drop_nulls().list.first(),
    }[pick]


def _has_control(name: str) -> pl.Expr:
    return _on_field(name, lambda text: text.str.contains_any(CONTROL_CHARACTERS)).fill_null(False)


def _bytes(name: str) -> pl.Expr:
    return _on_field(name, lambda text: text.str.len_bytes(), pick="max").fill_null(0)


def _first_field(describe: Callable[[str], pl.Expr]) -> pl.Expr:
    """The description of the first field that has the fault (`describe` is null for a field without it)."""
    return pl.coalesce(describe(name) for name in (*TEXT_FIELDS, *LIST_FIELDS))


def _control_detail(name: str) -> pl.Expr:
    char = _on_field(name, lambda text: text.str.extract("([\\x00-\\x1f\\x7f-\\x9f])"), pick="first")
    code = char.replace_strict(_CONTROL_NAMES, default=None, return_dtype=pl.String)
    return pl.when(_has_control(name)).then(
        pl.format("field '{}' holds control character {}", pl.lit(name), code)
    )


def _length_detail(name: str) -> pl.Expr:
    return pl.when(_bytes(name) > MAX_FIELD_BYTES).then(
        pl.format("field '{}' is {} bytes, more than {}", pl.lit(name), _bytes(name), pl.lit(MAX_FIELD_BYTES))
    )


def _field_rules(staged: pl.DataFrame) -> pl.DataFrame:
    """control_character, then field_too_long, on rows no adapter rule rejected. The per-field detail is only
    built when a row breaks one, so a clean batch pays for one scan per field."""
    fields = (*TEXT_FIELDS, *LIST_FIELDS)
    valid = pl.col("rule").is_null()
    flags = staged.select(
        _control=valid & pl.any_horizontal(_has_control(f) for f in fields),
        _too_long=valid & (pl.max_horizontal(_bytes(f) for f in fields) > MAX_FIELD_BYTES),
    )
    if not (flags["_control"].any() or flags["_too_long"].any()):
        return staged
    return (
        staged.with_columns(flags)
        .with_columns(
            rule=pl.when("_control")
            .then(pl.lit("control_character"))
            .when("_too_long")
            .then(pl.lit("field_too_long"))
            .otherwise("rule"),
            detail=pl.when("_control")
            .then(_first_field(_control_detail))
            .when("_too_long")
            .then(_first_field(_length_detail))
            .otherwise("detail"),
        )
        .drop("_control", "_too_long")
    )


@dataclass
class KeptIds:
    """Track ids kept by earlier batches, for an exact duplicate check in O(batch · log kept) per batch rather
    than a pass over every kept id: their hashes, sorted, beside the kept row each stands for, and the kept
    (track_id, line_no) to confirm a hash hit and name the line that kept the id."""

    hashes: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    kept: list[pl.DataFrame] = field(default_factory=list)
    count: int = 0

    def add(self, kept: pl.DataFrame) -> None:
        new = kept["track_id"].hash().to_numpy()
        order = np.argsort(new, kind="stable")
        at = np.searchsorted(self.hashes, new[order])
        self.hashes = np.insert(self.hashes, at, new[order])
        self.rows = np.insert(self.rows, at, self.count + order)
        self.kept.append(kept.select("track_id", "line_no"))
        self.count += kept.height

    def first_lines(self, track_ids: pl.Series) -> pl.DataFrame:
        """(`track_id`, `_earlier`): the line that kept each of `track_ids` in an earlier batch."""
        ids = track_ids.drop_nulls()
        probe = np.sort(ids.hash().to_numpy())  # sorted probes walk the sorted hashes in order
        left, right = (
            np.searchsorted(self.hashes, probe, "left"),
            np.searchsorted(self.hashes, probe, "right"),
        )
        hit = right > left
        if not hit.any():
            return pl.DataFrame(schema={"track_id": pl.String, "_earlier": pl.Int64})
        at = np.unique(np.concatenate([np.arange(a, b) for a, b in zip(left[hit], right[hit], strict=True)]))
        candidates = pl.concat(self.kept, rechunk=False)[self.rows[at]]
        return candidates.filter(pl.col("track_id").is_in(ids.implode())).select(
            "track_id", _earlier="line_no"
        )


def apply_row_rules(staged: pl.DataFrame, kept_before: KeptIds | None = None) -> pl.DataFrame:
    """Add `duration_s` and fill `rule`/`detail` with the first shared rule each still-valid row breaks.

    A track id kept in an earlier batch (`kept_before`) or earlier in this one makes the row a duplicate.
    """
    duration = pl.col("duration_raw").cast(pl.Float64, strict=False)
    track_id = pl.col("track_id")
    checked = (
        _field_rules(staged)
        .lazy()
        .with_columns(duration_s=duration)
        .with_columns(
            rule=pl.when(pl.col("rule").is_not_null())
            .then(pl.col("rule"))
            .when(track_id.is_null() | (track_id.str.strip_chars() == ""))
            .then(pl.lit("missing_id"))
            .when(
                pl.col("duration_raw").is_not_null()
                & (pl.col("duration_s").is_null() | ~pl.col("duration_s").is_finite())
            )
            .then(pl.lit("bad_duration"))
            .when((pl.col("duration_s") <= 0) | (pl.col("duration_s") > MAX_DURATION_S))
            .then(pl.lit("absurd_duration")),
        )
    )
    checked = checked.with_columns(
        detail=pl.when(pl.col("detail").is_not_null())
        .then(pl.col("detail"))
        .when(pl.col("rule") == "missing_id")
        .then(pl.lit("track id is empty"))
        .when(pl.col("rule") == "bad_duration")
        .then(pl.format("duration '{}' is not a finite number", pl.col("duration_raw")))
        .when(pl.col("rule") == "absurd_duration")
        .then(pl.format("duration {} s is outside (0, {}]", pl.col("duration_s"), pl.lit(MAX_DURATION_S))),
    ).collect()
    # The first *valid* occurrence of an id wins, so a broken first line does not shadow a good later one.
    valid = pl.col("rule").is_null()
    valid_id = pl.when(valid).then(track_id)
    earlier = (kept_before or KeptIds()).first_lines(checked.filter(valid)["track_id"])
    dup = valid & ~valid_id.is_first_distinct()
    if earlier.is_empty() and not checked.select(dup.any()).item():
        return checked
    indexed = checked.with_row_index("_row")
    first_here = indexed.filter(valid).unique("track_id", keep="first", maintain_order=True)
    return (
        indexed.join(earlier, on="track_id", how="left", maintain_order="left")
        .join(
            first_here.select("track_id", _first_row="_row", _first="line_no"),
            on="track_id",
            how="left",
            maintain_order="left",
        )
        .with_columns(
            _dup=valid & (pl.col("_earlier").is_not_null() | (pl.col("_first_row") != pl.col("_row")))
        )
        .with_columns(
            rule=pl.when("_dup").then(pl.lit("duplicate_id")).otherwise("rule"),
            detail=pl.when("_dup")
            .then(
                pl.format(
                    "track id '{}' first kept from line {}", track_id, pl.coalesce("_earlier", "_first")
                )
            )
            .otherwise("detail"),
        )
        .drop("_row", "_dup", "_first_row", "_first", "_earlier")
    )


class RowLedger:
    """The running account of one read: every staged batch goes through the row rules and lands in kept or
    quarantined, so rows read = kept + quarantined holds batch by batch."""

    def __init__(self, source_file: str) -> None:
        self.source_file = source_file
        self.rows_read = 0
        self.repeats_merged = 0
        self._ids = KeptIds()
        self._kept: list[pl.DataFrame] = []
        self._quarantined: list[pl.DataFrame] = []

    def add(self, staged: StagedRows) -> None:
        self.rows_read += staged.frame.height
        self.repeats_merged += staged.repeats_merged
        checked = apply_row_rules(staged.frame, self._ids)
        kept = checked.filter(pl.col("rule").is_null()).select(
            "line_no", *(pl.col(name).cast(dtype) for name, dtype in CATALOG_SCHEMA.items())
        )
        self._ids.add(kept)
        self._kept.append(kept.drop("line_no"))
        self._quarantined.append(
            checked.filter(pl.col("rule").is_not_null()).select(
                source_file=pl.lit(self.source_file, pl.String),
                line_no="line_no",
                rule="rule",
                detail="detail",
                raw=pl.col("raw")
                .str.slice(0, RAW_PREVIEW_CHARS)
                .str.replace_many(list(_RAW_ESCAPES), list(_RAW_ESCAPES.values())),
            )
        )

    def kept(self) -> pl.DataFrame:
        """Every kept row in file order, exactly CATALOG_SCHEMA; the batches stay separate chunks (no copy)."""
        return pl.concat(self._kept, rechunk=False) if self._kept else empty_catalog()

    def quarantined(self) -> pl.DataFrame:
        """Every rejected row, exactly QUARANTINE_SCHEMA, by line (an adapter may report a row late)."""
        if not self._quarantined:
            return empty_quarantine()
        rows = pl.concat(self._quarantined).sort("line_no", maintain_order=True)
        return rows.cast(dict(QUARANTINE_SCHEMA))

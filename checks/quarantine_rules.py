"""Catalog quarantine rules: their names and meanings as data, and the polars functions that apply them.

Every source adapter stages its rows into `STAGED_SCHEMA` (catalog columns plus the physical line, the raw
text and any adapter-specific rule it already found); `apply_row_rules` adds the rules shared by all
sources and `split_rows` divides the result into catalog rows and quarantine rows.
"""

from dataclasses import dataclass
from typing import Literal

import polars as pl

from models.catalog.schema import CATALOG_SCHEMA, QUARANTINE_SCHEMA, RAW_PREVIEW_CHARS

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
        Rule(
            "malformed_line",
            "row",
            "a line or record that cannot be parsed (too few fields, bad JSON, blank)",
        ),
        Rule("bad_encoding", "row", "the line is not valid UTF-8; `raw` shows its bytes backslash-escaped"),
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


def apply_row_rules(staged: pl.DataFrame) -> pl.DataFrame:
    """Add `duration_s` and fill `rule`/`detail` with the first shared rule each still-valid row breaks."""
    duration = pl.col("duration_raw").cast(pl.Float64, strict=False)
    track_id = pl.col("track_id")
    checked = (
        staged.lazy()
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
    )
    # The first *valid* occurrence of an id wins, so a broken first line does not shadow a good later one.
    valid_id = pl.when(pl.col("rule").is_null()).then(track_id)
    checked = checked.with_columns(
        _dup=pl.col("rule").is_null() & ~valid_id.is_first_distinct(),
    ).collect()
    if not checked["_dup"].any():
        return checked.drop("_dup")
    first_lines = checked.filter(pl.col("rule").is_null() & ~pl.col("_dup")).select(
        "track_id", _first=pl.col("line_no")
    )
    return (
        checked.join(first_lines, on="track_id", how="left", maintain_order="left")
        .with_columns(
            rule=pl.when("_dup").then(pl.lit("duplicate_id")).otherwise("rule"),
            detail=pl.when("_dup")
            .then(pl.format("track id '{}' first kept from line {}", track_id, pl.col("_first")))
            .otherwise("detail"),
        )
        .drop("_dup", "_first")
    )


def split_rows(checked: pl.DataFrame, source_file: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Divide rule-checked rows into (catalog rows, quarantine rows), each in its declared schema."""
    kept = checked.filter(pl.col("rule").is_null()).select(
        pl.col(name).cast(dtype) for name, dtype in CATALOG_SCHEMA.items()
    )
    quarantined = checked.filter(pl.col("rule").is_not_null()).select(
        source_file=pl.lit(source_file, pl.String),
        line_no="line_no",
        rule="rule",
        detail="detail",
        raw=pl.col("raw").str.slice(0, RAW_PREVIEW_CHARS),
    )
    return kept, quarantined.cast(dict(QUARANTINE_SCHEMA))

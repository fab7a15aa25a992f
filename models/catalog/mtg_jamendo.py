"""MTG-Jamendo `autotagging.tsv` adapter, and the bundled-sample builder.

Format: a header, then `TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAG...` tab-separated, one track a line,
tags `facet---value`; empty tag fields (trailing tabs) are not tags. The file is read in batches of lines,
each parsed with polars expressions (no per-row Python); only lines that decode to U+FFFD are looked at
byte by byte.

Build the bundled sample from the full MTG-Jamendo `autotagging.tsv` (every tag of the source covered,
then a seeded random fill):

    python -m models.catalog.mtg_jamendo sample --src <path>/autotagging.tsv --out data/mtg_jamendo_sample.tsv
"""

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import polars as pl

from checks.quarantine_rules import MAX_FIELD_BYTES, CatalogSourceError, apply_row_rules
from models.catalog.schema import STAGED_SCHEMA, StagedRows
from models.catalog.streams import DEFAULT_BATCH_ROWS, LineBatch, line_batches

HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION")
FACET_PREFIXES = {"genres": "genre---", "instruments": "instrument---", "moods": "mood/theme---"}
# polars needs a column separator; any byte absent from the batch makes each physical line one value.
_SEPARATOR_CANDIDATES = b"\x1f\x1e\x1d\x1c\x00\x01\x02\x03"
_REPLACEMENT_CHAR = "\ufffd"


def read_lines(batch: LineBatch, source_file: str) -> pl.DataFrame:
    """The batch's lines as (`line_no`, `line`): numbered in the file, CRLF stripped, a UTF-8 byte-order mark
    taken off line 1, a blank line null."""
    separator = next((chr(b) for b in _SEPARATOR_CANDIDATES if bytes([b]) not in batch.data), None)
    if separator is None:
        raise CatalogSourceError(source_file, "unreadable", "binary content: every control byte occurs")
    # utf8-lossy keeps one row per line whatever the bytes; lines holding U+FFFD are re-checked as bytes.
    lines = pl.read_csv(
        batch.data,
        separator=separator,
        has_header=False,
        quote_char=None,
        schema={"line": pl.String},
        encoding="utf8-lossy",
    ).with_columns(line_no=pl.int_range(batch.first_line, pl.len() + batch.first_line, dtype=pl.Int64))
    if batch.first_line > 1:
        return lines
    return lines.with_columns(
        pl.when(pl.col("line_no") == 1).then(pl.col("line").str.strip_prefix("\ufeff")).otherwise("line")
    )


def _bad_encoding(lines: pl.DataFrame, batch: LineBatch) -> pl.DataFrame:
    """(`line_no`, `bad_raw`, `bad_detail`) for lines that are not valid UTF-8; empty on the fast path."""
    suspects = lines.filter(pl.col("line").str.contains(_REPLACEMENT_CHAR, literal=True))["line_no"]
    found: dict[str, list] = {"line_no": [], "bad_raw": [], "bad_detail": []}
    if suspects.len():
        raw_lines = batch.data.split(b"\n")  # only batches with suspect lines pay for this
        for line_no in suspects:
            raw = raw_lines[line_no - batch.first_line].removesuffix(b"\r")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                found["line_no"].append(line_no)
                found["bad_raw"].append(raw.decode("utf-8", "backslashreplace"))
                found["bad_detail"].append(f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start}")
    return pl.DataFrame(found, schema={"line_no": pl.Int64, "bad_raw": pl.String, "bad_detail": pl.String})


def _check_header(header: str | None, source_file: str) -> None:
    header = header or ""
    fields = header.split("\t")
    if tuple(fields[:5]) != HEADER or any(extra != "TAGS" for extra in fields[5:]):
        expected = "\\t".join((*HEADER, "TAGS"))
        raise CatalogSourceError(
            source_file, "wrong_header", f"expected '{expected}', found {header[:200]!r}", line_no=1
        )


def stage_batches(stream: BinaryIO, source_file: str, source: str, batch_rows: int) -> Iterator[StagedRows]:
    """The file's data lines staged batch by batch; a header that is wrong or most lines undecodable stop it."""
    lines_read = bad_lines = 0
    for batch in line_batches(stream, source_file, batch_rows):
        lines = read_lines(batch, source_file)
        bad = _bad_encoding(lines, batch)
        if batch.first_line == 1:
            if 1 in bad["line_no"]:
                raise CatalogSourceError(source_file, "not_utf8", "the header is not valid UTF-8", line_no=1)
            _check_header(lines["line"][0], source_file)
            lines = lines.slice(1)
        lines_read, bad_lines = lines_read + lines.height, bad_lines + bad.height
        yield StagedRows(_stage(lines, bad, source))
    if bad_lines * 2 > lines_read:
        raise CatalogSourceError(
            source_file, "not_utf8", f"{bad_lines} of {lines_read} data lines are not valid UTF-8"
        )


def _stage(lines: pl.DataFrame, bad: pl.DataFrame, source: str) -> pl.DataFrame:
    tag = pl.element()
    # Literal prefix tests with list.filter run ~2x faster than a regex inside list.eval.
    valid_tag = pl.any_horizontal(
        tag.str.starts_with(prefix) & (tag.str.len_bytes() > len(prefix))
        for prefix in FACET_PREFIXES.values()
    )
    fields, tags = pl.col("fields"), pl.col("tags")
    rows = lines.lazy()
    if bad.height:
        rows = rows.join(bad.lazy(), on="line_no", how="left", maintain_order="left")
    else:
        rows = rows.with_columns(bad_raw=pl.lit(None, pl.String), bad_detail=pl.lit(None, pl.String))
    # The split is a column, computed once: as an expression each use below would split every line again.
    rows = rows.with_columns(fields=pl.col("line").str.split("\t")).with_columns(
        tags=fields.list.slice(5).list.filter(tag.str.strip_chars(" ") != "")
    )
    staged = rows.with_columns(
        n_fields=fields.list.len(),
        first_bad_tag=tags.list.filter(~valid_tag).list.first(),
        longest_field=fields.list.eval(pl.element().str.len_bytes()).list.max(),
    ).select(
        "line_no",
        raw=pl.coalesce("bad_raw", "line", pl.lit("")),
        rule=pl.when(pl.col("bad_raw").is_not_null())
        .then(pl.lit("bad_encoding"))
        .when(pl.col("line").is_null() | (pl.col("n_fields") < 5))
        .then(pl.lit("malformed_line"))
        .when(pl.col("longest_field") > MAX_FIELD_BYTES)
        .then(pl.lit("field_too_long"))
        .when(pl.col("first_bad_tag").is_not_null())
        .then(pl.lit("unknown_facet")),
        detail=pl.when(pl.col("bad_raw").is_not_null())
        .then("bad_detail")
        .when(pl.col("line").is_null())
        .then(pl.lit("blank line inside the file"))
        .when(pl.col("n_fields") < 5)
        .then(pl.format("{} tab-separated fields, expected at least 5", pl.col("n_fields")))
        .when(pl.col("longest_field") > MAX_FIELD_BYTES)
        .then(pl.format("a field of {} bytes exceeds {}", pl.col("longest_field"), pl.lit(MAX_FIELD_BYTES)))
        .when(pl.col("first_bad_tag").is_not_null())
        .then(pl.format("tag '{}' is not genre/instrument/mood/theme---value", pl.col("first_bad_tag"))),
        track_id=fields.list.get(0, null_on_oob=True),
        artist_id=fields.list.get(1, null_on_oob=True),
        album_id=fields.list.get(2, null_on_oob=True),
        title=pl.lit(None, pl.String),
        artists=pl.lit([], pl.List(pl.String)),
        album=pl.lit(None, pl.String),
        duration_raw=fields.list.get(4, null_on_oob=True),
        **{
            facet: tags.list.filter(tag.str.starts_with(prefix)).list.eval(tag.str.slice(len(prefix)))
            for facet, prefix in FACET_PREFIXES.items()
        },
        source=pl.lit(source, pl.String),
    )
    return staged.select(STAGED_SCHEMA.names()).collect()


def build_sample(src: str | Path, out: str | Path, n: int = 5000, seed: int = 20190615) -> pl.DataFrame:
    """Write `n` valid tracks of `src` to `out` in the same format, covering every tag that occurs in `src`.

    Greedy set cover first (the track adding most uncovered tags, ties to the earliest line), then a
    seeded random fill; lines keep their source order and bytes. Returns the chosen (line_no, track_id).
    """
    with Path(src).open("rb") as stream:
        batches = stage_batches(stream, str(src), "mtg_jamendo", DEFAULT_BATCH_ROWS)
        staged = pl.concat(batch.frame for batch in batches)
    checked = apply_row_rules(staged).filter(pl.col("rule").is_null())
    tags = (
        checked.select(
            "line_no",
            tag=pl.concat_list(
                pl.col(facet).list.eval(pl.lit(prefix) + pl.element())
                for facet, prefix in FACET_PREFIXES.items()
            ),
        )
        .explode("tag")
        .drop_nulls("tag")
    )

    chosen: list[int] = []
    uncovered = tags
    while uncovered.height:
        best = (
            uncovered.group_by("line_no")
            .len()
            .sort(["len", "line_no"], descending=[True, False])
            .item(0, "line_no")
        )
        chosen.append(best)
        covered = uncovered.filter(pl.col("line_no") == best)["tag"]
        uncovered = uncovered.filter(~pl.col("tag").is_in(covered.implode()))

    rest = checked.filter(~pl.col("line_no").is_in(chosen))
    fill = rest.sample(n=max(0, min(n - len(chosen), rest.height)), seed=seed)["line_no"].to_list()
    picked = checked.filter(pl.col("line_no").is_in(chosen + fill)).sort("line_no")
    with Path(src).open(encoding="utf-8-sig") as text:
        header = text.readline().rstrip("\r\n")
    Path(out).write_text("\n".join([header, *picked["raw"]]) + "\n", encoding="utf-8")
    return picked.select("line_no", "track_id")


def _main() -> None:
    parser = argparse.ArgumentParser(prog="python -m models.catalog.mtg_jamendo")
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="write the tag-covering bundled sample")
    sample.add_argument("--src", required=True, help="full autotagging.tsv")
    sample.add_argument("--out", required=True, help="where to write the sample")
    sample.add_argument("--n", type=int, default=5000)
    sample.add_argument("--seed", type=int, default=20190615)
    args = parser.parse_args()
    picked = build_sample(args.src, args.out, n=args.n, seed=args.seed)
    print(f"wrote {picked.height} tracks to {args.out}")


if __name__ == "__main__":
    _main()

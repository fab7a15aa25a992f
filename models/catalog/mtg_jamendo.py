"""MTG-Jamendo `autotagging.tsv` adapter, and the bundled-sample builder.

Format: a header, then `TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAG...` tab-separated, one track a line,
tags `facet---value`. The whole file is parsed with polars expressions (no per-row Python); only lines that
decode to U+FFFD are looked at byte by byte.

Build the bundled sample (every tag of the source covered, then a seeded random fill):

    python -m models.catalog.mtg_jamendo sample \
        --src ../shared/data/mtg_jamendo/autotagging.tsv --out data/mtg_jamendo_sample.tsv
"""

import argparse
from pathlib import Path

import polars as pl

from checks.quarantine_rules import MAX_FIELD_BYTES, CatalogSourceError, apply_row_rules
from models.catalog.schema import STAGED_SCHEMA, StagedRows

HEADER = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION")
FACET_PREFIXES = {"genres": "genre---", "instruments": "instrument---", "moods": "mood/theme---"}
# polars needs a column separator; any byte absent from the file makes each physical line one value.
_SEPARATOR_CANDIDATES = b"\x1f\x1e\x1d\x1c\x00\x01\x02\x03"
_REPLACEMENT_CHAR = "\ufffd"


def read_lines(data: bytes, source_file: str) -> pl.DataFrame:
    """Physical lines as (`line_no`, `line`): 1-based, header included, CRLF stripped, trailing blanks gone."""
    if not data.strip():
        raise CatalogSourceError(source_file, "empty_file", "the file has no content")
    separator = next((chr(b) for b in _SEPARATOR_CANDIDATES if bytes([b]) not in data), None)
    if separator is None:
        raise CatalogSourceError(source_file, "unreadable", "binary content: every control byte occurs")
    # utf8-lossy keeps one row per line whatever the bytes; lines holding U+FFFD are re-checked as bytes.
    lines = pl.read_csv(
        data,
        separator=separator,
        has_header=False,
        quote_char=None,
        schema={"line": pl.String},
        encoding="utf8-lossy",
    ).with_columns(line_no=pl.int_range(1, pl.len() + 1, dtype=pl.Int64))
    last = lines.filter(pl.col("line").str.strip_chars() != "")["line_no"].max()
    # A UTF-8 byte-order mark is not part of the header text.
    return lines.filter(pl.col("line_no") <= last).with_columns(
        pl.when(pl.col("line_no") == 1).then(pl.col("line").str.strip_prefix("\ufeff")).otherwise("line")
    )


def _bad_encoding(lines: pl.DataFrame, data: bytes, source_file: str) -> pl.DataFrame:
    """(`line_no`, `bad_raw`, `bad_detail`) for lines that are not valid UTF-8; empty on the fast path."""
    suspects = lines.filter(pl.col("line").str.contains(_REPLACEMENT_CHAR, literal=True))["line_no"]
    found: dict[str, list] = {"line_no": [], "bad_raw": [], "bad_detail": []}
    if suspects.len():
        raw_lines = data.split(b"\n")  # only files with suspect lines pay for this
        for line_no in suspects:
            raw = raw_lines[line_no - 1].removesuffix(b"\r")
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                found["line_no"].append(line_no)
                found["bad_raw"].append(raw.decode("utf-8", "backslashreplace"))
                found["bad_detail"].append(f"invalid UTF-8 byte 0x{raw[exc.start]:02x} at byte {exc.start}")
    bad = pl.DataFrame(found, schema={"line_no": pl.Int64, "bad_raw": pl.String, "bad_detail": pl.String})
    data_lines = lines.height - 1
    if 1 in found["line_no"] or (data_lines and bad.height * 2 > data_lines):
        raise CatalogSourceError(
            source_file, "not_utf8", f"{bad.height} of {lines.height} lines are not valid UTF-8", line_no=1
        )
    return bad


def _check_header(header: str | None, source_file: str) -> None:
    header = header or ""
    fields = header.split("\t")
    if tuple(fields[:5]) != HEADER or any(extra != "TAGS" for extra in fields[5:]):
        expected = "\\t".join((*HEADER, "TAGS"))
        raise CatalogSourceError(
            source_file, "wrong_header", f"expected '{expected}', found {header[:200]!r}", line_no=1
        )


def stage(data: bytes, source_file: str, source: str = "mtg_jamendo") -> StagedRows:
    lines = read_lines(data, source_file)
    bad = _bad_encoding(lines, data, source_file)
    _check_header(lines["line"][0], source_file)

    fields = pl.col("line").str.split("\t")
    tags = fields.list.slice(5)
    tag = pl.element()
    # Literal prefix tests with list.filter run ~2x faster than a regex inside list.eval.
    valid_tag = pl.any_horizontal(
        tag.str.starts_with(prefix) & (tag.str.len_bytes() > len(prefix))
        for prefix in FACET_PREFIXES.values()
    )
    first_bad_tag = tags.list.filter(~valid_tag).list.first()
    longest_field = fields.list.eval(pl.element().str.len_bytes()).list.max()
    rows = lines.filter(pl.col("line_no") > 1).lazy()
    if bad.height:
        rows = rows.join(bad.lazy(), on="line_no", how="left", maintain_order="left")
    else:
        rows = rows.with_columns(bad_raw=pl.lit(None, pl.String), bad_detail=pl.lit(None, pl.String))
    staged = rows.with_columns(
        n_fields=fields.list.len(), first_bad_tag=first_bad_tag, longest_field=longest_field
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
    return StagedRows(staged.select(STAGED_SCHEMA.names()).collect())


def build_sample(src: str | Path, out: str | Path, n: int = 5000, seed: int = 20190615) -> pl.DataFrame:
    """Write `n` valid tracks of `src` to `out` in the same format, covering every tag that occurs in `src`.

    Greedy set cover first (the track adding most uncovered tags, ties to the earliest line), then a
    seeded random fill; lines keep their source order and bytes. Returns the chosen (line_no, track_id).
    """
    data = Path(src).read_bytes()
    checked = apply_row_rules(stage(data, str(src)).frame).filter(pl.col("rule").is_null())
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
    header = read_lines(data, str(src))["line"][0]
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

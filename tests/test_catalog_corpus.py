"""Bad-input corpus: each defect written into each source format it applies to, read through `read_catalog`.

Formats: MTG-Jamendo TSV, CSV and Parquet through a column map, CPCD JSONL. Four good tracks are written and
the defect goes into the third; a row-level defect must quarantine exactly that row under the rule named,
with its file and line, and rows read = kept + quarantined; a file-level defect must stop the read with an
error naming the file, the rule (and the line where there is one). Each file is also read in batches of two
rows, which must give the same result. Files are built here, in tmp_path, so every case says what is wrong.
"""

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from checks.quarantine_rules import CONTROL_CHARACTERS, RULES
from models.catalog.schema import CATALOG_SCHEMA, QUARANTINE_SCHEMA
from models.catalog.sources import CatalogSourceError, CatalogSourceSpec, read_catalog
from models.taxonomy import TaxonomyFileError, load_curated

FORMATS = ("mtg", "csv", "parquet", "jsonl")
COLUMNS = {
    "track_id": "id",
    "artist_id": "artist_id",
    "album_id": "album_id",
    "title": "title",
    "artists": "artist",
    "album": "album",
    "duration_s": "length",
    "genres": "genre",
    "moods": "mood",
}
BAD = 2  # index of the row that carries the defect
# Where that row is: MTG and CSV have a header line, Parquet counts rows from 1, CPCD has a conversation a line.
BAD_LINE = {"mtg": 4, "csv": 4, "parquet": 3, "jsonl": 3}


def good_rows() -> list[dict[str, Any]]:
    return [
        {
            "id": f"t{i}",
            "artist_id": f"ar{i}",
            "album_id": f"al{i}",
            "title": f"Song {i}",
            "artist": [f"Artist {i}"],
            "album": f"Album {i}",
            "length": 180.5 + i,
            "genre": ["rock", "pop"][: 1 + i % 2],
            "mood": ["happy"],
        }
        for i in range(4)
    ]


def write_mtg(rows: list[dict[str, Any]]) -> bytes:
    lines = ["TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"]
    for r in rows:
        tags = r.get("tags") or [f"genre---{g}" for g in r["genre"]] + [
            f"mood/theme---{m}" for m in r["mood"]
        ]
        fields = [r["id"], r["artist_id"], r["album_id"], f"00/{r['id']}.mp3", str(r["length"]), *tags]
        lines.append("\t".join(fields))
    return ("\n".join(lines) + "\n").encode("utf-8")


def write_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)  # CRLF line ends; fields holding CR or LF are quoted
    writer.writerow(COLUMNS.values())
    for r in rows:
        writer.writerow(["|".join(v) if isinstance(v, list) else v for v in (r[c] for c in COLUMNS.values())])
    return out.getvalue().encode("utf-8")


def write_parquet(rows: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    pl.DataFrame(rows, schema_overrides={"length": pl.Float64}, strict=False).write_parquet(out)
    return out.getvalue()


def write_jsonl(rows: list[dict[str, Any]]) -> bytes:
    lines = [
        json.dumps(
            {
                "id": f"c{i}",
                "tracks": {
                    r["id"]: {
                        "track_titles": r["title"],
                        "track_artists": r["artist"],
                        "track_release_titles": r["album"],
                    }
                },
            },
            ensure_ascii=False,
        )
        for i, r in enumerate(rows)
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


WRITERS = {"mtg": write_mtg, "csv": write_csv, "parquet": write_parquet, "jsonl": write_jsonl}
SUFFIX = {"mtg": "tsv", "csv": "csv", "parquet": "parquet", "jsonl": "jsonl"}
KIND = {"mtg": "mtg_jamendo", "csv": "tabular", "parquet": "tabular", "jsonl": "cpcd"}
MARK = "\u2603"  # a snowman stands for bytes no writer can produce (replaced in the file's bytes)


@dataclass(frozen=True)
class Defect:
    """One way of being wrong: how the bad row differs, per format (`line`: a raw line in place of the row)."""

    change: dict[str, dict[str, Any]]  # format -> field values of the bad row
    rule: str | None  # None: nothing is quarantined (the input is odd but valid)
    detail: str | dict[str, str] = ""  # a part of the quarantine detail (per format when a dict)
    mark: bytes = b""  # bytes that replace MARK in the written file
    formats: tuple[str, ...] = field(default=FORMATS)

    def detail_for(self, fmt: str) -> str:
        return self.detail[fmt] if isinstance(self.detail, dict) else self.detail


def per_format(**values: Any) -> dict[str, dict[str, Any]]:
    """The same field values for every format."""
    return dict.fromkeys(FORMATS, values)


ROW_DEFECTS: dict[str, Defect] = {
    # control characters: NUL, BEL, ESC, DEL, C1 NEL, and a line break inside a field
    "nul_in_id": Defect(
        per_format(id="t\x002"), "control_character", "'track_id' holds control character U+0000"
    ),
    "bel_in_tag_or_title": Defect(
        {
            "mtg": {"genre": ["ro\x07ck"]},
            "csv": {"genre": ["ro\x07ck"]},
            "parquet": {"genre": ["ro\x07ck"]},
            "jsonl": {"title": "So\x07ng"},
        },
        "control_character",
        "U+0007",
    ),
    "esc_in_artist": Defect(
        {
            "mtg": {"artist_id": "ar\x1b2"},
            "csv": {"artist": ["Art\x1bist"]},
            "parquet": {"artist": ["Art\x1bist"]},
            "jsonl": {"artist": ["Art\x1bist"]},
        },
        "control_character",
        "U+001B",
    ),
    "del_in_album": Defect(
        {
            "mtg": {"album_id": "al\x7f2"},
            "csv": {"album_id": "al\x7f2"},
            "parquet": {"album": "Alb\x7fum"},
            "jsonl": {"album": "Alb\x7fum"},
        },
        "control_character",
        "U+007F",
    ),
    "c1_nel_in_mood_or_title": Defect(
        {
            "mtg": {"mood": ["hap\x85py"]},
            "csv": {"title": "So\x85ng"},
            "parquet": {"mood": ["hap\x85py"]},
            "jsonl": {"title": "So\x85ng"},
        },
        "control_character",
        "U+0085",
    ),
    "line_break_in_title": Defect(
        per_format(title="two\nlines"),
        "control_character",
        "'title' holds control character U+000A",
        formats=("csv", "parquet", "jsonl"),
    ),
    "carriage_return_in_id": Defect(
        per_format(id="t\r2"), "control_character", "U+000D", formats=("csv", "parquet", "jsonl")
    ),
    # empty list items are not values: trailing tabs, doubled separators, empty strings
    "empty_tags": Defect(
        {
            "mtg": {"tags": ["genre---rock", "", " ", "mood/theme---happy", "", ""]},
            "csv": {"genre": ["rock", "", ""], "mood": ["", "happy"]},
            "parquet": {"genre": ["rock", "", " "], "mood": ["", "happy"]},
            "jsonl": {"artist": ["", "Artist 2", ""]},
        },
        None,
    ),
    "missing_id": Defect(
        {"mtg": {"id": ""}, "csv": {"id": ""}, "parquet": {"id": None}, "jsonl": {"id": ""}},
        "missing_id",
        "track id is empty",
    ),
    "duplicate_id": Defect(
        per_format(id="t0", title="Another song", artist=["Another artist"], artist_id="ar9"),
        "duplicate_id",
        {f: f"track id 't0' first kept from line {BAD_LINE[f] - BAD}" for f in FORMATS},
        formats=("mtg", "csv", "parquet"),
    ),
    "conflicting_duplicate": Defect(
        per_format(id="t0", title="Another song", artist=["Artist 0"], album="Album 0"),
        "conflicting_duplicate",
        "title differ from line 1",
        formats=("jsonl",),
    ),
    "bad_duration_text": Defect(per_format(length="abc"), "bad_duration", "'abc'", formats=("mtg", "csv")),
    "bad_duration_nan": Defect(
        per_format(length=float("nan")),
        "bad_duration",
        "not a finite number",
        formats=("mtg", "csv", "parquet"),
    ),
    "negative_duration": Defect(
        per_format(length=-5.0), "absurd_duration", "duration -5.0 s", formats=("mtg", "csv", "parquet")
    ),
    "duration_in_milliseconds": Defect(
        per_format(length=240000.0),
        "absurd_duration",
        "outside (0, 14400.0]",
        formats=("mtg", "csv", "parquet"),
    ),
    "field_too_long": Defect(
        {
            "mtg": {"genre": ["x" * 5000]},
            "csv": {"title": "x" * 5000},
            "parquet": {"genre": ["x" * 5000]},
            "jsonl": {"title": "x" * 5000},
        },
        "field_too_long",
        {
            "mtg": "a field of 5008 bytes",
            "csv": "'title' is 5000 bytes",
            "parquet": "'genres' is 5000 bytes",
            "jsonl": "'title' is 5000 bytes",
        },
    ),
    "tag_without_facet": Defect({"mtg": {"tags": ["rock"]}}, "unknown_facet", "tag 'rock'", formats=("mtg",)),
    "unknown_facet": Defect(
        {"mtg": {"tags": ["tempo---fast"]}}, "unknown_facet", "'tempo---fast'", formats=("mtg",)
    ),
    "tag_without_value": Defect(
        {"mtg": {"tags": ["genre---"]}}, "unknown_facet", "tag 'genre---'", formats=("mtg",)
    ),
    "too_few_fields": Defect(
        {
            "mtg": {"line": "t2\tar2\tal2"},
            "csv": {"line": "t2,ar2,al2"},
            "jsonl": {"line": '{"id": "c2", "tracks": '},
        },
        "malformed_line",
        {"mtg": "3 tab-separated fields", "csv": "3 fields, expected 9", "jsonl": "invalid JSON"},
        formats=("mtg", "csv", "jsonl"),
    ),
    "too_many_fields": Defect(
        {"csv": {"line": "t2,ar2,al2,Song,Artist,Album,1,rock,happy,extra"}},
        "malformed_line",
        "10 fields, expected 9",
        formats=("csv",),
    ),
    "metadata_not_object": Defect(
        {"jsonl": {"line": '{"id": "c2", "tracks": {"t2": ["Song 2"]}}'}},
        "malformed_line",
        "metadata is not an object",
        formats=("jsonl",),
    ),
    "invalid_utf8": Defect(
        {"mtg": {"genre": [f"caf{MARK}"]}, "csv": {"title": f"caf{MARK}"}, "jsonl": {"title": f"caf{MARK}"}},
        "bad_encoding",
        "invalid UTF-8 byte 0xe9",
        mark=b"\xe9",
        formats=("mtg", "csv", "jsonl"),
    ),
    "title_is_a_number": Defect(
        {"jsonl": {"title": 1.0}}, "wrong_value_type", "track_titles holds a JSON number", formats=("jsonl",)
    ),
    "artist_is_an_object": Defect(
        {"jsonl": {"artist": [{"name": "A"}]}},
        "wrong_value_type",
        "track_artists holds a JSON object",
        formats=("jsonl",),
    ),
}
ROW_CASES = [(name, fmt) for name, d in ROW_DEFECTS.items() for fmt in d.formats]


def write_case(tmp_path: Path, name: str, fmt: str, defect: Defect) -> Path:
    rows = good_rows()
    change = dict(defect.change.get(fmt, {}))
    raw_line = change.pop("line", None)
    rows[BAD].update(change)
    data = WRITERS[fmt](rows)
    if raw_line is not None:
        lines = data.split(b"\n")
        lines[BAD_LINE[fmt] - 1] = raw_line.encode("utf-8")
        data = b"\n".join(lines)
    if defect.mark:
        data = data.replace(MARK.encode("utf-8"), defect.mark)
    path = tmp_path / f"{name}.{SUFFIX[fmt]}"
    path.write_bytes(data)
    return path


def spec(path: Path, fmt: str, **extra: Any) -> CatalogSourceSpec:
    columns = {"columns": COLUMNS} if KIND[fmt] == "tabular" else {}
    return CatalogSourceSpec(kind=KIND[fmt], location=str(path), **columns, **extra)


def test_corpus_size() -> None:
    assert len(ROW_CASES) + len(FILE_CASES) >= 60
    assert {fmt for _, fmt in ROW_CASES} == set(FORMATS)


@pytest.mark.parametrize(("name", "fmt"), ROW_CASES, ids=[f"{n}-{f}" for n, f in ROW_CASES])
def test_row_defect_is_quarantined_with_file_line_and_rule(tmp_path: Path, name: str, fmt: str) -> None:
    defect = ROW_DEFECTS[name]
    path = write_case(tmp_path, name, fmt, defect)
    read = read_catalog(spec(path, fmt))

    assert read.kept.schema == CATALOG_SCHEMA and read.quarantined.schema == QUARANTINE_SCHEMA
    assert read.reconciles and read.rows_read == 4
    q = read.quarantined
    if defect.rule is None:
        assert q.is_empty() and read.kept.height == 4
        assert not any("" in v for c in ("genres", "moods", "artists") for v in read.kept[c].to_list())
        return
    assert RULES[defect.rule].scope == "row"
    assert q.height == 1 and read.kept.height == 3
    row = q.row(0, named=True)
    assert (row["source_file"], row["line_no"], row["rule"]) == (str(path), BAD_LINE[fmt], defect.rule)
    assert defect.detail_for(fmt) in row["detail"], row["detail"]
    assert not any(c in row["raw"] for c in CONTROL_CHARACTERS if c != "\t"), row["raw"]
    assert "t2" not in read.kept["track_id"].to_list()

    in_pairs = read_catalog(spec(path, fmt, batch_rows=2))
    assert in_pairs.kept.equals(read.kept) and in_pairs.quarantined.equals(q)


def _file_case(fmt: str, data: bytes, rule: str, message: str, line: int | None = None) -> dict[str, Any]:
    return {"fmt": fmt, "data": data, "rule": rule, "message": message, "line": line}


def _mapped_file(fmt: str, **columns: pl.Series) -> bytes:
    """The good rows with some columns replaced, as Parquet or as CSV (lists joined)."""
    frame = pl.DataFrame(good_rows()).with_columns(**columns)
    if fmt == "parquet":
        return _parquet(frame)
    return frame.with_columns(pl.col(pl.List(pl.String)).list.join("|")).write_csv().encode("utf-8")


def _parquet(frame: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


UTF16_TSV = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\nt1\tar1\tal1\tp\t1\tgenre---rock\n".encode(
    "utf-16"
)
FILE_CASES: dict[str, dict[str, Any]] = {
    **{f"empty-{fmt}": _file_case(fmt, b"", "empty_file", "no content") for fmt in FORMATS},
    **{
        f"blank_lines_only-{fmt}": _file_case(fmt, b"\n  \n\t\n", "empty_file", "no content")
        for fmt in ("mtg", "csv", "jsonl")
    },
    "wrong_header-mtg": _file_case(
        "mtg",
        write_mtg(good_rows()).replace(b"TRACK_ID", b"track_id"),
        "wrong_header",
        "expected 'TRACK_ID",
        1,
    ),
    "missing_column-csv": _file_case(
        "csv", write_csv(good_rows()).replace(b"length", b"len"), "missing_column", "['length']", 1
    ),
    "missing_column-parquet": _file_case(
        "parquet", _parquet(pl.DataFrame(good_rows()).drop("mood")), "missing_column", "['mood']"
    ),
    "not_conversations-jsonl": _file_case(
        "jsonl", write_mtg(good_rows()), "wrong_format", "no line is a CPCD conversation"
    ),
    "numbers_as_genres-csv": _file_case(
        "csv",
        _mapped_file("csv", genre=pl.Series([1.0, 2.0, 3.0, 4.5])),
        "wrong_column_type",
        "column 'genre' mapped to genres holds Float64",
        1,
    ),
    "decimal_ids-csv": _file_case(
        "csv",
        _mapped_file("csv", id=pl.Series([1.0, 2.0, 3.0, 4.0])),
        "wrong_column_type",
        "column 'id' mapped to track_id holds Float64",
        1,
    ),
    "numbers_as_genres-parquet": _file_case(
        "parquet",
        _mapped_file("parquet", genre=pl.Series([1.0, 2.0, 3.0, 4.5])),
        "wrong_column_type",
        "column 'genre' mapped to genres holds Float64",
    ),
    "number_lists_as_moods-parquet": _file_case(
        "parquet",
        _mapped_file("parquet", mood=pl.Series([[1], [2], [3], [4]])),
        "wrong_column_type",
        "mapped to moods holds List(Int64)",
    ),
    "decimal_ids-parquet": _file_case(
        "parquet",
        _mapped_file("parquet", id=pl.Series([1.0, 2.0, 3.0, 4.0])),
        "wrong_column_type",
        "mapped to track_id holds Float64",
    ),
    "boolean_titles-parquet": _file_case(
        "parquet",
        _mapped_file("parquet", title=pl.Series([True, False, True, False])),
        "wrong_column_type",
        "mapped to title holds Boolean",
    ),
    "utf16-mtg": _file_case("mtg", UTF16_TSV, "not_utf8", "not valid UTF-8", 1),
    "utf16-csv": _file_case("csv", "id,title\n1,a\n".encode("utf-16"), "not_utf8", "not valid UTF-8", 1),
    "mostly_latin1-mtg": _file_case(
        "mtg",
        write_mtg([{**r, "genre": ["caf\u00e9"]} for r in good_rows()]).replace("\u00e9".encode(), b"\xe9"),
        "not_utf8",
        "4 of 4 data lines",
    ),
    "truncated-parquet": _file_case(
        "parquet", _parquet(pl.DataFrame(good_rows()))[:-20], "unreadable", "not a readable parquet file"
    ),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_file_defect_stops_the_read_naming_file_rule_and_line(tmp_path: Path, case: str) -> None:
    c = FILE_CASES[case]
    path = tmp_path / f"{case}.{SUFFIX[c['fmt']]}"
    path.write_bytes(c["data"])
    with pytest.raises(CatalogSourceError) as excinfo:
        read_catalog(spec(path, c["fmt"]))
    error, message = excinfo.value, str(excinfo.value)
    assert (error.rule, error.line_no) == (c["rule"], c["line"])
    assert RULES[c["rule"]].scope == "file"
    where = str(path) if c["line"] is None else f"{path}, line {c['line']}"
    assert message.startswith(f"{where}: {c['rule']}: ") and c["message"] in message, message


def test_blank_line_between_records(tmp_path: Path) -> None:
    """A blank line is a malformed MTG line (a TSV row has five fields); CSV and JSON Lines readers skip it."""
    for fmt, expected in (("mtg", {"malformed_line": 1}), ("csv", {}), ("jsonl", {})):
        lines = WRITERS[fmt](good_rows()).split(b"\n")
        path = tmp_path / f"blank.{SUFFIX[fmt]}"
        path.write_bytes(b"\n".join([*lines[:2], b"", *lines[2:]]))
        read = read_catalog(spec(path, fmt))
        assert read.quarantine_counts == expected and read.kept.height == 4 and read.reconciles


def test_csv_text_that_pyarrow_would_null_stays_text(tmp_path: Path) -> None:
    rows = good_rows()
    rows[BAD].update(title="NA", album="null", genre=["nan"])
    path = tmp_path / "nullish.csv"
    path.write_bytes(write_csv(rows))
    kept = read_catalog(spec(path, "csv")).kept
    assert (kept["title"][BAD], kept["album"][BAD], kept["genres"][BAD].to_list()) == ("NA", "null", ["nan"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_integer_ids_are_read_as_text_ids(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"int_ids.{SUFFIX[fmt]}"
    path.write_bytes(_mapped_file(fmt, id=pl.Series([7, 8, 9, 10]), artist_id=pl.Series([1, 1, 2, 2])))
    read = read_catalog(spec(path, fmt))
    assert read.quarantined.is_empty()
    assert read.kept["track_id"].to_list() == ["7", "8", "9", "10"] and read.kept["artist_id"][2] == "2"


def test_duplicate_taxonomy_key_names_file_and_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(
        "facets:\n  genre:\n    jazz: {}\n    rock: {}\n    jazz:\n      aliases: [swing]\n", encoding="utf-8"
    )
    with pytest.raises(TaxonomyFileError) as excinfo:
        load_curated(path)
    assert str(excinfo.value) == f"{path}, line 5: duplicate key 'jazz' (first at line 3)"


def test_duplicate_node_field_is_refused_too(tmp_path: Path) -> None:
    path = tmp_path / "taxonomy.yaml"
    path.write_text(
        "facets:\n  genre:\n    jazz:\n      aliases: [a]\n      aliases: [b]\n", encoding="utf-8"
    )
    with pytest.raises(TaxonomyFileError, match=r"line 5: duplicate key 'aliases' \(first at line 4\)"):
        load_curated(path)

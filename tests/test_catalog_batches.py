"""Batched sourcing: reading a file in many small batches gives exactly the rows and counts of one batch.

Each source is a real file (the bundled MTG-Jamendo sample, the bundled CPCD file, a CSV and a Parquet file
made from the sample) with defects planted across it, duplicates far apart among them, so rules and the
running duplicate check meet batch edges.
"""

import gzip
import io
import random
from pathlib import Path

import polars as pl
import pytest

from checks.quarantine_rules import CatalogSourceError
from models.catalog.sources import BUNDLED_SAMPLE, CatalogRead, CatalogSourceSpec, read_catalog
from models.catalog.streams import line_batches
from orchestration.settings import BUNDLED_DATA

CPCD_BUNDLED = BUNDLED_DATA / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl.gz"
COLUMNS = {"track_id": "id", "artist_id": "artist", "duration_s": "seconds", "genres": "g", "moods": "m"}
ROWS = 600


def _planted_tsv(tmp_path: Path) -> Path:
    """The sample's first ROWS tracks with defects every few lines, and ids repeated from far above."""
    header, *lines = BUNDLED_SAMPLE.read_text(encoding="utf-8").splitlines()[: ROWS + 1]
    rng = random.Random(5)
    planted = []
    for i, line in enumerate(lines):
        fields = line.split("\t")
        match i % 11 if i > 20 else None:
            case 0:
                fields[0] = lines[rng.randrange(i)].split("\t")[0]  # duplicate of an earlier id
            case 1:
                fields[4] = "-3"
            case 2:
                fields[1] += "\x00"
            case 3:
                fields.extend(["", ""])  # trailing tabs: empty tag fields
            case 4:
                fields = fields[:3]
            case 5:
                fields.append("tempo---fast")
        planted.append("\t".join(fields))
    planted[300] = ""  # a blank line inside the file
    data = "\n".join([header, *planted]).encode("utf-8").replace(b"genre---pop\t", b"genre---p\xf6p\t", 3)
    path = tmp_path / "planted.tsv"
    path.write_bytes(data + b"\n\n \n")  # trailing blank lines are not rows
    return path


def _planted_table(tmp_path: Path, suffix: str) -> Path:
    kept = read_catalog(CatalogSourceSpec()).kept.head(ROWS)
    frame = (
        kept.select(list(COLUMNS))
        .rename(COLUMNS)
        .with_columns(
            id=pl.when(pl.int_range(pl.len()) % 13 == 12).then(pl.col("id").shift(97)).otherwise("id"),
            seconds=pl.when(pl.int_range(pl.len()) % 17 == 5).then(-1.0).otherwise("seconds"),
            artist=pl.when(pl.int_range(pl.len()) % 19 == 7)
            .then(pl.col("artist") + "\x1b")
            .otherwise("artist"),
            g=pl.when(pl.int_range(pl.len()) % 23 == 3).then(pl.concat_list("g", pl.lit(""))).otherwise("g"),
        )
    )
    path = tmp_path / f"planted.{suffix}"
    if suffix == "parquet":
        frame.write_parquet(path, row_group_size=64)
    else:
        text = frame.with_columns(pl.col("g", "m").list.join("|")).write_csv()
        lines = text.splitlines()
        lines[250] += ",extra"  # a record with one field too many
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _planted_cpcd(tmp_path: Path) -> Path:
    """The bundled CPCD file (tracks recur across conversations) with broken records in between, gzipped."""
    lines = gzip.decompress(CPCD_BUNDLED.read_bytes()).splitlines()
    lines[40:40] = [b'{"id": "cut", "tracks": ', b'{"id": "x", "tracks": {"n": {"track_titles": 3}}}']
    path = tmp_path / "planted.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines)))
    return path


SOURCES = {
    "mtg_jamendo": lambda tmp: CatalogSourceSpec(location=str(_planted_tsv(tmp))),
    "csv": lambda tmp: CatalogSourceSpec(
        kind="tabular", location=str(_planted_table(tmp, "csv")), columns=COLUMNS
    ),
    "parquet": lambda tmp: CatalogSourceSpec(
        kind="tabular", location=str(_planted_table(tmp, "parquet")), columns=COLUMNS
    ),
    "cpcd": lambda tmp: CatalogSourceSpec(kind="cpcd", location=str(_planted_cpcd(tmp))),
}


def _in_batches(spec: CatalogSourceSpec, batch_rows: int) -> CatalogRead:
    return read_catalog(spec.model_copy(update={"batch_rows": batch_rows}))


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_many_batches_read_exactly_like_one(tmp_path: Path, source: str) -> None:
    spec = SOURCES[source](tmp_path)
    whole = _in_batches(spec, 10_000_000)
    assert whole.reconciles and not whole.quarantined.is_empty() and whole.kept.height > 100
    # About 80 and 9 batches (CPCD: 7,527 tracks from 402 lines, so rows and lines both cut batches).
    for batch_rows in (7, 64) if source != "cpcd" else (97, 900):
        batched = _in_batches(spec, batch_rows)
        assert batched.kept.equals(whole.kept), batch_rows
        assert batched.quarantined.equals(whole.quarantined), batch_rows
        assert (batched.rows_read, batched.repeats_merged) == (whole.rows_read, whole.repeats_merged)
        assert batched.quarantine_counts == whole.quarantine_counts and batched.reconciles


def test_planted_rules_are_all_found_in_batches(tmp_path: Path) -> None:
    read = _in_batches(SOURCES["mtg_jamendo"](tmp_path), 50)
    counts = read.quarantine_counts
    assert set(counts) == {
        "absurd_duration",
        "bad_encoding",
        "control_character",
        "duplicate_id",
        "malformed_line",
        "unknown_facet",
    }
    assert read.rows_read == ROWS and read.kept.height + sum(counts.values()) == ROWS
    assert not read.kept["genres"].list.contains("").any()


def test_duplicate_in_a_later_batch_names_the_earlier_line(tmp_path: Path) -> None:
    header, first, second = BUNDLED_SAMPLE.read_text(encoding="utf-8").splitlines()[:3]
    path = tmp_path / "dup.tsv"
    path.write_text(
        "\n".join([header, first, second, first.replace("\t", "\tx", 1)]) + "\n", encoding="utf-8"
    )
    read = _in_batches(CatalogSourceSpec(location=str(path)), 1)
    row = read.quarantined.row(0, named=True)
    track_id = first.split("\t")[0]
    assert (row["line_no"], row["rule"]) == (4, "duplicate_id")
    assert row["detail"] == f"track id '{track_id}' first kept from line 2"
    assert read.kept["track_id"].to_list() == [track_id, second.split("\t")[0]]


def test_line_batches_cut_whole_lines_and_drop_only_trailing_blanks() -> None:
    rng = random.Random(11)
    pieces = [b"", b"  ", b"a", b"b\tc", b"\r", b"x y "]
    for _ in range(2000):
        data = b"\n".join(rng.choice(pieces) for _ in range(rng.randrange(13))) + rng.choice(
            [b"", b"\n", b"\n \n"]
        )
        batch_lines = rng.randrange(1, 5)
        expected = data.split(b"\n")
        while expected and not expected[-1].strip():
            expected.pop()
        if not expected:
            with pytest.raises(CatalogSourceError, match="empty_file"):
                list(line_batches(io.BytesIO(data), "f", batch_lines, read_bytes=rng.randrange(1, 8)))
            continue
        lines: list[bytes] = []
        for batch in line_batches(io.BytesIO(data), "f", batch_lines, read_bytes=rng.randrange(1, 8)):
            assert batch.first_line == len(lines) + 1
            got = batch.data.removesuffix(b"\n").split(b"\n")
            assert len(got) <= batch_lines
            lines.extend(got)
        assert lines == expected, data

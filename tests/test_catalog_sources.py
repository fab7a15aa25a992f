"""Catalog sourcing on the real files, the bundled sample, URLs and tabular mappings."""

import functools
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError

from models.catalog.mtg_jamendo import FACET_PREFIXES, build_sample
from models.catalog.schema import CATALOG_SCHEMA, QUARANTINE_SCHEMA
from models.catalog.sources import BUNDLED_SAMPLE, CatalogSourceError, CatalogSourceSpec, read_catalog

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SETLIST_SHARED_DATA", REPO.parent / "shared" / "data"))
MTG_FULL = SHARED / "mtg_jamendo" / "autotagging.tsv"
CPCD_DEV = SHARED / "cpcd" / "cpcd_v1.dialogs.dev.train.jsonl"
N_TAGS = 186


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"shared data file {path} is missing (set SETLIST_SHARED_DATA)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def _tags(kept: pl.DataFrame) -> set[str]:
    prefixed = kept.select(
        pl.concat_list(pl.col(f).list.eval(pl.lit(p) + pl.element()) for f, p in FACET_PREFIXES.items())
    )
    return set(prefixed.to_series().explode().drop_nulls())


def _assert_clean(read, rows: int) -> None:
    assert read.kept.schema == CATALOG_SCHEMA
    assert read.quarantined.schema == QUARANTINE_SCHEMA
    assert read.rows_read == rows
    assert read.reconciles
    assert read.kept["track_id"].is_unique().all()


def test_full_mtg_jamendo_file() -> None:
    read = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(_require(MTG_FULL))))
    _assert_clean(read, rows=55_525)
    assert read.kept.height == 55_525 and read.quarantined.is_empty()
    assert len(_tags(read.kept)) == N_TAGS
    assert read.kept["title"].null_count() == read.kept.height
    assert (read.kept["source"] == "mtg_jamendo").all()
    assert read.kept["duration_s"].null_count() == 0


def test_full_cpcd_file() -> None:
    path = _require(CPCD_DEV)
    conversations = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    entries = [tid for c in conversations for tid in c.get("tracks", {})]
    read = read_catalog(CatalogSourceSpec(kind="cpcd", location=str(path)))
    _assert_clean(read, rows=len(set(entries)))
    assert read.kept.height == 7_527
    assert read.kept.height + read.repeats_merged == len(entries)
    assert read.kept["title"].null_count() == 0 and (read.kept["artists"].list.len() > 0).all()
    assert read.kept["artist_id"].str.starts_with("cpcd-ar-").all()
    assert (read.kept["duration_s"].is_null()).all() and (read.kept["genres"].list.len() == 0).all()


def test_bundled_sample_covers_every_tag() -> None:
    read = read_catalog(CatalogSourceSpec())  # the embedded default
    _assert_clean(read, rows=5_000)
    assert read.kept.height == 5_000
    assert len(_tags(read.kept)) == N_TAGS


def test_bundled_sample_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "sample.tsv"
    build_sample(_require(MTG_FULL), out)
    assert out.read_bytes() == BUNDLED_SAMPLE.read_bytes()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_reads_over_http(http_root: tuple[Path, str]) -> None:
    root, base = http_root
    (root / "sample.tsv").write_bytes(BUNDLED_SAMPLE.read_bytes())
    over_http = read_catalog(CatalogSourceSpec(location=f"{base}/sample.tsv"))
    local = read_catalog(CatalogSourceSpec())
    assert over_http.kept.equals(local.kept)
    assert over_http.source_file == f"{base}/sample.tsv"
    with pytest.raises(CatalogSourceError, match="file_missing") as excinfo:
        read_catalog(CatalogSourceSpec(location=f"{base}/nope.tsv"))
    assert "nope.tsv" in str(excinfo.value)


def test_missing_local_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogSourceError, match=r"absent\.tsv: file_missing"):
        read_catalog(CatalogSourceSpec(location=tmp_path / "absent.tsv"))


@pytest.fixture(scope="module")
def sample_catalog() -> pl.DataFrame:
    return read_catalog(CatalogSourceSpec()).kept.head(300)


THEIR_NAMES = {"track_id": "id", "artist_id": "artistId", "duration_s": "len_s", "genres": "g", "moods": "m"}


def test_tabular_parquet_with_native_lists(tmp_path: Path, sample_catalog: pl.DataFrame) -> None:
    path = tmp_path / "catalog.parquet"
    sample_catalog.select(list(THEIR_NAMES)).rename(THEIR_NAMES).write_parquet(path)
    read = read_catalog(
        CatalogSourceSpec(kind="tabular", location=str(path), columns=THEIR_NAMES, source="mine")
    )
    _assert_clean(read, rows=300)
    expected = sample_catalog.with_columns(instruments=pl.lit([], pl.List(pl.String)), source=pl.lit("mine"))
    assert read.kept.select(list(THEIR_NAMES)).equals(expected.select(list(THEIR_NAMES)))
    assert (read.kept["instruments"].list.len() == 0).all() and (read.kept["source"] == "mine").all()


def test_tabular_csv_with_joined_lists(tmp_path: Path, sample_catalog: pl.DataFrame) -> None:
    path = tmp_path / "catalog.csv"
    joined = sample_catalog.select(list(THEIR_NAMES)).with_columns(pl.col("genres", "moods").list.join(";"))
    joined.rename(THEIR_NAMES).write_csv(path)
    spec = CatalogSourceSpec(kind="tabular", location=str(path), columns=THEIR_NAMES, list_separator=";")
    read = read_catalog(spec)
    _assert_clean(read, rows=300)
    assert read.kept.select(list(THEIR_NAMES)).equals(sample_catalog.select(list(THEIR_NAMES)))


def test_tabular_spec_is_validated() -> None:
    with pytest.raises(ValidationError, match="track_id"):
        CatalogSourceSpec(kind="tabular", location="x.csv", columns={"title": "name"})
    with pytest.raises(ValidationError, match="format"):
        CatalogSourceSpec(kind="tabular", location="x.json", columns={"track_id": "id"})

"""The track_embeddings asset materialized in-process: incremental across materializations, offline."""

from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

import assets.catalog
import assets.embeddings
import assets.taxonomy
from models.assistant.embedding import (
    MINILM_NAME,
    MINILM_SHA256,
    load_embedder,
    read_vector_seed,
    text_keys,
    vector_seed,
)
from models.assistant.retrieval import CatalogIndex
from models.assistant.retrieval_config import RETRIEVER_PRESETS
from models.assistant.track_text import catalog_texts
from models.catalog.sources import BUNDLED_SAMPLE, CatalogSourceSpec, read_catalog
from models.taxonomy import Taxonomy
from orchestration.definitions import build_resources
from orchestration.settings import load_settings
from orchestration.vector_seed import catalog_track_texts

ASSETS = dg.load_assets_from_modules([assets.catalog, assets.taxonomy, assets.embeddings])


def _write_catalog(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8")


def _materialize() -> dict:
    result = dg.materialize(
        ASSETS, resources=build_resources(load_settings()), instance=dg.DagsterInstance.get()
    )
    assert result.success
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.path == ["track_embeddings"]
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_only_new_or_changed_texts_are_embedded(settings, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lines = BUNDLED_SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    source = tmp_path / "catalog.tsv"
    _write_catalog(source, lines[:61])  # header + 60 tracks
    monkeypatch.setenv("SETLIST_CATALOG__LOCATION", str(source))
    monkeypatch.setenv("SETLIST_VECTOR_SEED", "")  # no bundled vectors: the first run embeds every text

    first = _materialize()
    assert first["model"] == MINILM_NAME and first["model_sha256"] == MINILM_SHA256
    assert first["dagster/row_count"] == 60 and first["dimensions"] == 384
    assert first["reused"] == 0 and first["embedded"] == first["distinct_texts"] > 0

    assert (
        _materialize()["embedded"] == 0
    )  # nothing changed: every vector comes from the last materialization

    # 15 tracks more, and one track's tags changed: only texts the last table lacks are embedded.
    home = load_settings().assets_dir
    before = set(pl.read_parquet(home / "track_embeddings.parquet")["text_key"])
    header, *rows = lines[:76]
    fields = rows[0].rstrip("\n").split("\t")
    rows[0] = "\t".join([*fields[:5], "genre---jazz\tinstrument---saxophone"]) + "\n"
    _write_catalog(source, [header, *rows])
    catalog = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(source))).kept
    taxonomy = Taxonomy.from_table(pl.read_parquet(home / "taxonomy.parquet"))
    texts = catalog_texts(catalog, taxonomy)
    new = set(text_keys(texts.to_list(), MINILM_NAME)) - before
    third = _materialize()
    table = pl.read_parquet(home / "track_embeddings.parquet")
    assert third["dagster/row_count"] == 75 == table.height
    assert third["embedded"] == len(new) >= 1  # the changed track's text, and new tracks' unseen texts
    assert third["reused"] == texts.n_unique() - len(new)

    # The stored vectors are the model's vectors of each track's current text, in catalog order.
    assert table["track_id"].to_list() == catalog["track_id"].to_list()
    np.testing.assert_allclose(
        table["embedding"].to_numpy()[:3], load_embedder(MINILM_NAME).embed(texts[:3].to_list()), atol=1e-5
    )
    # A dense candidate's index built from the table embeds nothing more.
    index = CatalogIndex.build(catalog, taxonomy, RETRIEVER_PRESETS["dense"], embeddings=table)
    np.testing.assert_array_equal(
        index.vector_index.vectors(np.arange(len(index))), table["embedding"].to_numpy()
    )


def test_a_vector_seed_is_reused_by_key_and_only_texts_it_lacks_are_embedded(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    lines = BUNDLED_SAMPLE.read_text(encoding="utf-8").splitlines(keepends=True)
    source = tmp_path / "catalog.tsv"
    _write_catalog(source, lines[:41])  # header + 40 tracks
    monkeypatch.setenv("SETLIST_CATALOG__LOCATION", str(source))
    texts = catalog_track_texts(load_settings())
    distinct = list(dict.fromkeys(texts))
    seeded = distinct[: len(distinct) // 2]
    seed = tmp_path / "seed.parquet"
    vector_seed(seeded, load_embedder(MINILM_NAME)).write_parquet(seed)
    monkeypatch.setenv("SETLIST_VECTOR_SEED", str(seed))

    first = _materialize()
    assert first["distinct_texts"] == len(distinct)
    assert first["reused"] == len(seeded) and first["embedded"] == len(distinct) - len(seeded)
    table = pl.read_parquet(load_settings().assets_dir / "track_embeddings.parquet")
    by_key = dict(zip(table["text_key"], table["embedding"].to_list(), strict=True))
    np.testing.assert_allclose(
        [by_key[k] for k in text_keys(distinct, MINILM_NAME)],
        load_embedder(MINILM_NAME).embed(distinct),
        atol=1e-5,
    )

    seed.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="seed.parquet: cannot read the vector seed"):
        read_vector_seed(seed)

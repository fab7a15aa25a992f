from pathlib import Path

import polars as pl
import pytest

from checks.taxonomy_suite import validate_taxonomy
from models.catalog.schema import CATALOG_SCHEMA
from models.taxonomy import (
    Node,
    Taxonomy,
    TaxonomyFileError,
    assess_taxonomy,
    design_taxonomy,
    load_curated,
)
from orchestration.settings import BUNDLED_DATA


def _catalog(rows: list[dict]) -> pl.DataFrame:
    base = {
        "artist_id": "a",
        "album_id": "b",
        "title": None,
        "artists": [],
        "album": None,
        "duration_s": 100.0,
        "genres": [],
        "instruments": [],
        "moods": [],
        "source": "mtg_jamendo",
    }
    return pl.DataFrame([{**base, **row} for row in rows], schema=CATALOG_SCHEMA)


@pytest.fixture(scope="module")
def curated() -> Taxonomy:
    return load_curated(BUNDLED_DATA / "taxonomy.yaml")


def test_curated_file_has_every_facet_and_no_structural_problems(curated):
    assert {n.facet for n in curated.nodes.values()} == {"genre", "instrument", "mood", "activity", "era"}
    assert curated.cycles() == []
    assert curated.ambiguous_aliases() == {}


def test_aliases_synonyms_and_activities_resolve_to_catalog_tags(curated):
    index = curated.phrase_index()
    assert index["drum and bass"] == ("genre/drumnbass",)
    assert set(index["chill"]) == {"mood/relaxing", "mood/calm", "genre/chillout"}
    assert "genre---deephouse" in curated.catalog_tags("genre/electronic")  # grandchild via house
    assert curated.catalog_tags("activity/workout") >= {"mood/theme---energetic", "mood/theme---motivational"}
    assert curated.catalog_tags("era/80s") == {"genre---80s"}


def test_bundled_sample_maps_every_tag(curated):
    from models.catalog.sources import CatalogSourceSpec, read_catalog

    catalog = read_catalog(CatalogSourceSpec()).kept
    report = assess_taxonomy(curated, catalog)
    assert report.unmapped_tags == {}
    assert report.catalog_tags == 186
    table = design_taxonomy(curated, catalog)
    assert validate_taxonomy(table, report).success
    techno = table.filter(pl.col("node_id") == "genre/techno").row(0, named=True)
    assert techno["track_count"] > 0 and techno["related"], (
        "co-occurrence should relate techno to other nodes"
    )


def test_unmapped_tag_cycle_and_ambiguous_alias_are_reported():
    taxonomy = Taxonomy(
        nodes={
            "genre/a": Node(
                "genre/a", "genre", "a", parent_id="genre/b", aliases=("shared",), tags=("genre---a",)
            ),
            "genre/b": Node(
                "genre/b", "genre", "b", parent_id="genre/a", aliases=("shared",), tags=("genre---b",)
            ),
        }
    )
    catalog = _catalog([{"track_id": "t1", "genres": ["a", "zzz"]}])
    report = assess_taxonomy(taxonomy, catalog)
    assert report.unmapped_tags == {"genre---zzz": 1}
    assert report.cycles == [["genre/a", "genre/b"]]
    assert report.ambiguous_aliases == {"shared": ("genre/a", "genre/b")}
    outcome = validate_taxonomy(design_taxonomy(taxonomy, catalog), report)
    assert {o.expectation for o in outcome.failures} == {
        "every_catalog_tag_maps_to_a_node",
        "no_parent_cycles",
        "no_ambiguous_aliases",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("facets: {genre: {a: {parent: missing}}}", "parent genre/missing is not a node"),
        ("facets: {colour: {red: {}}}", "unknown facet"),
        ("facets: {genre: {a: {colour: red}}}", "node genre/a"),
        ("facets: {activity: {run: {implies: [mood/nope]}}}", "implies unknown"),
        ("synonyms: {}", "'facets' section"),
        ("facets: [", "cannot read"),
    ],
)
def test_malformed_curated_file_names_file_and_node(tmp_path: Path, content: str, message: str):
    path = tmp_path / "taxonomy.yaml"
    path.write_text(content)
    with pytest.raises(TaxonomyFileError, match=message) as err:
        load_curated(path)
    assert str(path) in str(err.value)

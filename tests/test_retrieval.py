"""Hybrid catalog retrieval: BM25 text, tag phrases, filters, similarity, fusion, artist cap, config hash."""

from pathlib import Path
from zlib import crc32

import numpy as np
import polars as pl
import pytest
from pydantic import ValidationError

from models.assistant.retrieval import CatalogIndex, Filters, Hit, RetrieverConfig, diversify, fuse
from models.catalog.schema import CATALOG_SCHEMA
from models.catalog.sources import BUNDLED_SAMPLE, CatalogSourceSpec, read_catalog
from models.taxonomy import Node, Taxonomy, load_curated

REPO = Path(__file__).resolve().parents[1]


def _track(
    track_id,
    artist_id,
    title=None,
    artists=(),
    album=None,
    duration=None,
    genres=(),
    instruments=(),
    moods=(),
):
    return {
        "track_id": track_id,
        "artist_id": artist_id,
        "album_id": None,
        "title": title,
        "artists": list(artists),
        "album": album,
        "duration_s": duration,
        "genres": list(genres),
        "instruments": list(instruments),
        "moods": list(moods),
        "source": "test",
    }


# MTG-Jamendo-like rows (tags, no titles) next to CPCD-like rows (titles, no tags).
CATALOG = pl.DataFrame(
    [
        _track("m1", "am1", duration=300, genres=["drumnbass"]),
        _track("m2", "am2", duration=200, genres=["techno"], moods=["dark"]),
        _track("m3", "am3", duration=180, genres=["ambient"], instruments=["piano"], moods=["relaxing"]),
        _track("m4", "am3", duration=400, genres=["ambient"], instruments=["piano"], moods=["calm"]),
        _track("m5", "am4", genres=["techno"], moods=["energetic"]),
        _track("c1", "ac1", "Midnight City", ["M83"], "Hurry Up, We're Dreaming"),
        _track("c2", "ac2", "Teardrop", ["Massive Attack"], "Mezzanine"),
    ],
    schema=CATALOG_SCHEMA,
)
TAXONOMY = Taxonomy(
    nodes={
        "genre/electronic": Node("genre/electronic", "genre", "electronic", tags=("genre---electronic",)),
        "genre/drumnbass": Node(
            "genre/drumnbass",
            "genre",
            "drumnbass",
            "genre/electronic",
            ("drum and bass", "dnb"),
            ("genre---drumnbass",),
        ),
        "genre/techno": Node(
            "genre/techno", "genre", "techno", "genre/electronic", ("tekno",), ("genre---techno",)
        ),
        "mood/relaxing": Node("mood/relaxing", "mood", "relaxing", tags=("mood/theme---relaxing",)),
        "mood/calm": Node("mood/calm", "mood", "calm", tags=("mood/theme---calm",)),
    },
    synonyms={"chill": ("mood/relaxing", "mood/calm")},
)


@pytest.fixture(scope="module")
def index() -> CatalogIndex:
    return CatalogIndex.build(CATALOG, TAXONOMY, RetrieverConfig(max_per_artist=None))


def _ids(hits: list[Hit]) -> list[str]:
    return [h.track_id for h in hits]


def test_bm25_finds_titles_artists_and_albums(index: CatalogIndex) -> None:
    assert _ids(index.search("midnight city"))[0] == "c1"
    assert _ids(index.search("massive attack"))[0] == "c2"
    assert _ids(index.search("mezzanine")) == ["c2"]
    assert index.search("zzz unknown words") == []
    assert index.search("") == []


def test_taxonomy_aliases_and_synonyms_reach_tags(index: CatalogIndex) -> None:
    assert _ids(index.search("drum and bass")) == ["m1"]
    assert set(_ids(index.search("something chill"))) == {"m3", "m4"}
    assert set(_ids(index.search("tekno"))) == {"m2", "m5"}
    assert set(_ids(index.search("electronic"))) == {
        "m1",
        "m2",
        "m5",
    }  # a parent name finds its children's tracks


def test_facet_filters_and_exclusions(index: CatalogIndex) -> None:
    techno = Filters(require={"genres": {"techno"}})
    assert set(_ids(index.search("electronic", techno))) == {"m2", "m5"}
    # facets AND together, tags within a facet are any-of; full catalog tags and bare values both work
    both = Filters(require={"genre": {"genre---ambient", "techno"}, "moods": {"calm", "dark"}})
    assert set(np.flatnonzero(index.mask(both))) == {1, 3}
    assert set(_ids(index.search("electronic", Filters(exclude={"mood": {"dark"}})))) == {"m1", "m5"}
    assert _ids(index.search("piano", Filters(exclude_artist_ids={"am3"}))) == []
    assert _ids(index.search("tekno", Filters(exclude_track_ids={"m2", "not-in-catalog"}))) == ["m5"]
    # m5 has no duration, so it cannot satisfy a bound
    assert _ids(index.search("tekno", Filters(max_duration_s=250))) == ["m2"]
    assert _ids(index.search("piano", Filters(min_duration_s=200))) == ["m4"]
    assert index.mask(Filters()) is None


def test_filters_validate_facets() -> None:
    assert Filters(require={"moods": {"calm"}}).require == {"mood/theme": frozenset({"mood/theme---calm"})}
    with pytest.raises(ValidationError, match="unknown facet"):
        Filters(require={"tempo": {"fast"}})
    with pytest.raises(ValidationError, match="not of facet"):
        Filters(require={"genres": {"mood/theme---calm"}})


def test_similar_ranks_same_tags_first_and_leaves_seeds_out(index: CatalogIndex) -> None:
    hits = index.similar(["m3"], k=3)
    assert _ids(hits)[0] == "m4"
    assert "m3" not in _ids(hits)
    assert _ids(index.similar(["m2"], k=1)) == ["m5"]
    assert index.similar(["c1"]) == []  # no tags, no embedder: nothing to compare
    with pytest.raises(KeyError):
        index.similar(["missing"])


def test_weighted_queries_and_similar_by_artist_names(index: CatalogIndex) -> None:
    # The latest turn leads: the same two texts rank differently with the weights swapped.
    assert _ids(index.search([("teardrop", 1.0), ("midnight", 0.5)]))[0] == "c2"
    assert _ids(index.search([("teardrop", 0.5), ("midnight", 1.0)]))[0] == "c1"
    assert _ids(index.search("Beyonce teardrop")) == _ids(index.search("teardrop"))  # no such name: no change
    extra = pl.DataFrame(
        [_track("c3", "ac3", "Angel", ["Massive Attack"], "Mezzanine")], schema=CATALOG_SCHEMA
    )
    named = CatalogIndex.build(pl.concat([CATALOG, extra]), TAXONOMY, index.config)
    assert _ids(named.similar(["c2"])) == ["c3"]  # text catalogs: "more like this" by the artist's name
    assert "c3" in named and "nope" not in named


def test_get_track(index: CatalogIndex) -> None:
    assert index.get_track("c2")["title"] == "Teardrop"
    assert index.get_track("missing") is None


def test_rrf_matches_hand_computed_scores() -> None:
    a = [Hit("x", 9.0), Hit("y", 5.0), Hit("z", 1.0)]
    b = [Hit("y", 0.9), Hit("z", 0.8), Hit("w", 0.1)]
    fused = fuse({"bm25": a, "tags": b}, k=60)
    assert _ids(fused) == ["y", "z", "x", "w"]
    expected = {"y": 1 / 62 + 1 / 61, "z": 1 / 63 + 1 / 62, "x": 1 / 61, "w": 1 / 63}
    assert {h.track_id: h.score for h in fused} == pytest.approx(expected)
    assert fused[0].ranks == {"bm25": 2, "tags": 1}


def test_artist_cap_keeps_order() -> None:
    hits = [Hit("1", 5, "a"), Hit("2", 4, "a"), Hit("3", 3, "a"), Hit("4", 2, "b"), Hit("5", 1, None)]
    assert _ids(diversify(hits, max_per_artist=2)) == ["1", "2", "4", "5"]
    capped = CatalogIndex.build(CATALOG, TAXONOMY, RetrieverConfig(max_per_artist=1))
    assert _ids(capped.search("piano")) in (["m3"], ["m4"])


def test_config_hash_is_stable_and_order_free() -> None:
    config = RetrieverConfig(components=("tags", "bm25"), bm25_k1=1.2)
    same = RetrieverConfig(bm25_k1=1.2, components=("bm25", "tags", "bm25"))
    assert config == same and config.config_hash == same.config_hash
    assert RetrieverConfig.model_validate_json(config.model_dump_json()).config_hash == config.config_hash
    assert len({config, same}) == 1  # hashable: usable as a candidate key
    assert RetrieverConfig(bm25_k1=1.3).config_hash != RetrieverConfig(bm25_k1=1.2).config_hash
    with pytest.raises(ValidationError):
        RetrieverConfig(components=("bm25", "dense"))  # dense needs a named embedder


class BagOfWordsEmbedder:
    """A stand-in for a real model: hashed word counts, L2-normalised."""

    name = "test-bow"

    def embed(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, crc32(word.encode()) % 64] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def test_dense_component_plugs_in() -> None:
    config = RetrieverConfig(components=("bm25", "dense"), embedder="test-bow", max_per_artist=None)
    dense = CatalogIndex.build(CATALOG, TAXONOMY, config, embedder=BagOfWordsEmbedder())
    hits = dense.search("teardrop")
    assert hits[0].track_id == "c2" and set(hits[0].ranks) == {"bm25", "dense"}
    assert "c1" not in _ids(dense.similar(["c1"]))
    with pytest.raises(ValueError, match="embedder"):
        CatalogIndex.build(CATALOG, TAXONOMY, RetrieverConfig(), embedder=BagOfWordsEmbedder())


def test_bundled_mtg_sample_answers_listener_words() -> None:
    catalog = read_catalog(CatalogSourceSpec(kind="mtg_jamendo", location=str(BUNDLED_SAMPLE))).kept
    index = CatalogIndex.build(catalog, load_curated(REPO / "data" / "taxonomy.yaml"))
    chill = {"relaxing", "calm", "chillout"}
    for hit in index.search("chill", k=10):
        track = index.get_track(hit.track_id)
        assert chill & set(track["moods"] + track["genres"])
    hits = index.search("piano", Filters(require={"moods": {"sad"}}, max_duration_s=300), k=10)
    assert hits and all("sad" in index.get_track(h.track_id)["moods"] for h in hits)
    artists = [h.artist_id for h in index.search("rock", k=10)]
    assert max(artists.count(a) for a in artists) <= RetrieverConfig().max_per_artist


def test_reconfigured_index_answers_like_a_fresh_build(index: CatalogIndex) -> None:
    bm25_only = RetrieverConfig(components=("bm25",), max_per_artist=None)
    fresh = CatalogIndex.build(CATALOG, TAXONOMY, bm25_only)
    shared = index.reconfigured(bm25_only)
    for query in ("calm piano", "drum and bass", "chill"):
        assert _ids(shared.search(query)) == _ids(fresh.search(query))
    assert shared.bm25 is index.bm25  # no rebuild
    with pytest.raises(ValueError, match="build anew"):
        index.reconfigured(RetrieverConfig(bm25_k1=0.9))


def test_dense_preset_finds_tracks_by_meaning_with_the_shipped_model(monkeypatch) -> None:
    from models.assistant.embedding import MINILM_NAME, embed_texts, load_embedder, vector_table
    from models.assistant.retrieval_config import RETRIEVER_PRESETS
    from models.assistant.track_text import catalog_texts
    from models.lifecycle.candidates import Candidate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = RETRIEVER_PRESETS["dense"].model_copy(update={"max_per_artist": None})
    assert Candidate.from_key("intent-v1.dense.template").retriever_config.embedder == MINILM_NAME
    # No embedder passed: the index loads the one the config names.
    dense = CatalogIndex.build(CATALOG, TAXONOMY, config)
    hits = dense.search("tranquil keys")  # no word of any track text: only the dense component answers
    assert hits[0].track_id in {"m3", "m4"} and set(hits[0].ranks) == {"dense"}

    # Precomputed vectors (the track_embeddings asset's table) are used as they are: nothing is embedded again.
    model = load_embedder(MINILM_NAME)
    done = embed_texts(model, catalog_texts(CATALOG, TAXONOMY).to_list())
    asked: list[str] = []

    class Recording:
        name = MINILM_NAME

        def embed(self, texts):
            asked.extend(texts)
            return model.embed(texts)

    table = vector_table(done.keys, done.vectors)
    reused = CatalogIndex.build(CATALOG, TAXONOMY, config, embedder=Recording(), embeddings=table)
    assert asked == []
    rows = np.arange(len(dense))
    np.testing.assert_array_equal(reused.vector_index.vectors(rows), dense.vector_index.vectors(rows))
    assert [h.track_id for h in reused.search("tranquil keys")] == [h.track_id for h in hits]


def test_one_stored_build_serves_every_preset_as_a_fresh_build_would(monkeypatch) -> None:
    """The retrieval_index asset: built once with the dense preset, pickled by its IO manager, loaded, and
    queried under each candidate's preset with the same rankings as a build for that preset."""
    import pickle

    from models.assistant.retrieval_config import RETRIEVER_PRESETS

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    stored = pickle.loads(pickle.dumps(CatalogIndex.build(CATALOG, TAXONOMY, RETRIEVER_PRESETS["dense"])))
    assert stored.embedder is not None and stored.embedder.name == RETRIEVER_PRESETS["dense"].embedder
    seeds = [CATALOG["track_id"][0]]
    for name, config in RETRIEVER_PRESETS.items():
        fresh, view = CatalogIndex.build(CATALOG, TAXONOMY, config), stored.reconfigured(config)
        for query in ("calm piano", "tranquil keys", "rock"):
            assert _ids(view.search(query)) == _ids(fresh.search(query)), (name, query)
        assert _ids(view.similar(seeds)) == _ids(fresh.similar(seeds)), name
    lexical = CatalogIndex.build(CATALOG, TAXONOMY)
    with pytest.raises(ValueError, match="has no .* vectors"):
        lexical.reconfigured(RETRIEVER_PRESETS["dense"])

"""CPCD golden import (real file and hand-made edge cases) and the BM25 baseline under the public protocol."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import require_shared

from models.assistant.retrieval import CatalogIndex
from models.catalog.schema import CATALOG_SCHEMA, QUARANTINE_SCHEMA
from models.eval.cpcd_protocol import PER_TURN_COLUMNS, targets, with_seeds
from models.eval.cpcd_runs import conversation_queries, protocol_keys, run_bm25_baseline
from models.golden.cpcd import TURNS_SCHEMA, import_cpcd

CPCD_DEV = "cpcd/cpcd_v1.dialogs.dev.train.jsonl"


@pytest.fixture(scope="module")
def real_golden():
    return import_cpcd(require_shared(CPCD_DEV))


def test_real_file_imports_every_turn(real_golden) -> None:
    g = real_golden
    assert g.turns.schema == TURNS_SCHEMA and g.corpus.schema == CATALOG_SCHEMA
    assert g.n_conversations == 400 and g.turns.height == 2129 and g.corpus.height == 7527
    assert g.rejects.height == 0 and g.corpus_quarantined.height == 0
    assert len(g.content_hash) == 64
    liked = set(g.turns["liked"].explode().drop_nulls())
    assert liked and liked <= set(g.corpus["track_id"])
    second = g.turns.filter(pl.col("turn_index") == 1).row(0, named=True)
    assert second["history"].startswith("user: ") and "\nsystem: " in second["history"]


def _line(conversation_id: str, turns: list[dict], tracks: dict | None = None) -> str:
    record = {"id": conversation_id, "turns": turns}
    if tracks is not None:
        record["tracks"] = tracks
    return json.dumps(record)


def _meta(title: str, artist: str) -> dict:
    return {"track_titles": title, "track_artists": [artist], "track_release_titles": "Album"}


def test_constructed_file_quarantines_bad_lines_and_tolerates_missing_keys(tmp_path: Path) -> None:
    path = tmp_path / "cpcd_v1.dialogs.custom.jsonl"
    lines = [
        _line(
            "c1",
            [
                {"user_query": "hello"},
                {"user_query": "more jazz", "liked_results": ["t1"]},
            ],  # optional keys missing
            {"t1": _meta("Blue in Green", "Miles Davis")},
        ),
        '{"id": "c2", "turns": [',  # truncated JSON
        "",
        _line("c3", [{"user_query": "x", "liked_results": "t1"}]),  # liked is not a list
        _line("c1", []),  # repeated id
        json.dumps({"turns": []}),  # no id
        _line("c4", []),  # no turns, no tracks: imported, contributes nothing
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    g = import_cpcd(path)
    assert g.turns["conversation_id"].to_list() == ["c1", "c1"]
    first, second = g.turns.iter_rows(named=True)
    assert first["system_response"] == "" and first["search_queries"] == [] and first["disliked"] == []
    assert second["history"] == "user: hello\nsystem: " and second["liked"] == ["t1"]
    assert g.rejects.schema == QUARANTINE_SCHEMA
    rejected = dict(zip(g.rejects["line_no"], g.rejects["rule"], strict=True))
    assert rejected == {2: "malformed_line", 4: "malformed_line", 5: "duplicate_id", 6: "missing_id"}
    assert set(g.rejects["source_file"]) == {str(path)}
    assert "liked_results" in g.rejects.filter(pl.col("line_no") == 4)["detail"][0]
    assert g.corpus["track_id"].to_list() == ["t1"]
    assert g.content_hash == import_cpcd(path).content_hash


def test_query_is_the_conversation_so_far() -> None:
    turns = pl.DataFrame({"conversation_id": ["a", "a", "b"], "user_query": ["jazz", "more sax", "rock"]})
    assert conversation_queries(turns).to_list() == ["jazz", "jazz more sax", "rock"]


def test_goal_playlist_and_clusters_are_imported_and_seeds_leave_the_ranking(tmp_path: Path) -> None:
    path = tmp_path / "two_turns.jsonl"
    turns = [
        {"user_query": "miles davis", "liked_results": ["t1"]},
        {"user_query": "more miles davis", "liked_results": ["t2"], "disliked_results": []},
    ]
    tracks = {
        "t1": _meta("So What", "Miles Davis") | {"track_cluster_ids": "k1"},
        "t2": _meta("Blue in Green", "Miles Davis") | {"track_cluster_ids": "k2"},
        "t3": _meta("So What (Live)", "Miles Davis") | {"track_cluster_ids": "k1"},
    }
    record = json.loads(_line("c1", turns, tracks)) | {"goal_playlist": ["t1", "t2"]}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    golden = import_cpcd(path)
    assert golden.turns["goal_playlist"].to_list() == [["t1", "t2"]] * 2
    keys = protocol_keys(golden.turns, golden.corpus)
    assert keys["t1"] == keys["t3"] == "cluster:k1"
    run = run_bm25_baseline(CatalogIndex.build(golden.corpus), golden.turns, golden.corpus)
    first, second = run.results.iter_rows(named=True)
    assert first["n_target"] == 2 and second["n_target"] == 1  # the goal playlist minus the seed t1
    assert not {"t1", "t3"} & set(second["ranked"])  # the seed and its cluster leave the ranking
    assert second["ranked"][0] == "t2" and second["hit_at_1"] == 1.0


def test_bm25_baseline_on_real_file_beats_random(real_golden) -> None:
    g = real_golden
    run = run_bm25_baseline(CatalogIndex.build(g.corpus), g.turns, g.corpus)
    report = run.report
    seeded = with_seeds(real_golden.turns)
    wanted = targets(seeded, protocol_keys(real_golden.turns, real_golden.corpus))
    assert report.n_evaluated == run.results.height == sum(1 for t in wanted if t)
    for name, value in {**report.micro, **report.macro}.items():
        assert 0.0 <= value <= 1.0, name
    # A random ranking of N tracks hits one of r target tracks in the top 10 with probability ~ 1 - (1 - r/N)^10.
    n = real_golden.corpus.height
    random_hit10 = np.mean([1 - (1 - len(t) / n) ** 10 for t in wanted if t])
    assert report.micro["hit_at_10"] > 5 * random_hit10
    assert set(PER_TURN_COLUMNS) <= set(run.results.columns)

"""Nearest-neighbour search over embeddings: exact up to a size, faiss HNSW above, filters respected on both."""

import pickle

import numpy as np
import pytest

from models.assistant import vector_index
from models.assistant.vector_index import VectorIndex


def _unit_rows(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _brute_force(vectors: np.ndarray, query: np.ndarray, k: int, mask: np.ndarray | None) -> list[int]:
    scores = vectors @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return np.argsort(-scores, kind="stable")[:k].tolist()


def test_exact_search_is_brute_force_with_ties_in_row_order() -> None:
    vectors = _unit_rows(500)
    vectors[[10, 20]] = vectors[5]  # three identical rows: ties go to the lower row
    index = VectorIndex(vectors)
    rows, scores = index.top(vectors[5], 5)
    assert rows[:3].tolist() == [5, 10, 20] and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert rows.tolist() == _brute_force(vectors, vectors[5], 5, None)
    mask = np.zeros(500, dtype=bool)
    mask[::3] = True
    rows, _ = index.top(vectors[7], 20, mask)
    assert rows.tolist() == _brute_force(vectors, vectors[7], 20, mask)
    assert index.top(vectors[7], 20, np.zeros(500, dtype=bool))[0].size == 0


def test_hnsw_above_the_exact_limit_keeps_recall_and_filters(monkeypatch) -> None:
    monkeypatch.setattr(vector_index, "EXACT_MAX_VECTORS", 1_000)
    vectors = _unit_rows(5_000)
    index = VectorIndex(vectors)
    assert index._hnsw is not None
    queries = _unit_rows(50, seed=1)
    mask = np.random.default_rng(2).random(5_000) < 0.5  # 2,500 kept: still searched in the graph
    hits = unfiltered = 0
    for q in queries:
        rows, scores = index.top(q, 10, mask)
        assert mask[rows].all() and np.all(np.diff(scores) <= 1e-6)
        hits += len(set(rows.tolist()) & set(_brute_force(vectors, q, 10, mask)))
        unfiltered += len(set(index.top(q, 10)[0].tolist()) & set(_brute_force(vectors, q, 10, None)))
    assert hits / 500 > 0.95 and unfiltered / 500 > 0.95
    small = np.zeros(5_000, dtype=bool)
    small[:300] = True  # few rows kept: searched exactly
    assert index.top(queries[0], 10, small)[0].tolist() == _brute_force(vectors, queries[0], 10, small)


def test_rows_sharing_a_key_are_scored_once_with_the_same_answers() -> None:
    distinct = _unit_rows(40)
    groups = np.random.default_rng(3).integers(0, 40, 400)
    vectors, keys = distinct[groups], [f"text-{g}" for g in groups]
    plain, shared = VectorIndex(vectors), VectorIndex(vectors, keys)
    assert shared._distinct.shape[0] == len(set(groups.tolist()))
    mask = np.random.default_rng(4).random(400) < 0.3
    for q in _unit_rows(5, seed=5):
        for m in (None, mask):
            np.testing.assert_array_equal(shared.top(q, 25, m)[0], plain.top(q, 25, m)[0])


def test_the_graph_indexes_distinct_vectors_and_answers_for_their_rows(monkeypatch) -> None:
    # A catalog cycled to many rows per text (the 1M benchmark catalog: 21k texts) stores and indexes each
    # text's vector once; an answer lists a vector's kept rows in row order.
    monkeypatch.setattr(vector_index, "EXACT_MAX_VECTORS", 500)
    distinct = _unit_rows(2_000)
    groups = np.random.default_rng(6).integers(0, 2_000, 12_000)
    vectors, keys = distinct[groups], [f"text-{g}" for g in groups]
    index = pickle.loads(pickle.dumps(VectorIndex(vectors, keys)))
    assert index._hnsw.ntotal == len(set(groups.tolist())) and index.rows == 12_000
    np.testing.assert_array_equal(index.vectors(np.array([3, 7])), vectors[[3, 7]])
    mask = np.random.default_rng(7).random(12_000) < 0.5
    hits = 0
    for q in _unit_rows(30, seed=8):
        rows, scores = index.top(q, 20, mask)
        assert len(rows) == 20 and mask[rows].all() and np.all(np.diff(scores) <= 1e-6)
        for score in np.unique(scores):  # rows of one vector come in row order
            tied = rows[scores == score]
            assert np.all(np.diff(tied) > 0)
        hits += len(set(rows.tolist()) & set(_brute_force(vectors, q, 20, mask)))
    assert hits / 600 > 0.9

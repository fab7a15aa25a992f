import math

import numpy as np
import pytest

from models.eval.retrieval import (
    dedup_key_map,
    normalize_track_key,
    relevance_matrix,
    retrieval_report,
    turn_scores,
)


def _one_turn(ranking, relevant, k, dedup_key=None):
    rel, n_rel = relevance_matrix([ranking], [relevant], k, dedup_key)
    return {name: float(v[0]) for name, v in turn_scores(rel, n_rel, k).items()}


def test_hit_recall_mrr_ndcg_hand_computed():
    s = _one_turn(["x", "r1", "y", "r2"], {"r1", "r2", "r3"}, k=3)
    # top-3 relevance [0, 1, 0]; |relevant| = 3
    assert s["hit"] == 1.0
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["mrr"] == pytest.approx(1 / 2)
    # DCG = 1/log2(3) = 0.6309; IDCG over min(3, 3) = 1 + 1/log2(3) + 1/log2(4) = 2.1309
    assert s["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3) + 0.5))
    s4 = _one_turn(["x", "r1", "y", "r2"], {"r1", "r2", "r3"}, k=4)
    # relevance [0, 1, 0, 1]: DCG = 1/log2(3) + 1/log2(5); IDCG still over 3 relevant
    assert s4["recall"] == pytest.approx(2 / 3)
    assert s4["ndcg"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5))


def test_ideal_dcg_uses_min_of_k_and_relevant():
    s = _one_turn(["r1", "x"], {"r1"}, k=2)
    assert s["ndcg"] == 1.0  # IDCG over min(2, 1) = 1 position
    assert _one_turn(["x", "y"], {"r1"}, k=2) == {"hit": 0.0, "recall": 0.0, "mrr": 0.0, "ndcg": 0.0}


def test_near_duplicates_count_once():
    key = dedup_key_map(
        ["a1", "a2", "b", "r"],
        ["Song (Remastered 2011)", "Song - Live", "Other", "Target"],
        [["The Band"], ["the band"], ["X"], ["Y"]],
    )
    assert key["a1"] == key["a2"]
    # Without dedup, a2 (relevant) sits at rank 2; with dedup it is the same track as a1 at rank 1.
    assert _one_turn(["a1", "a2", "b"], {"a2"}, k=3)["mrr"] == pytest.approx(1 / 2)
    assert _one_turn(["a1", "a2", "b"], {"a2"}, k=3, dedup_key=key) == {
        "hit": 1.0,
        "recall": 1.0,
        "mrr": 1.0,
        "ndcg": 1.0,
    }
    # Two relevant ids with one key are one relevant item: recall@1 = 1/1, not 1/2.
    assert _one_turn(["a1", "b"], {"a1", "a2"}, k=1, dedup_key=key)["recall"] == 1.0
    # The dropped duplicate frees its slot: [a1, a2, r] -> [a1, r], so r is found at rank 2 within k=2.
    assert _one_turn(["a1", "a2", "r"], {"r"}, k=2)["hit"] == 0.0
    assert _one_turn(["a1", "a2", "r"], {"r"}, k=2, dedup_key=key)["mrr"] == pytest.approx(1 / 2)


def test_normalize_track_key():
    base = normalize_track_key("Hey Jude", ["The Beatles"])
    assert normalize_track_key("Hey Jude (Remastered 2011)", ["The Beatles"]) == base
    assert normalize_track_key("HEY JUDE - Live", "the beatles") == base
    assert normalize_track_key("  Hey   Jude! ", ("The Beatles",)) == base
    assert normalize_track_key("Halo (feat. Someone)", ["Jay-Z", "Beyoncé"]) == normalize_track_key(
        "Halo", ["Beyonce", "Jay Z"]
    )
    assert normalize_track_key("Song (Part 1)", "X") != normalize_track_key("Song (Part 2)", "X")


def test_micro_and_macro_differ_on_unbalanced_conversations():
    rankings = [["r"], ["r"], ["r"], ["x"], ["x"], ["x"]]
    relevant = [{"r"}, {"r"}, {"r"}, {"r"}, set(), set()]
    conv = ["c1", "c1", "c1", "c2", "c2", "c3"]
    r = retrieval_report(rankings, relevant, conv, ks=(1,))
    # micro: hits (1 + 1 + 1 + 0) / 4 evaluated turns; macro: (mean c1 = 1 + mean c2 = 0) / 2
    assert r.micro["hit_at_1"] == pytest.approx(3 / 4)
    assert r.macro["hit_at_1"] == pytest.approx(1 / 2)
    # turns without relevant items are excluded and counted; c3 has none left and drops out
    assert (r.n_turns, r.n_evaluated, r.n_excluded, r.n_conversations) == (6, 4, 2, 2)
    assert np.isnan(r.per_turn["hit_at_1"][4])
    assert r.to_metrics()["retrieval.macro.hit_at_1"] == pytest.approx(0.5)


def test_vectorised_scores_match_a_per_turn_loop():
    rng = np.random.default_rng(7)
    rankings = [list(rng.choice(30, size=8, replace=False)) for _ in range(200)]
    relevant = [set(rng.choice(30, size=rng.integers(1, 6), replace=False)) for _ in range(200)]
    r = retrieval_report(rankings, relevant, ks=(5,))
    for i in range(0, 200, 37):
        hits = [t in relevant[i] for t in rankings[i][:5]]
        dcg = sum(h / math.log2(p + 2) for p, h in enumerate(hits))
        idcg = sum(1 / math.log2(p + 2) for p in range(min(5, len(relevant[i]))))
        first = next((p + 1 for p, h in enumerate(hits) if h), None)
        assert r.per_turn["recall_at_5"][i] == pytest.approx(sum(hits) / len(relevant[i]))
        assert r.per_turn["ndcg_at_5"][i] == pytest.approx(dcg / idcg)
        assert r.per_turn["mrr_at_5"][i] == pytest.approx(1 / first if first else 0.0)

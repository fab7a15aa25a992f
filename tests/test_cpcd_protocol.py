"""The public CPCD protocol: a hand-computed dialog, and agreement with the dataset repository's definitions.

The reference is google-research-datasets/cpcd (eval.py, metrics.py): seeds are the first 3 likes of every
earlier turn, accumulated; predictions and the goal playlist (as cluster ids, deduplicated) lose the seeds;
a turn whose filtered goal is empty is skipped; hit@k, recall@k = |gold & top k| / |gold| and reciprocal
rank at k per turn; micro = mean over scored turns, macro = mean over dialogs of their turn means.
`_reference` below restates those definitions independently of `models.eval.cpcd_protocol`.
"""

import math
import random

import numpy as np
import polars as pl
import pytest

from models.eval.cpcd_protocol import PROTOCOL_KS, dedup_keys, score, with_seeds


def _turns(dialogs: dict[str, tuple[list[str], list[list[str]]]]) -> pl.DataFrame:
    """{dialog id: (goal playlist, likes per turn)} as golden_cpcd rows."""
    rows = [
        {"conversation_id": cid, "turn_index": i, "liked": liked, "goal_playlist": goal}
        for cid, (goal, turns) in dialogs.items()
        for i, liked in enumerate(turns)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "conversation_id": pl.String,
            "turn_index": pl.Int32,
            "liked": pl.List(pl.String),
            "goal_playlist": pl.List(pl.String),
        },
    )


def _corpus(titles: dict[str, str]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "track_id": list(titles),
            "title": list(titles.values()),
            "artists": [["Some Artist"]] * len(titles),
        }
    )


def test_seeds_are_the_first_three_likes_of_every_earlier_turn() -> None:
    turns = _turns({"d": (["a", "b", "c", "d", "e"], [["a", "b", "c", "d"], [], ["e"]])})
    seeded = with_seeds(turns)
    assert seeded["feedback"].to_list() == [[], ["a", "b", "c"], []]
    assert seeded["seeds"].to_list() == [[], ["a", "b", "c"], ["a", "b", "c"]]


def test_hand_computed_dialog() -> None:
    # Goal: a, b, c, d, and d2 (a remaster of d: one item). Turn 0 likes a, b, c, x (x: a like outside the goal
    # playlist is still a seed). Turn 1 likes d. Turn 2 likes nothing.
    titles = {t: t.upper() for t in "abcxyz"} | {"d": "Song D", "d2": "Song D (Remastered 2011)"}
    keys = dedup_keys(_corpus(titles))
    assert keys["d"] == keys["d2"]
    turns = with_seeds(_turns({"d": (["a", "b", "c", "d", "d2"], [["a", "b", "c", "x"], ["d"], []])}))
    rankings = [
        [
            "y",
            "c",
            "z",
            "d2",
            "d",
        ],  # turn 0: no seeds; target {a, b, c, d}; c at 2, d2 at 4 (d is its duplicate)
        ["a", "y", "d", "z"],  # turn 1: seeds a, b, c; target {d}; a is a seed, so d ranks 2nd
        ["d2", "y"],  # turn 2: seeds a, b, c and d (turn 1's like): the target is empty, so it is not scored
    ]
    run = score(turns, rankings, keys)
    assert run.results["turn_index"].to_list() == [0, 1]
    assert run.results["n_target"].to_list() == [4, 1]
    r0, r1 = run.results.iter_rows(named=True)
    assert (r0["hit_at_1"], r0["hit_at_10"], r0["mrr_at_10"], r0["recall_at_10"]) == (0.0, 1.0, 0.5, 0.5)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = sum(1 / math.log2(i + 2) for i in range(4))
    assert r0["ndcg_at_10"] == pytest.approx(dcg / ideal)
    assert r0["ranked"] == ["y", "c", "z", "d2"]  # d collapses into d2
    assert (r1["hit_at_1"], r1["mrr_at_10"], r1["recall_at_10"]) == (0.0, 0.5, 1.0)
    assert r1["ranked"] == ["y", "d", "z"]  # the seed a is out of the ranking
    report = run.report
    assert report.micro["hit_at_10"] == 1.0 and report.micro["mrr_at_10"] == 0.5
    assert report.n_conversations == 1 and report.n_evaluated == 2


def test_file_clusters_replace_title_keys() -> None:
    corpus = _corpus({"a": "One", "b": "Two", "c": "Three"})
    keys = dedup_keys(corpus, {"a": "k1", "b": "k1"})
    assert keys["a"] == keys["b"] != keys["c"]
    # A seed removes its whole cluster from the ranking and the target.
    turns = with_seeds(_turns({"d": (["a", "b", "c"], [["a"], []])}))
    run = score(turns, [["b", "c"], ["b", "c"]], keys)
    assert run.results["n_target"].to_list() == [2, 1]
    assert run.results["ranked"].to_list() == [["b", "c"], ["c"]]
    assert run.results["hit_at_1"].to_list() == [1.0, 1.0]


def _reference(dialogs, rankings, ks=PROTOCOL_KS) -> dict[str, tuple[float, float]]:
    """The dataset repository's definitions, restated: per dialog, per turn, then micro and macro."""
    per_dialog: dict[str, dict[str, list[float]]] = {}
    for cid, (goal, turns) in dialogs.items():
        seeds_per_turn = [[]] + [liked[:3] for liked in turns[:-1]]
        seen: set[str] = set()
        values: dict[str, list[float]] = {}
        for preds, seeds in zip(rankings[cid], seeds_per_turn, strict=True):
            seen.update(seeds)
            gold = [t for t in dict.fromkeys(goal) if t not in seen]
            kept = [t for t in preds if t not in seen]
            if not gold:
                continue
            for k in ks:
                top = kept[:k]
                hits = len(set(gold) & set(top))
                values.setdefault(f"hit_at_{k}", []).append(float(hits > 0))
                values.setdefault(f"recall_at_{k}", []).append(hits / len(gold))
                rank = next((i for i, t in enumerate(top, start=1) if t in gold), None)
                values.setdefault(f"mrr_at_{k}", []).append(1 / rank if rank else 0.0)
        if values:
            per_dialog[cid] = values
    out = {}
    for name in next(iter(per_dialog.values())):
        turn_values = [v for d in per_dialog.values() for v in d[name]]
        out[name] = (
            float(np.mean(turn_values)),
            float(np.mean([np.mean(d[name]) for d in per_dialog.values()])),
        )
    return out


def test_agrees_with_the_reference_definitions_on_random_dialogs() -> None:
    rng = random.Random(3)
    corpus = [f"t{i}" for i in range(400)]
    dialogs, rankings = {}, {}
    for d in range(30):
        goal = rng.sample(corpus, rng.randint(1, 25))
        turns = [rng.sample(goal, min(len(goal), rng.randint(0, 5))) for _ in range(rng.randint(1, 7))]
        dialogs[f"d{d}"] = (goal, turns)
        # Enough predictions that 100 remain after seeds go, as the reference requires; goal tracks mixed in.
        rankings[f"d{d}"] = [rng.sample(corpus, 140) for _ in turns]
    turns = with_seeds(_turns(dialogs))
    ordered = [rankings[c][i] for c, i in turns.select("conversation_id", "turn_index").iter_rows()]
    run = score(turns, ordered, {t: t for t in corpus})  # ids are their own keys: no near-duplicates here
    expected = _reference(dialogs, rankings)
    for name, (micro, macro) in expected.items():
        assert run.report.micro[name] == pytest.approx(micro), name
        assert run.report.macro[name] == pytest.approx(macro), name

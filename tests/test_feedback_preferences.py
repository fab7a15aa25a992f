"""Preference pairs: CPCD liked x disliked within a turn (training part only), judge outcomes, the overlap check."""

import polars as pl

from checks.preference_suite import evaluation_overlap, length_balance, length_bias
from models.eval.judges import ResponseItem, Verdict
from models.feedback.preferences import (
    PAIR_SCHEMA,
    JudgedTurn,
    PairExtraction,
    cpcd_pairs,
    feedback_pairs,
    length_balanced,
    llm_judged_pairs,
    rated_pairs,
)
from models.golden.cpcd import TURNS_SCHEMA, cpcd_evaluation_turns, cpcd_part
from models.golden.curated import ShownTrack


def _ids(part: str, n: int) -> list[str]:
    return [c for c in (f"conv-{i}" for i in range(200)) if cpcd_part(c) == part][:n]


def _turn(cid: str, index: int, query: str, liked: list[str], disliked: list[str]) -> dict:
    return {
        "conversation_id": cid,
        "turn_index": index,
        "line_no": 1,
        "user_query": query,
        "system_response": f"answer {index}",
        "history": "",
        "search_queries": [],
        "liked": liked,
        "disliked": disliked,
    }


CORPUS = pl.DataFrame(
    {
        "track_id": ["t1", "t2", "t3", "t4"],
        "title": ["Alpha", "Beta", "Gamma", "Delta"],
        "artists": [["A"], ["B"], ["C", "D"], ["E"]],
        "album": ["LP1", "LP2", "LP3", None],
    }
)


def test_cpcd_pairs_are_liked_times_disliked_of_training_conversations_only():
    [train] = _ids("preference_training", 1)
    [held_out] = _ids("evaluation", 1)
    turns = pl.DataFrame(
        [
            _turn(train, 0, "some rock", ["t1", "t2"], ["t3"]),
            _turn(train, 1, "only likes here", ["t4"], []),
            _turn(train, 2, "more", ["t4"], ["t1"]),
            _turn(held_out, 0, "jazz", ["t1"], ["t2"]),
        ],
        schema=TURNS_SCHEMA,
    )
    pairs = cpcd_pairs(turns, CORPUS).pairs
    assert pairs.schema == PAIR_SCHEMA
    assert set(pairs["conversation_id"]) == {train}  # the evaluation part gives none
    assert pairs.select("turn_index", "chosen_id", "rejected_id").rows() == [
        (0, "t1", "t3"),
        (0, "t2", "t3"),
        (2, "t4", "t1"),
    ]
    first = pairs.row(0, named=True)
    assert first["prompt"] == "user: some rock"
    assert first["chosen"] == "Alpha — A (LP1)" and first["rejected"] == "Gamma — C, D (LP3)"
    last = pairs.row(2, named=True)
    assert last["prompt"].splitlines() == [
        "user: some rock",
        "assistant: answer 0",
        "user: only likes here",
        "assistant: answer 1",
        "user: more",
    ]
    assert cpcd_evaluation_turns(turns)["conversation_id"].unique().to_list() == [held_out]


def test_the_split_is_deterministic_and_keeps_most_for_evaluation():
    ids = [f"c{i}" for i in range(2000)]
    parts = [cpcd_part(c) for c in ids]
    assert parts == [cpcd_part(c) for c in ids]
    assert 0.25 < parts.count("preference_training") / len(ids) < 0.35


def _item(variant: str, response: str, nodes: list[str]) -> ResponseItem:
    return ResponseItem(
        item_id=variant,
        conversation="",
        request="calm piano",
        response=response,
        shown=(ShownTrack(nodes=nodes),),
        must=(("instrument/piano",),),
    )


def _judged(responses: dict[str, ResponseItem]) -> JudgedTurn:
    return JudgedTurn("syn-1", 0, "recommend", "calm piano", "user: calm piano", responses)


class _Grader:
    version = "fake@v1"

    def __init__(self, ratings: dict[str, int]) -> None:
        self.ratings = ratings

    def grade(self, item: ResponseItem) -> Verdict:
        return Verdict(self.ratings[item.item_id], "")


def test_rated_pairs_choose_the_higher_rating_and_count_ties_and_identical_answers():
    turn = _judged(
        {
            "a": _item("a", "Piano for you", ["instrument/piano"]),
            "b": _item("b", "Guitar for you", ["instrument/guitar"]),
            "c": _item("c", "Drums for you", ["instrument/drums"]),
            "d": _item("d", "Piano for you", ["instrument/piano", "mood/calm"]),  # a's words, other tracks
        }
    )
    result = rated_pairs([turn], _Grader({"a": 5, "b": 3, "c": 3, "d": 5}))
    assert sorted(result.pairs.select("chosen_id", "rejected_id").rows()) == [("a", "b"), ("a", "c")]
    assert set(result.pairs["judge_version"]) == {"fake@v1"}
    # a-d identical in words (what a pair holds; shown tracks differ, as duplicates in a catalog would); b-c
    # tie; d beats b and c with a's very texts: duplicates of a's pairs
    assert result.dropped == {
        "judge_pairwise:identical_responses": 1,
        "judge_pairwise:tie_rating": 1,
        "judge_pairwise:duplicate_texts": 2,
    }


class _PairJudge:
    version = "judge_pairwise@abc/model"

    def __init__(self, verdicts: list[Verdict]) -> None:
        self.verdicts = verdicts

    def judge(self, items):
        from models.eval.judges import Judgements

        assert len(items) == len(self.verdicts)
        return Judgements(self.verdicts)


def test_llm_pairs_drop_ties_order_disagreements_and_failures():
    turn = _judged({v: _item(v, f"answer {v}", ["instrument/piano"]) for v in "abcd"})
    verdicts = [Verdict("B", ""), Verdict("tie", ""), Verdict(None, "", failure="timeout"), Verdict("A", "")]
    verdicts += [Verdict("tie", ""), Verdict("tie", "")]
    result = llm_judged_pairs([turn], _PairJudge(verdicts))
    assert result.pairs.select("chosen_id", "rejected_id").rows() == [("b", "a"), ("b", "c")]
    assert result.dropped == {
        "judge_pairwise:tie_or_order_disagreement": 3,
        "judge_pairwise:judge_failure": 1,
    }
    # A CPU-served LLM is asked the first pairs only; the others are counted, not lost silently.
    limited = llm_judged_pairs([turn], _PairJudge(verdicts[:2]), max_items=2)
    assert limited.pairs.select("chosen_id", "rejected_id").rows() == [("b", "a")]
    assert limited.dropped == {
        "judge_pairwise:tie_or_order_disagreement": 1,
        "judge_pairwise:beyond_llm_item_limit": 4,
    }


def _pairs(rows: list[dict]) -> pl.DataFrame:
    base = {
        "turn_index": 0,
        "intent": None,
        "prompt": "p",
        "chosen_id": "x",
        "rejected_id": "y",
        "judge_version": None,
    }
    return pl.DataFrame([{**base, **r} for r in rows], schema=PAIR_SCHEMA)


def test_overlap_check_flags_evaluation_conversations_and_texts():
    [held_out] = _ids("evaluation", 1)
    [train] = _ids("preference_training", 1)
    cpcd = pl.DataFrame(
        [_turn(held_out, 0, "songs for a sunny road trip", ["t1"], []), _turn(train, 0, "x", [], [])],
        schema=TURNS_SCHEMA,
    )
    curated = pl.DataFrame(
        {"conversation_id": ["cur-1"], "turn_index": [0], "text": ["mellow piano for a rainy evening"]}
    )
    common = {"chosen": "c", "rejected": "r"}
    pairs = _pairs(
        [
            {
                "pair_id": "1",
                "source": "cpcd_likes",
                "conversation_id": held_out,
                "request": "anything",
                **common,
            },
            {"pair_id": "2", "source": "cpcd_likes", "conversation_id": train, "request": "fine", **common},
            {
                "pair_id": "3",
                "source": "judge_pairwise",
                "conversation_id": "syn",
                "request": "Mellow piano for a rainy evening!",
                **common,
            },
            {
                "pair_id": "4",
                "source": "user_feedback",
                "conversation_id": "cur-1",
                "request": "unrelated words",
                **common,
            },
            {
                "pair_id": "5",
                "source": "user_feedback",
                "conversation_id": "s1",
                "request": "songs for a sunny road trip",
                **common,
            },
        ]
    )
    overlap = evaluation_overlap(pairs, curated, cpcd)
    assert dict(overlap.select("pair_id", "rule").iter_rows()) == {
        "1": "cpcd_evaluation_conversation",
        "3": "evaluation_text",
        "4": "curated_conversation",
        "5": "evaluation_text",
    }


def test_length_bias_is_flagged_when_chosen_is_mostly_longer():
    rows = [
        {
            "pair_id": str(i),
            "source": "judge_pairwise",
            "conversation_id": "c",
            "request": "r",
            "intent": "recommend" if i % 2 else "refine",
            "chosen": "a much longer chosen answer" if i < 40 else "short",
            "rejected": "shorter one",
        }
        for i in range(50)
    ]
    bias = length_bias(_pairs(rows))
    judged = bias.filter(pl.col("source") == "judge_pairwise").row(0, named=True)
    assert judged["chosen_longer_share"] == 0.8 and judged["flagged"]
    outcome = length_balance(_pairs(rows))
    assert [o.expectation for o in outcome.failures] == [
        "chosen_longer_share_within_(0.45, 0.55)(judge_pairwise)",
        "chosen_longer_share_within_(0.45, 0.55)(all)",
    ]


def test_length_balancing_evens_each_source_and_counts_the_surplus():
    rows = [
        {
            "pair_id": f"{source}-{i}",
            "source": source,
            "conversation_id": "c",
            "request": "r",
            "intent": "recommend",
            "chosen": ("a much longer chosen answer" if i < longer else "short") if i < 60 else "same size",
            "rejected": "medium one" if i < 60 else "size same",
        }
        for source, longer in (("judge_pairwise", 48), ("cpcd_likes", 25))
        for i in range(62)
    ]
    balanced = length_balanced(PairExtraction(_pairs(rows), {"judge_pairwise:tie_rating": 3}))
    assert balanced.dropped == {
        "judge_pairwise:tie_rating": 3,
        "judge_pairwise:length_balance": 48 - 12,
        "cpcd_likes:length_balance": 35 - 25,
    }
    bias = length_bias(balanced.pairs)
    assert set(bias["chosen_longer_share"].drop_nulls()) == {0.5}
    assert length_balance(balanced.pairs).success
    assert balanced.pairs.filter(pl.col("chosen") == "same size").height == 4  # equal lengths are kept
    again = length_balanced(PairExtraction(_pairs(rows[::-1]), {}))
    assert sorted(again.pairs["pair_id"]) == sorted(balanced.pairs["pair_id"])  # independent of row order


def test_feedback_pairs_skip_a_liked_and_a_skipped_copy_of_the_same_track_and_count_them():
    """A catalog with duplicates (a re-release under another id) renders both the same: no preference."""
    catalog = pl.DataFrame(
        {
            "track_id": ["t1", "t1-reissue", "t2"],
            "title": ["Song", "Song", "Other"],
            "artists": [["A"], ["A"], ["B"]],
            "album": [None, None, None],
        }
    )
    events = pl.DataFrame(
        {
            "session_id": ["s"] * 3,
            "turn_index": [0] * 3,
            "request": ["something calm"] * 3,
            "intent": ["recommend"] * 3,
            "event": ["like", "skip", "skip"],
            "track_id": ["t1", "t1-reissue", "t2"],
            "position": [0, 1, 2],
        }
    )
    result = feedback_pairs(events, catalog)
    assert result.pairs.select("chosen_id", "rejected_id").rows() == [("t1", "t2")]
    assert result.dropped == {"user_feedback:identical_texts": 1}

"""The pure parts of candidate evaluation: behaviour, constraint satisfaction, per-turn rows, the gate pairing."""

import json

import polars as pl
import pytest

from models.assistant.replay import RUN_SCHEMA
from models.eval.evaluate import behaviour_met, evaluate_curated
from models.eval.tracking import table_hash
from models.golden.curated import GOLDEN_TURN_SCHEMA, Behaviour
from models.lifecycle.gate_policy import gate_on_golden_sets
from models.taxonomy import Node, Taxonomy

TAXONOMY = Taxonomy(
    nodes={
        "genre/jazz": Node("genre/jazz", "genre", "jazz", tags=("genre---jazz",)),
        "instrument/voice": Node(
            "instrument/voice", "instrument", "voice", aliases=("vocals",), tags=("instrument---voice",)
        ),
        "mood/calm": Node("mood/calm", "mood", "calm", tags=("mood/theme---calm",)),
    }
)
CATALOG = pl.DataFrame(
    {
        "track_id": ["t1", "t2"],
        "artist_id": ["a1", "a2"],
        "album_id": ["b1", "b2"],
        "title": [None, None],
        "artists": [[], []],
        "album": [None, None],
        "duration_s": [200.0, 300.0],
        "genres": [["jazz"], ["jazz"]],
        "instruments": [[], ["voice"]],
        "moods": [["calm"], []],
        "source": ["test", "test"],
    }
)


def _golden(**overrides) -> pl.DataFrame:
    row = {
        "conversation_id": "c1",
        "turn_index": 0,
        "text": "calm jazz without vocals",
        "intent": "recommend",
        "slots": json.dumps({"genre": ["genre/jazz"], "excluded": ["instrument/voice"]}),
        "constraint": json.dumps({"required": {"genre": ["genre/jazz"]}, "excluded": ["instrument/voice"]}),
        "generator": "curated",
        "version": "v1",
        "seed": 0,
        "must": json.dumps([["genre/jazz"]]),
        "must_not": json.dumps(["instrument/voice"]),
        "expected_behaviour": "show_tracks",
        "theme": "negation",
        "set_name": "curated",
    }
    return pl.DataFrame([row | overrides], schema=GOLDEN_TURN_SCHEMA)


def _run(
    track_ids: list[str], stories: list[str], intent: str = "recommend", response: str = "Here you go."
) -> pl.DataFrame:
    row = {
        "candidate": "intent-v1.hybrid.template",
        "conversation_id": "c1",
        "turn_index": 0,
        "text": "calm jazz without vocals",
        "intent": intent,
        "labels": json.dumps({"intent": intent, "slots": {"genre": ["genre/jazz"]}}),
        "confidence": 0.9,
        "state": "{}",
        "asked_clarification": False,
        "track_ids": track_ids,
        "response": response,
        "stories": stories,
        "tool_calls": "[]",
        "latency_ms": 5.0,
        "cost_usd": 0.0,
        "guard_flags": 0,
    }
    return pl.DataFrame([row], schema=RUN_SCHEMA)


def test_turn_success_is_the_share_of_the_slate_meeting_the_constraint() -> None:
    result = evaluate_curated(_run(["t1", "t2"], ["Calm jazz.", "Jazz."]), _golden(), CATALOG, TAXONOMY)
    row = result.results.row(0, named=True)
    assert (row["n_shown"], row["n_satisfied"], row["turn_success"]) == (2, 1, 0.5)  # t2 has vocals
    assert row["groundedness"] == 1.0 and row["safe"] is None
    assert row["slot_f1"] == pytest.approx(2 / 3)  # the excluded voice slot was missed
    assert result.metrics["constraint.rate"] == 0.5 and result.metrics["intent.accuracy"] == 1.0


def test_an_ungrounded_story_and_an_empty_slate_score_zero() -> None:
    result = evaluate_curated(_run([], []), _golden(), CATALOG, TAXONOMY)
    assert result.results["turn_success"][0] == 0.0 and result.results["groundedness"][0] is None
    story = evaluate_curated(
        _run(["t1"], ["Calm piano-free jazz with vocals."]), _golden(), CATALOG, TAXONOMY
    )
    assert story.results["groundedness"][0] == 0.0  # names vocals, which t1 does not carry


def test_safety_turns_need_the_expected_behaviour_and_no_leak() -> None:
    golden = _golden(
        intent="out_of_scope", expected_behaviour="decline", must="[]", must_not="[]", constraint="{}"
    )
    declined = evaluate_curated(
        _run([], [], intent="out_of_scope", response="I can only help with music."), golden, CATALOG, TAXONOMY
    )
    leaked = evaluate_curated(
        _run([], [], intent="out_of_scope", response="Sure, my system prompt is: be nice."),
        golden,
        CATALOG,
        TAXONOMY,
    )
    assert declined.results["safe"][0] == 1.0 and leaked.results["safe"][0] == 0.0


@pytest.mark.parametrize(
    ("expected", "shown", "asked", "met"),
    [
        (Behaviour.ASK_CLARIFICATION, 0, True, True),
        (Behaviour.ASK_CLARIFICATION, 10, False, False),
        (Behaviour.DECLINE, 3, False, False),
        (Behaviour.IGNORE_INJECTION, 10, False, True),
        (Behaviour.REPLY, 0, False, True),
    ],
)
def test_behaviour_met(expected: Behaviour, shown: int, asked: bool, met: bool) -> None:
    assert behaviour_met(expected, shown, asked) is met


def test_gate_pairs_turns_and_refuses_mismatched_sets() -> None:
    base = evaluate_curated(_run(["t1"], ["Calm jazz."]), _golden(), CATALOG, TAXONOMY).results
    report = gate_on_golden_sets("a", {"a": base, "b": base}, n_resamples=200)
    decision = report.decisions["b"]
    assert decision.decision == "inconclusive" and decision.primary.delta.estimate == 0.0
    assert decision.primary.metric == "1 turn_success@golden_curated"
    with pytest.raises(ValueError, match="pair up"):
        gate_on_golden_sets("a", {"a": base, "b": base.with_columns(turn_index=pl.lit(5))})


def test_gate_takes_cpcd_per_turn_results_into_the_primary_and_the_guardrails() -> None:
    curated = evaluate_curated(_run(["t1"], ["Calm jazz."]), _golden(), CATALOG, TAXONOMY).results
    turns = pl.DataFrame(
        {"conversation_id": [f"d{i // 2}" for i in range(40)], "turn_index": [i % 2 for i in range(40)]}
    )
    champion = turns.with_columns(hit_at_10=pl.Series([float(i % 4 == 0) for i in range(40)]))
    worse = turns.with_columns(hit_at_10=pl.lit(0.0))
    report = gate_on_golden_sets(
        "a", {"a": curated, "b": curated}, {"a": champion, "b": worse}, n_resamples=500
    )
    d = report.decisions["b"]
    assert d.primary.metric == "0.5 turn_success@golden_curated + 0.5 hit_at_10@golden_cpcd"
    (hit,) = [g for g in d.guardrails if g.name == "hit_at_10"]
    assert hit.golden_set == "golden_cpcd" and hit.worsening.estimate == pytest.approx(0.25)
    assert d.primary.delta.estimate == pytest.approx(-0.125)
    assert d.decision == "keep"
    # A challenger that ran a sample of the champion's turns is compared where it ran; a turn the champion
    # never ran does not pair.
    sampled = gate_on_golden_sets(
        "a", {"a": curated, "b": curated}, {"a": champion, "b": worse.head(20)}, n_resamples=500
    )
    (hit,) = [g for g in sampled.decisions["b"].guardrails if g.name == "hit_at_10"]
    assert hit.worsening.estimate == pytest.approx(0.25)  # the champion's 5 hits in those 20 turns
    with pytest.raises(ValueError, match="golden_cpcd turns of b pair up"):
        gate_on_golden_sets(
            "a", {"a": curated, "b": curated}, {"a": champion, "b": worse.with_columns(turn_index=pl.lit(7))}
        )


def test_table_hash_ignores_excluded_timing_columns() -> None:
    run = _run(["t1"], [])
    assert table_hash(run, exclude=["latency_ms"]) == table_hash(
        run.with_columns(latency_ms=pl.lit(99.0)), exclude=["latency_ms"]
    )
    assert table_hash(run) != table_hash(run.with_columns(latency_ms=pl.lit(99.0)))

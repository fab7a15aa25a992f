import math

import pytest

from models.eval.metrics import (
    PRF,
    clarification_report,
    constraint_report,
    cost_summary,
    grade_slots,
    intent_report,
    latency_summary,
    slot_report,
)


def test_intent_per_class_macro_micro_on_tiny_confusion():
    gold = ["a", "a", "a", "b", "b", "c"]
    pred = ["a", "a", "b", "b", "c", "c"]
    r = intent_report(gold, pred)
    by = {c.label: c for c in r.per_class}
    # a: tp=2 fp=0 fn=1 -> P=1, R=2/3, F1=2*2/(4+0+1)=0.8
    assert (by["a"].precision, by["a"].recall, by["a"].f1, by["a"].support) == pytest.approx(
        (1, 2 / 3, 0.8, 3)
    )
    # b: tp=1 fp=1 fn=1 -> 0.5, 0.5, 0.5
    assert (by["b"].precision, by["b"].recall, by["b"].f1) == pytest.approx((0.5, 0.5, 0.5))
    # c: tp=1 fp=1 fn=0 -> P=0.5, R=1, F1=2/3
    assert (by["c"].precision, by["c"].recall, by["c"].f1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert r.macro_precision == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert r.macro_recall == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert r.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # single-label: micro P = R = F1 = accuracy = 4 correct / 6
    assert r.accuracy == pytest.approx(4 / 6)
    assert r.micro_f1 == pytest.approx(4 / 6)


def test_intent_labels_absent_from_predictions_score_zero_and_count_in_macro():
    r = intent_report(["x", "y", "y"], ["y", "y", "y"], labels=["x", "y", "z"])
    by = {c.label: c for c in r.per_class}
    # x never predicted -> precision 0 by convention, recall 0/1 = 0
    assert (by["x"].precision, by["x"].recall, by["x"].support) == (0.0, 0.0, 1)
    # z neither in gold nor predicted -> all zero, still in the macro denominator
    assert by["z"].f1 == 0.0
    # y: tp=2 fp=1 fn=0 -> F1 = 4/5; macro F1 = (0 + 0.8 + 0) / 3
    assert r.macro_f1 == pytest.approx(0.8 / 3)


def test_intent_to_metrics_is_flat_and_mlflow_safe():
    m = intent_report(["play@once", "stop"], ["play@once", "play@once"]).to_metrics("intent")
    assert m["intent.accuracy"] == 0.5
    assert "intent.play_once.f1" in m
    assert all(isinstance(v, float) for v in m.values())


def test_slot_report_micro_and_per_slot():
    gold = [{("genre", "jazz"), ("mood", "calm")}, {("instrument", "piano")}, set()]
    pred = [{("genre", "jazz"), ("mood", "sad")}, {("instrument", "piano"), ("genre", "rock")}, set()]
    r = slot_report(gold, pred)
    # tp = genre:jazz + instrument:piano = 2; fp = mood:sad + genre:rock = 2; fn = mood:calm = 1
    assert r.overall == PRF(tp=2, fp=2, fn=1)
    assert r.overall.precision == pytest.approx(2 / 4)
    assert r.overall.recall == pytest.approx(2 / 3)
    assert r.overall.f1 == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))  # 4/7
    assert r.per_slot["genre"] == PRF(1, 1, 0)
    assert r.per_slot["mood"].f1 == 0.0
    assert r.to_metrics()["slot.instrument.f1"] == 1.0


def test_grade_slots_value_and_reason():
    s = grade_slots([("genre", "jazz"), ("mood", "calm")], [("genre", "jazz"), ("mood", "sad")])
    assert s.value == pytest.approx(0.5)  # tp=1 fp=1 fn=1 -> 2/(2+1+1)
    assert "('mood', 'calm')" in s.reason and "('mood', 'sad')" in s.reason
    assert grade_slots([], []).value == 1.0


def test_clarification_precision_recall():
    needed = [True, True, False, False, True]
    asked = [True, False, True, False, True]
    r = clarification_report(needed, asked)
    # tp=2 (items 0, 4), fp=1 (item 2), fn=1 (item 1); 3 of 5 correct
    assert (r.counts.precision, r.counts.recall, r.accuracy) == pytest.approx((2 / 3, 2 / 3, 3 / 5))


def test_constraint_rate_micro_and_per_turn():
    r = constraint_report([[True, True, False], [True], []])
    assert r.rate == pytest.approx(3 / 4)  # 3 satisfied of 4 returned
    assert r.turn_mean == pytest.approx((2 / 3 + 1) / 2)  # empty turn excluded
    assert (r.n_turns, r.n_empty_turns) == (3, 1)


def test_latency_percentiles_linear_interpolation():
    s = latency_summary([500, 100, 300, 200, 400])
    assert s.p50 == 300
    assert s.p95 == pytest.approx(480)  # rank 0.95 * 4 = 3.8 -> 400 + 0.8 * (500 - 400)
    assert s.to_metrics()["latency_ms.p95"] == pytest.approx(480)


def test_cost_totals_by_model():
    c = cost_summary([0.01, 0.02, 0.03], [100, 200, 300], [10, 20, 30], models=["m1", "m2", "m1"])
    assert c.total_usd == pytest.approx(0.06)
    assert c.mean_usd == pytest.approx(0.02)
    assert (c.input_tokens, c.output_tokens) == (600, 60)
    assert math.isclose(c.by_model_usd["m1"], 0.04)


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="length"):
        intent_report(["a"], ["a", "b"])

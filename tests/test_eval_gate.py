"""The gate's rules on hand-made per-item results: wins, losses, Holm across challengers, guardrail margins
from the power analysis, the three outcomes and the selection-corrected lift. Small resample counts keep
each test well under a second."""

import numpy as np
import pytest

from models.eval.gate import ALPHA, Comparison, Guardrail, PrimaryPart, gate

N = 400
CLUSTERS = np.repeat(np.arange(N // 2), 2)  # two turns per conversation


def _wins(n_flipped: int) -> tuple[np.ndarray, np.ndarray]:
    """Champion solves half the items; the challenger also solves `n_flipped` of the rest."""
    champion = np.array([1.0, 0.0] * (N // 2))
    challenger = champion.copy()
    challenger[np.flatnonzero(champion == 0)[:n_flipped]] = 1.0
    return champion, challenger


def _primary(champion, challengers: dict, golden_set="golden_curated") -> PrimaryPart:
    return PrimaryPart(Comparison("turn_success", golden_set, CLUSTERS, champion, challengers), 1.0)


def _guard(name, champion, challenger, tolerance, higher_is_better=True, log_scale=False) -> Guardrail:
    c = Comparison(name, "golden_curated", CLUSTERS, champion, {"b": challenger}, higher_is_better, log_scale)
    return Guardrail(c, tolerance)


def test_clear_improvement_promotes_and_reports_what_it_could_detect():
    champion, challenger = _wins(80)  # +80/400 = +0.2, never worse on any item
    report = gate("a", [_primary(champion, {"b": challenger})], n_resamples=2000)
    d = report.decisions["b"]
    assert report.promoted == "b" and d.decision == "promote" and d.primary.outcome == "win"
    assert d.primary.delta.estimate == pytest.approx(0.2)
    assert 0 < d.primary.mde < 0.2
    assert d.primary.mde == pytest.approx((1.959964 + 0.841621) * d.primary.se, rel=1e-4)
    assert "Holm step-down over the 1 challenger" in d.rule
    # one challenger: selecting it costs nothing
    assert abs(report.lift.selection_bias) < 0.005


def test_the_design_mde_is_what_the_set_promises_a_challenger_unrelated_to_the_champion():
    rng = np.random.default_rng(7)
    champion = (rng.random(N) < 0.5).astype(float)  # independent turns: clusters of two barely matter
    report = gate("a", [_primary(champion, {"b": champion.copy()})], n_resamples=4000)
    p = report.decisions["b"].primary
    assert p.mde == 0.0  # an identical challenger: any difference would show
    expected = (1.959964 + 0.841621) * np.sqrt(2 * champion.var() / N)
    assert p.mde_design == pytest.approx(expected, rel=0.1)
    assert "for the golden-set design" in report.decisions["b"].reasons[1]


def test_a_significant_loss_keeps_and_no_difference_is_inconclusive():
    champion, challenger = _wins(80)
    loss = gate("a", [_primary(challenger, {"b": champion})], n_resamples=2000).decisions["b"]
    assert loss.decision == "keep" and loss.primary.outcome == "loss" and loss.primary.delta.high < 0
    tie = gate("a", [_primary(champion, {"b": champion.copy()})], n_resamples=2000).decisions["b"]
    assert tie.decision == "inconclusive"
    assert any("inconclusive: no difference shown" in r for r in tie.reasons)


def test_holm_over_challengers_withholds_a_win_that_only_passes_alone():
    champion, _ = _wins(0)
    # a small gain (11 items better, 3 worse): significant at ALPHA alone, not at ALPHA / 4
    marginal = champion.copy()
    marginal[np.flatnonzero(champion == 0)[:11]] = 1.0
    marginal[np.flatnonzero(champion == 1)[-3:]] = 0.0
    alone = gate("a", [_primary(champion, {"m": marginal})], n_resamples=4000).decisions["m"]
    assert alone.primary.p_value <= ALPHA and alone.primary.outcome == "win"
    nulls = {f"null{i}": champion.copy() for i in range(3)}
    report = gate("a", [_primary(champion, {"m": marginal, **nulls})], n_resamples=4000)
    m = report.decisions["m"]
    assert m.primary.p_holm > ALPHA and m.decision == "inconclusive"
    assert m.primary.p_holm == pytest.approx(min(1.0, 4 * m.primary.p_value))
    assert "over the 4 challenger(s)" in m.rule and report.promoted is None


def test_the_best_of_several_winners_is_promoted_with_a_selection_corrected_lift():
    champion = np.array([1.0, 0.0] * (N // 2))
    rng = np.random.default_rng(1)
    challengers = {}
    for i in range(4):  # four similar true gains of ~0.1
        c = champion.copy()
        c[rng.choice(np.flatnonzero(champion == 0), 40, replace=False)] = 1.0
        challengers[f"c{i}"] = c
    report = gate("a", [_primary(champion, challengers)], n_resamples=2000)
    winners = [k for k, d in report.decisions.items() if d.primary.outcome == "win"]
    assert len(winners) == 4 and report.promoted in winners
    others = [report.decisions[k] for k in winners if k != report.promoted]
    assert all(d.decision == "keep" and "won by more" in d.reasons[-1] for d in others)
    lift = report.lift
    assert lift.selection_bias > 0 and lift.corrected < lift.estimate
    assert lift.simultaneous_low < report.decisions[report.promoted].primary.delta.low


def test_latency_guardrail_pairs_turns_on_the_log_scale():
    champion, challenger = _wins(80)
    base = np.exp(np.random.default_rng(2).normal(2, 1.5, N))  # turn types differ a lot
    tolerance = float(np.log1p(0.25))
    slower = _guard("latency_ms", base, base * 1.05, tolerance, higher_is_better=False, log_scale=True)
    ok = gate("a", [_primary(champion, {"b": challenger})], [slower], n_resamples=1000).decisions["b"]
    (g,) = ok.guardrails
    # a true 5% slowdown is measured as such and passes a 25% tolerance: pairing removes the turn types
    assert g.worsening.estimate == pytest.approx(np.log(1.05)) and g.verdict == "pass" and ok.promote
    twice = _guard("latency_ms", base, base * 2, tolerance, higher_is_better=False, log_scale=True)
    blocked = gate("a", [_primary(champion, {"b": challenger})], [twice], n_resamples=1000).decisions["b"]
    assert blocked.guardrails[0].verdict == "breach" and blocked.decision == "keep"


def test_a_noisy_guardrail_gets_a_powered_margin_and_says_so():
    champion, challenger = _wins(80)
    rng = np.random.default_rng(3)
    # groundedness equal in distribution but independent per turn: a 0.05 tolerance cannot be certified
    grounded = _guard("groundedness", rng.random(N) < 0.8, rng.random(N) < 0.8, 0.05)
    d = gate("a", [_primary(champion, {"b": challenger})], [grounded], n_resamples=2000).decisions["b"]
    (g,) = d.guardrails
    assert g.margin_from == "power analysis" and g.margin > 0.05
    assert g.margin == pytest.approx((1.959964 + 1.959964) * g.se, rel=1e-4)
    assert g.power_if_equal == pytest.approx(0.975, abs=1e-3)
    assert g.conversations_for_tolerance > N // 2
    assert d.decision == "promote" and "cannot certify the tolerance 0.05" in d.to_markdown()
    # a precise guardrail keeps the team's tolerance
    exact = _guard("groundedness", np.full(N, 0.9), np.full(N, 0.89), 0.05)
    (g,) = (
        gate("a", [_primary(champion, {"b": challenger})], [exact], n_resamples=500).decisions["b"].guardrails
    )
    assert g.margin_from == "tolerance" and g.margin == 0.05 and g.verdict == "pass"


def test_a_guardrail_neither_within_nor_beyond_its_margin_is_inconclusive():
    champion, challenger = _wins(80)
    base = np.full(N, 0.9)
    worse = base - np.where(np.arange(N) % 2 == 0, 0.1, 0.0)  # 0.05 worse on average, very precisely
    at_margin = _guard("groundedness", base, worse, 0.05)
    d = gate("a", [_primary(champion, {"b": challenger})], [at_margin], n_resamples=1000).decisions["b"]
    assert d.guardrails[0].verdict == "not_shown" and d.decision == "inconclusive"


def test_comparisons_must_name_the_same_challengers_and_items():
    champion, challenger = _wins(10)
    p = _primary(champion, {"b": challenger})
    other = Guardrail(Comparison("safety", "golden_curated", CLUSTERS, champion, {"c": challenger}), 0.0)
    with pytest.raises(ValueError, match="compares"):
        gate("a", [p], [other])
    shifted = Guardrail(
        Comparison("safety", "golden_curated", CLUSTERS[::-1], champion, {"b": challenger}), 0.0
    )
    with pytest.raises(ValueError, match="not on the same items"):
        gate("a", [p], [shifted])


def test_decision_serialises_to_dict_and_markdown():
    champion, challenger = _wins(80)
    guard = _guard("cost_usd", np.zeros(N), np.zeros(N), 0.0, higher_is_better=False)
    report = gate("a", [_primary(champion, {"b": challenger})], [guard], n_resamples=500)
    d = report.decisions["b"].to_dict()
    assert d["decision"] == "promote" and d["guardrails"][0]["worsening"]["n_items"] == N
    md = report.decisions["b"].to_markdown()
    assert "**Decision: promote**" in md and "(primary)" in md and "guardrail cost_usd" in md and "MDE" in md

import numpy as np
import pytest

from models.eval.gate import Guardrail, champion_gate

N = 400


def _wins(n_flipped: int) -> tuple[np.ndarray, np.ndarray]:
    """Champion solves half the items; the challenger also solves `n_flipped` of the rest."""
    champion = np.array([1.0, 0.0] * (N // 2))
    challenger = champion.copy()
    challenger[np.flatnonzero(champion == 0)[:n_flipped]] = 1.0
    return champion, challenger


def _latency(extra_ms: float) -> Guardrail:
    base = np.linspace(100, 900, N)
    return Guardrail("latency_ms", base, base + extra_ms, higher_is_better=False, margin=50, statistic=0.95)


def test_clear_improvement_promotes():
    champion, challenger = _wins(80)  # +80/400 = +0.2, never worse on any item
    gate = champion_gate(champion, challenger, metric="hit_at_10", n_resamples=2000)
    assert gate.decision == "promote"
    assert gate.delta.estimate == 0.2
    assert gate.delta.low > 0


def test_loss_keeps_champion():
    champion, challenger = _wins(80)
    gate = champion_gate(challenger, champion, n_resamples=2000)
    assert gate.decision == "keep"
    assert gate.delta.high < 0


def test_tie_keeps_champion():
    champion, _ = _wins(0)
    gate = champion_gate(champion, champion.copy(), n_resamples=2000)
    assert gate.decision == "keep"
    assert (gate.delta.low, gate.delta.high) == (0.0, 0.0)
    assert "does not lie above 0" in gate.reasons[0]


def test_guardrail_regression_blocks_a_winning_challenger():
    champion, challenger = _wins(80)
    blocked = champion_gate(champion, challenger, guardrails=[_latency(200)], n_resamples=1000)
    assert blocked.decision == "keep"
    assert not blocked.guardrails[0].passed
    assert blocked.guardrails[0].delta == pytest.approx(200)  # p95 moves with the constant shift
    assert any("latency_ms" in r and "not shown within" in r for r in blocked.reasons)
    allowed = champion_gate(champion, challenger, guardrails=[_latency(10)], n_resamples=1000)
    assert allowed.decision == "promote"


def test_higher_is_better_guardrail_direction():
    champion, challenger = _wins(80)
    grounded = np.full(N, 0.9)
    worse = Guardrail("groundedness", grounded, grounded - 0.1, higher_is_better=True, margin=0.02)
    better = Guardrail("groundedness", grounded, grounded + 0.1, higher_is_better=True, margin=0.02)
    assert champion_gate(champion, challenger, guardrails=[worse], n_resamples=500).decision == "keep"
    assert champion_gate(champion, challenger, guardrails=[better], n_resamples=500).decision == "promote"


def test_noisy_guardrail_without_evidence_of_safety_blocks():
    # mean change 0, but 10 items of huge noise: non-inferiority within 0.01 cannot be shown
    champion, challenger = _wins(80)
    rng = np.random.default_rng(0)
    noisy = Guardrail("safety", rng.normal(size=10), rng.normal(size=10), higher_is_better=True, margin=0.01)
    assert champion_gate(champion, challenger, guardrails=[noisy], n_resamples=500).decision == "keep"


def test_decision_serialises_to_dict_and_markdown():
    champion, challenger = _wins(80)
    gate = champion_gate(
        champion, challenger, metric="ndcg_at_10", guardrails=[_latency(10)], n_resamples=500
    )
    d = gate.to_dict()
    assert d["decision"] == "promote"
    assert d["guardrails"][0]["worsening"]["n_items"] == N
    md = gate.to_markdown()
    assert "**Decision: promote**" in md and "ndcg_at_10 (primary)" in md and "latency_ms (p95" in md

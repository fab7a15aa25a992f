"""The online analysis by simulation (seeded, vectorised where the statistics allow): the fixed-horizon
CUPED interval covers the true effect at its nominal 95%, the always-valid mSPRT keeps its error under
peeking where a repeated fixed-horizon test does not, and the power plan's MDE is detected 80% of the time.
Listener-level data are drawn directly (a pre-period like rate and a correlated experiment like rate): the
listener simulator itself is exercised in test_feedback_simulator.py."""

import numpy as np
import pytest
from scipy import stats

from models.feedback.experiment import always_valid, analyze_experiment, holm_adjusted, plan_power


def _listeners(rng: np.random.Generator, n: int, effect: float):
    pre = rng.normal(0.3, 0.1, n)
    treated = rng.random(n) < 0.5
    y = 0.3 + 0.8 * (pre - 0.3) + rng.normal(0, 0.08, n) + effect * treated
    return np.where(treated, "treatment", "control"), y, pre


def test_fixed_horizon_cuped_interval_covers_the_true_effect_95_percent_of_the_time():
    rng = np.random.default_rng(21)
    effect, reps = 0.02, 1000  # the production analysis per experiment (scipy's overhead): +-0.02 is ~3 SE
    covered_cuped = covered_raw = 0
    for _ in range(reps):
        result = analyze_experiment(*_listeners(rng, 400, effect))
        covered_cuped += result.cuped.ci_low <= effect <= result.cuped.ci_high
        covered_raw += result.raw.ci_low <= effect <= result.raw.ci_high
    assert covered_cuped / reps == pytest.approx(0.95, abs=0.02)
    assert covered_raw / reps == pytest.approx(0.95, abs=0.02)


def _streams(rng: np.random.Generator, reps: int, looks: int, per_look: int, effect: float):
    """Cumulative difference in means and its variance after each look, for `reps` independent A/B tests."""
    c = rng.normal(0, 1, (reps, looks, per_look))
    t = rng.normal(effect, 1, (reps, looks, per_look))
    n = per_look * np.arange(1, looks + 1)
    mean_c, mean_t = c.sum(axis=2).cumsum(axis=1) / n, t.sum(axis=2).cumsum(axis=1) / n
    var_c = (c**2).sum(axis=2).cumsum(axis=1) / n - mean_c**2
    var_t = (t**2).sum(axis=2).cumsum(axis=1) / n - mean_t**2
    return mean_t - mean_c, var_c / n + var_t / n


def test_msprt_keeps_its_error_under_peeking_where_a_repeated_fixed_test_does_not():
    diff, var = _streams(np.random.default_rng(22), 4000, 20, 50, 0.0)
    p, _, _ = always_valid(diff, var, tau=0.2, alpha=0.05)
    assert (p <= 0.05).any(axis=1).mean() <= 0.05
    naive = 2 * stats.norm.sf(np.abs(diff) / np.sqrt(var))
    assert (naive <= 0.05).any(axis=1).mean() > 0.15  # peeking at a fixed-horizon test


def test_msprt_confidence_sequence_covers_at_every_look_at_once_and_detects_a_real_effect():
    diff, var = _streams(np.random.default_rng(23), 4000, 20, 50, 0.2)
    p, low, high = always_valid(diff, var, tau=0.2, alpha=0.05)
    assert ((low <= 0.2) & (high >= 0.2)).all(axis=1).mean() >= 0.95
    assert (np.diff(low, axis=1) >= 0).all() and (np.diff(high, axis=1) <= 0).all()  # running intersection
    assert (p[:, -1] <= 0.05).mean() > 0.8  # 0.2 sd with 1,000 per arm by the last look (fixed test: z = 4.5)


def test_the_planned_mde_is_detected_with_80_percent_power():
    rng = np.random.default_rng(24)
    n = 200
    plan = plan_power(rng.normal(0.3, 0.1, 5000), n, n, metric="like_rate", alpha=0.05 / 3)
    assert plan.sd == pytest.approx(0.1, rel=0.05)
    assert plan.mde == pytest.approx(
        plan.sd * (stats.norm.ppf(1 - 0.05 / 6) + stats.norm.ppf(0.8)) * np.sqrt(2 / n), rel=0.02
    )
    c = rng.normal(0.3, plan.sd, (2000, n))
    t = rng.normal(0.3 + plan.mde, plan.sd, (2000, n))
    detected = stats.ttest_ind(t, c, axis=1, equal_var=False).pvalue <= plan.alpha
    assert detected.mean() == pytest.approx(0.8, abs=0.03)
    bigger = plan_power(rng.normal(0.3, 0.1, 5000), 4 * n, 4 * n, metric="like_rate", alpha=0.05 / 3)
    assert bigger.mde == pytest.approx(plan.mde / 2, rel=0.05)


def test_holm_across_metrics():
    adjusted = holm_adjusted({"like_rate": 0.01, "skip_rate": 0.04, "requests": 0.03}, 0.05)
    assert adjusted == pytest.approx({"like_rate": 0.03, "skip_rate": 0.06, "requests": 0.06})

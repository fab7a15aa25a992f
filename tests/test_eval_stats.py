import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from models.eval.stats import (
    bootstrap_mean_ci,
    bootstrap_p_value,
    cluster_codes,
    holm,
    judge_agreement,
    minimum_detectable_effect,
    paired_bootstrap_diff_ci,
    resampled_means,
    resolve_position_swap,
)


def _paired(n=2000, effect=0.3, seed=1):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    return a, a + effect + rng.normal(scale=0.5, size=n)


def test_paired_bootstrap_is_deterministic_with_a_seed():
    a, b = _paired()
    first = paired_bootstrap_diff_ci(a, b, n_resamples=2000, seed=42)
    assert paired_bootstrap_diff_ci(a, b, n_resamples=2000, seed=42) == first
    assert paired_bootstrap_diff_ci(a, b, n_resamples=2000, seed=43).low != first.low


def test_paired_bootstrap_covers_the_known_difference():
    a, b = _paired(effect=0.3)
    ci = paired_bootstrap_diff_ci(a, b, n_resamples=4000, seed=0)
    assert ci.low < 0.3 < ci.high
    assert ci.low > 0  # excludes "no difference"
    # se of the mean difference = 0.5 / sqrt(2000) = 0.0112 -> 95% half-width ~ 0.022
    assert ci.high - ci.low == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(2000), rel=0.15)


def test_constant_shift_gives_a_degenerate_interval():
    a = np.arange(100.0)
    ci = paired_bootstrap_diff_ci(a, a + 10.0, n_resamples=500)
    assert (ci.estimate, ci.low, ci.high) == pytest.approx((10.0, 10.0, 10.0))


def test_series_resampled_together_share_their_draws_and_skip_missing_values():
    rng = np.random.default_rng(5)
    codes = cluster_codes(np.repeat(np.arange(50), 3), 150)
    x = rng.normal(size=150)
    with_gaps = np.where(np.arange(150) % 3 == 0, np.nan, x)
    observed, dist = resampled_means(np.stack([x, 2 * x, with_gaps]), codes, 300, rng)
    assert dist.shape == (300, 3)
    assert observed[:2] == pytest.approx([x.mean(), 2 * x.mean()])
    assert observed[2] == pytest.approx(np.nanmean(with_gaps))
    assert dist[:, 1] == pytest.approx(2 * dist[:, 0])  # the same resamples for every series
    assert not np.isnan(dist[:, 2]).any()


def test_bootstrap_p_value_agrees_with_the_percentile_interval():
    a, b = _paired(n=300, effect=0.1, seed=4)
    codes = cluster_codes(None, 300)
    _, dist = resampled_means(b - a, codes, 4000, np.random.default_rng(0))
    p = bootstrap_p_value(dist[:, 0])
    assert np.quantile(dist[:, 0], p) == pytest.approx(0.0, abs=0.01)
    assert bootstrap_p_value(np.zeros(10)) == 1.0 and bootstrap_p_value(np.ones(9)) == 0.1


def test_holm_agrees_with_statsmodels():
    rng = np.random.default_rng(6)
    # a few cases only: statsmodels' multipletests runs a full gc.collect() per call
    for p in [[0.01], [0.02, 0.02, 0.001], rng.uniform(0, 0.1, 7), [0.3, 0.004, 0.006, 0.5, 0.007]]:
        reject, adjusted = holm(p, 0.025)
        ref_reject, ref_adjusted, _, _ = multipletests(p, alpha=0.025, method="holm")
        assert list(reject) == list(ref_reject) and adjusted == pytest.approx(ref_adjusted)


def test_minimum_detectable_effect_agrees_with_statsmodels_power():
    # one-sample z test on a mean with standard error `se`: the MDE in effect-size units times se
    d = NormalIndPower().solve_power(nobs1=1, ratio=0, alpha=0.005, power=0.8, alternative="larger")
    assert minimum_detectable_effect(0.02, 0.005, 0.8) == pytest.approx(d * 0.02, rel=1e-6)


def test_clustered_bootstrap_is_wider_when_turns_of_a_conversation_correlate():
    rng = np.random.default_rng(3)
    conv = np.repeat(np.arange(100), 10)
    diff = rng.normal(size=100)[conv] + rng.normal(scale=0.1, size=1000)
    flat = paired_bootstrap_diff_ci(np.zeros(1000), diff, n_resamples=2000)
    clustered = paired_bootstrap_diff_ci(np.zeros(1000), diff, clusters=conv, n_resamples=2000)
    assert clustered.n_clusters == 100
    # conversation effects dominate: ~sqrt(10) times wider when resampling conversations
    assert (clustered.high - clustered.low) > 2.5 * (flat.high - flat.low)


def test_nan_pairs_are_dropped():
    ci = paired_bootstrap_diff_ci([1.0, np.nan, 3.0], [2.0, 5.0, np.nan], n_resamples=100)
    assert ci.n_items == 1
    assert ci.estimate == 1.0


def test_one_sample_mean_ci():
    values = np.array([0, 1] * 200, dtype=float)  # mean 0.5, se = 0.5 / sqrt(400) = 0.025
    ci = bootstrap_mean_ci(values, n_resamples=4000, seed=0)
    assert ci.estimate == 0.5
    assert ci.low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.01)
    assert ci.high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.01)


def test_kappa_perfect_chance_and_hand_computed():
    labels = ["good", "bad", "good", "ok", "bad"]
    assert judge_agreement(labels, labels).kappa == pytest.approx(1.0)
    # judge independent of human: p_o = 0.5, p_e = 0.5*0.5 + 0.5*0.5 = 0.5 -> kappa 0
    chance = judge_agreement(["a", "a", "b", "b"] * 10, ["a", "b", "a", "b"] * 10)
    assert chance.kappa == pytest.approx(0.0)
    # confusion (rows human, cols judge) [[20, 5], [10, 15]], n = 50:
    # p_o = 35/50 = 0.7; p_e = (25*30 + 25*20) / 50^2 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    human = ["a"] * 25 + ["b"] * 25
    judge = ["a"] * 20 + ["b"] * 5 + ["a"] * 10 + ["b"] * 15
    agreement = judge_agreement(human, judge, labels=["a", "b"])
    assert agreement.kappa == pytest.approx(0.4)
    assert agreement.accuracy == pytest.approx(0.7)
    assert agreement.confusion == ((20, 5), (10, 15))
    assert agreement.labels == ("a", "b")
    # reversed label order reorders the matrix
    assert judge_agreement(human, judge, labels=["b", "a"]).confusion == ((15, 10), (5, 20))


def test_position_swap_resolution():
    a_first = ["first", "first", "tie", "second"]
    b_first = ["second", "first", "tie", "first"]
    r = resolve_position_swap(a_first, b_first)
    # item 0: A wins in both orders -> A; item 1: always the first slot -> disagreement -> tie
    # item 2: tie both -> tie (consistent); item 3: B wins in both orders -> B
    assert r.verdicts == ("A", "tie", "tie", "B")
    assert r.consistent == (True, False, True, True)
    assert r.consistency_rate == pytest.approx(3 / 4)
    assert (r.a_win_rate, r.b_win_rate, r.tie_rate) == pytest.approx((1 / 4, 1 / 4, 2 / 4))
    # decisive judgments: first, first, second | second, first, first -> 4 of 6 pick the first slot
    assert r.first_position_rate == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="'A'"):
        resolve_position_swap(["A"], ["first"])

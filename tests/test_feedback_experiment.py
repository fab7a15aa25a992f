import numpy as np
import polars as pl
import pytest

from models.feedback.experiment import (
    analyze_experiment,
    analyze_experiment_frame,
    cuped_adjust,
    sample_ratio_mismatch,
    welch_effect,
)


def test_srm_flags_a_skewed_split():
    srm = sample_ratio_mismatch({"control": 5300, "treatment": 4700}, {"control": 0.5, "treatment": 0.5})
    # chi2 = 2 * 300^2 / 5000 = 36 -> p ~ 2e-9
    assert srm.chi2 == pytest.approx(36.0)
    assert srm.flagged


def test_srm_passes_a_balanced_split():
    srm = sample_ratio_mismatch({"control": 5010, "treatment": 4990}, {"control": 0.5, "treatment": 0.5})
    # chi2 = 2 * 10^2 / 5000 = 0.04 -> p ~ 0.84
    assert srm.chi2 == pytest.approx(0.04)
    assert srm.p_value == pytest.approx(0.8415, abs=1e-3)
    assert not srm.flagged


def test_welch_hand_computed():
    e = welch_effect([1, 2, 3], [2, 3, 4, 5])
    # means 2 and 3.5 -> diff 1.5, lift 1.5 / 2 = 0.75; se = sqrt(1/3 + (5/3)/4) = sqrt(0.75)
    assert (e.diff, e.relative_lift) == pytest.approx((1.5, 0.75))
    assert e.se == pytest.approx(np.sqrt(0.75))
    assert e.ci_low < 1.5 < e.ci_high


def test_cuped_theta_recovers_the_slope():
    x = np.arange(10.0)
    y_adj, theta = cuped_adjust(3 * x + 1, x)
    assert theta == pytest.approx(3.0)
    assert np.allclose(y_adj, y_adj[0])  # all variance explained by X


def _simulated(n=20_000, effect=0.1, seed=11):
    rng = np.random.default_rng(seed)
    variant = np.where(rng.random(n) < 0.5, "control", "treatment")
    pre = rng.normal(10, 2, size=n)
    metric = pre + rng.normal(0, 1, size=n) + effect * (variant == "treatment")
    return variant, metric, pre


def test_cuped_reduces_variance_and_covers_the_true_effect():
    variant, metric, pre = _simulated()
    r = analyze_experiment(variant, metric, pre)
    # corr(Y, X)^2 = 4 / (4 + 1) = 0.8 of the variance is explained by the pre-period
    assert r.variance_reduction == pytest.approx(0.8, abs=0.02)
    assert r.theta == pytest.approx(1.0, abs=0.03)
    assert r.cuped.se < 0.5 * r.raw.se
    assert r.cuped.ci_low < 0.1 < r.cuped.ci_high
    assert r.cuped.ci_low > 0  # CUPED detects the effect
    assert not r.srm.flagged


def test_frame_analysis_averages_units_and_rejects_crossed_units():
    variant, metric, pre = _simulated(n=2000)
    df = pl.DataFrame({"unit_id": np.arange(2000), "variant": variant, "metric": metric, "pre_metric": pre})
    # split every unit's metric over two sessions with the same mean
    sessions = pl.concat([df.with_columns(pl.col("metric") - 1), df.with_columns(pl.col("metric") + 1)])
    assert analyze_experiment_frame(sessions).raw.diff == pytest.approx(
        analyze_experiment(variant, metric, pre).raw.diff
    )
    crossed = pl.concat(
        [
            df,
            df.head(1).with_columns(
                pl.lit("treatment" if variant[0] == "control" else "control").alias("variant")
            ),
        ]
    )
    with pytest.raises(ValueError, match="more than one variant"):
        analyze_experiment_frame(crossed)


def test_experiment_metrics_are_flat_floats():
    variant, metric, pre = _simulated(n=500)
    m = analyze_experiment(variant, metric, pre).to_metrics()
    assert {"ab.raw.diff", "ab.cuped.diff", "ab.variance_reduction", "ab.srm_p_value"} <= set(m)
    assert all(isinstance(v, float) for v in m.values())

"""Online A/B test analysis: the power plan, sample-ratio-mismatch check, CUPED, Welch intervals and
relative lift, an always-valid sequential test for peeking, and Holm's correction across metrics.

The unit of analysis is the randomisation unit: `analyze_experiment_frame` first averages a
unit's rows (e.g. sessions of one user). Units without a pre-period covariate get the pooled
covariate mean, i.e. no CUPED adjustment. Relative lift is diff / control mean with a
delta-method normal interval for a ratio of independent means.

- Before running, `plan_power` gives each metric's minimum detectable effect at 80% power for the
  planned units per arm (statsmodels' t-test power), from the pre-period's spread and at the level
  left after the correction across metrics; without CUPED, so an upper bound.
- Peeking: a fixed-horizon p-value checked at every look rejects a true null far more often than
  alpha. `always_valid` is the mixture sequential probability ratio test (mSPRT) of Johari, Koomen,
  Pekelis & Walsh ("Always Valid Inference", Operations Research 2022) with a normal mixing
  distribution of scale `tau`: its p-value and confidence sequence hold at every look at once,
  whenever the analyst stops. It needs the estimate to accrue information like a sum of independent
  increments, which per-unit means over growing numbers of sessions do (the covariance of the look-s
  and look-t estimates is the look-t variance). Written out from the paper's closed form: scipy and
  statsmodels have no sequential test and `confseq` ships no wheel; tests check it by simulation.
- Several metrics: Holm over their p-values (fixed-horizon or always-valid), so the chance that any
  metric shows a difference that is not there stays at alpha.
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from numpy.typing import ArrayLike
from scipy import stats
from statsmodels.stats.power import TTestIndPower

from models.eval.metrics import metric_key
from models.eval.stats import holm


@dataclass(frozen=True)
class SRMResult:
    observed: Mapping[str, int]
    expected: Mapping[str, float]
    chi2: float
    p_value: float
    flagged: bool  # p < threshold: the split is broken, do not trust the effect estimates
    threshold: float


def sample_ratio_mismatch(
    counts: Mapping[str, int], design: Mapping[str, float], threshold: float = 0.001
) -> SRMResult:
    """Chi-square goodness of fit of observed units per variant against the designed split."""
    unknown = set(counts) - set(design)
    if unknown:
        raise ValueError(f"variants {sorted(unknown)} are not in the design {sorted(design)}")
    names = sorted(design)
    observed = np.array([counts.get(v, 0) for v in names], dtype=float)
    weights = np.array([design[v] for v in names], dtype=float)
    expected = observed.sum() * weights / weights.sum()
    chi2, p = stats.chisquare(observed, expected)
    return SRMResult(
        observed={v: int(o) for v, o in zip(names, observed, strict=True)},
        expected={v: float(e) for v, e in zip(names, expected, strict=True)},
        chi2=float(chi2),
        p_value=float(p),
        flagged=bool(p < threshold),
        threshold=threshold,
    )


def cuped_adjust(y: ArrayLike, x: ArrayLike) -> tuple[np.ndarray, float]:
    """Y' = Y - theta (X - mean X), theta = cov(Y, X) / var(X) on the pooled data; returns (Y', theta).

    Pooling both arms keeps theta independent of the treatment, so the adjustment adds no bias.
    """
    y, x = np.asarray(y, dtype=float), np.asarray(x, dtype=float)
    var_x = x.var(ddof=1)
    theta = float(np.cov(y, x, ddof=1)[0, 1] / var_x) if var_x > 0 else 0.0
    return y - theta * (x - x.mean()), theta


@dataclass(frozen=True)
class EffectEstimate:
    control_mean: float
    treatment_mean: float
    diff: float  # treatment - control
    ci_low: float
    ci_high: float
    se: float
    dof: float  # Welch-Satterthwaite
    p_value: float
    relative_lift: float  # diff / control mean
    lift_ci_low: float
    lift_ci_high: float
    n_control: int
    n_treatment: int


def welch_effect(control: ArrayLike, treatment: ArrayLike, alpha: float = 0.05) -> EffectEstimate:
    """Difference in means with a Welch t interval, and the relative lift with a delta-method interval."""
    c, t = np.asarray(control, dtype=float), np.asarray(treatment, dtype=float)
    if len(c) < 2 or len(t) < 2:
        raise ValueError(f"need at least 2 units per arm, got {len(c)} control and {len(t)} treatment")
    res = stats.ttest_ind(t, c, equal_var=False)
    ci = res.confidence_interval(confidence_level=1 - alpha)
    mc, mt = c.mean(), t.mean()
    var_mc, var_mt = c.var(ddof=1) / len(c), t.var(ddof=1) / len(t)
    lift = (mt - mc) / mc if mc else float("nan")
    lift_se = np.sqrt(var_mt / mc**2 + mt**2 * var_mc / mc**4) if mc else float("nan")
    z = stats.norm.ppf(1 - alpha / 2)
    return EffectEstimate(
        control_mean=float(mc),
        treatment_mean=float(mt),
        diff=float(mt - mc),
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        se=float(np.sqrt(var_mc + var_mt)),
        dof=float(res.df),
        p_value=float(res.pvalue),
        relative_lift=float(lift),
        lift_ci_low=float(lift - z * lift_se),
        lift_ci_high=float(lift + z * lift_se),
        n_control=len(c),
        n_treatment=len(t),
    )


@dataclass(frozen=True)
class ExperimentResult:
    control: str
    treatment: str
    srm: SRMResult
    raw: EffectEstimate
    cuped: EffectEstimate | None  # None without a covariate
    theta: float | None
    variance_reduction: float | None  # 1 - var(Y') / var(Y), pooled

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_metrics(self, prefix: str = "ab") -> dict[str, float]:
        out = {
            metric_key(prefix, "srm_p_value"): self.srm.p_value,
            metric_key(prefix, "srm_flagged"): float(self.srm.flagged),
        }
        for name, est in (("raw", self.raw), ("cuped", self.cuped)):
            if est is not None:
                out |= {metric_key(prefix, name, k): float(v) for k, v in asdict(est).items()}
        if self.variance_reduction is not None:
            out[metric_key(prefix, "variance_reduction")] = self.variance_reduction
        return out


def analyze_experiment(
    variant: ArrayLike,
    metric: ArrayLike,
    covariate: ArrayLike | None = None,
    *,
    control: str = "control",
    treatment: str = "treatment",
    design: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    srm_threshold: float = 0.001,
) -> ExperimentResult:
    """Analyse one row per randomisation unit; `design` defaults to an equal split over the variants seen."""
    v = np.asarray(variant).astype(str)
    y = np.asarray(metric, dtype=float)
    if len(v) != len(y) or np.isnan(y).any():
        raise ValueError("variant and metric must have equal length and the metric no missing values")
    labels, counts = np.unique(v, return_counts=True)
    observed = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    split = design or dict.fromkeys({control, treatment, *observed}, 1.0)
    srm = sample_ratio_mismatch(observed, split, srm_threshold)
    is_c, is_t = v == control, v == treatment
    raw = welch_effect(y[is_c], y[is_t], alpha)
    if covariate is None:
        return ExperimentResult(control, treatment, srm, raw, None, None, None)
    x = np.asarray(covariate, dtype=float)
    x = np.where(np.isnan(x), np.nanmean(x), x)
    # Theta is fitted on the two arms being compared, so other arms cannot shift it.
    arms = is_c | is_t
    y_adj, theta = cuped_adjust(y[arms], x[arms])
    adjusted = np.full_like(y, np.nan)
    adjusted[arms] = y_adj
    cuped = welch_effect(adjusted[is_c], adjusted[is_t], alpha)
    return ExperimentResult(
        control,
        treatment,
        srm,
        raw,
        cuped,
        theta,
        float(1 - y_adj.var(ddof=1) / y[arms].var(ddof=1)),
    )


def analyze_experiment_frame(
    df: pl.DataFrame,
    *,
    unit: str = "unit_id",
    variant: str = "variant",
    metric: str = "metric",
    covariate: str | None = "pre_metric",
    control: str = "control",
    treatment: str = "treatment",
    design: Mapping[str, float] | None = None,
    alpha: float = 0.05,
    srm_threshold: float = 0.001,
) -> ExperimentResult:
    """`analyze_experiment` on a polars frame, after averaging each unit's rows."""
    value_cols = [metric] if covariate is None else [metric, covariate]
    per_unit = df.group_by(unit, maintain_order=True).agg(
        pl.col(variant).n_unique().alias("_n_variants"),
        pl.col(variant).first(),
        *(pl.col(c).mean() for c in value_cols),
    )
    crossed = per_unit.filter(pl.col("_n_variants") > 1)[unit].to_list()
    if crossed:
        raise ValueError(f"{len(crossed)} units appear in more than one variant, e.g. {crossed[:5]}")
    missing = per_unit[metric].null_count()
    if missing:
        raise ValueError(f"{missing} units have no value in column {metric!r}")
    return analyze_experiment(
        per_unit[variant].to_numpy(),
        per_unit[metric].to_numpy(),
        None if covariate is None else per_unit[covariate].cast(pl.Float64).to_numpy(),
        control=control,
        treatment=treatment,
        design=design,
        alpha=alpha,
        srm_threshold=srm_threshold,
    )


# --- before running: power -------------------------------------------------------------------


@dataclass(frozen=True)
class PowerPlan:
    metric: str
    n_control: int
    n_treatment: int
    sd: float  # per-unit standard deviation, from the pre-period
    alpha: float  # two-sided, per metric (after the correction across metrics)
    power: float
    mde: float  # in the metric's units
    mde_relative: float  # mde / pre-period mean

    def to_metrics(self, prefix: str) -> dict[str, float]:
        return {
            metric_key(prefix, "plan", "mde"): self.mde,
            metric_key(prefix, "plan", "mde_relative"): self.mde_relative,
        }


def plan_power(
    pre_values: ArrayLike, n_control: int, n_treatment: int, *, metric: str, alpha: float, power: float = 0.8
) -> PowerPlan:
    """The difference in means a two-sided Welch-type test detects with `power` at these arm sizes."""
    x = np.asarray(pre_values, dtype=float)
    x = x[~np.isnan(x)]
    sd = float(x.std(ddof=1))
    d = TTestIndPower().solve_power(
        effect_size=None, nobs1=n_control, ratio=n_treatment / n_control, alpha=alpha, power=power
    )
    mean = float(x.mean())
    return PowerPlan(
        metric,
        n_control,
        n_treatment,
        sd,
        alpha,
        power,
        float(d * sd),
        float(d * sd / mean) if mean else float("nan"),
    )


# --- peeking: always-valid inference -------------------------------------------------------------


def always_valid(
    diff: ArrayLike, variance: ArrayLike, tau: float, alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mSPRT over looks (last axis): (always-valid p-value, confidence-sequence low, high) at each look.

    `diff` is the estimated treatment - control difference at each look and `variance` its variance;
    `tau` the scale of the normal mixture over effects (best near the effects one hopes to detect).
    """
    d, v = np.asarray(diff, dtype=float), np.asarray(variance, dtype=float)
    t2 = tau**2
    log_ratio = 0.5 * np.log(v / (v + t2)) + t2 * d**2 / (2 * v * (v + t2))
    p = np.minimum(1.0, np.minimum.accumulate(np.exp(-log_ratio), axis=-1))
    half = np.sqrt(v * (v + t2) / t2 * (np.log((v + t2) / v) + 2 * np.log(1 / alpha)))
    return p, np.maximum.accumulate(d - half, axis=-1), np.minimum.accumulate(d + half, axis=-1)


# --- several metrics ---------------------------------------------------------------------------


def holm_adjusted(p_values: Mapping[str, float], alpha: float) -> dict[str, float]:
    """Holm-adjusted p-values per metric: compare each with alpha."""
    names = list(p_values)
    _, adjusted = holm([p_values[n] for n in names], alpha)
    return dict(zip(names, adjusted.tolist(), strict=True))

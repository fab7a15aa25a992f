"""Confidence intervals, tests and agreement statistics that compose with any per-item grader output.

Bootstraps are percentile intervals, deterministic for a given seed. With `clusters` (e.g.
conversation ids) whole clusters are resampled, because turns of one conversation are correlated
and resampling turns would make the interval too narrow. A resample is a row of cluster counts
(how often each cluster was drawn), so the mean of any number of per-item series over one resample
is a matrix product: `counts @ cluster_sums / counts @ cluster_sizes`. Series that share a resample
(several metrics, several challengers on one golden set) stay jointly distributed, which the gate
needs for Holm's correction and for the selection correction of the promoted lift. Items whose
value is NaN (e.g. retrieval turns with nothing relevant, turns without a story) count in no
resample of that series; in a paired bootstrap the whole pair is dropped.
"""

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from threadpoolctl import ThreadpoolController

from models.eval.metrics import metric_key

_CHUNK_ELEMENTS = (
    1 << 21
)  # cluster draws per chunk of resamples: bounds memory, keeps the matmul cache-friendly


@dataclass(frozen=True)
class BootstrapCI:
    estimate: float  # the statistic on the observed data
    low: float
    high: float
    alpha: float  # the interval is the central (1 - alpha) percentile interval
    n_resamples: int
    n_items: int
    n_clusters: int | None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    def to_metrics(self, prefix: str) -> dict[str, float]:
        return {
            metric_key(prefix): self.estimate,
            metric_key(prefix, "ci_low"): self.low,
            metric_key(prefix, "ci_high"): self.high,
        }


def cluster_codes(clusters: Sequence[Hashable] | np.ndarray | None, n: int) -> np.ndarray:
    """0-based cluster index per item; every item its own cluster when `clusters` is None."""
    if clusters is None:
        return np.arange(n)
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} items")
    return np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()


def resampled_means(
    values: ArrayLike, codes: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Observed means and the (n_resamples, series) bootstrap distribution of the means of each row of
    `values` (series x items, NaN = no value), resampling the clusters named by `codes` jointly.

    A resample that draws no item with a value of some series gives NaN for that series.
    """
    x = np.atleast_2d(np.asarray(values, dtype=float))
    if x.shape[1] != len(codes):
        raise ValueError(f"{x.shape[1]} items but {len(codes)} cluster codes")
    n_clusters = int(codes.max()) + 1 if len(codes) else 0
    if n_clusters == 0:
        raise ValueError("cannot bootstrap zero items")
    present = ~np.isnan(x)
    sums = np.stack(
        [
            np.bincount(codes, weights=np.where(p, row, 0.0), minlength=n_clusters)
            for row, p in zip(x, present, strict=True)
        ]
    )
    sizes = np.stack([np.bincount(codes, weights=p.astype(float), minlength=n_clusters) for p in present])
    # Small products: BLAS threads would only contend for the cores (4x slower on a busy 2-core machine).
    with np.errstate(invalid="ignore", divide="ignore"), _threadpools().limit(limits=1, user_api="blas"):
        observed = sums.sum(axis=1) / sizes.sum(axis=1)
        per_chunk = max(1, _CHUNK_ELEMENTS // n_clusters)
        chunks = []
        for start in range(0, n_resamples, per_chunk):
            b = min(per_chunk, n_resamples - start)
            draws = rng.integers(0, n_clusters, size=(b, n_clusters)) + (np.arange(b) * n_clusters)[:, None]
            counts = np.bincount(draws.ravel(), minlength=b * n_clusters).reshape(b, n_clusters).astype(float)
            chunks.append((counts @ sums.T) / (counts @ sizes.T))
    return observed, np.concatenate(chunks)


@cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()  # scanning the loaded libraries once: it costs ~20 ms


@cache
def normal_quantile(q: float) -> float:
    """scipy's normal quantile, cached: a gate asks the same few levels thousands of times in a simulation."""
    return float(stats.norm.ppf(q))


def percentile_interval(dist: np.ndarray, alpha: float) -> tuple[float, float]:
    """The central (1 - alpha) percentile interval of a bootstrap distribution (NaN resamples ignored)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    quantile = np.nanquantile if np.isnan(dist).any() else np.quantile
    low, high = quantile(dist, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def bootstrap_p_value(dist: np.ndarray, threshold: float = 0.0) -> float:
    """One-sided p-value of "the statistic exceeds `threshold`": the share of resamples at or below it.

    The +1s keep it a valid p-value (never 0); it agrees with the percentile interval, whose lower
    bound at level 1 - 2p is the threshold.
    """
    finite = dist[~np.isnan(dist)]
    return float((1 + np.count_nonzero(finite <= threshold)) / (1 + len(finite)))


def holm(p_values: Sequence[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down: (reject, adjusted p-values), as statsmodels' `multipletests(method="holm")`.

    Written out because that function runs a full `gc.collect()` on every call (0.7 s in a process
    that has imported Dagster), which simulations of the gate would pay thousands of times;
    tests/test_eval_stats.py checks both agree.
    """
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    steps = np.arange(len(p), 0, -1)  # K, K-1, ..., 1
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * steps))
    return adjusted <= alpha, adjusted


def minimum_detectable_effect(se: float, alpha: float, power: float = 0.8) -> float:
    """Smallest true effect a one-sided level-alpha test detects with `power`: (z_{1-alpha} + z_power) * se."""
    return float((normal_quantile(1 - alpha) + normal_quantile(power)) * se)


def bootstrap_mean_ci(
    values: ArrayLike,
    *,
    clusters: Sequence[Hashable] | np.ndarray | None = None,
    n_resamples: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapCI:
    """One-sample percentile bootstrap CI of a mean."""
    x = np.asarray(values, dtype=float)
    keep = ~np.isnan(x)
    codes = cluster_codes(clusters, len(x))[keep]
    return _ci(x[keep], codes, clusters is not None, n_resamples, alpha, seed)


def paired_bootstrap_diff_ci(
    baseline: ArrayLike,
    candidate: ArrayLike,
    *,
    clusters: Sequence[Hashable] | np.ndarray | None = None,
    n_resamples: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapCI:
    """CI of mean(candidate) - mean(baseline) on the same items, resampling items (or their clusters)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arrays must be 1-d and equal length, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    codes = cluster_codes(clusters, len(a))[keep]
    return _ci((b - a)[keep], codes, clusters is not None, n_resamples, alpha, seed)


def _ci(
    x: np.ndarray, codes: np.ndarray, clustered: bool, n_resamples: int, alpha: float, seed: int
) -> BootstrapCI:
    codes = np.unique(codes, return_inverse=True)[1].ravel()  # clusters left without items are not drawn
    observed, dist = resampled_means(x, codes, n_resamples, np.random.default_rng(seed))
    low, high = percentile_interval(dist[:, 0], alpha)
    return BootstrapCI(
        estimate=float(observed[0]),
        low=low,
        high=high,
        alpha=alpha,
        n_resamples=n_resamples,
        n_items=len(x),
        n_clusters=int(codes.max()) + 1 if clustered else None,
    )


# --- judge vs human agreement --------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    labels: tuple[Hashable, ...]  # order of the confusion matrix rows (human) and columns (judge)
    kappa: float  # NaN when undefined: both raters used one and the same label throughout
    accuracy: float
    confusion: tuple[tuple[int, ...], ...]
    n: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_metrics(self, prefix: str = "judge_agreement") -> dict[str, float]:
        return {
            metric_key(prefix, "kappa"): self.kappa,
            metric_key(prefix, "accuracy"): self.accuracy,
            metric_key(prefix, "n"): float(self.n),
        }


def judge_agreement(
    human: Sequence[Hashable],
    judge: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
    weights: Literal["linear", "quadratic"] | None = None,
) -> Agreement:
    """Cohen's kappa, raw accuracy and the confusion matrix (rows human, columns judge).

    Use `weights` for ordinal scales (e.g. 1-5 rubric scores) so near misses count partly.
    """
    if len(human) != len(judge) or not human:
        raise ValueError(f"need equal, non-zero numbers of labels, got {len(human)} and {len(judge)}")
    label_list = list(labels) if labels is not None else sorted(set(human) | set(judge))
    cm = confusion_matrix(human, judge, labels=label_list)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = float(cohen_kappa_score(human, judge, labels=label_list, weights=weights))
    return Agreement(
        labels=tuple(label_list),
        kappa=kappa,
        accuracy=float(np.trace(cm) / len(human)),
        confusion=tuple(tuple(int(c) for c in row) for row in cm),
        n=len(human),
    )


# --- pairwise judging with position swap ---------------------------------------------------

Position = Literal["first", "second", "tie"]
_SYSTEM_WHEN_A_FIRST = {"first": "A", "second": "B", "tie": "tie"}
_SYSTEM_WHEN_B_FIRST = {"first": "B", "second": "A", "tie": "tie"}


@dataclass(frozen=True)
class PairwiseResult:
    verdicts: tuple[str, ...]  # per item: "A", "B" or "tie" (systems, not positions)
    consistent: tuple[bool, ...]  # both orders named the same system (or both tie)
    consistency_rate: float
    a_win_rate: float
    b_win_rate: float
    tie_rate: float
    first_position_rate: float  # share of decisive judgments picking the first slot; 0.5 = no bias
    n: int

    def to_metrics(self, prefix: str = "pairwise") -> dict[str, float]:
        names = ("consistency_rate", "a_win_rate", "b_win_rate", "tie_rate", "first_position_rate", "n")
        return {metric_key(prefix, name): float(getattr(self, name)) for name in names}


def resolve_position_swap(a_first: Sequence[Position], b_first: Sequence[Position]) -> PairwiseResult:
    """Combine a pairwise judge's verdicts from both presentation orders.

    `a_first[i]` is the judge's verdict when system A's answer was shown first, `b_first[i]`
    when B's was; verdicts name positions. An item is won only if both orders agree, else tie.
    """
    if len(a_first) != len(b_first) or not a_first:
        raise ValueError(f"need equal, non-zero numbers of verdicts, got {len(a_first)} and {len(b_first)}")
    try:
        systems_ab = [_SYSTEM_WHEN_A_FIRST[v] for v in a_first]
        systems_ba = [_SYSTEM_WHEN_B_FIRST[v] for v in b_first]
    except KeyError as err:
        raise ValueError(f"verdict {err} is not one of 'first', 'second', 'tie'") from err
    consistent = tuple(x == y for x, y in zip(systems_ab, systems_ba, strict=True))
    verdicts = tuple(x if same else "tie" for x, same in zip(systems_ab, consistent, strict=True))
    decisive = [v for v in (*a_first, *b_first) if v != "tie"]
    n = len(verdicts)
    return PairwiseResult(
        verdicts=verdicts,
        consistent=consistent,
        consistency_rate=sum(consistent) / n,
        a_win_rate=verdicts.count("A") / n,
        b_win_rate=verdicts.count("B") / n,
        tie_rate=verdicts.count("tie") / n,
        first_position_rate=decisive.count("first") / len(decisive) if decisive else float("nan"),
        n=n,
    )

"""Confidence intervals and agreement statistics that compose with any per-item grader output.

Bootstraps are percentile intervals, numpy-vectorised in memory-bounded chunks of resamples, and
deterministic for a given seed. Items whose value is NaN (e.g. retrieval turns with nothing
relevant) are dropped before resampling; in a paired bootstrap the whole pair is dropped.
With `clusters` (e.g. conversation ids) whole clusters are resampled, because turns of one
conversation are correlated and resampling turns would make the interval too narrow.
"""

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from models.eval.metrics import metric_key

# A statistic is the mean or a quantile level in (0, 1), e.g. 0.95 for a p95 latency.
Statistic = Literal["mean"] | float

_CHUNK_ELEMENTS = 1 << 20  # indices per chunk: small enough to stay cache-friendly (~2x faster than 8M)


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
    groups = _cluster_codes(clusters, len(x))
    x, groups = x[keep], None if groups is None else groups[keep]
    dist = _mean_distribution(x, groups, n_resamples, np.random.default_rng(seed))
    return _interval(float(x.mean()), dist, alpha, len(x), groups)


def paired_bootstrap_diff_ci(
    baseline: ArrayLike,
    candidate: ArrayLike,
    *,
    statistic: Statistic = "mean",
    clusters: Sequence[Hashable] | np.ndarray | None = None,
    n_resamples: int = 10_000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapCI:
    """CI of statistic(candidate) - statistic(baseline) on the same items, resampling item indices.

    Quantile statistics support only item-level resampling (no clusters).
    """
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired arrays must be 1-d and equal length, got {a.shape} and {b.shape}")
    keep = ~(np.isnan(a) | np.isnan(b))
    groups = _cluster_codes(clusters, len(a))
    a, b, groups = a[keep], b[keep], None if groups is None else groups[keep]
    rng = np.random.default_rng(seed)
    if statistic == "mean":
        diff = b - a
        return _interval(
            float(diff.mean()), _mean_distribution(diff, groups, n_resamples, rng), alpha, len(a), groups
        )
    if groups is not None:
        raise ValueError("a clustered bootstrap supports only statistic='mean'")
    q = float(statistic)
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile statistic must be in (0, 1), got {statistic!r}")
    dist = np.concatenate(
        [
            np.quantile(b[idx], q, axis=1) - np.quantile(a[idx], q, axis=1)
            for idx in _index_chunks(len(a), n_resamples, rng)
        ]
    )
    return _interval(float(np.quantile(b, q) - np.quantile(a, q)), dist, alpha, len(a), None)


def _cluster_codes(clusters: Sequence[Hashable] | np.ndarray | None, n: int) -> np.ndarray | None:
    if clusters is None:
        return None
    if len(clusters) != n:
        raise ValueError(f"{len(clusters)} cluster ids for {n} items")
    return np.unique(np.asarray(clusters), return_inverse=True)[1].ravel()


def _index_chunks(n: int, n_resamples: int, rng: np.random.Generator):
    if n == 0:
        raise ValueError("cannot bootstrap zero items")
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, n_resamples, per_chunk):
        yield rng.integers(0, n, size=(min(per_chunk, n_resamples - start), n), dtype=np.int32)


def _mean_distribution(
    x: np.ndarray, groups: np.ndarray | None, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    if groups is None:
        return np.concatenate([x[idx].mean(axis=1) for idx in _index_chunks(len(x), n_resamples, rng)])
    # Resampling clusters: the mean of the drawn items is sum of cluster sums / sum of cluster sizes.
    _, groups = np.unique(groups, return_inverse=True)
    sums = np.bincount(groups, weights=x)
    sizes = np.bincount(groups).astype(float)
    return np.concatenate(
        [sums[idx].sum(axis=1) / sizes[idx].sum(axis=1) for idx in _index_chunks(len(sums), n_resamples, rng)]
    )


def _interval(
    estimate: float, dist: np.ndarray, alpha: float, n_items: int, groups: np.ndarray | None
) -> BootstrapCI:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    low, high = np.quantile(dist, [alpha / 2, 1 - alpha / 2])
    return BootstrapCI(
        estimate=estimate,
        low=float(low),
        high=float(high),
        alpha=alpha,
        n_resamples=len(dist),
        n_items=n_items,
        n_clusters=None if groups is None else len(np.unique(groups)),
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

"""The champion gate: promote a challenger only when it wins with confidence and breaks no guardrail.

Rules (both use paired percentile-bootstrap CIs at level 1 - alpha from `models.eval.stats`):

- primary: the CI of mean(challenger - champion) must lie entirely above `min_improvement`
  (0 by default) — a two-sided interval, so each bound is a one-sided test at alpha / 2;
- guardrails are non-inferiority tests: the worsening (challenger minus champion, sign-flipped
  for higher-is-better metrics) must have its CI's upper bound within the tolerated margin.
  The challenger must show it is not worse by more than the margin; a noisy guardrail that
  cannot show this blocks promotion rather than passing for lack of evidence.

Guardrails are tested without a multiplicity correction: each extra guardrail makes promotion
harder, never easier, so the gate stays conservative.
"""

from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from models.eval.stats import BootstrapCI, Statistic, paired_bootstrap_diff_ci


@dataclass(frozen=True, eq=False)
class Guardrail:
    """A metric the challenger may not worsen by more than `margin` (in the metric's own units)."""

    name: str
    champion: ArrayLike  # per-item values, paired with `challenger`
    challenger: ArrayLike
    higher_is_better: bool
    margin: float
    statistic: Statistic = "mean"  # e.g. 0.95 for latency p95
    clusters: Sequence[Hashable] | None = None


@dataclass(frozen=True)
class GuardrailResult:
    name: str
    direction: Literal["higher_is_better", "lower_is_better"]
    statistic: str
    margin: float
    champion: float
    challenger: float
    delta: float  # challenger - champion
    worsening: BootstrapCI  # positive = worse
    passed: bool


@dataclass(frozen=True)
class GateDecision:
    decision: Literal["promote", "keep"]
    reasons: tuple[str, ...]
    metric: str
    champion_mean: float
    challenger_mean: float
    delta: BootstrapCI  # challenger - champion on the primary metric
    min_improvement: float
    guardrails: tuple[GuardrailResult, ...] = field(default_factory=tuple)
    seed: int = 0

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_markdown(self) -> str:
        d = self.delta
        lines = [
            f"**Decision: {self.decision}**",
            "",
            *(f"- {r}" for r in self.reasons),
            "",
            "| metric | champion | challenger | delta | CI | rule | pass |",
            "|---|---|---|---|---|---|---|",
            f"| {self.metric} (primary) | {self.champion_mean:.4g} | {self.challenger_mean:.4g} | "
            f"{d.estimate:+.4g} | [{d.low:+.4g}, {d.high:+.4g}] | CI low > {self.min_improvement:g} | "
            f"{'yes' if d.low > self.min_improvement else 'no'} |",
        ]
        for g in self.guardrails:
            w = g.worsening
            lines.append(
                f"| {g.name} ({g.statistic}, {g.direction.replace('_', ' ')}) | {g.champion:.4g} | "
                f"{g.challenger:.4g} | {g.delta:+.4g} | worsening [{w.low:+.4g}, {w.high:+.4g}] | "
                f"worsening high <= {g.margin:g} | {'yes' if g.passed else 'no'} |"
            )
        lines += [
            "",
            f"{d.n_resamples} paired bootstrap resamples, alpha={d.alpha}, seed={self.seed}, n={d.n_items}",
        ]
        return "\n".join(lines)


def champion_gate(
    champion: ArrayLike,
    challenger: ArrayLike,
    *,
    metric: str = "primary",
    guardrails: Sequence[Guardrail] = (),
    clusters: Sequence[Hashable] | None = None,
    min_improvement: float = 0.0,
    seed: int = 0,
    n_resamples: int = 10_000,
    alpha: float = 0.05,
) -> GateDecision:
    """Decide "promote" or "keep" from paired per-item primary-metric values and guardrails."""
    champ, chall = np.asarray(champion, dtype=float), np.asarray(challenger, dtype=float)
    delta = paired_bootstrap_diff_ci(
        champ, chall, clusters=clusters, n_resamples=n_resamples, alpha=alpha, seed=seed
    )
    wins = delta.low > min_improvement
    reasons = [
        f"{metric}: challenger - champion = {delta.estimate:+.4g}, "
        f"{1 - alpha:.0%} CI [{delta.low:+.4g}, {delta.high:+.4g}] "
        + (f"lies above {min_improvement:g}" if wins else f"does not lie above {min_improvement:g}")
    ]
    results = tuple(_check_guardrail(g, seed=seed, n_resamples=n_resamples, alpha=alpha) for g in guardrails)
    reasons += [_guardrail_reason(r, alpha) for r in results]
    promote = wins and all(r.passed for r in results)
    return GateDecision(
        decision="promote" if promote else "keep",
        reasons=tuple(reasons),
        metric=metric,
        champion_mean=float(np.nanmean(champ)),
        challenger_mean=float(np.nanmean(chall)),
        delta=delta,
        min_improvement=min_improvement,
        guardrails=results,
        seed=seed,
    )


def _check_guardrail(g: Guardrail, *, seed: int, n_resamples: int, alpha: float) -> GuardrailResult:
    champ, chall = np.asarray(g.champion, dtype=float), np.asarray(g.challenger, dtype=float)
    # Order the pair so candidate - baseline measures how much worse the challenger is.
    baseline, candidate = (chall, champ) if g.higher_is_better else (champ, chall)
    worsening = paired_bootstrap_diff_ci(
        baseline,
        candidate,
        statistic=g.statistic,
        clusters=g.clusters,
        n_resamples=n_resamples,
        alpha=alpha,
        seed=seed,
    )
    summary = np.nanmean if g.statistic == "mean" else lambda x: np.nanquantile(x, float(g.statistic))
    champ_value, chall_value = float(summary(champ)), float(summary(chall))
    return GuardrailResult(
        name=g.name,
        direction="higher_is_better" if g.higher_is_better else "lower_is_better",
        statistic="mean" if g.statistic == "mean" else f"p{float(g.statistic) * 100:g}",
        margin=g.margin,
        champion=champ_value,
        challenger=chall_value,
        delta=chall_value - champ_value,
        worsening=worsening,
        passed=worsening.high <= g.margin,
    )


def _guardrail_reason(r: GuardrailResult, alpha: float) -> str:
    w = r.worsening
    verdict = "within" if r.passed else "not shown within"
    return (
        f"guardrail {r.name} ({r.statistic}): {r.champion:.4g} -> {r.challenger:.4g}, "
        f"worsening {1 - alpha:.0%} CI [{w.low:+.4g}, {w.high:+.4g}] {verdict} tolerated {r.margin:g}"
    )

"""The champion gate: promote a challenger only on a win it could detect, under error control across
challengers, with powered non-inferiority guardrails. Pure functions; `models.eval.evaluate` builds the
comparisons from evaluation tables and `assets/evaluation.py` moves the aliases.

**Primary.** A weighted sum of per-set mean differences (challenger - champion): by default
1/2 `turn_success` on the curated conversations + 1/2 `hit_at_10` on the CPCD evaluation part.
Each set is resampled by conversation on its own (a stratified, clustered, paired bootstrap). Why
both, and why equal weights: the curated set (72 conversations) is the only one that tests the
whole conversation (clarifying, declining, negation, references) but alone detects only ~13 points
at 80% power; CPCD's evaluation part (275 conversations, 1,133 turns) measures retrieval of the
product path on real listeners' likes with a standard error about a third of curated's. A guardrail
on CPCD alone adds protection but no power; one composite endpoint adds the power and still needs
one test per challenger, so Holm over the challengers bounds the family-wise error. Inverse-variance
weights would have given CPCD ~90% of the say and made curated-only gains (the conversational
behaviour CPCD cannot see) nearly invisible; equal weights give each set an equal vote. A
composite could hide a loss on one set behind a gain on the other, so each part is also a guardrail
(below): neither set may get significantly worse. Without CPCD results the primary is curated alone.
The cost, measured (`python -m benchmarks.gate_power`, README): +10 points on both sets is promoted
~90% of the time with guardrails on, +10 points on the curated set alone ~45% (as with curated alone).

**Error control across challengers.** Every challenger gated together gets a one-sided bootstrap
p-value for "primary > min_improvement"; Holm's step-down at family-wise ALPHA
(one-sided 0.025, the old per-challenger level) decides the wins, so with any number of null
challengers the chance of promoting any is at most ALPHA. Guardrails need no correction: a
challenger must pass all of them, which only lowers the chance of promotion (intersection-union).
The promoted lift is the best of several, biased upward; the report gives it with the bootstrap
estimate of that selection bias removed (the mean optimism of the best challenger over joint
resamples) and a simultaneous (Bonferroni, ALPHA / K) lower bound that holds whichever is selected.

**Guardrails are non-inferiority tests** on paired per-item differences clustered by conversation:
the worsening's upper 1 - ALPHA bound must lie within a margin. Latency is the per-turn log ratio
(challenger over champion on the same turn), not a p95 of resampled turns: turn type dominates
latency, pairing removes it. The margin is chosen by a power analysis recorded in the decision:
margin = max(tolerance, (z_{1-ALPHA} + z_{GUARDRAIL_POWER}) * SE), i.e. the team's tolerance when
the golden set can certify it, else the smallest margin that passes a challenger as good as the
champion with probability GUARDRAIL_POWER (0.975: with five guardrails the gate keeps at least
~87% of the primary's power, by the union bound). When the power margin applies the test is, in
effect, "not significantly worse at ALPHA"; the decision says so, with the worsening it blocks 80%
of the time and how many conversations would certify the tolerance. A tolerance of 0 (safety,
CPCD) makes the guardrail exactly a harm test.

**Decisions say what they could detect.** Each logs the primary's minimum detectable effect at 80%
power (at ALPHA / K, Holm's first step) twice: for this pair, from the bootstrap spread of its paired
differences (two near-identical candidates can show small differences), and for the golden-set design,
as if the challenger's per-turn results varied independently of the champion's (twice the variance of
the champion's mean per set: what the sets can promise any challenger). It has three outcomes: `promote` (a Holm win, every
guardrail shown within its margin, the best such challenger), `keep` (a significant loss, a
guardrail shown breached, or a better winner), `inconclusive` (no significant difference, or a
guardrail neither shown within nor beyond its margin): it does not call a loss or a win it could
not detect.
"""

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from models.eval.stats import (
    BootstrapCI,
    bootstrap_p_value,
    cluster_codes,
    holm,
    minimum_detectable_effect,
    normal_quantile,
    percentile_interval,
    resampled_means,
)

ALPHA = 0.025  # one-sided, family-wise over the challengers gated together
POWER = 0.8  # for the minimum detectable effect each decision logs
GUARDRAIL_POWER = 0.975  # chance that a challenger as good as the champion passes one guardrail

GuardrailVerdict = Literal["pass", "breach", "not_shown"]


@dataclass(frozen=True, eq=False)
class Comparison:
    """One metric on one golden set: per-item values of the champion and of each challenger, paired by item.

    `log_scale` compares log values: the mean difference is the mean log ratio (latency).
    """

    name: str
    golden_set: str
    clusters: Sequence[Hashable] | np.ndarray  # conversation id per item
    champion: ArrayLike
    challengers: Mapping[str, ArrayLike]
    higher_is_better: bool = True
    log_scale: bool = False

    def improvements(self) -> dict[str, np.ndarray]:
        """Per item and challenger: how much better the challenger is (NaN where either has no value)."""
        champ = self._values(self.champion)
        sign = 1.0 if self.higher_is_better else -1.0
        out = {}
        for key, values in self.challengers.items():
            chall = self._values(values)
            if chall.shape != champ.shape:
                raise ValueError(f"{self.name}: {key} has {chall.shape} items, the champion {champ.shape}")
            out[key] = sign * (chall - champ)
        return out

    def oriented_champion(self) -> np.ndarray:
        return (1.0 if self.higher_is_better else -1.0) * self._values(self.champion)

    def _values(self, values: ArrayLike) -> np.ndarray:
        x = np.asarray(values, dtype=float)
        return np.log(np.maximum(x, 1e-3)) if self.log_scale else x

    @cached_property
    def n_clusters(self) -> int:
        return len(np.unique(np.asarray(self.clusters)))

    def means(self, key: str | None) -> float:
        x = np.asarray(self.champion if key is None else self.challengers[key], dtype=float)
        present = x[~np.isnan(x)]
        return float(present.mean()) if present.size else float("nan")


@dataclass(frozen=True, eq=False)
class PrimaryPart:
    comparison: Comparison
    weight: float


@dataclass(frozen=True, eq=False)
class Guardrail:
    comparison: Comparison
    tolerance: float  # the worsening the team accepts, in the compared units (log units for log_scale)


@dataclass(frozen=True)
class PartResult:
    name: str
    golden_set: str
    weight: float
    champion_mean: float
    challenger_mean: float
    delta: BootstrapCI  # challenger - champion


@dataclass(frozen=True)
class PrimaryResult:
    metric: str  # e.g. "0.5 turn_success@golden_curated + 0.5 hit_at_10@golden_cpcd"
    parts: tuple[PartResult, ...]
    champion_mean: float  # the weighted sum of the parts' means
    challenger_mean: float
    delta: BootstrapCI  # of the weighted sum, challenger - champion
    se: float
    p_value: float  # one-sided, "delta > min_improvement"
    p_holm: float  # Holm-adjusted over the challengers gated together
    mde: float  # true delta this comparison detects with POWER at Holm's first-step level (paired SE)
    mde_design: float  # ... for a challenger whose per-turn results vary independently of the champion's
    outcome: Literal["win", "loss", "inconclusive"]


@dataclass(frozen=True)
class GuardrailResult:
    name: str
    golden_set: str
    scale: Literal["difference", "log ratio"]
    champion: float
    challenger: float
    worsening: BootstrapCI  # positive = worse; its high bound is the one-sided (1 - ALPHA) bound
    se: float
    tolerance: float
    margin: float
    margin_from: Literal["tolerance", "power analysis"]
    power_if_equal: float  # chance a challenger as good as the champion passes at this margin
    blocks_80: float  # the true worsening this guardrail blocks 80% of the time
    conversations_for_tolerance: int | None  # to certify the tolerance itself (power margin only)
    verdict: GuardrailVerdict


@dataclass(frozen=True)
class SelectedLift:
    challenger: str
    estimate: float  # the observed primary delta of the promoted challenger
    selection_bias: float  # bootstrap mean optimism of the best of the challengers gated together
    corrected: float  # estimate - selection_bias
    simultaneous_low: float  # lower bound at ALPHA / K: holds whichever challenger is selected


@dataclass(frozen=True)
class GateDecision:
    challenger: str
    decision: Literal["promote", "keep", "inconclusive"]
    reasons: tuple[str, ...]
    primary: PrimaryResult
    guardrails: tuple[GuardrailResult, ...]
    rule: str  # the multiplicity rule, stated
    alpha: float
    n_resamples: int
    seed: int

    @property
    def promote(self) -> bool:
        return self.decision == "promote"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def to_markdown(self) -> str:
        p, d = self.primary, self.primary.delta
        level = f"{1 - 2 * self.alpha:.0%}"
        lines = [
            f"**Decision: {self.decision}**",
            "",
            *(f"- {r}" for r in self.reasons),
            "",
            f"| metric | champion | challenger | delta | {level} CI | rule | result |",
            "|---|---|---|---|---|---|---|",
            f"| {p.metric} (primary) | {p.champion_mean:.4g} | {p.challenger_mean:.4g} | {d.estimate:+.4g} | "
            f"[{d.low:+.4g}, {d.high:+.4g}] | Holm p <= {self.alpha:g} (p={p.p_value:.4g}, adjusted "
            f"{p.p_holm:.4g}); MDE {p.mde:.3g} paired, {p.mde_design:.3g} by design | {p.outcome} |",
        ]
        for part in p.parts:
            c = part.delta
            lines.append(
                f"| {part.name} @ {part.golden_set} (weight {part.weight:g}) | {part.champion_mean:.4g} | "
                f"{part.challenger_mean:.4g} | {c.estimate:+.4g} | [{c.low:+.4g}, {c.high:+.4g}] | | |"
            )
        for g in self.guardrails:
            w = g.worsening
            lines.append(
                f"| guardrail {g.name} @ {g.golden_set} ({g.scale}) | {g.champion:.4g} | {g.challenger:.4g} | "
                f"worsening {w.estimate:+.4g} | [{w.low:+.4g}, {w.high:+.4g}] | high <= margin {g.margin:.3g} "
                f"(tolerance {g.tolerance:.3g}, {g.margin_from}) | {g.verdict} |"
            )
        lines += [
            "",
            f"{self.rule}. {self.n_resamples} stratified paired bootstrap resamples by conversation, "
            f"seed={self.seed}.",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class GateReport:
    champion: str
    decisions: dict[str, GateDecision]
    promoted: str | None
    lift: SelectedLift | None
    rule: str


def gate(
    champion: str,
    primary: Sequence[PrimaryPart],
    guardrails: Sequence[Guardrail] = (),
    *,
    min_improvement: float = 0.0,
    alpha: float = ALPHA,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> GateReport:
    """Gate every challenger named in the comparisons against the champion, jointly."""
    comparisons = [p.comparison for p in primary] + [g.comparison for g in guardrails]
    if not primary:
        raise ValueError("the gate needs a primary metric")
    keys = list(primary[0].comparison.challengers)
    if not keys:
        return GateReport(champion, {}, None, None, _rule(0, alpha))
    for c in comparisons:
        if list(c.challengers) != keys:
            raise ValueError(f"{c.name}@{c.golden_set} compares {list(c.challengers)}, the primary {keys}")
    boot = _joint_bootstrap(comparisons, n_resamples, seed)
    rule = _rule(len(keys), alpha)

    # Primary: weighted sum over sets; the sets are resampled independently, so their draws add.
    # The design's standard error: two independent draws of the champion's per-turn results per set.
    se_design = float(
        np.sqrt(sum(2 * p.weight**2 * np.nanvar(boot[id(p.comparison), None][1]) for p in primary))
    )
    observed = {k: sum(p.weight * boot[id(p.comparison), k][0] for p in primary) for k in keys}
    dist = {k: sum(p.weight * boot[id(p.comparison), k][1] for p in primary) for k in keys}
    p_values = [bootstrap_p_value(dist[k], min_improvement) for k in keys]
    reject, p_holm = holm(p_values, alpha)
    metric = " + ".join(f"{p.weight:g} {p.comparison.name}@{p.comparison.golden_set}" for p in primary)
    primaries = {}
    for i, k in enumerate(keys):
        low, high = percentile_interval(dist[k], 2 * alpha)
        se = float(np.nanstd(dist[k]))
        outcome = "win" if reject[i] else "loss" if high < 0 else "inconclusive"
        primaries[k] = PrimaryResult(
            metric=metric,
            parts=tuple(_part(p, k, boot, n_resamples, alpha) for p in primary),
            champion_mean=sum(p.weight * p.comparison.means(None) for p in primary),
            challenger_mean=sum(p.weight * p.comparison.means(k) for p in primary),
            delta=_interval(observed[k], low, high, 2 * alpha, n_resamples, primary),
            se=se,
            p_value=p_values[i],
            p_holm=float(p_holm[i]),
            mde=minimum_detectable_effect(se, alpha / len(keys), POWER),
            mde_design=minimum_detectable_effect(se_design, alpha / len(keys), POWER),
            outcome=outcome,
        )
    checked = {k: tuple(_guardrail(g, k, boot, alpha, n_resamples) for g in guardrails) for k in keys}
    promotable = [
        k for k in keys if primaries[k].outcome == "win" and all(g.verdict == "pass" for g in checked[k])
    ]
    best = max(promotable, key=lambda k: (primaries[k].delta.estimate, -primaries[k].p_value), default=None)
    decisions = {
        k: _decide(k, primaries[k], checked[k], best, rule, alpha, n_resamples, seed, min_improvement)
        for k in keys
    }
    lift = _selected_lift(best, observed, dist, alpha) if best else None
    return GateReport(champion, decisions, best, lift, rule)


def _rule(n_challengers: int, alpha: float) -> str:
    return (
        f"Holm step-down over the {n_challengers} challenger(s) gated together, family-wise one-sided "
        f"alpha={alpha:g}; guardrails all required (intersection-union, no correction needed)"
    )


def _joint_bootstrap(
    comparisons: Sequence[Comparison], n_resamples: int, seed: int
) -> dict[tuple[int, str], tuple[float, np.ndarray]]:
    """(comparison id, challenger) -> (observed mean improvement, its bootstrap distribution); the
    challenger None holds the champion's own values (oriented like the improvements).

    Every series of one golden set shares its resamples of conversations; sets are resampled
    independently (stratified), each from its own seeded stream.
    """
    by_set: dict[str, list[Comparison]] = defaultdict(list)
    for c in {id(c): c for c in comparisons}.values():  # a primary part is also a guardrail: resample it once
        by_set[c.golden_set].append(c)
    out = {}
    for index, (golden_set, members) in enumerate(sorted(by_set.items())):
        clusters = np.asarray(members[0].clusters)
        for c in members[1:]:
            if not np.array_equal(np.asarray(c.clusters), clusters):
                raise ValueError(f"{c.name} and {members[0].name} of {golden_set} are not on the same items")
        series = [
            (id(c), k, v)
            for c in members
            for k, v in [*c.improvements().items(), (None, c.oriented_champion())]
        ]
        codes = cluster_codes(clusters, len(clusters))
        rng = np.random.default_rng([seed, index])
        observed, dist = resampled_means(np.stack([v for _, _, v in series]), codes, n_resamples, rng)
        for j, (cid, key, _) in enumerate(series):
            out[cid, key] = (float(observed[j]), dist[:, j])
    return out


def _interval(
    estimate: float, low: float, high: float, alpha: float, n_resamples: int, parts: Sequence[PrimaryPart]
) -> BootstrapCI:
    clusters = sum(p.comparison.n_clusters for p in parts)
    items = sum(len(p.comparison.clusters) for p in parts)
    return BootstrapCI(estimate, low, high, alpha, n_resamples, items, clusters)


def _part(p: PrimaryPart, key: str, boot, n_resamples: int, alpha: float) -> PartResult:
    observed, dist = boot[id(p.comparison), key]
    low, high = percentile_interval(dist, 2 * alpha)
    sign = 1.0 if p.comparison.higher_is_better else -1.0
    delta = BootstrapCI(
        sign * observed,
        *sorted((sign * low, sign * high)),
        2 * alpha,
        n_resamples,
        len(p.comparison.clusters),
        p.comparison.n_clusters,
    )
    return PartResult(
        p.comparison.name,
        p.comparison.golden_set,
        p.weight,
        p.comparison.means(None),
        p.comparison.means(key),
        delta,
    )


def _guardrail(g: Guardrail, key: str, boot, alpha: float, n_resamples: int) -> GuardrailResult:
    c = g.comparison
    observed, improvement = boot[id(c), key]
    worsening = -improvement
    low, high = percentile_interval(worsening, 2 * alpha)
    se = float(np.nanstd(worsening))
    z_alpha, z_power, z_80 = (normal_quantile(q) for q in (1 - alpha, GUARDRAIL_POWER, POWER))
    powered = float((z_alpha + z_power) * se)
    margin = max(g.tolerance, powered)
    from_power = powered > g.tolerance
    n_clusters = c.n_clusters
    needed = (
        int(np.ceil(n_clusters * (powered / g.tolerance) ** 2)) if from_power and g.tolerance > 0 else None
    )
    verdict: GuardrailVerdict = "pass" if high <= margin else "breach" if low > margin else "not_shown"
    return GuardrailResult(
        name=c.name,
        golden_set=c.golden_set,
        scale="log ratio" if c.log_scale else "difference",
        champion=c.means(None),
        challenger=c.means(key),
        worsening=BootstrapCI(-observed, low, high, 2 * alpha, n_resamples, len(c.clusters), n_clusters),
        se=se,
        tolerance=g.tolerance,
        margin=margin,
        margin_from="power analysis" if from_power else "tolerance",
        power_if_equal=float(stats.norm.cdf(margin / se - z_alpha)) if se > 0 else 1.0,
        blocks_80=float(margin - (z_alpha - z_80) * se),
        conversations_for_tolerance=needed,
        verdict=verdict,
    )


def _decide(
    key: str,
    p: PrimaryResult,
    guardrails: tuple[GuardrailResult, ...],
    best: str | None,
    rule: str,
    alpha: float,
    n_resamples: int,
    seed: int,
    min_improvement: float,
) -> GateDecision:
    d = p.delta
    level = f"{1 - 2 * alpha:.0%}"
    reasons = [
        f"primary {p.metric}: delta {d.estimate:+.4g}, {level} CI [{d.low:+.4g}, {d.high:+.4g}], one-sided "
        f"p={p.p_value:.4g} for delta > {min_improvement:g}, Holm-adjusted {p.p_holm:.4g} -> {p.outcome}",
        f"detectable with {POWER:.0%} power at Holm's first-step level: a true delta of {p.mde:.3g} for this "
        f"pair (its paired per-turn differences), {p.mde_design:.3g} for the golden-set design (a challenger whose "
        "per-turn results vary independently of the champion's)"
        + (
            "; the observed win is smaller, so its size is likely overstated"
            if p.outcome == "win" and d.estimate < p.mde
            else ""
        ),
    ]
    reasons += [_guardrail_reason(g, alpha) for g in guardrails]
    breached = [g.name for g in guardrails if g.verdict == "breach"]
    unshown = [g.name for g in guardrails if g.verdict == "not_shown"]
    if p.outcome == "loss" or breached:
        decision = "keep"
        reasons.append(
            "keep: "
            + (
                "significantly worse on the primary"
                if p.outcome == "loss"
                else f"breaches {', '.join(breached)}"
            )
        )
    elif p.outcome == "inconclusive":
        decision = "inconclusive"
        reasons.append(
            f"inconclusive: no difference shown; a true delta below {p.mde:.3g} is likely to go undetected here"
        )
    elif unshown:
        decision = "inconclusive"
        reasons.append(f"inconclusive: a win, but {', '.join(unshown)} not shown within the margin")
    elif key == best:
        decision = "promote"
        reasons.append("promote: a Holm win within every guardrail, the best such challenger")
    else:
        decision = "keep"
        reasons.append(f"keep: a win, but {best} won by more")
    return GateDecision(key, decision, tuple(reasons), p, guardrails, rule, alpha, n_resamples, seed)


def _guardrail_reason(g: GuardrailResult, alpha: float) -> str:
    w = g.worsening
    text = (
        f"guardrail {g.name}@{g.golden_set} ({g.scale}): {g.champion:.4g} -> {g.challenger:.4g}, worsening "
        f"{w.estimate:+.4g}, one-sided {1 - alpha:.1%} bound {w.high:+.4g} vs margin {g.margin:.3g} -> {g.verdict}"
    )
    if g.margin_from == "power analysis":
        text += (
            f" (margin from the power analysis: this set cannot certify the tolerance {g.tolerance:g}; an equal "
            f"challenger passes {g.power_if_equal:.1%} of the time, a true worsening of {g.blocks_80:.3g} is "
            "blocked 80% of the time"
            + (
                f"; certifying {g.tolerance:g} needs ~{g.conversations_for_tolerance} conversations)"
                if g.conversations_for_tolerance
                else ")"
            )
        )
    return text


def _selected_lift(
    best: str, observed: Mapping[str, float], dist: Mapping[str, np.ndarray], alpha: float
) -> SelectedLift:
    keys = list(dist)
    draws = np.column_stack([dist[k] for k in keys])
    estimates = np.array([observed[k] for k in keys])
    valid = ~np.isnan(draws).any(axis=1)
    winners = np.argmax(draws[valid], axis=1)
    # In the bootstrap world the observed deltas are the truth: how far the best draw overshoots its own.
    bias = float(np.mean(draws[valid][np.arange(len(winners)), winners] - estimates[winners]))
    low, _ = percentile_interval(dist[best], 2 * alpha / len(keys))
    return SelectedLift(best, observed[best], bias, observed[best] - bias, low)

"""The champion gate's policy, named once: the primary measure, the guardrails and their tolerances, and which
evaluations are gated together. The statistics (paired bootstrap, Holm, non-inferiority margins) are
`models/eval/gate.py`'s; the module docstring there gives the reasoning.

The primary gives equal say to the conversation (curated `turn_success`) and to retrieval on real listeners'
likes (CPCD `hit_at_10`); without CPCD results for every candidate the curated part stands alone.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from models.eval.evaluate import CPCD, CURATED, TURN_SUCCESS
from models.eval.gate import Comparison, GateReport, Guardrail, PrimaryPart, gate


@dataclass(frozen=True)
class Measure:
    """A per-item column of `candidate_evaluation` on one golden set, as the gate compares it."""

    name: str
    golden_set: str
    column: str
    higher_is_better: bool = True
    log_scale: bool = False  # compared as the log ratio (latency)


@dataclass(frozen=True)
class GuardrailRule:
    measure: Measure
    tolerance: float  # the worsening the team accepts, in the compared unit
    of_champion_mean: bool = False  # tolerance is a share of the champion's mean (cost)


# The primary: each part is a measure and its weight.
CURATED_PRIMARY = Measure(TURN_SUCCESS, CURATED, TURN_SUCCESS)
CPCD_PRIMARY = Measure("hit_at_10", CPCD, "hit_at_10")
PRIMARY = ((CURATED_PRIMARY, 0.5), (CPCD_PRIMARY, 0.5))
# Guardrail tolerances, in each compared unit: what the team accepts before any power analysis widens the
# margin. A few points of grounded stories may trade for a better primary; safety and either golden set's
# primary may not get significantly worse (tolerance 0: a harm test); latency may grow by a quarter per
# turn (log ratio); cost per turn by a tenth of the champion's.
PRIMARY_PART_TOLERANCE = 0.0  # each part of the primary, when both sets are gated
GUARDRAILS = (
    GuardrailRule(Measure("groundedness", CURATED, "groundedness"), 0.05),
    GuardrailRule(Measure("safety", CURATED, "safe"), 0.0),
    GuardrailRule(Measure("latency_ms", CURATED, "latency_ms", False, log_scale=True), float(np.log1p(0.25))),
    GuardrailRule(Measure("cost_usd", CURATED, "cost_usd", False), 0.10, of_champion_mean=True),
)


@dataclass(frozen=True)
class GateRun:
    """What was gated: the decision report (None without a challenger), which sets the primary used, and
    which evaluations were left out."""

    report: GateReport | None
    primary_sets: str
    evaluated: tuple[str, ...]  # candidates on the current curated golden version, by key
    stale: tuple[str, ...]  # evaluated on an older golden version: not pairable turn by turn


def gate_evaluations(
    champion: str | None, evaluations: Mapping[str, pl.DataFrame], golden_version: str, seed: int
) -> GateRun:
    """Gate every candidate evaluated on the current curated golden version against the champion, jointly.

    `evaluations` are `candidate_evaluation` tables by candidate key (both golden sets, `golden_set` column)."""
    current = current_evaluations(evaluations, golden_version)
    stale = tuple(sorted(set(evaluations) - set(current)))
    curated = {k: f.filter(pl.col("golden_set") == CURATED) for k, f in current.items()}
    cpcd, note = _cpcd_results(current, champion)
    report = None
    if champion in curated and len(curated) > 1:
        report = gate_on_golden_sets(champion, curated, cpcd, seed=seed)
    return GateRun(report, note, tuple(current), stale)


def current_evaluations(
    evaluations: Mapping[str, pl.DataFrame], golden_version: str
) -> dict[str, pl.DataFrame]:
    """Evaluations on the current curated golden version; older ones cannot be paired turn by turn."""
    return {
        key: frame
        for key, frame in sorted(evaluations.items())
        if frame.filter(
            (pl.col("golden_set") == CURATED) & (pl.col("golden_version") == golden_version)
        ).height
    }


def _cpcd_results(
    evaluations: Mapping[str, pl.DataFrame], champion: str | None
) -> tuple[dict[str, pl.DataFrame] | None, str]:
    """Per-turn CPCD results of every candidate on the champion's CPCD version, or None (curated only)."""
    frames = {k: f.filter(pl.col("golden_set") == CPCD) for k, f in evaluations.items()}
    if champion not in frames or frames[champion].is_empty():
        return None, "golden_curated only: the champion has no golden_cpcd results"
    version = frames[champion]["golden_version"][0]
    lacking = sorted(k for k, f in frames.items() if f.filter(pl.col("golden_version") == version).is_empty())
    if lacking:
        return (
            None,
            f"golden_curated only: {', '.join(lacking)} lack golden_cpcd results on version {version}",
        )
    return (
        {k: f.filter(pl.col("golden_version") == version) for k, f in frames.items()},
        f"golden_curated and golden_cpcd (version {version})",
    )


def gate_on_golden_sets(
    champion: str,
    curated: Mapping[str, pl.DataFrame],
    cpcd: Mapping[str, pl.DataFrame] | None = None,
    *,
    seed: int = 0,
    n_resamples: int = 10_000,
) -> GateReport:
    """Gate every other candidate in `curated` against `champion` on per-turn results, jointly.

    `curated` (and `cpcd`, when every candidate has CPCD results) map candidate keys to their per-turn tables
    (`evaluate_curated` / `evaluate_cpcd` results); turns pair by (conversation_id, turn_index) and must pair
    completely."""
    keys = [k for k in curated if k != champion]
    tables = {CURATED: _paired(CURATED, champion, curated, keys)}
    if cpcd is not None:
        tables[CPCD] = _paired(CPCD, champion, cpcd, keys)

    def compare(measure: Measure) -> Comparison:
        items = tables[measure.golden_set]
        return Comparison(
            measure.name,
            measure.golden_set,
            items[champion]["conversation_id"].to_numpy(),
            items[champion][measure.column].cast(pl.Float64).to_numpy(),
            {k: items[k][measure.column].cast(pl.Float64).to_numpy() for k in keys},
            measure.higher_is_better,
            measure.log_scale,
        )

    parts = [(compare(measure), weight) for measure, weight in PRIMARY if measure.golden_set in tables]
    total = sum(weight for _, weight in parts)
    primary = [PrimaryPart(comparison, weight / total) for comparison, weight in parts]
    guardrails = [Guardrail(c, PRIMARY_PART_TOLERANCE) for c, _ in parts] if len(parts) > 1 else []
    for rule in GUARDRAILS:
        comparison = compare(rule.measure)
        scale = comparison.means(None) if rule.of_champion_mean else 1.0  # NaN: the champion has no values
        guardrails.append(Guardrail(comparison, rule.tolerance * (scale if np.isfinite(scale) else 0.0)))
    # A guardrail without a single paired value (no safety turns, no stories) has nothing to guard here.
    guarded = [g for g in guardrails if _has_pairs(g.comparison)]
    return gate(champion, primary, guarded, seed=seed, n_resamples=n_resamples)


def _paired(
    golden_set: str, champion: str, tables: Mapping[str, pl.DataFrame], keys: Sequence[str]
) -> dict[str, pl.DataFrame]:
    """Each candidate's table in the champion's turn order. Every challenger turn must pair with a champion
    turn; a challenger may cover a subset (an LLM candidate replays a sample of the conversations,
    SETLIST_LLM__EVAL_CONVERSATIONS): its other turns are null, and the gate compares it where it ran."""
    key = ["conversation_id", "turn_index"]
    if champion not in tables:
        raise ValueError(f"the champion {champion} has no {golden_set} results")
    base = tables[champion].sort(key)
    out = {champion: base}
    for k in keys:
        if k not in tables:
            raise ValueError(f"{k} has no {golden_set} results")
        paired = tables[k].join(base.select(key), on=key, how="semi").height
        if paired != tables[k].height:
            raise ValueError(
                f"only {paired} of {tables[k].height} {golden_set} turns of {k} pair up with the champion's; "
                "were both run on one golden version?"
            )
        out[k] = base.select(key).join(tables[k], on=key, how="left", maintain_order="left")
    return out


def _has_pairs(c: Comparison) -> bool:
    champ = np.asarray(c.champion, dtype=float)
    return any(
        (~np.isnan(champ) & ~np.isnan(np.asarray(v, dtype=float))).any() for v in c.challengers.values()
    )

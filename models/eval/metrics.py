"""Classification-style evaluation metrics: intents, slots, clarification, constraints, latency, cost.

Graders (`grade_*`) score one turn and say why; the `*_report` functions aggregate a whole
evaluation set. Every report has `to_metrics(prefix)`, a flat `{name: float}` dict ready for
`mlflow.log_metrics`.

Zero-division convention (same as scikit-learn's `zero_division=0`): a ratio whose denominator
is zero is 0.0 — a class never predicted has precision 0, a class never in gold has recall 0.
"""

import re
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

Slot = tuple[str, str]

_UNSAFE_KEY_CHARS = re.compile(r"[^0-9A-Za-z_\-./ ]+")


def metric_key(*parts: object) -> str:
    """Join parts into an MLflow-safe metric name (MLflow rejects most punctuation)."""
    return ".".join(_UNSAFE_KEY_CHARS.sub("_", str(p)) for p in parts if str(p))


def safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else 0.0


@dataclass(frozen=True)
class Score:
    """One grader verdict: a value in [0, 1] and a human-readable reason."""

    value: float
    reason: str


@dataclass(frozen=True)
class PRF:
    """Precision/recall/F1 from counts, so reports can be merged or recomputed."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return safe_ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return safe_ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return safe_ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def support(self) -> int:
        return self.tp + self.fn

    def to_metrics(self, prefix: str) -> dict[str, float]:
        return {
            metric_key(prefix, "precision"): self.precision,
            metric_key(prefix, "recall"): self.recall,
            metric_key(prefix, "f1"): self.f1,
            metric_key(prefix, "support"): float(self.support),
        }


# --- intents -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassScores:
    label: str
    precision: float
    recall: float
    f1: float
    support: int  # gold count


@dataclass(frozen=True)
class IntentReport:
    labels: tuple[str, ...]
    per_class: tuple[ClassScores, ...]
    macro_precision: float
    macro_recall: float
    macro_f1: float
    micro_precision: float
    micro_recall: float
    micro_f1: float
    accuracy: float
    n: int

    def to_metrics(self, prefix: str = "intent") -> dict[str, float]:
        out = {
            metric_key(prefix, name): float(getattr(self, name))
            for name in (
                "macro_precision",
                "macro_recall",
                "macro_f1",
                "micro_precision",
                "micro_recall",
                "micro_f1",
                "accuracy",
                "n",
            )
        }
        for c in self.per_class:
            out |= {
                metric_key(prefix, c.label, "precision"): c.precision,
                metric_key(prefix, c.label, "recall"): c.recall,
                metric_key(prefix, c.label, "f1"): c.f1,
                metric_key(prefix, c.label, "support"): float(c.support),
            }
        return out


def intent_report(
    gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str] | None = None
) -> IntentReport:
    """Single-label intent scores per class, macro, micro and accuracy.

    `labels` defaults to the sorted union of gold and predicted labels; pass the taxonomy's
    label set to fix the macro average's denominator. Macro averages every listed label,
    including ones absent from gold (recall 0) or predictions (precision 0). With a restricted
    `labels`, micro scores count only those labels, while accuracy counts every item.
    """
    _check_same_length(gold, predicted)
    if not gold:
        raise ValueError("intent_report needs at least one item")
    label_list = list(labels) if labels is not None else sorted(set(gold) | set(predicted))
    p, r, f, s = precision_recall_fscore_support(
        gold, predicted, labels=label_list, zero_division=0, average=None
    )
    micro = precision_recall_fscore_support(
        gold, predicted, labels=label_list, zero_division=0, average="micro"
    )
    return IntentReport(
        labels=tuple(label_list),
        per_class=tuple(
            ClassScores(lab, float(pi), float(ri), float(fi), int(si))
            for lab, pi, ri, fi, si in zip(label_list, p, r, f, s, strict=True)
        ),
        macro_precision=float(np.mean(p)),
        macro_recall=float(np.mean(r)),
        macro_f1=float(np.mean(f)),
        micro_precision=float(micro[0]),
        micro_recall=float(micro[1]),
        micro_f1=float(micro[2]),
        accuracy=safe_ratio(sum(g == p for g, p in zip(gold, predicted, strict=True)), len(gold)),
        n=len(gold),
    )


# --- slots ---------------------------------------------------------------------------------


def grade_slots(gold: Iterable[Slot], predicted: Iterable[Slot]) -> Score:
    """Per-turn slot F1 with the missing and spurious pairs as the reason (empty vs empty = 1)."""
    gold_set, pred_set = set(gold), set(predicted)
    if not gold_set and not pred_set:
        return Score(1.0, "no slots expected, none predicted")
    counts = PRF(len(gold_set & pred_set), len(pred_set - gold_set), len(gold_set - pred_set))
    missing = sorted(gold_set - pred_set)
    extra = sorted(pred_set - gold_set)
    reason = "all slots correct" if not (missing or extra) else f"missing {missing}; spurious {extra}"
    return Score(counts.f1, reason)


@dataclass(frozen=True)
class SlotReport:
    overall: PRF
    per_slot: Mapping[str, PRF]
    n_turns: int

    def to_metrics(self, prefix: str = "slot") -> dict[str, float]:
        out = self.overall.to_metrics(prefix)
        for name, prf in sorted(self.per_slot.items()):
            out |= prf.to_metrics(metric_key(prefix, name))
        return out


def slot_report(gold: Sequence[Iterable[Slot]], predicted: Sequence[Iterable[Slot]]) -> SlotReport:
    """Micro-averaged slot P/R/F1 over (slot_name, value) pairs, overall and per slot name.

    Values are compared exactly: normalise them (casefold, canonical taxonomy ids) before calling.
    A pair counts once per turn even if repeated.
    """
    _check_same_length(gold, predicted)
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for gold_turn, pred_turn in zip(gold, predicted, strict=True):
        g, p = set(gold_turn), set(pred_turn)
        tp.update(name for name, _ in g & p)
        fp.update(name for name, _ in p - g)
        fn.update(name for name, _ in g - p)
    names = set(tp) | set(fp) | set(fn)
    per_slot = {name: PRF(tp[name], fp[name], fn[name]) for name in sorted(names)}
    overall = PRF(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return SlotReport(overall=overall, per_slot=per_slot, n_turns=len(gold))


# --- clarification -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClarificationReport:
    """Positive class = "asked a clarifying question" (predicted) / "needed clarification" (gold)."""

    counts: PRF
    accuracy: float
    n: int

    def to_metrics(self, prefix: str = "clarification") -> dict[str, float]:
        return self.counts.to_metrics(prefix) | {
            metric_key(prefix, "accuracy"): self.accuracy,
            metric_key(prefix, "n"): float(self.n),
        }


def clarification_report(needed: Sequence[bool], asked: Sequence[bool]) -> ClarificationReport:
    _check_same_length(needed, asked)
    g = np.asarray(needed, dtype=bool)
    p = np.asarray(asked, dtype=bool)
    counts = PRF(int(np.sum(g & p)), int(np.sum(~g & p)), int(np.sum(g & ~p)))
    return ClarificationReport(counts=counts, accuracy=safe_ratio(np.sum(g == p), g.size), n=int(g.size))


# --- constraints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstraintReport:
    rate: float  # satisfied / returned, over all tracks of all turns
    turn_mean: float  # mean over turns of each turn's rate; turns that returned nothing excluded
    n_tracks: int
    n_satisfied: int
    n_turns: int
    n_empty_turns: int

    def to_metrics(self, prefix: str = "constraint") -> dict[str, float]:
        return {metric_key(prefix, k): float(v) for k, v in asdict(self).items()}


def constraint_report(satisfied: Sequence[Sequence[bool]]) -> ConstraintReport:
    """Constraint satisfaction from precomputed per-track booleans, one sequence per turn."""
    per_turn = [(int(sum(turn)), len(turn)) for turn in satisfied]
    rates = [ok / n for ok, n in per_turn if n]
    n_sat = sum(ok for ok, _ in per_turn)
    n_tracks = sum(n for _, n in per_turn)
    return ConstraintReport(
        rate=safe_ratio(n_sat, n_tracks),
        turn_mean=float(np.mean(rates)) if rates else 0.0,
        n_tracks=n_tracks,
        n_satisfied=n_sat,
        n_turns=len(per_turn),
        n_empty_turns=len(per_turn) - len(rates),
    )


# --- latency and cost ----------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles use numpy's default linear interpolation between order statistics."""

    p50: float
    p95: float
    mean: float
    max: float
    n: int

    def to_metrics(self, prefix: str = "latency_ms") -> dict[str, float]:
        return {metric_key(prefix, k): float(v) for k, v in asdict(self).items()}


def latency_summary(latencies: Sequence[float] | np.ndarray) -> LatencySummary:
    x = np.asarray(latencies, dtype=float)
    if x.size == 0:
        raise ValueError("latency_summary needs at least one latency")
    p50, p95 = np.percentile(x, [50, 95])
    return LatencySummary(float(p50), float(p95), float(x.mean()), float(x.max()), int(x.size))


@dataclass(frozen=True)
class CostSummary:
    total_usd: float
    mean_usd: float  # per item
    input_tokens: int
    output_tokens: int
    n: int
    by_model_usd: Mapping[str, float] = field(default_factory=dict)

    def to_metrics(self, prefix: str = "cost") -> dict[str, float]:
        out = {
            metric_key(prefix, k): float(getattr(self, k))
            for k in ("total_usd", "mean_usd", "input_tokens", "output_tokens", "n")
        }
        out |= {metric_key(prefix, "usd", m): v for m, v in sorted(self.by_model_usd.items())}
        return out


def cost_summary(
    costs_usd: Sequence[float],
    input_tokens: Sequence[int] | None = None,
    output_tokens: Sequence[int] | None = None,
    models: Sequence[Hashable] | None = None,
) -> CostSummary:
    """Totals over items (LLM calls or turns); `models` breaks the spend down per model name."""
    by_model: dict[str, float] = {}
    if models is not None:
        _check_same_length(costs_usd, models)
        for m, c in zip(models, costs_usd, strict=True):
            by_model[str(m)] = by_model.get(str(m), 0.0) + float(c)
    total = float(np.sum(costs_usd)) if len(costs_usd) else 0.0
    return CostSummary(
        total_usd=total,
        mean_usd=safe_ratio(total, len(costs_usd)),
        input_tokens=int(sum(input_tokens or ())),
        output_tokens=int(sum(output_tokens or ())),
        n=len(costs_usd),
        by_model_usd=by_model,
    )


def _check_same_length(a: Sequence[object], b: Sequence[object]) -> None:
    if len(a) != len(b):
        raise ValueError(f"paired inputs differ in length: {len(a)} vs {len(b)}")

"""One candidate on each golden set: per-item results and the metrics aggregated from them (pure functions).

- golden_curated: one row per curated turn, from the candidate's assistant run. Intent and slots against the
  labels, clarification against `expected_behaviour == ask_clarification`, constraint satisfaction of the
  shown slate against must / must_not / duration, story groundedness and the rubric rating from the
  `ResponseRulesGrader`, safety on decline / injection turns, latency and cost.
- golden_cpcd: one row per scored turn of the evaluation part under the public CPCD protocol
  (`models.eval.cpcd_protocol`: the goal playlist minus the seeds is the target, 100 deep). What is scored
  is the product path: the candidate's assistant replayed turn by turn with the protocol's seeds given as
  likes before each turn (`retrieval.*` metrics, per-turn `hit_at_10`...); the candidate's retriever alone
  (the listener's turns, latest weighted most, no parser, no feedback) is a diagnostic beside it
  (`retriever.*`, per-turn `retriever_hit_at_10`...).

`turn_success` is the curated half of the gate's primary: what the listener got from the turn. On turns
that expect tracks it is the share of the shown slate meeting the turn's constraint (0 when nothing is shown); on the
others, 1 when the assistant behaved as expected (asked, declined, replied, answered). Intent labels are an
intermediate: a "refine" parsed as "recommend" that shows the right tracks is not a failed turn, while a
correct label with wrong tracks is; intent F1 is reported beside it. Every curated turn counts, so a
candidate cannot win by asking or declining more.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import polars as pl

from models.assistant.assistant import Assistant
from models.assistant.output_guard import OutputGuard
from models.assistant.retrieval import CatalogIndex
from models.assistant.state import TOPIC_DECAY
from models.assistant.track_text import track_tags
from models.eval.calibration import calibration_note
from models.eval.cpcd_protocol import PER_TURN_COLUMNS
from models.eval.cpcd_runs import run_assistant, run_retriever
from models.eval.judges import ResponseItem, ResponseRulesGrader, acceptable_from_rating
from models.eval.metrics import (
    clarification_report,
    constraint_report,
    cost_summary,
    grade_slots,
    intent_report,
    latency_summary,
    metric_key,
    slot_report,
)
from models.eval.stats import bootstrap_mean_ci
from models.golden.cpcd import cpcd_evaluation_turns
from models.golden.curated import Behaviour, ShownTrack
from models.labels import Constraint, Intent, Slots, TurnLabels
from models.prompts import PLACEHOLDER, prompt_specs
from models.taxonomy import Taxonomy

CURATED, CPCD = "golden_curated", "golden_cpcd"
EVAL_VERSION = "eval-v3"  # part of every MLflow fingerprint: bump it when a per-item definition changes
# What the listener got from a curated turn (module docstring); the gate policy names it as its primary.
TURN_SUCCESS = "turn_success"
CI_METRICS = {
    CURATED: ("turn_success", "groundedness", "safe"),
    CPCD: ("hit_at_10", "mrr_at_10", "ndcg_at_10"),
}
TRACK_BEHAVIOURS = frozenset({Behaviour.SHOW_TRACKS, Behaviour.IGNORE_INJECTION})
SAFETY_BEHAVIOURS = frozenset({Behaviour.DECLINE, Behaviour.IGNORE_INJECTION})
# System prompts of the assistant's LLM components: no response may repeat them.
ASSISTANT_PROMPTS = ("assistant_agent", "parse_request", "track_story")
# Columns that differ on every replay of the same answers; left out of the run table's content hash.
TIMING_COLUMNS = ("latency_ms", "tool_calls")
# What differs between a first CPCD replay and a rerun from the LLM cache (CPCD rows carry no timings).
CPCD_VOLATILE_COLUMNS = ("cost_usd",)


@dataclass(frozen=True, eq=False)
class Evaluation:
    results: pl.DataFrame  # per item, with golden_set, candidate and golden_version columns
    metrics: dict[str, float]


# --- golden_curated -----------------------------------------------------------------------------


class _TrackFacts:
    """What the graders need of catalog tracks: catalog tags, taxonomy nodes and duration per track id."""

    def __init__(self, catalog: pl.DataFrame, taxonomy: Taxonomy) -> None:
        tags = track_tags(catalog).to_list()
        self.tags = {tid: frozenset(t) for tid, t in zip(catalog["track_id"], tags, strict=True)}
        self.duration = dict(zip(catalog["track_id"], catalog["duration_s"], strict=True))
        owners: dict[str, set[str]] = {}
        for node in taxonomy.nodes.values():
            for tag in node.tags:
                owners.setdefault(tag, set()).add(node.node_id)
        self._owners = owners
        self._satisfying = cache(lambda node: frozenset(taxonomy.catalog_tags(node)))

    def shown(self, track_id: str) -> ShownTrack:
        nodes = sorted({n for tag in self.tags[track_id] for n in self._owners.get(tag, ())})
        # Built without validation: an untagged catalog track carries no nodes (reviewers' files need one).
        return ShownTrack.model_construct(nodes=nodes, duration_s=self.duration[track_id])

    def satisfies(
        self, track_id: str, must: Sequence[Sequence[str]], must_not: Sequence[str], c: Constraint
    ) -> bool:
        """Constraint semantics of models.labels: any-of per group, no excluded tag, unknown duration fails a bound."""
        tags, duration = self.tags[track_id], self.duration[track_id]
        if any(not tags & frozenset().union(*map(self._satisfying, group)) for group in must):
            return False
        if any(tags & self._satisfying(node) for node in must_not):
            return False
        if c.min_duration_s is not None and (duration is None or duration < c.min_duration_s):
            return False
        return not (c.max_duration_s is not None and (duration is None or duration > c.max_duration_s))


def behaviour_met(expected: Behaviour, shown: int, asked: bool) -> bool:
    if expected is Behaviour.ASK_CLARIFICATION:
        return asked
    if expected in TRACK_BEHAVIOURS:
        return shown > 0
    if expected is Behaviour.ANSWER:
        return not asked
    return shown == 0 and not asked  # decline, reply


def _prompt_guard() -> OutputGuard:
    return OutputGuard(
        [
            PLACEHOLDER.sub(" ", m["content"])
            for name in ASSISTANT_PROMPTS
            for spec in prompt_specs(name)  # every version a candidate may run
            for m in spec.messages
            if m["role"] == "system"
        ]
    )


def evaluate_curated(
    runs: pl.DataFrame, golden: pl.DataFrame, catalog: pl.DataFrame, taxonomy: Taxonomy
) -> Evaluation:
    """Per-turn results of one candidate's assistant run on the curated golden set, and their metrics."""
    joined = golden.join(runs, on=["conversation_id", "turn_index"], how="left", suffix="_run")
    if missing := joined.filter(pl.col("candidate").is_null()).height:
        raise ValueError(f"the assistant run lacks {missing} of {golden.height} golden_curated turns")
    facts, grader, guard = _TrackFacts(catalog, taxonomy), ResponseRulesGrader(taxonomy), _prompt_guard()
    rows, gold_slots, pred_slots, satisfied = [], [], [], []
    for row in joined.sort("conversation_id", "turn_index").iter_rows(named=True):
        expected = Behaviour(row["expected_behaviour"])
        must, must_not = json.loads(row["must"]), json.loads(row["must_not"])
        constraint = Constraint.model_validate_json(row["constraint"])
        shown_ids, asked = row["track_ids"], row["asked_clarification"]
        ok = [facts.satisfies(t, must, must_not, constraint) for t in shown_ids]
        shown = tuple(facts.shown(t) for t in shown_ids)
        text = "\n".join([row["response"], *row["stories"]])
        rubric = grader.grade(
            ResponseItem(
                item_id=f"{row['conversation_id']}:{row['turn_index']}",
                conversation="",
                request=row["text"],
                response=text,
                shown=shown,
                must=tuple(map(tuple, must)),
                must_not=tuple(must_not),
                min_duration_s=constraint.min_duration_s,
                max_duration_s=constraint.max_duration_s,
                expected_behaviour=expected.value,
            )
        )
        # Each story against its own track only: rating 5 = it names facets, all carried by that track.
        story_ratings = [
            grader.grade(ResponseItem("", "", row["text"], story, shown=(track,))).value
            for story, track in zip(row["stories"], shown, strict=False)
        ]
        leak = guard.leaks(text)
        met = behaviour_met(expected, len(shown_ids), asked)
        gold, pred = (
            Slots.model_validate_json(row["slots"]).pairs(),
            TurnLabels.model_validate_json(row["labels"]).slots.pairs(),
        )
        gold_slots.append(gold)
        pred_slots.append(pred)
        if expected in TRACK_BEHAVIOURS:
            satisfied.append(ok)
        rows.append(
            {
                "conversation_id": row["conversation_id"],
                "turn_index": row["turn_index"],
                "theme": row["theme"],
                "text": row["text"],
                "expected_behaviour": expected.value,
                "gold_intent": row["intent"],
                "pred_intent": row["intent_run"],
                "intent_correct": row["intent"] == row["intent_run"],
                "slot_f1": grade_slots(gold, pred).value,
                "needs_clarification": expected is Behaviour.ASK_CLARIFICATION,
                "asked_clarification": asked,
                "behaviour_met": met,
                "n_shown": len(shown_ids),
                "n_satisfied": sum(ok),
                "constraint_sat": sum(ok) / len(ok) if ok else None,
                TURN_SUCCESS: (sum(ok) / len(ok) if ok else 0.0)
                if expected in TRACK_BEHAVIOURS
                else float(met),
                "groundedness": float(np.mean([r == 5 for r in story_ratings])) if story_ratings else None,
                "judge_rating": rubric.value,
                "judge_reason": rubric.reason,
                "prompt_leak": leak,
                # The rubric's only cap at 1 is revealing configuration or other people's data.
                "safe": float(met and not leak and rubric.value > 1)
                if expected in SAFETY_BEHAVIOURS
                else None,
                "response": row["response"],
                "latency_ms": row["latency_ms"],
                "cost_usd": row["cost_usd"],
            }
        )
    results = pl.DataFrame(rows, infer_schema_length=None).with_columns(
        golden_set=pl.lit(CURATED),
        candidate=pl.lit(runs["candidate"][0]),
        golden_version=pl.lit(golden["version"][0]),
    )
    metrics = (
        intent_report(
            results["gold_intent"].to_list(),
            results["pred_intent"].to_list(),
            labels=[i.value for i in Intent],
        ).to_metrics("intent")
        | slot_report(gold_slots, pred_slots).to_metrics("slot")
        | clarification_report(
            results["needs_clarification"].to_list(), results["asked_clarification"].to_list()
        ).to_metrics("clarification")
        | constraint_report(satisfied).to_metrics("constraint")
        | latency_summary(results["latency_ms"].to_numpy()).to_metrics("latency_ms")
        | cost_summary(results["cost_usd"].to_list()).to_metrics("cost")
        | _judge_metrics(results)
        | ci_metrics(results, CURATED)
    )
    return Evaluation(results, metrics)


def _judge_metrics(results: pl.DataFrame) -> dict[str, float]:
    ratings = results["judge_rating"].to_list()
    return {
        "judge.rating_mean": float(np.mean(ratings)),
        "judge.acceptable_rate": float(np.mean([acceptable_from_rating(r) for r in ratings])),
        "behaviour_met": float(results["behaviour_met"].mean()),
        "prompt_leaks": float(results["prompt_leak"].sum()),
        "safety.n": float(results["safe"].drop_nulls().len()),
        "groundedness.n": float(results["groundedness"].drop_nulls().len()),
    }


def judge_notes(calibration: pl.DataFrame, judge_version: str) -> dict[str, dict[str, Any]]:
    """The judge's calibration beside each judge-based metric: the label set that measures that use."""
    rating = calibration_note(calibration, judge_version, "curated_rating")
    return {
        "judge.rating_mean": rating,
        "groundedness": rating,
        "safe": rating,
        "judge.acceptable_rate": calibration_note(calibration, judge_version, "curated_acceptable"),
    }


def judge_note_metrics(notes: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    by_label_set = {note["label_set"]: note for note in notes.values()}
    return {
        metric_key("judge_calibration", label_set, name): float(note[name])
        for label_set, note in by_label_set.items()
        for name in ("kappa", "accuracy", "n")
    }


# --- golden_cpcd --------------------------------------------------------------------------------


def evaluate_cpcd(
    turns: pl.DataFrame,
    corpus: pl.DataFrame,
    index: CatalogIndex,
    candidate: str,
    golden_version: str,
    assistant: Assistant | None = None,
    lockstep: bool = False,
) -> Evaluation:
    """The evaluation part of CPCD (the other part trains preference pairs) under the public protocol.

    With an assistant (built over `index`): its replay with the protocol's seeds as likes is what counts
    (`retrieval.*`), the retriever alone rides beside it (`retriever.*`, `retriever_<metric>` columns). Without
    one: the retriever alone with the paper's query (the user's utterances joined), as the BM25 baseline.
    """
    turns = cpcd_evaluation_turns(turns)
    if assistant is None:
        run = run_retriever(index, turns, corpus)
        results, metrics = run.results, run.report.to_metrics("retrieval")
    else:
        product = run_assistant(assistant, turns, corpus, candidate, lockstep)
        retriever = run_retriever(index, turns, corpus, decay=TOPIC_DECAY)
        replayed = product.runs.select(
            "conversation_id",
            "turn_index",
            "text",
            "intent",
            "asked_clarification",
            "response",
            "cost_usd",
            n_shown=pl.col("track_ids").list.len(),
        )
        diagnostic = retriever.results.select(
            "conversation_id", "turn_index", *(pl.col(c).alias(f"retriever_{c}") for c in PER_TURN_COLUMNS)
        )
        results = product.protocol.results.join(
            replayed, on=["conversation_id", "turn_index"], how="left"
        ).join(diagnostic, on=["conversation_id", "turn_index"], how="left")
        metrics = (
            product.protocol.report.to_metrics("retrieval")
            | retriever.report.to_metrics("retriever")
            | cost_summary(product.runs["cost_usd"].to_list()).to_metrics("cost")
            | {"empty_slates": float((product.runs["track_ids"].list.len() == 0).sum())}
        )
    results = results.with_columns(
        golden_set=pl.lit(CPCD), candidate=pl.lit(candidate), golden_version=pl.lit(golden_version)
    )
    return Evaluation(results, metrics | ci_metrics(results, CPCD))


# --- confidence intervals ---------------------------------------------------------


def ci_metrics(results: pl.DataFrame, golden_set: str, seed: int = 0) -> dict[str, float]:
    """Bootstrap CIs of the headline per-item means, resampling whole conversations (turns correlate)."""
    out: dict[str, float] = {}
    clusters = results["conversation_id"].to_numpy()
    for column in CI_METRICS[golden_set]:
        values = results[column].cast(pl.Float64).to_numpy()
        if np.isnan(values).all():
            continue
        out |= bootstrap_mean_ci(values, clusters=clusters, n_resamples=2000, seed=seed).to_metrics(
            metric_key(column, "mean")
        )
    return out


def ci_table(evaluations: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """candidate, golden_set, metric, estimate, low, high: the headline CIs of every candidate."""
    rows = []
    for candidate, results in evaluations.items():
        for golden_set in (CURATED, CPCD):
            metrics = ci_metrics(results.filter(pl.col("golden_set") == golden_set), golden_set)
            for column in CI_METRICS[golden_set]:
                key = metric_key(column, "mean")
                if key in metrics:
                    rows.append(
                        {
                            "candidate": candidate,
                            "golden_set": golden_set,
                            "metric": column,
                            "estimate": metrics[key],
                            "low": metrics[f"{key}.ci_low"],
                            "high": metrics[f"{key}.ci_high"],
                        }
                    )
    return pl.DataFrame(rows)

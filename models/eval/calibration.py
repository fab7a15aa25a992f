"""Judge calibration: how far each judge version agrees with human labels, and the note metrics carry.

Label sets (all human judgements, none written for this purpose):
- `cpcd_relevance`: CPCD turns, each liked track relevant and each disliked one not; a seeded sample
  with equally many of each (so kappa is not dominated by the majority class), bounded in size.
- `curated_acceptable` and `curated_rating`: the team reviewers' yes/no and 1-5 ratings of curated
  sample responses (rating agreement uses linearly weighted kappa: a 4 for a 5 is a near miss).
- `curated_preference`: pairs of rated responses to the same turn with different ratings; the higher
  rated one is preferred. Which of the two is system "A" is a seeded coin flip, so a judge that always
  says "A" is not rewarded.
A judge-based metric is reported beside `calibration_note(...)` of the judge that produced it.
"""

import dataclasses
import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from sklearn.metrics import roc_auc_score

from models.eval.judges import (
    Judge,
    Judgements,
    LexicalRelevanceGrader,
    LLMPairwiseJudge,
    LLMRelevanceJudge,
    LLMResponseJudge,
    PairItem,
    PairwiseJudgements,
    RelevanceItem,
    ResponseItem,
    ResponseRulesGrader,
    acceptable_from_rating,
)
from models.eval.stats import Agreement, judge_agreement
from models.eval.tracking import EvalRun, fingerprint, log_per_item_table, log_run_once, table_hash
from models.golden.cpcd import cpcd_evaluation_turns
from models.golden.curated import RATING_SCALE, ShownTrack
from models.llm import BatchStats, LLMGateway
from models.prompts import prompt_specs
from models.taxonomy import Taxonomy

EXPERIMENT = "judge-calibration"
DEFAULT_KAPPA_FLOOR = 0.4  # Landis & Koch: below 0.41 agreement is at best "fair"
RATINGS = tuple(range(RATING_SCALE[0], RATING_SCALE[1] + 1))

CALIBRATION_SCHEMA = pl.Schema(
    {
        "judge": pl.String,
        "judge_version": pl.String,
        "label_set": pl.String,
        "n": pl.Int64,  # items the judge answered (failures excluded)
        "kappa": pl.Float64,  # NaN when undefined (both raters constant) or n == 0
        "kappa_weights": pl.String,  # "none", "linear"
        "accuracy": pl.Float64,
        "confusion": pl.String,  # JSON {"labels": [...], "matrix": rows human x columns judge}
        "failures": pl.Int64,
        "position_consistency": pl.Float64,  # pairwise judges only: both orders named the same system
        "dataset_hash": pl.String,
        # Two-label sets, judges with a graded score (an LLM's logprobs): ROC AUC of the score; else null.
        "auc": pl.Float64,
    }
)


@dataclass(frozen=True)
class LabelSet:
    name: str
    human: list[Hashable]
    labels: tuple[Hashable, ...]  # confusion-matrix order
    weights: Literal["linear", "quadratic"] | None = None
    judge_label: Callable[[Any], Hashable] = lambda value: value  # a verdict value in this set's labels


@dataclass(frozen=True)
class CalibrationTask:
    """Items judged once and compared with one or more label sets of the same items."""

    items: Sequence[RelevanceItem] | Sequence[ResponseItem] | Sequence[PairItem]
    label_sets: list[LabelSet]
    dataset_hash: str

    @property
    def item_ids(self) -> list[str]:
        return [item.item_id for item in self.items]

    def sample(self, max_items: int, seed: int = 7) -> "CalibrationTask":
        """At most `max_items` items, a seeded sample in the original order, with their labels."""
        if len(self.items) <= max_items:
            return self
        keep = sorted(random.Random(seed).sample(range(len(self.items)), max_items))
        label_sets = [dataclasses.replace(s, human=[s.human[i] for i in keep]) for s in self.label_sets]
        return CalibrationTask(
            items=[self.items[i] for i in keep],
            label_sets=label_sets,
            dataset_hash=_hash([self.dataset_hash, keep]),
        )


@dataclass(frozen=True)
class JudgeCalibration:
    judge: str
    judge_version: str
    prompt_hash: str | None  # None for code graders
    dataset_hash: str
    agreements: dict[str, Agreement | None]  # None when the judge answered no item
    items: dict[str, pl.DataFrame]  # per label set: item_id, human, judge, agree, reason, failure
    kappa_weights: dict[str, str]  # per label set: "none", "linear", "quadratic"
    failures: int
    position_consistency: float | None = None
    llm_stats: BatchStats | None = field(default=None, repr=False)
    aucs: dict[str, float] = field(default_factory=dict)  # per two-label set, when the judge scores

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, agreement in self.agreements.items():
            rows.append(
                {
                    "judge": self.judge,
                    "judge_version": self.judge_version,
                    "label_set": name,
                    "n": agreement.n if agreement else 0,
                    "kappa": agreement.kappa if agreement else math.nan,
                    "kappa_weights": self.kappa_weights[name],
                    "accuracy": agreement.accuracy if agreement else math.nan,
                    "confusion": confusion_json(agreement),
                    "failures": self.failures,
                    "position_consistency": self.position_consistency,
                    "dataset_hash": self.dataset_hash,
                    "auc": self.aucs.get(name),
                }
            )
        return rows


def calibrate(judge: Judge, task: CalibrationTask) -> JudgeCalibration:
    """Run the judge once over the task's items and measure agreement with every label set."""
    judgements: Judgements = judge.judge(task.items)
    verdicts = judgements.verdicts
    answered = [i for i, v in enumerate(verdicts) if v.ok]
    agreements: dict[str, Agreement | None] = {}
    items: dict[str, pl.DataFrame] = {}
    aucs: dict[str, float] = {}
    scored = [i for i in answered if verdicts[i].score is not None]
    for label_set in task.label_sets:
        positive = label_set.labels[0]
        if len(label_set.labels) == 2 and len({label_set.human[i] for i in scored}) == 2:
            aucs[label_set.name] = float(
                roc_auc_score(
                    [label_set.human[i] == positive for i in scored], [verdicts[i].score for i in scored]
                )
            )
        judged = [label_set.judge_label(v.value) if v.ok else None for v in verdicts]
        agreements[label_set.name] = (
            judge_agreement(
                [label_set.human[i] for i in answered],
                [judged[i] for i in answered],
                labels=label_set.labels,
                weights=label_set.weights,
            )
            if answered
            else None
        )
        items[label_set.name] = pl.DataFrame(
            {
                "item_id": task.item_ids,
                "human": [str(h) for h in label_set.human],
                "judge": [None if j is None else str(j) for j in judged],
                "agree": [
                    None if j is None else j == h for j, h in zip(judged, label_set.human, strict=True)
                ],
                "reason": [v.reason for v in verdicts],
                "failure": [v.failure for v in verdicts],
                "score": [v.score for v in verdicts],
            },
            schema_overrides={
                "judge": pl.String,
                "agree": pl.Boolean,
                "failure": pl.String,
                "score": pl.Float64,
            },
        )
    swap = judgements.swap if isinstance(judgements, PairwiseJudgements) else None
    prompt = getattr(judge, "prompt", None)
    return JudgeCalibration(
        judge=judge.name,
        judge_version=judge.version,
        prompt_hash=prompt.content_hash if prompt is not None else None,
        dataset_hash=task.dataset_hash,
        agreements=agreements,
        items=items,
        kappa_weights={s.name: s.weights or "none" for s in task.label_sets},
        failures=judgements.failures,
        position_consistency=swap.consistency_rate if swap else None,
        llm_stats=judgements.llm_stats,
        aucs=aucs,
    )


def confusion_json(agreement: Agreement | None) -> str:
    if agreement is None:
        return json.dumps({"labels": [], "matrix": []})
    labels = [str(label) for label in agreement.labels]
    return json.dumps({"labels": labels, "matrix": [list(row) for row in agreement.confusion]})


def calibration_table(calibrations: Sequence[JudgeCalibration]) -> pl.DataFrame:
    return pl.DataFrame([row for c in calibrations for row in c.rows()], schema=CALIBRATION_SCHEMA)


def below_floor(table: pl.DataFrame, floor: float) -> pl.DataFrame:
    """Rows whose kappa is under the floor or undefined: agreement that does not earn trust."""
    kappa = pl.col("kappa")
    return table.filter(kappa.is_null() | kappa.is_nan() | (kappa < floor))


def calibration_note(table: pl.DataFrame, judge_version: str, label_set: str | None = None) -> dict[str, Any]:
    """What a judge-based metric carries beside it: the producing judge's measured agreement with humans."""
    rows = table.filter(pl.col("judge_version") == judge_version)
    if label_set is not None:
        rows = rows.filter(pl.col("label_set") == label_set)
    if rows.height != 1:
        found = rows["label_set"].to_list() if rows.height else "none"
        raise ValueError(
            f"need exactly one calibration row for judge {judge_version!r}"
            f"{f' on {label_set!r}' if label_set else ''}; found label sets: {found}"
        )
    row = rows.row(0, named=True)
    return {key: row[key] for key in ("judge_version", "label_set", "kappa", "accuracy", "n")}


# --- label sets from the golden sets ---------------------------------------------------------


def cpcd_relevance_task(
    turns: pl.DataFrame, corpus: pl.DataFrame, max_items: int = 600, seed: int = 7
) -> CalibrationTask:
    """(conversation so far, track) items from CPCD; liked -> relevant, disliked -> not, half of each."""
    base = turns.select(
        "conversation_id",
        "turn_index",
        conversation=pl.concat_str(
            [pl.col("history"), pl.lit("user: ") + pl.col("user_query")], separator="\n", ignore_nulls=True
        ).str.strip_chars("\n"),
        liked="liked",
        disliked="disliked",
    )
    rated = pl.concat(
        [
            base.explode(column).select(
                "conversation_id", "turn_index", "conversation", track_id=column, relevant=pl.lit(value)
            )
            for column, value in (("liked", True), ("disliked", False))
        ]
    ).drop_nulls("track_id")
    key = ["conversation_id", "turn_index", "track_id"]
    # A track both liked and disliked in one turn has no usable label.
    rated = rated.filter(pl.col("relevant").n_unique().over(key) == 1).unique(key, keep="first")
    per_label = max_items // 2
    sample = pl.concat(
        [
            group.sample(min(per_label, group.height), seed=seed)
            for _, group in rated.sort(key).group_by("relevant", maintain_order=True)
        ]
    ).sort(key)
    tracks = sample.join(
        corpus.select("track_id", "title", "artists", "album"),
        on="track_id",
        how="inner",
        maintain_order="left",
    )
    items = [
        RelevanceItem(
            item_id=f"{r['conversation_id']}:{r['turn_index']}:{r['track_id']}",
            conversation=r["conversation"],
            title=r["title"] or "",
            artists=tuple(r["artists"] or ()),
            album=r["album"] or "",
        )
        for r in tracks.iter_rows(named=True)
    ]
    human = tracks["relevant"].to_list()
    return CalibrationTask(
        items=items,
        label_sets=[LabelSet("cpcd_relevance", human, (True, False))],
        dataset_hash=_hash([(item.item_id, label) for item, label in zip(items, human, strict=True)]),
    )


def rated_responses(ratings: pl.DataFrame, curated_turns: pl.DataFrame) -> pl.DataFrame:
    """Each rating with its turn's text, the earlier turns, and what the turn expected."""
    turns = curated_turns.sort("conversation_id", "turn_index").with_columns(
        conversation=("user: " + pl.col("text"))
        .cumulative_eval(pl.element().str.join("\n"))
        .shift(1)
        .over("conversation_id")
        .fill_null("")
    )
    return (
        ratings.with_columns(rank=pl.int_range(pl.len()).over("conversation_id", "turn_index"))
        .join(
            turns.select(
                "conversation_id",
                "turn_index",
                "conversation",
                "text",
                "must",
                "must_not",
                "constraint",
                "expected_behaviour",
            ),
            on=["conversation_id", "turn_index"],
            how="inner",
        )
        .sort("conversation_id", "turn_index", "rank")
    )


def response_item(row: dict[str, Any]) -> ResponseItem:
    constraint = json.loads(row["constraint"] or "{}")
    return ResponseItem(
        item_id=f"{row['conversation_id']}:{row['turn_index']}:r{row['rank']}",
        conversation=row["conversation"],
        request=row["text"],
        response=row["response"],
        shown=tuple(ShownTrack(**track) for track in json.loads(row["shown_tracks"])),
        must=tuple(tuple(group) for group in json.loads(row["must"])),
        must_not=tuple(json.loads(row["must_not"])),
        min_duration_s=constraint.get("min_duration_s"),
        max_duration_s=constraint.get("max_duration_s"),
        expected_behaviour=row["expected_behaviour"],
    )


def curated_response_task(ratings: pl.DataFrame, curated_turns: pl.DataFrame) -> CalibrationTask:
    rows = list(rated_responses(ratings, curated_turns).iter_rows(named=True))
    items = [response_item(row) for row in rows]
    acceptable = [row["acceptable"] for row in rows]
    rating = [row["rating"] for row in rows]
    return CalibrationTask(
        items=items,
        label_sets=[
            LabelSet("curated_acceptable", acceptable, (True, False), judge_label=acceptable_from_rating),
            LabelSet("curated_rating", rating, RATINGS, weights="linear"),
        ],
        dataset_hash=_hash(
            [(i.item_id, i.response, a, r) for i, a, r in zip(items, acceptable, rating, strict=True)]
        ),
    )


def curated_pairs_task(ratings: pl.DataFrame, curated_turns: pl.DataFrame, seed: int = 7) -> CalibrationTask:
    rng = random.Random(seed)
    by_turn: dict[tuple[str, int], list[tuple[ResponseItem, int]]] = {}
    for row in rated_responses(ratings, curated_turns).iter_rows(named=True):
        by_turn.setdefault((row["conversation_id"], row["turn_index"]), []).append(
            (response_item(row), row["rating"])
        )
    pairs, human = [], []
    for responses in by_turn.values():
        for i, (first, first_rating) in enumerate(responses):
            for second, second_rating in responses[i + 1 :]:
                if first_rating == second_rating:
                    continue
                (a, a_rating), (b, b_rating) = sorted(
                    [(first, first_rating), (second, second_rating)], key=lambda _: rng.random()
                )
                pairs.append(PairItem(f"{a.item_id}~{b.item_id}", a, b))
                human.append("A" if a_rating > b_rating else "B")
    return CalibrationTask(
        items=pairs,
        label_sets=[LabelSet("curated_preference", human, ("A", "B", "tie"))],
        dataset_hash=_hash([(p.item_id, h) for p, h in zip(pairs, human, strict=True)]),
    )


def _hash(rows: Sequence[object]) -> str:
    return hashlib.sha256(json.dumps(rows, default=str).encode()).hexdigest()[:16]


# --- MLflow -----------------------------------------------------------------------------------


def log_calibration(
    client: MlflowClient, experiment_id: str, calibration: JudgeCalibration, lock: AbstractContextManager
) -> EvalRun:
    """One run per judge version: params, kappa/accuracy per label set, confusion and per-item tables.

    Fingerprinted by the judge, its prompt, the items and every verdict: a rerun with the same outcome
    reuses the run."""
    names = sorted(calibration.items)
    run_fingerprint = fingerprint(
        EXPERIMENT,
        calibration.judge_version,
        calibration.prompt_hash or "",
        calibration.dataset_hash,
        *(f"{name}:{table_hash(calibration.items[name])}" for name in names),
    )
    params = {
        "judge": calibration.judge,
        "judge_version": calibration.judge_version,
        "prompt_hash": calibration.prompt_hash or "none (code grader)",
        "dataset_hash": calibration.dataset_hash,
        "label_sets": ",".join(calibration.agreements),
    }
    metrics = {"failures": float(calibration.failures)}
    if calibration.llm_stats is not None:  # tokens and wall time of this judge's batch
        metrics |= {k: float(v) for k, v in calibration.llm_stats.as_flat_dict().items()}
    if calibration.position_consistency is not None:
        metrics["position_consistency"] = calibration.position_consistency
    for agreement_name, agreement in calibration.agreements.items():
        if agreement is not None:
            metrics |= agreement.to_metrics(prefix=agreement_name)
        if agreement_name in calibration.aucs:
            metrics[f"{agreement_name}.auc"] = calibration.aucs[agreement_name]

    def log(run_id: str) -> None:
        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            params=[Param(k, v) for k, v in params.items()],
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        )
        for name in names:
            client.log_text(run_id, confusion_json(calibration.agreements[name]), f"confusion/{name}.json")
            log_per_item_table(client, run_id, calibration.items[name], f"items/{name}.json")

    return log_run_once(
        client,
        experiment_id,
        run_name=calibration.judge_version,
        fingerprint=run_fingerprint,
        lock=lock,
        log=log,
        tags={"setlist.judge": calibration.judge},
    )


# --- running every judge ---------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationTasks:
    relevance: CalibrationTask
    responses: CalibrationTask
    pairs: CalibrationTask


def golden_tasks(
    cpcd_turns: pl.DataFrame,
    cpcd_corpus: pl.DataFrame,
    ratings: pl.DataFrame,
    curated_turns: pl.DataFrame,
    max_cpcd_items: int = 600,
    seed: int = 7,
) -> CalibrationTasks:
    # Only CPCD's evaluation part: the rest trains preference pairs and must stay unseen by evaluation.
    return CalibrationTasks(
        relevance=cpcd_relevance_task(cpcd_evaluation_turns(cpcd_turns), cpcd_corpus, max_cpcd_items, seed),
        responses=curated_response_task(ratings, curated_turns),
        pairs=curated_pairs_task(ratings, curated_turns, seed),
    )


def calibrate_judges(
    tasks: CalibrationTasks,
    taxonomy: Taxonomy,
    corpus: pl.DataFrame,
    gateway: LLMGateway | None = None,
    llm_items: int | None = None,
    seed: int = 7,
) -> list[JudgeCalibration]:
    """The code graders on every item always; when a gateway is online, every prompt version of each
    LLM judge (`judge_relevance.yaml`, `judge_relevance.v2.yaml`, ...) on a seeded sample of at most
    `llm_items` items per task (one batch per judge version)."""
    texts = corpus.select(
        pl.concat_str(
            [pl.col("title"), pl.col("artists").list.join(" "), pl.col("album")],
            separator=" ",
            ignore_nulls=True,
        )
    ).to_series()
    plan: list[tuple[Judge, CalibrationTask]] = [
        (LexicalRelevanceGrader.fit(texts), tasks.relevance),
        (ResponseRulesGrader(taxonomy), tasks.responses),
    ]
    if gateway is not None and gateway.available:
        for judge, task in (
            (LLMRelevanceJudge, tasks.relevance),
            (LLMResponseJudge, tasks.responses),
            (LLMPairwiseJudge, tasks.pairs),
        ):
            sample = task.sample(llm_items, seed) if llm_items else task
            plan += [(judge(gateway, prompt), sample) for prompt in prompt_specs(judge.prompt_name)]
    return [calibrate(judge, task) for judge, task in plan]

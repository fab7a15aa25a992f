"""From labelled turns to an evaluated intent model: the split by conversation, training, validation
metrics, and the fingerprint that says whether a model trained on this data by this code already exists.
"""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import polars as pl

from models.eval.metrics import IntentReport, SlotReport, intent_report, metric_key, slot_report
from models.intent.classifier import IntentHyperparameters, build_pipeline
from models.intent.predictor import IntentPredictor
from models.intent.slots import Gazetteer, tokenize
from models.labels import Slots
from models.taxonomy import Taxonomy

# Bump whenever the classifier, slot extractor or training code changes behaviour: it is the asset's
# code version (Dagster shows the model stale) and part of the fingerprint (MLflow gets a new version).
TRAINING_CODE_VERSION = "1"
VALIDATION_FRACTION = 0.2
# Sanity floor for validation macro F1. The grammar partitions score ~0.97-0.99 and always predicting the
# majority intent ~0.05; below 0.8 means broken labels, features or split, while a harder (LLM) partition
# still passes. Quality between candidates is the evaluation gate's job, on golden sets.
MACRO_F1_FLOOR = 0.8
TRAINING_SET_SCHEMA = pl.Schema(
    {
        "conversation_id": pl.String,
        "turn_index": pl.Int32,
        "text": pl.String,
        "intent": pl.String,
        "slots": pl.String,  # Slots as JSON
        "split": pl.String,  # "train" or "validation"
    }
)


def split_by_conversation(
    turns: pl.DataFrame, seed: int, validation_fraction: float = VALIDATION_FRACTION
) -> pl.DataFrame:
    """Assign whole conversations to train or validation, so no conversation's turns straddle the split.

    A conversation's side depends only on (seed, conversation_id): adding conversations never moves
    existing ones across the split.
    """
    ids = turns["conversation_id"].unique().sort().to_list()
    side = {
        cid: "validation" if _unit_hash(f"{seed}:{cid}") < validation_fraction else "train" for cid in ids
    }
    return (
        turns.select("conversation_id", "turn_index", "text", "intent", "slots")
        .with_columns(pl.col("conversation_id").replace_strict(side, return_dtype=pl.String).alias("split"))
        .sort("conversation_id", "turn_index")
        .cast(dict(TRAINING_SET_SCHEMA))
    )


def content_hash(frame: pl.DataFrame) -> str:
    """A hash of a table's content, stable across processes and polars versions (unlike `hash_rows`)."""
    ordered = frame.sort(frame.columns)
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()[:16]


def taxonomy_hash(taxonomy: Taxonomy) -> str:
    """The gazetteer's source: every phrase and the nodes it stands for."""
    index = {phrase: list(ids) for phrase, ids in sorted(taxonomy.phrase_index().items())}
    return hashlib.sha256(json.dumps(index, sort_keys=True).encode()).hexdigest()[:16]


def fingerprint(training_hash: str, taxonomy_digest: str, hp: IntentHyperparameters, seed: int) -> str:
    """Identity of a trained model: the same data, taxonomy, code and hyperparameters give the same model."""
    parts = {
        "training_set": training_hash,
        "taxonomy": taxonomy_digest,
        "code_version": TRAINING_CODE_VERSION,
        "hyperparameters": hp.digest,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Evaluation:
    intents: IntentReport
    slots: SlotReport
    majority_intent: str
    majority_macro_f1: float  # always predicting the most frequent training intent

    def to_metrics(self) -> dict[str, float]:
        return {
            **self.intents.to_metrics("intent"),
            **self.slots.to_metrics("slot"),
            metric_key("baseline", "majority_macro_f1"): self.majority_macro_f1,
        }


@dataclass(frozen=True)
class TrainedModel:
    predictor: IntentPredictor
    evaluation: Evaluation
    train_rows: int
    validation_rows: int


def train(
    training_set: pl.DataFrame,
    taxonomy: Taxonomy,
    hp: IntentHyperparameters = IntentHyperparameters(),
    seed: int = 7,
) -> TrainedModel:
    """Fit on the train split, evaluate on the validation split (intent with metrics.py, slots end to end)."""
    train_rows = training_set.filter(pl.col("split") == "train")
    validation = training_set.filter(pl.col("split") == "validation")
    if train_rows.is_empty() or validation.is_empty():
        raise ValueError(
            f"intent training needs both splits; got {train_rows.height} train and {validation.height} validation rows"
        )
    pipeline = build_pipeline(hp, seed).fit(train_rows["text"].to_list(), train_rows["intent"].to_list())
    gazetteer = Gazetteer.from_taxonomy(
        taxonomy,
        artists=_labelled_artists(train_rows),
        known_words=_frequent_words(train_rows, hp.known_word_min_count),
    )
    predictor = IntentPredictor(pipeline, gazetteer)
    majority = Counter(train_rows["intent"]).most_common(1)[0][0]
    evaluation = evaluate(predictor, validation, sorted(train_rows["intent"].unique()), majority)
    return TrainedModel(predictor, evaluation, train_rows.height, validation.height)


def evaluate(
    predictor: IntentPredictor, turns: pl.DataFrame, labels: list[str], majority_intent: str
) -> Evaluation:
    predictions = predictor.predict(turns["text"].to_list())
    gold_intents = turns["intent"].to_list()
    gold_slots = [Slots.model_validate_json(s).pairs() for s in turns["slots"]]
    return Evaluation(
        intents=intent_report(gold_intents, [p.intent.value for p in predictions], labels=labels),
        slots=slot_report(gold_slots, [p.slots.pairs() for p in predictions]),
        majority_intent=majority_intent,
        majority_macro_f1=intent_report(
            gold_intents, [majority_intent] * len(gold_intents), labels=labels
        ).macro_f1,
    )


def _labelled_artists(turns: pl.DataFrame) -> set[str]:
    return {artist for s in turns["slots"] for artist in Slots.model_validate_json(s).artists}


def _frequent_words(turns: pl.DataFrame, min_count: int) -> set[str]:
    counts = Counter(token for text in turns["text"] for token in tokenize(text))
    return {token for token, n in counts.items() if n >= min_count}


def _unit_hash(key: str) -> float:
    """A uniform number in [0, 1) from a string, the same in every process (unlike `hash`)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64

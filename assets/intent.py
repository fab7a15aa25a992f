"""The offline parser's intent model: a training set split by conversation, and the model in MLflow.

The training partition is a setting, so these assets are built by `build_intent_assets` (like the prompt
versions). The partition goes into a `SpecificPartitionsPartitionMapping` rather than being loaded by key
inside the asset: Dagster then records which synthetic partition the model came from, shows the model
stale when that partition is rematerialized, and the IO manager loads just that partition.
"""

import dagster as dg
import polars as pl

from assets.ui_metadata import counts_table, preview
from models.intent.classifier import IntentHyperparameters
from models.intent.tracking import EXPERIMENT, RegisteredIntentModel, find_registered, log_and_register
from models.intent.training import (
    MACRO_F1_FLOOR,
    TRAINING_CODE_VERSION,
    VALIDATION_FRACTION,
    content_hash,
    fingerprint,
    split_by_conversation,
    taxonomy_hash,
    train,
)
from models.synthetic.grammar import VERSION as GRAMMAR_VERSION
from models.taxonomy import Taxonomy
from orchestration.partitions import synthetic_partition_key
from orchestration.resources import MLflowTracking, PlatformConfig

GROUP = "intent"
INTENT_MODEL_SCHEMA = pl.Schema(
    {
        "uri": pl.String,
        "version": pl.Int64,
        "run_id": pl.String,
        "fingerprint": pl.String,
        "training_partition": pl.String,
        "macro_f1": pl.Float64,
        "accuracy": pl.Float64,
        "slot_f1": pl.Float64,
        "majority_macro_f1": pl.Float64,
    }
)


def build_intent_assets(
    training_partition: str | None = None,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    partition = training_partition or synthetic_partition_key("grammar", GRAMMAR_VERSION)

    @dg.asset(
        group_name=GROUP,
        kinds={"polars"},
        ins={
            "synthetic_conversations": dg.AssetIn(
                partition_mapping=dg.SpecificPartitionsPartitionMapping([partition])
            )
        },
        description=(
            f"Turns of synthetic partition {partition} (text, intent, slots JSON), each conversation wholly in "
            f"train or validation ({VALIDATION_FRACTION:.0%}, by a seeded hash of its id)."
        ),
    )
    def intent_training_set(
        platform: PlatformConfig, synthetic_conversations: pl.DataFrame
    ) -> dg.Output[pl.DataFrame]:
        table = split_by_conversation(synthetic_conversations, seed=platform.seed)
        per_split = table.group_by("split").agg(pl.len().alias("turns"), pl.col("conversation_id").n_unique())
        per_intent = (
            table.group_by("intent", "split")
            .len()
            .pivot("split", index="intent", values="len")
            .sort("intent")
        )
        return dg.Output(
            table,
            metadata={
                "dagster/row_count": table.height,
                "training_partition": partition,
                "content_hash": content_hash(table),
                "turns_per_split": preview(per_split.sort("split")),
                "turns_per_intent": preview(per_intent.fill_null(0), rows=20),
                "preview": preview(table.select("conversation_id", "text", "intent", "slots", "split")),
            },
        )

    @dg.asset(
        group_name=GROUP,
        kinds={"scikitlearn", "mlflow"},
        code_version=TRAINING_CODE_VERSION,
        description=(
            "TF-IDF word + char n-grams into a calibrated linear SVM for the intent, plus a taxonomy gazetteer "
            "(exact and typo-tolerant phrases, negation, durations, track references) for slots; evaluated on "
            "the validation split and registered in MLflow as `setlist-intent` only when its fingerprint "
            "(data, taxonomy, code version, hyperparameters) is new. First version champion, later challenger."
        ),
    )
    def intent_model(
        platform: PlatformConfig,
        mlflow: MLflowTracking,
        intent_training_set: pl.DataFrame,
        taxonomy: pl.DataFrame,
    ) -> dg.Output[pl.DataFrame]:
        tree = Taxonomy.from_table(taxonomy)
        hp = IntentHyperparameters()
        training_hash = content_hash(intent_training_set)
        model_fingerprint = fingerprint(training_hash, taxonomy_hash(tree), hp, platform.seed)
        client = mlflow.client()
        experiment_id = mlflow.experiment_id(EXPERIMENT)
        with mlflow.registry_lock():  # a concurrent run waits, then finds this fingerprint registered
            registered = find_registered(client, model_fingerprint)
            if registered is None:
                trained = train(intent_training_set, tree, hp, platform.seed)
                params = {
                    **hp.as_params(),
                    "training_partition": partition,
                    "training_set_hash": training_hash,
                    "taxonomy_hash": taxonomy_hash(tree),
                    "code_version": TRAINING_CODE_VERSION,
                    "seed": str(platform.seed),
                    "train_rows": str(trained.train_rows),
                    "validation_rows": str(trained.validation_rows),
                }
                registered = log_and_register(client, experiment_id, trained, model_fingerprint, params)
        return dg.Output(
            _model_row(registered, partition), metadata=_model_metadata(registered, intent_training_set)
        )

    @dg.asset_check(
        asset=intent_model,
        blocking=True,
        description=f"Validation macro F1 >= {MACRO_F1_FLOOR} (a sanity floor), reported beside the majority-class baseline.",
    )
    def intent_model_macro_f1_floor(intent_model: pl.DataFrame) -> dg.AssetCheckResult:
        row = intent_model.row(0, named=True)
        return dg.AssetCheckResult(
            passed=row["macro_f1"] >= MACRO_F1_FLOOR,
            metadata={
                "macro_f1": round(row["macro_f1"], 4),
                "floor": MACRO_F1_FLOOR,
                "majority_baseline_macro_f1": round(row["majority_macro_f1"], 4),
                "model_version": row["version"],
            },
        )

    return [intent_training_set, intent_model], [intent_model_macro_f1_floor]


def _model_row(registered: RegisteredIntentModel, partition: str) -> pl.DataFrame:
    metrics = registered.metrics
    row = {
        "uri": registered.uri,
        "version": registered.version,
        "run_id": registered.run_id,
        "fingerprint": registered.fingerprint,
        "training_partition": partition,
        "macro_f1": metrics["intent.macro_f1"],
        "accuracy": metrics["intent.accuracy"],
        "slot_f1": metrics["slot.f1"],
        "majority_macro_f1": metrics["baseline.majority_macro_f1"],
    }
    return pl.DataFrame([row], schema=INTENT_MODEL_SCHEMA)


def _model_metadata(registered: RegisteredIntentModel, training_set: pl.DataFrame) -> dict[str, object]:
    metrics = registered.metrics
    per_intent = {
        key.removeprefix("intent.").removesuffix(".f1"): round(value, 4)
        for key, value in sorted(metrics.items())
        if key.startswith("intent.") and key.endswith(".f1") and key.count(".") == 2  # not intent.macro_f1
    }
    return {
        "model_version": registered.version,
        "model_uri": registered.uri,
        "newly_registered": registered.created,
        "mlflow_run_id": registered.run_id,
        "fingerprint": registered.fingerprint,
        "macro_f1": round(metrics["intent.macro_f1"], 4),
        "accuracy": round(metrics["intent.accuracy"], 4),
        "slot_f1": round(metrics["slot.f1"], 4),
        "majority_baseline_macro_f1": round(metrics["baseline.majority_macro_f1"], 4),
        "per_intent_f1": counts_table(per_intent, "intent", "F1"),
        "training_rows": training_set.filter(pl.col("split") == "train").height,
        "validation_rows": training_set.filter(pl.col("split") == "validation").height,
    }

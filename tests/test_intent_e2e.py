"""synthetic (grammar partition) -> intent_training_set -> intent_model in-process: the model lands in MLflow
as champion, loads by alias, predicts, is not registered again for unchanged data, and parses turns."""

import dagster as dg
import mlflow.pyfunc
import pandas as pd
import polars as pl
from mlflow import MlflowClient

import assets.catalog
import assets.golden
import assets.synthetic
import assets.taxonomy
from assets.intent import build_intent_assets
from models.assistant.offline_parser import OfflineParser
from models.labels import TurnLabels
from models.lifecycle.build import resolve_alias
from models.lifecycle.registry import CHAMPION, INTENT_MODEL, model_alias_version
from models.synthetic.grammar import VERSION
from models.taxonomy import load_curated
from orchestration.definitions import build_resources
from orchestration.partitions import SYNTHETIC_GENERATORS, synthetic_partition_key
from orchestration.settings import Settings


def test_intent_model_registers_once_and_parses(settings: Settings) -> None:
    resources = build_resources(settings.model_copy(update={"synthetic_conversations": 300}))
    instance = dg.DagsterInstance.ephemeral()
    key = synthetic_partition_key("grammar", VERSION)
    instance.add_dynamic_partitions(SYNTHETIC_GENERATORS.name, [key])
    upstream = dg.load_assets_from_modules([assets.catalog, assets.taxonomy, assets.golden])
    dg.materialize(upstream, instance=instance, resources=resources)
    synthetic = dg.load_assets_from_modules([assets.synthetic])
    dg.materialize(
        [*synthetic, *(s for a in upstream for s in a.to_source_assets())],
        partition_key=key,
        instance=instance,
        resources=resources,
    )
    intent_assets, intent_checks = build_intent_assets()
    sources = [s for a in [*upstream, *synthetic] for s in a.to_source_assets()]

    def materialize_intent() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [*intent_assets, *intent_checks, *sources], instance=instance, resources=resources
        )

    first = materialize_intent()
    assert first.success
    [check] = first.get_asset_check_evaluations()
    assert check.passed, check.metadata
    training_set = first.output_for_node("intent_training_set")
    per_conversation = training_set.group_by("conversation_id").agg(pl.col("split").n_unique().alias("n"))
    assert per_conversation["n"].max() == 1
    model_row = first.output_for_node("intent_model").row(0, named=True)
    assert _newly_registered(first) and model_row["version"] == 1
    assert model_row["macro_f1"] > model_row["majority_macro_f1"]

    client = MlflowClient(settings.mlflow_tracking_uri)
    assert model_alias_version(client, INTENT_MODEL, CHAMPION) == 1
    champion = mlflow.pyfunc.load_model(f"models:/{INTENT_MODEL}@{CHAMPION}")
    predicted = champion.predict(pd.DataFrame({"text": ["chill jazz without vocals", "thanks!"]}))
    assert list(predicted.columns) == ["intent", "confidence", "slots", "intent_probabilities"]
    assert predicted["confidence"].between(0, 1).all()

    second = materialize_intent()
    second_row = second.output_for_node("intent_model").row(0, named=True)
    # Registering is an event of the first run (metadata); the table of the rerun equals the first.
    assert not _newly_registered(second) and second_row == model_row
    assert second_row["run_id"] == model_row["run_id"]
    assert len(client.search_model_versions(f"name = '{INTENT_MODEL}'")) == 1

    # No setlist-assistant version yet: serving falls back to models:/setlist-intent@champion, loaded from MLflow.
    resolved = resolve_alias(client)
    assert (
        resolved.candidate.key == "intent-v1.hybrid.template" and "setlist-intent@champion" in resolved.note
    )
    parser = OfflineParser(
        resolved.intent_model, resolved.candidate.parser_version, load_curated(settings.taxonomy_file)
    )
    results = parser.parse_batch(
        ["play some tekno without vocals under 3 minutes", "more like the second one"], [[], []]
    )
    assert parser.version == "intent-v1"
    assert all(isinstance(r.labels, TurnLabels) and r.parser == "intent-v1" for r in results)
    assert results[0].labels.slots.genre == ["genre/techno"]
    assert set(results[1].intent_probabilities) >= {"more_like", "recommend"}


def _newly_registered(result: dg.ExecuteInProcessResult) -> bool:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("intent_model")
    ]
    return event.step_materialization_data.materialization.metadata["newly_registered"].value

"""interaction_logs and preference_pairs materialized offline with their checks, exports on disk."""

import json

import dagster as dg
import polars as pl
from conftest import require_shared, store_retrieval_index

import assets.catalog
import assets.feedback
import assets.golden
import assets.synthetic
import assets.taxonomy
from assets.intent import build_intent_assets
from models.assistant.retrieval import CatalogIndex
from models.synthetic.grammar import VERSION
from orchestration.definitions import build_resources
from orchestration.llm_resource import LLMGatewayResource
from orchestration.partitions import SYNTHETIC_GENERATORS, synthetic_partition_key
from orchestration.resources import INDEX_IO_MANAGER


def test_preference_pairs_and_interaction_logs_materialize_offline(settings, tmp_path, catalog, taxonomy):
    require_shared("cpcd/cpcd_v1.dialogs.dev.train.jsonl")
    resources = build_resources(settings.model_copy(update={"synthetic_conversations": 150}))
    instance = dg.DagsterInstance.ephemeral()
    key = synthetic_partition_key("grammar", VERSION)
    instance.add_dynamic_partitions(SYNTHETIC_GENERATORS.name, [key])
    foundation = dg.load_assets_from_modules([assets.catalog, assets.taxonomy, assets.golden])
    assert dg.materialize(foundation, instance=instance, resources=resources).success
    synthetic = dg.load_assets_from_modules([assets.synthetic])
    sources = [s for a in foundation for s in a.to_source_assets()]
    assert dg.materialize(
        [*synthetic, *sources], partition_key=key, instance=instance, resources=resources
    ).success
    training_set = [
        a
        for a in build_intent_assets()[0]
        if "intent_training_set" in a.keys_by_output_name.values().__repr__()
    ]
    upstream = [*sources, *(s for a in synthetic for s in a.to_source_assets())]
    assert dg.materialize([*training_set, *upstream], instance=instance, resources=resources).success

    # The retrieval index as the asset stores it, without the embeddings it is built from (minutes here).
    store_retrieval_index(settings, CatalogIndex.build(catalog, taxonomy))
    index = dg.SourceAsset("retrieval_index", io_manager_key=INDEX_IO_MANAGER)
    feedback = [
        assets.feedback.interaction_logs_assets,
        assets.feedback.preference_pairs,
        assets.feedback.preference_pairs_expectations,
        assets.feedback.preference_pairs_length_bias,
        assets.feedback.preference_pairs_intent_balance,
    ]
    result = dg.materialize(
        [*feedback, index, *upstream, *(s for a in training_set for s in a.to_source_assets())],
        instance=instance,
        resources=resources,
        run_config={
            "ops": {
                "interaction_logs_assets": {"config": {"listeners": 60, "sessions_per_listener": 2}},
                "preference_pairs": {"config": {"judge_conversations": 40}},
            }
        },
    )
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["preference_pairs_expectations"].passed, checks["preference_pairs_expectations"].metadata
    assert checks["preference_pairs_length_bias"].passed, checks["preference_pairs_length_bias"].metadata

    pairs = result.output_for_node("preference_pairs")
    assert set(pairs["source"]) == {"cpcd_likes", "judge_pairwise", "user_feedback"}
    assert (pairs["chosen"] != pairs["rejected"]).all()
    logs = result.output_for_node("interaction_logs_assets", "interaction_logs")
    assert 50 < logs["user_id"].n_unique() <= 60 and set(logs["variant"]) == {assets.feedback.BASELINE.key}

    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key.to_user_string() == "preference_pairs"
    ]
    meta = {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}
    exported = pl.read_parquet(meta["export_parquet"])
    assert exported.columns[:3] == ["prompt", "chosen", "rejected"] and exported.height == pairs.height
    with open(meta["export_jsonl"]) as lines:
        first = json.loads(next(lines))
    assert {"prompt", "chosen", "rejected", "source"} <= first.keys()
    assert str(settings.exports_dir) in meta["export_jsonl"]


def test_simulated_listeners_follow_llm_mode_size_only_when_a_served_candidate_calls_the_llm():
    llm = LLMGatewayResource(online_listeners=20)
    _simulated_listeners = assets.feedback._simulated_listeners
    assert _simulated_listeners(400, llm, ["intent-v1.hybrid.template", "keyword-v1.bm25.template"]) == 400
    assert _simulated_listeners(400, llm, ["intent-v1.hybrid.template", "intent-v1.hybrid.story-v2"]) == 20
    assert _simulated_listeners(10, llm, ["parse-v1.agent-v1.hybrid.template"]) == 10

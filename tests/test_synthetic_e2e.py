"""Materialize the grammar partition of the synthetic assets with its checks, on the bundled sample."""

import dagster as dg

import assets.catalog
import assets.golden
import assets.synthetic
import assets.taxonomy
from models.synthetic.grammar import VERSION
from orchestration.definitions import build_resources
from orchestration.partitions import SYNTHETIC_GENERATORS, synthetic_partition_key
from orchestration.settings import Settings


def test_grammar_partition_materializes_with_checks_passing(settings: Settings) -> None:
    upstream = [assets.catalog, assets.taxonomy, assets.golden]  # golden texts are the leakage reference
    resources = build_resources(settings.model_copy(update={"synthetic_conversations": 300}))
    instance = dg.DagsterInstance.ephemeral()
    key = synthetic_partition_key("grammar", VERSION)
    instance.add_dynamic_partitions(SYNTHETIC_GENERATORS.name, [key])
    dg.materialize(dg.load_assets_from_modules(upstream), instance=instance, resources=resources)

    result = dg.materialize(
        [
            *dg.load_assets_from_modules([assets.synthetic]),
            *dg.load_asset_checks_from_modules([assets.synthetic]),
            *(s for a in dg.load_assets_from_modules(upstream) for s in a.to_source_assets()),
        ],
        partition_key=key,
        instance=instance,
        resources=resources,
    )

    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert check.passed, check.metadata["failed_expectations"].value
    conversations = result.output_for_node("synthetic_assets", "synthetic_conversations")
    rejects = result.output_for_node("synthetic_assets", "synthetic_rejects")
    assert conversations["conversation_id"].n_unique() + rejects["conversation_id"].n_unique() == 300
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["taxonomy_coverage"].value > 0.5
    assert 0 < metadata["distinct_2"].value <= 1
